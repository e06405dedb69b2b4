//! Anonymous memory the program maps itself (`mmap` of `MAP_ANONYMOUS`):
//! untyped memory outside the heap, which `mcr-ctl heap` lists and a trace
//! scans as a root. The wrapper calls the kernel directly: the heap maps its
//! region through `mmap` too, before anything else in the runtime works.

use std::sync::Mutex;

/// Program mappings: start -> length.
static MAPS: Mutex<std::collections::BTreeMap<usize, usize>> =
    Mutex::new(std::collections::BTreeMap::new());

fn is_program_call() -> bool {
    crate::program::threads::current().is_some()
}

fn in_heap(a: usize) -> bool {
    let (base, len) = crate::heap::region();
    a.wrapping_sub(base) < len
}

/// The program's anonymous mappings now: (start, length).
pub fn all() -> Vec<(usize, usize)> {
    MAPS.lock()
        .map(|m| m.iter().map(|(a, l)| (*a, *l)).collect())
        .unwrap_or_default()
}

/// # Safety
/// Same contract as `mmap`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut libc::c_void,
    len: libc::size_t,
    prot: libc::c_int,
    flags: libc::c_int,
    fd: libc::c_int,
    off: libc::off_t,
) -> *mut libc::c_void {
    // SAFETY: the raw system call with the caller's arguments.
    let r = unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) };
    if r < 0 && r > -4096 {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = -r as libc::c_int };
        return libc::MAP_FAILED;
    }
    let p = r as usize;
    if flags & libc::MAP_ANONYMOUS != 0 && !in_heap(p) && is_program_call() {
        if let Ok(mut m) = MAPS.lock() {
            m.insert(p, len);
        }
    }
    p as *mut libc::c_void
}

/// # Safety
/// Same contract as `mmap64`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut libc::c_void,
    len: libc::size_t,
    prot: libc::c_int,
    flags: libc::c_int,
    fd: libc::c_int,
    off: libc::off_t,
) -> *mut libc::c_void {
    // SAFETY: same contract.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

/// # Safety
/// Same contract as `munmap`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut libc::c_void, len: libc::size_t) -> libc::c_int {
    // SAFETY: the raw system call with the caller's arguments.
    let r = unsafe { libc::syscall(libc::SYS_munmap, addr, len) };
    if r < 0 {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = -r as libc::c_int };
        return -1;
    }
    let (a, end) = (addr as usize, addr as usize + len);
    if let Ok(mut m) = MAPS.lock() {
        // Whole mappings inside the range go; partial unmaps shrink or split.
        let hit: Vec<(usize, usize)> = m
            .range(..end)
            .filter(|(s, l)| *s + *l > a)
            .map(|(s, l)| (*s, *l))
            .collect();
        for (s, l) in hit {
            m.remove(&s);
            if s < a {
                m.insert(s, a - s);
            }
            if s + l > end {
                m.insert(end, s + l - end);
            }
        }
    }
    0
}
