//! The one address range the heap serves memory from. Reserved once with
//! `PROT_NONE` and `MAP_NORESERVE` (costs neither memory nor commit charge),
//! then made read-write in steps as the high-water mark `top` grows.
//!
//! The base is chosen by us, not by the kernel: a random 1 GiB-aligned
//! address in [16 TiB, 48 TiB), far below where the kernel puts shared
//! libraries and thread stacks (near 128 TiB) and above the executable and
//! its brk heap. A new process then finds the old process's range free
//! with near certainty, which restoring an image at its old address needs.

use super::layout::*;
use super::HeapError;
use std::sync::atomic::{AtomicUsize, Ordering};

static BASE: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static META: AtomicUsize = AtomicUsize::new(0);
/// Pages `[0, FILE_PAGES)` are a private mapping of an adopted image: a
/// page there that was never touched still holds the image's bytes.
static FILE_PAGES: AtomicUsize = AtomicUsize::new(0);
/// Pages `[0, COMMITTED)` are read-write (under the page lock).
static COMMITTED: AtomicUsize = AtomicUsize::new(0);

/// Commit granularity in pages (4 MiB): fewer `mprotect` calls and VMAs.
const COMMIT_STEP: usize = 64;

/// Region base; 0 before initialisation.
#[inline(always)]
pub fn base() -> usize {
    BASE.load(Ordering::Relaxed)
}
/// Region length; 0 before initialisation.
#[inline(always)]
pub fn len() -> usize {
    LEN.load(Ordering::Relaxed)
}
/// Number of meta pages (header + page table): the first data page.
#[inline(always)]
pub fn meta_pages() -> usize {
    META.load(Ordering::Relaxed)
}

/// The region header at the base. Only valid after initialisation.
#[inline(always)]
pub fn header() -> &'static RegionHeader {
    // SAFETY: page 0 is mapped read-write for the life of the process once
    // BASE is set, and RegionHeader is plain data with atomics.
    unsafe { &*(base() as *const RegionHeader) }
}

/// The page-table entry of page `idx` (must be < len / PAGE).
#[inline(always)]
pub fn desc(idx: usize) -> &'static PageDesc {
    // SAFETY: the page table (pages 1..META) is committed at reservation
    // and idx is below the number of pages, which the table covers.
    unsafe { &*((base() + PAGE) as *const PageDesc).add(idx) }
}

/// Current high-water mark in pages.
#[inline(always)]
pub fn top() -> usize {
    header().top.load(Ordering::Acquire) as usize
}

/// Address of page `idx`.
#[inline(always)]
pub fn page_addr(idx: usize) -> usize {
    base() + idx * PAGE
}

/// A random 1 GiB-aligned hint in [16 TiB, 48 TiB).
fn pick_hint() -> usize {
    let mut r: u64 = 0;
    // SAFETY: getrandom into a local u64; GRND_NONBLOCK never blocks.
    let n = unsafe {
        libc::getrandom(
            &mut r as *mut u64 as *mut libc::c_void,
            8,
            libc::GRND_NONBLOCK,
        )
    };
    if n != 8 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        r = (ts.tv_nsec as u64) ^ ((ts.tv_sec as u64) << 20) ^ (std::process::id() as u64);
    }
    (16usize << 40) + ((r % (32 * 1024)) as usize) * (1 << 30)
}

/// Maps `len` bytes PROT_NONE at exactly `at` (fails if anything is there).
pub(super) fn reserve_at(at: usize, len: usize) -> Result<(), HeapError> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(HeapError::Map(errno()));
    }
    if p as usize != at {
        // Kernels before 4.17 treat the flag as a hint only.
        // SAFETY: unmapping the range the kernel just gave us.
        unsafe { libc::munmap(p, len) };
        return Err(HeapError::AddressTaken(at));
    }
    Ok(())
}

/// Reserves a fresh region and lays out its meta pages.
pub(super) fn reserve_fresh(len: usize) -> Result<(), HeapError> {
    let len = len & !(PAGE - 1);
    let mut at = 0;
    for _ in 0..16 {
        let hint = pick_hint();
        if reserve_at(hint, len).is_ok() {
            at = hint;
            break;
        }
    }
    if at == 0 {
        // Fall back to a kernel-chosen, page-aligned address.
        // SAFETY: fresh anonymous PROT_NONE mapping, nothing replaced.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + PAGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(HeapError::Map(errno()));
        }
        at = (p as usize + PAGE - 1) & !(PAGE - 1);
    }
    let meta = super::layout::meta_pages(len);
    publish(at, len, meta, 0);
    commit_to(meta)?;
    // SAFETY: page 0 was just committed read-write and is ours alone.
    unsafe {
        let h = at as *mut RegionHeader;
        (*h).magic = MAGIC;
        (*h).version = VERSION;
        (*h).base = at as u64;
        (*h).len = len as u64;
        (*h).page_size = PAGE as u64;
        (*h).meta_pages = meta as u64;
    }
    for i in 0..meta {
        desc(i).store(Desc::new(Kind::Meta, 0, 0));
    }
    header().top.store(meta as u64, Ordering::Release);
    Ok(())
}

/// Records the region's geometry in this process's statics.
pub(super) fn publish(at: usize, len: usize, meta: usize, committed: usize) {
    BASE.store(at, Ordering::Relaxed);
    LEN.store(len, Ordering::Relaxed);
    META.store(meta, Ordering::Relaxed);
    COMMITTED.store(committed, Ordering::Relaxed);
}

/// Makes pages `[0, pages)` read-write. Caller holds the page lock (or is
/// initialising).
pub(super) fn commit_to(pages: usize) -> Result<(), HeapError> {
    let have = COMMITTED.load(Ordering::Relaxed);
    if pages <= have {
        return Ok(());
    }
    let want = pages.div_ceil(COMMIT_STEP) * COMMIT_STEP;
    let want = want.min(len() / PAGE).max(pages);
    // SAFETY: the range lies inside our own reservation.
    let r = unsafe {
        libc::mprotect(
            page_addr(have) as *mut libc::c_void,
            (want - have) * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    if r != 0 {
        return Err(HeapError::Map(errno()));
    }
    COMMITTED.store(want, Ordering::Relaxed);
    Ok(())
}

/// Marks pages `[0, n)` as backed by an adopted image file.
pub(super) fn set_file_pages(n: usize) {
    FILE_PAGES.store(n, Ordering::Relaxed);
}

/// Pages below this index are backed by an adopted image file.
pub fn file_pages() -> usize {
    FILE_PAGES.load(Ordering::Relaxed)
}

/// Bytes currently mapped read-write.
pub fn committed_bytes() -> usize {
    COMMITTED.load(Ordering::Relaxed) * PAGE
}

pub(super) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}
