//! Values computed once per process (a binary's symbol table, its decoded
//! type map), without a lock: a `fork` while one thread computes must not
//! leave the child waiting on a lock nobody will release. The child
//! computes its own; a thread of the same process waits for the one
//! already computing (the new version's control thread starts on them
//! while the program's start-up runs, and its transfer needs them).

use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

pub struct ComputedOnce<T> {
    value: AtomicPtr<T>,
    /// Pid of the process one of whose threads is computing the value.
    computing: AtomicI32,
}

impl<T> Default for ComputedOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ComputedOnce<T> {
    pub const fn new() -> Self {
        Self {
            value: AtomicPtr::new(std::ptr::null_mut()),
            computing: AtomicI32::new(0),
        }
    }

    fn get(&self) -> Option<&'static T> {
        let p = self.value.load(Ordering::Acquire);
        // SAFETY: set once from a leaked Box, never freed.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    pub fn get_or_compute(&'static self, f: impl FnOnce() -> T) -> &'static T {
        if let Some(v) = self.get() {
            return v;
        }
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let other = self.computing.swap(me, Ordering::AcqRel);
        if other == me {
            // Another thread of this process is at it: computing again
            // would only compete with it for the CPU.
            while self.get().is_none() {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
        if let Some(v) = self.get() {
            return v;
        }
        let mine = Box::into_raw(Box::new(f()));
        match self.value.compare_exchange(
            std::ptr::null_mut(),
            mine,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: just published; lives for the rest of the process.
            Ok(_) => unsafe { &*mine },
            Err(theirs) => {
                // SAFETY: ours lost the race and was never shared.
                drop(unsafe { Box::from_raw(mine) });
                // SAFETY: published by the winner, never freed.
                unsafe { &*theirs }
            }
        }
    }
}
