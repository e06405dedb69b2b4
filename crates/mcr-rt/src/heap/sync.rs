//! A futex-based mutex that needs no allocation and no initialisation, so
//! the allocator can use it before `main`, inside `fork` handlers and while
//! the program's own threads hold arbitrary libc locks.

use std::sync::atomic::{AtomicU32, Ordering};

/// Three-state futex mutex (0 free, 1 locked, 2 locked with waiters).
#[repr(C)]
pub struct RawLock(AtomicU32);

impl RawLock {
    pub const fn new() -> Self {
        RawLock(AtomicU32::new(0))
    }

    #[inline]
    pub fn lock(&self) {
        if self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.lock_contended();
    }

    #[cold]
    fn lock_contended(&self) {
        // Spin briefly: critical sections here are short.
        for _ in 0..100 {
            std::hint::spin_loop();
            if self.0.load(Ordering::Relaxed) == 0
                && self
                    .0
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        while self.0.swap(2, Ordering::Acquire) != 0 {
            futex(&self.0, libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, 2);
        }
    }

    #[inline]
    pub fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            futex(&self.0, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        }
    }

    /// Resets the lock to free without waking anyone: only for the child
    /// after `fork`, where the lock's owner (the parent's thread) is gone.
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: FUTEX_WAIT/WAKE on a valid, aligned u32 that outlives the call;
    // no timeout, no second address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

thread_local! {
    static HOLDS_ALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread holds every heap lock.
#[inline]
pub fn holds_all() -> bool {
    HOLDS_ALL.with(|h| h.get())
}

/// Records that the calling thread took (true) or is releasing (false)
/// every heap lock. Lets allocation inside a later `pthread_atfork` prepare
/// handler of another library proceed instead of deadlocking.
pub fn set_holds_all(v: bool) {
    HOLDS_ALL.with(|h| h.set(v));
}

/// Data guarded by a [`RawLock`]; usable in a `static`.
pub struct Locked<T> {
    pub lock: RawLock,
    data: std::cell::UnsafeCell<T>,
}

// SAFETY: the data is only reached through `with`, i.e. with the lock held
// (or through `get_unlocked`, whose callers guarantee exclusion).
unsafe impl<T: Send> Sync for Locked<T> {}

impl<T> Locked<T> {
    pub const fn new(v: T) -> Self {
        Locked {
            lock: RawLock::new(),
            data: std::cell::UnsafeCell::new(v),
        }
    }

    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        if holds_all() {
            // This thread holds every heap lock (fork prepare, image
            // write): taking one again would deadlock, and no other thread
            // can be inside.
            // SAFETY: exclusion is guaranteed by the locks we hold.
            return f(unsafe { &mut *self.data.get() });
        }
        self.lock.lock();
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.data.get() });
        self.lock.unlock();
        r
    }

    /// The data without taking the lock.
    ///
    /// # Safety
    /// The caller holds the lock already (e.g. all heap locks are held for
    /// `fork` or an image write) or no other thread can exist yet.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_unlocked(&self) -> &mut T {
        // SAFETY: exclusion guaranteed by the caller.
        unsafe { &mut *self.data.get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn heap_lock_excludes() {
        struct Shared(RawLock, std::cell::UnsafeCell<u64>);
        // SAFETY: the counter is only touched with the lock held.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared(RawLock::new(), std::cell::UnsafeCell::new(0)));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        s.0.lock();
                        // SAFETY: exclusive under the lock.
                        unsafe { *s.1.get() += 1 };
                        s.0.unlock();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: all writers joined.
        assert_eq!(unsafe { *s.1.get() }, 80_000);
    }
}
