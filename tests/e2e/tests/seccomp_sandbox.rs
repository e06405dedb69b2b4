//! Fixture seccomp_child: a child forked at start-up installs a seccomp
//! filter (sshd's pre-auth child does) that allows only what the program
//! itself calls. The runtime must not trip it, and a thread the filter
//! kills must end the process as it does in a clang-22 build (a runtime
//! thread left alive kept the child a zombie-led process the parent's
//! `waitpid` never saw end).

use mcr_e2e::{build, build_plain, Opt};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the fixture in `mode`, bounded (the fixture bounds its own wait at
/// 10 s; this kills it at 20 s). Returns its stdout.
fn run(bin: &Path, mode: &str) -> String {
    let mut child = Command::new(bin)
        .arg(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {mode}: still running after 20 s", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    assert!(
        status.success(),
        "{} {mode}: {status}: {out}",
        bin.display()
    );
    out
}

/// `SIGSYS`, which `SECCOMP_RET_KILL` kills with.
const SIGSYS: i32 = libc::SIGSYS;

fn check(bin: &Path) {
    assert_eq!(
        run(bin, "read"),
        "child read hello\nchild exited 0\n",
        "{}: the child under its filter reads and exits",
        bin.display()
    );
    assert_eq!(
        run(bin, "forbidden"),
        format!("child killed by signal {SIGSYS}\n"),
        "{}: a call the filter forbids kills the child, and its parent sees it",
        bin.display()
    );
}

#[test]
fn clang_build_is_the_reference() {
    check(&build_plain("seccomp_child", 1));
}

#[test]
fn mcr_build_o2() {
    check(&build("seccomp_child", 1, Opt::O2, &[]));
}

#[test]
fn mcr_build_o0() {
    check(&build("seccomp_child", 1, Opt::O0, &[]));
}
