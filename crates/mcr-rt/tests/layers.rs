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

/// Every layer a file's code names through `crate::` (paths and `use`
/// trees; the first segment of each of [`paths_named`]).
fn layers_named(code: &str) -> Vec<String> {
    paths_named(code, "")
        .iter()
        .filter_map(|p| p.split("::").next())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
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

/// Expands a `use` tree (`a::{b, c::d}`) into its paths.
fn expand_use(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let prefix = if head.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}{head}::")
        };
        let (mut depth, mut start) = (0, 0);
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..k], &prefix, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &prefix, out);
    } else if !tree.is_empty() {
        out.push(format!("{prefix}{tree}"));
    }
}

/// Every path below the crate a file's code names: `crate::a::b` paths,
/// each path of a `use crate::...` tree, and `super::module` from a
/// module's own folder (as `own_layer::module`).
fn paths_named(code: &str, own_layer: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use crate::") {
        let tail = &rest[i + "use crate::".len()..];
        let end = tail.find(';').unwrap_or(tail.len());
        expand_use(&tail[..end], "", &mut paths);
        rest = &tail[end..];
    }
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if !rest.starts_with('{') {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].to_string());
        }
    }
    let mut rest = code;
    while let Some(i) = rest.find("super::") {
        rest = &rest[i + "super::".len()..];
        paths.push(format!("{own_layer}::{}", ident_at(rest)));
    }
    paths
}

/// The modules (`layer/module`) a file's code names ([`paths_named`]).
fn modules_named(code: &str, own_layer: &str) -> Vec<String> {
    paths_named(code, own_layer)
        .iter()
        .filter_map(|p| {
            let mut it = p.split("::");
            let (layer, module) = (it.next()?, it.next()?);
            (rank(layer).is_some() && !module.is_empty()).then(|| format!("{layer}/{module}"))
        })
        .collect()
}

/// A file's module: `layer/module` for a file or folder right under a
/// layer's folder (`heap`, `control`, `init` are one module each).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let parts: Vec<&str> = rel
        .components()
        .map(|c| c.as_os_str().to_str().unwrap_or(""))
        .collect();
    let layer = parts.first()?.trim_end_matches(".rs");
    if parts.len() < 2 || layer == "heap" {
        return Some(layer.to_string());
    }
    Some(format!("{layer}/{}", parts[1].trim_end_matches(".rs")))
}

#[test]
fn no_import_circle_among_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut deps: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for f in &files {
        let (Some(m), Some(layer)) = (module_of(&src, f), layer_of(&src, f)) else {
            continue;
        };
        if m.ends_with("/mod") || m == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let named = modules_named(&code(&text), &layer);
        let e = deps.entry(m.clone()).or_default();
        for n in named {
            if n != m && !n.ends_with("/mod") && !(m == "heap" && n.starts_with("heap")) {
                e.insert(n);
            }
        }
    }
    // Depth-first search for a back edge; report the circle it closes.
    fn visit(
        m: &str,
        deps: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
        circles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            circles.push(format!("{} -> {m}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(m.to_string()) {
            return;
        }
        path.push(m.to_string());
        for n in deps.get(m).into_iter().flatten() {
            visit(n, deps, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for m in deps.keys() {
        visit(m, &deps, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "modules that import each other in a circle (a lower one must register a callback):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_check_sees_a_circle_path() {
    let named = modules_named(
        "use crate::interpose::{quiesce, startup_log::{self, Outcome}};\nfn f() { super::children::x(); crate::program::threads::y(); }",
        "interpose",
    );
    assert_eq!(
        named,
        [
            "interpose/quiesce",
            "interpose/startup_log",
            "interpose/startup_log",
            "program/threads",
            "interpose/children"
        ]
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let named = layers_named(
        "use crate::{heap, program::threads};\nfn f() { crate::new_version::restore::x(); }",
    );
    assert_eq!(named, ["heap", "program", "new_version"]);
}
