//! Fixture transform_hook: a type change no rule converts (array -> struct,
//! a list -> an array behind a retargeted pointer, seconds -> milliseconds,
//! one pointer -> an array of pointers), carried over by the new version's
//! MCR_TRANSFORM hook; MCR_AFTER_TRANSFER builds what v1 did not have.
//! Without the hook the update is refused; a hook that crashes or leaves a
//! bad pointer rolls back, and the message names it.

use mcr_e2e::{Case, Opt, Server};

/// Users in every place a value can be: the global admin (0), the
/// start-up object root (1), users added after start-up (2..=5), elements
/// of a global array (10, 11), with list items and friends pointing across
/// them.
fn populate(s: &Server) {
    let mut c = s.client();
    for cmd in [
        "ADD 2 ada lovelace 5",
        "ADD 3 alan turing 7",
        "ADD 4 grace hopper 11",
        "ADD 5 ken thompson 0",
        "ITEM 2 10",
        "ITEM 2 20",
        "ITEM 2 30",
        "ITEM 3 -1",
        "ITEM 0 100",
        "ITEM 1 7",
        "ITEM 1 8",
        "FRIEND 2 3",
        "FRIEND 3 1",
        "FRIEND 4 0",
        "FRIEND 0 5",
        "FRIEND 1 4",
        "TIMEOUT 0 45",
        "TIMEOUT 1 90",
        "ITEM 11 5",
        "FRIEND 11 2",
        "FRIEND 2 11",
        "TIMEOUT 10 3",
    ] {
        assert_eq!(c.cmd(cmd), "OK", "{cmd}");
    }
    s.check();
}

const POPULATED: &str = "users 0:ad/min:45000:100:5 1:root/user:90000:7,8:4 \
5:ken/thompson:0:: 4:grace/hopper:11000::0 3:alan/turing:7000:-1:1 2:ada/lovelace:5000:10,20,30:11 \
10:guest/one:3000:: 11:guest/two:2000:5:2";

fn v1_to_v2(opt: Opt) {
    let case = Case::new("transform_hook");
    let (b1, b2) = (case.bin(1, opt), case.bin(2, opt));
    let mut s = case.start(&b1);
    populate(&s);
    let before = s.dump();
    assert_eq!(before, POPULATED);
    assert_eq!(s.cmd("HOOKS"), "after=0");
    let rep = s.update_ok(&b2);
    assert_eq!(s.version(), "2");
    // Every value: names split, seconds now milliseconds, lists now arrays,
    // friends now arrays pointing to the moved users.
    assert_eq!(s.dump(), before, "DUMP after the update ({rep:?})");
    s.check();
    // 8 users converted (global, 2 array elements, start-up object, 4
    // moved) + 1 after-transfer call.
    assert_eq!(rep.hook_calls, 9, "{rep:?}");
    // The after-transfer hook indexed every user; the index works.
    assert_eq!(s.cmd("HOOKS"), "after=8");
    let mut c = s.client();
    assert_eq!(c.cmd("FIND 3"), "alan");
    assert_eq!(c.cmd("FIND 1"), "root");
    // The new layouts work: arrays grow, a second friend.
    assert_eq!(c.cmd("ITEM 2 40"), "OK");
    assert_eq!(c.cmd("FRIEND 2 0"), "OK");
    assert_eq!(c.cmd("FIND 11"), "guest");
    assert_eq!(c.cmd("ADD 6 dennis ritchie 3"), "OK");
    assert_eq!(c.cmd("FIND 6"), "dennis");
    assert!(
        s.dump().contains(" 2:ada/lovelace:5000:10,20,30,40:11,0"),
        "{}",
        s.dump()
    );
    s.check();
}

#[test]
fn v1_to_v2_o2() {
    v1_to_v2(Opt::O2);
}

#[test]
fn v1_to_v2_o0() {
    v1_to_v2(Opt::O0);
}

/// v1 -> v1 (no hooks) and v2 -> v2: the hook's declared old layout is not
/// the old version's, but the type did not change: nothing to transform,
/// the hook is not called; the after-transfer hook runs.
#[test]
fn same_version_updates() {
    let case = Case::new("transform_hook");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    populate(&s);
    let before = s.dump();
    let rep = s.update_ok(&b1);
    assert_eq!(rep.hook_calls, 0);
    assert_eq!(s.dump(), before);
    let rep = s.update_ok(&b2);
    assert_eq!(rep.hook_calls, 9);
    let rep = s.update_ok(&b2);
    assert_eq!(rep.hook_calls, 1, "only the after-transfer hook: {rep:?}");
    assert_eq!(s.dump(), before);
    assert_eq!(s.cmd("HOOKS"), "after=8");
    s.check();
}

/// Without the hook: refused before anything stops, naming the type and
/// the field, in the words of any other type change no rule covers.
#[test]
fn refused_without_hook() {
    let case = Case::new("transform_hook");
    let b1 = case.bin(1, Opt::O2);
    let bad = case.bin_with(2, Opt::O2, &["NO_HOOK"]);
    let mut s = case.start(&b1);
    populate(&s);
    let msg = s.update_rolls_back(&bad, &[]);
    assert!(
        msg.contains(
            "refused: type `struct user`: field `name` changed from `char[32]` to `struct fullname`, which no rule converts: add a transform hook"
        ),
        "{msg}"
    );
    assert_eq!(s.version(), "1");
    assert_eq!(s.dump(), POPULATED);
}

/// The hook's copy of the old layout lacks a field: refused, naming it.
#[test]
fn refused_wrong_old_layout() {
    let case = Case::new("transform_hook");
    let b1 = case.bin(1, Opt::O2);
    let bad = case.bin_with(2, Opt::O2, &["BAD_LAYOUT"]);
    let mut s = case.start(&b1);
    populate(&s);
    let msg = s.update_rolls_back(&bad, &[]);
    assert!(msg.contains("refused"), "{msg}");
    assert!(
        msg.contains("user_from_v1")
            && msg.contains("struct user_v1")
            && msg.contains("`timeout_sec`"),
        "{msg}"
    );
    assert_eq!(s.version(), "1");
}

/// The hook crashes (SIGSEGV) on one user, after converting others: the
/// new version dies, the old one keeps serving, the message names the hook.
#[test]
fn crashing_hook_rolls_back() {
    let case = Case::new("transform_hook");
    let b1 = case.bin(1, Opt::O2);
    let bad = case.bin_with(2, Opt::O2, &["HOOK_CRASH"]);
    let mut s = case.start(&b1);
    populate(&s);
    let msg = s.update_rolls_back(&bad, &[]);
    assert!(msg.contains("rolled back"), "{msg}");
    assert!(
        msg.contains("died in its transform hook `user_from_v1` (for `struct user`)")
            && msg.contains("SIGSEGV"),
        "{msg}"
    );
    assert_eq!(s.version(), "1");
    assert_eq!(s.dump(), POPULATED);
    // The old version still takes an update.
    let good = case.bin(2, Opt::O2);
    s.update_ok(&good);
    assert_eq!(s.dump(), POPULATED);
}

/// The hook leaves a pointer field to memory it freed: caught by the check
/// after the hooks, rolled back, the field named.
#[test]
fn hook_leaving_a_bad_pointer_rolls_back() {
    let case = Case::new("transform_hook");
    let b1 = case.bin(1, Opt::O2);
    let bad = case.bin_with(2, Opt::O2, &["HOOK_BAD_POINTER"]);
    let mut s = case.start(&b1);
    populate(&s);
    let msg = s.update_rolls_back(&bad, &[]);
    assert!(
        msg.contains("transform hook `user_from_v1` left `struct user.items`")
            && msg.contains("into memory a hook freed"),
        "{msg}"
    );
    assert_eq!(s.version(), "1");
}

/// The after-transfer hook crashes: rolled back, the hook named.
#[test]
fn crashing_after_transfer_hook_rolls_back() {
    let case = Case::new("transform_hook");
    let b1 = case.bin(1, Opt::O2);
    let bad = case.bin_with(2, Opt::O2, &["AFTER_CRASH"]);
    let mut s = case.start(&b1);
    populate(&s);
    let msg = s.update_rolls_back(&bad, &[]);
    assert!(
        msg.contains("died in its after-transfer hook `index_users`") && msg.contains("SIGSEGV"),
        "{msg}"
    );
    assert_eq!(s.version(), "1");
}
