//! Runtime start: runs as an ELF constructor, before `main`, on the main
//! thread. The heap needs no start (it initialises on the first
//! allocation, which comes earlier still).

use crate::interpose::{children, held_connections, startup_log};
use crate::{control, new_version::restore, program::threads};
use libc::{c_char, c_int};
use std::ffi::{CStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::sync::Once;

static INIT: Once = Once::new();

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = constructor;

/// glibc calls `.init_array` entries with `main`'s arguments.
extern "C" fn constructor(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if !argv.is_null() && argc > 0 {
        let args = (0..argc as usize)
            .map(|i| {
                // SAFETY: glibc hands argc valid NUL-terminated strings.
                let s = unsafe { CStr::from_ptr(*argv.add(i)) };
                OsString::from_vec(s.to_bytes().to_vec())
            })
            .collect();
        crate::program::args::capture(args);
    }
    ensure();
}

extern "C" fn after_fork_child() {
    // A confined parent's child is under its filter: nothing of ours runs.
    if crate::base::sandbox::confined() {
        return;
    }
    threads::after_fork_child();
    control::forget_parent_socket();
    control::start(true);
}

/// The runtime's start under a C name, for the layers below that may be
/// called before the constructor ran (see `base::runtime_start`).
#[no_mangle]
pub extern "C" fn mcr_rt_start() {
    ensure();
}

/// Idempotent: registers the main thread, the reserved signal, the fork
/// handler, restores a checkpoint if this process is a new version, and
/// starts the control thread.
pub fn ensure() {
    INIT.call_once(|| {
        crate::heap::RuntimeAlloc::use_one_arena();
        // Test binaries of this crate link the runtime without being programs.
        if std::env::var_os("MCR_DISABLE").is_some() {
            return;
        }
        // SAFETY: getpid has no preconditions.
        if threads::gettid() == unsafe { libc::getpid() } {
            threads::register_current(true, 0, 0);
            threads::save_main_sigmask();
        }
        threads::install_signal();
        startup_log::on_fd_closed(children::fd_closed);
        startup_log::on_fd_closed(held_connections::fd_closed);
        crate::base::own_binary::open_own_executable();
        restore::init_from_env();
        // SAFETY: registering a plain function as the fork child handler.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
        control::start(false);
    });
}
