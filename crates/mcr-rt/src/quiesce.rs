//! Quiescence: parking every program thread at a blocking call at the top of
//! its loop, where it holds no half-done work.
//!
//! Every wrapped blocking call goes through [`blocking`]. When an update is
//! requested the controller sets [`REQUESTED`]; a thread about to block parks
//! instead, and a thread already blocked in an interruptible call is sent the
//! reserved signal (installed without `SA_RESTART`, handler does nothing), so
//! the kernel returns `EINTR`, which the wrapper swallows: it parks and then
//! repeats the call. A call that returned a result is never parked on: its
//! result goes to the program (a request in progress finishes first).

use crate::threads::{self, BlockState, ThreadRec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// An update wants every thread parked.
pub static REQUESTED: AtomicBool = AtomicBool::new(false);
static GATE: Mutex<u64> = Mutex::new(0);
static GATE_CV: Condvar = Condvar::new();
static PARKED_CV: Condvar = Condvar::new();

/// What kind of blocking call a wrapper makes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallKind {
    /// An event wait at the top of a loop: `accept`, `sigwait`, `pause`.
    /// The main thread's first such call ends start-up.
    EventWait,
    /// An event wait on a set of descriptors: `epoll_wait`, `poll`,
    /// `select`. Like `EventWait`; also, the first one after a transfer
    /// returns `EINTR`, so a loop that built its set from start-up state
    /// goes round and rebuilds it from the transferred state.
    EventSet,
    /// Data calls (`read`, `recv*`) and sleeps: quiescent only on fds that
    /// can block (sockets, pipes, terminals).
    Data(libc::c_int),
    Sleep,
    Wait,
}

pub fn reserved_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

extern "C" fn on_reserved_signal(_: libc::c_int) {}

/// Installs the reserved signal's handler (no `SA_RESTART`: blocked calls
/// must return `EINTR`).
pub fn install_signal() {
    // SAFETY: plain sigaction with a handler that touches nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_reserved_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(reserved_signal(), &sa, std::ptr::null_mut());
    }
}

pub(crate) fn fd_can_block(fd: libc::c_int) -> bool {
    // SAFETY: fstat into a local struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    let t = st.st_mode & libc::S_IFMT;
    t == libc::S_IFSOCK || t == libc::S_IFIFO || t == libc::S_IFCHR
}

/// Parks the calling thread until the update finishes or is rolled back.
pub fn park(rec: &ThreadRec) {
    let mut g = GATE.lock().unwrap_or_else(|e| e.into_inner());
    rec.set(BlockState::Parked);
    PARKED_CV.notify_all();
    while REQUESTED.load(Ordering::SeqCst) {
        g = GATE_CV.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    rec.set(BlockState::Running);
}

fn should_park(rec: &ThreadRec, kind: CallKind) -> bool {
    // While a new version restores, its main thread runs start-up to the end.
    if rec.is_main && crate::restore::RESTORING.load(Ordering::SeqCst) {
        return false;
    }
    REQUESTED.load(Ordering::SeqCst)
        && match kind {
            CallKind::Data(fd) => fd_can_block(fd),
            _ => true,
        }
}

/// Runs one wrapped blocking call with quiescence around it.
/// `interrupted` tells whether a result is an `EINTR` failure.
pub fn blocking<T: Copy + From<i8>>(
    kind: CallKind,
    call: impl Fn() -> T,
    interrupted: impl Fn(T) -> bool,
) -> T {
    let Some(rec) = threads::current() else {
        return call();
    };
    if rec.is_main
        && (matches!(kind, CallKind::EventWait | CallKind::EventSet)
            || crate::children::startup_pending(kind))
    {
        let transferred = crate::startup_log::main_reached_quiescent_point();
        // This very call was made with a set built from start-up state.
        if kind == CallKind::EventSet && transferred {
            // SAFETY: errno is thread-local.
            unsafe { *libc::__errno_location() = libc::EINTR };
            return T::from(-1);
        }
    }
    loop {
        if should_park(rec, kind) {
            park(rec);
            continue;
        }
        rec.set(BlockState::Interruptible);
        if should_park(rec, kind) {
            rec.set(BlockState::Running);
            continue;
        }
        let r = call();
        let eintr = interrupted(r);
        rec.set(BlockState::Running);
        if eintr && REQUESTED.load(Ordering::SeqCst) {
            continue;
        }
        return r;
    }
}

/// `pthread_cond_wait`-style calls: signals do not interrupt them, so a
/// thread inside one counts as quiescent, and parks (mutex released) if it
/// wakes while an update runs. A spurious wake-up is allowed by POSIX.
pub(crate) fn blocking_cond(
    mutex: *mut libc::pthread_mutex_t,
    call: impl Fn() -> libc::c_int,
) -> libc::c_int {
    let Some(rec) = threads::current() else {
        return call();
    };
    // Not a start-up end for the main thread: start-up code waits on
    // condition variables too (for its workers to come up).
    rec.set(BlockState::Uninterruptible);
    let r = call();
    if should_park(rec, CallKind::Wait) {
        // SAFETY: the wait returned with `mutex` held by this thread.
        unsafe { libc::pthread_mutex_unlock(mutex) };
        park(rec);
        // SAFETY: re-acquire before returning, as the caller expects.
        unsafe { libc::pthread_mutex_lock(mutex) };
    }
    rec.set(BlockState::Running);
    r
}

pub fn errno() -> libc::c_int {
    // SAFETY: errno location is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

/// Why quiescence could not be reached.
#[derive(Debug)]
pub struct NotQuiescent {
    pub busy: Vec<i32>,
}

/// Asks every program thread to park; waits until all are parked (or in an
/// uninterruptible wait) or the deadline passes. On failure threads are
/// released again.
pub fn quiesce(timeout: Duration, skip: Option<&ThreadRec>) -> Result<(), NotQuiescent> {
    REQUESTED.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    loop {
        let mut busy = Vec::new();
        for t in threads::all() {
            if skip.is_some_and(|s| std::ptr::eq(s, t)) || !t.alive.load(Ordering::SeqCst) {
                continue;
            }
            let tid = t.tid.load(Ordering::SeqCst);
            // SAFETY: tgkill with signal 0 only probes for existence.
            if unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) } != 0 {
                t.alive.store(false, Ordering::SeqCst);
                continue;
            }
            match t.state() {
                BlockState::Parked | BlockState::Uninterruptible => {}
                BlockState::Interruptible => {
                    // SAFETY: interrupts the thread's blocked system call;
                    // the handler is a no-op.
                    unsafe {
                        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, reserved_signal());
                    }
                    busy.push(tid);
                }
                BlockState::Running => busy.push(tid),
            }
        }
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            resume();
            return Err(NotQuiescent { busy });
        }
        let g = GATE.lock().unwrap_or_else(|e| e.into_inner());
        let _ = PARKED_CV.wait_timeout(g, Duration::from_millis(2));
    }
}

/// Releases every parked thread.
pub fn resume() {
    let _g = GATE.lock().unwrap_or_else(|e| e.into_inner());
    REQUESTED.store(false, Ordering::SeqCst);
    GATE_CV.notify_all();
}

/// `MCR_QUIESCENT_POINT()` from mcr.h: a quiescent point without a
/// blocking call.
#[no_mangle]
pub extern "C" fn __mcr_quiescent_point() {
    let Some(rec) = threads::current() else {
        return;
    };
    if rec.is_main {
        crate::startup_log::main_reached_quiescent_point();
    }
    if should_park(rec, CallKind::EventWait) {
        park(rec);
    }
}
