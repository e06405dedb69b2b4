//! The binary encoding: each translation unit contributes one record to the
//! `mcr_typemap` ELF section; the linker concatenates them, so a program's
//! map is the merge of every record found in its section.
//!
//! Record: `MCRTMAP1` magic, u32 little-endian payload length, JSON payload.

use crate::merge::merge;
use crate::model::TypeMap;
use thiserror::Error;

pub const SECTION_MAGIC: &[u8; 8] = b"MCRTMAP1";
/// Name of the ELF section holding the records.
pub const SECTION_NAME: &str = crate::abi::TYPEMAP_SECTION;

#[derive(Debug, Error)]
pub enum SectionError {
    #[error("type-map section is truncated at byte {0}")]
    Truncated(usize),
    #[error("type-map record at byte {offset} is not valid: {source}")]
    BadRecord {
        offset: usize,
        source: serde_json::Error,
    },
}

/// Encodes one translation unit's map as a section record.
pub fn encode_unit(map: &TypeMap) -> Vec<u8> {
    let payload = serde_json::to_vec(map).expect("type map serializes");
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(SECTION_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes a whole section (any number of records, padding between them
/// skipped) into one merged map.
pub fn decode_section(bytes: &[u8]) -> Result<TypeMap, SectionError> {
    let mut maps = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0 {
            i += 1;
            continue;
        }
        if bytes.len() < i + 12 || &bytes[i..i + 8] != SECTION_MAGIC {
            return Err(SectionError::Truncated(i));
        }
        let len = u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap()) as usize;
        let start = i + 12;
        let end = start + len;
        if end > bytes.len() {
            return Err(SectionError::Truncated(i));
        }
        let m: TypeMap = serde_json::from_slice(&bytes[start..end])
            .map_err(|source| SectionError::BadRecord { offset: i, source })?;
        maps.push(m);
        i = end;
    }
    Ok(merge(maps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    #[test]
    fn concatenated_records_merge() {
        let mut a = TypeMap::new();
        a.units.push(Unit {
            file: "a.c".into(),
            instrumented: true,
            reason: None,
        });
        let mut b = TypeMap::new();
        b.units.push(Unit {
            file: "b.c".into(),
            instrumented: false,
            reason: Some("boom".into()),
        });
        let mut bytes = encode_unit(&a);
        bytes.extend([0, 0, 0]);
        bytes.extend(encode_unit(&b));
        let m = decode_section(&bytes).unwrap();
        assert_eq!(m.units.len(), 2);
        assert!(decode_section(&bytes[..bytes.len() - 1]).is_err());
    }
}
