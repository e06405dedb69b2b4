//! `free()` while the user's transform hooks run is deferred to the end of
//! the transfer: the runtime still reads old objects after the hooks (and
//! frees the old copies of moved objects itself), and the pointer check
//! must see what a hook freed. The hooks turn deferral on and off; the
//! heap's `free` only asks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static DEFER: AtomicBool = AtomicBool::new(false);
static DEFERRED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Starts or stops deferring `free`.
pub fn defer_frees(on: bool) {
    DEFER.store(on, Ordering::SeqCst);
}

/// Called by `free`: true when the free was deferred.
#[inline]
pub(super) fn defer(p: *mut u8) -> bool {
    if !DEFER.load(Ordering::Relaxed) || p.is_null() {
        return false;
    }
    DEFERRED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(p as usize);
    true
}

/// What was freed while deferring, still deferred.
pub fn deferred() -> Vec<usize> {
    DEFERRED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What was freed while deferring, taken (to be freed now).
pub fn take_deferred() -> Vec<usize> {
    std::mem::take(&mut *DEFERRED.lock().unwrap_or_else(|e| e.into_inner()))
}
