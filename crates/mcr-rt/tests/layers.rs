//! The runtime's layers (see `src/lib.rs`): every module imports only from
//! its own layer or the ones below, and no module grows past 700 lines
//! without saying why in its header. Reads the sources; fails naming the
//! file and the import (or the length) that breaks the rule.

use std::path::{Path, PathBuf};

/// The layers, bottom up; `control` and `init` are the top.
const LAYERS: &[&str] = &[
    "heap",
    "base",
    "program",
    "interpose",
    "old_version",
    "new_version",
    "inspect",
    "control",
    "init",
];

fn rank(layer: &str) -> Option<usize> {
    let r = LAYERS.iter().position(|l| *l == layer)?;
    Some(r.min(LAYERS.len() - 2))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The layer a source file belongs to: its first path component under src/.
fn layer_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Code without `//` comments (doc comments name other layers freely).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every layer a file's code names through `crate::` (paths and
/// `use crate::{a::b, c::d}` groups).
fn layers_named(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        out.push(ident_at(&group[k..]).to_string());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident_at(rest).to_string());
        }
    }
    out
}

#[test]
fn imports_only_go_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 40, "found only {} sources", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        let Some(own) = layer_of(&src, f).and_then(|l| rank(&l).map(|r| (l, r))) else {
            continue; // lib.rs
        };
        let text = std::fs::read_to_string(f).unwrap();
        for named in layers_named(&code(&text)) {
            if let Some(r) = rank(&named) {
                if r > own.1 {
                    wrong.push(format!(
                        "{} (layer {}) imports {named}",
                        f.strip_prefix(&src).unwrap().display(),
                        own.0
                    ));
                }
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that go up a layer (register a callback instead):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_module_is_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let stray: Vec<String> = files
        .iter()
        .filter_map(|f| layer_of(&src, f))
        .filter(|l| l != "lib" && rank(l).is_none())
        .collect();
    assert!(stray.is_empty(), "modules outside the layers: {stray:?}");
}

#[test]
fn long_modules_say_why() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let n = text.lines().count();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        if n > 700 && !header.contains("Over 700 lines") {
            long.push(format!(
                "{} ({n} lines)",
                f.strip_prefix(&src).unwrap().display()
            ));
        }
    }
    assert!(
        long.is_empty(),
        "modules over 700 lines whose header does not say why (\"Over 700 lines: ...\"):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let named = layers_named(
        "use crate::{heap, program::threads};\nfn f() { crate::new_version::restore::x(); }",
    );
    assert_eq!(named, ["heap", "program", "new_version"]);
}
