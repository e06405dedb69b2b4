//! The calls `mcr-pass` routes through the runtime (docs/ABI.md): a direct
//! call to `name` in the program becomes a call to `__mcr_<name>`, with the
//! same parameters and return type, which `mcr-rt` defines. One list per
//! reason, here, so the pass, the runtime and the docs cannot disagree.

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

/// Section of `struct mcr_wrapper` records (ABI.md): one per allocation
/// wrapper `mcr-pass` proved in a unit, so that calls of it made from other
/// units (typed as candidates, `__mcr_retag_wrapped`) retype the object
/// only when the callee really is such a wrapper.
pub const WRAPPERS_SECTION: &str = "mcr_wrappers";

/// `struct mcr_wrapper { void *function; uint32_t kind; uint32_t zero; }`:
/// 16 bytes, 8-aligned.
pub const WRAPPER_RECORD_SIZE: usize = 16;

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
