//! The C entry points: glibc's malloc family (so that every allocation in
//! the process, libc and shared libraries included, lands in the typed
//! heap, untyped) and the typed `__mcr_*` variants of docs/ABI.md that
//! instrumented call sites use.

use super::alloc;
use super::site::Site;
use libc::{c_char, c_int, c_void};

/// Alignment of `valloc`/`pvalloc` (the system page size on x86-64 and
/// aarch64 Linux with 4 KiB pages).
const SYS_PAGE: usize = 4096;

#[inline(always)]
fn s(site: *const Site) -> usize {
    site as usize
}

fn set_errno(e: c_int) {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// glibc's `memalign` rounds non-power-of-two alignments up.
fn fix_align(align: usize) -> Option<usize> {
    if align.is_power_of_two() {
        Some(align)
    } else {
        align.checked_next_power_of_two()
    }
}

fn memalign_site(align: usize, size: usize, site: usize) -> *mut c_void {
    match fix_align(align.max(1)) {
        Some(a) => alloc::memalign(a, size, site) as *mut c_void,
        None => {
            set_errno(libc::EINVAL);
            std::ptr::null_mut()
        }
    }
}

fn posix_memalign_site(out: *mut *mut c_void, align: usize, size: usize, site: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(std::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    let p = alloc::memalign(align, size, site);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid out pointer (C contract).
    unsafe { *out = p as *mut c_void };
    0
}

fn reallocarray_site(
    p: *mut c_void,
    n: usize,
    size: usize,
    site: usize,
    keep: bool,
) -> *mut c_void {
    match n.checked_mul(size) {
        Some(t) => alloc::realloc(p as *mut u8, t, site, keep) as *mut c_void,
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

fn pvalloc_size(size: usize) -> Option<usize> {
    size.max(1)
        .checked_add(SYS_PAGE - 1)
        .map(|n| n & !(SYS_PAGE - 1))
}

// ---- glibc's malloc family (untyped) --------------------------------------

/// C `malloc`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc::malloc(size, 0) as *mut c_void
}

/// C `free`.
///
/// # Safety
/// `p` is null or a live allocation.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if super::deferred_free::defer(p as *mut u8) {
        return;
    }
    alloc::free(p as *mut u8)
}

/// C `calloc`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    alloc::calloc(n, size, 0) as *mut c_void
}

/// C `realloc`; keeps the object's site.
///
/// # Safety
/// `p` is null or a live allocation.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    alloc::realloc(p as *mut u8, size, 0, true) as *mut c_void
}

/// C `reallocarray`; keeps the object's site.
///
/// # Safety
/// `p` is null or a live allocation.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    reallocarray_site(p, n, size, 0, true)
}

/// C `posix_memalign`.
///
/// # Safety
/// `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    posix_memalign_site(out, align, size, 0)
}

/// C11 `aligned_alloc`.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    memalign_site(align, size, 0)
}

/// glibc `memalign`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    memalign_site(align, size, 0)
}

/// glibc `valloc`.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc::memalign(SYS_PAGE, size, 0) as *mut c_void
}

/// glibc `pvalloc`.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match pvalloc_size(size) {
        Some(n) => alloc::memalign(SYS_PAGE, n, 0) as *mut c_void,
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// glibc `malloc_usable_size`.
///
/// # Safety
/// `p` is null or a live allocation.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    alloc::usable_size(p as *mut u8)
}

// ---- typed entry points (docs/ABI.md) ---------------------------------------

/// `malloc` registered with `site`.
#[no_mangle]
pub extern "C" fn __mcr_malloc(size: usize, site: *const Site) -> *mut c_void {
    alloc::malloc(size, s(site)) as *mut c_void
}

/// `calloc` registered with `site`.
#[no_mangle]
pub extern "C" fn __mcr_calloc(n: usize, size: usize, site: *const Site) -> *mut c_void {
    alloc::calloc(n, size, s(site)) as *mut c_void
}

/// `realloc` registered with `site`.
///
/// # Safety
/// `p` is null or a live allocation.
#[no_mangle]
pub unsafe extern "C" fn __mcr_realloc(
    p: *mut c_void,
    size: usize,
    site: *const Site,
) -> *mut c_void {
    alloc::realloc(p as *mut u8, size, s(site), false) as *mut c_void
}

/// `reallocarray` registered with `site`.
///
/// # Safety
/// `p` is null or a live allocation.
#[no_mangle]
pub unsafe extern "C" fn __mcr_reallocarray(
    p: *mut c_void,
    n: usize,
    size: usize,
    site: *const Site,
) -> *mut c_void {
    reallocarray_site(p, n, size, s(site), false)
}

/// `strdup` registered with `site`.
///
/// # Safety
/// `src` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn __mcr_strdup(src: *const c_char, site: *const Site) -> *mut c_char {
    // SAFETY: caller's contract.
    let n = unsafe { libc::strlen(src) };
    dup(src, n, s(site))
}

/// `strndup` registered with `site`.
///
/// # Safety
/// `src` is readable up to `n` bytes or its NUL.
#[no_mangle]
pub unsafe extern "C" fn __mcr_strndup(
    src: *const c_char,
    n: usize,
    site: *const Site,
) -> *mut c_char {
    // SAFETY: caller's contract.
    let n = unsafe { libc::strnlen(src, n) };
    dup(src, n, s(site))
}

fn dup(src: *const c_char, n: usize, site: usize) -> *mut c_char {
    let p = alloc::malloc(n + 1, site);
    if !p.is_null() {
        // SAFETY: src has n readable bytes; p has n + 1 writable ones.
        unsafe {
            std::ptr::copy_nonoverlapping(src as *const u8, p, n);
            *p.add(n) = 0;
        }
    }
    p as *mut c_char
}

/// `posix_memalign` registered with `site`.
///
/// # Safety
/// `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn __mcr_posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
    site: *const Site,
) -> c_int {
    posix_memalign_site(out, align, size, s(site))
}

/// `aligned_alloc` registered with `site`.
#[no_mangle]
pub extern "C" fn __mcr_aligned_alloc(align: usize, size: usize, site: *const Site) -> *mut c_void {
    memalign_site(align, size, s(site))
}

/// `memalign` registered with `site`.
#[no_mangle]
pub extern "C" fn __mcr_memalign(align: usize, size: usize, site: *const Site) -> *mut c_void {
    memalign_site(align, size, s(site))
}

/// `valloc` registered with `site`.
#[no_mangle]
pub extern "C" fn __mcr_valloc(size: usize, site: *const Site) -> *mut c_void {
    alloc::memalign(SYS_PAGE, size, s(site)) as *mut c_void
}

/// Tags the result of a user allocator (e.g. `xmalloc`) with `site`.
/// Null and foreign pointers are ignored. Returns `p`.
#[no_mangle]
pub extern "C" fn __mcr_retag(p: *mut c_void, site: *const Site) -> *mut c_void {
    if !p.is_null() {
        alloc::retag(p as usize, s(site));
    }
    p
}
