//! Fixture pipe_self: bytes in a pipe to itself survive an update.

use mcr_e2e::{wait_for, Case, Opt};
use std::time::Duration;

fn across(v_to: u32, opt: Opt) {
    let case = Case::new("pipe_self");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("PUT alpha"), "6");
    assert_eq!(c.cmd("PUT beta"), "11");
    assert_eq!(c.cmd("TAKE 3"), "alp");
    for _ in 0..3 {
        assert_eq!(c.cmd("WAKE"), "OK");
    }
    wait_for(Duration::from_secs(5), || {
        s.dump().contains("wakes=3").then_some(())
    })
    .expect("wakes counted");
    s.check();
    let before = s.dump();
    assert!(before.contains("pending=8"), "{before}");
    s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    s.check();
    // Written before the update, read after it.
    assert_eq!(c.cmd("TAKE 100"), "ha|beta|");
    assert_eq!(c.cmd("TAKE 1"), "EMPTY");
    // Both pipes keep working.
    assert_eq!(c.cmd("PUT gamma"), "17");
    assert_eq!(c.cmd("WAKE"), "OK");
    wait_for(Duration::from_secs(5), || {
        s.dump().contains("wakes=4").then_some(())
    })
    .expect("wake after the update");
    assert_eq!(c.cmd("TAKE 100"), "gamma|");
    s.check();
}

#[test]
fn v1_to_v1_o2() {
    across(1, Opt::O2);
}

#[test]
fn v1_to_v2_o2() {
    across(2, Opt::O2);
}

#[test]
fn v1_to_v1_o0() {
    across(1, Opt::O0);
}
