//! Fixture file_offset: read, append and read/write offsets of open files.

use mcr_e2e::{Case, Opt, Server};

fn input(case: &Case) {
    let text: String = (1..=200)
        .map(|i| format!("line-{i:04} {}\n", "x".repeat(i % 13)))
        .collect();
    std::fs::write(case.path().join("input.txt"), text).unwrap();
}

fn line(i: usize) -> String {
    format!("line-{i:04} {}", "x".repeat(i % 13))
}

fn populate(s: &Server) {
    let mut c = s.client();
    for i in 1..=5 {
        assert_eq!(c.cmd("NEXT"), line(i));
    }
    assert_eq!(c.cmd("LOG first"), "6");
    assert_eq!(c.cmd("LOG second"), "13");
    assert_eq!(c.cmd("WRITE abc"), "3");
    assert_eq!(c.cmd("WRITE def"), "6");
    assert_eq!(c.cmd("SEEK 2"), "2");
    assert_eq!(c.cmd("LATE"), "OK");
    assert_eq!(c.cmd("READLATE 12"), "line-0001 x/");
    s.check();
}

fn across(v_to: u32, opt: Opt) {
    let case = Case::new("file_offset");
    input(&case);
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    populate(&s);
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    s.check();
    let mut c = s.client();
    // Reading continues where it stopped (user buffer and kernel offset).
    for i in 6..=40 {
        assert_eq!(c.cmd("NEXT"), line(i));
    }
    // Appends go after what was logged; out.log was not truncated.
    assert_eq!(c.cmd("LOG third"), "19");
    assert_eq!(
        std::fs::read_to_string(case.path().join("out.log")).unwrap(),
        "first\nsecond\nthird\n"
    );
    // rw.dat keeps its content and its offset (opened with O_TRUNC at start-up).
    assert_eq!(c.cmd("WRITE X"), "3");
    assert_eq!(
        std::fs::read_to_string(case.path().join("rw.dat")).unwrap(),
        "abXdef"
    );
    // A file opened after start-up keeps its offset too.
    assert_eq!(c.cmd("READLATE 9"), "line-0002");
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

/// Streams opened with fopen at start-up (built with -DWITH_STDIO): the
/// FILEs are libc's untyped allocations and their open() is libc-internal.
/// Reading must continue, the "w" stream must not be truncated again, and
/// no descriptor may be added.
#[test]
fn stdio_streams_continue_v1_to_v1() {
    let case = Case::new("file_offset");
    input(&case);
    let b1 = case.bin_with(1, Opt::O2, &["WITH_STDIO"]);
    let mut s = case.start(&b1);
    let mut c = s.client();
    for i in 1..=3 {
        assert_eq!(c.cmd("FGETS"), line(i));
    }
    assert_eq!(c.cmd("SLOG a"), "OK");
    assert_eq!(c.cmd("SLOG b"), "OK");
    let before = c.cmd("STDIO");
    s.update_ok(&b1);
    assert_eq!(c.cmd("STDIO"), before);
    assert_eq!(c.cmd("FGETS"), line(4));
    assert_eq!(c.cmd("SLOG c"), "OK");
    assert_eq!(
        std::fs::read_to_string(case.path().join("stdio.log")).unwrap(),
        "a\nb\nc\n"
    );
    s.check();
}
