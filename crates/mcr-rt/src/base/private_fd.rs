//! Runtime-private descriptors: the runtime's own files (its control
//! socket, the checkpoint's memfds, the executable it reads symbols from)
//! live at or above [`PRIVATE_FD_BASE`], close-on-exec, so the program's
//! own numbering is untouched and its `close` loops never hit them.

use libc::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Numbers the runtime holds for good (its control listener, its own
/// executable, earlier images), which a program's range close must skip
/// (`interpose::range_close`).
const SLOTS: usize = 32;
pub(crate) static KEPT: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

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

/// Calls `f` with every descriptor open in this process, read from
/// `/proc/self/fd` with raw system calls (safe in a fork child handler).
pub fn for_each_open_fd(mut f: impl FnMut(i32)) {
    // SAFETY: open/getdents64/close on a directory descriptor we own, into a
    // stack buffer; records are parsed within the length the kernel returned.
    unsafe {
        let dir = libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let mut off = 0usize;
            while off < n as usize {
                // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                let name = &buf[off + 19..off + reclen];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                let fd = name.iter().try_fold(0i32, |acc, &b| {
                    b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as i32)
                });
                if let Some(fd) = fd.filter(|&fd| fd != dir && !name.is_empty()) {
                    f(fd);
                }
                off += reclen;
            }
        }
        libc::close(dir);
    }
}
