//! A new version's link to the old version that started it: whether this
//! process is being restored, the status pipe it reports progress on
//! (`MCR_STATUS_FD`) and the pipe the old version commits on
//! (`MCR_COMMIT_FD`). Every layer that can fail a new version's start-up
//! (a replayed call that cannot be answered, a replayed fork) reports
//! through [`fail`] here; the restore itself lives in `new_version`.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The checkpoint's memfd (state as JSON).
pub const RESTORE_FD_ENV: &str = "MCR_RESTORE_FD";
/// The status pipe's write end: progress lines to the old version.
pub const STATUS_FD_ENV: &str = "MCR_STATUS_FD";
/// The commit pipe's read end: the old version's go-ahead.
pub const COMMIT_FD_ENV: &str = "MCR_COMMIT_FD";

/// This process is a new version being restored.
pub static RESTORING: AtomicBool = AtomicBool::new(false);

/// The pipes, read from the environment once: after transfer the
/// program's environment is whatever its state says.
static STATUS_FD: AtomicI32 = AtomicI32::new(-1);
static COMMIT_FD: AtomicI32 = AtomicI32::new(-1);

/// A descriptor number the old version passed in the environment.
pub fn env_fd(name: &str) -> Option<i32> {
    std::env::var(name).ok()?.parse().ok()
}

/// Takes the status and commit pipes from the environment.
pub fn open_from_env() {
    STATUS_FD.store(env_fd(STATUS_FD_ENV).unwrap_or(-1), Ordering::SeqCst);
    COMMIT_FD.store(env_fd(COMMIT_FD_ENV).unwrap_or(-1), Ordering::SeqCst);
}

/// Writes one progress line to the old version.
pub fn status(line: &str) {
    let fd = STATUS_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let mut l = line.as_bytes().to_vec();
        l.push(b'\n');
        // SAFETY: writing to the status pipe the old version gave us.
        unsafe { libc::write(fd, l.as_ptr() as *const libc::c_void, l.len()) };
    }
}

/// Reports the failure to the old version and exits: it rolls back.
pub fn fail(msg: &str) -> ! {
    status(&format!("error {msg}"));
    eprintln!("mcr-rt: live update failed in the new version: {msg}");
    // SAFETY: leave at once; the old version rolls back.
    unsafe { libc::_exit(70) }
}

/// The commit pipe's read end (-1: none).
pub fn commit_fd() -> i32 {
    COMMIT_FD.load(Ordering::SeqCst)
}

/// Done with the status pipe (committed).
pub fn close_status() {
    let fd = STATUS_FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: done with the status pipe.
        unsafe { libc::close(fd) };
    }
}

/// In a worker forked during the new master's start-up: the master's
/// channels to the old version are not the worker's.
pub fn forget_in_child() {
    for fd in [&STATUS_FD, &COMMIT_FD] {
        let fd = fd.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: our copy of the master's pipe end.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
    }
    if let Some(fd) = env_fd(COMMIT_FD_ENV) {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }
}
