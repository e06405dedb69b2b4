//! Fixture tcp_state: listening + connected TCP sockets, state per connection.

use mcr_e2e::{Case, Client, Opt, Server};

/// Three named clients with sums, one that came and left; returns the open ones
/// with the `ME` answer each expects.
fn populate(s: &Server) -> Vec<(Client, String)> {
    let mut out = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let mut c = s.client();
        assert_eq!(c.cmd(&format!("NAME {name}")), "OK");
        for k in 0..=i as i64 {
            c.cmd(&format!("ADD {}", 10 * (k + 1)));
        }
        let me = c.cmd("ME");
        out.push((c, me));
    }
    let mut gone = s.client();
    gone.cmd("ADD 5");
    assert_eq!(gone.cmd("QUIT"), "BYE");
    s.check();
    out
}

fn same_state_across(v_from: u32, v_to: u32, opt: Opt) {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(v_from, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    let mut conns = populate(&s);
    let before = s.dump();
    assert!(
        before.contains(":alice:") && before.contains("closed=1"),
        "{before}"
    );
    s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before, "DUMP after the update");
    s.check();
    // Every connection opened before still works, with its own state.
    for (c, me) in conns.iter_mut() {
        assert_eq!(&c.cmd("ME"), me);
        let sum: i64 = me.split(' ').nth(3).unwrap().parse().unwrap();
        assert_eq!(c.cmd("ADD 1"), (sum + 1).to_string());
    }
    // A new connection is accepted by the new version.
    let mut fresh = s.client();
    assert_eq!(fresh.cmd("NAME dave"), "OK");
    s.check();
}

#[test]
fn v1_to_v1_o2() {
    same_state_across(1, 1, Opt::O2);
}

#[test]
fn v1_to_v1_o0() {
    same_state_across(1, 1, Opt::O0);
}

/// v2 reorders struct conn and adds a field: the DUMP format is the same.
#[test]
fn v1_to_v2_o2() {
    same_state_across(1, 2, Opt::O2);
}

/// v1 -> v2 -> v1: the added field goes away again; state intact after both.
#[test]
fn chained_v1_v2_v1() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut conns = populate(&s);
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.dump(), before);
    conns[0].0.cmd("ADD 100");
    let mid = s.dump();
    s.update_ok(&b1);
    assert_eq!(s.version(), "1");
    assert_eq!(s.dump(), mid);
    s.check();
    for (c, _) in conns.iter_mut() {
        c.cmd("ME");
    }
    assert_eq!(s.pids.len(), 3);
}

/// Many connections, each with its own state, across one update.
#[test]
fn sixty_connections_v1_to_v2() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut conns: Vec<Client> = (0..60)
        .map(|i| {
            let mut c = s.client();
            assert_eq!(c.cmd(&format!("NAME c{i}")), "OK");
            assert_eq!(c.cmd(&format!("ADD {i}")), i.to_string());
            c
        })
        .collect();
    s.check();
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.dump(), before);
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(c.cmd("ADD 1000"), (i + 1000).to_string());
    }
    s.check();
}

/// Half a command line sent before the update, the rest after (the bytes
/// sit in struct conn's line buffer across the update).
#[test]
fn half_line_completes_v1_to_v2() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("ADD 5"), "5");
    c.send(b"AD").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    s.update_ok(&b2);
    c.send(b"D 2\n").unwrap();
    assert_eq!(c.read_line().unwrap(), "7");
    s.check();
}

/// The updated server still obeys signals: SIGTERM (default action) ends it.
#[test]
fn sigterm_ends_the_new_version() {
    let case = Case::new("tcp_state");
    let b1 = case.bin(1, Opt::O2);
    let mut s = case.start(&b1);
    assert_eq!(mcr_e2e::sig_blocked(s.pid), "0000000000000000");
    let rep = s.update(&b1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        mcr_e2e::sig_blocked(rep.new_pid),
        "0000000000000000",
        "main thread of the new version"
    );
    // SAFETY: signalling the fixture process this test started.
    unsafe { libc::kill(rep.new_pid as i32, libc::SIGTERM) };
    let gone = mcr_e2e::wait_for(std::time::Duration::from_secs(3), || {
        (!mcr_e2e::pid_alive(rep.new_pid)).then_some(())
    });
    assert!(gone.is_some(), "the new version ignored SIGTERM");
}
