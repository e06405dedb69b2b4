//! Accuracy of allocation typing on tests/corpus, and behaviour of the
//! instrumented programs.
//!
//! Every allocation line of a corpus file says what it allocates:
//! `/* expect: struct node */` or `/* expect: untyped */`. At -O0 and -O2
//! every site must be annotated, no site may be typed wrongly, and at
//! least 95% of the struct-typed sites must be typed. When the runtime
//! archive is present, each program built with mcr-cc must print exactly
//! what its clang-22 build prints.

use mcr_types::{TypeKind, TypeMap};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus")
        .canonicalize()
        .unwrap()
}

fn mcr_cc() -> &'static str {
    env!("CARGO_BIN_EXE_mcr-cc")
}

fn sources() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".c"))
        .collect();
    v.sort();
    v
}

fn expectations(src: &str) -> BTreeMap<u32, String> {
    let text = std::fs::read_to_string(corpus().join(src)).unwrap();
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(at) = line.find("/* expect: ") {
            let rest = &line[at + 11..];
            let end = rest.find(" */").expect("closed expect comment");
            out.insert(i as u32 + 1, rest[..end].to_string());
        }
    }
    out
}

#[derive(Default)]
struct Score {
    struct_total: u32,
    struct_ok: u32,
    all_total: u32,
    all_ok: u32,
    wrong: Vec<String>,
    missed: Vec<String>,
    problems: Vec<String>,
}

fn score_file(
    src: &str,
    opt: &str,
    tmp: &Path,
    s: &mut Score,
) -> Vec<(String, u32, Option<String>)> {
    let obj = tmp.join(format!("{src}{opt}.o"));
    let map_path = tmp.join(format!("{src}{opt}.toml"));
    let st = Command::new(mcr_cc())
        .current_dir(corpus())
        .args([opt, "-c", src, "-o"])
        .arg(&obj)
        .arg(format!("--emit-typemap={}", map_path.display()))
        .env("MCR_STRICT", "1")
        .status()
        .unwrap();
    assert!(st.success(), "mcr-cc {opt} -c {src} failed");
    let map = TypeMap::from_toml(&std::fs::read_to_string(&map_path).unwrap()).unwrap();
    let exp = expectations(src);
    let mut seen = std::collections::BTreeSet::new();
    for site in &map.alloc_sites {
        let Some(want) = exp.get(&site.line) else {
            s.problems.push(format!(
                "{src}:{}: {} site without an expect comment",
                site.line, site.allocator
            ));
            continue;
        };
        seen.insert(site.line);
        let got = site.ty.clone().unwrap_or_else(|| "untyped".into());
        let is_struct = map
            .type_named(want)
            .is_some_and(|t| matches!(t.kind, TypeKind::Struct | TypeKind::Union));
        s.all_total += 1;
        if is_struct {
            s.struct_total += 1;
        }
        let what = format!(
            "{src}:{} {opt}: want `{want}`, got `{got}` ({:?}{})",
            site.line,
            site.rule,
            site.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        if got == *want {
            s.all_ok += 1;
            if is_struct {
                s.struct_ok += 1;
            }
        } else if got == "untyped" {
            s.missed.push(what);
        } else {
            s.wrong.push(what);
        }
    }
    for (line, want) in &exp {
        if !seen.contains(line) {
            s.problems.push(format!(
                "{src}:{line} {opt}: expected `{want}` but no allocation site was found"
            ));
        }
    }
    map.alloc_sites
        .iter()
        .map(|x| (x.id.clone(), x.line, x.ty.clone()))
        .collect()
}

#[test]
fn corpus_typing_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut per_opt = Vec::new();
    for opt in ["-O0", "-O2"] {
        let mut s = Score::default();
        let mut ids = Vec::new();
        for src in sources() {
            ids.push(score_file(&src, opt, tmp.path(), &mut s));
        }
        per_opt.push(ids);
        let pct = 100.0 * s.struct_ok as f64 / s.struct_total.max(1) as f64;
        eprintln!(
            "{opt}: struct-typed sites {}/{} ({pct:.1}%), all sites {}/{}, wrong {}",
            s.struct_ok,
            s.struct_total,
            s.all_ok,
            s.all_total,
            s.wrong.len()
        );
        for m in &s.missed {
            eprintln!("  missed: {m}");
        }
        for w in &s.wrong {
            eprintln!("  WRONG: {w}");
        }
        assert!(
            s.problems.is_empty(),
            "corpus annotation problems:\n{}",
            s.problems.join("\n")
        );
        assert!(
            s.wrong.is_empty(),
            "{opt}: sites typed wrongly:\n{}",
            s.wrong.join("\n")
        );
        assert!(
            s.struct_total >= 50,
            "{opt}: corpus shrank to {} struct sites",
            s.struct_total
        );
        assert!(
            pct >= 95.0,
            "{opt}: only {pct:.1}% of struct-typed sites typed"
        );
    }
    // Site identity and typing do not depend on the optimisation level.
    assert_eq!(per_opt[0], per_opt[1], "sites differ between -O0 and -O2");
}

fn runtime_present() -> bool {
    Path::new(mcr_cc())
        .parent()
        .unwrap()
        .join("libmcr_rt.a")
        .is_file()
        || std::env::var_os("MCR_RT_LIB").is_some()
}

fn build_and_run(cc: &str, src: &str, opt: &str, exe: &Path) -> (i32, String) {
    let st = Command::new(cc)
        .current_dir(corpus())
        .args([opt, src, "-o"])
        .arg(exe)
        .status()
        .unwrap();
    assert!(st.success(), "{cc} {opt} {src} failed to build");
    let out = Command::new(exe).current_dir(corpus()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn corpus_programs_behave_like_clang() {
    if !runtime_present() {
        eprintln!("skipped: no libmcr_rt.a next to mcr-cc (cargo build -p mcr-rt)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for src in sources() {
        for opt in ["-O0", "-O2"] {
            let a = tmp.path().join(format!("{src}{opt}.mcr"));
            let b = tmp.path().join(format!("{src}{opt}.clang"));
            let got = build_and_run(mcr_cc(), &src, opt, &a);
            let want = build_and_run("clang-22", &src, opt, &b);
            assert_eq!(
                got, want,
                "{src} {opt}: instrumented program behaves differently"
            );
            assert!(!want.1.is_empty(), "{src} prints nothing");
        }
    }
}
