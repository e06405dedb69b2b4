//! Fixture renamed_field: a field renamed in v2 keeps its value when the
//! new version's mcr.toml names the rename (renamed_field.mcr.toml); a
//! global that moved to another unit (external in v1, a `static` in v2:
//! a new name) keeps its value, and a pointer to it follows.

use mcr_e2e::{Case, Opt};

#[test]
fn renamed_field_keeps_its_value_v1_to_v2() {
    let case = Case::new("renamed_field");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let mut c = s.client();
    for i in 1..=5 {
        assert_eq!(c.cmd("HIT"), i.to_string());
    }
    let before = s.dump();
    assert_eq!(before, "id=7 served=5 hits=5");
    s.update_ok(&b2);
    assert_eq!(s.version(), "2");
    assert_eq!(
        s.dump(),
        before,
        "the renamed counter and the moved global kept their values"
    );
    assert_eq!(c.cmd("HIT"), "6");
    s.check();
}
