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

use crate::program::threads::{self, BlockState, CallKind, ThreadRec, Waiting};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// An update wants every thread parked.
pub static REQUESTED: AtomicBool = AtomicBool::new(false);
static GATE: Mutex<u64> = Mutex::new(0);
static GATE_CV: Condvar = Condvar::new();
static PARKED_CV: Condvar = Condvar::new();

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

/// Parks the thread, saying where it waits while it is parked.
fn park_waiting(rec: &ThreadRec, w: Waiting) {
    rec.set_waiting(Some(w));
    park(rec);
    rec.set_waiting(None);
}

/// Which wrapper a blocking call went through: its name, and the addresses
/// of its two entry points (libc name, `__mcr_` name) to find the caller.
pub struct Wrapper {
    pub name: &'static str,
    pub entries: [usize; 2],
    /// The descriptor the call waits on (-1: none): an update compares
    /// what the threads of both versions wait on (`held_connections`).
    pub fd: libc::c_int,
}

thread_local! {
    /// The next wrapped call of this thread is at a declared quiescent point.
    static AT_DECLARED_POINT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by the code `mcr-pass` adds right before each blocking call of a
/// function mcr.toml declares an event loop (`[quiescent] functions`).
#[no_mangle]
pub extern "C" fn __mcr_declared_point() {
    AT_DECLARED_POINT.set(true);
}

/// The call site of one blocking call, found only if asked for.
struct Site<'a> {
    wrapper: &'a Wrapper,
    pc: Option<usize>,
    /// Marked by `__mcr_declared_point()` (taken at the wrapper's entry).
    declared: bool,
}

impl<'a> Site<'a> {
    fn new(wrapper: &'a Wrapper) -> Self {
        Site {
            wrapper,
            pc: None,
            declared: AT_DECLARED_POINT.replace(false),
        }
    }

    /// Whether this call can end a start-up: with declared quiescent
    /// points, only they can (nginx's worker waits on its epoll instance
    /// once in its start-up, to probe it, before it closes descriptors).
    fn may_end_startup(&self) -> bool {
        self.declared || !crate::program::sections::declared_points_in_force()
    }

    fn pc(&mut self) -> usize {
        let w = self.wrapper;
        *self
            .pc
            .get_or_insert_with(|| crate::base::call_site::caller_of(&w.entries))
    }

    /// This call as a thread's wait (finds the call site).
    fn waiting(&mut self, kind: CallKind) -> Waiting {
        Waiting {
            call: self.wrapper.name,
            kind,
            fd: self.wrapper.fd,
            pc: self.pc(),
        }
    }
    /// A quiescent point: any blocking call; with declared points, only
    /// they; else with a profile in force, only the call sites it lists.
    fn quiescent(&mut self, rec: &ThreadRec) -> bool {
        let q = if crate::program::sections::declared_points_in_force() {
            self.declared
        } else {
            crate::interpose::profile::is_quiescent_site(|| self.pc())
        };
        if !q {
            rec.blocked_at.store(self.pc(), Ordering::SeqCst);
        }
        q
    }
}

/// An update waits for this thread to park at a call of this kind.
fn update_waits(rec: &ThreadRec, kind: CallKind) -> bool {
    // While a new version restores, its main thread runs start-up to the end.
    if rec.is_main && crate::base::update_link::RESTORING.load(Ordering::SeqCst) {
        return false;
    }
    REQUESTED.load(Ordering::SeqCst)
        && match kind {
            CallKind::Data(fd) => crate::base::descriptor::can_block(fd),
            _ => true,
        }
}

fn should_park(rec: &ThreadRec, kind: CallKind, site: &mut Site) -> bool {
    update_waits(rec, kind) && site.quiescent(rec)
}

/// Runs one wrapped blocking call with quiescence around it.
/// `interrupted` tells whether a result is an `EINTR` failure.
pub fn blocking<T: Copy + From<i8>>(
    wrapper: &Wrapper,
    kind: CallKind,
    call: impl Fn() -> T,
    interrupted: impl Fn(T) -> bool,
) -> T {
    // Under the program's seccomp filter: the call and nothing of ours.
    if crate::base::sandbox::confined() {
        AT_DECLARED_POINT.set(false);
        return call();
    }
    let Some(rec) = threads::current() else {
        AT_DECLARED_POINT.set(false);
        return call();
    };
    let mut site = Site::new(wrapper);
    if kind == CallKind::NoWait {
        return call();
    }
    if rec.is_main
        && site.may_end_startup()
        && (matches!(kind, CallKind::EventWait | CallKind::EventSet)
            || crate::interpose::children::startup_pending(kind))
    {
        // A new version compares where its threads wait with where the
        // old version's did before it reports ready: this is where its
        // main thread waits.
        let restoring = crate::base::update_link::RESTORING.load(Ordering::SeqCst);
        if restoring {
            rec.set_waiting(Some(site.waiting(kind)));
        }
        let transferred = reached_first_quiescent_point();
        if restoring {
            rec.set_waiting(None);
        }
        // This very call was made with a set built from start-up state.
        if matches!(kind, CallKind::EventSet) && transferred {
            // SAFETY: errno is thread-local.
            unsafe { *libc::__errno_location() = libc::EINTR };
            return T::from(-1);
        }
    }
    loop {
        if should_park(rec, kind, &mut site) {
            park_waiting(rec, site.waiting(kind));
            continue;
        }
        // Blocked at a call that is not a quiescent point while an update
        // waits: the thread is busy (a request in progress), not to be
        // interrupted again; the update waits for it to come round.
        let busy = enter_wait(rec, &mut site, BlockState::Interruptible);
        if !busy && should_park(rec, kind, &mut site) {
            rec.set(BlockState::Running);
            continue;
        }
        let r = profiled(rec, &mut site, &call);
        let eintr = interrupted(r);
        rec.set(BlockState::Running);
        // Our own interruption (an update, or a profile that needed to see
        // where the thread waits): the call is made again.
        let kicked = rec.profile.kicked.swap(false, Ordering::SeqCst);
        if eintr && (REQUESTED.load(Ordering::SeqCst) || kicked) {
            continue;
        }
        return r;
    }
}

/// Marks the thread as about to block in `waiting`, or as busy when an
/// update waits and this call is not a quiescent point (then it is neither
/// interrupted nor counted as parked). Returns whether it is busy.
fn enter_wait(rec: &ThreadRec, site: &mut Site, waiting: BlockState) -> bool {
    let busy = REQUESTED.load(Ordering::SeqCst) && !site.quiescent(rec);
    rec.set(if busy { BlockState::Running } else { waiting });
    busy
}

/// Makes the call, timed at its call site while a profile records.
fn profiled<T>(rec: &ThreadRec, site: &mut Site, call: impl Fn() -> T) -> T {
    if !crate::interpose::profile::PROFILING.load(Ordering::Relaxed) {
        return call();
    }
    crate::interpose::profile::enter(rec, site.pc(), site.wrapper.name);
    let r = call();
    crate::interpose::profile::leave(rec);
    r
}

/// `pthread_cond_wait`-style calls: signals do not interrupt them, so a
/// thread inside one counts as quiescent, and parks (mutex released) if it
/// wakes while an update runs. A spurious wake-up is allowed by POSIX.
///
/// With a profile in force, a wait at a call site the profile does not list
/// is not quiescent; one that began before the update did cannot be told
/// apart (its site is found only when it wakes) and counts as quiescent.
pub(crate) fn blocking_cond(
    wrapper: &Wrapper,
    mutex: *mut libc::pthread_mutex_t,
    call: impl Fn() -> libc::c_int,
) -> libc::c_int {
    let Some(rec) = threads::current().filter(|_| !crate::base::sandbox::confined()) else {
        return call();
    };
    let mut site = Site::new(wrapper);
    // Not a start-up end for the main thread: start-up code waits on
    // condition variables too (for its workers to come up).
    enter_wait(rec, &mut site, BlockState::Uninterruptible);
    // Quiescent inside the wait without parking: while an update runs
    // (a new version's start-up included) it says where it waits.
    let updating = REQUESTED.load(Ordering::SeqCst);
    if updating {
        rec.set_waiting(Some(site.waiting(CallKind::Wait)));
    }
    let r = profiled(rec, &mut site, &call);
    if updating {
        rec.set_waiting(None);
    }
    if should_park(rec, CallKind::Wait, &mut site) {
        // SAFETY: the wait returned with `mutex` held by this thread.
        unsafe { libc::pthread_mutex_unlock(mutex) };
        park_waiting(rec, site.waiting(CallKind::Wait));
        // SAFETY: re-acquire before returning, as the caller expects.
        unsafe { libc::pthread_mutex_lock(mutex) };
    }
    rec.set(BlockState::Running);
    r
}

/// Why quiescence could not be reached.
#[derive(Debug)]
pub struct NotQuiescent {
    /// Thread ids, each with the call site it is blocked at outside a
    /// quiescent point (0: running).
    pub busy: Vec<(i32, usize)>,
    /// Threads created but not started yet.
    pub starting: i32,
}

/// Asks every program thread to park; waits until all are parked (or in an
/// uninterruptible wait) or the deadline passes. On failure threads are
/// released again.
pub fn quiesce(timeout: Duration, skip: Option<&ThreadRec>) -> Result<(), NotQuiescent> {
    for t in threads::all() {
        t.blocked_at.store(0, Ordering::SeqCst);
    }
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
                    threads::interrupt(t);
                    busy.push((tid, 0));
                }
                BlockState::Running => busy.push((tid, t.blocked_at.load(Ordering::SeqCst))),
            }
        }
        // A thread made by `pthread_create` that has not registered yet
        // would run unparked through the checkpoint.
        let starting = threads::starting();
        if busy.is_empty() && starting <= 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            resume();
            return Err(NotQuiescent { busy, starting });
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
        reached_first_quiescent_point();
    }
    // Declared by the program: quiescent whatever a profile says.
    if update_waits(rec, CallKind::EventWait) {
        let w = Waiting {
            call: "MCR_QUIESCENT_POINT",
            kind: CallKind::EventWait,
            fd: -1,
            pc: 0,
        };
        park_waiting(rec, w);
    }
}

/// The main thread (or a start-up child's) is at a quiescent point: the
/// first one ends its start-up. True when a new version received its
/// state there.
fn reached_first_quiescent_point() -> bool {
    if crate::interpose::children::is_startup_child() {
        return crate::interpose::children::reached_quiescent_point();
    }
    crate::interpose::startup_log::main_reached_quiescent_point()
}
