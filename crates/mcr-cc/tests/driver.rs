//! mcr-cc as a drop-in for clang-22: modes, dependency files, errors,
//! fallback, embedded type maps.

use std::path::Path;
use std::process::{Command, Output};

fn mcr_cc() -> &'static str {
    env!("CARGO_BIN_EXE_mcr-cc")
}

const PROG: &str = r#"#include <stdlib.h>
#include "h.h"
struct n { int v; struct n *next; };
int main(void) { struct n *p = malloc(sizeof *p); p->v = VAL; return p->v - VAL; }
"#;

fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("m.c"), PROG).unwrap();
    std::fs::write(d.path().join("h.h"), "#define VAL 3\n").unwrap();
    std::fs::write(d.path().join("g.c"), "int g(void) { return 1; }\n").unwrap();
    std::fs::write(d.path().join("bad.c"), "int main(void) { return nope; }\n").unwrap();
    d
}

fn run(dir: &Path, prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .current_dir(dir)
        .args(args)
        .env_remove("MCR_STRICT")
        .output()
        .unwrap()
}

#[test]
fn passthrough_modes_match_clang() {
    let d = setup();
    for args in [
        &["--version"][..],
        &["-dumpversion"],
        &["-E", "m.c"],
        &["-M", "m.c"],
        &["-MM", "m.c"],
        &["-print-prog-name=ld"],
    ] {
        let a = run(d.path(), mcr_cc(), args);
        let b = run(d.path(), "clang-22", args);
        assert_eq!(a.stdout, b.stdout, "{args:?}");
        assert_eq!(a.status.code(), b.status.code(), "{args:?}");
    }
}

#[test]
fn compile_errors_are_clangs() {
    let d = setup();
    let a = run(d.path(), mcr_cc(), &["-c", "bad.c"]);
    let b = run(d.path(), "clang-22", &["-c", "bad.c"]);
    assert_eq!(a.status.code(), b.status.code());
    assert_eq!(
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
}

#[test]
fn dependency_files_name_the_real_source_and_object() {
    let d = setup();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    let o = run(d.path(), mcr_cc(), &["-MMD", "-c", "m.c", "-o", "sub/m.o"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dep = std::fs::read_to_string(d.path().join("sub/m.d")).unwrap();
    assert_eq!(dep.trim(), "sub/m.o: m.c h.h");
    let o = run(
        d.path(),
        mcr_cc(),
        &["-MD", "-MF", "x.d", "-MT", "tgt", "-c", "m.c"],
    );
    assert!(o.status.success());
    assert!(std::fs::read_to_string(d.path().join("x.d"))
        .unwrap()
        .starts_with("tgt: m.c"));
    assert!(d.path().join("m.o").is_file());
}

#[test]
fn instruments_c_and_keeps_other_inputs() {
    let d = setup();
    let o = run(d.path(), mcr_cc(), &["-S", "-emit-llvm", "m.c", "-o", "-"]);
    let ir = String::from_utf8_lossy(&o.stdout);
    assert!(ir.contains("@__mcr_malloc(i64"), "{ir}");
    assert!(ir.contains("section \"mcr_sites\""));
    assert!(ir.contains("section \"mcr_typemap\""));
    assert!(!ir.contains("!alloc_token"));
    assert!(!ir.contains("sanitize_alloc_token"));
    // No -g: the forced debug info is gone again.
    assert!(!ir.contains("!DICompileUnit"));
    let o = run(
        d.path(),
        mcr_cc(),
        &["-O2", "-c", "m.c", "g.c", "--emit-typemap"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let map = std::fs::read_to_string(d.path().join("m.o.typemap.toml")).unwrap();
    assert!(map.contains("type = \"struct n\""), "{map}");
    let o = run(d.path(), mcr_cc(), &["--print-typemap", "m.o"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("rule = \"alloc-token\""));
}

#[test]
fn response_files_and_explicit_language() {
    let d = setup();
    std::fs::write(d.path().join("args.rsp"), "-O1 -c \"m.c\" -o 'r.o'\n").unwrap();
    assert!(run(d.path(), mcr_cc(), &["@args.rsp"]).status.success());
    assert!(d.path().join("r.o").is_file());
    std::fs::copy(d.path().join("m.c"), d.path().join("m.txt")).unwrap();
    let o = run(
        d.path(),
        mcr_cc(),
        &[
            "-x",
            "c",
            "-c",
            "m.txt",
            "-o",
            "x.o",
            "--emit-typemap=x.toml",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(d.path().join("x.toml"))
        .unwrap()
        .contains("struct n"));
}

#[test]
fn failing_pass_falls_back_or_fails_strictly() {
    let d = setup();
    let o = Command::new(mcr_cc())
        .current_dir(d.path())
        .args(["-c", "m.c", "--emit-typemap=m.toml"])
        .env("MCR_TEST_FAIL_PASS", "1")
        .env_remove("MCR_STRICT")
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("mcr-cc: warning: m.c: not instrumented: "),
        "{err}"
    );
    let map = std::fs::read_to_string(d.path().join("m.toml")).unwrap();
    assert!(map.contains("instrumented = false"), "{map}");
    let o = Command::new(mcr_cc())
        .current_dir(d.path())
        .args(["-c", "m.c"])
        .env("MCR_TEST_FAIL_PASS", "1")
        .env("MCR_STRICT", "1")
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn links_executables_with_the_runtime() {
    let bin_dir = Path::new(mcr_cc()).parent().unwrap();
    if !bin_dir.join("libmcr_rt.a").is_file() && std::env::var_os("MCR_RT_LIB").is_none() {
        eprintln!("skipped: no runtime archive");
        return;
    }
    let d = setup();
    let o = run(
        d.path(),
        mcr_cc(),
        &["-O2", "m.c", "g.c", "-o", "prog", "--emit-typemap"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run(d.path(), d.path().join("prog").to_str().unwrap(), &[])
        .status
        .success());
    let map = std::fs::read_to_string(d.path().join("prog.typemap.toml")).unwrap();
    assert_eq!(map.matches("[[units]]").count(), 2, "{map}");
    // Shared objects are instrumented but get no runtime.
    let o = run(
        d.path(),
        mcr_cc(),
        &["-shared", "-fPIC", "m.c", "-o", "libm.so"],
    );
    assert!(o.status.success());
    let o = Command::new("nm")
        .arg("-D")
        .arg(d.path().join("libm.so"))
        .output()
        .unwrap();
    let syms = String::from_utf8_lossy(&o.stdout);
    assert!(syms.contains("U __mcr_malloc"), "{syms}");
}

#[test]
fn configure_style_probes_are_left_alone() {
    // autoconf's AC_CHECK_FUNCS declares the function with a wrong prototype.
    let d = setup();
    std::fs::write(
        d.path().join("conftest.c"),
        "char malloc();\nchar read();\nint main(void) { return malloc() + read(); }\n",
    )
    .unwrap();
    let a = run(d.path(), mcr_cc(), &["-c", "conftest.c", "-o", "a.o"]);
    let b = run(d.path(), "clang-22", &["-c", "conftest.c", "-o", "b.o"]);
    assert_eq!(a.status.code(), b.status.code());
    assert_eq!(a.stderr, b.stderr);
    let o = Command::new("nm")
        .arg(d.path().join("a.o"))
        .output()
        .unwrap();
    let syms = String::from_utf8_lossy(&o.stdout);
    assert!(
        syms.contains("U malloc") && !syms.contains("__mcr_malloc"),
        "{syms}"
    );
}

#[test]
fn plain_makefile_includes_mcr_mk() {
    // A plain Makefile that sets CC itself, before and after the include,
    // and builds its objects with make's implicit rule.
    let mk = concat!(env!("CARGO_MANIFEST_DIR"), "/mcr.mk");
    let d = setup();
    std::fs::write(
        d.path().join("Makefile"),
        format!(
            "CC = gcc\ninclude {mk}\nCC = gcc\n\
             prog: m.o g.o\n\t$(CC) -o $@ m.o g.o\n\
             objs: m.o g.o\n"
        ),
    )
    .unwrap();
    let bin_dir = Path::new(mcr_cc()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let has_rt = bin_dir.join("libmcr_rt.a").is_file() || std::env::var_os("MCR_RT_LIB").is_some();
    let target = if has_rt { "prog" } else { "objs" };
    let o = Command::new("make")
        .current_dir(d.path())
        .arg(target)
        .env("PATH", &path)
        .env_remove("MCR_CC")
        .env_remove("MCR_STRICT")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Each object carries its unit's type map.
    let o = run(d.path(), mcr_cc(), &["--print-typemap", "m.o"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("type = \"struct n\""));
    if !has_rt {
        eprintln!("no runtime archive: objects checked, link skipped");
        return;
    }
    // The linked program carries both units' maps and runs.
    let o = run(d.path(), mcr_cc(), &["--print-typemap", "prog"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let map = String::from_utf8_lossy(&o.stdout);
    assert_eq!(map.matches("[[units]]").count(), 2, "{map}");
    assert!(run(d.path(), d.path().join("prog").to_str().unwrap(), &[])
        .status
        .success());
}

/// Section names of an object file (`readelf -S -W`).
fn sections(obj: &Path) -> String {
    let o = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(obj)
        .output()
        .unwrap();
    assert!(o.status.success(), "readelf {}", obj.display());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn assembly_and_cxx_go_to_clang_untouched() {
    let d = setup();
    let p = d.path();
    std::fs::write(
        p.join("a.S"),
        "#define SEVEN 7\n.globl asm_seven\nasm_seven:\n  mov $SEVEN, %eax\n  ret\n",
    )
    .unwrap();
    std::fs::write(
        p.join("s.s"),
        ".globl s_one\ns_one:\n  mov $1, %eax\n  ret\n",
    )
    .unwrap();
    // C++ that allocates: instrumented, it would call __mcr_malloc.
    let cxx = "#include <stdlib.h>\nstruct n { int v; };\n\
               extern \"C\" int f(void) { n *p = (n *)malloc(sizeof *p); p->v = 1;\n\
               int *q = new int(2); int r = p->v + *q; delete q; free(p); return r; }\n\
               extern \"C\" void *keep(void) { return malloc(16); }\n";
    std::fs::write(p.join("x.cpp"), cxx).unwrap();
    std::fs::write(p.join("y.c"), cxx).unwrap(); // C++ under a .c name, with -x c++
    let cases: [&[&str]; 4] = [
        &["-O2", "-c", "a.S"],
        &["-c", "s.s"],
        &["-O2", "-c", "x.cpp"],
        &["-O2", "-x", "c++", "-c", "y.c"],
    ];
    for args in cases {
        let src = args[args.len() - 1];
        let mut a = args.to_vec();
        a.extend(["-o", "mcr.o"]);
        let mut b = args.to_vec();
        b.extend(["-o", "clang.o"]);
        let oa = run(p, mcr_cc(), &a);
        let ob = run(p, "clang-22", &b);
        assert!(
            oa.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&oa.stderr)
        );
        assert!(ob.status.success(), "{args:?}");
        assert_eq!(oa.stderr, ob.stderr, "{args:?}");
        let (ma, mb) = (
            std::fs::read(p.join("mcr.o")).unwrap(),
            std::fs::read(p.join("clang.o")).unwrap(),
        );
        assert!(ma == mb, "{src}: mcr-cc's object differs from clang-22's");
        let secs = sections(&p.join("mcr.o"));
        assert!(!secs.contains("mcr_"), "{src}: {secs}");
        assert!(!run(p, mcr_cc(), &["--print-typemap", "mcr.o"])
            .status
            .success());
    }
    // Mixed with a C unit in one call: the C unit is instrumented, the
    // others are still clang-22's objects.
    for (src, obj) in [("a.S", "a.o"), ("x.cpp", "x.o")] {
        assert!(run(p, "clang-22", &["-O2", "-c", src]).status.success());
        std::fs::rename(p.join(obj), p.join(format!("clang-{obj}"))).unwrap();
    }
    let o = run(p, mcr_cc(), &["-O2", "-c", "m.c", "a.S", "x.cpp"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for obj in ["a.o", "x.o"] {
        assert!(
            std::fs::read(p.join(obj)).unwrap()
                == std::fs::read(p.join(format!("clang-{obj}"))).unwrap(),
            "{obj}: mcr-cc's object differs from clang-22's"
        );
    }
    assert!(sections(&p.join("m.o")).contains("mcr_typemap"));
    let o = Command::new("nm").arg(p.join("x.o")).output().unwrap();
    let syms = String::from_utf8_lossy(&o.stdout);
    assert!(
        syms.contains("U malloc") && !syms.contains("__mcr"),
        "{syms}"
    );
}
