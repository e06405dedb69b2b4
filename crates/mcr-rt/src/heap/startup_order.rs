//! The order in which the program allocated its objects during start-up.
//!
//! An update pairs each old start-up object with the new start-up's object
//! of the same site made in the same turn. Address order is not that turn:
//! freed blocks are reused, and a new version's heap holds the old
//! version's objects, so its start-up's objects land around them (nginx's
//! cycle pool blocks came out in another order, and every pointer into
//! its configuration went to the wrong block). So start-up allocations
//! are logged, lock-free, into a private mapping a forked worker inherits,
//! until the start-up snapshot stops the log; an object's turn is its last
//! entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Entries the log holds (8 MiB of address space, touched as used). A
/// start-up that allocates more keeps the first ones; later objects sort
/// after every logged one, by address.
const CAPACITY: usize = 1 << 20;

static RECORDING: AtomicBool = AtomicBool::new(false);
static LOG: AtomicPtr<AtomicUsize> = AtomicPtr::new(std::ptr::null_mut());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Starts the log (once, when the heap is set up, before any allocation).
pub(super) fn start() {
    // SAFETY: an anonymous private mapping of our own; NORESERVE, so
    // untouched pages cost nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CAPACITY * std::mem::size_of::<usize>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p != libc::MAP_FAILED {
        LOG.store(p as *mut AtomicUsize, Ordering::Release);
        RECORDING.store(true, Ordering::Release);
    }
}

/// Notes an allocation (or a reallocation, moved or not) at `p`.
#[inline(always)]
pub(super) fn note(p: *mut u8) {
    if RECORDING.load(Ordering::Relaxed) {
        record(p as usize);
    }
}

#[cold]
fn record(p: usize) {
    let i = NEXT.fetch_add(1, Ordering::Relaxed);
    let log = LOG.load(Ordering::Acquire);
    if i < CAPACITY && !log.is_null() {
        // SAFETY: `i` is inside the mapping, and this thread alone got it.
        unsafe { (*log.add(i)).store(p, Ordering::Relaxed) };
    }
}

/// Start-up is over: allocations are no longer its own.
pub fn stop() {
    RECORDING.store(false, Ordering::Release);
}

/// Each logged address's turn (its last entry). An entry still being
/// written by another thread reads as 0 and is skipped.
pub fn turns() -> HashMap<usize, usize> {
    let log = LOG.load(Ordering::Acquire);
    let n = NEXT.load(Ordering::Acquire).min(CAPACITY);
    let mut out = HashMap::with_capacity(n);
    if log.is_null() {
        return out;
    }
    for i in 0..n {
        // SAFETY: inside the mapping.
        let p = unsafe { (*log.add(i)).load(Ordering::Relaxed) };
        if p != 0 {
            out.insert(p, i);
        }
    }
    out
}
