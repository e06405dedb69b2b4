//! Fixtures hidden_ptr and epoll_ptr: pointers the type map does not see as
//! pointers (uintptr_t, union, char buffers) and pointers the kernel keeps
//! (epoll_event.data.ptr).
//!
//! v1 -> v1 must just work. v1 -> v2, where the pointed-to type changes
//! layout, must either succeed with every value right or be refused with the
//! old version still serving; each test name says which one mcr does today.
//!
//! The rule (docs/decisions.md, "Objects held by hidden references"): an
//! object a hidden reference holds keeps its address and is converted in
//! place when its new layout fits its heap slot (struct rec); one that
//! grows beyond its slot (struct node) is refused, naming the holder.

use mcr_e2e::{ctl, Case, Client, Opt, Server};
use mcr_types::protocol::HeapReport;
use std::time::Duration;

const KINDS: [&str; 5] = ["INT", "UNION", "CHARBUF", "HEAPBUF", "PRECISE"];

#[test]
fn all_kinds_v1_to_v1_o2() {
    all_kinds_same_version(Opt::O2);
}

#[test]
fn all_kinds_v1_to_v1_o0() {
    all_kinds_same_version(Opt::O0);
}

fn all_kinds_same_version(opt: Opt) {
    let case = Case::new("hidden_ptr");
    let b1 = case.bin(1, opt);
    let mut s = case.start(&b1);
    let mut c = s.client();
    for (i, k) in KINDS.iter().enumerate() {
        assert_eq!(c.cmd(&format!("HIDE {k} {}", i + 1)), "OK");
    }
    for (i, k) in RKINDS.iter().enumerate() {
        assert_eq!(c.cmd(&format!("RHIDE {k} {}", i + 1)), "OK");
    }
    let rbefore = c.cmd("RDUMP");
    let before = s.dump();
    assert_eq!(
        before,
        "INT=1,11,n1 UNION=2,22,n2 CHARBUF=3,33,n3 HEAPBUF=4,44,n4 PRECISE=5,55,n5"
    );
    s.update_ok(&b1);
    assert_eq!(s.dump(), before);
    assert_eq!(c.cmd("RDUMP"), rbefore);
    s.check();
    for (i, k) in KINDS.iter().enumerate() {
        assert_eq!(
            c.cmd(&format!("BUMP {k}")),
            ((i as i64 + 1) * 11 + 1).to_string()
        );
    }
    s.check();
}

enum Outcome {
    Updated,
    Refused(String),
}

/// The contract: success with the same values, or a clean refusal.
fn hide_one_then_v2(kind: &str) -> (Case, Server, Outcome) {
    let case = Case::new("hidden_ptr");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd(&format!("HIDE {kind} 3")), "OK");
    let before = s.dump();
    let procs = s.processes();
    let outcome = match s.update(&b2) {
        Ok(_) => {
            assert_eq!(s.version(), "2");
            assert_eq!(
                s.dump(),
                before,
                "update succeeded: the hidden node must read the same"
            );
            s.check();
            assert_eq!(c.cmd(&format!("BUMP {kind}")), "34");
            Outcome::Updated
        }
        Err(e) => {
            assert_eq!(s.version(), "1");
            assert_eq!(s.dump(), before);
            s.check();
            s.wait_processes(&procs, "after a refused update");
            assert_eq!(c.cmd(&format!("BUMP {kind}")), "34");
            Outcome::Refused(e.to_string())
        }
    };
    (case, s, outcome)
}

#[test]
fn precise_pointer_v1_to_v2_updates() {
    let (_c, _s, o) = hide_one_then_v2("PRECISE");
    assert!(matches!(o, Outcome::Updated));
}

/// The union is traced conservatively: its node is found and handled.
#[test]
fn union_v1_to_v2_updates_with_correct_values() {
    let (_c, _s, o) = hide_one_then_v2("UNION");
    assert!(matches!(o, Outcome::Updated));
}

/// The refusal for a node that grows beyond its heap slot (32 usable bytes,
/// 40 needed) while `holder` holds it: it names the type, both sizes and
/// the holder, and says why.
fn assert_grows_refusal(m: &str, holder: &str) {
    for want in [
        "`struct node` grows from 32 to 40 bytes",
        holder,
        "does not fit in place",
        "32 usable bytes",
    ] {
        assert!(m.contains(want), "refusal lacks {want:?}: {m}");
    }
}

/// A node whose address only an untyped heap buffer holds can neither move
/// nor stay (it grows beyond its slot): refused.
#[test]
fn heap_char_buffer_v1_to_v2_refused_cleanly() {
    match hide_one_then_v2("HEAPBUF").2 {
        Outcome::Refused(m) => {
            assert_grows_refusal(&m, "untyped memory allocated at ");
            assert!(m.contains("hidden_ptr.c:"), "{m}");
        }
        Outcome::Updated => panic!("expected a refusal"),
    }
}

/// A uintptr_t global holds the node's address. Before 7bc2beb the node
/// moved and the integer kept the old address (silent corruption, #3);
/// then the update was refused naming the type; now a node that fits its
/// slot is kept in place (the struct rec tests below), and this one, which
/// does not, is refused saying why.
#[test]
fn uintptr_global_v1_to_v2_refused_cleanly() {
    match hide_one_then_v2("INT").2 {
        Outcome::Refused(m) => assert_grows_refusal(&m, "the global `as_int`"),
        Outcome::Updated => panic!("expected a refusal: struct node does not fit its slot"),
    }
}

/// A pointer memcpy'd into a global char array: as for uintptr_t.
#[test]
fn global_char_buffer_v1_to_v2_refused_cleanly() {
    match hide_one_then_v2("CHARBUF").2 {
        Outcome::Refused(m) => assert_grows_refusal(&m, "the global `cbuf`"),
        Outcome::Updated => panic!("expected a refusal: struct node does not fit its slot"),
    }
}

/// Record kinds of the fixture (see hidden_ptr.c), FLAGS excepted: every
/// one can be kept in place (PRECISE just moves).
const RKINDS: [&str; 7] = [
    "INT", "FIELD", "CHARBUF", "UNION", "HEAPBUF", "LABEL", "PRECISE",
];

fn heap(s: &Server) -> HeapReport {
    let (code, out, err) = ctl(
        &["heap", &s.pid.to_string(), "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "mcr-ctl heap: {err}");
    serde_json::from_str(&out).expect("heap report")
}

/// Live `struct rec` objects and their bytes, as `mcr-ctl heap` sees them.
fn recs_in_heap(s: &Server) -> (u64, u64) {
    heap(s)
        .sites
        .iter()
        .filter(|r| r.ty.as_deref() == Some("struct rec") && !r.carved)
        .fold((0, 0), |(n, b), r| (n + r.objects, b + r.bytes))
}

/// Hides a record (id i + 1) in each of `kinds`, updates v1 -> v2 and, when
/// `back`, v2 -> v1: every record reads the same through its hidden
/// reference, those held by hidden references kept their address (PRECISE
/// moved), the report counts them, the heap header says what they hold now.
fn records_kept_in_place(kinds: &[&str], back: bool) {
    let case = Case::new("hidden_ptr");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    for (i, k) in kinds.iter().enumerate() {
        assert_eq!(c.cmd(&format!("RHIDE {k} {}", i + 1)), "OK");
    }
    let addrs: Vec<String> = kinds.iter().map(|k| c.cmd(&format!("RADDR {k}"))).collect();
    let before = c.cmd("RDUMP");
    s.check();
    let n = kinds.len() as u64;
    assert_eq!(recs_in_heap(&s), (n, n * 40));
    let pinned = kinds.iter().filter(|k| **k != "PRECISE").count() as u64;
    for (to, size) in [(&b2, 48), (&b1, 40)].into_iter().take(1 + back as usize) {
        let rep = s.update_ok(to);
        assert_eq!(rep.objects_pinned, pinned, "{rep:?}");
        assert_eq!(
            c.cmd("RDUMP"),
            before,
            "records read through hidden references"
        );
        s.check();
        for (k, a) in kinds.iter().zip(&addrs) {
            let now = c.cmd(&format!("RADDR {k}"));
            if *k == "PRECISE" {
                assert_ne!(&now, a, "the precisely held record moves");
            } else {
                assert_eq!(&now, a, "the record {k} holds keeps its address");
            }
        }
        assert_eq!(
            recs_in_heap(&s),
            (n, n * size),
            "heap headers say struct rec"
        );
    }
    let want = if back { "1" } else { "2" };
    assert_eq!(s.version(), want);
    for (i, k) in kinds.iter().enumerate() {
        assert_eq!(
            c.cmd(&format!("RBUMP {k}")),
            ((i as i64 + 1) * 11 + 1).to_string()
        );
    }
    s.check();
}

/// A record whose address a `uintptr_t` field of a typed heap struct holds
/// (the struct also points to it, its id and its label precisely).
#[test]
fn rec_uintptr_field_v1_to_v2_kept_in_place() {
    records_kept_in_place(&["FIELD"], false);
}

/// A record whose address is memcpy'd into a global char buffer.
#[test]
fn rec_global_char_buffer_v1_to_v2_kept_in_place() {
    records_kept_in_place(&["CHARBUF"], false);
}

/// A record a union member holds: kept in place too (the union word is not
/// rewritten, so a `long` reading of it stays what it was).
#[test]
fn rec_union_v1_to_v2_kept_in_place() {
    records_kept_in_place(&["UNION"], false);
}

/// Every kind at once, then back to v1: the pinned records' heap headers
/// carry their v2 size and site, so the second update converts them again.
#[test]
fn rec_every_kind_v1_to_v2_to_v1_kept_in_place() {
    records_kept_in_place(&RKINDS, true);
}

/// A blob ending in a flexible int array (32 bytes: a 16-byte header, 4
/// ints), its header reordered in v2, held by a uintptr_t global: kept in
/// place, its header converted once and its ints kept as the tail (read as
/// a second header, data[0] would be 3: docs/history.md #2).
#[test]
fn flexible_array_blob_v1_to_v2_kept_in_place() {
    let case = Case::new("hidden_ptr");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("BHIDE 4"), "OK");
    assert_eq!(c.cmd("BDUMP"), "4,42,0,7,14,21");
    let addr = c.cmd("BADDR");
    let rep = s.update_ok(&b2);
    assert_eq!(rep.objects_pinned, 1, "{rep:?}");
    assert_eq!(s.version(), "2");
    assert_eq!(c.cmd("BDUMP"), "4,42,0,7,14,21");
    assert_eq!(c.cmd("BADDR"), addr);
    s.check();
}

/// An integer holding the address of `flags`, which moves from offset 32 to
/// 0 in v2: the record can stay but that integer would then name `flags`'s
/// old place (now `label`): refused, the old version serving on.
#[test]
fn rec_interior_reference_to_moved_field_refused_cleanly() {
    let case = Case::new("hidden_ptr");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("RHIDE FLAGS 4"), "OK");
    assert_eq!(c.cmd("RHIDE LABEL 5"), "OK");
    let before = c.cmd("RDUMP");
    let procs = s.processes();
    let m = s.update(&b2).expect_err("expected a refusal").to_string();
    for want in [
        "`struct rec` changes layout",
        "the global `rec_flags`",
        "byte 32 inside it, which is byte 0 in the new layout",
    ] {
        assert!(m.contains(want), "refusal lacks {want:?}: {m}");
    }
    assert_eq!(s.version(), "1");
    assert_eq!(c.cmd("RDUMP"), before);
    s.check();
    s.wait_processes(&procs, "after a refused update");
    assert_eq!(c.cmd("RBUMP FLAGS"), "45");
    assert_eq!(c.cmd("RBUMP LABEL"), "56");
}

/// Untyped heap memory (a malloc'd char buffer, as a library's own memory
/// keeps `&conn->event`) holding the address of `flags`, which moves from
/// offset 32 to 0 in v2: the record is kept in place and that word is
/// rewritten to flags' new place (transfer/interior.rs). (Back to v1 it
/// would not be: a word naming byte 0 is read as the record's own address.)
#[test]
fn rec_untyped_heap_interior_reference_rewritten() {
    let case = Case::new("hidden_ptr");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("RHIDE HEAPFLAGS 6"), "OK");
    let before = c.cmd("RDUMP");
    assert!(before.contains("HEAPFLAGS=6,66,r6,18"), "{before}");
    let addr = c.cmd("RADDR HEAPFLAGS");
    let rep = s.update_ok(&b2);
    assert_eq!(rep.objects_pinned, 1, "{rep:?}");
    assert!(rep.conservative_rewrites >= 1, "{rep:?}");
    assert_eq!(s.version(), "2");
    assert_eq!(
        c.cmd("RDUMP"),
        before,
        "the record read through its flags' address"
    );
    assert_eq!(c.cmd("RADDR HEAPFLAGS"), addr, "kept in place");
    s.check();
    assert_eq!(c.cmd("RBUMP HEAPFLAGS"), "67");
}

fn epoll_clients(s: &Server) -> Vec<Client> {
    (0..3)
        .map(|i| {
            let mut c = s.client();
            assert_eq!(c.cmd(&format!("NAME c{i}")), "OK");
            assert_eq!(c.cmd(&format!("ADD {}", 10 + i)), (10 + i).to_string());
            c
        })
        .collect()
}

#[test]
fn epoll_data_ptr_v1_to_v1() {
    let case = Case::new("epoll_ptr");
    let b1 = case.bin(1, Opt::O2);
    let mut s = case.start(&b1);
    let mut cs = epoll_clients(&s);
    let before = s.dump();
    s.update_ok(&b1);
    assert_eq!(s.dump(), before);
    s.check();
    for (i, c) in cs.iter_mut().enumerate() {
        assert_eq!(c.cmd("ADD 1"), (11 + i).to_string());
    }
    assert_eq!(s.client().cmd("ADD 5"), "5");
}

/// struct conn changes layout in v2 while the kernel holds pointers to
/// every conn. Before 7bc2beb the update committed and the new version
/// aborted at the first event (#4); since then the registrations are
/// rewritten and the update succeeds with every value right.
#[test]
fn epoll_data_ptr_v1_to_v2_updates() {
    let case = Case::new("epoll_ptr");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut cs = epoll_clients(&s);
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.version(), "2");
    assert_eq!(s.dump(), before);
    s.check();
    for (i, c) in cs.iter_mut().enumerate() {
        assert_eq!(c.cmd("ADD 1"), (11 + i).to_string());
    }
    assert_eq!(s.client().cmd("ADD 5"), "5");
}
