//! The Rust global allocator of the runtime: glibc's own allocator through
//! its `__libc_*` entry points. The runtime's Rust code must not allocate
//! from the program's heap (that heap is what it inspects, checkpoints and
//! rewrites), and must not recurse into it from inside the allocator.

use std::alloc::{GlobalAlloc, Layout};

extern "C" {
    fn __libc_malloc(n: usize) -> *mut libc::c_void;
    fn __libc_calloc(n: usize, m: usize) -> *mut libc::c_void;
    fn __libc_realloc(p: *mut libc::c_void, n: usize) -> *mut libc::c_void;
    fn __libc_memalign(align: usize, n: usize) -> *mut libc::c_void;
    fn __libc_free(p: *mut libc::c_void);
}

/// Forwards to glibc's `__libc_malloc` family (see module docs).
pub struct RuntimeAlloc;

impl RuntimeAlloc {
    /// Keeps every runtime allocation in glibc's main arena. Without this,
    /// the first runtime allocation on each new program thread (its
    /// thread record) makes glibc create an arena, and glibc opens
    /// `/sys/devices/system/cpu/online` to size arenas: a descriptor
    /// that exists for a moment at a time the program does not choose. A
    /// program that counts on which descriptor number its next socket
    /// gets (memcached's `t/watcher_connid.t` does) then sees another
    /// one. The program's own allocations never reach glibc (they go to
    /// the typed heap), so one arena costs it nothing. Call before the
    /// first thread starts.
    pub fn use_one_arena() {
        // SAFETY: mallopt only sets a glibc tunable.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

/// glibc's `malloc` alignment on x86-64 and aarch64.
const MIN_ALIGN: usize = 16;

// SAFETY: glibc's allocator satisfies GlobalAlloc's contract; alignments
// beyond its natural one go through __libc_memalign.
unsafe impl GlobalAlloc for RuntimeAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: plain glibc calls.
        unsafe {
            if l.align() <= MIN_ALIGN {
                __libc_malloc(l.size()) as *mut u8
            } else {
                __libc_memalign(l.align(), l.size()) as *mut u8
            }
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: plain glibc calls; memalign's result is zeroed by hand.
        unsafe {
            if l.align() <= MIN_ALIGN {
                __libc_calloc(1, l.size()) as *mut u8
            } else {
                let p = __libc_memalign(l.align(), l.size()) as *mut u8;
                if !p.is_null() {
                    std::ptr::write_bytes(p, 0, l.size());
                }
                p
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, _: Layout) {
        // SAFETY: p came from one of the glibc calls above.
        unsafe { __libc_free(p as *mut libc::c_void) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: p came from glibc with layout l; over-aligned blocks are
        // moved by hand because __libc_realloc only guarantees 16.
        unsafe {
            if l.align() <= MIN_ALIGN {
                __libc_realloc(p as *mut libc::c_void, new) as *mut u8
            } else {
                let q = __libc_memalign(l.align(), new) as *mut u8;
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, l.size().min(new));
                    __libc_free(p as *mut libc::c_void);
                }
                q
            }
        }
    }
}
