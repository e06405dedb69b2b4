//! Fixture half_request: requests cut before an update complete after it.

use mcr_e2e::{Case, Opt};

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h = (h ^ x as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// `poke`: wake the select() loop after the update (docs/history.md #7).
fn across(v_to: u32, opt: Opt, poke: bool) {
    let case = Case::new("half_request");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    let mut a = s.client();
    let mut b = s.client();
    let mut d = s.client();
    d.send(b"PUT full 5\nabcde").unwrap();
    assert_eq!(
        d.read_line().unwrap(),
        format!("STORED full 5 {:016x}", fnv(b"abcde"))
    );
    // Half a command line; a complete header and half a body.
    a.send(b"ECHO hel").unwrap();
    b.send(b"PUT k1 10\n01234").unwrap();
    // Wait until the server has buffered both (DUMP shows the parsers).
    // (connection 1 is the harness's admin connection)
    let want = "2:LINE:8:0/0 3:BODY:0:5/10";
    mcr_e2e::wait_for(std::time::Duration::from_secs(5), || {
        s.dump().contains(want).then_some(())
    })
    .unwrap_or_else(|| panic!("parsers not as expected: {}", s.dump()));
    let before = s.dump();
    s.update_ok(&b2);
    if poke {
        s.poke();
    }
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    s.check();
    a.send(b"lo\n").unwrap();
    assert_eq!(a.read_line().unwrap(), "hello");
    b.send(b"56789").unwrap();
    assert_eq!(
        b.read_line().unwrap(),
        format!("STORED k1 10 {:016x}", fnv(b"0123456789"))
    );
    assert_eq!(b.cmd("GET k1"), "0123456789");
    assert_eq!(d.cmd("GET full"), "abcde");
    s.check();
}

#[test]
fn v1_to_v1_o2() {
    across(1, Opt::O2, true);
}

/// v2 renumbers the parser's enum (BODY 1 -> 2) and reorders its struct.
#[test]
fn v1_to_v2_o2() {
    across(2, Opt::O2, true);
}

#[test]
fn v1_to_v1_o0() {
    across(1, Opt::O0, true);
}

#[test]
fn select_loop_serves_old_connections_without_poke() {
    across(1, Opt::O2, false);
}
