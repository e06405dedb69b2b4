//! The one reader of what `mcr-cc` embeds in an object file or an
//! executable: its type map (every `mcr_typemap` section, concatenated: a
//! relocatable object may hold several) and its user hooks (`mcr_hooks`).
//! `mcr-cc --print-typemap`, `mcr-ctl diff` and the runtime's update check
//! all read binaries through it.

use crate::abi::{HOOKS_SECTION, TYPEMAP_SECTION};
use crate::hooks::HookDecl;
use crate::TypeMap;
use object::{Object, ObjectSection};
use std::path::Path;

/// What `mcr-cc` embedded in one binary.
#[derive(Debug)]
pub struct Embedded {
    pub typemap: TypeMap,
    /// Empty when the binary declares none.
    pub hooks: Vec<HookDecl>,
}

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file: {message}")]
    NotElf { path: String, message: String },
    #[error("{path} was not built with mcr-cc (no {TYPEMAP_SECTION} section)")]
    NoTypeMap { path: String },
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
}

/// Reads the type map and hooks embedded in the binary at `path`.
pub fn read(path: &Path) -> Result<Embedded, BinaryError> {
    let name = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| BinaryError::Read {
        path: name.clone(),
        source,
    })?;
    read_bytes(&data, &name)
}

/// As [`read`], from the binary's bytes; `path` names it in errors.
pub fn read_bytes(data: &[u8], path: &str) -> Result<Embedded, BinaryError> {
    let bad = |message: String| BinaryError::Bad {
        path: path.to_string(),
        message,
    };
    let file = object::File::parse(data).map_err(|e| BinaryError::NotElf {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let section = |name: &str| -> Result<Option<Vec<u8>>, BinaryError> {
        let mut bytes: Option<Vec<u8>> = None;
        for s in file.sections().filter(|s| s.name().ok() == Some(name)) {
            let d = s.data().map_err(|e| bad(e.to_string()))?;
            bytes.get_or_insert_with(Vec::new).extend_from_slice(d);
        }
        Ok(bytes)
    };
    let typemap_bytes = section(TYPEMAP_SECTION)?.ok_or_else(|| BinaryError::NoTypeMap {
        path: path.to_string(),
    })?;
    let typemap = crate::decode_section(&typemap_bytes).map_err(|e| bad(e.to_string()))?;
    let hooks = match section(HOOKS_SECTION)? {
        Some(b) => crate::hooks::decode(&b).map_err(|e| bad(e.to_string()))?,
        None => Vec::new(),
    };
    Ok(Embedded { typemap, hooks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_elf_file_is_named() {
        let e = read_bytes(b"#!/bin/sh\n", "script.sh").unwrap_err();
        assert!(
            e.to_string().starts_with("script.sh is not an ELF file"),
            "{e}"
        );
    }

    #[test]
    fn a_binary_without_a_type_map_is_named() {
        // This test's own executable: an ELF file mcr-cc did not build.
        let me = std::env::current_exe().unwrap();
        let e = read(&me).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("was not built with mcr-cc (no mcr_typemap section)"),
            "{e}"
        );
    }
}
