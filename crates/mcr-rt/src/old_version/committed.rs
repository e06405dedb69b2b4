//! The old process after a committed update: the new version serves, this
//! one leaves.

/// After a committed update: leave without running the program's exit
/// handlers (they would remove pidfiles or sockets the new version owns).
pub fn finish_old_process() -> ! {
    // SAFETY: _exit ends the process immediately.
    unsafe { libc::_exit(0) }
}
