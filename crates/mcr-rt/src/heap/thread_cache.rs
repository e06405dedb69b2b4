//! Per-thread caches of free slots, one list per size class: the fast path
//! of `malloc` and `free` touches only the calling thread's cache, with no
//! lock and no atomic read-modify-write. A cache refills from and flushes to
//! the central lists in batches.
//!
//! Each cache also keeps the thread's share of the heap statistics (objects
//! and bytes allocated minus freed by this thread), written only by its
//! owner; `stats()` sums the registered caches.
//!
//! Lifecycle: a cache starts `NEW`; its first refill initialises the heap
//! and registers the cache (a pthread key whose destructor flushes it at
//! thread exit, and the registry list used by `stats()` and `fork`). While
//! registering (`BUSY`, pthread_setspecific may allocate) and after the
//! destructor ran (`DEAD`), the thread bypasses its cache and goes to the
//! central lists directly.

use super::central::{next_of, set_next, CENTRAL};
use super::size_class::{batch, NCLASSES};
use super::sync::Locked;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

const NEW: u8 = 0;
const ACTIVE: u8 = 1;
const BUSY: u8 = 2;
const DEAD: u8 = 3;

#[derive(Clone, Copy)]
#[repr(C)]
struct Bin {
    head: usize,
    count: u32,
    limit: u32,
}

pub(super) struct ThreadCache {
    bins: [Bin; NCLASSES],
    /// Objects allocated minus freed by this thread (may go negative).
    pub objects: AtomicI64,
    /// Requested bytes allocated minus freed by this thread.
    pub bytes: AtomicI64,
    state: AtomicU8,
    next: *mut ThreadCache,
    prev: *mut ThreadCache,
    /// The thread's kernel id, to tell live caches from dead ones after fork.
    tid: i32,
}

/// Limits stay 0 until the cache is registered, so that an unregistered
/// thread's frees go to the central lists.
const fn empty_bins() -> [Bin; NCLASSES] {
    [Bin {
        head: 0,
        count: 0,
        limit: 0,
    }; NCLASSES]
}

thread_local! {
    static TC: UnsafeCell<ThreadCache> = const {
        UnsafeCell::new(ThreadCache {
            bins: empty_bins(),
            objects: AtomicI64::new(0),
            bytes: AtomicI64::new(0),
            state: AtomicU8::new(NEW),
            next: std::ptr::null_mut(),
            prev: std::ptr::null_mut(),
            tid: 0,
        })
    };
}

/// The calling thread's cache.
#[inline(always)]
pub(super) fn current() -> *mut ThreadCache {
    TC.with(|c| c.get())
}

/// Registered caches, for `stats()` and `fork`.
pub(super) struct Registry {
    pub head: *mut ThreadCache,
    /// Counters of threads that exited.
    pub dead_objects: i64,
    pub dead_bytes: i64,
}
// SAFETY: the raw pointers are only followed with the registry lock held,
// and a cache unlinks itself (under the lock) before its thread's TLS goes.
unsafe impl Send for Registry {}

pub(super) static REGISTRY: Locked<Registry> = Locked::new(Registry {
    head: std::ptr::null_mut(),
    dead_objects: 0,
    dead_bytes: 0,
});

/// Counters for allocations made while a thread has no usable cache.
pub(super) static UNCACHED_OBJECTS: AtomicI64 = AtomicI64::new(0);
pub(super) static UNCACHED_BYTES: AtomicI64 = AtomicI64::new(0);

static mut KEY: libc::pthread_key_t = 0;
/// Whether KEY was created (all keys may be taken by the program).
static KEY_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Non-null value stored under KEY so that its destructor runs.
static KEY_MARK: u8 = 0;

/// Creates the pthread key whose destructor flushes a cache at thread exit.
/// Called once during heap initialisation (no allocation in glibc).
pub(super) fn init_key() {
    // SAFETY: called once, before any cache registers, by the initialising
    // thread; pthread_key_create does not allocate.
    unsafe {
        let mut k: libc::pthread_key_t = 0;
        if libc::pthread_key_create(&mut k, Some(thread_exit)) == 0 {
            KEY = k;
            KEY_OK.store(true, Ordering::Release);
        }
    }
}

impl ThreadCache {
    #[inline(always)]
    pub(super) fn is_active(&self) -> bool {
        self.state.load(Ordering::Relaxed) == ACTIVE
    }

    /// Pops a free slot of class `c`, or 0 when the bin is empty.
    #[inline(always)]
    pub(super) fn pop(&mut self, c: usize) -> usize {
        let b = &mut self.bins[c];
        let s = b.head;
        if s != 0 {
            b.head = next_of(s);
            b.count -= 1;
        }
        s
    }

    /// Pushes a free slot; returns false when the bin is full (the caller
    /// then calls `push_slow`).
    #[inline(always)]
    pub(super) fn push(&mut self, c: usize, slot: usize) -> bool {
        let b = &mut self.bins[c];
        if b.count >= b.limit {
            return false;
        }
        set_next(slot, b.head);
        b.head = slot;
        b.count += 1;
        true
    }

    /// Accounts one allocation (positive) or free (negative).
    #[inline(always)]
    pub(super) fn account(&self, objects: i64, bytes: i64) {
        if self.is_active() {
            self.objects.store(
                self.objects.load(Ordering::Relaxed) + objects,
                Ordering::Relaxed,
            );
            self.bytes.store(
                self.bytes.load(Ordering::Relaxed) + bytes,
                Ordering::Relaxed,
            );
        } else {
            UNCACHED_OBJECTS.fetch_add(objects, Ordering::Relaxed);
            UNCACHED_BYTES.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Refills bin `c` from the central list and pops one slot (0 = out of
    /// memory). Registers the cache on first use.
    #[cold]
    pub(super) fn refill(&mut self, c: usize) -> usize {
        match self.state.load(Ordering::Relaxed) {
            ACTIVE => {}
            NEW => {
                self.activate();
                if !self.is_active() {
                    return take_one(c);
                }
            }
            _ => return take_one(c),
        }
        let n = batch(c);
        let (head, got) = CENTRAL[c].0.with(|cl| cl.take(c, n));
        if got == 0 {
            return 0;
        }
        let b = &mut self.bins[c];
        b.head = next_of(head);
        b.count = got as u32 - 1;
        head
    }

    /// Frees `slot` when bin `c` is full (or the cache is not usable):
    /// moves a batch to the central list first.
    #[cold]
    pub(super) fn push_slow(&mut self, c: usize, slot: usize) {
        if !self.is_active() {
            set_next(slot, 0);
            CENTRAL[c].0.with(|cl| cl.give(slot, slot, 1));
            return;
        }
        // Hand over `batch` slots plus this one.
        let n = batch(c).min(self.bins[c].count as usize);
        let b = &mut self.bins[c];
        let head = b.head;
        let mut tail = slot;
        set_next(slot, head);
        if n > 0 {
            tail = head;
            for _ in 1..n {
                tail = next_of(tail);
            }
            b.head = next_of(tail);
            b.count -= n as u32;
        }
        CENTRAL[c].0.with(|cl| cl.give(slot, tail, n + 1));
    }

    /// Moves every cached slot back to the central lists.
    fn flush_all(&mut self) {
        for (c, b) in self.bins.iter_mut().enumerate() {
            if b.count == 0 {
                continue;
            }
            let head = b.head;
            let mut tail = head;
            while next_of(tail) != 0 {
                tail = next_of(tail);
            }
            let n = b.count as usize;
            b.head = 0;
            b.count = 0;
            CENTRAL[c].0.with(|cl| cl.give(head, tail, n));
        }
    }

    #[cold]
    fn activate(&mut self) {
        super::init::ensure();
        self.state.store(BUSY, Ordering::Relaxed);
        if KEY_OK.load(Ordering::Acquire) {
            // SAFETY: KEY was created during initialisation; the value is
            // only a non-null marker (the destructor finds the cache through
            // TLS). This may allocate (keys >= 32): we are BUSY, so that
            // allocation bypasses the cache.
            unsafe {
                libc::pthread_setspecific(KEY, &KEY_MARK as *const u8 as *const libc::c_void)
            };
        }
        // SAFETY: gettid has no preconditions.
        self.tid = unsafe { libc::gettid() };
        for (c, b) in self.bins.iter_mut().enumerate() {
            b.limit = 2 * batch(c) as u32;
        }
        let me: *mut ThreadCache = self;
        REGISTRY.with(|r| {
            self.prev = std::ptr::null_mut();
            self.next = r.head;
            if !r.head.is_null() {
                // SAFETY: registered caches stay valid while linked.
                unsafe { (*r.head).prev = me };
            }
            r.head = me;
        });
        self.state.store(ACTIVE, Ordering::Relaxed);
    }

    /// Unlinks the cache from the registry, folding its counters into the
    /// registry's totals. Caller holds the registry lock.
    fn unlink(&mut self, r: &mut Registry) {
        r.dead_objects += self.objects.swap(0, Ordering::Relaxed);
        r.dead_bytes += self.bytes.swap(0, Ordering::Relaxed);
        if self.prev.is_null() {
            r.head = self.next;
        } else {
            // SAFETY: linked caches are valid (lock held).
            unsafe { (*self.prev).next = self.next };
        }
        if !self.next.is_null() {
            // SAFETY: as above.
            unsafe { (*self.next).prev = self.prev };
        }
        self.next = std::ptr::null_mut();
        self.prev = std::ptr::null_mut();
    }
}

/// One slot straight from the central list, for threads without a cache.
fn take_one(c: usize) -> usize {
    let (head, got) = CENTRAL[c].0.with(|cl| cl.take(c, 1));
    if got == 0 {
        0
    } else {
        head
    }
}

/// pthread key destructor: the thread is exiting.
extern "C" fn thread_exit(_: *mut libc::c_void) {
    let tc = current();
    // SAFETY: the TLS block of the exiting thread is still valid while key
    // destructors run; only this thread touches its cache.
    let tc = unsafe { &mut *tc };
    if !tc.is_active() {
        return;
    }
    tc.state.store(DEAD, Ordering::Relaxed);
    tc.flush_all();
    REGISTRY.with(|r| tc.unlink(r));
}

/// Sum of the per-thread counters: (objects, bytes).
pub(super) fn totals() -> (i64, i64) {
    REGISTRY.with(|r| {
        let mut o = r.dead_objects + UNCACHED_OBJECTS.load(Ordering::Relaxed);
        let mut b = r.dead_bytes + UNCACHED_BYTES.load(Ordering::Relaxed);
        let mut p = r.head;
        while !p.is_null() {
            // SAFETY: linked caches are valid while the lock is held; their
            // counters are atomics.
            unsafe {
                o += (*p).objects.load(Ordering::Relaxed);
                b += (*p).bytes.load(Ordering::Relaxed);
                p = (*p).next;
            }
        }
        (o, b)
    })
}

/// In the child after `fork`: only the forking thread survives. Unlinks
/// every other cache (their cached slots are lost: they stay free slots
/// nobody allocates, a bounded leak) and keeps their counters.
///
/// # Safety
/// Only in the child after fork, with the registry lock reset.
pub(super) unsafe fn after_fork_child() {
    let me = current();
    // SAFETY: single-threaded child; lock just reset.
    let r = unsafe { REGISTRY.get_unlocked() };
    let mut p = r.head;
    while !p.is_null() {
        // SAFETY: the dead threads' TLS blocks live in their stacks, which
        // the child still maps; nothing else runs.
        unsafe {
            let next = (*p).next;
            if p != me {
                (*p).unlink(r);
            }
            p = next;
        }
    }
    // SAFETY: our own cache.
    unsafe { (*me).tid = libc::gettid() };
}

/// Resets the registry and this thread's cache for a freshly adopted heap:
/// the cache's slots belonged to the previous region contents.
///
/// # Safety
/// Only during initialisation, before any cache is active.
pub(super) unsafe fn reset_for_adopt() {
    // SAFETY: no cache is active yet (caller's guarantee).
    let r = unsafe { REGISTRY.get_unlocked() };
    r.head = std::ptr::null_mut();
    r.dead_objects = 0;
    r.dead_bytes = 0;
    UNCACHED_OBJECTS.store(0, Ordering::Relaxed);
    UNCACHED_BYTES.store(0, Ordering::Relaxed);
}
