//! Fixture prefork: workers forked at start-up accept the clients
//! themselves (nginx, Apache prefork). Their connections, each with a heap
//! state registered with epoll by pointer, must stay open across an update
//! and be served by the new workers with that state, in the new layout.

use mcr_e2e::{program_fds, Case, Client, Opt, Server};
use std::time::Duration;

/// `WHO` on a connection: (worker pid, its parent, its slot).
fn who(c: &mut Client) -> (u32, u32, i32) {
    let r = c.cmd("WHO");
    let f: Vec<&str> = r.split_whitespace().collect();
    assert_eq!(f.len(), 3, "WHO: {r}");
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    )
}

struct Conn {
    c: Client,
    name: String,
    sum: i64,
    adds: i64,
}

/// Workers the fixture forks at start-up (`NWK` in prefork.c).
const WORKERS: usize = 2;

/// Waits (up to 5 s) until the master has forked all its workers: the
/// server answers as soon as its first worker accepts, and under load the
/// second fork can come later (a rollback test compares the processes
/// before and after the update).
fn wait_all_workers(s: &Server) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.processes().len() < 1 + WORKERS {
        assert!(
            std::time::Instant::now() < deadline,
            "the master did not fork its {WORKERS} workers within 5 s: {:?}\n{}",
            s.processes(),
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Opens `n` named connections, each with a few additions. Returns them
/// and the expected total of each worker pid.
fn populate(s: &Server, n: usize) -> Vec<Conn> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = s.client();
        let name = format!("conn{i}");
        assert_eq!(c.cmd(&format!("NAME {name}")), "OK");
        let mut sum = 0;
        for x in 1..=(i as i64 + 1) {
            let r = c.cmd(&format!("ADD {x}"));
            sum += x;
            assert!(r.starts_with(&format!("{sum} ")), "ADD: {r}");
        }
        out.push(Conn {
            c,
            name,
            sum,
            adds: i as i64 + 1,
        });
    }
    out
}

/// Every connection still answers with its own state, from a worker of
/// the master `master`; returns the worker pids seen.
fn check_all(conns: &mut [Conn], master: u32) -> Vec<u32> {
    let mut workers = Vec::new();
    for k in conns.iter_mut() {
        let d = k.c.cmd("DUMP");
        assert!(
            d.starts_with(&format!("name={} sum={} adds={} ", k.name, k.sum, k.adds)),
            "{}: {d}",
            k.name
        );
        assert_eq!(k.c.cmd("CHECK"), "OK", "{}", k.name);
        let (pid, parent, _) = who(&mut k.c);
        assert_eq!(
            parent, master,
            "{} is served by a child of the master",
            k.name
        );
        workers.push(pid);
    }
    workers.sort();
    workers.dedup();
    workers
}

/// `DUMP`'s total: each worker's total over the connections it serves.
fn totals(conns: &mut [Conn]) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = conns
        .iter_mut()
        .map(|k| {
            let d = k.c.cmd("DUMP");
            let t = d.rsplit_once("total=").unwrap().1.to_string();
            (who(&mut k.c).2 as u32, t)
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn across(v_to: u32, opt: Opt) {
    across_with(v_to, opt, &[]);
}

fn across_with(v_to: u32, opt: Opt, defines: &[&str]) {
    let case = Case::new("prefork");
    let (b1, b2) = (
        case.bin_with(1, opt, defines),
        case.bin_with(v_to, opt, defines),
    );
    let mut s = case.start(&b1);
    let mut conns = populate(&s, 8);
    // Connections that come and go: their workers keep a stale pointer to
    // the last one they dropped.
    for _ in 0..4 {
        let mut c = s.client();
        assert_eq!(c.cmd("PING"), "PONG");
    }
    std::thread::sleep(Duration::from_millis(100));
    let before_admin = s.dump();
    let before_shared = s.cmd("SHARED");
    let old_workers = check_all(&mut conns, s.pid);
    let before_totals = totals(&mut conns);
    // A request half received when the update starts.
    conns[3].c.send(b"ADD 10").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let old_procs = s.processes();
    assert_eq!(old_procs.len(), 3, "master and two workers: {old_procs:?}");
    let master_fds = program_fds(s.pid);

    let r = s
        .update(&b2)
        .unwrap_or_else(|e| panic!("update failed: {e}\n{}", s.log()));
    assert_eq!(r.workers, 2, "workers paired: {r:?}");
    assert!(r.worker_fds >= 8, "connections handed over: {r:?}");
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(program_fds(s.pid), master_fds, "the master's descriptors");
    // The admin connection is a client of a worker too.
    assert_eq!(s.dump(), before_admin, "admin connection's state");
    // The shared zone is the old one, seen by every new worker.
    assert_eq!(s.cmd("SHARED"), before_shared, "shared zone counters");
    s.check();

    // The half request completes on the new worker.
    conns[3].c.send(b"\n").unwrap();
    let r = conns[3].c.read_line().unwrap();
    conns[3].sum += 10;
    conns[3].adds += 1;
    assert!(
        r.starts_with(&format!("{} ", conns[3].sum)),
        "half request: {r}"
    );

    let new_workers = check_all(&mut conns, s.pid);
    for w in &new_workers {
        assert!(!old_workers.contains(w), "worker {w} is an old one");
    }
    // Totals per slot, minus the half request's 10.
    let mut after = totals(&mut conns);
    for (slot, t) in after.iter_mut() {
        let slot_of_3 = who(&mut conns[3].c).2 as u32;
        if *slot == slot_of_3 {
            *t = (t.parse::<i64>().unwrap() - 10).to_string();
        }
    }
    assert_eq!(after, before_totals, "each worker's total");
    // The old master and workers exit after the commit, asynchronously: wait
    // (bounded) until none is left. A new worker no test connection landed
    // on is not in `new_workers`, so the new set is known only by count.
    let gone = mcr_e2e::wait_for(Duration::from_secs(5), || {
        let now = s.processes();
        (now.len() == 3 && now.iter().all(|p| !old_procs.contains(p))).then_some(now)
    });
    let now = gone.unwrap_or_else(|| {
        panic!(
            "old master and workers gone: processes {:?}, old {old_procs:?}\n{}",
            s.processes(),
            s.log()
        )
    });
    assert!(now.contains(&s.pid), "the new master serves: {now:?}");
    for w in &new_workers {
        assert!(now.contains(w), "new worker {w} serves: {now:?}");
    }

    // The connections go on, and new ones are accepted.
    for k in conns.iter_mut() {
        let r = k.c.cmd("ADD 1");
        k.sum += 1;
        k.adds += 1;
        assert!(r.starts_with(&format!("{} ", k.sum)), "{}: {r}", k.name);
    }
    let mut more = populate(&s, 4);
    check_all(&mut more, s.pid);
    check_all(&mut conns, s.pid);
    // Every ADD and accept since start-up, by any worker of either
    // version, counted once in the one zone (the half request included).
    let adds: i64 = conns.iter().chain(&more).map(|k| k.adds).sum();
    for k in conns.iter_mut().chain(more.iter_mut()) {
        let r = k.c.cmd("SHARED");
        let got: i64 = r.split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(got, adds, "shared adds seen by {}: {r}", k.name);
    }
}

#[test]
fn connections_v1_to_v1() {
    across(1, Opt::O2);
}

#[test]
fn connections_v1_to_v2() {
    across(2, Opt::O2);
}

#[test]
fn connections_v1_to_v2_o0() {
    across(2, Opt::O0);
}

/// The workers' start-up waits on its epoll instance once before its loop
/// (nginx's probe, with a timeout); mcr.toml `[quiescent]` names the loops,
/// so the start-up ends there.
#[test]
fn declared_loops_v1_to_v2() {
    across_with(2, Opt::O2, &["DECLARED_LOOPS"]);
}

#[test]
fn declared_loops_v1_to_v1_o0() {
    across_with(1, Opt::O0, &["DECLARED_LOOPS"]);
}

/// Twice in a row: the new workers' connections are carried again.
#[test]
fn connections_chained() {
    let case = Case::new("prefork");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut conns = populate(&s, 6);
    for b in [&b2, &b1, &b2] {
        s.update(b)
            .unwrap_or_else(|e| panic!("update failed: {e}\n{}", s.log()));
        check_all(&mut conns, s.pid);
        s.check();
    }
    assert_eq!(s.version(), "2");
}

/// A fault in each phase rolls back: the old workers keep their
/// connections and serve them.
#[test]
fn rollback_keeps_connections() {
    for phase in ["quiesce", "transfer", "worker", "crash"] {
        let case = Case::new("prefork");
        let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
        let mut s = case.start_with(&b1, &[("MCR_FAULT", phase)], &[]);
        wait_all_workers(&s);
        let mut conns = populate(&s, 4);
        let old = check_all(&mut conns, s.pid);
        let msg = s.update_rolls_back(&b2, &[]);
        assert!(msg.contains("rolled back"), "{phase}: {msg}");
        assert_eq!(
            check_all(&mut conns, s.pid),
            old,
            "{phase}: the old workers serve"
        );
        assert_eq!(s.version(), "1");
    }
}

/// A worker respawned after start-up is not carried: the update is refused
/// before anything stops, and every worker serves on.
#[test]
fn respawned_worker_refused() {
    let case = Case::new("prefork");
    let b1 = case.bin(1, Opt::O2);
    let mut s = case.start(&b1);
    let mut conns = populate(&s, 4);
    // Kill the worker of a connection other than the admin one.
    let admin_worker: u32 = s
        .cmd("WHO")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("WHO on the admin connection");
    let victim = conns
        .iter_mut()
        .map(|k| who(&mut k.c).0)
        .find(|&p| p != admin_worker);
    let victim = match victim {
        Some(v) => v,
        None => {
            // Every test connection landed on one worker: kill the other.
            let procs = s.processes();
            *procs
                .iter()
                .find(|&&p| p != s.pid && p != admin_worker)
                .unwrap()
        }
    };
    // SAFETY: a worker process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let respawned = mcr_e2e::wait_for(Duration::from_secs(5), || {
        let p = s.processes();
        (p.len() == 3 && !p.contains(&victim)).then_some(p)
    })
    .expect("the master respawns its worker");
    let msg = s.update_rolls_back(&b1, &[]);
    assert!(
        msg.contains("refused") && msg.contains("respawned worker"),
        "{msg}"
    );
    assert_eq!(s.processes(), respawned, "every worker serves on");
    let mut fresh = populate(&s, 4);
    check_all(&mut fresh, s.pid);
}

/// A worker respawned after start-up, updated on its own (as one would an
/// sshd session process): refused before anything stops, naming the
/// process that forked it; it and every other worker serve on. (Accepted,
/// its new version ran main() again and left the old one's work behind.)
#[test]
fn late_child_alone_refused() {
    let case = Case::new("prefork");
    let b1 = case.bin(1, Opt::O2);
    let s = case.start(&b1);
    let before = s.processes();
    let victim = *before.iter().find(|&&p| p != s.pid).expect("a worker");
    // SAFETY: a worker process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let after = mcr_e2e::wait_for(Duration::from_secs(5), || {
        let p = s.processes();
        (p.len() == before.len() && !p.contains(&victim)).then_some(p)
    })
    .expect("the master respawns its worker");
    let late = *after
        .iter()
        .find(|p| !before.contains(p))
        .expect("the respawned worker");
    mcr_e2e::wait_for(Duration::from_secs(5), || {
        mcr_e2e::has_control_socket(late).then_some(())
    })
    .expect("the respawned worker's control socket");
    let msg = mcr_e2e::update(late, &b1).expect_err("updating a late child alone");
    assert!(
        msg.contains("refused")
            && msg.contains(&format!("forked by pid {}", s.pid))
            && msg.contains("not updated on its own"),
        "{msg}"
    );
    assert_eq!(s.processes(), after, "every worker serves on");
    let mut fresh = populate(&s, 4);
    check_all(&mut fresh, s.pid);
}
