//! Fixture thread_pool: workers blocked in pthread_cond_wait, per-worker
//! counters in a global array.

use mcr_e2e::{Case, Opt};

fn across(v_to: u32, opt: Opt) {
    let case = Case::new("thread_pool");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("JOB 0 5"), "DONE 0 1 5");
    assert_eq!(c.cmd("JOB 1 7"), "DONE 1 1 7");
    assert_eq!(c.cmd("JOB 1 3"), "DONE 1 2 10");
    assert_eq!(c.cmd("JOB 3 1"), "DONE 3 1 1");
    assert_eq!(c.cmd("FANOUT 2"), "OK");
    s.check();
    let before = s.dump();
    assert_eq!(before, "0:2:7 1:3:12 2:1:2 3:2:3 total=8 queued=0");
    s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    s.check();
    // Every worker of the new version takes jobs and continues its counters.
    assert_eq!(c.cmd("JOB 0 1"), "DONE 0 3 8");
    assert_eq!(c.cmd("JOB 1 1"), "DONE 1 4 13");
    assert_eq!(c.cmd("JOB 2 1"), "DONE 2 2 3");
    assert_eq!(c.cmd("JOB 3 1"), "DONE 3 3 4");
    assert_eq!(c.cmd("FANOUT 1"), "OK");
    assert_eq!(s.dump(), "0:4:9 1:5:14 2:3:4 3:4:5 total=16 queued=0");
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

/// Thread-local counters of the workers (`__thread`): each new worker
/// carries its counterpart's.
#[test]
fn thread_locals_carried_v1_to_v1() {
    let case = Case::new("thread_pool");
    let b1 = case.bin(1, Opt::O2);
    let mut s = case.start(&b1);
    let mut c = s.client();
    c.cmd("JOB 2 1");
    c.cmd("JOB 2 1");
    assert_eq!(c.cmd("TLS 2"), "TLS 2 2");
    s.update_ok(&b1);
    assert_eq!(c.cmd("TLS 2"), "TLS 2 2");
}
