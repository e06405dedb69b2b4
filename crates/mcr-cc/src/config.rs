//! `mcr.toml`: found through `MCR_CONFIG`, or searched from the current
//! directory upward (so a project's file covers its subdirectories).
//!
//! ```toml
//! [allocators]
//! xmalloc = "malloc"   # wrapper = the libc allocator it behaves like
//! xcalloc = "calloc"
//! ```

use anyhow::{bail, Context, Result};
use mcr_pass::{AllocKind, Wrappers};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    allocators: BTreeMap<String, String>,
    /// `"struct conn.fd" = "sfd"`: the old field's name in the new version.
    #[serde(default)]
    renames: BTreeMap<String, String>,
}

/// `[renames]` of the project's mcr.toml, empty without one.
pub fn renames() -> Result<BTreeMap<String, String>> {
    let Some(path) = find() else {
        return Ok(BTreeMap::new());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let f: File = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for k in f.renames.keys() {
        if !k.contains('.') {
            bail!(
                "{}: [renames] \"{k}\": write it as \"struct type.old_field\" = \"new_field\"",
                path.display()
            );
        }
    }
    Ok(f.renames)
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

/// The user allocators of the project, empty without a config file.
pub fn load() -> Result<Wrappers> {
    let Some(path) = find() else {
        return Ok(Wrappers::new());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let f: File = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Wrappers::new();
    for (name, like) in f.allocators {
        let Some(kind) = AllocKind::from_name(&like) else {
            bail!("{}: [allocators] {name} = \"{like}\": not a libc allocator (malloc, calloc, realloc, reallocarray, strdup, strndup, aligned_alloc, memalign, valloc, posix_memalign)", path.display());
        };
        out.insert(name, kind);
    }
    Ok(out)
}
