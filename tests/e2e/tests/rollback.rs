//! Rollback: MCR_FAULT=<phase> makes each phase fail; the update exits
//! non-zero, the old PID serves the same DUMP, connections from before
//! still work, and no new process is left behind.

use mcr_e2e::{Case, Opt, Server};

fn tcp_state(s: &Server) -> Vec<mcr_e2e::Client> {
    (0..2)
        .map(|i| {
            let mut c = s.client();
            c.cmd(&format!("NAME n{i}"));
            c.cmd(&format!("ADD {}", i + 1));
            c
        })
        .collect()
}

fn linked_heap(s: &Server) -> Vec<mcr_e2e::Client> {
    let mut c = s.client();
    assert_eq!(c.cmd("BUILD 500 9"), "OK 500");
    c.cmd("HOT 100");
    vec![c]
}

fn rolls_back(
    fixture: &str,
    v_to: u32,
    phase: &str,
    populate: fn(&Server) -> Vec<mcr_e2e::Client>,
) {
    let case = Case::new(fixture);
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(v_to, Opt::O2));
    let mut s = case.start_with(&b1, &[("MCR_FAULT", phase)], &[]);
    let mut clients = populate(&s);
    let msg = s.update_rolls_back(&b2, &[]);
    assert!(
        msg.contains("rolled back") || msg.contains("exited"),
        "{phase}: {msg}"
    );
    assert_eq!(s.version(), "1");
    for c in clients.iter_mut() {
        assert_eq!(c.cmd("PING"), "PONG");
    }
    assert_eq!(s.client().cmd("PING"), "PONG");
}

macro_rules! phases {
    ($($name:ident: $fixture:literal, $v:literal, $phase:literal, $pop:ident;)*) => {$(
        #[test]
        fn $name() {
            rolls_back($fixture, $v, $phase, $pop);
        }
    )*};
}

phases! {
    tcp_state_quiesce: "tcp_state", 2, "quiesce", tcp_state;
    tcp_state_checkpoint: "tcp_state", 2, "checkpoint", tcp_state;
    tcp_state_restore: "tcp_state", 2, "restore", tcp_state;
    tcp_state_startup: "tcp_state", 2, "startup", tcp_state;
    tcp_state_transfer: "tcp_state", 2, "transfer", tcp_state;
    tcp_state_crash: "tcp_state", 2, "crash", tcp_state;
    linked_heap_quiesce: "linked_heap", 1, "quiesce", linked_heap;
    linked_heap_checkpoint: "linked_heap", 1, "checkpoint", linked_heap;
    linked_heap_restore: "linked_heap", 1, "restore", linked_heap;
    linked_heap_startup: "linked_heap", 1, "startup", linked_heap;
    linked_heap_transfer: "linked_heap", 1, "transfer", linked_heap;
    linked_heap_crash: "linked_heap", 1, "crash", linked_heap;
}

/// Every phase listed by the harness is covered above.
#[test]
fn all_phases_covered() {
    assert_eq!(
        mcr_e2e::FAULT_PHASES,
        [
            "quiesce",
            "checkpoint",
            "restore",
            "startup",
            "transfer",
            "crash"
        ]
    );
}

/// One process goes through a failed update in every phase in turn, then a
/// successful one: each rollback leaves it serving the same state with the
/// same descriptors (nothing leaked by a rollback), and it can still update.
#[test]
fn every_phase_in_turn_then_success() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut clients = tcp_state(&s);
    let fds = mcr_e2e::program_fds(s.pid);
    let pid = s.pid;
    let threads = move || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let nthreads = threads();
    for phase in mcr_e2e::FAULT_PHASES {
        assert_eq!(s.cmd(&format!("FAULT {phase}")), "OK");
        let msg = s.update_rolls_back(&b2, &[]);
        assert!(msg.contains("rolled back"), "{phase}: {msg}");
        assert_eq!(
            mcr_e2e::program_fds(s.pid),
            fds,
            "descriptors after the {phase} rollback"
        );
        // The runtime's per-connection control thread may take a moment to end.
        let settled = mcr_e2e::wait_for(std::time::Duration::from_secs(2), || {
            (threads() == nthreads).then_some(())
        });
        assert!(
            settled.is_some(),
            "threads after the {phase} rollback: {} != {nthreads}",
            threads()
        );
        for c in clients.iter_mut() {
            assert_eq!(c.cmd("PING"), "PONG");
        }
    }
    assert_eq!(s.cmd("FAULT NONE"), "OK");
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.version(), "2");
    assert_eq!(s.dump(), before);
    s.check();
    assert_eq!(clients[1].cmd("ADD 1"), "3");
}

/// What the kernel says of the open files a rollback must give back: each
/// program descriptor's status flags, each epoll instance's registrations
/// (target number, events, data, inode; not the offset).
fn shared_file_state(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for (fd, _) in mcr_e2e::program_fds(pid) {
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        for l in info.lines() {
            if l.starts_with("flags:") || l.starts_with("tfd:") {
                let words: Vec<&str> = l
                    .split_whitespace()
                    .filter(|w| !w.starts_with("pos:"))
                    .collect();
                out.push(format!("{fd}: {}", words.join(" ")));
            }
        }
    }
    out
}

/// Signal dispositions and masks are the process's own (not shared with
/// the new version), but the runtime interrupts threads with its reserved
/// signal and spawns the new version under the main thread's mask: every
/// thread's blocked set, and the process's ignored and caught sets.
fn signal_state(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    let mut tids: Vec<String> = tasks
        .flatten()
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect();
    tids.sort();
    for tid in tids {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        for l in status.lines() {
            if ["SigBlk:", "SigIgn:", "SigCgt:"]
                .iter()
                .any(|k| l.starts_with(k))
            {
                out.push(format!("{tid} {l}"));
            }
        }
    }
    out
}

/// The new version's start-up changes the open files it shares with the old
/// version (tests/fixtures/shared_files.c: the inherited epoll instance's
/// registrations, the listener's O_NONBLOCK and socket options), as
/// lighttpd 1.4.79's did to 1.4.69's (issue 16). After the rollback the old
/// version has them back as they were: CHECK (inside `update_rolls_back`)
/// sees its own registrations and options, it accepts new connections, and
/// answers on the old ones with their state.
fn shared_files_given_back(phase: &str) {
    let case = Case::new("shared_files");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start_with(&b1, &[("MCR_FAULT", phase)], &[]);
    let mut clients: Vec<mcr_e2e::Client> = (0..2)
        .map(|i| {
            let mut c = s.client();
            assert_eq!(c.cmd(&format!("ADD {}", i + 10)), (i + 10).to_string());
            c
        })
        .collect();
    s.check();
    let before = s.dump();
    let files = shared_file_state(s.pid);
    let signals = signal_state(s.pid);
    assert!(
        files.iter().filter(|l| l.contains("tfd:")).count() >= 4,
        "{files:#?}"
    );
    // Twice: the second update starts from what the first rollback left.
    for round in 0..2 {
        let msg = s.update_rolls_back(&b2, &[]);
        assert!(msg.contains("rolled back"), "{phase}, round {round}: {msg}");
        assert!(
            !msg.contains("left as the new version made"),
            "{phase}, round {round}: {msg}"
        );
        assert_eq!(s.version(), "1");
        assert_eq!(s.dump(), before, "{phase}, round {round}");
        assert_eq!(
            shared_file_state(s.pid),
            files,
            "{phase}, round {round}: flags and epoll registrations after the rollback (left) and before the update (right)"
        );
        // The runtime's thread that served mcr-ctl may take a moment to end.
        let settled = mcr_e2e::wait_for(std::time::Duration::from_secs(2), || {
            (signal_state(s.pid) == signals).then_some(())
        });
        assert!(
            settled.is_some(),
            "{phase}, round {round}: signal masks and dispositions {:#?} != {signals:#?}",
            signal_state(s.pid)
        );
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.cmd("ADD 1"), (i + 11).to_string());
    }
    // New connections, each answered (bounded: an old version that no
    // longer accepts leaves the connection in the listen backlog).
    for k in 0..3 {
        let mut c = s.client();
        c.set_read_timeout(std::time::Duration::from_secs(5));
        assert_eq!(
            c.try_cmd("PING").map_err(|e| e.to_string()),
            Ok("PONG".to_string()),
            "{phase}: new connection {k} after the rollback\n{}",
            s.log()
        );
    }
    let accepted = |d: &str| -> u64 {
        let n = d
            .split_whitespace()
            .next()
            .and_then(|w| w.strip_prefix("accepted="));
        n.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DUMP {d}"))
    };
    assert_eq!(accepted(&s.dump()), accepted(&before) + 3, "{phase}");
    s.check();
}

#[test]
fn shared_files_transfer() {
    shared_files_given_back("transfer");
}

#[test]
fn shared_files_crash() {
    shared_files_given_back("crash");
}
