//! Fixture runtime_setting: settings changed at run time survive; settings
//! nobody changed take the new version's defaults.

use mcr_e2e::{Case, Opt};

#[test]
fn changed_settings_survive_v1_to_v1() {
    let case = Case::new("runtime_setting");
    let b1 = case.bin(1, Opt::O2);
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("SET max_conns 7"), "OK");
    assert_eq!(c.cmd("SET greeting hi-there"), "OK");
    assert_eq!(c.cmd("SET rate 99"), "OK");
    let before = s.dump();
    assert_eq!(before, "max_conns=7 greeting=hi-there rate=99 changes=3");
    let all = c.cmd("ALL");
    s.update_ok(&b1);
    assert_eq!(s.dump(), before);
    assert_eq!(c.cmd("ALL"), all);
    s.check();
}

#[test]
fn changed_settings_survive_v1_to_v2() {
    let case = Case::new("runtime_setting");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(c.cmd("SET max_conns 7"), "OK");
    assert_eq!(c.cmd("SET greeting hi-there"), "OK");
    assert_eq!(c.cmd("SET rate 99"), "OK");
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.version(), "2");
    assert_eq!(s.dump(), before, "settings changed at run time");
    // timeout_ms (its own global) was never changed: v2's default.
    assert_eq!(c.cmd("GET timeout_ms"), "2000");
    s.check();
}

/// Nothing changed after start-up: every setting is the new version's default.
#[test]
fn unchanged_settings_take_new_defaults_v1_to_v2() {
    let case = Case::new("runtime_setting");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    assert_eq!(
        c.cmd("ALL"),
        "max_conns=100 greeting=hello verbose=0 timeout_ms=1000 rate=10 burst=20"
    );
    s.update_ok(&b2);
    assert_eq!(
        c.cmd("ALL"),
        "max_conns=100 greeting=hello verbose=0 timeout_ms=2000 rate=10 burst=50"
    );
    s.check();
}
