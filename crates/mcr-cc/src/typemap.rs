//! Reading the embedded type map back out of an object or executable.

use anyhow::{anyhow, Context, Result};
use mcr_types::TypeMap;
use object::{Object, ObjectSection};
use std::path::Path;

/// The merged type map in the `mcr_typemap` section(s) of `path`.
pub fn read(path: &Path) -> Result<TypeMap> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{}: not an object file", path.display()))?;
    let mut bytes = Vec::new();
    let mut found = false;
    for s in file.sections() {
        if s.name().ok() == Some(mcr_types::section::SECTION_NAME) {
            found = true;
            bytes.extend_from_slice(
                s.data()
                    .with_context(|| format!("{}: reading section", path.display()))?,
            );
        }
    }
    if !found {
        return Err(anyhow!(
            "{}: no {} section (not built with mcr-cc?)",
            path.display(),
            mcr_types::section::SECTION_NAME
        ));
    }
    mcr_types::decode_section(&bytes).with_context(|| format!("{}: bad type map", path.display()))
}

pub fn write_toml(map: &TypeMap, path: &Path) -> Result<()> {
    let s = map.to_toml().context("serializing the type map")?;
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}
