//! Fixture drop_privileges: started as root, start-up calls setsid() and
//! drops to nobody (setgroups, setgid, setuid). The new version is spawned
//! by the old process, already nobody, so its start-up's calls are replayed
//! against the old start-up log (mcr-rt identity.rs): the ones whose effect
//! already holds answer as the old ones did, setsid is made for real.
//!
//! These tests must run as root (CI does). Elsewhere they fail, naming the
//! reason, unless `MCR_E2E_SKIP_ROOT=1` is set, which makes them pass with
//! a "SKIPPED" line on stderr.

use mcr_e2e::{Case, Opt, Server};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const NOBODY: u32 = 65534;

/// False (after saying so) when the test must be skipped.
fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("MCR_E2E_SKIP_ROOT").is_some() {
        eprintln!("SKIPPED: drop_privileges tests need root (MCR_E2E_SKIP_ROOT is set)");
        return false;
    }
    panic!(
        "the drop_privileges tests start the fixture as root so that it can drop its privileges to \
         nobody ({NOBODY}); run them as root (CI does), or set MCR_E2E_SKIP_ROOT=1 to skip them"
    );
}

/// A case whose directory nobody can enter: the old version, nobody by
/// then, starts the new binary from it.
fn case() -> Case {
    let case = Case::new("drop_privileges");
    std::fs::set_permissions(case.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod case directory");
    case
}

fn bins(case: &Case, v_to: u32, to_defines: &[&str]) -> (PathBuf, PathBuf) {
    (
        case.bin(1, Opt::O2),
        case.bin_with(v_to, Opt::O2, to_defines),
    )
}

/// `Uid:`/`Gid:` (real, effective, saved, filesystem) and `Groups:` of a
/// process (`pid`) or one of its threads (`pid/task/tid`).
fn status_ids(pid: &str) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| -> Vec<u32> {
        st.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(|v| v.parse().expect("numeric id"))
            .collect()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

/// Session id of a process (field 6 of /proc/PID/stat: state, ppid, pgrp, session after the name).
fn session(pid: u32) -> i32 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let rest = st.rsplit_once(')').expect("stat").1;
    rest.split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .expect("session field")
}

fn assert_dropped(s: &Server) {
    // Every thread: the runtime's own (its control thread) too.
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", s.pid))
        .expect("/proc/PID/task")
        .flatten()
        .map(|e| format!("{}/task/{}", s.pid, e.file_name().to_string_lossy()))
        .collect();
    assert!(
        tasks.len() >= 2,
        "the runtime's control thread runs: {tasks:?}"
    );
    for t in std::iter::once(s.pid.to_string()).chain(tasks) {
        let (uid, gid, groups) = status_ids(&t);
        assert_eq!(uid, [NOBODY; 4], "Uid of {t} (real, effective, saved, fs)");
        assert_eq!(gid, [NOBODY; 4], "Gid of {t}");
        assert_eq!(groups, [NOBODY], "Groups of {t}");
    }
    assert_eq!(
        session(s.pid),
        s.pid as i32,
        "pid {} leads its own session",
        s.pid
    );
    s.check();
}

fn populate(s: &Server) -> mcr_e2e::Client {
    assert_dropped(s);
    assert_eq!(s.cmd("INC"), "1");
    assert_eq!(s.cmd("INC"), "2");
    let mut c = s.client();
    assert_eq!(c.cmd("SET alpha 10"), "OK");
    assert_eq!(c.cmd("SET beta 20"), "OK");
    assert_eq!(c.cmd("GET alpha"), "10");
    assert_eq!(s.dump(), "n=2 alpha=10 beta=20");
    c
}

fn across(v_to: u32) {
    if !as_root() {
        return;
    }
    let case = case();
    let (b1, b2) = bins(&case, v_to, &[]);
    let mut s = case.start(&b1);
    let mut c = populate(&s);
    let old_sid = session(s.pid);

    let rep = s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_dropped(&s);
    assert_ne!(
        session(s.pid),
        old_sid,
        "the new version left the old session"
    );
    assert_eq!(s.dump(), "n=2 alpha=10 beta=20");
    // String literals of the old binary that the state points to: read
    // from its image, mapped from the path it ran from.
    assert_eq!(s.cmd("HOW"), "alpha=new beta=new");
    // The connection from before the update still works.
    assert_eq!(c.cmd("GET beta"), "20");
    assert_eq!(c.cmd("SET gamma 30"), "OK");
    assert_eq!(c.cmd("SET alpha 11"), "OK");
    assert_eq!(s.cmd("INC"), "3");
    assert!(rep.new_pid != rep.old_pid);

    // Once more: the new version's own log (its replayed calls) serves the
    // next update. "new" is still a literal of the first binary: its image
    // comes to the third process inherited from the second, whose /proc
    // entries are closed to it (both run as nobody).
    s.update_ok(&b2);
    assert_dropped(&s);
    assert_eq!(s.dump(), "n=3 alpha=11 beta=20 gamma=30");
    // beta's literal is the first binary's, gamma's the second's.
    assert_eq!(s.cmd("HOW"), "alpha=replaced beta=new gamma=new");
    assert_eq!(c.cmd("GET gamma"), "30");
}

#[test]
fn drop_privileges_v1_to_v1() {
    across(1);
}

#[test]
fn drop_privileges_v1_to_v2() {
    across(2);
}

/// A fault in each phase: the old version (nobody, its session) serves on;
/// then, faults cleared, the update goes through.
#[test]
fn drop_privileges_rolls_back_in_every_phase() {
    if !as_root() {
        return;
    }
    let case = case();
    let (b1, b2) = bins(&case, 2, &[]);
    let mut s = case.start(&b1);
    let mut c = populate(&s);
    let old = s.pid;
    for phase in mcr_e2e::FAULT_PHASES {
        assert_eq!(s.cmd(&format!("FAULT {phase}")), "OK");
        let msg = s.update_rolls_back(&b2, &[]);
        assert!(
            msg.contains("rolled back") || msg.contains("exited"),
            "{phase}: {msg}"
        );
        assert_eq!(s.pid, old);
        assert_eq!(s.version(), "1");
        assert_dropped(&s);
        assert_eq!(c.cmd("GET alpha"), "10", "{phase}");
    }
    assert_eq!(s.cmd("FAULT NONE"), "OK");
    s.update_ok(&b2);
    assert_dropped(&s);
    assert_eq!(s.dump(), "n=2 alpha=10 beta=20");
    assert_eq!(c.cmd("GET alpha"), "10");
}

/// v2 drops to uid 1 where v1 dropped to 65534: the new version cannot take
/// other credentials than the old one kept. Rolled back, naming the call
/// and both uids; the old version serves on.
#[test]
fn drop_privileges_to_another_uid_rolls_back() {
    if !as_root() {
        return;
    }
    let case = case();
    let (b1, b2) = bins(&case, 2, &["OTHER_UID"]);
    let mut s = case.start(&b1);
    let mut c = populate(&s);
    let msg = s.update_rolls_back(&b2, &[]);
    assert!(
        msg.contains("setuid(1)") && msg.contains("setuid(65534)"),
        "the message names the call and both uids: {msg}"
    );
    assert_eq!(s.version(), "1");
    assert_dropped(&s);
    assert_eq!(c.cmd("GET beta"), "20");
    assert_eq!(s.dump(), "n=2 alpha=10 beta=20");
}

/// Master pid, then its workers' (fork_workers' PIDS).
fn worker_pids(s: &Server) -> Vec<u32> {
    s.cmd("PIDS")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

fn assert_master_root_workers_nobody(s: &Server) -> Vec<u32> {
    let pids = worker_pids(s);
    assert_eq!(pids.len(), 3, "master and two workers: {pids:?}");
    assert_eq!(
        status_ids(&pids[0].to_string()).0,
        [0; 4],
        "master stays root"
    );
    for w in &pids[1..] {
        let (uid, gid, groups) = status_ids(&w.to_string());
        assert_eq!(uid, [NOBODY; 4], "Uid of worker {w}");
        assert_eq!(gid, [NOBODY; 4], "Gid of worker {w}");
        assert_eq!(groups, [NOBODY], "Groups of worker {w}");
    }
    pids
}

/// nginx's shape (fork_workers -DWORKERS_DROP): the master stays root, the
/// workers it forks at start-up drop to nobody. The new master is root like
/// the old one; its new workers drop for real and receive their old
/// counterparts' state. Rolled back in the master's or a worker's transfer,
/// the new workers go with the new master.
#[test]
fn workers_drop_privileges_master_stays_root() {
    if !as_root() {
        return;
    }
    let case = Case::new("fork_workers");
    let b1 = case.bin_with(1, Opt::O2, &["WORKERS_DROP"]);
    let b2 = case.bin_with(2, Opt::O2, &["WORKERS_DROP"]);
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("W 0 5"), "W 0 5");
    assert_eq!(c.cmd("W 1 7"), "W 1 7");
    s.check();
    let old = assert_master_root_workers_nobody(&s);
    for phase in ["transfer", "worker"] {
        assert_eq!(s.cmd(&format!("FAULT {phase}")), "OK");
        let msg = s.update_rolls_back(&b2, &[]);
        assert!(msg.contains("rolled back"), "{phase}: {msg}");
        assert_eq!(worker_pids(&s), old, "{phase}: the old workers serve on");
    }
    assert_eq!(s.cmd("FAULT NONE"), "OK");
    let r = s
        .update(&b2)
        .unwrap_or_else(|e| panic!("update failed: {e}\n{}", s.log()));
    assert_eq!(r.workers, 2, "workers paired: {r:?}");
    assert_eq!(s.version(), "2");
    let new = assert_master_root_workers_nobody(&s);
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} -> {new:?}");
    assert_eq!(s.dump(), "forwarded=2 0:5:1 1:7:1");
    s.check();
    assert_eq!(c.cmd("W 0 1"), "W 0 6");
}
