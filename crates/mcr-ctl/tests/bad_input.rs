//! `mcr-ctl` on processes it cannot or must not talk to: one clear line on
//! stderr, a non-zero exit, and never a hang.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The error is one line naming the process, and mcr-ctl exits non-zero.
fn assert_refused(r: &Ctl, pid: u32, needle: &str) {
    assert!(r.code.is_some_and(|c| c != 0), "mcr-ctl must fail: {r:?}");
    let err = r.stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "one line of error: {err:?}");
    assert!(err.starts_with("mcr-ctl: "), "{err:?}");
    assert!(err.contains(&pid.to_string()), "names the PID: {err:?}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(r.stdout.is_empty(), "nothing on stdout: {:?}", r.stdout);
}

#[test]
fn process_that_is_not_instrumented() {
    let f = Fixture::start_full(&build("list", Build::Plain), &[], &[], false);
    let pid = f.pid.to_string();
    for cmd in ["heap", "trace"] {
        let r = ctl(&[cmd, &pid]);
        assert_refused(&r, f.pid, "not a program built with mcr-cc");
        assert!(r.elapsed < Duration::from_secs(5), "{r:?}");
    }
    let ps: Vec<mcr_types::protocol::Info> = ctl_json(&["ps"]);
    assert!(!ps.iter().any(|i| i.pid == f.pid));
}

#[test]
fn process_that_does_not_exist() {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let pid = (1..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free PID");
    for cmd in ["heap", "trace"] {
        let r = ctl(&[cmd, &pid.to_string()]);
        assert_refused(&r, pid, "no process with PID");
    }
}

/// A process stopped by a signal never answers: the wait is bounded.
#[test]
fn stopped_process_times_out() {
    let f = Fixture::start(&build("list", Build::O2));
    stop_process(f.pid);
    let r = ctl_full(
        &["heap", &f.pid.to_string()],
        &[],
        &[("MCR_CTL_TIMEOUT", "1")],
    );
    assert_refused(&r, f.pid, "did not answer within 1 s");
    assert!(r.elapsed < Duration::from_secs(5), "{r:?}");
    // SAFETY: as above.
    unsafe { libc::kill(f.pid as i32, libc::SIGCONT) };
    // And it answers again once it runs.
    assert!(heap(f.pid).objects > 0);
}

/// The process dies while mcr-ctl waits for its answer.
#[test]
fn process_dies_mid_command() {
    let mut f = Fixture::start(&build("list", Build::O2));
    let pid = f.pid;
    // Stopped, it accepts no connection, but connect() completes into the
    // listen backlog and mcr-ctl waits for the reply.
    stop_process(pid);
    let h = std::thread::spawn(move || ctl(&["trace", &pid.to_string()]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!h.is_finished(), "mcr-ctl should be waiting for the reply");
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let r = h.join().unwrap();
    assert_refused(&r, pid, "exited during the command");
    assert!(r.elapsed < Duration::from_secs(10), "{r:?}");
    let _ = f.child.wait();
    // Reaped: now there is no such process.
    assert_refused(&ctl(&["heap", &pid.to_string()]), pid, "no process");
}

/// Killed but not reaped yet (a zombie): it has exited, says mcr-ctl.
#[test]
fn zombie_process() {
    let mut f = Fixture::start(&build("list", Build::O2));
    let pid = f.pid;
    // SAFETY: signalling the fixture this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|x| x.1.trim_start().starts_with('Z'))
        })
    }));
    assert_refused(&ctl(&["heap", &pid.to_string()]), pid, "has exited");
    let _ = f.child.wait();
}

const OTHER_USER: &str = "mcr-ctl-test";

/// Creates (once) a system user for the refusal test; its uid and gid.
fn other_user() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, OTHER_USER]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let r = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                OTHER_USER,
            ])
            .output()
            .expect("run useradd");
        // Another test binary may have created it meanwhile.
        assert!(
            r.status.success() || id("-u").is_some(),
            "useradd: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    (id("-u").unwrap(), id("-g").unwrap())
}

/// A directory and copies of the fixture and mcr-ctl that another user
/// can reach (the build tree may not be).
fn shared_copies(bin: &Path) -> (tempdir::Dir, PathBuf, PathBuf) {
    let d = tempdir::Dir::new("mcr-ctl-other-user");
    let (b, c) = (d.0.join("fixture"), d.0.join("mcr-ctl"));
    std::fs::copy(bin, &b).unwrap();
    std::fs::copy(&toolchain().ctl, &c).unwrap();
    for p in [&d.0, &b, &c] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (d, b, c)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "{prefix}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs the reachable copy of mcr-ctl as another user.
fn run_ctl_as(ctl_bin: &Path, uid: u32, gid: u32, args: &[&str]) -> Ctl {
    let mut all = vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_string(),
        ctl_bin.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    ctl_as_program("setpriv", &all)
}

/// Runs `program args...` with the same bounded wait as `ctl_full`.
fn ctl_as_program(program: &str, args: &[&str]) -> Ctl {
    let t0 = std::time::Instant::now();
    let mut c = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    loop {
        if c.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > CTL_LIMIT {
            let _ = c.kill();
            panic!("{program} {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = c.wait_with_output().unwrap();
    Ctl {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        elapsed: t0.elapsed(),
    }
}

/// Only the process owner and root may talk to a program.
#[test]
fn process_of_another_user_is_refused() {
    if !is_root() {
        println!("SKIPPED: creating a second user and switching to it needs root");
        return;
    }
    let (uid, gid) = other_user();
    let (_dir, bin, ctl_copy) = shared_copies(&build("list", Build::O2));
    let pid_of = |f: &Fixture| f.pid.to_string();

    // Root's program, the other user asks: refused.
    let f = Fixture::start(&bin);
    for cmd in ["heap", "trace"] {
        let r = run_ctl_as(&ctl_copy, uid, gid, &[cmd, &pid_of(&f)]);
        assert_refused(&r, f.pid, "permission denied");
    }
    // ... and ps run by that user does not list it (and does not hang).
    let r = run_ctl_as(&ctl_copy, uid, gid, &["ps", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let ps: Vec<mcr_types::protocol::Info> = serde_json::from_str(&r.stdout).unwrap();
    assert!(!ps.iter().any(|i| i.pid == f.pid), "{ps:?}");
    // The owner (root) is served.
    assert!(heap(f.pid).objects > 0);
    drop(f);

    // The other user's program: it may ask itself, and root may ask too.
    let w = [
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_string(),
    ];
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let f = Fixture::start_full(&bin, &[], &w, true);
    let owner = std::fs::metadata(format!("/proc/{}", f.pid)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(owner.uid(), uid, "the fixture runs as {OTHER_USER}");
    let r = run_ctl_as(&ctl_copy, uid, gid, &["heap", "--json", &pid_of(&f)]);
    assert_eq!(r.code, Some(0), "the owner is served: {r:?}");
    let h: mcr_types::protocol::HeapReport = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        heap_by_type(&h).get("struct lnode"),
        Some(&(1007, 1007 * 16))
    );
    check_trace(&trace(f.pid), &[("struct lnode", 1000, 7)], &[]);
}

/// `mcr-ctl ps` lists a running fixture with its program and heap.
#[test]
fn ps_lists_the_fixture() {
    let bin = build("tree", Build::O2);
    let f = Fixture::start(&bin);
    let ps: Vec<mcr_types::protocol::Info> = ctl_json(&["ps"]);
    let me = ps
        .iter()
        .find(|i| i.pid == f.pid)
        .unwrap_or_else(|| panic!("pid {} not in {ps:?}", f.pid));
    assert_eq!(Path::new(&me.program), bin.as_path());
    let h = heap(f.pid);
    assert_eq!((me.objects, me.heap_bytes), (h.objects, h.bytes));
    assert!(me.threads >= 1);
    assert_eq!(me.typemap_id.len(), 16);
    let r = ctl(&["ps"]);
    assert_eq!(r.code, Some(0));
    let line = r
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&f.pid.to_string()))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(line.ends_with(&bin.display().to_string()), "{line}");
}
