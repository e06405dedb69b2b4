//! Reading the embedded type map back out of an object or executable.

use anyhow::{Context, Result};
use mcr_types::TypeMap;
use std::path::Path;

/// The merged type map in the `mcr_typemap` section(s) of `path`.
pub fn read(path: &Path) -> Result<TypeMap> {
    Ok(mcr_types::binary::read(path)?.typemap)
}

pub fn write_toml(map: &TypeMap, path: &Path) -> Result<()> {
    let s = map.to_toml().context("serializing the type map")?;
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}
