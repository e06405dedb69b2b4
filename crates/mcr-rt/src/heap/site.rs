//! The allocation-site descriptor that `mcr-pass` emits, one per call site
//! (docs/ABI.md, `struct mcr_site`). The heap only stores pointers to it and
//! never dereferences them: after an update they may point into the old
//! binary, which is not mapped any more.

use std::os::raw::c_char;

/// `struct mcr_site` of docs/ABI.md: 48 bytes, 8-aligned, no padding.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// `mcr_types::site_key(file, function, ordinal)`.
    pub key: u64,
    /// NUL-terminated source file name.
    pub file: *const c_char,
    /// NUL-terminated function name.
    pub function: *const c_char,
    pub line: u32,
    /// Bit 0 ([`Site::TYPED`]): the site's type is known.
    pub flags: u32,
    /// Type-map name of the allocated type, null when untyped.
    pub type_name: *const c_char,
    /// `sizeof` the type, 0 when untyped.
    pub elem_size: u64,
}

impl Site {
    /// `flags` bit: the pass inferred the allocated type.
    pub const TYPED: u32 = 1;
}

// SAFETY: a `Site` is immutable static data emitted by the compiler; the raw
// pointers it holds point at other immutable static data.
unsafe impl Sync for Site {}
// SAFETY: as above, nothing in it is tied to a thread.
unsafe impl Send for Site {}

const _: () = assert!(std::mem::size_of::<Site>() == 48);
const _: () = assert!(std::mem::align_of::<Site>() == 8);
