//! The runtime's long-lived descriptors (the control listener, the running
//! executable, earlier images' files) and the program calls that close
//! descriptors by range. A daemon's start-up commonly closes everything
//! it did not open: sshd's `closefrom(3)` is `close_range(3, ~0U, 0)`,
//! which took the control listener at fd 900 with it (the control thread
//! then spun on `POLLNVAL`, and no `@mcr/<pid>` was left to update the
//! server through). `close_range` and `closefrom` here close the range
//! around the kept numbers; the program never opened those (the runtime
//! holds them), so it loses nothing it owned.
//!
//! Both are *weak* definitions (`close_range` and `closefrom` jump to
//! `__mcr_close_range` and `__mcr_closefrom`): a program that defines its
//! own (OpenSSH's openbsd-compat `closefrom`, which calls `close_range`)
//! keeps it, where a strong one would not link with the runtime linked
//! whole. A program that closes numbers one by one with `close` is not
//! covered.

use libc::{c_int, c_uint};
use std::sync::atomic::{AtomicI32, Ordering};

const SLOTS: usize = 32;
static KEPT: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// `fd` is the runtime's until [`release`]: range closes skip it. Lock- and
/// allocation-free (used before `main` and in a fork child handler).
pub fn keep(fd: c_int) {
    if fd < 0 {
        return;
    }
    for s in &KEPT {
        if s.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// `fd` is no longer kept (about to be closed, or not ours in this process).
pub fn release(fd: c_int) {
    if fd < 0 {
        return;
    }
    for s in &KEPT {
        let _ = s.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// The kept numbers within `first..=last`, ascending.
fn kept_in(first: c_uint, last: c_uint) -> ([c_uint; SLOTS], usize) {
    let mut out = [0; SLOTS];
    let mut n = 0;
    for s in &KEPT {
        let fd = s.load(Ordering::SeqCst);
        if fd >= 0 && (first..=last).contains(&(fd as c_uint)) {
            out[n] = fd as c_uint;
            n += 1;
        }
    }
    out[..n].sort_unstable();
    (out, n)
}

/// The sub-ranges of `first..=last` that hold no kept number.
fn gaps(first: c_uint, last: c_uint) -> impl Iterator<Item = (c_uint, c_uint)> {
    let (kept, n) = kept_in(first, last);
    let mut from = Some(first);
    let mut i = 0;
    std::iter::from_fn(move || loop {
        let lo = from?;
        if i == n {
            from = None;
            return Some((lo, last));
        }
        let k = kept[i];
        i += 1;
        from = k.checked_add(1).filter(|&f| f <= last);
        if k > lo {
            return Some((lo, k - 1));
        }
    })
}

fn raw_close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // SAFETY: the close_range system call on plain integers.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) as c_int }
}

// Weak entry points under the libc names (see the module comment).
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".text",
    ".weak close_range",
    ".type close_range,@function",
    "close_range: jmp {cr}",
    ".weak closefrom",
    ".type closefrom,@function",
    "closefrom: jmp {cf}",
    cr = sym __mcr_close_range,
    cf = sym __mcr_closefrom,
);
#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".text",
    ".weak close_range",
    ".type close_range,%function",
    "close_range: b {cr}",
    ".weak closefrom",
    ".type closefrom,%function",
    "closefrom: b {cf}",
    cr = sym __mcr_close_range,
    cf = sym __mcr_closefrom,
);

/// `close_range(2)`, minus the runtime's kept descriptors.
///
/// # Safety
/// Same contract as `close_range`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if first > last {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = libc::EINVAL };
        return -1;
    }
    for (lo, hi) in gaps(first, last) {
        let r = raw_close_range(lo, hi, flags);
        if r != 0 {
            return r;
        }
    }
    0
}

/// `closefrom(3)` (glibc's: `close_range`, else closing what
/// `/proc/self/fd` lists), minus the runtime's kept descriptors.
///
/// # Safety
/// Same contract as `closefrom`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_closefrom(lowfd: c_int) {
    let first = lowfd.max(0) as c_uint;
    // SAFETY: our close_range above, on the range the caller named.
    if unsafe { __mcr_close_range(first, c_uint::MAX, 0) } == 0 {
        return;
    }
    let kept = kept_in(first, c_uint::MAX);
    crate::control::for_each_open_fd(|fd| {
        if fd >= lowfd && !kept.0[..kept.1].contains(&(fd as c_uint)) {
            // SAFETY: closing a descriptor the caller asked to close.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_skip_kept_numbers() {
        keep(900);
        keep(905);
        keep(c_uint::MAX as c_int); // -1 as c_int: never kept
        let g: Vec<_> = gaps(3, c_uint::MAX).collect();
        assert_eq!(g, vec![(3, 899), (901, 904), (906, c_uint::MAX)]);
        let g: Vec<_> = gaps(900, 905).collect();
        assert_eq!(g, vec![(901, 904)]);
        let g: Vec<_> = gaps(900, 900).collect();
        assert_eq!(g, vec![]);
        let g: Vec<_> = gaps(3, 10).collect();
        assert_eq!(g, vec![(3, 10)]);
        release(900);
        release(905);
        let g: Vec<_> = gaps(3, 1000).collect();
        assert_eq!(g, vec![(3, 1000)]);
    }
}
