//! Lazy initialisation on the first allocation from any thread, possibly
//! before `main` and before Rust's runtime: only libc calls that do not
//! allocate, atomics and a spin-wait.
//!
//! If the environment variable [`HEAP_FD_ENV`] names a file descriptor,
//! initialisation adopts the heap image in it (written by
//! [`super::write_image`] in the previous process) instead of reserving a
//! fresh region: this has to happen before the first allocation, which in a
//! C program precedes any constructor of ours. The outcome is kept for
//! [`super::adopt_status`].

use super::layout::DEFAULT_REGION;
use super::{image, region, sync, thread_cache, HeapError};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

/// Name of the environment variable holding the image's fd.
pub const HEAP_FD_ENV: &str = "MCR_HEAP_FD";
const HEAP_FD_ENV_C: &[u8] = b"MCR_HEAP_FD\0";

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// 0 = no adoption attempted, 1 = adopted, < 0 = failed with this code
/// (see `HeapError::code`).
pub(super) static ADOPT: AtomicI32 = AtomicI32::new(0);

/// Makes sure the heap is initialised.
#[inline(always)]
pub fn ensure() {
    if STATE.load(Ordering::Acquire) != READY {
        init_slow_with(None);
    }
}

/// Whether the heap has been initialised in this process.
pub fn is_initialized() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

/// Initialises the heap, adopting `explicit` (an image fd) if given, else
/// the one named by the environment. Returns false if another thread or an
/// earlier call initialised it already.
#[cold]
pub(super) fn init_slow_with(explicit: Option<(libc::c_int, image::ImageInfo)>) -> bool {
    match STATE.compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire) {
        Ok(_) => {}
        Err(_) => {
            while STATE.load(Ordering::Acquire) != READY {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
            return false;
        }
    }
    thread_cache::init_key();
    let result = match explicit {
        Some((fd, info)) => Some(image::adopt_info(fd, &info)),
        // The fd stays open: the runtime's restore code owns it (marks it
        // close-on-exec, closes it when done); the mapping keeps the image.
        None => env_fd().map(image::adopt),
    };
    let mut done = false;
    match result {
        Some(Ok(())) => {
            ADOPT.store(1, Ordering::Relaxed);
            done = true;
        }
        Some(Err(e)) => ADOPT.store(e.code(), Ordering::Relaxed),
        None => {}
    }
    if !done {
        // Under an address-space limit (ulimit -v) settle for less.
        let mut len = env_region_len().unwrap_or(DEFAULT_REGION);
        while region::reserve_fresh(len).is_err() {
            if len <= 1 << 30 {
                super::alloc::fatal("cannot reserve the heap region");
            }
            len /= 2;
        }
    }
    // After the region is placed: the log's mapping must not take the
    // addresses an adopted image needs.
    super::startup_order::start();
    STATE.store(READY, Ordering::Release);
    // Registering fork handlers may allocate: only now that we are READY.
    // SAFETY: the handlers are plain functions that do not allocate.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    true
}

fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: name is NUL-terminated; getenv does not allocate. The result
    // points into the environment block, valid until someone setenv()s it.
    unsafe {
        let p = libc::getenv(name.as_ptr() as *const libc::c_char);
        if p.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

fn parse_usize(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: usize = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as usize;
    }
    Some(v)
}

fn env_fd() -> Option<libc::c_int> {
    getenv(HEAP_FD_ENV_C)
        .and_then(parse_usize)
        .map(|v| v as libc::c_int)
}

/// `MCR_HEAP_GIB`: region size in GiB (default 64), for tests and small
/// machines.
fn env_region_len() -> Option<usize> {
    getenv(b"MCR_HEAP_GIB\0")
        .and_then(parse_usize)
        .filter(|&g| (1..=1024).contains(&g))
        .map(|g| g << 30)
}

/// Takes every heap lock, in a fixed order: page lock last so that
/// per-class locks (which may take it) come first.
pub(super) fn lock_all() {
    thread_cache::REGISTRY.lock.lock();
    for c in super::central::CENTRAL.iter() {
        c.0.lock.lock();
    }
    super::pages::PAGES.lock.lock();
    super::carved::INDEX.lock.lock();
    sync::set_holds_all(true);
}

pub(super) fn unlock_all() {
    sync::set_holds_all(false);
    super::carved::INDEX.lock.unlock();
    super::pages::PAGES.lock.unlock();
    for c in super::central::CENTRAL.iter().rev() {
        c.0.lock.unlock();
    }
    thread_cache::REGISTRY.lock.unlock();
}

fn reset_all(l: &[&sync::RawLock]) {
    for x in l {
        x.reset();
    }
}

extern "C" fn fork_prepare() {
    lock_all();
}

extern "C" fn fork_parent() {
    unlock_all();
}

extern "C" fn fork_child() {
    reset_all(&[
        &thread_cache::REGISTRY.lock,
        &super::pages::PAGES.lock,
        &super::carved::INDEX.lock,
    ]);
    for c in super::central::CENTRAL.iter() {
        c.0.lock.reset();
    }
    sync::set_holds_all(false);
    // SAFETY: we are the only thread of the child and the locks are reset.
    unsafe { thread_cache::after_fork_child() };
}

/// The error of the last adoption attempt, if any.
pub(super) fn adopt_result() -> Option<Result<(), HeapError>> {
    match ADOPT.load(Ordering::Relaxed) {
        0 => None,
        1 => Some(Ok(())),
        c => Some(Err(HeapError::from_code(c))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_alloc_while_holding_all_locks() {
        // What a pthread_atfork prepare handler registered before ours does
        // when it runs after ours.
        ensure();
        lock_all();
        let big = crate::heap::alloc::malloc(1 << 20, 0);
        let mut small = Vec::new();
        for i in 0..1000 {
            small.push(crate::heap::alloc::malloc(i * 8, 0));
        }
        assert!(!big.is_null() && small.iter().all(|p| !p.is_null()));
        for p in small {
            crate::heap::alloc::free(p);
        }
        crate::heap::alloc::free(big);
        unlock_all();
        assert!(!sync::holds_all());
    }
}
