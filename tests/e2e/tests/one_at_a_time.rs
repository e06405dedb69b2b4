//! Fixture one_at_a_time: a server that reads one connection to its end
//! before it accepts the next. The harness's admin connection is that
//! connection: it is held through every update, and DUMP and CHECK go
//! through it, so each of them is also an answer on the held connection.

use mcr_e2e::{Case, Opt};

fn fill(s: &mcr_e2e::Server) {
    for (k, v) in [("alpha", 1), ("beta", -20), ("gamma", 300)] {
        assert_eq!(s.cmd(&format!("SET {k} {v}")), "OK");
    }
    assert_eq!(s.cmd("SET alpha 4"), "OK");
}

/// The new version's accept() is answered with the held connection: the
/// client goes on talking to the new version on it.
fn held_connection_goes_on(v_to: u32, opt: Opt) {
    let case = Case::new("one_at_a_time");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    fill(&s);
    let before = s.dump();
    assert_eq!(before, "entries=3 commands=4 alpha=4 beta=-20 gamma=300");
    let rep = s.update_ok(&b2);
    assert_eq!(rep.connections_led, 1, "{rep:?}");
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    s.check();
    assert_eq!(s.cmd("GET beta"), "-20");
    assert_eq!(s.cmd("SET delta 7"), "OK");
    // Chained: the connection the new version was led to is held again.
    assert_eq!(s.update_ok(&b2).connections_led, 1);
    assert_eq!(
        s.dump(),
        "entries=4 commands=6 alpha=4 beta=-20 gamma=300 delta=7"
    );
    s.check();
}

#[test]
fn v1_to_v1_o2() {
    held_connection_goes_on(1, Opt::O2);
}

/// v2 re-lays out the entries and widens their value.
#[test]
fn v1_to_v2_o2() {
    held_connection_goes_on(2, Opt::O2);
}

#[test]
fn v1_to_v2_o0() {
    held_connection_goes_on(2, Opt::O0);
}

/// A new version that serves from an epoll loop of its own would never read
/// the held connection: the update rolls back naming the descriptor, where
/// the old thread waits on it and where the new one waits instead; the old
/// version answers on the connection again.
#[test]
fn new_version_that_would_orphan_the_connection_rolls_back() {
    let case = Case::new("one_at_a_time");
    let b1 = case.bin(1, Opt::O2);
    let b2 = case.bin_with(2, Opt::O2, &["EPOLL_LOOP"]);
    let mut s = case.start(&b1);
    fill(&s);
    // The held connection is the one descriptor besides the listener and
    // the standard streams: the highest socket.
    let conn = mcr_e2e::program_fds(s.pid)
        .into_iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .map(|(n, _)| n)
        .max()
        .unwrap();
    let e = s.update_rolls_back(&b2, &[]);
    assert!(
        e.contains(&format!("descriptor {conn} ")),
        "no descriptor {conn} named: {e}"
    );
    assert!(
        e.contains("old version's main thread waits on it in read at serve+")
            && e.contains("in epoll_wait at "),
        "{e}"
    );
    assert_eq!(s.version(), "1");
    assert_eq!(s.cmd("GET gamma"), "300");
    s.check();
}

/// A thread per connection: the threads that held the connections were
/// created after start-up and have no counterpart in the new version; each
/// connection is led to the new version's accept(), which starts its thread.
#[test]
fn thread_per_connection_v1_to_v2() {
    let case = Case::new("one_at_a_time");
    let b1 = case.bin_with(1, Opt::O2, &["THREAD_PER_CONN"]);
    let b2 = case.bin_with(2, Opt::O2, &["THREAD_PER_CONN"]);
    let mut s = case.start(&b1);
    fill(&s);
    let mut c = s.client();
    assert_eq!(c.cmd("SET other 9"), "OK");
    let before = s.dump();
    let rep = s.update_ok(&b2);
    assert_eq!(rep.connections_led, 2, "{rep:?}");
    assert_eq!(s.version(), "2");
    assert_eq!(s.dump(), before);
    assert_eq!(c.cmd("GET other"), "9");
    assert_eq!(c.cmd("VERSION"), "2");
    // A connection opened after the update is accepted as usual.
    let mut d = s.client();
    assert_eq!(d.cmd("GET alpha"), "4");
    s.check();
}

/// Prefork (Apache's): each worker forked at start-up accepts and reads one
/// connection at a time; each held connection is led to its new worker's
/// accept(), with that worker's own state.
#[test]
fn prefork_workers_v1_to_v2() {
    let case = Case::new("one_at_a_time");
    let b1 = case.bin_with(1, Opt::O2, &["PREFORK"]);
    let b2 = case.bin_with(2, Opt::O2, &["PREFORK"]);
    let mut s = case.start(&b1);
    fill(&s);
    // The admin connection occupies one worker: this one is the other's.
    let mut c = s.client();
    assert_eq!(c.cmd("SET other 9"), "OK");
    let (before, other) = (s.dump(), c.cmd("DUMP"));
    assert_eq!(other, "entries=1 commands=1 other=9");
    let rep = s.update_ok(&b2);
    assert_eq!(rep.workers, 2, "{rep:?}");
    assert_eq!(s.version(), "2");
    assert_eq!(c.cmd("VERSION"), "2");
    assert_eq!(s.dump(), before);
    assert_eq!(c.cmd("DUMP"), other);
    assert_eq!(c.cmd("GET other"), "9");
    s.check();
}
