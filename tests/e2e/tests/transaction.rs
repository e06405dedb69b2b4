//! Fixture transaction: quiescent points from `mcr-ctl profile`. A request
//! that reads its own continuation with blocking reads must finish before
//! an update; the profile tells that read apart from the event loop's wait.

use mcr_e2e::{ctl, Case, Client, Opt, Server};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn transaction(c: &mut Client, items: &[(&str, i64)]) -> String {
    assert_eq!(c.cmd("BEGIN"), "GO");
    let mut body = String::new();
    for (k, v) in items {
        body.push_str(&format!("PUT {k} {v}\n"));
    }
    body.push_str("END\n");
    c.send(body.as_bytes()).unwrap();
    c.read_line().unwrap()
}

/// Profiles `s` for one second while a client runs transactions and pings;
/// returns the saved profile's text.
fn profile_under_load(s: &Server, bin: &Path) -> String {
    let stop = Arc::new(AtomicBool::new(false));
    let port = s.port;
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(port).unwrap();
            let mut n = 0u32;
            let end = Instant::now() + Duration::from_secs(10);
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                assert_eq!(transaction(&mut c, &[("load", n as i64)]), "DONE 1");
                assert_eq!(c.cmd("PING"), "PONG");
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    let pid = s.pid.to_string();
    let (code, out, err) = ctl(
        &["profile", &pid, "--duration", "1"],
        Duration::from_secs(30),
    );
    stop.store(true, Ordering::SeqCst);
    let rounds = load.join().unwrap();
    assert_eq!(code, Some(0), "mcr-ctl profile: {err}{out}");
    assert!(rounds > 20, "only {rounds} transactions during the profile");
    assert!(out.contains("quiescent point"), "{out}");
    let path = profile_path(bin);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}\n{out}", path.display()))
}

fn profile_path(bin: &Path) -> PathBuf {
    let mut p = bin.as_os_str().to_owned();
    p.push(".mcr-profile.toml");
    PathBuf::from(p)
}

/// The profile keeps exactly the event loop's wait: the transaction's
/// read() blocks too, but for a small share of the time.
fn check_profile(text: &str) {
    let calls: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("call = "))
        .collect();
    assert_eq!(calls, ["\"epoll_wait\""], "{text}");
    assert!(text.contains("function = \"main"), "{text}");
}

fn waits_for_transaction(v_to: u32, opt: Opt) {
    let case = Case::new("transaction");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    assert_eq!(s.cmd("PUT before 7"), "OK");
    check_profile(&profile_under_load(&s, &b1));
    // The load's connection is closed: let the server see it before it is
    // busy in the transaction below (the update compares descriptors).
    std::thread::sleep(Duration::from_millis(200));
    let loaded = s.dump();

    // A transaction in progress: its first item is on the server's stack.
    let mut t = s.client();
    assert_eq!(t.cmd("BEGIN"), "GO");
    t.send(b"PUT x 1\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        t.send(b"PUT y 2\nEND\n").unwrap();
        // The connection stays open through the update (it is compared).
        (t.read_line().unwrap(), t)
    });
    let t0 = Instant::now();
    let rep = s.update_ok(&b2);
    assert_eq!(rep.profile_points, Some(1), "{rep:?}");
    let took = t0.elapsed();
    let (done, mut t) = finisher.join().unwrap();
    assert_eq!(done, "DONE 2");
    assert!(
        took >= Duration::from_millis(400),
        "the update did not wait for the transaction ({took:?}): {rep:?}"
    );
    assert_eq!(s.version(), v_to.to_string());
    let after = s.dump();
    assert!(after.starts_with("items="), "{after}");
    assert!(
        after.ends_with(" x=1 y=2"),
        "before: {loaded}\nafter: {after}"
    );
    assert_eq!(s.cmd("GET before"), "7");
    assert_eq!(s.cmd("GET y"), "2");
    assert_eq!(t.cmd("GET x"), "1");
    s.check();
}

#[test]
fn profile_makes_update_wait_for_transaction_v1_to_v1() {
    waits_for_transaction(1, Opt::O2);
}

#[test]
fn profile_makes_update_wait_for_transaction_v1_to_v2() {
    waits_for_transaction(2, Opt::O2);
}

#[test]
fn profile_makes_update_wait_for_transaction_o0() {
    waits_for_transaction(1, Opt::O0);
}

/// A transaction that does not end in time: the update is refused with the
/// blocked call named, the old version finishes the transaction and serves.
#[test]
fn unfinished_transaction_rolls_back_naming_the_call() {
    let case = Case::new("transaction");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let s = case.start(&b1);
    profile_under_load(&s, &b1);
    let mut t = s.client();
    assert_eq!(t.cmd("BEGIN"), "GO");
    t.send(b"PUT x 1\n").unwrap();
    let e = mcr_e2e::update_with(s.pid, &b2, &["--timeout", "0.5"]).unwrap_err();
    assert_ne!(e.code, Some(0));
    assert!(
        e.stderr.contains("quiescence timed out")
            && e.stderr.contains("blocked in a call from ")
            && e.stderr.contains("not a quiescent point"),
        "{e}"
    );
    t.send(b"END\n").unwrap();
    assert_eq!(t.read_line().unwrap(), "DONE 1");
    assert_eq!(s.version(), "1");
    assert!(s.dump().ends_with(" x=1"), "{}", s.dump());
    assert_eq!(s.cmd("GET x"), "1");
    s.check();
}

/// A profile recorded for another build is not used (mcr-ctl warns): every
/// blocking call counts as a quiescent point again.
#[test]
fn profile_of_another_build_is_ignored() {
    let case = Case::new("transaction");
    let b1 = case.bin(1, Opt::O2);
    let other = case.bin(1, Opt::O0);
    let mut s = case.start(&b1);
    let text = profile_under_load(&s, &b1);
    std::fs::write(
        profile_path(&b1),
        text.replace("binary_hash = \"", "binary_hash = \"0"),
    )
    .unwrap();
    let rep = s.update_ok(&other);
    assert_eq!(rep.profile_points, None, "{rep:?}");
    assert_eq!(s.cmd("PING"), "PONG");
}
