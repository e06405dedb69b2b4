//! Fixture close_all: a start-up that closes every descriptor above stderr
//! (sshd's `closefrom(3)`) leaves the runtime's control socket open, and its
//! control thread idle (it spun on a closed listener before).

use mcr_e2e::{build, ctl, has_control_socket, wait_for, Opt};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// CPU ticks (user + system) of the process's `mcr-control` thread.
fn control_thread_ticks(pid: u32) -> Option<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = t.ok()?.path();
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim() != "mcr-control" {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the command's closing parenthesis; utime, stime are 14, 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
    }
    None
}

fn check(mode: &str) {
    let bin = build("close_all", 1, Opt::O2, &[]);
    let mut child = Command::new(&bin)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start close_all");
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line, "ready\n", "{mode}");
    // The thread names itself once it runs.
    let socket = has_control_socket(pid);
    // Answered over the socket (a closed listener's file stays alive while
    // the thread sleeps in poll on it, and is listed; a client wakes it).
    let (code, out, err) = ctl(&["heap", &pid.to_string()], Duration::from_secs(10));
    let t0 = wait_for(Duration::from_secs(5), || control_thread_ticks(pid));
    std::thread::sleep(Duration::from_millis(500));
    let t1 = control_thread_ticks(pid);
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(
        socket,
        "{mode}: @mcr/{pid} is gone after the program's {mode}"
    );
    assert_eq!(code, Some(0), "{mode}: mcr-ctl heap {pid}: {out}{err}");
    let (t0, t1) = (
        t0.expect("mcr-control thread"),
        t1.expect("mcr-control thread"),
    );
    assert!(
        t1 - t0 < 10,
        "{mode}: the control thread used {} ticks in 0.5 s",
        t1 - t0
    );
}

#[test]
fn close_range_leaves_the_control_socket() {
    check("close_range");
}

#[test]
fn closefrom_leaves_the_control_socket() {
    check("closefrom");
}

/// tcp_state with `closefrom(3)` first thing in `main`: in a new version the
/// inherited listening socket and connections, and the update's own
/// channels, are open when it runs; the update must keep them (sshd's
/// listener rolled back with "Address already in use" before).
fn update_after_closefrom(v_to: u32) {
    let case = mcr_e2e::Case::new("tcp_state");
    let b1 = case.bin_with(1, Opt::O2, &["CLOSE_ALL_AT_START"]);
    let b2 = case.bin_with(v_to, Opt::O2, &["CLOSE_ALL_AT_START"]);
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("NAME alice"), "OK");
    c.cmd("ADD 7");
    let me = c.cmd("ME");
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before, "DUMP after the update");
    assert_eq!(c.cmd("ME"), me, "the connection opened before");
    let mut d = s.client();
    assert_eq!(d.cmd("NAME bob"), "OK", "a new connection");
    s.update_ok(&b2);
    assert_eq!(c.cmd("ME"), me, "after a second update");
    s.check();
}

#[test]
fn update_after_closefrom_v1_to_v1() {
    update_after_closefrom(1);
}

#[test]
fn update_after_closefrom_v1_to_v2() {
    update_after_closefrom(2);
}
