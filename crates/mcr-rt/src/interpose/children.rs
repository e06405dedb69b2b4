//! Processes that start-up forks: a master's workers (nginx, vsftpd, Apache
//! prefork). They are updated with their master.
//!
//! - Old version: a `fork` of the main thread during start-up is logged
//!   (the child's pid, in fork order). The child is a *start-up child*: its
//!   own start-up ends at its first quiescent blocking call (a worker loops
//!   on `read` as often as on `epoll_wait`), where its snapshot is taken.
//! - Update of the master (old side): after the master's checkpoint, each
//!   logged child still alive is asked over its own control socket to
//!   freeze (`Request::Freeze`): it parks its threads and answers with its
//!   checkpoint, then waits on that connection for `commit` (it exits) or
//!   anything else, end of file included (it resumes). The checkpoints go
//!   to the new master in a memfd (`MCR_WORKERS_FD`), by fork order.
//! - New master: its start-up replays; its k-th `fork` is paired with the
//!   old k-th child. The new child is a child of the new master (the
//!   program's own `fork`), dies with it until commit (`PR_SET_PDEATHSIG`),
//!   keeps only the descriptors the replay gave its parent so far (not the
//!   inherited ones nobody claimed yet: client connections, old workers'
//!   channels), and at its first quiescent point receives its counterpart's
//!   globals, reports ready to the new master over a private socketpair and
//!   waits for the new master's `commit`. The new master reports ready to
//!   the old one only when all its children are.
//! - Rollback at any step kills the new master (its children follow it) and
//!   resumes the old master and the old children.
//!
//! What a worker carries: its globals, field by field (what its start-up set
//! and nothing changed since keeps the new start-up's value: a pid, a
//! descriptor), and its heap by value: its heap is not the one its new
//! counterpart inherited from the new master by `fork`, so its checkpoint
//! holds its program start-up objects (paired with the new worker's, same
//! site and order) and the bytes of the objects it built or changed since,
//! plus library memory they point to (`asprintf`); `transfer::run_worker`
//! converts and re-points them. A pointer to an old object nothing carried
//! refuses the update. Descriptors a worker opened after its start-up (its
//! client connections) travel beside its checkpoint: see `worker_fds`.
//!
//! Children forked after start-up (a respawned worker, a per-connection
//! child) are recorded; one that stands in for a gone start-up worker
//! refuses the update (it would serve the old version beside the new
//! worker made for its place), the others finish on the old version.

use crate::base::libc_calls::real;
use crate::program::globals::SavedGlobal;
use crate::{
    heap, interpose::startup_log, interpose::worker_fds, program::snapshot, program::threads,
};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Environment variable naming the memfd of the old workers' checkpoints.
pub const WORKERS_FD_ENV: &str = "MCR_WORKERS_FD";

/// This process was forked by its parent's start-up.
static STARTUP_CHILD: AtomicBool = AtomicBool::new(false);
/// The pid of the process that forked it.
static PARENT: AtomicI32 = AtomicI32::new(0);
/// This process was forked after its parent's start-up (a per-connection
/// or per-session process): the pid that forked it, else 0.
static LATE_CHILD_OF: AtomicI32 = AtomicI32::new(0);

/// The pid that forked this process after its own start-up, if it was.
pub fn forked_after_startup_by() -> Option<i32> {
    Some(LATE_CHILD_OF.load(Ordering::SeqCst)).filter(|&p| p != 0)
}

/// A worker's checkpoint: its globals, and its heap by value (its heap is
/// not the one its new counterpart inherits from the new master).
#[derive(Serialize, Deserialize)]
pub struct ChildState {
    pub pid: u32,
    pub globals: Vec<SavedGlobal>,
    /// Program objects live at the end of its start-up (with whether they
    /// still hold their start-up bytes): paired with the new worker's.
    #[serde(default)]
    pub startup_objects: Vec<snapshot::StartupObject>,
    /// Program objects it built or changed since its start-up.
    #[serde(default)]
    pub objects: Vec<CarriedObject>,
    /// Descriptors it opened since its start-up (sent beside this state).
    #[serde(default)]
    pub runtime_fds: worker_fds::RuntimeFds,
    /// Every object live in its heap (address, size), by address: a
    /// pointer to none of them was left dangling by the program itself (a
    /// free connection slot's stale `pool`), not a reference to carry.
    #[serde(default)]
    pub live: Vec<(u64, u64)>,
    /// Connections its parked threads wait on (an Apache-prefork worker
    /// reads one connection at a time): see `held_connections`.
    #[serde(default)]
    pub held: Vec<crate::interpose::held_connections::Held>,
}

impl ChildState {
    /// Whether `p` points into an object live in the old worker's heap.
    pub fn points_to_live(&self, p: u64) -> bool {
        let i = self.live.partition_point(|&(a, _)| a <= p);
        i > 0 && {
            let (a, size) = self.live[i - 1];
            p < a + size.max(1)
        }
    }
}

/// What the new master receives of one old worker: its checkpoint and, at
/// private numbers inherited by `exec`, its run-time descriptors (in
/// `ChildState::runtime_fds` order).
#[derive(Serialize, Deserialize)]
pub struct OldWorker {
    pub state: String,
    #[serde(default)]
    pub fds: Vec<i32>,
}

/// A heap object of an old worker, by value.
#[derive(Serialize, Deserialize)]
pub struct CarriedObject {
    pub addr: u64,
    pub size: u64,
    /// Its site descriptor's address in the old binary.
    pub site: u64,
    /// Hex of its bytes.
    pub bytes: String,
}

/// Whether this process is a worker its master forked at start-up. A child
/// whose parent is gone by now is a daemon's fork continuing its parent's
/// work: it is the master.
pub fn is_startup_child() -> bool {
    if !STARTUP_CHILD.load(Ordering::SeqCst) {
        return false;
    }
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != PARENT.load(Ordering::SeqCst) {
        STARTUP_CHILD.store(false, Ordering::SeqCst);
        return false;
    }
    true
}

/// The blocking call `kind` ends a start-up child's start-up: any
/// quiescent call does, not only event waits.
pub fn startup_pending(kind: crate::program::threads::CallKind) -> bool {
    STARTUP_CHILD.load(Ordering::SeqCst)
        && !startup_log::is_startup_over()
        && is_startup_child()
        && match kind {
            crate::program::threads::CallKind::Data(fd) => crate::base::descriptor::can_block(fd),
            _ => true,
        }
}

/// `fork`, logged during start-up, paired during replay.
///
/// # Safety
/// Same contract as `fork`.
#[no_mangle]
pub unsafe extern "C" fn fork() -> libc::pid_t {
    let f = real!(fork: fn() -> libc::pid_t);
    let on_main = threads::current().is_some_and(|r| r.is_main);
    // Only forks the old start-up logged are paired: a daemon's fork (its
    // parent exits, and its log went with it) runs as it always did.
    if on_main
        && startup_log::is_replaying()
        && FORKS_REPLAYED.load(Ordering::SeqCst) < OLD_STATES.lock().unwrap().len()
    {
        // SAFETY: forwarding to the real fork.
        return unsafe { fork_replayed(f) };
    }
    let logged = on_main && startup_log::is_recording() && !startup_log::is_startup_over();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the real fork.
    let pid = unsafe { f() };
    if logged && pid == 0 {
        PARENT.store(parent, Ordering::SeqCst);
        STARTUP_CHILD.store(true, Ordering::SeqCst);
    } else if pid == 0 && startup_log::is_startup_over() {
        LATE_CHILD_OF.store(parent, Ordering::SeqCst);
    } else if logged && pid > 0 {
        startup_log::record_fork(pid);
    } else if on_main && pid > 0 && startup_log::is_startup_over() {
        if let Ok(mut v) = RUNTIME_FORKS.lock() {
            // Pruned (a /proc read per child) only when the list has
            // doubled since: a server forking per connection pays O(1)
            // reads per fork, not one per live child.
            if v.len() >= 64 && v.len() >= 2 * RUNTIME_FORKS_PRUNED.load(Ordering::Relaxed) {
                v.retain(|&p| is_live_child(p));
                RUNTIME_FORKS_PRUNED.store(v.len(), Ordering::Relaxed);
            }
            v.push(pid);
        }
    }
    pid
}

/// Children the main thread forked after start-up (a respawned worker, a
/// per-connection child), oldest first; dead ones are pruned now and then
/// (and left out at freeze).
static RUNTIME_FORKS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Its length after the last pruning.
static RUNTIME_FORKS_PRUNED: AtomicUsize = AtomicUsize::new(0);

// ---- new master: replayed forks ----

/// A child the new master's start-up forked, with its private channel.
pub struct NewChild {
    pub pid: i32,
    pub link: OwnedFd,
    pub paired: bool,
}

static NEW_CHILDREN: Mutex<Vec<NewChild>> = Mutex::new(Vec::new());
static FORKS_REPLAYED: AtomicUsize = AtomicUsize::new(0);
/// The old workers' checkpoints, by fork order (None: that worker was gone).
static OLD_STATES: Mutex<Vec<Option<OldWorker>>> = Mutex::new(Vec::new());
/// Descriptors this process inherited from the old version (below the
/// runtime's range), while replay runs; numbers the program closes leave.
static INHERITED: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static TRACK_INHERITED: AtomicBool = AtomicBool::new(false);

/// The program closed `fd`: if it was inherited, the number is no longer.
pub fn fd_closed(fd: i32) {
    if TRACK_INHERITED.load(Ordering::Relaxed) {
        if let Ok(mut v) = INHERITED.lock() {
            v.retain(|&x| x != fd);
        }
    }
}

pub fn raw_close(fd: i32) {
    // SAFETY: the close system call, bypassing the start-up log's wrapper.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// In the child: what it must hold of its parent's restore.
pub struct ChildRestore {
    pub link: OwnedFd,
    pub old: Option<ChildState>,
    /// The old worker's run-time descriptors, at private numbers.
    pub fds: Vec<OwnedFd>,
}

static MY_RESTORE: Mutex<Option<ChildRestore>> = Mutex::new(None);

/// This process was forked by a replaying master and has not received its
/// state yet (it dies with that master until commit).
pub(crate) fn awaiting_commit() -> bool {
    MY_RESTORE.lock().is_ok_and(|r| r.is_some())
}

unsafe fn fork_replayed(f: unsafe extern "C" fn() -> libc::pid_t) -> libc::pid_t {
    let k = FORKS_REPLAYED.fetch_add(1, Ordering::SeqCst);
    let mut sv = [-1i32; 2];
    // SAFETY: the socketpair system call into a local array (not the
    // start-up log's `socketpair`, which would replay it).
    let r = unsafe {
        libc::syscall(
            libc::SYS_socketpair,
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    if r != 0 {
        crate::base::update_link::fail("cannot make a channel to a replayed worker");
    }
    // SAFETY: fresh descriptors we own.
    let (mine, theirs) = unsafe {
        (
            crate::base::private_fd::to_private_fd(OwnedFd::from_raw_fd(sv[0])),
            crate::base::private_fd::to_private_fd(OwnedFd::from_raw_fd(sv[1])),
        )
    };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the real fork.
    let pid = unsafe { f() };
    if pid < 0 {
        return pid;
    }
    if pid > 0 {
        drop(theirs);
        startup_log::replay_fork(pid);
        let mut states = OLD_STATES.lock().unwrap();
        let paired = states.get(k).is_some_and(|s| s.is_some());
        // Worker k's connections are its new counterpart's now.
        if let Some(Some(w)) = states.get_mut(k) {
            for fd in w.fds.drain(..) {
                raw_close(fd);
            }
        }
        drop(states);
        NEW_CHILDREN.lock().unwrap().push(NewChild {
            pid,
            link: mine,
            paired,
        });
        return pid;
    }
    // The child. It lives only as long as the new master until commit.
    drop(mine);
    // SAFETY: prctl and getppid on ourselves.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(70);
        }
    }
    PARENT.store(parent, Ordering::SeqCst);
    STARTUP_CHILD.store(true, Ordering::SeqCst);
    startup_log::stop_replay();
    crate::base::update_link::forget_in_child();
    // A child that execs a helper must not hand it the master's restore.
    for v in [
        crate::base::update_link::RESTORE_FD_ENV,
        crate::base::update_link::STATUS_FD_ENV,
        crate::base::update_link::COMMIT_FD_ENV,
        heap::HEAP_FD_ENV,
        WORKERS_FD_ENV,
    ] {
        std::env::remove_var(v);
    }
    // The master's channels to its other new children are not ours.
    for c in NEW_CHILDREN.lock().unwrap().drain(..) {
        drop(c.link);
    }
    // Inherited descriptors the replay has not handed out are the old
    // version's live state (client connections, channels to old workers):
    // the old child never had them.
    let claimed = startup_log::claimed_fds();
    for &fd in INHERITED.lock().unwrap().iter() {
        if fd > 2 && !claimed.contains(&fd) {
            raw_close(fd);
        }
    }
    TRACK_INHERITED.store(false, Ordering::SeqCst);
    let mut states = OLD_STATES.lock().unwrap();
    let mine = states.get_mut(k).and_then(|s| s.take());
    // The other old workers' connections are not this one's.
    for w in states.drain(..).flatten() {
        for fd in w.fds {
            raw_close(fd);
        }
    }
    drop(states);
    // SAFETY: the descriptors the old master handed for this worker.
    let fds = mine.as_ref().map_or_else(Vec::new, |w| {
        w.fds
            .iter()
            // SAFETY: as above: each number is ours alone from here.
            .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect()
    });
    let old = mine.and_then(|w| serde_json::from_str::<ChildState>(&w.state).ok());
    *MY_RESTORE.lock().unwrap() = Some(ChildRestore {
        link: theirs,
        old,
        fds,
    });
    0
}

/// A start-up child reached its first quiescent point: its start-up is
/// over (snapshot); a new one receives its counterpart's state here. True
/// when state was transferred.
///
/// Not "its first call that would block", tried this session for nginx
/// (whose worker waits on a ready epoll instance to probe `EPOLLRDHUP`
/// before closing its channels): a request already waiting at the
/// worker's first read was then served before the snapshot, its effects
/// taken for start-up state and lost in the update (drop_privileges'
/// worker test, under load). See docs/decisions.md.
pub fn reached_quiescent_point() -> bool {
    if !startup_log::end_startup() {
        return false;
    }
    snapshot::take();
    worker_fds::note_startup_end();
    let Some(r) = MY_RESTORE.lock().unwrap().take() else {
        return false;
    };
    match ON_WORKER_RESTORE.get() {
        Some(f) => f(r),
        None => crate::base::update_link::fail("a replayed worker has no restore to run"),
    }
    true
}

/// What a new worker runs at its first quiescent point with its
/// counterpart's state, registered by the new version's side (which owns
/// the restore) before the new master's start-up forks.
static ON_WORKER_RESTORE: std::sync::OnceLock<fn(ChildRestore)> = std::sync::OnceLock::new();

/// Registers the new worker's restore (once).
pub fn on_worker_restore(f: fn(ChildRestore)) {
    let _ = ON_WORKER_RESTORE.set(f);
}

pub fn line_to(fd: &OwnedFd, line: &str) {
    let mut l = line.as_bytes().to_vec();
    l.push(b'\n');
    // SAFETY: writing to our own channel.
    unsafe { libc::write(fd.as_raw_fd(), l.as_ptr() as *const libc::c_void, l.len()) };
}

/// Reads one line from a channel, waiting at most until `deadline`.
pub fn line_from(fd: &OwnedFd, deadline: Option<Instant>) -> Option<String> {
    let mut out = Vec::new();
    loop {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one valid descriptor.
            let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(60_000) as i32) };
            if n == 0 && left.is_zero() {
                return None;
            }
            if n <= 0 {
                continue;
            }
        }
        let mut b = 0u8;
        // SAFETY: one byte into a local.
        let n = unsafe { libc::read(fd.as_raw_fd(), &mut b as *mut u8 as *mut libc::c_void, 1) };
        if n < 0 && crate::base::libc_calls::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return None;
        }
        if b == b'\n' {
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        out.push(b);
    }
}

/// The new master's channels to the children its start-up forked.
pub fn new_children() -> std::sync::MutexGuard<'static, Vec<NewChild>> {
    NEW_CHILDREN.lock().unwrap()
}

/// New master: the old workers' checkpoints by fork order, and the
/// descriptors it inherited (numbers the program closes leave the list).
pub fn expect_old_workers(old: Vec<Option<OldWorker>>, inherited: Vec<i32>) {
    *INHERITED.lock().unwrap() = inherited;
    TRACK_INHERITED.store(true, Ordering::SeqCst);
    *OLD_STATES.lock().unwrap() = old;
}

/// New master, committed: the old workers no new fork was paired with
/// (their connections end), and inherited descriptors are no longer tracked.
pub fn take_unpaired_old_workers() -> Vec<OldWorker> {
    TRACK_INHERITED.store(false, Ordering::SeqCst);
    INHERITED.lock().unwrap().clear();
    OLD_STATES.lock().unwrap().drain(..).flatten().collect()
}

/// Children the main thread forked after start-up, oldest first.
pub fn runtime_forks() -> Vec<i32> {
    RUNTIME_FORKS.lock().unwrap().clone()
}

/// Whether `pid` runs another program than this one (a helper the worker
/// `exec`ed: not code of ours, not a worker we update).
pub fn runs_other_program(pid: i32) -> bool {
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe"));
    let ours = std::fs::read_link("/proc/self/exe");
    matches!((theirs, ours), (Ok(t), Ok(o)) if t != o)
}

/// Whether `pid` is a live child of this process.
pub fn is_live_child(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
        return false;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    f.first().is_some_and(|s| *s != "Z" && *s != "X")
        && f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(me)
}
