//! `mcr-ctl diff OLD NEW` on binaries built with mcr-cc: what the report
//! says about user hooks (`mcr.h`) and about a type change that needs one.
//! The e2e fixture `tests/fixtures/transform_hook.c` is the version pair;
//! its variants drop the hook or get its old layout wrong.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = toolchain()
            .dir
            .join(format!("mcr-ctl-diff-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds `src` with mcr-cc and `-D` flags into `dir`.
fn build_c(src: &Path, dir: &Path, out: &str, defines: &[&str]) -> PathBuf {
    let tc = toolchain();
    let bin = dir.join(out);
    let r = Command::new(&tc.cc)
        .args(["-O2", "-Wall"])
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg(src)
        .arg("-o")
        .arg(&bin)
        .env("MCR_RT_LIB", &tc.rt)
        .env("MCR_CONFIG", "/dev/null")
        .output()
        .expect("run mcr-cc");
    assert!(
        r.status.success(),
        "mcr-cc {} {defines:?}:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    bin
}

fn fixture(dir: &Path, version: u32, extra: &[&str]) -> PathBuf {
    let src = tests_dir().join("fixtures/transform_hook.c");
    let mut defines = vec![format!("FIXTURE_VERSION={version}")];
    defines.extend(extra.iter().map(|s| s.to_string()));
    let d: Vec<&str> = defines.iter().map(String::as_str).collect();
    build_c(&src, dir, &format!("v{version}{}", extra.join("-")), &d)
}

fn diff(a: &Path, b: &Path) -> Ctl {
    ctl(&["diff", a.to_str().unwrap(), b.to_str().unwrap()])
}

/// The report row of a type: (change, detail).
fn row(out: &str, name: &str) -> Option<(String, String)> {
    out.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !rest.starts_with("  ") {
            return None;
        }
        let rest = rest.trim_start();
        let (change, detail) = match rest.split_once("  ") {
            Some((c, d)) => (c.trim(), d.trim()),
            None => (rest.trim(), ""),
        };
        Some((change.to_string(), detail.to_string()))
    })
}

#[test]
fn hook_provided_refused_without_and_wrong_layout() {
    let s = Scratch::new("hooks");
    let v1 = fixture(&s.0, 1, &[]);
    let v2 = fixture(&s.0, 2, &[]);
    let no_hook = fixture(&s.0, 2, &["NO_HOOK"]);
    let bad_layout = fixture(&s.0, 2, &["BAD_LAYOUT"]);

    // With the hook in the new binary: which hook, what only it converts,
    // and the update goes ahead (exit 0).
    let r = diff(&v1, &v2);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let (change, detail) = row(&r.stdout, "struct user").expect(&r.stdout);
    assert_eq!(change, "hook", "{}", r.stdout);
    assert!(
        detail.starts_with(
            "transform hook `user_from_v1` (old layout `struct user_v1`) converts what no rule does: \
             `name` (char[32] -> struct fullname), `items` (struct item * -> int *);"
        ),
        "{detail}"
    );
    assert!(
        detail.contains("-timeout_sec") && detail.contains("+timeout_ms"),
        "{detail}"
    );
    assert_eq!(
        row(&r.stdout, "after transfer: `index_users`").map(|x| x.0),
        Some("hook".to_string()),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("REFUSED"), "{}", r.stdout);

    // The same as JSON.
    let r = ctl(&["diff", "--json", v1.to_str().unwrap(), v2.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(j["refused"], false);
    assert!(
        j["types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "struct user" && t["change"] == "hook"),
        "{j}"
    );

    // Without it: refused, type and field named in the update's words.
    let r = diff(&v1, &no_hook);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        row(&r.stdout, "struct user"),
        Some((
            "needs user code".to_string(),
            "type `struct user`: field `name` changed from `char[32]` to `struct fullname`, which no rule converts: add a transform hook".to_string()
        )),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("update would be REFUSED"), "{}", r.stdout);

    // The hook's copy of the old layout is not the old version's.
    let r = diff(&v1, &bad_layout);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    let (change, detail) = row(&r.stdout, "struct user").expect(&r.stdout);
    assert_eq!(change, "needs user code");
    assert_eq!(
        detail,
        "transform hook `user_from_v1` for `struct user` declares the old layout as `struct user_v1`, \
         which differs from the old version's `struct user` at field `timeout_sec`: copy the old version's definition exactly"
    );

    // v2 -> v2: nothing to transform, the hook is not called.
    let r = diff(&v2, &v2);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        row(&r.stdout, "struct user"),
        Some((
            "hook".to_string(),
            "transform hook `user_from_v1` is not called: the old version already has the new layout"
                .to_string()
        )),
        "{}",
        r.stdout
    );
}

/// A pointer field retargeted to an unrelated type (memcached 1.6.18 ->
/// 1.6.38 `crawler_client_t.buf`: `bipbuf_t *` -> `char *`) needs user
/// code, also when the rest of the struct is unchanged; a retarget to
/// `void *` does not.
#[test]
fn pointer_retargeted_to_unrelated_type_needs_user_code() {
    let s = Scratch::new("retarget");
    let src = s.0.join("crawler.c");
    std::fs::write(
        &src,
        r#"#include <stdlib.h>
typedef struct { unsigned long size; unsigned char data[64]; } bipbuf_t;
typedef struct {
#if V == 1
    bipbuf_t *buf;
#elif V == 2
    char *buf;
#else
    void *buf;
#endif
    int sfd;
} crawler_client_t;
crawler_client_t client;
int main(void) { client.buf = calloc(1, 64); return client.buf == 0; }
"#,
    )
    .unwrap();
    let v1 = build_c(&src, &s.0, "c1", &["V=1"]);
    let v2 = build_c(&src, &s.0, "c2", &["V=2"]);
    let v3 = build_c(&src, &s.0, "c3", &["V=3"]);
    let r = diff(&v1, &v2);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        row(&r.stdout, "crawler_client_t"),
        Some((
            "needs user code".to_string(),
            "type `crawler_client_t`: field `buf` changed from `bipbuf_t *` to `char *`, which no rule converts: add a transform hook".to_string()
        )),
        "{}",
        r.stdout
    );
    let r = diff(&v1, &v3);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(row(&r.stdout, "crawler_client_t"), None, "{}", r.stdout);
}
