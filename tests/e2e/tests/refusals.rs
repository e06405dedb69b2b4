//! Updates that must be refused before anything stops, with the reason,
//! the old version still serving.

use mcr_e2e::{build, build_plain, ctl, Case, Opt};
use std::time::{Duration, Instant};

/// A NEW_BINARY not built with mcr-cc.
#[test]
fn new_binary_not_built_with_mcr_cc() {
    let case = Case::new("tcp_state");
    let b1 = case.bin(1, Opt::O2);
    let plain = case.install(&build_plain("tcp_state", 2), "tcp_state-plain");
    let mut s = case.start(&b1);
    s.client().cmd("ADD 3");
    let msg = s.update_rolls_back(&plain, &[]);
    assert!(msg.contains("not built with mcr-cc"), "{msg}");
    assert_eq!(s.version(), "1");
}

/// A NEW_BINARY of another program (built with mcr-cc): refused before
/// anything stops, naming both programs' sources.
#[test]
fn new_binary_of_another_program() {
    let case = Case::new("tcp_state");
    let b1 = case.bin(1, Opt::O2);
    let other = case.install(&build("linked_heap", 1, Opt::O2, &[]), "linked_heap");
    let mut s = case.start(&b1);
    s.client().cmd("ADD 3");
    let before = s.dump();
    let msg = s.update_rolls_back(&other, &[]);
    assert!(
        msg.contains("refused: the new binary is another program"),
        "{msg}"
    );
    assert!(
        msg.contains("linked_heap.c") && msg.contains("tcp_state.c"),
        "{msg}"
    );
    assert_eq!(s.version(), "1");
    assert_eq!(s.dump(), before);
    // Nothing stopped: the same process serves, no other was started.
    assert_eq!(s.processes(), vec![s.pid]);
}

/// A PID whose program was not built with mcr-cc.
#[test]
fn pid_not_instrumented() {
    let case = Case::new("tcp_state");
    let plain = case.install(&build_plain("tcp_state", 1), "tcp_state-plain");
    let b1 = case.bin(1, Opt::O2);
    let s = case.start_plain(&plain);
    let (code, out, err) = ctl(
        &["update", &s.pid.to_string(), b1.to_str().unwrap(), "--json"],
        Duration::from_secs(30),
    );
    assert!(code.is_some_and(|c| c != 0), "{out}{err}");
    assert!(err.contains("not a program built with mcr-cc"), "{err}");
    assert_eq!(s.cmd("PING"), "PONG");
    assert_eq!(s.processes(), vec![s.pid]);
}

/// A PID that does not exist.
#[test]
fn pid_does_not_exist() {
    let case = Case::new("tcp_state");
    let b1 = case.bin(1, Opt::O2);
    // A PID above the kernel's maximum cannot exist.
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (code, out, err) = ctl(
        &["update", &(max + 1).to_string(), b1.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(code.is_some_and(|c| c != 0), "{out}{err}");
    assert!(err.contains("no process"), "{err}");
}

/// A second update while one is running (the first waits for a request
/// in progress): refused; the first then completes.
#[test]
fn second_update_while_one_runs() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut busy = s.client();
    busy.send(b"SPIN 2500\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = s.pid;
    let b2c = b2.clone();
    let first = std::thread::spawn(move || mcr_e2e::update_with(pid, &b2c, &[]));
    std::thread::sleep(Duration::from_millis(600));
    let t = Instant::now();
    let second = mcr_e2e::update_with(pid, &b2, &[]);
    let e = second.expect_err("a second update must be refused");
    assert!(e.stderr.contains("already in progress"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "refusal took {:?}",
        t.elapsed()
    );
    // The request in progress finishes first; then the first update goes through.
    assert_eq!(busy.read_line().unwrap(), "SPUN");
    let rep = first
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("first update: {e}\n{}", s.log()));
    s.pid = rep.new_pid;
    s.pids.push(rep.new_pid);
    assert_eq!(s.version(), "2");
    assert_eq!(busy.cmd("ADD 1"), "1");
}

/// A request that computes longer than the quiescence deadline: the
/// update rolls back, the request completes.
#[test]
fn quiescence_timeout_rolls_back() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut busy = s.client();
    busy.cmd("ADD 2");
    // The admin connection's DUMP would wait behind the spin: take it first.
    let before = s.dump();
    busy.send(b"SPIN 3000\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let e = s
        .update_with(&b2, &["--timeout", "0.5"])
        .expect_err("must time out");
    assert!(e.stderr.contains("quiescence timed out"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(busy.read_line().unwrap(), "SPUN");
    assert_eq!(s.dump(), before);
    assert_eq!(s.version(), "1");
    s.check();
    assert_eq!(s.processes(), vec![s.pid]);
}

/// An update requested while a request computes waits for it to finish
/// (the request is answered), then goes through.
#[test]
fn update_waits_for_request_in_progress() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut busy = s.client();
    assert_eq!(busy.cmd("ADD 4"), "4");
    busy.send(b"SPIN 1500\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let rep = s.update_ok(&b2);
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "the update did not wait: {:?}",
        t.elapsed()
    );
    assert_eq!(busy.read_line().unwrap(), "SPUN");
    assert_eq!(busy.cmd("ADD 1"), "5");
    assert_eq!(s.version(), "2");
    eprintln!(
        "downtime {:.1} ms (includes the wait for the request)",
        rep.downtime_ms
    );
}
