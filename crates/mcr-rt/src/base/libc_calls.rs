//! The C library underneath the wrappers: the next definition of a symbol
//! (`dlsym(RTLD_NEXT)`: never by name, which would resolve back to the
//! wrapper in the executable) and `errno`.

use libc::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Resolves the next definition of a libc symbol once.
pub fn next_symbol(cache: &AtomicUsize, name: &'static [u8]) -> usize {
    let p = cache.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: `name` is a NUL-terminated literal; RTLD_NEXT skips the executable.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const libc::c_char) } as usize;
    if f == 0 {
        // Without the real function nothing can work: say so and stop.
        let msg = b"mcr-rt: cannot resolve a libc function\n";
        // SAFETY: writing a constant to stderr.
        unsafe {
            libc::write(2, msg.as_ptr() as *const c_void, msg.len());
            libc::abort();
        }
    }
    cache.store(f, Ordering::Relaxed);
    f
}

/// The next definition of a libc function, typed: `real!(read: fn(c_int, ...) -> ssize_t)`.
macro_rules! real {
    ($name:ident : fn($($t:ty),*) -> $r:ty) => {{
        static CACHE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let f = $crate::base::libc_calls::next_symbol(&CACHE, concat!(stringify!($name), "\0").as_bytes());
        // SAFETY: the symbol is libc's function of exactly this signature.
        #[allow(unused_unsafe)]
        unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($t),*) -> $r>(f) }
    }};
}

pub(crate) use real;

/// The calling thread's `errno`.
pub fn errno() -> libc::c_int {
    // SAFETY: errno location is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}
