//! Fixture pidfile: supervisors follow the update. The PID changes
//! (docs/decisions.md); the pidfile the program writes at start-up names the
//! new process, and systemd hears `MAINPID=<new pid>` on `NOTIFY_SOCKET`.

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
