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

/// Every thread's `__thread` variables: each new worker (paired by start
/// routine and creation order) and the new main thread carry their
/// counterpart's, converted when their types change (v2: int -> long, a
/// struct gaining a field), with the pointers they hold rewritten (to a
/// heap object that moves in v2, to a global of the new binary).
fn thread_locals(v_to: u32, opt: Opt) {
    let case = Case::new("thread_pool");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("TLS 1"), "TLS 1 0 0 0 0 0 1");
    assert_eq!(c.cmd("JOB 2 5"), "DONE 2 1 5");
    assert_eq!(c.cmd("JOB 2 7"), "DONE 2 2 12");
    assert_eq!(c.cmd("JOB 0 3"), "DONE 0 1 3");
    assert_eq!(c.cmd("FANOUT 4"), "OK");
    let want = [
        "TLS 0 2 2 4 2 7 1",
        "TLS 1 1 1 4 1 4 1",
        "TLS 2 3 3 4 3 16 1",
        "TLS 3 1 1 4 1 4 1",
    ];
    let ask = |c: &mut mcr_e2e::Client| -> Vec<String> {
        (0..4).map(|w| c.cmd(&format!("TLS {w}"))).collect()
    };
    assert_eq!(ask(&mut c), want);
    assert_eq!(c.cmd("MAINTLS"), "MAINTLS 3");
    assert_eq!(c.cmd("STATOF 2"), "STATOF 2 4");
    let r = s.update_ok(&b2);
    // 5 thread-locals in each of 5 threads (main and 4 workers).
    assert_eq!(r.thread_locals, 25, "{r:?}");
    if v_to == 2 {
        // The 4 workers' tl_hist objects change layout.
        assert!(r.objects_moved >= 4, "{r:?}");
    }
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(ask(&mut c), want, "thread-locals after the update");
    assert_eq!(c.cmd("MAINTLS"), "MAINTLS 3");
    // A global pointer to a worker's thread-local now points to its
    // counterpart's.
    assert_eq!(c.cmd("STATOF 2"), "STATOF 2 4");
    assert_eq!(c.cmd("JOB 1 9"), "DONE 1 2 13");
    assert_eq!(c.cmd("STATOF 1"), "STATOF 1 9");
    // The new threads go on from there.
    assert_eq!(c.cmd("JOB 2 10"), "DONE 2 4 26");
    assert_eq!(c.cmd("TLS 2"), "TLS 2 4 4 10 4 26 1");
    assert_eq!(c.cmd("MAINTLS"), "MAINTLS 5");
    s.check();
}

#[test]
fn thread_locals_carried_v1_to_v1() {
    thread_locals(1, Opt::O2);
}

#[test]
fn thread_locals_carried_v1_to_v1_o0() {
    thread_locals(1, Opt::O0);
}

#[test]
fn thread_locals_converted_v1_to_v2() {
    thread_locals(2, Opt::O2);
}

#[test]
fn thread_locals_converted_v1_to_v2_o0() {
    thread_locals(2, Opt::O0);
}
