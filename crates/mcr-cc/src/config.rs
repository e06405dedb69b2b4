//! `mcr.toml`: found through `MCR_CONFIG`, or searched from the current
//! directory upward (so a project's file covers its subdirectories).
//!
//! ```toml
//! [allocators]
//! xmalloc = "malloc"   # wrapper = the libc allocator it behaves like
//! xcalloc = "calloc"
//!
//! [allocators.ngx_palloc]   # carves objects out of memory it owns
//! kind = "pool"             # or "slab"
//! size = 1                  # index of the size argument
//! release = ["ngx_reset_pool"]  # optional: functions whose first argument's
//!                           # heap block no longer holds live objects
//! [allocators.slabs_alloc]
//! kind = "slab"
//! size = 0
//! free = "slabs_free"       # first argument: the object given back
//!
//! [quiescent]               # the program's event loops: blocking calls
//! functions = ["ngx_epoll_process_events"]  # made directly in these are
//!                           # its only quiescent points and start-up ends
//!
//! [hooks]                   # an update's user code (docs/hooks.md), compiled
//! sources = ["updates/1.0-2.0"]  # and linked into every executable; a
//!                           # directory means its *.c; relative to this file
//! ```

use anyhow::{bail, Context, Result};
use mcr_pass::{AllocKind, CarveKind, Carver, Carvers, Wrappers};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    allocators: BTreeMap<String, Allocator>,
    /// `"struct conn.fd" = "sfd"`: the old field's name in the new version.
    #[serde(default)]
    renames: BTreeMap<String, String>,
    #[serde(default)]
    quiescent: Quiescent,
    #[serde(default)]
    hooks: HookSources,
}

/// `[hooks]`: C sources of an update's hooks, linked into executables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookSources {
    #[serde(default)]
    sources: Vec<String>,
}

/// `[quiescent]`: where the program waits for work, declared by function.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quiescent {
    #[serde(default)]
    functions: Vec<String>,
}

/// What the project's mcr.toml tells the pass; all empty without one.
pub struct Project {
    pub wrappers: Wrappers,
    pub carvers: Carvers,
    /// `[renames]`: `"struct type.old_field"` -> the new field's name.
    pub renames: BTreeMap<String, String>,
    /// `[quiescent] functions`: the program's event loops.
    pub quiescent_functions: std::collections::BTreeSet<String>,
    /// `[hooks] sources`, resolved against the mcr.toml's directory.
    pub hook_sources: Vec<PathBuf>,
}

/// Reads and checks the project's mcr.toml once.
pub fn load() -> Result<Project> {
    let Some(path) = find() else {
        return Ok(Project {
            wrappers: Wrappers::new(),
            carvers: Carvers::default(),
            renames: BTreeMap::new(),
            quiescent_functions: Default::default(),
            hook_sources: Vec::new(),
        });
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let f: File = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let (wrappers, carvers) = parse_allocators(f.allocators)
        .with_context(|| format!("{}: [allocators]", path.display()))?;
    for k in f.renames.keys() {
        if !k.contains('.') {
            bail!(
                "{}: [renames] \"{k}\": write it as \"struct type.old_field\" = \"new_field\"",
                path.display()
            );
        }
    }
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    Ok(Project {
        wrappers,
        carvers,
        renames: f.renames,
        quiescent_functions: f.quiescent.functions.into_iter().collect(),
        hook_sources: f.hooks.sources.iter().map(|s| base.join(s)).collect(),
    })
}

/// One `[allocators]` entry: a malloc-like wrapper (`xmalloc = "malloc"`)
/// or a pool/slab allocator table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Allocator {
    Like(String),
    Carving(CarvingAllocator),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CarvingAllocator {
    kind: String,
    size: u32,
    #[serde(default)]
    free: Option<String>,
    #[serde(default)]
    release: Vec<String>,
}

fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MCR_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let c = dir.join("mcr.toml");
        if c.is_file() {
            return Some(c);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn parse_allocators(all: BTreeMap<String, Allocator>) -> Result<(Wrappers, Carvers)> {
    let mut out = Wrappers::new();
    let mut carvers = Carvers::default();
    for (name, a) in all {
        match a {
            Allocator::Like(like) => {
                let Some(kind) = AllocKind::from_name(&like) else {
                    bail!("{name} = \"{like}\": not a libc allocator (malloc, calloc, realloc, reallocarray, strdup, strndup, aligned_alloc, memalign, valloc, posix_memalign)");
                };
                out.insert(name, kind);
            }
            Allocator::Carving(c) => {
                let kind = match c.kind.as_str() {
                    "pool" => CarveKind::Pool,
                    "slab" => CarveKind::Slab,
                    k => bail!("{name}: kind = \"{k}\": write \"pool\" (objects die with their pool) or \"slab\" (objects freed one by one)"),
                };
                if kind == CarveKind::Slab && c.free.is_none() {
                    bail!("{name}: a slab allocator needs `free = \"FUNCTION\"` (the function that gives an object back)");
                }
                if let Some(fr) = c.free {
                    carvers.frees.insert(fr, 0);
                }
                for r in c.release {
                    carvers.releases.insert(r, 0);
                }
                carvers.allocators.insert(
                    name,
                    Carver {
                        kind,
                        size_arg: c.size,
                    },
                );
            }
        }
    }
    Ok((out, carvers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(Wrappers, Carvers)> {
        let f: File = toml::from_str(s)?;
        parse_allocators(f.allocators)
    }

    #[test]
    fn wrappers_and_carving_allocators() {
        let (w, c) = parse(
            r#"
            [allocators]
            xmalloc = "malloc"
            [allocators.ngx_palloc]
            kind = "pool"
            size = 1
            release = ["ngx_reset_pool"]
            [allocators.slabs_alloc]
            kind = "slab"
            size = 0
            free = "slabs_free"
            "#,
        )
        .unwrap();
        assert_eq!(w.get("xmalloc"), Some(&AllocKind::Malloc));
        assert_eq!(
            c.allocators["ngx_palloc"],
            Carver {
                kind: CarveKind::Pool,
                size_arg: 1
            }
        );
        assert_eq!(c.allocators["slabs_alloc"].kind, CarveKind::Slab);
        assert_eq!(c.frees.get("slabs_free"), Some(&0));
        assert_eq!(c.releases.get("ngx_reset_pool"), Some(&0));
    }

    #[test]
    fn slab_without_free_and_unknown_kind_are_refused() {
        let e = parse("[allocators.a]\nkind = \"slab\"\nsize = 0\n").unwrap_err();
        assert!(e.to_string().contains("free"), "{e}");
        let e = parse("[allocators.a]\nkind = \"arena\"\nsize = 0\n").unwrap_err();
        assert!(e.to_string().contains("pool"), "{e}");
    }
}
