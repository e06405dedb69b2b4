//! Fixture startup_inputs: what start-up drew from random devices,
//! `getrandom`, the clocks and the host name is answered to the new
//! version's start-up from the old one's log, so a hash table seeded at
//! start-up still finds its keys and the uptime does not go back.

use mcr_e2e::{Case, Opt, Server};
use std::time::Duration;

fn fill(s: &Server) {
    let mut c = s.client();
    for i in 0..40 {
        assert_eq!(c.cmd(&format!("SET key{i} value{i}")), "OK");
    }
    // Some time passes between start-up and the update: a fresh draw of
    // the monotonic start would make the uptime go back by at least this.
    std::thread::sleep(Duration::from_millis(300));
    let up: u64 = c.cmd("UPTIME").parse().unwrap();
    assert!(up >= 300, "uptime {up} ms");
    s.check();
}

fn carried(s: &mut Server, c: &mut mcr_e2e::Client, before: &str) {
    assert_eq!(
        s.dump(),
        before,
        "start-up inputs and keys after the update"
    );
    assert_eq!(
        c.cmd("GET key7"),
        "value7",
        "a key set before, on a connection kept"
    );
    assert_eq!(
        s.client().cmd("GET key39"),
        "value39",
        "on a new connection"
    );
    assert_eq!(c.cmd("SET after x"), "OK");
    assert_eq!(c.cmd("GET after"), "x");
    s.check();
}

/// Two processes of the same binary draw different inputs: what the tests
/// below check is not a coincidence.
#[test]
fn two_starts_draw_different_inputs() {
    let case = Case::new("startup_inputs");
    let b1 = case.bin(1, Opt::O2);
    let a = case.start(&b1);
    let b = case.start(&b1);
    let (ia, ib) = (a.cmd("INPUTS"), b.cmd("INPUTS"));
    let field = |s: &str, k: &str| {
        s.split(' ')
            .find(|w| w.starts_with(k))
            .map(str::to_owned)
            .unwrap()
    };
    for k in ["id=", "seed=", "salt=", "started=", "mono="] {
        assert_ne!(field(&ia, k), field(&ib, k), "{k} of two processes");
    }
}

/// Filled by v1, updated to `to`: every input and key carried.
fn carried_to(to: u32) {
    let case = Case::new("startup_inputs");
    let (b1, b_to) = (case.bin(1, Opt::O2), case.bin(to, Opt::O2));
    let mut s = case.start(&b1);
    fill(&s);
    let mut c = s.client();
    let before = s.dump();
    s.update_ok(&b_to);
    assert_eq!(s.version(), to.to_string());
    carried(&mut s, &mut c, &before);
}

#[test]
fn inputs_carried_v1_to_v1() {
    carried_to(1);
}

#[test]
fn inputs_carried_v1_to_v2() {
    carried_to(2);
}

/// The second update replays the log the first new version kept: the
/// inputs are still the first start-up's.
#[test]
fn inputs_carried_chained_v1_v2_v1() {
    let case = Case::new("startup_inputs");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    fill(&s);
    let mut c = s.client();
    let before = s.dump();
    s.update_ok(&b2);
    carried(&mut s, &mut c, &before);
    let before = s.dump();
    s.update_ok(&b1);
    assert_eq!(s.version(), "1");
    carried(&mut s, &mut c, &before);
}
