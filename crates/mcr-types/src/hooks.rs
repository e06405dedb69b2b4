//! User hooks declared in C with `mcr.h` (`MCR_TRANSFORM`,
//! `MCR_AFTER_TRANSFER`): one fixed-size record per hook in the `mcr_hooks`
//! ELF section, concatenated by the linker (docs/ABI.md, docs/hooks.md).
//!
//! The names are stored inline (no pointers), so a tool reading the binary
//! file (`mcr-ctl diff`, the old version checking a new binary) decodes
//! them without applying relocations; only the function pointer needs the
//! loaded program.

use thiserror::Error;

/// Name of the ELF section holding the records.
pub const SECTION_NAME: &str = crate::abi::HOOKS_SECTION;
/// "MCRHOOK1" read as a little-endian u64 (the record's first word).
pub const MAGIC: u64 = u64::from_le_bytes(*b"MCRHOOK1");
/// Room for each name, NUL included (`MCR_HOOK_NAME_MAX` in mcr.h).
pub const NAME_MAX: usize = 128;
/// `struct mcr_hook`: magic, kind, line, new_size, old_size, fn, 3 names.
pub const RECORD_SIZE: usize = 8 + 4 + 4 + 8 + 8 + 8 + 3 * NAME_MAX;
/// Offset of the function pointer inside a record.
pub const FN_OFFSET: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// `void fn(NEW *new, const OLD *old)`, once per value of NEW in the
    /// old state.
    Transform,
    /// `void fn(void)`, once after the transfer, before the new version runs.
    AfterTransfer,
}

/// One hook as declared (the function's name, not its address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDecl {
    pub kind: HookKind,
    /// The new version's type (as spelled in the macro: `struct conn`).
    pub new_type: String,
    /// The user's copy of the old layout, a type of the new binary
    /// (`struct conn_v1`); empty for after-transfer hooks.
    pub old_type: String,
    pub function: String,
    pub line: u32,
    pub new_size: u64,
    pub old_size: u64,
    /// Byte offset of the record in the section (to find its function
    /// pointer in the loaded program).
    pub offset: usize,
}

impl HookDecl {
    /// How the hook is named to people: `user_from_v1` (line 42).
    pub fn display(&self) -> String {
        format!("`{}`", self.function)
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum HookError {
    #[error("mcr_hooks section: {0} bytes is not a whole number of {RECORD_SIZE}-byte records (mcr.h of another version?)")]
    Size(usize),
    #[error("mcr_hooks section: record at byte {0} has no MCRHOOK1 magic")]
    Magic(usize),
    #[error("mcr_hooks section: record at byte {offset} has unknown kind {kind}")]
    Kind { offset: usize, kind: u32 },
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

fn name_at(b: &[u8], i: usize) -> String {
    let s = &b[i..i + NAME_MAX];
    let end = s.iter().position(|&c| c == 0).unwrap_or(NAME_MAX);
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// Decodes the whole section.
pub fn decode(bytes: &[u8]) -> Result<Vec<HookDecl>, HookError> {
    if !bytes.len().is_multiple_of(RECORD_SIZE) {
        return Err(HookError::Size(bytes.len()));
    }
    let mut out = Vec::new();
    for (n, r) in bytes.chunks_exact(RECORD_SIZE).enumerate() {
        let offset = n * RECORD_SIZE;
        if u64_at(r, 0) != MAGIC {
            return Err(HookError::Magic(offset));
        }
        let kind = match u32_at(r, 8) {
            1 => HookKind::Transform,
            2 => HookKind::AfterTransfer,
            kind => return Err(HookError::Kind { offset, kind }),
        };
        out.push(HookDecl {
            kind,
            line: u32_at(r, 12),
            new_size: u64_at(r, 16),
            old_size: u64_at(r, 24),
            new_type: name_at(r, 40),
            old_type: name_at(r, 40 + NAME_MAX),
            function: name_at(r, 40 + 2 * NAME_MAX),
            offset,
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) fn encode(h: &HookDecl) -> Vec<u8> {
    let mut r = vec![0u8; RECORD_SIZE];
    r[0..8].copy_from_slice(&MAGIC.to_le_bytes());
    let kind: u32 = match h.kind {
        HookKind::Transform => 1,
        HookKind::AfterTransfer => 2,
    };
    r[8..12].copy_from_slice(&kind.to_le_bytes());
    r[12..16].copy_from_slice(&h.line.to_le_bytes());
    r[16..24].copy_from_slice(&h.new_size.to_le_bytes());
    r[24..32].copy_from_slice(&h.old_size.to_le_bytes());
    for (i, s) in [&h.new_type, &h.old_type, &h.function].iter().enumerate() {
        let at = 40 + i * NAME_MAX;
        r[at..at + s.len()].copy_from_slice(s.as_bytes());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_sections() {
        let h = HookDecl {
            kind: HookKind::Transform,
            new_type: "struct user".into(),
            old_type: "struct user_v1".into(),
            function: "user_from_v1".into(),
            line: 42,
            new_size: 96,
            old_size: 64,
            offset: 0,
        };
        let a = HookDecl {
            kind: HookKind::AfterTransfer,
            new_type: String::new(),
            old_type: String::new(),
            function: "rebuild".into(),
            line: 50,
            new_size: 0,
            old_size: 0,
            offset: RECORD_SIZE,
        };
        let mut bytes = encode(&h);
        bytes.extend(encode(&a));
        assert_eq!(decode(&bytes).unwrap(), vec![h, a]);
        assert_eq!(
            decode(&bytes[..RECORD_SIZE + 1]),
            Err(HookError::Size(RECORD_SIZE + 1))
        );
        bytes[RECORD_SIZE] ^= 1;
        assert_eq!(decode(&bytes), Err(HookError::Magic(RECORD_SIZE)));
    }
}
