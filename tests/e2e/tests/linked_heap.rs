//! Fixture linked_heap: list, tree with parent links, ring; interior pointer.

use mcr_e2e::{Case, Opt, Server};

fn populate(s: &Server, n: usize) {
    let mut c = s.client();
    assert_eq!(c.cmd(&format!("BUILD {n} 42")), format!("OK {n}"));
    for k in [17, 99, 5000] {
        c.cmd(&format!("DEL {k}"));
    }
    let root = c.cmd("ROOT");
    assert_eq!(c.cmd(&format!("DEL {root}")), "DELETED");
    c.cmd("POP");
    assert!(c.cmd(&format!("HOT {}", n / 3)).parse::<i64>().is_ok());
    c.cmd("BUMP");
    s.check();
}

fn across(v_to: u32, opt: Opt, n: usize) {
    let case = Case::new("linked_heap");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    populate(&s, n);
    let before = s.dump();
    let rep = s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before, "DUMP after the update ({rep:?})");
    s.check();
    // The interior pointer still points at the same item's val.
    let mut c = s.client();
    let hot_before: i64 = before
        .split("hot=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(c.cmd("BUMP"), (hot_before + 1).to_string());
    s.check();
    // The structures keep working.
    assert_eq!(c.cmd("BUILD 10 7"), "OK 10");
    let root = c.cmd("ROOT");
    assert_eq!(c.cmd(&format!("DEL {root}")), "DELETED");
    s.check();
}

#[test]
fn v1_to_v1_o2() {
    across(1, Opt::O2, 3000);
}

#[test]
fn v1_to_v1_o0() {
    across(1, Opt::O0, 3000);
}

/// v2 widens keys, adds a field before `val` and reorders the tree node:
/// every object moves to the new layout, `hot` must follow `val`.
#[test]
fn v1_to_v2_o2() {
    across(2, Opt::O2, 3000);
}

#[test]
fn v1_to_v2_o0() {
    across(2, Opt::O0, 3000);
}

/// 20,000 nodes of each shape: 60,000 typed objects, the 40,000 list
/// items and tree nodes re-laid out by v2 (the ring keeps its layout).
#[test]
fn large_heap_v1_to_v2() {
    let case = Case::new("linked_heap");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    populate(&s, 20_000);
    let before = s.dump();
    let rep = s.update_ok(&b2);
    assert_eq!(s.dump(), before);
    s.check();
    assert!(
        rep.objects_precise >= 59_990 && rep.objects_moved >= 39_990,
        "{rep:?}"
    );
    eprintln!(
        "40k of 60k objects moved: downtime {:.1} ms",
        rep.downtime_ms
    );
}
