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
//! A new version's start-up is the same: its `closefrom(3)` ran, in the old
//! version, before the descriptors it now inherits existed. While its
//! start-up is replayed, a range close also leaves alone every inherited
//! descriptor (open when the runtime started) that the replay has not
//! handed to it yet: from the program's view those numbers are not open.
//!
//! Both are *weak* definitions (`close_range` and `closefrom` jump to
//! `__mcr_close_range` and `__mcr_closefrom`): a program that defines its
//! own (OpenSSH's openbsd-compat `closefrom`, which calls `close_range`)
//! keeps it, where a strong one would not link with the runtime linked
//! whole. A program that closes numbers one by one with `close` is not
//! covered.

use crate::base::private_fd::KEPT;
use libc::{c_int, c_uint};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Descriptors open when a new version's runtime started (below the
/// private range): the old version's, inherited.
static INHERITED: Mutex<Vec<c_int>> = Mutex::new(Vec::new());

/// A new version notes what it inherited, before its start-up runs.
pub fn note_inherited() {
    let mut v = Vec::new();
    crate::base::private_fd::for_each_open_fd(|fd| {
        if fd < crate::base::private_fd::PRIVATE_FD_BASE {
            v.push(fd)
        }
    });
    *INHERITED.lock().unwrap_or_else(|e| e.into_inner()) = v;
}

/// The numbers a range close leaves open within `first..=last`, ascending:
/// the kept ones, and while a start-up is replayed, inherited ones not
/// handed to the program yet.
fn kept_in(first: c_uint, last: c_uint) -> Vec<c_uint> {
    let mut out: Vec<c_uint> = KEPT
        .iter()
        .map(|s| s.load(Ordering::SeqCst))
        .filter(|&fd| fd >= 0)
        .map(|fd| fd as c_uint)
        .collect();
    if crate::interpose::startup_log::is_replaying() {
        let claimed = crate::interpose::startup_log::claimed_fds();
        let inherited = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(
            inherited
                .iter()
                .filter(|fd| !claimed.contains(fd))
                .map(|&fd| fd as c_uint),
        );
    }
    out.retain(|fd| (first..=last).contains(fd));
    out.sort_unstable();
    out
}

/// The sub-ranges of `first..=last` that hold no kept number.
fn gaps(first: c_uint, last: c_uint) -> impl Iterator<Item = (c_uint, c_uint)> {
    let kept = kept_in(first, last);
    let n = kept.len();
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
    crate::base::private_fd::for_each_open_fd(|fd| {
        if fd >= lowfd && !kept.contains(&(fd as c_uint)) {
            // SAFETY: closing a descriptor the caller asked to close.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::private_fd::{keep, release};

    #[test]
    fn gaps_skip_kept_numbers() {
        // Numbers far above what this test process's own runtime keeps
        // (its control listener and executable, at 900 and up).
        keep(5000);
        keep(5005);
        keep(c_uint::MAX as c_int); // -1 as c_int: never kept
        let g: Vec<_> = gaps(4000, 6000).collect();
        assert_eq!(g, vec![(4000, 4999), (5001, 5004), (5006, 6000)]);
        let g: Vec<_> = gaps(5000, 5005).collect();
        assert_eq!(g, vec![(5001, 5004)]);
        let g: Vec<_> = gaps(5000, 5000).collect();
        assert_eq!(g, vec![]);
        let g: Vec<_> = gaps(4000, 4010).collect();
        assert_eq!(g, vec![(4000, 4010)]);
        release(5000);
        release(5005);
        let g: Vec<_> = gaps(4000, 6000).collect();
        assert_eq!(g, vec![(4000, 6000)]);
    }
}
