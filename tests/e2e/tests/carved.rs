//! Fixture carved: objects carved by a pool and a slab allocator declared
//! in carved.mcr.toml are typed from their call sites, counted and traced
//! per type, kept at their address across updates, converted in place when
//! their layout changes within their size, and refused when it grows.

use mcr_e2e::{ctl, Case, Opt, Server};
use mcr_types::protocol::{HeapReport, TraceReport};
use std::collections::BTreeMap;
use std::time::Duration;

fn build(s: &Server) {
    let mut c = s.client();
    assert_eq!(c.cmd("BUILD"), "OK");
    s.check();
}

fn heap(s: &Server) -> HeapReport {
    let (code, out, err) = ctl(
        &["heap", &s.pid.to_string(), "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "mcr-ctl heap: {err}");
    serde_json::from_str(&out).expect("heap report")
}

fn trace(s: &Server) -> TraceReport {
    let (code, out, err) = ctl(
        &["trace", &s.pid.to_string(), "--json"],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "mcr-ctl trace: {err}");
    serde_json::from_str(&out).expect("trace report")
}

/// Carved objects per type (`(untyped) FUNCTION` for untyped ones).
fn carved_by_type(h: &HeapReport) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for s in h.sites.iter().filter(|s| s.carved) {
        let k =
            s.ty.clone()
                .unwrap_or_else(|| format!("(untyped) {}", s.function));
        let e: &mut (u64, u64) = m.entry(k).or_default();
        e.0 += s.objects;
        e.1 += s.bytes;
    }
    m
}

/// Exactly what BUILD carved: 10 + 2 sessions (the 5 carved before pool
/// B's reset are gone), 10 labels of 8 bytes, 20 - 5 items.
fn assert_counts(s: &Server, items: u64) {
    let h = heap(s);
    let want: BTreeMap<String, (u64, u64)> = [
        ("struct session".to_string(), (12, 12 * 48)),
        ("struct item".to_string(), (items, items * 24)),
        ("(untyped) build".to_string(), (10, 80)),
    ]
    .into_iter()
    .collect();
    assert_eq!(carved_by_type(&h), want, "carved objects in {h:?}");
    assert_eq!(h.carved_objects, 22 + items);
    let t = trace(s);
    for (ty, n) in [("struct session", 12), ("struct item", items)] {
        let r = t
            .rows
            .iter()
            .find(|r| r.what == ty)
            .unwrap_or_else(|| panic!("no trace row for {ty}: {t:?}"));
        assert_eq!((r.reachable, r.unreachable), (n, 0), "trace of {ty}");
    }
}

#[test]
fn heap_and_trace_count_carved_objects() {
    let case = Case::new("carved");
    let s = case.start(&case.bin(1, Opt::O2));
    build(&s);
    assert_counts(&s, 15);
}

fn across(v_to: u32, opt: Opt) {
    let case = Case::new("carved");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    build(&s);
    let before = s.dump();
    assert!(before.contains("S3:300:sess-3:L21:4") && before.contains("hot=7001 name=ss-3"));
    let rep = s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before, "every value after the update ({rep:?})");
    s.check();
    assert_eq!(rep.objects_carved, 37, "{rep:?}");
    let converted = if v_to == 2 { 27 } else { 0 };
    assert_eq!(rep.objects_carved_converted, converted, "{rep:?}");
    // The index came along: same counts, and new carves join it.
    assert_counts(&s, 15);
    let mut c = s.client();
    assert_eq!(c.cmd("HIT 3"), "301");
    assert_eq!(c.cmd("ITEM 50 777"), "OK");
    assert!(s.dump().contains("I50:2:777 I18:0:18001"));
    s.check();
    assert_counts(&s, 16);
}

#[test]
fn v1_to_v1() {
    across(1, Opt::O2);
}

#[test]
fn v1_to_v2_converted_in_place() {
    across(2, Opt::O2);
}

#[test]
fn v1_to_v2_converted_in_place_o0() {
    across(2, Opt::O0);
}

#[test]
fn v2_item_grows_refused() {
    let case = Case::new("carved");
    let b1 = case.bin(1, Opt::O2);
    let b2 = case.bin_with(2, Opt::O2, &["GROWS"]);
    // mcr-ctl diff says so before anything runs.
    let (code, out, _) = ctl(
        &["diff", &b1.to_string_lossy(), &b2.to_string_lossy()],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "diff must refuse: {out}");
    assert!(
        out.lines().any(|l| l.starts_with("struct item")
            && l.contains("carved, grows")
            && l.contains("size 24->32")
            && l.contains("slab_alloc at ")),
        "{out}"
    );
    let (code, out, _) = ctl(
        &[
            "diff",
            &b1.to_string_lossy(),
            &case.bin(2, Opt::O2).to_string_lossy(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "same-size changes are fine: {out}");
    let mut s = case.start(&b1);
    build(&s);
    let e = s.update_rolls_back(&b2, &[]);
    for want in [
        "`struct item`",
        "slab_alloc",
        "carved.c:",
        "needs 32 bytes",
        "has 24",
    ] {
        assert!(e.contains(want), "refusal names {want}: {e}");
    }
}

/// The new version converts carved objects in place in its copy-on-write
/// view of the old heap and then crashes: the old version's objects are
/// untouched, it keeps serving, and the next update succeeds.
#[test]
fn crash_after_in_place_conversion_rolls_back() {
    let case = Case::new("carved");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start_with(&b1, &[("MCR_FAULT", "crash")], &[]);
    build(&s);
    let before = s.dump();
    let e = s.update_rolls_back(&b2, &[]);
    assert!(e.contains("rolled back") || e.contains("exited"), "{e}");
    assert_eq!(s.version(), "1");
    assert_counts(&s, 15);
    assert_eq!(s.cmd("FAULT NONE"), "OK");
    let rep = s.update_ok(&b2);
    assert_eq!(rep.objects_carved_converted, 27, "{rep:?}");
    assert_eq!(s.dump(), before);
    s.check();
}
