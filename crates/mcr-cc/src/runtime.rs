//! Finding the runtime archive linked into every instrumented executable.

use anyhow::{bail, Result};
use std::path::PathBuf;

const LIB: &str = "libmcr_rt.a";

/// `$MCR_RT_LIB`, else next to the mcr-cc executable (cargo's target
/// directory), else `<exe_dir>/../lib/mcr/` (installed layout).
pub fn find() -> Result<PathBuf> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("MCR_RT_LIB") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        looked.push(format!("{} (MCR_RT_LIB)", p.display()));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.to_path_buf()))
    {
        for c in [dir.join(LIB), dir.join("../lib/mcr").join(LIB)] {
            if c.is_file() {
                return Ok(c);
            }
            looked.push(c.display().to_string());
        }
    }
    bail!("runtime {LIB} not found; looked at: {} (build it with `cargo build -p mcr-rt` or set MCR_RT_LIB)", looked.join(", "))
}

pub fn link_args() -> Result<Vec<String>> {
    let lib = find()?;
    Ok(vec![
        "-Wl,--whole-archive".into(),
        lib.to_string_lossy().into_owned(),
        "-Wl,--no-whole-archive".into(),
        "-lpthread".into(),
        "-ldl".into(),
        "-lm".into(),
    ])
}

/// The directory holding `mcr.h` (embedded in mcr-cc, written once per
/// version of the header under the system's temporary directory), searched after the
/// user's own include directories.
pub fn include_dir() -> Option<PathBuf> {
    const HEADER: &str = include_str!("../../mcr-rt/include/mcr.h");
    // Named after the header's hash too: builds of different mcr-cc
    // versions (worktrees, branches) on one machine never share the file.
    let dir = std::env::temp_dir().join(format!(
        "mcr-include-{}-{:016x}",
        env!("CARGO_PKG_VERSION"),
        mcr_types::fnv1a(HEADER.bytes())
    ));
    let file = dir.join("mcr.h");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(HEADER) {
        std::fs::create_dir_all(&dir).ok()?;
        // Written aside and renamed: parallel compilers never see half a file.
        let tmp = dir.join(format!("mcr.h.{}", std::process::id()));
        std::fs::write(&tmp, HEADER).ok()?;
        std::fs::rename(&tmp, &file).ok()?;
    }
    Some(dir)
}
