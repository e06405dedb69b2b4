//! Fixture ptr_globals: pointer fields of globals keep the new start-up's
//! value unless the old program changed them (or what they lead to) since
//! its own start-up.

use mcr_e2e::{Case, Opt};

const V1: &str = "allow=GET,SET,DEL modules=core:0,http:1 mode=fast";
const V2: &str = "allow=GET,SET,STATS modules=core:0,http:1,mail:2 mode=safe";

/// Nothing changed since start-up: the new allow-list, module list, mode
/// and default table are in force.
#[test]
fn unchanged_pointers_take_the_new_start_up_values_v1_to_v2() {
    let case = Case::new("ptr_globals");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("ALLOWED DEL"), "yes");
    assert_eq!(c.cmd("ALLOWED STATS"), "no");
    assert!(s.dump().starts_with(V1), "{}", s.dump());
    s.update_ok(&b2);
    assert_eq!(s.version(), "2");
    // (a) the allow-list of v2 is in force, through the protocol.
    assert_eq!(c.cmd("ALLOWED DEL"), "no");
    assert_eq!(c.cmd("ALLOWED STATS"), "yes");
    let d = s.dump();
    assert!(d.starts_with(V2), "{d}");
    // The table nobody touched is the one v2's start-up built.
    assert_eq!(c.cmd("GET version"), "2");
    assert_eq!(c.cmd("GET origin"), "20");
    assert!(d.ends_with(" count=2"), "{d}");
    s.check();
}

/// Changed at run time: (b) entries added to the start-up table survive
/// (the pointer to its header never changed, its buckets did); (c) the mode
/// an admin command chose survives; a denied command stays denied.
#[test]
fn run_time_changes_survive_v1_to_v2() {
    let case = Case::new("ptr_globals");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    for i in 0..20 {
        assert_eq!(c.cmd(&format!("PUT k{i} {}", i * 7)), "OK");
    }
    assert_eq!(c.cmd("MODE slow"), "OK");
    let before = s.dump();
    assert!(before.contains(" mode=slow "), "{before}");
    s.update_ok(&b2);
    assert_eq!(s.version(), "2");
    for i in 0..20 {
        assert_eq!(c.cmd(&format!("GET k{i}")), (i * 7).to_string());
    }
    // The whole table is the old one: run-time state wins over v2's defaults.
    assert_eq!(c.cmd("GET version"), "1");
    assert_eq!(c.cmd("GET origin"), "10");
    let d = s.dump();
    assert!(d.contains(" mode=slow "), "{d}");
    assert!(d.ends_with(" count=22"), "{d}");
    // What nobody changed is still v2's.
    assert_eq!(c.cmd("ALLOWED STATS"), "yes");
    assert!(d.starts_with(V2.trim_end_matches(" mode=safe")), "{d}");
    // The table keeps working in the new version.
    assert_eq!(c.cmd("PUT k20 140"), "OK");
    assert_eq!(c.cmd("GET k20"), "140");
    s.check();
}

/// An allow-list the admin changed at run time is the admin's: the old
/// list survives whole (an array of pointers is one value).
#[test]
fn allow_list_changed_at_run_time_survives_v1_to_v2() {
    let case = Case::new("ptr_globals");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("DENY SET"), "OK");
    assert_eq!(c.cmd("ALLOWED SET"), "no");
    s.update_ok(&b2);
    assert_eq!(c.cmd("ALLOWED SET"), "no");
    assert_eq!(c.cmd("ALLOWED DEL"), "yes");
    assert_eq!(c.cmd("ALLOWED STATS"), "no");
    assert!(s.dump().starts_with("allow=GET,-,DEL "), "{}", s.dump());
    s.check();
}

/// (d) v1 -> v1 keeps everything, changed and unchanged.
#[test]
fn everything_survives_v1_to_v1() {
    let case = Case::new("ptr_globals");
    let b1 = case.bin(1, Opt::O2);
    let mut s = case.start(&b1);
    let mut c = s.client();
    let untouched = s.dump();
    s.update_ok(&b1);
    assert_eq!(s.dump(), untouched);
    for i in 0..10 {
        assert_eq!(c.cmd(&format!("PUT k{i} {i}")), "OK");
    }
    assert_eq!(c.cmd("MODE slow"), "OK");
    assert_eq!(c.cmd("DENY DEL"), "OK");
    let before = s.dump();
    s.update_ok(&b1);
    assert_eq!(s.dump(), before);
    assert_eq!(c.cmd("ALLOWED DEL"), "no");
    s.check();
}

/// A pointer the program re-pointed at run time to a string constant keeps
/// pointing to the old binary's constant: it must stay readable through
/// later updates too (v1 -> v2 -> v1 -> v2), when the binary that holds it
/// is no longer the old version's but its ancestor's.
#[test]
fn run_time_choice_survives_chained_updates() {
    let case = Case::new("ptr_globals");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("MODE slow"), "OK");
    assert_eq!(c.cmd("DENY GET"), "OK");
    assert_eq!(c.cmd("PUT k 1"), "OK");
    // Everything but the module list, which is each version's own.
    let state = |d: String| {
        d.split(' ')
            .filter(|w| !w.starts_with("modules="))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let before = state(s.dump());
    for (i, b) in [&b2, &b1, &b2].into_iter().enumerate() {
        s.update_ok(b);
        assert_eq!(state(s.dump()), before, "after update {}", i + 1);
        s.check();
    }
    assert_eq!(c.cmd("ALLOWED GET"), "no");
    assert_eq!(c.cmd("GET k"), "1");
}
