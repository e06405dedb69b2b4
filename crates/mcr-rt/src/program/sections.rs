//! The sections `mcr-pass` emits and the hooks `mcr.h` declares (docs/ABI.md), found through the
//! linker's `__start_`/`__stop_` symbols. They are referenced weakly so a
//! program with no instrumented unit (or a test binary) still links: then
//! every section is empty.

use crate::heap::Site;
use std::ffi::CStr;

core::arch::global_asm!(
    ".pushsection .data.rel.ro.mcr_rt_bounds,\"aw\",@progbits",
    ".p2align 3",
    ".weak __start_mcr_sites",
    ".weak __stop_mcr_sites",
    ".weak __start_mcr_globals",
    ".weak __stop_mcr_globals",
    ".weak __start_mcr_typemap",
    ".weak __stop_mcr_typemap",
    ".weak __start_mcr_hooks",
    ".weak __stop_mcr_hooks",
    ".weak __start_mcr_qpoints",
    ".weak __stop_mcr_qpoints",
    ".weak __start_mcr_wrappers",
    ".weak __stop_mcr_wrappers",
    ".globl mcr_rt_section_bounds",
    ".hidden mcr_rt_section_bounds",
    "mcr_rt_section_bounds:",
    ".quad __start_mcr_sites",
    ".quad __stop_mcr_sites",
    ".quad __start_mcr_globals",
    ".quad __stop_mcr_globals",
    ".quad __start_mcr_typemap",
    ".quad __stop_mcr_typemap",
    ".quad __start_mcr_hooks",
    ".quad __stop_mcr_hooks",
    ".quad __start_mcr_qpoints",
    ".quad __stop_mcr_qpoints",
    ".quad __start_mcr_wrappers",
    ".quad __stop_mcr_wrappers",
    ".popsection",
);

extern "C" {
    static mcr_rt_section_bounds: [usize; 12];
}

/// `struct mcr_global` of docs/ABI.md.
#[repr(C)]
pub struct GlobalDesc {
    /// The variable; for a thread-local with `GLOBAL_TLS_ACCESSOR`, its
    /// accessor function.
    pub addr: *mut u8,
    pub name: *const libc::c_char,
    pub type_name: *const libc::c_char,
    pub size: u64,
    pub flags: u64,
}

pub const GLOBAL_THREAD_LOCAL: u64 = 1;
pub const GLOBAL_CONSTANT: u64 = 2;
/// `addr` is a function `void *(*)(void)` returning the thread-local's
/// address in the calling thread.
pub const GLOBAL_TLS_ACCESSOR: u64 = 4;

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

/// `struct mcr_wrapper` of docs/ABI.md: an allocation wrapper a unit
/// proved (`mcr_types::abi::WRAPPERS_SECTION`).
#[repr(C)]
pub struct WrapperDesc {
    pub function: usize,
    /// `mcr_types::abi::WrapperKind`.
    pub kind: u32,
    pub zero: u32,
}

const _: () = assert!(std::mem::size_of::<WrapperDesc>() == mcr_types::abi::WRAPPER_RECORD_SIZE);

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
