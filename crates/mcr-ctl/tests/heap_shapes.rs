//! `mcr-ctl heap` and `mcr-ctl trace` on fixtures of known shape: counts are
//! checked exactly, per type and per site, reachable and unreachable, at
//! -O2 and -O0.

mod common;
use common::*;
use std::collections::BTreeMap;

/// The live (objects, bytes) of `ty` in `heap --json`.
fn live(pid: u32, ty: &str) -> (u64, u64) {
    heap_by_type(&heap(pid))
        .get(ty)
        .copied()
        .unwrap_or_default()
}

fn list(b: Build) {
    let f = Fixture::start(&build("list", b));
    assert_eq!(live(f.pid, "struct lnode"), (1007, 1007 * 16));
    check_trace(&trace(f.pid), &[("struct lnode", 1000, 7)], &[]);
}

#[test]
fn list_o2() {
    list(Build::O2);
}
#[test]
fn list_o0() {
    list(Build::O0);
}

fn tree(b: Build) {
    let f = Fixture::start(&build("tree", b));
    assert_eq!(live(f.pid, "struct tnode"), (511, 511 * 24));
    check_trace(&trace(f.pid), &[("struct tnode", 448, 63)], &[]);
}

#[test]
fn tree_o2() {
    tree(Build::O2);
}
#[test]
fn tree_o0() {
    tree(Build::O0);
}

fn cycle(b: Build) {
    let f = Fixture::start(&build("cycle", b));
    assert_eq!(live(f.pid, "struct cnode"), (9, 9 * 16));
    let t = trace(f.pid);
    let (first, next) = (site_line("cycle", "FIRST"), site_line("cycle", "NEXT"));
    // Rings of 5 (kept), 3 and 1 (leaked): 3 first nodes, 6 others.
    check_trace(
        &t,
        &[("struct cnode", 5, 4)],
        &[(&first, 1, 2), (&next, 4, 2)],
    );
    let mut leaked_at = row(&t.rows, "struct cnode").unwrap().leak_sites.clone();
    leaked_at.sort();
    let mut want = vec![first, next];
    want.sort();
    assert_eq!(leaked_at, want);
}

#[test]
fn cycle_o2() {
    cycle(Build::O2);
}
#[test]
fn cycle_o0() {
    cycle(Build::O0);
}

fn hashtable(b: Build) {
    let f = Fixture::start(&build("hashtable", b));
    let h = heap(f.pid);
    let by_type = heap_by_type(&h);
    assert_eq!(by_type.get("struct hentry"), Some(&(200, 200 * 24)));
    assert_eq!(by_type.get("struct htable"), Some(&(1, 24)));
    let by_site = heap_by_site(&h);
    let (keys, buckets) = (
        site_line("hashtable", "KEYS"),
        site_line("hashtable", "BUCKETS"),
    );
    // "key-0".."key-199" plus their NULs.
    let key_bytes: u64 = (0..200).map(|i| format!("key-{i}").len() as u64 + 1).sum();
    assert_eq!(by_site.get(&keys), Some(&(200, key_bytes)));
    assert_eq!(by_site.get(&buckets), Some(&(1, 64 * 8)));
    check_trace(
        &trace(f.pid),
        &[("struct hentry", 190, 10), ("struct htable", 1, 0)],
        &[(&keys, 190, 10), (&buckets, 1, 0)],
    );
}

#[test]
fn hashtable_o2() {
    hashtable(Build::O2);
}
#[test]
fn hashtable_o0() {
    hashtable(Build::O0);
}

fn hidden(b: Build) {
    let f = Fixture::start(&build("hidden", b));
    let t = trace(f.pid);
    let s = |tag| site_line("hidden", tag);
    let (as_int, intfield, l1, l2, raw) = (
        s("AS_INT"),
        s("INTFIELD"),
        s("LEAK_INT1"),
        s("LEAK_INT2"),
        s("RAWBUF"),
    );
    check_trace(
        &t,
        &[
            ("struct holder", 1, 0),
            ("struct via_union", 1, 0),
            ("struct via_charbuf", 1, 0),
            ("struct via_unionfield", 1, 0),
            ("struct via_charfield", 1, 0),
            ("struct via_heapbuf", 1, 0),
            ("struct via_interior", 1, 0),
        ],
        &[
            (&as_int, 1, 0),
            (&intfield, 1, 0),
            (&l1, 0, 1),
            (&l2, 0, 1),
            (&raw, 1, 0),
        ],
    );
}

#[test]
fn hidden_o2() {
    hidden(Build::O2);
}
#[test]
fn hidden_o0() {
    hidden(Build::O0);
}

fn thread(b: Build) {
    let f = Fixture::start(&build("thread", b));
    assert_eq!(live(f.pid, "struct thread_leak"), (9, 9 * 16));
    check_trace(
        &trace(f.pid),
        &[
            ("struct on_read", 1, 0),
            ("struct on_cond", 1, 0),
            ("struct on_foreign", 1, 0),
            ("struct thread_leak", 0, 9),
        ],
        &[],
    );
}

#[test]
fn thread_stack_o2() {
    thread(Build::O2);
}
#[test]
fn thread_stack_o0() {
    thread(Build::O0);
}

fn leaks(b: Build) {
    let f = Fixture::start(&build("leaks", b));
    let s = |tag| site_line("leaks", tag);
    let (many, few, keep, lb, raw) = (
        s("LEAK_A_MANY"),
        s("LEAK_A_FEW"),
        s("KEEP_A"),
        s("LEAK_B"),
        s("RAW"),
    );
    let h = heap(f.pid);
    let by_site = heap_by_site(&h);
    assert_eq!(by_site.get(&many), Some(&(10, 10 * 48)));
    assert_eq!(by_site.get(&few), Some(&(5, 5 * 48)));
    assert_eq!(by_site.get(&keep), Some(&(2, 2 * 48)));
    assert_eq!(by_site.get(&lb), Some(&(3, 3 * 12)));
    assert_eq!(by_site.get(&raw), Some(&(5, 5 * 101)));
    let t = trace(f.pid);
    check_trace(
        &t,
        &[("struct leak_a", 2, 15), ("struct leak_b", 0, 3)],
        &[
            (&many, 0, 10),
            (&few, 0, 5),
            (&keep, 2, 0),
            (&lb, 0, 3),
            (&raw, 1, 4),
        ],
    );
    let a = row(&t.rows, "struct leak_a").unwrap();
    assert_eq!(a.unreachable_bytes, 15 * 48);
    assert_eq!(a.reachable_bytes, 2 * 48);
    let mut at = a.leak_sites.clone();
    at.sort();
    let mut want = vec![many.clone(), few.clone()];
    want.sort();
    assert_eq!(at, want, "leak sites of struct leak_a");
    let r = row(&t.rows, &format!("untyped @ {raw}")).unwrap();
    assert_eq!(
        (r.unreachable_bytes, r.leak_sites.clone()),
        (4 * 101, vec![raw])
    );
    // The report lists the largest leak first.
    let leaked: Vec<u64> = t.rows.iter().map(|r| r.unreachable_bytes).collect();
    assert!(leaked.windows(2).all(|w| w[0] >= w[1]), "{leaked:?}");
}

#[test]
fn leaks_o2() {
    leaks(Build::O2);
}
#[test]
fn leaks_o0() {
    leaks(Build::O0);
}

/// A walk is repeatable: the same answer twice, and the heap report's
/// totals agree with the trace's.
#[test]
fn trace_is_stable_and_agrees_with_heap() {
    let f = Fixture::start(&build("leaks", Build::O2));
    let (a, b) = (trace(f.pid), trace(f.pid));
    let key = |t: &mcr_types::protocol::TraceReport| {
        let mut v: Vec<_> = t
            .rows
            .iter()
            .map(|r| (r.what.clone(), r.reachable, r.unreachable))
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&a), key(&b));
    let h = heap(f.pid);
    assert_eq!(h.objects, a.objects);
    let bytes: u64 = a
        .rows
        .iter()
        .map(|r| r.reachable_bytes + r.unreachable_bytes)
        .sum();
    assert_eq!(h.bytes, bytes);
}

/// Column `name` starts at the same character in the header and every row,
/// for a left-aligned column; a right-aligned column ends at the same one.
fn assert_aligned(text: &str, header_starts: &str, left: &[&str], right: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    let h = lines
        .iter()
        .position(|l| {
            l.starts_with(header_starts.trim_start()) || l.trim_start().starts_with(header_starts)
        })
        .unwrap_or_else(|| panic!("no header {header_starts:?} in:\n{text}"));
    let head = lines[h];
    let rows = &lines[h + 1..];
    assert!(!rows.is_empty(), "no rows:\n{text}");
    for col in right {
        let end = head.find(col).unwrap() + col.len();
        for r in rows {
            let b = r.as_bytes();
            assert!(
                end <= r.len() && b[end - 1] != b' ' && (end == r.len() || b[end] == b' '),
                "column {col} not right-aligned at {end} in {r:?}:\n{text}"
            );
        }
    }
    for col in left {
        let start = head.find(col).unwrap();
        for r in rows {
            let b = r.as_bytes();
            assert!(
                start < r.len() && b[start] != b' ' && b[start - 1] == b' ' && b[start - 2] == b' ',
                "column {col} does not start at {start} in {r:?}:\n{text}"
            );
        }
    }
}

#[test]
fn text_output_is_aligned_and_sorted_by_bytes() {
    let f = Fixture::start(&build("leaks", Build::O2));
    let pid = f.pid.to_string();

    let r = ctl(&["heap", &pid]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_aligned(&r.stdout, "OBJECTS", &["TYPE"], &["OBJECTS", "BYTES"]);
    let bytes: Vec<u64> = r
        .stdout
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{}", r.stdout);
    assert!(r.stdout.contains("struct leak_a"), "{}", r.stdout);

    let r = ctl(&["heap", &pid, "--by", "site"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_aligned(
        &r.stdout,
        "OBJECTS",
        &["SITE", "FUNCTION"],
        &["OBJECTS", "BYTES"],
    );
    assert!(
        r.stdout.contains(&site_line("leaks", "LEAK_A_MANY")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("leak_a_many"), "{}", r.stdout);

    let r = ctl(&["trace", &pid]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_aligned(
        &r.stdout,
        "REACHABLE",
        &["TYPE"],
        &["REACHABLE", "UNREACHABLE", "LEAKED BYTES"],
    );
    let leaked: Vec<u64> = r
        .stdout
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap())
        .collect();
    assert!(leaked.windows(2).all(|w| w[0] >= w[1]), "{}", r.stdout);
    let first = r.stdout.lines().nth(2).unwrap();
    assert!(
        first.contains("struct leak_a"),
        "largest leak first:\n{}",
        r.stdout
    );
    assert!(
        first.contains(&site_line("leaks", "LEAK_A_MANY")),
        "{}",
        r.stdout
    );

    let r = ctl(&["trace", &pid, "--by", "site"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_aligned(
        &r.stdout,
        "REACHABLE",
        &["SITE", "FUNCTION"],
        &["REACHABLE", "UNREACHABLE", "LEAKED BYTES"],
    );
    let first = r.stdout.lines().nth(2).unwrap();
    assert!(
        first.contains(&site_line("leaks", "LEAK_A_MANY")) && first.contains("leak_a_many"),
        "{}",
        r.stdout
    );
}

/// Thread-local variables of every program thread are typed roots: an
/// object behind a worker's `__thread` pointer is reachable, so is one
/// behind a pointer no conservative scan finds (offset 4 of a packed
/// thread-local struct), and one behind the main thread's.
fn thread_locals(b: Build) {
    let f = Fixture::start(&build("tls", b));
    assert_eq!(live(f.pid, "struct tls_packed"), (1, 16));
    let t = trace(f.pid);
    check_trace(
        &t,
        &[
            ("struct tls_plain", 1, 0),
            ("struct tls_packed", 1, 0),
            ("struct tls_main", 1, 0),
            ("struct tls_leak", 0, 4),
        ],
        &[],
    );
    assert_eq!(t.thread_locals, 6, "3 thread-locals x 2 threads");
}

#[test]
fn thread_locals_o2() {
    thread_locals(Build::O2);
}
#[test]
fn thread_locals_o0() {
    thread_locals(Build::O0);
}

/// Carved objects (carved.mcr.toml: a slab and a pool) are objects of their
/// own: counted per type, traced precisely inside their live page or block
/// (so leaks inside it show), gone when freed back to the slab or when
/// their pool's block is freed.
fn carved(b: Build) {
    let f = Fixture::start(&build("carved", b));
    let h = heap(f.pid);
    let carved: BTreeMap<String, (u64, u64)> = h
        .sites
        .iter()
        .filter(|s| s.carved)
        .map(|s| (s.ty.clone().unwrap_or_default(), (s.objects, s.bytes)))
        .collect();
    let want: BTreeMap<String, (u64, u64)> = [
        ("struct snode".to_string(), (450, 450 * 16)),
        ("struct pnode".to_string(), (20, 20 * 16)),
    ]
    .into_iter()
    .collect();
    assert_eq!(carved, want, "{h:?}");
    assert_eq!((h.carved_objects, h.carved_bytes), (470, 470 * 16));
    check_trace(
        &trace(f.pid),
        &[("struct snode", 300, 150), ("struct pnode", 12, 8)],
        &[],
    );
}

#[test]
fn carved_o2() {
    carved(Build::O2);
}
#[test]
fn carved_o0() {
    carved(Build::O0);
}

/// Allocation wrappers of another unit, declared nowhere: proven by the
/// pass where they are defined, their callers' objects typed.
fn wrappers(b: Build) {
    let f = Fixture::start(&build("wrappers", b));
    let h = heap(f.pid);
    let by_type = heap_by_type(&h);
    assert_eq!(
        by_type.get("struct wnode"),
        Some(&(120, 120 * 24)),
        "{by_type:?}"
    );
    assert_eq!(by_type.get("struct wpair"), Some(&(1, 160)), "{by_type:?}");
    // with_header's object (n + 16 = 40 bytes) is not typed.
    let header = h.sites.iter().find(|s| s.function == "with_header");
    assert!(
        header.is_some_and(|s| s.ty.is_none() && s.objects == 1 && s.bytes == 40),
        "{:?}",
        h.sites
    );
}

#[test]
fn wrappers_o2() {
    wrappers(Build::O2);
}
#[test]
fn wrappers_o0() {
    wrappers(Build::O0);
}
