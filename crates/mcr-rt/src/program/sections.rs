//! The sections `mcr-pass` emits and the hooks `mcr.h` declares (docs/ABI.md), found through the
//! linker's `__start_`/`__stop_` symbols. They are referenced weakly so a
//! program with no instrumented unit (or a test binary) still links: then
//! every section is empty.

use crate::heap::Site;
pub use mcr_types::abi::{
    GlobalDesc, WrapperDesc, GLOBAL_CONSTANT, GLOBAL_THREAD_LOCAL, GLOBAL_TLS_ACCESSOR,
};
use mcr_types::mcr_section;
use std::ffi::CStr;

// The bounds of every section of mcr_types::abi, in this order (`bounds`).
core::arch::global_asm!(
    ".pushsection .data.rel.ro.mcr_rt_bounds,\"aw\",@progbits",
    ".p2align 3",
    concat!(".weak __start_", mcr_section!(sites)),
    concat!(".weak __stop_", mcr_section!(sites)),
    concat!(".weak __start_", mcr_section!(globals)),
    concat!(".weak __stop_", mcr_section!(globals)),
    concat!(".weak __start_", mcr_section!(typemap)),
    concat!(".weak __stop_", mcr_section!(typemap)),
    concat!(".weak __start_", mcr_section!(hooks)),
    concat!(".weak __stop_", mcr_section!(hooks)),
    concat!(".weak __start_", mcr_section!(qpoints)),
    concat!(".weak __stop_", mcr_section!(qpoints)),
    concat!(".weak __start_", mcr_section!(wrappers)),
    concat!(".weak __stop_", mcr_section!(wrappers)),
    ".globl mcr_rt_section_bounds",
    ".hidden mcr_rt_section_bounds",
    "mcr_rt_section_bounds:",
    concat!(".quad __start_", mcr_section!(sites)),
    concat!(".quad __stop_", mcr_section!(sites)),
    concat!(".quad __start_", mcr_section!(globals)),
    concat!(".quad __stop_", mcr_section!(globals)),
    concat!(".quad __start_", mcr_section!(typemap)),
    concat!(".quad __stop_", mcr_section!(typemap)),
    concat!(".quad __start_", mcr_section!(hooks)),
    concat!(".quad __stop_", mcr_section!(hooks)),
    concat!(".quad __start_", mcr_section!(qpoints)),
    concat!(".quad __stop_", mcr_section!(qpoints)),
    concat!(".quad __start_", mcr_section!(wrappers)),
    concat!(".quad __stop_", mcr_section!(wrappers)),
    ".popsection",
);

extern "C" {
    static mcr_rt_section_bounds: [usize; 12];
}

fn bounds(i: usize) -> (usize, usize) {
    // SAFETY: a static array defined in the asm above; weak symbols that the
    // linker did not define read as 0.
    let b = unsafe { &*std::ptr::addr_of!(mcr_rt_section_bounds) };
    let (s, e) = (b[2 * i], b[2 * i + 1]);
    if s == 0 || e < s {
        (0, 0)
    } else {
        (s, e)
    }
}

fn slice_of<T>(i: usize) -> &'static [T] {
    let (s, e) = bounds(i);
    if s == 0 {
        return &[];
    }
    // SAFETY: the linker concatenated whole, aligned records of type T
    // between the two symbols (every record has the ABI's size and alignment).
    unsafe { std::slice::from_raw_parts(s as *const T, (e - s) / std::mem::size_of::<T>()) }
}

/// Every allocation-site descriptor of this binary.
pub fn sites() -> &'static [Site] {
    slice_of::<Site>(0)
}

/// Every global descriptor of this binary.
pub fn globals() -> &'static [GlobalDesc] {
    slice_of::<GlobalDesc>(1)
}

/// The raw `mcr_typemap` section (decode with `mcr_types::decode_section`).
pub fn typemap_bytes() -> &'static [u8] {
    slice_of::<u8>(2)
}

/// This binary's type map, decoded once (3 ms for memcached's): a new
/// version's control thread decodes it while the program's start-up runs,
/// so the transfer finds it ready.
pub fn typemap() -> &'static mcr_types::TypeMap {
    static MAP: crate::base::computed_once::ComputedOnce<mcr_types::TypeMap> =
        crate::base::computed_once::ComputedOnce::new();
    MAP.get_or_compute(|| mcr_types::decode_section(typemap_bytes()).unwrap_or_default())
}

/// The raw `mcr_hooks` section: `struct mcr_hook` records of mcr.h
/// (decode with `mcr_types::hooks::decode`; offsets index into it).
pub fn hook_bytes() -> &'static [u8] {
    slice_of::<u8>(3)
}

/// Whether the program declares its quiescent points (mcr.toml
/// `[quiescent] functions`): then only the blocking calls marked by
/// `__mcr_declared_point()` are quiescent points and start-up ends.
pub fn declared_points_in_force() -> bool {
    bounds(4).0 != 0
}

/// Every allocation wrapper the pass proved in this binary's units.
pub fn wrappers() -> &'static [WrapperDesc] {
    slice_of::<WrapperDesc>(5)
}

/// Reads a C string from a descriptor; empty for NULL.
pub(crate) fn cstr(p: *const libc::c_char) -> &'static str {
    if p.is_null() {
        return "";
    }
    // SAFETY: descriptor strings are NUL-terminated constants of the binary.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
}
