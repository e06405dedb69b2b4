//! Seccomp sandboxes the program puts itself in (sshd's pre-auth child:
//! `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ...)` once it runs as the
//! privsep user in its chroot). The filter lists the system calls the
//! program makes, nothing else; a call outside it kills the thread
//! (`SECCOMP_RET_KILL`). So from the moment the program asks for a filter
//! the process is *confined*:
//!
//! - the runtime makes no system call of its own on the program's threads:
//!   blocking-call wrappers forward the call and nothing else (no
//!   `getppid`, no `fstat` of the descriptor, no parking), start-up inputs
//!   are not looked at, a `fork` child handler does nothing;
//! - the control thread is stopped and joined *before* the filter is
//!   installed, so the process is left with the program's threads only and
//!   a thread the filter kills ends the process as it does without mcr
//!   (with a control thread still alive, sshd's monitor waited forever on a
//!   child whose only program thread was gone).
//!
//! A confined process has no `@mcr/<pid>` socket: it is not updated, and
//! `mcr-ctl ps` does not list it. It stays confined when the kernel refuses
//! the filter (the program carries on unsandboxed, as sshd does, and the
//! runtime stays out of its way: the safe side). `seccomp(2)` made through `syscall()` (no
//! glibc wrapper exists) is not seen here.

use libc::{c_int, c_ulong};
use std::sync::atomic::{AtomicBool, Ordering};

/// The program asked for a seccomp filter or strict mode.
static CONFINED: AtomicBool = AtomicBool::new(false);

/// Whether the process is confined: the runtime must make no system call
/// of its own on a program thread.
#[inline]
pub fn confined() -> bool {
    CONFINED.load(Ordering::Relaxed)
}

/// What must happen before the filter goes in, registered by the layer
/// that owns it: the control thread stops (`control`).
static ON_CONFINE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Registers what runs before a seccomp filter confines the process (once).
pub fn on_confine(f: fn()) {
    let _ = ON_CONFINE.set(f);
}

/// Whether `prctl(option, arg2, ..)` installs a seccomp mode.
fn installs_seccomp(option: c_int, arg2: c_ulong) -> bool {
    option == libc::PR_SET_SECCOMP
        && (arg2 == libc::SECCOMP_MODE_FILTER as c_ulong
            || arg2 == libc::SECCOMP_MODE_STRICT as c_ulong)
}

/// `prctl`, seen by the runtime when it installs a seccomp mode. Made as the
/// raw system call (what glibc's `prctl` is), so no symbol lookup runs in
/// a fork child handler or before `main`, where the runtime calls it too.
///
/// # Safety
/// Same contract as `prctl` (its variadic arguments are the four
/// `unsigned long`s the kernel reads; unused ones are ignored).
#[no_mangle]
pub unsafe extern "C" fn prctl(
    option: c_int,
    a2: c_ulong,
    a3: c_ulong,
    a4: c_ulong,
    a5: c_ulong,
) -> c_int {
    let seccomp = installs_seccomp(option, a2);
    if seccomp && !CONFINED.swap(true, Ordering::SeqCst) {
        if let Some(f) = ON_CONFINE.get() {
            f();
        }
    }
    // SAFETY: the caller's prctl, forwarded unchanged.
    unsafe { libc::syscall(libc::SYS_prctl, option, a2, a3, a4, a5) as c_int }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_seccomp_modes_confine() {
        assert!(installs_seccomp(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as c_ulong
        ));
        assert!(installs_seccomp(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_STRICT as c_ulong
        ));
        assert!(!installs_seccomp(libc::PR_SET_NO_NEW_PRIVS, 1));
        assert!(!installs_seccomp(libc::PR_SET_NAME, 0));
        assert!(!installs_seccomp(libc::PR_SET_SECCOMP, 0));
    }
}
