//! Address-space limits. The heap reserves one large region up front
//! (mostly never touched), and the runtime's threads have stacks and glibc
//! arenas: a program that caps its own address space (`RLIMIT_AS`, as
//! vsftpd does with 200 MiB) means its own use, so the runtime adds its
//! reservations to the cap it passes to the kernel.

use crate::base::libc_calls::real;
use libc::{c_int, rlimit};

/// The runtime's own address space: the heap region plus room for its
/// threads' stacks and glibc arenas.
fn runtime_reservation() -> u64 {
    crate::heap::region().1 as u64 + (256 << 20)
}

fn adjust(resource: c_int, r: *const rlimit) -> Option<rlimit> {
    if resource != libc::RLIMIT_AS as c_int || r.is_null() {
        return None;
    }
    // SAFETY: the caller passed a valid rlimit.
    let mut v = unsafe { *r };
    let extra = runtime_reservation();
    if v.rlim_cur != libc::RLIM_INFINITY {
        v.rlim_cur = v.rlim_cur.saturating_add(extra);
    }
    if v.rlim_max != libc::RLIM_INFINITY {
        v.rlim_max = v.rlim_max.saturating_add(extra);
    }
    Some(v)
}

/// # Safety
/// Same contract as `setrlimit`.
#[no_mangle]
pub unsafe extern "C" fn setrlimit(resource: c_int, r: *const rlimit) -> c_int {
    let f = real!(setrlimit: fn(c_int, *const rlimit) -> c_int);
    match adjust(resource, r) {
        // SAFETY: a valid rlimit on our stack.
        Some(v) => unsafe { f(resource, &v) },
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { f(resource, r) },
    }
}

/// # Safety
/// Same contract as `setrlimit64`.
#[no_mangle]
pub unsafe extern "C" fn setrlimit64(resource: c_int, r: *const rlimit) -> c_int {
    // SAFETY: identical layout on 64-bit Linux.
    unsafe { setrlimit(resource, r) }
}
