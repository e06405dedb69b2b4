//! The contract between `mcr-pass` (what it emits) and `mcr-rt` (what it
//! reads and defines), docs/ABI.md, in one place so that the pass, the
//! runtime, `mcr-cc`, `mcr-ctl` and the docs cannot disagree:
//!
//! - the ELF sections of each kind of record, and the layout of each record
//!   (the runtime reads them in place as the `#[repr(C)]` structs below; the
//!   pass builds its LLVM struct types from the same field lists);
//! - the calls the pass routes through the runtime: a direct call to `name`
//!   in the program becomes a call to `__mcr_<name>`, with the same
//!   parameters and return type, which `mcr-rt` defines.

/// Calls that can block: the runtime may park the thread there when the
/// program quiesces (`pthread_create` is routed so the runtime knows the
/// program's threads).
pub const BLOCKING_CALLS: &[&str] = &[
    "accept",
    "accept4",
    "epoll_wait",
    "epoll_pwait",
    "select",
    "pselect",
    "poll",
    "ppoll",
    "read",
    "readv",
    "recv",
    "recvfrom",
    "recvmsg",
    "waitpid",
    "wait",
    "sigwait",
    "sigwaitinfo",
    "sigtimedwait",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "nanosleep",
    "clock_nanosleep",
    "sleep",
    "usleep",
    "pause",
    "sigsuspend",
    "pthread_create",
];

/// Calls whose answers differ from one run to the next: random bytes, the
/// clocks, the host name. What the old version's start-up got from them is
/// logged and answered again to the new version's start-up, so that state
/// start-up derived from them (a hash seed, a start time) stays the state
/// the old version's run-time data was built with. `read` of a random
/// device is covered by `read`'s blocking wrapper. Routed by the pass
/// rather than defined under the libc names so that the runtime's own
/// clock reads (Rust's `Instant`) are never logged or answered.
pub const STARTUP_INPUT_CALLS: &[&str] = &[
    "getrandom",
    "getentropy",
    "fread",
    "__fread_chk",
    "time",
    "gettimeofday",
    "clock_gettime",
    "gethostname",
    "uname",
];

/// The runtime's name for a routed call.
pub fn wrapper_name(call: &str) -> String {
    format!("__mcr_{call}")
}

/// The name of the ELF section of each kind of record, as a string
/// literal: the runtime's assembly spells `__start_<name>` with it
/// (`concat!`), and the constants below are the same literals.
#[macro_export]
macro_rules! mcr_section {
    (sites) => {
        "mcr_sites"
    };
    (globals) => {
        "mcr_globals"
    };
    (typemap) => {
        "mcr_typemap"
    };
    (hooks) => {
        "mcr_hooks"
    };
    (qpoints) => {
        "mcr_qpoints"
    };
    (wrappers) => {
        "mcr_wrappers"
    };
}

/// `struct mcr_site` records ([`Site`]), one per allocation call site.
pub const SITES_SECTION: &str = mcr_section!(sites);
/// `struct mcr_global` records ([`GlobalDesc`]), one per global and
/// function static.
pub const GLOBALS_SECTION: &str = mcr_section!(globals);
/// Each unit's type map record (`section.rs`), concatenated by the linker.
pub const TYPEMAP_SECTION: &str = mcr_section!(typemap);
/// `struct mcr_hook` records of `mcr.h` (`hooks.rs`).
pub const HOOKS_SECTION: &str = mcr_section!(hooks);
/// One byte from each unit that marks declared quiescent points: with any,
/// only those are the program's quiescent points.
pub const DECLARED_POINTS_SECTION: &str = mcr_section!(qpoints);
/// `struct mcr_wrapper` records ([`WrapperDesc`]): one per allocation
/// wrapper `mcr-pass` proved in a unit, so that calls of it made from other
/// units (typed as candidates, `__mcr_retag_wrapped`) retype the object
/// only when the callee really is such a wrapper.
pub const WRAPPERS_SECTION: &str = mcr_section!(wrappers);

/// A field of a record as the pass emits it (x86-64 / aarch64 LP64 C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    U32,
    U64,
    /// A pointer (code or data); 8 bytes.
    Ptr,
}

/// `struct mcr_site { uint64_t key; const char *file, *function; uint32_t
/// line, flags; const char *type_name; uint64_t elem_size; }`
pub const SITE_FIELDS: &[Field] = &[
    Field::U64,
    Field::Ptr,
    Field::Ptr,
    Field::U32,
    Field::U32,
    Field::Ptr,
    Field::U64,
];

/// `struct mcr_site` as the runtime reads it: 48 bytes, 8-aligned, no
/// padding. The heap stores pointers to it and never dereferences those
/// of an old binary.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// `site_key(file, function, ordinal)`.
    pub key: u64,
    /// NUL-terminated source file name.
    pub file: *const core::ffi::c_char,
    /// NUL-terminated function name.
    pub function: *const core::ffi::c_char,
    pub line: u32,
    /// Bit 0 ([`Site::TYPED`]): the site's type is known.
    pub flags: u32,
    /// Type-map name of the allocated type, null when untyped.
    pub type_name: *const core::ffi::c_char,
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

/// `struct mcr_global { void *addr; const char *name, *type_name; uint64_t
/// size, flags; }`
pub const GLOBAL_FIELDS: &[Field] = &[Field::Ptr, Field::Ptr, Field::Ptr, Field::U64, Field::U64];

/// `struct mcr_global` as the runtime reads it.
#[repr(C)]
pub struct GlobalDesc {
    /// The variable; for a thread-local with [`GLOBAL_TLS_ACCESSOR`], its
    /// accessor function.
    pub addr: *mut u8,
    pub name: *const core::ffi::c_char,
    pub type_name: *const core::ffi::c_char,
    pub size: u64,
    pub flags: u64,
}

/// `flags` of a global: a thread-local (`__thread`).
pub const GLOBAL_THREAD_LOCAL: u64 = 1;
/// `flags` of a global: `const` (never carried).
pub const GLOBAL_CONSTANT: u64 = 2;
/// `flags` of a thread-local: `addr` is a function `void *(*)(void)`
/// returning the variable's address in the calling thread.
pub const GLOBAL_TLS_ACCESSOR: u64 = 4;

/// `struct mcr_wrapper { void *function; uint32_t kind; uint32_t zero; }`
pub const WRAPPER_FIELDS: &[Field] = &[Field::Ptr, Field::U32, Field::U32];

/// `struct mcr_wrapper` as the runtime reads it: 16 bytes, 8-aligned.
#[repr(C)]
pub struct WrapperDesc {
    pub function: usize,
    /// [`WrapperKind`].
    pub kind: u32,
    pub zero: u32,
}

/// Bytes of a record laid out from `fields` with C's alignment rules.
pub const fn record_size(fields: &[Field]) -> usize {
    let mut at: usize = 0;
    let mut align: usize = 1;
    let mut i = 0;
    while i < fields.len() {
        let (size, a): (usize, usize) = match fields[i] {
            Field::U32 => (4, 4),
            Field::U64 | Field::Ptr => (8, 8),
        };
        at = at.next_multiple_of(a) + size;
        if a > align {
            align = a;
        }
        i += 1;
    }
    at.next_multiple_of(align)
}

pub const WRAPPER_RECORD_SIZE: usize = record_size(WRAPPER_FIELDS);

// The field lists the pass emits and the structs the runtime reads agree.
const _: () = assert!(record_size(SITE_FIELDS) == core::mem::size_of::<Site>());
const _: () = assert!(core::mem::size_of::<Site>() == 48);
const _: () = assert!(record_size(GLOBAL_FIELDS) == core::mem::size_of::<GlobalDesc>());
const _: () = assert!(record_size(WRAPPER_FIELDS) == core::mem::size_of::<WrapperDesc>());
const _: () = assert!(core::mem::size_of::<WrapperDesc>() == 16);

/// The `kind` of a wrapper record and of `__mcr_retag_wrapped`'s last
/// argument: which libc allocator the wrapper behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum WrapperKind {
    Malloc = 1,
    Calloc = 2,
    Realloc = 3,
    Strdup = 4,
}
