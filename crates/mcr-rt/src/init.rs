//! Runtime start: runs as an ELF constructor, before `main`, on the main
//! thread. The heap needs no start (it initialises on the first
//! allocation, which comes earlier still).

use crate::{control, quiesce, restore, threads};
use std::sync::Once;

static INIT: Once = Once::new();

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    ensure();
}

extern "C" fn after_fork_child() {
    threads::after_fork_child();
    control::forget_parent_socket();
    control::start(true);
}

/// Idempotent: registers the main thread, the reserved signal, the fork
/// handler, restores a checkpoint if this process is a new version, and
/// starts the control thread.
pub fn ensure() {
    INIT.call_once(|| {
        // Test binaries of this crate link the runtime without being programs.
        if std::env::var_os("MCR_DISABLE").is_some() {
            return;
        }
        // SAFETY: getpid has no preconditions.
        if threads::gettid() == unsafe { libc::getpid() } {
            threads::register_current(true, 0, 0);
            threads::save_main_sigmask();
        }
        quiesce::install_signal();
        crate::checkpoint::open_own_executable();
        restore::init_from_env();
        // SAFETY: registering a plain function as the fork child handler.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
        control::start(false);
    });
}
