//! Fixtures hidden_ptr and epoll_ptr: pointers the type map does not see as
//! pointers (uintptr_t, union, char buffers) and pointers the kernel keeps
//! (epoll_event.data.ptr).
//!
//! v1 -> v1 must just work. v1 -> v2, where the pointed-to type changes
//! layout, must either succeed with every value right or be refused with the
//! old version still serving; each test name says which one mcr does today.

use mcr_e2e::{Case, Client, Opt, Server};

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
    let before = s.dump();
    assert_eq!(
        before,
        "INT=1,11,n1 UNION=2,22,n2 CHARBUF=3,33,n3 HEAPBUF=4,44,n4 PRECISE=5,55,n5"
    );
    s.update_ok(&b1);
    assert_eq!(s.dump(), before);
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

/// A node whose address only an untyped heap buffer holds cannot move: refused.
#[test]
fn heap_char_buffer_v1_to_v2_refused_cleanly() {
    let (_c, _s, o) = hide_one_then_v2("HEAPBUF");
    match o {
        Outcome::Refused(m) => assert!(m.contains("struct node") && m.contains("untyped"), "{m}"),
        Outcome::Updated => panic!("expected a refusal"),
    }
}

/// A uintptr_t global holds the node's address. Before 7bc2beb the node
/// moved and the integer kept the old address (silent corruption, #3);
/// since then the update is refused naming the type.
#[test]
fn uintptr_global_v1_to_v2_refused_cleanly() {
    match hide_one_then_v2("INT").2 {
        Outcome::Refused(m) => assert!(m.contains("struct node"), "{m}"),
        Outcome::Updated => {
            panic!("expected a refusal (the runtime's behaviour when this test was written)")
        }
    }
}

/// A pointer memcpy'd into a global char array: as for uintptr_t.
#[test]
fn global_char_buffer_v1_to_v2_refused_cleanly() {
    match hide_one_then_v2("CHARBUF").2 {
        Outcome::Refused(m) => assert!(m.contains("struct node"), "{m}"),
        Outcome::Updated => {
            panic!("expected a refusal (the runtime's behaviour when this test was written)")
        }
    }
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
