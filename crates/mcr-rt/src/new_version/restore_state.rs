//! What a new version's restore holds while it runs, shared by the
//! master's restore (`restore`) and its workers' (`workers`): the old
//! version's checkpoint until the transfer takes it (a worker forked during
//! the new master's start-up keeps its copy), the wait for the program's
//! threads to park, and the end of a worker's restore.

use crate::base::update_link::{COMMIT_FD_ENV, RESTORE_FD_ENV, RESTORING, STATUS_FD_ENV};
use crate::old_version::checkpoint::State;
use crate::program::threads;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Holds the old version's checkpoint until the transfer.
pub(crate) fn put(state: State) {
    *STATE.lock().unwrap() = Some(state);
}

/// The checkpoint, taken for the transfer.
pub(crate) fn take() -> Option<State> {
    STATE.lock().unwrap().take()
}

/// Waits until every program thread but the caller is parked (threads
/// start-up created park at their first blocking call).
pub(crate) fn wait_threads_parked(timeout: Duration) -> Result<(), String> {
    let me = threads::current();
    let deadline = Instant::now() + timeout;
    // Threads start-up created park at their first blocking call (and
    // ones still starting have not even registered yet).
    loop {
        let starting = threads::starting();
        let busy: Vec<String> = threads::all()
            .into_iter()
            .filter(|r| !me.is_some_and(|m| std::ptr::eq(*r, m)) && r.alive.load(Ordering::SeqCst))
            .filter(|r| {
                !matches!(
                    r.state(),
                    threads::BlockState::Parked | threads::BlockState::Uninterruptible
                )
            })
            .map(|r| format!("{} ({:?})", r.tid.load(Ordering::SeqCst), r.state()))
            .chain((starting > 0).then(|| format!("{starting} still starting")))
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "threads of the new version did not reach a quiescent point within {} s: {}",
                timeout.as_secs(),
                busy.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on the old version's checkpoint, if this process still has it
/// (a worker forked during the new master's start-up does).
pub(crate) fn with_state<R>(f: impl FnOnce(&State) -> R) -> Option<R> {
    STATE.lock().unwrap().as_ref().map(f)
}

/// A new worker's update is committed: it runs as a program of its own.
pub(crate) fn finish_in_child() {
    *STATE.lock().unwrap() = None;
    for v in [
        RESTORE_FD_ENV,
        crate::heap::HEAP_FD_ENV,
        COMMIT_FD_ENV,
        STATUS_FD_ENV,
        crate::interpose::children::WORKERS_FD_ENV,
    ] {
        std::env::remove_var(v);
    }
    RESTORING.store(false, Ordering::SeqCst);
}
