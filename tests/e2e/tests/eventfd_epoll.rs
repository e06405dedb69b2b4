//! Fixture eventfd_epoll: eventfd counters and a nested epoll set.

use mcr_e2e::{wait_for, Case, Opt};
use std::time::Duration;

fn across(v_to: u32, opt: Opt) {
    let case = Case::new("eventfd_epoll");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("ADDEV 5"), "OK");
    assert_eq!(c.cmd("ADDEV 7"), "OK");
    assert_eq!(c.cmd("KICK 3"), "OK");
    wait_for(Duration::from_secs(5), || {
        (c.cmd("KICKS") == "1 3").then_some(())
    })
    .expect("kick seen");
    assert_eq!(c.cmd("KICK 4"), "OK");
    wait_for(Duration::from_secs(5), || {
        (c.cmd("KICKS") == "2 7").then_some(())
    })
    .expect("kick seen");
    s.check();
    let before = s.dump();
    assert!(before.contains("ready=1"), "{before}");
    s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    s.check();
    // The kernel counter carried over; the polled eventfd still wakes the loop.
    assert_eq!(c.cmd("TAKEEV"), "12");
    assert_eq!(c.cmd("KICK 10"), "OK");
    wait_for(Duration::from_secs(5), || {
        (c.cmd("KICKS") == "3 17").then_some(())
    })
    .expect("kick after the update");
    s.check();
    assert!(s.dump().contains("ready=0"));
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
