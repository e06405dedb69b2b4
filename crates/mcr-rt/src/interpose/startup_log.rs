//! The start-up log: calls that create long-lived resources before the main
//! thread's first quiescent point, recorded in the old version and replayed
//! against in the new one (mutable reinitialization).
//!
//! Matching is by (kind, key arguments, order among equals), not by call
//! site: the calls are interposed at the libc symbol, so resources that
//! libraries create (libevent's epoll instance) are matched too. A socket is
//! re-checked at `bind`: bound to another address, it gets a fresh socket.
//! The new version gets the inherited descriptor under the old number.

use crate::base::libc_calls::real;
pub use crate::interpose::startup_entry::{Entry, Outcome};
use crate::program::threads;
use libc::{c_char, c_int, c_uint};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

const RECORDING: u8 = 0;
const DONE: u8 = 1;
const REPLAYING: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(RECORDING);
static LOG: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static STARTUP_OVER: AtomicBool = AtomicBool::new(false);

/// The log as it stands (for the checkpoint).
pub fn entries() -> Vec<Entry> {
    LOG.lock().unwrap().clone()
}

/// Puts the runtime in replay mode with the old version's log. Entries
/// the old program closed stay: each pairs with its call in the new
/// start-up, which then makes a fresh resource (see `claim`).
pub fn start_replay(old: Vec<Entry>) {
    *LOG.lock().unwrap() = old;
    MODE.store(REPLAYING, Ordering::SeqCst);
}

/// Ends replay: returns the old entries the new version did not claim,
/// with only their descriptors still open in the old version (they are
/// closed after commit).
pub fn finish_replay() -> Vec<Entry> {
    MODE.store(DONE, Ordering::SeqCst);
    let mut log = LOG.lock().unwrap();
    let unclaimed = log
        .iter()
        .filter(|e| !e.claimed && !e.fresh && e.open)
        .map(|e| {
            let mut e = e.clone();
            e.fds.retain(|fd| !e.closed.contains(fd));
            e
        })
        .collect();
    // What the next update replays: this version's own start-up resources.
    log.retain(|e| e.claimed || e.fresh);
    unclaimed
}

/// Still recording the old version's start-up (no replay, not over).
pub fn is_recording() -> bool {
    MODE.load(Ordering::SeqCst) == RECORDING && logging()
}

/// Replaying an old start-up log (a new version's start-up).
pub fn is_replaying() -> bool {
    MODE.load(Ordering::SeqCst) == REPLAYING && logging()
}

/// In a process forked during replay: its parent's log is not its own.
pub fn stop_replay() {
    MODE.store(DONE, Ordering::SeqCst);
}

/// A `fork` of the old version's start-up (parent side).
pub fn record_fork(pid: i32) {
    if !is_recording() {
        return;
    }
    LOG.lock().unwrap().push(Entry {
        pid: Some(pid),
        ..Entry::new("fork", String::new())
    });
}

/// The children forked by start-up, in fork order (pids as logged).
pub fn forks() -> Vec<i32> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == "fork")
        .filter_map(|e| e.pid)
        .collect()
}

/// A `fork` replayed by the new version's start-up: the entry of the same
/// fork order now names the new child (a later update pairs with it).
/// Returns the fork order.
pub fn replay_fork(pid: i32) -> usize {
    let mut log = LOG.lock().unwrap();
    let k = log.iter().filter(|e| e.kind == "fork" && e.claimed).count();
    match log
        .iter_mut()
        .enumerate()
        .find(|(_, e)| e.kind == "fork" && !e.claimed)
    {
        Some((i, e)) => {
            paired_at(i);
            e.pid = Some(pid);
            e.claimed = true;
        }
        None => log.push(Entry {
            pid: Some(pid),
            claimed: true,
            ..Entry::new("fork", String::new())
        }),
    }
    k
}

/// Descriptors the replay has handed to the new version so far.
pub fn claimed_fds() -> Vec<c_int> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|e| e.claimed)
        .flat_map(|e| e.fds.iter().filter(|fd| !e.closed.contains(fd)).copied())
        .collect()
}

/// Marks start-up over (recording stops); false if it already was.
pub fn end_startup() -> bool {
    if STARTUP_OVER.swap(true, Ordering::SeqCst) {
        return false;
    }
    if MODE.load(Ordering::SeqCst) == RECORDING {
        MODE.store(DONE, Ordering::SeqCst);
    }
    true
}

pub fn is_startup_over() -> bool {
    STARTUP_OVER.load(Ordering::SeqCst)
}

/// What runs when the main thread's start-up ends, registered by the
/// layer above that owns it (a new version's restore: the transfer).
/// Returns true when state was transferred there.
static ON_MAIN_STARTUP_OVER: std::sync::OnceLock<fn() -> bool> = std::sync::OnceLock::new();

/// Registers what runs at the end of the main thread's start-up (once).
pub fn on_main_startup_over(f: fn() -> bool) {
    let _ = ON_MAIN_STARTUP_OVER.set(f);
}

/// Called at every event wait of the main thread: the first one ends
/// start-up (the startup snapshot is taken then). True when a new version
/// just received its state there.
pub fn main_reached_quiescent_point() -> bool {
    if !end_startup() {
        return false;
    }
    crate::program::snapshot::take();
    ON_MAIN_STARTUP_OVER.get().is_some_and(|f| f())
}

fn logging() -> bool {
    threads::current().is_some()
}

/// In replay, where the next entry a call makes without an old counterpart
/// goes: right after the last entry a call was paired with, so the log the
/// next update replays is in this start-up's call order (the k-th call of
/// a kind and key must meet the k-th entry).
static NEXT_IN_ORDER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn paired_at(index: usize) {
    NEXT_IN_ORDER.fetch_max(index + 1, Ordering::SeqCst);
}

/// Logs `e` while start-up records or replays: in replay it is this
/// start-up's own (`fresh`), placed in call order.
fn record_entry(mut e: Entry) {
    let mode = MODE.load(Ordering::SeqCst);
    if mode == DONE || !logging() {
        return;
    }
    let mut log = LOG.lock().unwrap();
    if mode == REPLAYING {
        e.fresh = true;
        let at = NEXT_IN_ORDER.fetch_add(1, Ordering::SeqCst).min(log.len());
        log.insert(at, e);
    } else {
        log.push(e);
    }
}

fn record(kind: &str, key: String, fds: Vec<c_int>) {
    record_entry(Entry {
        fds,
        ..Entry::new(kind, key)
    });
}

/// A process identity call of start-up (old version), or one the new
/// version's start-up made without an old counterpart (kept for the next
/// update). Not logged once start-up is over.
pub(crate) fn record_identity(kind: &str, key: String, outcome: Outcome) {
    record_entry(Entry {
        identity: Some(outcome),
        ..Entry::new(kind, key)
    });
}

/// In replay, claims the old start-up's next identity call of this kind
/// (in call order, whatever its arguments): its position in the log and
/// the entry as logged.
pub(crate) fn claim_identity(kind: &str) -> Option<(usize, Entry)> {
    if MODE.load(Ordering::SeqCst) != REPLAYING || !logging() {
        return None;
    }
    let mut log = LOG.lock().unwrap();
    let (i, e) = log
        .iter_mut()
        .enumerate()
        .find(|(_, e)| !e.claimed && !e.fresh && e.kind == kind && e.identity.is_some())?;
    paired_at(i);
    e.claimed = true;
    Some((i, e.clone()))
}

/// A claimed identity entry now describes this version's call (what the
/// next update replays against).
pub(crate) fn amend_identity(index: usize, key: String, outcome: Outcome) {
    if let Some(e) = LOG.lock().unwrap().get_mut(index) {
        e.key = key;
        e.identity = Some(outcome);
    }
}

/// Whether `bind`/`listen` on `fd` are logged: while recording, or in
/// replay on a resource this start-up made itself.
fn logs_details(fd: c_int) -> bool {
    match MODE.load(Ordering::SeqCst) {
        RECORDING => logging(),
        REPLAYING => logging() && with_entry(fd, |e| e.fresh) == Some(true),
        _ => false,
    }
}

/// In replay, pairs this call with the first old entry of this kind and
/// key not paired yet: the k-th call with the k-th entry. An entry the old
/// program closed (a probe socket, nginx's first error log descriptor) is
/// passed over and the call makes a fresh resource; handing it the next
/// entry instead would give a short-lived start-up resource the one the
/// program keeps (which it would then close).
fn claim(kind: &str, key: &str) -> Option<Vec<c_int>> {
    if MODE.load(Ordering::SeqCst) != REPLAYING || !logging() {
        return None;
    }
    let mut log = LOG.lock().unwrap();
    let (i, e) = log.iter_mut().enumerate().find(|(_, e)| {
        !e.claimed && !e.passed_over && !e.fresh && e.kind == kind && e.key == key
    })?;
    paired_at(i);
    if !e.closed.is_empty() {
        e.passed_over = true;
        return None;
    }
    e.claimed = true;
    Some(e.fds.clone())
}

fn with_entry<R>(fd: c_int, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
    let mut log = LOG.lock().unwrap();
    log.iter_mut()
        .rev()
        .find(|e| e.fds.contains(&fd) && e.open && !e.closed.contains(&fd))
        .map(f)
}

fn is_claimed(fd: c_int) -> bool {
    MODE.load(Ordering::SeqCst) == REPLAYING && with_entry(fd, |e| e.claimed).unwrap_or(false)
}

const TYPE_FLAGS: c_int = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;

/// # Safety
/// Same contract as `socket`.
#[no_mangle]
pub unsafe extern "C" fn socket(d: c_int, t: c_int, p: c_int) -> c_int {
    let key = format!("{d},{},{p}", t & !TYPE_FLAGS);
    if let Some(fds) = claim("socket", &key) {
        return fds[0];
    }
    // SAFETY: forwarding the caller's arguments.
    let fd = unsafe { real!(socket: fn(c_int, c_int, c_int) -> c_int)(d, t, p) };
    if fd >= 0 {
        record("socket", key, vec![fd]);
    }
    fd
}

fn hex(p: *const u8, n: usize) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller passed `n` readable bytes.
    crate::base::hex::to_hex(unsafe { std::slice::from_raw_parts(p, n) })
}

/// # Safety
/// Same contract as `bind`.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, a: *const libc::sockaddr, l: libc::socklen_t) -> c_int {
    let addr = hex(a as *const u8, l as usize);
    let f = real!(bind: fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int);
    if is_claimed(fd) {
        if with_entry(fd, |e| e.bound.as_deref() == Some(addr.as_str())) == Some(true) {
            return 0;
        }
        // Same kind of socket, other address: this is a new resource.
        with_entry(fd, |e| {
            e.claimed = false;
            e.fresh = true;
            e.bound = None;
            e.listening = false;
        });
        // SAFETY: a fresh socket of the same kind replaces the inherited one
        // under the number the program holds; the old process keeps its own.
        unsafe {
            let mut ty: c_int = 0;
            let mut dom: libc::sockaddr_storage = std::mem::zeroed();
            let mut tl = std::mem::size_of::<c_int>() as libc::socklen_t;
            let mut dl = std::mem::size_of_val(&dom) as libc::socklen_t;
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                &mut ty as *mut c_int as *mut _,
                &mut tl,
            );
            libc::getsockname(fd, &mut dom as *mut _ as *mut libc::sockaddr, &mut dl);
            let fresh =
                real!(socket: fn(c_int, c_int, c_int) -> c_int)(dom.ss_family as c_int, ty, 0);
            libc::dup2(fresh, fd);
            libc::close(fresh);
        }
    }
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { f(fd, a, l) };
    if r == 0 && logs_details(fd) {
        with_entry(fd, |e| e.bound = Some(addr));
    }
    r
}

/// # Safety
/// Same contract as `listen`.
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    if is_claimed(fd) {
        return 0;
    }
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real!(listen: fn(c_int, c_int) -> c_int)(fd, backlog) };
    if r == 0 && logs_details(fd) {
        with_entry(fd, |e| e.listening = true);
    }
    r
}

/// In replay, an inherited epoll instance already holds the old
/// registrations: adding one again is a modification.
///
/// # Safety
/// Same contract as `epoll_ctl`.
#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(
    ep: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut libc::epoll_event,
) -> c_int {
    let f = real!(epoll_ctl: fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { f(ep, op, fd, ev) };
    if r == -1
        && op == libc::EPOLL_CTL_ADD
        && crate::base::libc_calls::errno() == libc::EEXIST
        && is_claimed(ep)
    {
        // SAFETY: same registration as a modification.
        return unsafe { f(ep, libc::EPOLL_CTL_MOD, fd, ev) };
    }
    r
}

macro_rules! simple_resource {
    ($name:ident, $kind:literal, ($($a:ident : $t:ty),*), $key:expr) => {
        /// # Safety
        /// Same contract as the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($a: $t),*) -> c_int {
            let key: String = $key;
            if let Some(fds) = claim($kind, &key) {
                return fds[0];
            }
            // SAFETY: forwarding the caller's arguments.
            let fd = unsafe { real!($name: fn($($t),*) -> c_int)($($a),*) };
            if fd >= 0 {
                record($kind, key, vec![fd]);
            }
            fd
        }
    };
}

simple_resource!(epoll_create, "epoll", (n: c_int), { let _ = n; String::new() });
simple_resource!(epoll_create1, "epoll", (fl: c_int), { let _ = fl; String::new() });
simple_resource!(eventfd, "eventfd", (v: c_uint, fl: c_int), format!("{v},{fl}"));
simple_resource!(timerfd_create, "timerfd", (c: c_int, fl: c_int), format!("{c},{fl}"));
simple_resource!(signalfd, "signalfd", (fd: c_int, m: *const libc::sigset_t, fl: c_int), { let _ = (m, fl); format!("{fd}") });

fn open_key(path: *const c_char, flags: c_int) -> String {
    let keep = flags
        & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NONBLOCK);
    format!("{}|{keep}", crate::program::sections::cstr(path))
}

fn open_common(path: *const c_char, flags: c_int, real: impl FnOnce() -> c_int) -> c_int {
    let key = open_key(path, flags);
    if let Some(fds) = claim("open", &key) {
        return fds[0];
    }
    let fd = real();
    if fd >= 0 {
        record("open", key, vec![fd]);
    }
    fd
}

/// `open` is variadic in C; on x86-64 the mode arrives in the third
/// argument register whether or not it was passed.
///
/// # Safety
/// Same contract as `open`.
#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    let f = real!(open: fn(*const c_char, c_int, c_uint) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    open_common(path, flags, || unsafe { f(path, flags, mode) })
}

/// # Safety
/// Same contract as `open64`.
#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    let f = real!(open64: fn(*const c_char, c_int, c_uint) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    open_common(path, flags, || unsafe { f(path, flags, mode) })
}

fn pair(kind: &str, key: String, out: *mut c_int, real: impl FnOnce() -> c_int) -> c_int {
    if let Some(fds) = claim(kind, &key) {
        // SAFETY: the caller passed an array of two ints.
        unsafe {
            *out = fds[0];
            *out.add(1) = fds[1];
        }
        return 0;
    }
    let r = real();
    if r == 0 {
        // SAFETY: filled by the real call.
        let fds = unsafe { vec![*out, *out.add(1)] };
        record(kind, key, fds);
    }
    r
}

/// # Safety
/// Same contract as `pipe`.
#[no_mangle]
pub unsafe extern "C" fn pipe(out: *mut c_int) -> c_int {
    let f = real!(pipe: fn(*mut c_int) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    pair("pipe", String::new(), out, || unsafe { f(out) })
}

/// # Safety
/// Same contract as `pipe2`.
#[no_mangle]
pub unsafe extern "C" fn pipe2(out: *mut c_int, fl: c_int) -> c_int {
    let f = real!(pipe2: fn(*mut c_int, c_int) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    pair("pipe", String::new(), out, || unsafe { f(out, fl) })
}

/// # Safety
/// Same contract as `socketpair`.
#[no_mangle]
pub unsafe extern "C" fn socketpair(d: c_int, t: c_int, p: c_int, out: *mut c_int) -> c_int {
    let f = real!(socketpair: fn(c_int, c_int, c_int, *mut c_int) -> c_int);
    let key = format!("{d},{},{p}", t & !TYPE_FLAGS);
    // SAFETY: forwarding the caller's arguments.
    pair("socketpair", key, out, || unsafe { f(d, t, p, out) })
}

/// A descriptor being closed: its start-up resource is no longer whole
/// (and gone once all its descriptors are).
fn forget_fd(fd: c_int) {
    if let Ok(mut log) = LOG.lock() {
        for e in log
            .iter_mut()
            .filter(|e| e.open && e.fds.contains(&fd) && !e.closed.contains(&fd))
        {
            e.closed.push(fd);
            e.open = e.fds.iter().any(|f| !e.closed.contains(f));
        }
    }
}

/// A start-up resource closed by the program is no longer one: its number
/// may be reused by anything.
///
/// # Safety
/// Same contract as `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    forget_fd(fd);
    notify_fd_closed(fd);
    // SAFETY: forwarding the caller's argument.
    unsafe { real!(close: fn(c_int) -> c_int)(fd) }
}

/// The path an `AF_UNIX` address (as logged, hex) is bound to.
fn unix_path(bound_hex: &str) -> Option<Vec<u8>> {
    let b = crate::base::hex::from_hex(bound_hex);
    if b.len() < 3 || u16::from_ne_bytes([b[0], b[1]]) != libc::AF_UNIX as u16 || b[2] == 0 {
        return None;
    }
    Some(b[2..].iter().copied().take_while(|&c| c != 0).collect())
}

/// During replay, start-up code that removes a stale socket file before
/// binding (`unlink(path); bind(path)`) would remove the live one the
/// inherited socket is bound to: that `unlink` is skipped.
///
/// # Safety
/// Same contract as `unlink`.
#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    if MODE.load(Ordering::SeqCst) == REPLAYING && !path.is_null() {
        // SAFETY: a NUL-terminated path from the caller.
        let p = unsafe { std::ffi::CStr::from_ptr(path) }.to_bytes();
        let live = LOG.lock().unwrap().iter().any(|e| {
            e.kind == "socket" && e.bound.as_deref().and_then(unix_path).as_deref() == Some(p)
        });
        if live {
            return 0;
        }
    }
    // SAFETY: forwarding the caller's argument.
    unsafe { real!(unlink: fn(*const c_char) -> c_int)(path) }
}

/// `fopen` opens its descriptor inside libc, out of reach of `open`'s
/// wrapper: it is logged itself, and replayed with `fdopen` on the
/// inherited descriptor (which neither truncates nor moves the offset).
fn fopen_common(
    path: *const c_char,
    mode: *const c_char,
    real: impl FnOnce() -> *mut libc::FILE,
) -> *mut libc::FILE {
    let key = format!(
        "{}|{}",
        crate::program::sections::cstr(path),
        crate::program::sections::cstr(mode)
    );
    if let Some(fds) = claim("fopen", &key) {
        // SAFETY: an inherited descriptor of the same file, and the caller's mode.
        let f = unsafe { libc::fdopen(fds[0], mode) };
        if !f.is_null() {
            return f;
        }
    }
    let f = real();
    if !f.is_null() {
        // SAFETY: a stream just opened.
        record("fopen", key, vec![unsafe { libc::fileno(f) }]);
    }
    f
}

/// # Safety
/// Same contract as `fopen`.
#[no_mangle]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    let f = real!(fopen: fn(*const c_char, *const c_char) -> *mut libc::FILE);
    // SAFETY: forwarding the caller's arguments.
    fopen_common(path, mode, || unsafe { f(path, mode) })
}

/// # Safety
/// Same contract as `fopen64`.
#[no_mangle]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    let f = real!(fopen64: fn(*const c_char, *const c_char) -> *mut libc::FILE);
    // SAFETY: forwarding the caller's arguments.
    fopen_common(path, mode, || unsafe { f(path, mode) })
}

/// A stream closed by the program closes its start-up descriptor.
///
/// # Safety
/// Same contract as `fclose`.
#[no_mangle]
pub unsafe extern "C" fn fclose(f: *mut libc::FILE) -> c_int {
    if !f.is_null() {
        // SAFETY: a stream the caller owns.
        let fd = unsafe { libc::fileno(f) };
        forget_fd(fd);
        notify_fd_closed(fd);
    }
    // SAFETY: forwarding the caller's argument.
    unsafe { real!(fclose: fn(*mut libc::FILE) -> c_int)(f) }
}

/// Who must hear that the program closed a descriptor (forks track the
/// numbers a new master inherited, held connections the ones parked
/// threads waited on), registered by `init`: they sit above the log.
static FD_CLOSED_WATCHERS: [std::sync::OnceLock<fn(c_int)>; 4] =
    [const { std::sync::OnceLock::new() }; 4];

/// Registers `f` to hear of every `close` and `fclose` of the program.
pub fn on_fd_closed(f: fn(c_int)) {
    for w in &FD_CLOSED_WATCHERS {
        if w.get() == Some(&f) || w.set(f).is_ok() {
            return;
        }
    }
}

fn notify_fd_closed(fd: c_int) {
    for w in &FD_CLOSED_WATCHERS {
        match w.get() {
            Some(f) => f(fd),
            None => return,
        }
    }
}
