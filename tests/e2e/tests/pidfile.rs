//! Fixture pidfile: supervisors follow the update. The PID changes
//! (docs/decisions.md); the pidfile the program writes at start-up names the
//! new process, and systemd hears `MAINPID=<new pid>` on `NOTIFY_SOCKET`.
//! Started with `daemon`, the fixture daemonizes (`daemon(3)`) in both
//! versions: the new version serves from the child of the process the
//! update started, which the report must name, and a rollback must leave
//! no such child behind.

use mcr_e2e::{Case, Opt};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Datagrams until one contains `want` (bounded).
fn wait_message(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = m.contains(want);
            seen.push(m);
            if done {
                return seen;
            }
        }
    }
    panic!("no notification with {want:?} within 10 s; got {seen:?}");
}

fn across(v_to: u32, opt: Opt) {
    let case = Case::new("pidfile");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let notify_path = case.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let notify = notify_path.to_string_lossy().into_owned();
    let mut s = case.start_with(&b1, &[("NOTIFY_SOCKET", &notify)], &[]);
    wait_message(&sock, "READY=1");
    let pidfile = case.path().join("server.pid");
    let read_pid = || {
        std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read_pid(), s.pid.to_string());
    assert_eq!(s.cmd("INC"), "1");
    assert_eq!(s.cmd("INC"), "2");
    s.check();

    let old = s.pid;
    let rep = s.update_ok(&b2);
    assert_ne!(rep.new_pid, old);
    let seen = wait_message(&sock, &format!("MAINPID={}", rep.new_pid));
    assert!(
        !seen.iter().any(|m| m.contains(&format!("MAINPID={old}"))),
        "{seen:?}"
    );
    assert_eq!(read_pid(), rep.new_pid.to_string());
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), "n=2");
    assert_eq!(s.cmd("INC"), "3");
    s.check();
}

#[test]
fn pidfile_and_mainpid_follow_v1_to_v1() {
    across(1, Opt::O2);
}

#[test]
fn pidfile_and_mainpid_follow_v1_to_v2() {
    across(2, Opt::O2);
}

/// A daemon's update: the new version's start-up daemonizes again.
fn daemon_across(v_to: u32, opt: Opt) {
    let case = Case::new("pidfile");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start_daemon(&b1, &[], &["daemon"], "server.pid");
    assert_eq!(s.cmd("INC"), "1");
    s.check();
    for round in 0..2 {
        let rep = s.update_ok(&b2);
        // The serving process, not the one started (which exited in
        // daemon(3)): update_ok checked it is alive and has a control socket.
        let pidfile = std::fs::read_to_string(case.path().join("server.pid")).unwrap();
        assert_eq!(pidfile.trim(), rep.new_pid.to_string(), "round {round}");
        assert_eq!(s.version(), v_to.to_string());
        assert_eq!(s.dump(), format!("n={}", round + 1));
        assert_eq!(s.cmd("INC"), (round + 2).to_string());
        s.check();
    }
}

#[test]
fn daemon_v1_to_v1() {
    daemon_across(1, Opt::O2);
}

#[test]
fn daemon_v1_to_v2() {
    daemon_across(2, Opt::O2);
}

/// A daemon's new version failing in start-up or crashing after its
/// transfer: the old one serves on, and no daemon child of the new one is
/// left (update_rolls_back checks the processes).
#[test]
fn daemon_rollback_leaves_no_child() {
    for phase in ["startup", "crash"] {
        let case = Case::new("pidfile");
        let b1 = case.bin(1, Opt::O2);
        let mut s = case.start_daemon(&b1, &[("MCR_FAULT", phase)], &["daemon"], "server.pid");
        assert_eq!(s.cmd("INC"), "1");
        let e = s.update_rolls_back(&b1, &[]);
        assert!(e.contains("rolled back"), "{phase}: {e}");
        assert_eq!(s.cmd("INC"), "2");
    }
}
