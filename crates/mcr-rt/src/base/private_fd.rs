//! Runtime-private descriptors: the runtime's own files (its control
//! socket, the checkpoint's memfds, the executable it reads symbols from)
//! live at or above [`PRIVATE_FD_BASE`], close-on-exec, so the program's
//! own numbering is untouched and its `close` loops never hit them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Runtime-private descriptors are moved at or above this number.
pub const PRIVATE_FD_BASE: i32 = 900;

/// Moves descriptor `low` to the private range, close-on-exec, with raw
/// system calls only (no wrapper of ours, no allocation: usable before
/// `main` and in a fork child handler). Returns the new number, -1 on
/// failure; `low` is closed either way.
pub(crate) fn raw_to_private(low: i32) -> i32 {
    // SAFETY: fcntl and close system calls on a descriptor the caller owns.
    unsafe {
        let high =
            libc::syscall(libc::SYS_fcntl, low, libc::F_DUPFD_CLOEXEC, PRIVATE_FD_BASE) as i32;
        libc::syscall(libc::SYS_close, low);
        high
    }
}

/// Moves a descriptor to the private range, close-on-exec.
pub fn to_private_fd(fd: OwnedFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own; the original is dropped.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PRIVATE_FD_BASE) };
    if n < 0 {
        return fd;
    }
    // SAFETY: `n` is a fresh descriptor we now own.
    unsafe { OwnedFd::from_raw_fd(n) }
}

/// The program's descriptors (the runtime's are above the private base).
pub fn program_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&n: &i32| n < PRIVATE_FD_BASE)
                .collect()
        })
        .unwrap_or_default()
}
