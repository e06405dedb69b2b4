//! The program's threads, as the runtime needs to know them to quiesce:
//! the main thread and every thread made through `pthread_create`.
//! Runtime threads (the control thread) are not in this registry.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What a thread is doing, as seen by the quiescence controller.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum BlockState {
    /// Running program code (or a call the runtime does not wrap).
    Running = 0,
    /// Inside a wrapped call that the reserved signal can interrupt.
    Interruptible = 1,
    /// Inside a wrapped call that ignores signals (`pthread_cond_wait`):
    /// quiescent where it is, and parks before it returns.
    Uninterruptible = 2,
    /// Parked by the runtime.
    Parked = 3,
}

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
    /// The caller asked not to wait (a zero timeout, `WNOHANG`): the call
    /// returns at once, so it is neither where a loop waits for work (no
    /// start-up end: a start-up may probe a descriptor this way before it
    /// closes what it does not keep) nor a place to park.
    NoWait,
}

/// The blocking call a thread is in while a profile records (written by
/// the thread, read by `interpose::profile`).
#[derive(Default)]
pub struct InCall {
    /// When it began (monotonic ns); 0: not in a recorded call.
    pub since: AtomicU64,
    pub site: AtomicUsize,
    pub name: crate::base::static_name::StaticName,
    /// The profile interrupted this call to see where it was made from.
    pub kicked: AtomicBool,
}

pub struct ThreadRec {
    pub tid: AtomicI32,
    /// The thread's stack, for conservative scanning.
    pub stack: (usize, usize),
    pub state: AtomicU8,
    pub alive: AtomicBool,
    pub is_main: bool,
    /// Where the thread last blocked outside a quiescent point during an
    /// update (a return address), to name it when quiescence times out.
    pub blocked_at: AtomicUsize,
    /// The call it is blocked in while a profile records.
    pub profile: InCall,
    /// Its `pthread_t` (glibc: the thread descriptor, at a fixed distance
    /// from the thread's static TLS block; see `thread_locals`).
    pub pthread: usize,
    /// Its start routine (0 for the main thread) and its rank among the
    /// threads created with that routine, in `pthread_create` order: what
    /// pairs it with its counterpart in another version.
    pub start: usize,
    pub ordinal: u32,
    /// Where it waits while parked (and, in a new version, where the main
    /// thread's start-up ended): what an update compares between the
    /// versions' threads (see `held_connections`).
    waiting: Mutex<Option<Waiting>>,
}

/// One thread's wait, as an update sees it.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    /// The wrapper's name (`read`, `accept`, `epoll_wait`, ...).
    pub call: &'static str,
    pub kind: CallKind,
    /// The descriptor the call waits on (-1: none).
    pub fd: libc::c_int,
    /// The return address into the program's caller (0: not found).
    pub pc: usize,
}

impl ThreadRec {
    pub fn state(&self) -> BlockState {
        match self.state.load(Ordering::SeqCst) {
            1 => BlockState::Interruptible,
            2 => BlockState::Uninterruptible,
            3 => BlockState::Parked,
            _ => BlockState::Running,
        }
    }
    pub fn set(&self, s: BlockState) {
        self.state.store(s as u8, Ordering::SeqCst);
    }
    /// Where the thread waits now, if it says.
    pub fn waiting(&self) -> Option<Waiting> {
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn set_waiting(&self, w: Option<Waiting>) {
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = w;
    }
}

static REGISTRY: Mutex<Vec<&'static ThreadRec>> = Mutex::new(Vec::new());

thread_local! {
    static CURRENT: Cell<Option<&'static ThreadRec>> = const { Cell::new(None) };
}

pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Registers the calling thread as a program thread (the main thread, or
/// one started by `__mcr_pthread_create` with `start` as its `ordinal`-th).
pub fn register_current(is_main: bool, start: usize, ordinal: u32) -> &'static ThreadRec {
    if let Some(r) = current() {
        return r;
    }
    let rec: &'static ThreadRec = Box::leak(Box::new(ThreadRec {
        tid: AtomicI32::new(gettid()),
        stack: own_stack(),
        state: AtomicU8::new(0),
        alive: AtomicBool::new(true),
        is_main,
        blocked_at: AtomicUsize::new(0),
        profile: Default::default(),
        // SAFETY: pthread_self has no preconditions.
        pthread: unsafe { libc::pthread_self() } as usize,
        start,
        ordinal,
        waiting: Mutex::new(None),
    }));
    REGISTRY.lock().unwrap().push(rec);
    CURRENT.with(|c| c.set(Some(rec)));
    rec
}

fn own_stack() -> (usize, usize) {
    // SAFETY: pthread_getattr_np on the calling thread into a local attr.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize, addr as usize + size)
    }
}

/// Stacks of the live program threads.
pub fn stack_ranges() -> Vec<(usize, usize)> {
    all()
        .iter()
        .filter(|t| t.alive.load(Ordering::SeqCst) && t.stack.1 > t.stack.0)
        .map(|t| t.stack)
        .collect()
}

/// The calling thread's record, `None` for runtime threads.
pub fn current() -> Option<&'static ThreadRec> {
    CURRENT.try_with(|c| c.get()).ok().flatten()
}

pub fn unregister_current() {
    if let Some(r) = current() {
        r.alive.store(false, Ordering::SeqCst);
        REGISTRY.lock().unwrap().retain(|x| !std::ptr::eq(*x, r));
        let _ = CURRENT.try_with(|c| c.set(None));
    }
}

/// A snapshot of the live program threads.
pub fn all() -> Vec<&'static ThreadRec> {
    REGISTRY.lock().unwrap().clone()
}

/// After `fork`: only the forking thread exists in the child.
pub fn after_fork_child() {
    let me = current();
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|r| me.is_some_and(|m| std::ptr::eq(*r, m)));
    // Threads the parent was starting do not exist here.
    STARTING.store(0, Ordering::SeqCst);
    if let Some(m) = me {
        m.tid.store(gettid(), Ordering::SeqCst);
        m.set(BlockState::Running);
    }
}

struct Start {
    f: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
    ordinal: u32,
}

/// Threads created so far per start routine (exited ones included), so
/// ranks follow `pthread_create` order, not the order threads get to run.
static CREATED: Mutex<Vec<(usize, u32)>> = Mutex::new(Vec::new());

/// Threads created by `__mcr_pthread_create` that have not registered yet.
static STARTING: AtomicI32 = AtomicI32::new(0);

/// How many program threads were created but are not in the registry yet:
/// a new version's start-up is not over while one is on its way.
pub fn starting() -> i32 {
    STARTING.load(Ordering::SeqCst)
}

fn next_ordinal(start: usize) -> u32 {
    let mut c = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    match c.iter_mut().find(|x| x.0 == start) {
        Some(x) => {
            x.1 += 1;
            x.1 - 1
        }
        None => {
            c.push((start, 1));
            0
        }
    }
}

extern "C" fn trampoline(p: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `p` is the Box<Start> leaked by `__mcr_pthread_create`.
    let s = unsafe { Box::from_raw(p as *mut Start) };
    register_current(false, s.f as usize, s.ordinal);
    STARTING.fetch_sub(1, Ordering::SeqCst);
    let r = (s.f)(s.arg);
    unregister_current();
    r
}

/// `pthread_create` for program threads: registers the thread so it can be
/// quiesced, and logs it as a start-up resource.
///
/// # Safety
/// Same contract as `pthread_create`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    f: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
) -> libc::c_int {
    crate::base::runtime_start::ensure_started();
    let ordinal = next_ordinal(f as usize);
    let start = Box::into_raw(Box::new(Start { f, arg, ordinal }));
    STARTING.fetch_add(1, Ordering::SeqCst);
    // SAFETY: forwarding the caller's arguments; the trampoline owns `start`.
    let r = unsafe { libc::pthread_create(thread, attr, trampoline, start as *mut libc::c_void) };
    if r != 0 {
        STARTING.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: the thread was not created, so `start` is still ours.
        drop(unsafe { Box::from_raw(start) });
    }
    r
}

static MAIN_SIGMASK: Mutex<Option<libc::sigset_t>> = Mutex::new(None);

/// Remembers the main thread's signal mask (called on the main thread at
/// start): a new version is started with it.
pub fn save_main_sigmask() {
    // SAFETY: reading the calling thread's mask into a local.
    let mut m: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut m) };
    *MAIN_SIGMASK.lock().unwrap() = Some(m);
}

/// The main thread's signal mask as saved at start (empty if unknown).
pub fn main_sigmask() -> libc::sigset_t {
    MAIN_SIGMASK.lock().unwrap().unwrap_or_else(|| {
        // SAFETY: an empty set.
        let mut m: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigemptyset(&mut m) };
        m
    })
}

/// Sets the calling thread's signal mask; returns the previous one.
pub fn set_sigmask(m: libc::sigset_t) -> libc::sigset_t {
    // SAFETY: sigset manipulation on locals.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &m, &mut old) };
    old
}

/// The runtime's own signal: it interrupts a thread's blocked call.
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

/// Makes the thread's blocked system call return `EINTR` (the reserved
/// signal's handler does nothing; the wrapper decides what follows).
pub fn interrupt(t: &ThreadRec) {
    // SAFETY: tgkill of one of this process's threads with our own signal.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            t.tid.load(Ordering::SeqCst),
            reserved_signal(),
        );
    }
}
