//! The type map of one program version, and what can be done with two of them.
//!
//! Invariants:
//! - A type is named by its C spelling (`struct node`, `int`, `struct node *`,
//!   `char[16]`); names are unique inside one [`TypeMap`]. Two different
//!   layouts with one C name (possible across translation units) get a
//!   `#N` suffix when maps are merged.
//! - Allocation sites are identified across versions by [`site_key`] of
//!   (file, function, ordinal), never by line number.
//! - This crate knows nothing of LLVM, ELF or processes.

pub mod abi;
pub mod binary;
pub mod hooks;
pub mod merge;
pub mod model;
pub mod plan;
pub mod protocol;
pub mod section;

pub use model::*;
pub use section::{decode_section, encode_unit, SectionError, SECTION_MAGIC};
