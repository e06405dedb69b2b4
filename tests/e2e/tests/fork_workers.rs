//! Fixture fork_workers: a master that forks workers at start-up. The new
//! master's start-up forks new workers (its own children), each given its
//! old counterpart's state; the old master and workers leave on commit, or
//! all keep serving on rollback.

use mcr_e2e::{program_fds, sig_blocked, Case, Opt, Server};

fn pids(s: &Server) -> Vec<u32> {
    s.cmd("PIDS")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

fn channel_fds(s: &Server) -> Vec<i32> {
    s.cmd("FDS")
        .split_whitespace()
        .map(|p| p.parse().expect("fd"))
        .collect()
}

fn populate(s: &Server) -> mcr_e2e::Client {
    let mut c = s.client();
    assert_eq!(c.cmd("W 0 5"), "W 0 5");
    assert_eq!(c.cmd("W 1 7"), "W 1 7");
    assert_eq!(c.cmd("W 1 1"), "W 1 8");
    s.check();
    assert_eq!(s.dump(), "forwarded=3 0:5:1 1:8:2");
    c
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort();
    v
}

/// Updates `s` to `bin` (version `v_to`) and checks every value, the
/// process tree and the descriptors.
fn update_and_check(s: &mut Server, bin: &std::path::Path, v_to: u32) {
    let before = s.dump();
    let old_pids = pids(s);
    assert_eq!(old_pids[0], s.pid);
    assert_eq!(
        sorted(s.processes()),
        sorted(old_pids.clone()),
        "master and two workers"
    );
    let old_channels = channel_fds(s);
    let old_fds = program_fds(s.pid);
    let mask = sig_blocked(s.pid);

    // Not update_ok: the master's channels to its workers are new sockets
    // (checked below), every other descriptor must be the old one.
    let r = s
        .update(bin)
        .unwrap_or_else(|e| panic!("update failed: {e}\n{}", s.log()));
    assert_eq!(r.workers, 2, "workers paired: {r:?}");
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(sig_blocked(s.pid), mask, "main thread's blocked signals");

    // Every value: the master's counters and each worker's own counter and
    // served count (asked of the workers themselves).
    assert_eq!(s.dump(), before, "state after the update");
    // Each worker is a live child of the new master, served what the new
    // master's per-worker records say it forwarded.
    s.check();
    let new_pids = pids(s);
    assert_eq!(new_pids[0], s.pid);
    for (k, (&o, &n)) in old_pids[1..].iter().zip(&new_pids[1..]).enumerate() {
        assert_ne!(o, n, "worker {k} is a new process");
    }
    s.wait_processes(&sorted(new_pids.clone()), "old master and workers gone");

    let new_channels = channel_fds(s);
    let new_fds = program_fds(s.pid);
    let strip = |fds: &[(i32, String)], ch: &[i32]| -> Vec<(i32, String)> {
        fds.iter()
            .filter(|(n, _)| !ch.contains(n))
            .cloned()
            .collect()
    };
    assert_eq!(
        strip(&new_fds, &new_channels),
        strip(&old_fds, &old_channels),
        "descriptors other than the workers' channels (new vs old)"
    );
    assert_eq!(
        new_fds.len(),
        old_fds.len(),
        "no descriptor leaked: {new_fds:?}"
    );
    for ch in &new_channels {
        let t = &new_fds
            .iter()
            .find(|(n, _)| n == ch)
            .expect("channel open")
            .1;
        assert!(t.starts_with("socket:"), "channel {ch} is {t}");
        assert!(
            !old_fds.iter().any(|(_, o)| o == t),
            "channel {ch} is an old socket"
        );
    }
}

fn across(v_to: u32) {
    let case = Case::new("fork_workers");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(v_to, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = populate(&s);
    update_and_check(&mut s, &b2, v_to);
    // The workers go on from their state.
    assert_eq!(c.cmd("W 0 1"), "W 0 6");
    assert_eq!(c.cmd("W 1 2"), "W 1 10");
    assert_eq!(s.dump(), "forwarded=5 0:6:2 1:10:3");
    s.check();
}

#[test]
fn v1_to_v1_o2() {
    across(1);
}

#[test]
fn v1_to_v2_o2() {
    across(2);
}

/// The new master logged its own forks and channels: a second and a third
/// update find the workers of the previous one.
#[test]
fn chained_v1_v2_v1() {
    let case = Case::new("fork_workers");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = populate(&s);
    update_and_check(&mut s, &b2, 2);
    assert_eq!(c.cmd("W 0 1"), "W 0 6");
    update_and_check(&mut s, &b1, 1);
    assert_eq!(c.cmd("W 1 2"), "W 1 10");
    update_and_check(&mut s, &b1, 1);
    assert_eq!(s.dump(), "forwarded=5 0:6:2 1:10:3");
    s.check();
}

/// A fault in a phase rolls back: the old master and its old workers serve
/// on with their state, and no new process is left.
fn rolls_back(phase: &str, says: &str) {
    let case = Case::new("fork_workers");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start_with(&b1, &[("MCR_FAULT", phase)], &[]);
    let mut c = populate(&s);
    let old_pids = pids(&s);
    // update_rolls_back checks DUMP (every worker's state), CHECK (the
    // workers are the master's live children) and the process set.
    let msg = s.update_rolls_back(&b2, &[]);
    assert!(
        msg.contains("rolled back") && msg.contains(says),
        "{phase}: {msg}"
    );
    assert_eq!(pids(&s), old_pids, "the old workers serve");
    assert_eq!(s.version(), "1");
    assert_eq!(c.cmd("W 1 1"), "W 1 9");
    assert_eq!(s.dump(), "forwarded=4 0:5:1 1:9:3");
    s.check();
}

#[test]
fn rollback_quiesce() {
    rolls_back("quiesce", "MCR_FAULT=quiesce");
}

#[test]
fn rollback_checkpoint() {
    rolls_back("checkpoint", "MCR_FAULT=checkpoint");
}

#[test]
fn rollback_restore() {
    rolls_back("restore", "MCR_FAULT=restore");
}

/// The new master fails at the end of its start-up, its new workers forked.
#[test]
fn rollback_startup() {
    rolls_back("startup", "MCR_FAULT=startup");
}

#[test]
fn rollback_master_transfer() {
    rolls_back("transfer", "MCR_FAULT=transfer");
}

#[test]
fn rollback_worker_transfer() {
    // Each new worker fails in its own transfer; the new master reports it.
    rolls_back("worker", "MCR_FAULT=worker");
}

#[test]
fn rollback_new_master_crash() {
    // The new master dies after its transfer: its new workers die with it.
    rolls_back("crash", "exited");
}

/// A worker's heap state built after its start-up (a list of typed notes,
/// re-laid out in v2, and an untyped string) goes to its new counterpart.
fn worker_heap(v_to: u32) {
    let case = Case::new("fork_workers");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(v_to, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = populate(&s);
    assert_eq!(c.cmd("K 1 kept"), "K 1 OK");
    for x in [3, 4, 5] {
        assert_eq!(c.cmd(&format!("N 1 {x}")), "N 1 OK");
    }
    assert_eq!(c.cmd("N 0 9"), "N 0 OK");
    assert_eq!(c.cmd("A 0 lib"), "A 0 OK");
    assert_eq!(c.cmd("S 0"), "S 0 <lib> 9,");
    assert_eq!(c.cmd("S 1"), "S 1 kept 5,4,3,");
    update_and_check(&mut s, &b2, v_to);
    assert_eq!(c.cmd("S 0"), "S 0 <lib> 9,");
    assert_eq!(c.cmd("S 1"), "S 1 kept 5,4,3,");
    // The carried list goes on growing in the new worker.
    assert_eq!(c.cmd("N 1 6"), "N 1 OK");
    assert_eq!(c.cmd("K 1 again"), "K 1 OK");
    assert_eq!(c.cmd("S 1"), "S 1 again 6,5,4,3,");
    s.check();
}

#[test]
fn worker_heap_v1_to_v1() {
    worker_heap(1);
}

#[test]
fn worker_heap_v1_to_v2() {
    worker_heap(2);
}

/// Workers that wait in epoll_wait on an epoll instance of their own (made
/// after the fork): the new worker's wait goes round once after its
/// transfer, on the instance its own start-up made.
#[test]
fn epoll_workers_v1_to_v2() {
    let case = Case::new("fork_workers");
    let b1 = case.bin_with(1, Opt::O2, &["WORKER_EPOLL"]);
    let b2 = case.bin_with(2, Opt::O2, &["WORKER_EPOLL"]);
    let mut s = case.start(&b1);
    let mut c = populate(&s);
    assert_eq!(c.cmd("N 0 1"), "N 0 OK");
    update_and_check(&mut s, &b2, 2);
    assert_eq!(c.cmd("S 0"), "S 0 - 1,");
    assert_eq!(c.cmd("W 0 1"), "W 0 6");
    assert_eq!(c.cmd("W 1 2"), "W 1 10");
    update_and_check(&mut s, &b1, 1);
    assert_eq!(s.dump(), "forwarded=5 0:6:2 1:10:3");
    s.check();
}

/// A worker is updated through its master only.
#[test]
fn worker_update_refused() {
    let case = Case::new("fork_workers");
    let b1 = case.bin(1, Opt::O2);
    let s = case.start(&b1);
    let _c = populate(&s);
    let worker = pids(&s)[1];
    let e = mcr_e2e::update_with(worker, &b1, &[]).expect_err("a worker's own update");
    assert!(e.to_string().contains("update the master"), "{e}");
    assert_eq!(s.dump(), "forwarded=3 0:5:1 1:8:2");
    s.check();
}
