//! A `&'static str` stored in two atomics, readable from any thread
//! without a lock (a call's name, set by the thread that makes it).

use std::sync::atomic::{AtomicUsize, Ordering};

/// A `&'static str` in two atomics (a blocking function's name), so the
/// table and per-thread records stay lock-free.
#[derive(Default)]
pub struct StaticName {
    ptr: AtomicUsize,
    len: AtomicUsize,
}

impl StaticName {
    pub const fn new() -> StaticName {
        StaticName {
            ptr: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }
    pub fn store(&self, s: &'static str) {
        self.ptr.store(s.as_ptr() as usize, Ordering::Release);
        self.len.store(s.len(), Ordering::Release);
    }
    pub fn load(&self) -> &'static str {
        let (p, n) = (
            self.ptr.load(Ordering::Acquire),
            self.len.load(Ordering::Acquire),
        );
        if p == 0 {
            return "";
        }
        // SAFETY: `p`/`n` were stored together from a `&'static str`.
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(p as *const u8, n)) }
    }
}
