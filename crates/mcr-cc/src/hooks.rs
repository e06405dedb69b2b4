//! An update's user code (docs/hooks.md, "Hooks in a real build"): C
//! sources holding `MCR_TRANSFORM` / `MCR_AFTER_TRANSFER` hooks, named by
//! the project's `mcr.toml` (`[hooks] sources`) or by `MCR_HOOKS` (a
//! colon-separated list), compiled through the pass and linked into every
//! executable mcr-cc links, so the server's own build system is not
//! edited. A directory stands for the `*.c` files directly in it, and its
//! `renames.toml` (`"TYPE.old_field" = "new_field"` or `"outer.inner"`,
//! as mcr.toml's `[renames]`) goes into the hook units' type maps, so the
//! renames of one update are in the new binary only, and its `cflags`
//! (one line of words, e.g. `-DHAVE_CONFIG_H -I.`) are added when its
//! sources compile (relative paths: the directory the link runs in), and
//! its `executables` (file names, white-space separated) limit which
//! executables get them: a hook calling the server's functions links into
//! the server, not into the test programs the same build links.

use crate::args::{Cmd, Lang};
use crate::compile::{self, Unit};
use crate::config::Project;
use anyhow::{bail, Context, Result};
use mcr_pass::PassConfig;
use std::path::{Path, PathBuf};

/// The hook sources and the field renames their directories declare.
#[derive(Debug)]
pub struct Hooks {
    /// Each source with the words of its directory's `cflags`.
    pub files: Vec<(PathBuf, Vec<String>)>,
    /// Per source: the executables it goes into (None: every one).
    into: Vec<Option<Vec<String>>>,
    pub renames: std::collections::BTreeMap<String, String>,
}

/// Every hook source file, in a stable order (mcr.toml's, then
/// `MCR_HOOKS`'s; each directory's files sorted by name).
pub fn sources(project: &Project) -> Result<Hooks> {
    let mut named: Vec<PathBuf> = project.hook_sources.clone();
    if let Some(env) = std::env::var_os("MCR_HOOKS") {
        named.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    let mut out = Vec::new();
    let mut renames = std::collections::BTreeMap::new();
    let mut into_all = Vec::new();
    for p in named {
        if p.is_dir() {
            let flags: Vec<String> = match std::fs::read_to_string(p.join("cflags")) {
                Ok(t) => t.split_whitespace().map(String::from).collect(),
                Err(_) => Vec::new(),
            };
            let into: Option<Vec<String>> = std::fs::read_to_string(p.join("executables"))
                .ok()
                .map(|t| t.split_whitespace().map(String::from).collect());
            let r = p.join("renames.toml");
            if r.is_file() {
                let text = std::fs::read_to_string(&r)
                    .with_context(|| format!("hooks: reading {}", r.display()))?;
                let m: std::collections::BTreeMap<String, String> = toml::from_str(&text)
                    .with_context(|| format!("hooks: parsing {}", r.display()))?;
                for k in m.keys() {
                    if !k.contains('.') {
                        bail!(
                            "{}: \"{k}\": write it as \"TYPE.old_field\" = \"new_field\"",
                            r.display()
                        );
                    }
                }
                renames.extend(m);
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("hooks: reading directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "c") && f.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("hooks: directory {} holds no .c file", p.display());
            }
            into_all.extend(files.iter().map(|_| into.clone()));
            out.extend(files.into_iter().map(|f| (f, flags.clone())));
        } else if p.is_file() {
            into_all.push(None);
            out.push((p, Vec::new()));
        } else {
            bail!(
                "hooks: {} (from mcr.toml [hooks] or MCR_HOOKS) is neither a C file nor a directory",
                p.display()
            );
        }
    }
    Ok(Hooks {
        files: out,
        into: into_all,
        renames,
    })
}

impl Hooks {
    /// Keeps the sources that go into the executable `output` (a path).
    pub fn keep_for(&mut self, output: &str) {
        let name = Path::new(output)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(output);
        let keep: Vec<bool> = self
            .into
            .iter()
            .map(|i| i.as_ref().is_none_or(|v| v.iter().any(|e| e == name)))
            .collect();
        let mut k = keep.iter();
        self.files.retain(|_| *k.next().unwrap_or(&true));
        let mut k = keep.iter();
        self.into.retain(|_| *k.next().unwrap_or(&true));
    }
}

/// `MCR_HOOKS_CFLAGS`: words for compiling the hooks (split at white
/// space), e.g. `-DHAVE_CONFIG_H -I.` so a hook includes the new version's
/// own headers (relative paths: the directory the link runs in).
fn extra_flags() -> Vec<String> {
    std::env::var("MCR_HOOKS_CFLAGS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Compiles each hook source to an object in `tmp` (through the pass, so
/// the old layouts they copy enter the type map) and returns the objects
/// to link. They get `-O2`, mcr.h's directory and `MCR_HOOKS_CFLAGS`,
/// never the flags of the program's own units.
pub fn compile(
    files: &[(PathBuf, Vec<String>)],
    cfg: &PassConfig,
    tmp: &Path,
) -> Result<Vec<String>> {
    // A directory of its own: a hook source named like one of the
    // program's units never shares its intermediate files.
    let tmp = tmp.join("hooks");
    std::fs::create_dir_all(&tmp).context("creating the hooks' temporary directory")?;
    let mut objs = Vec::new();
    for (k, (src, dir_flags)) in files.iter().enumerate() {
        let src_s = src.to_string_lossy().into_owned();
        let obj = tmp.join(format!("mcr-hook-{k}.o"));
        let obj_s = obj.to_string_lossy().into_owned();
        let mut words: Vec<String> = dir_flags.clone();
        words.extend(extra_flags());
        words.extend(
            ["-O2", "-Wall", "-c", &src_s, "-o", &obj_s]
                .iter()
                .map(|s| s.to_string()),
        );
        let cmd = Cmd::parse(&words);
        let unit = Unit {
            src: &src_s,
            lang: &Lang::C,
            out: obj.clone(),
            stage: "-c",
            dep_target: obj_s.clone(),
            dep_file: None,
            quiet_unused: true,
        };
        compile::compile_unit(&cmd, &unit, cfg, &tmp)
            .with_context(|| format!("compiling hook source {}", src.display()))?;
        objs.push(obj_s);
    }
    Ok(objs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(paths: Vec<PathBuf>) -> Project {
        Project {
            wrappers: Default::default(),
            carvers: Default::default(),
            renames: Default::default(),
            quiescent_functions: Default::default(),
            hook_sources: paths,
        }
    }

    #[test]
    fn a_directory_gives_its_sources_renames_and_cflags() {
        let d = tempfile::tempdir().unwrap();
        for f in ["b.c", "a.c", "notes.txt"] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        std::fs::write(d.path().join("cflags"), "-DX -I.\n").unwrap();
        std::fs::write(d.path().join("renames.toml"), "\"T.old\" = \"n.old\"\n").unwrap();
        let h = sources(&project(vec![d.path().to_path_buf()])).unwrap();
        let names: Vec<_> = h
            .files
            .iter()
            .map(|(f, _)| f.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.c", "b.c"]);
        assert_eq!(h.files[0].1, ["-DX", "-I."]);
        assert_eq!(h.renames.get("T.old").map(String::as_str), Some("n.old"));
        std::fs::write(d.path().join("executables"), "server\n").unwrap();
        let mut h = sources(&project(vec![d.path().to_path_buf()])).unwrap();
        h.keep_for("tests/testapp");
        assert!(h.files.is_empty());
        let mut h = sources(&project(vec![d.path().to_path_buf()])).unwrap();
        h.keep_for("./server");
        assert_eq!(h.files.len(), 2);
    }

    #[test]
    fn missing_and_empty_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = sources(&project(vec![d.path().to_path_buf()])).unwrap_err();
        assert!(e.to_string().contains("no .c file"), "{e}");
        let e = sources(&project(vec![d.path().join("gone.c")])).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
        std::fs::write(d.path().join("a.c"), "").unwrap();
        std::fs::write(d.path().join("renames.toml"), "\"nodot\" = \"x\"\n").unwrap();
        let e = sources(&project(vec![d.path().to_path_buf()])).unwrap_err();
        assert!(e.to_string().contains("TYPE.old_field"), "{e}");
    }
}
