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

use crate::blocking_calls::real;
use crate::checkpoint::SavedGlobal;
use crate::control::send;
use crate::{heap, quiesce, restore, snapshot, startup_log, threads, worker_fds};
use mcr_types::protocol::{control_socket_name, FreezeRequest, Frozen, Reply, Request};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    pub held: Vec<crate::held_connections::Held>,
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
struct OldWorker {
    state: String,
    #[serde(default)]
    fds: Vec<i32>,
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
pub fn startup_pending(kind: quiesce::CallKind) -> bool {
    STARTUP_CHILD.load(Ordering::SeqCst)
        && !startup_log::is_startup_over()
        && is_startup_child()
        && match kind {
            quiesce::CallKind::Data(fd) => quiesce::fd_can_block(fd),
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
struct NewChild {
    pid: i32,
    link: OwnedFd,
    paired: bool,
}

static NEW_CHILDREN: Mutex<Vec<NewChild>> = Mutex::new(Vec::new());
static FORKS_REPLAYED: AtomicUsize = AtomicUsize::new(0);
/// The old workers' checkpoints, by fork order (None: that worker was gone).
static OLD_STATES: Mutex<Vec<Option<OldWorker>>> = Mutex::new(Vec::new());
/// Descriptors this process inherited from the old version (below the
/// runtime's range), while replay runs; numbers the program closes leave.
static INHERITED: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static TRACK_INHERITED: AtomicBool = AtomicBool::new(false);

/// New master: reads the old workers' checkpoints and notes the inherited
/// descriptors (called by the restore at initialisation).
pub fn init_from_env() {
    *INHERITED.lock().unwrap() = crate::update::program_fds();
    TRACK_INHERITED.store(true, Ordering::SeqCst);
    let Some(fd) = std::env::var(WORKERS_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: the memfd the old version handed us for this.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    *OLD_STATES.lock().unwrap() = serde_json::from_str(&s).unwrap_or_default();
}

/// The program closed `fd`: if it was inherited, the number is no longer.
pub fn fd_closed(fd: i32) {
    if TRACK_INHERITED.load(Ordering::Relaxed) {
        if let Ok(mut v) = INHERITED.lock() {
            v.retain(|&x| x != fd);
        }
    }
}

fn raw_close(fd: i32) {
    // SAFETY: the close system call, bypassing the start-up log's wrapper.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// In the child: what it must hold of its parent's restore.
struct ChildRestore {
    link: OwnedFd,
    old: Option<ChildState>,
    /// The old worker's run-time descriptors, at private numbers.
    fds: Vec<OwnedFd>,
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
        restore::fail("cannot make a channel to a replayed worker");
    }
    // SAFETY: fresh descriptors we own.
    let (mine, theirs) = unsafe {
        (
            crate::control::to_private_fd(OwnedFd::from_raw_fd(sv[0])),
            crate::control::to_private_fd(OwnedFd::from_raw_fd(sv[1])),
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
    restore::forget_channels_in_child();
    // A child that execs a helper must not hand it the master's restore.
    for v in [
        "MCR_RESTORE_FD",
        "MCR_STATUS_FD",
        "MCR_COMMIT_FD",
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

extern "C" {
    fn free(p: *mut u8);
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
    restore_child(r);
    true
}

fn line_to(fd: &OwnedFd, line: &str) {
    let mut l = line.as_bytes().to_vec();
    l.push(b'\n');
    // SAFETY: writing to our own channel.
    unsafe { libc::write(fd.as_raw_fd(), l.as_ptr() as *const libc::c_void, l.len()) };
}

/// Reads one line from a channel, waiting at most until `deadline`.
fn line_from(fd: &OwnedFd, deadline: Option<Instant>) -> Option<String> {
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
        if n < 0 && quiesce::errno() == libc::EINTR {
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

fn restore_child(mut r: ChildRestore) {
    let fail = |msg: &str| -> ! {
        line_to(&r.link, &format!("error {msg}"));
        eprintln!("mcr-rt: live update failed in a new worker: {msg}");
        // SAFETY: leave at once; the new master fails and the old version resumes.
        unsafe { libc::_exit(70) }
    };
    if let Err(e) = restore::wait_threads_parked(Duration::from_secs(5)) {
        fail(&e);
    }
    if crate::update::fault("worker") {
        fail("MCR_FAULT=worker");
    }
    // Its control thread opens files (its symbol table) and sockets at
    // low numbers for a moment: done once it listens, before the old
    // worker's descriptors take their numbers.
    if !crate::control::wait_bound(Duration::from_secs(2)) {
        fail("the control socket of the new worker did not come up");
    }
    let new_startup = snapshot::live_objects(true);
    let mut fds_installed = 0;
    let carried = match &r.old {
        Some(old) => {
            let mut cookies: Vec<u64> = old
                .runtime_fds
                .registrations
                .iter()
                .map(|g| g.data)
                .collect();
            let objects = match restore::with_state(|s| {
                crate::transfer::run_worker(s, old, &new_startup, &mut cookies)
            }) {
                Some(Ok(rep)) => rep.globals + rep.objects_precise + rep.objects_conservative,
                Some(Err(e)) => fail(&format!("from old worker {}: {e}", old.pid)),
                None => fail("the new master's restore state is gone"),
            };
            let held = std::mem::take(&mut r.fds);
            match worker_fds::install(&old.runtime_fds, held, &cookies) {
                Ok(n) => fds_installed = n,
                Err(e) => fail(&format!("from old worker {}: {e}", old.pid)),
            }
            // Its connections are back under their numbers: each one an
            // old thread was parked on is served, led, or refused.
            if let Err(e) = crate::held_connections::settle(&old.held, &[]) {
                fail(&format!("from old worker {}: {e}", old.pid));
            }
            objects
        }
        None => 0,
    };
    // The new master's heap came with the fork: its inherited objects are
    // the old master's, nothing of this process points to them.
    let mut old_objects = Vec::new();
    heap::for_each_live(|o| {
        if heap::is_inherited(o.addr) {
            old_objects.push(o.addr);
        }
    });
    for a in old_objects {
        // SAFETY: a live object of the old master nothing here refers to.
        unsafe { free(a as *mut u8) };
    }
    heap::clear_inherited();
    line_to(&r.link, &format!("ready {carried} {fds_installed}"));
    if line_from(&r.link, None).as_deref() != Some("commit") {
        // SAFETY: the update was not committed: this process must not run.
        unsafe { libc::_exit(70) };
    }
    // SAFETY: prctl on ourselves; the program's own setting is left alone.
    unsafe {
        let mut sig: libc::c_int = 0;
        libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int);
        if sig == libc::SIGKILL {
            libc::prctl(libc::PR_SET_PDEATHSIG, 0);
        }
    }
    drop(r);
    restore::finish_in_child();
    quiesce::resume();
}

/// New master, after its own transfer: every child it forked must report
/// ready. Returns how many were paired with an old worker, and how many
/// descriptors of old workers they took over.
pub fn wait_ready(timeout: Duration) -> Result<(u64, u64), String> {
    let deadline = Instant::now() + timeout;
    let list = NEW_CHILDREN.lock().unwrap();
    let mut fds = 0;
    for c in list.iter() {
        match line_from(&c.link, Some(deadline)) {
            Some(l) if l.starts_with("ready") => {
                fds += l
                    .split_whitespace()
                    .nth(2)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Some(l) => {
                return Err(format!(
                    "worker {}: {}",
                    c.pid,
                    l.strip_prefix("error ").unwrap_or(&l)
                ))
            }
            None if Instant::now() >= deadline => {
                return Err(format!(
                    "worker {} did not reach a quiescent point within {} s",
                    c.pid,
                    timeout.as_secs()
                ))
            }
            // Its channel closed on exec: a helper program, not a worker.
            None if runs_other_program(c.pid) => {}
            None => return Err(format!("worker {} exited during its restore", c.pid)),
        }
    }
    Ok((list.iter().filter(|c| c.paired).count() as u64, fds))
}

/// New master, committed: its children run.
pub fn commit_new() {
    for c in NEW_CHILDREN.lock().unwrap().drain(..) {
        line_to(&c.link, "commit");
    }
    // Connections of old workers no new fork was paired with end here.
    for w in OLD_STATES.lock().unwrap().drain(..).flatten() {
        for fd in w.fds {
            raw_close(fd);
        }
    }
    TRACK_INHERITED.store(false, Ordering::SeqCst);
    INHERITED.lock().unwrap().clear();
}

// ---- old worker: freeze ----

/// This worker's heap for its checkpoint: its program start-up objects,
/// and by value the program objects (from instrumented sites) it built or
/// changed since. A library's own memory is not carried: the new worker's
/// libraries rebuilt theirs. Also every live object (address, size), by
/// address, from the same walk (`ChildState::live`).
fn heap_state() -> (
    Vec<snapshot::StartupObject>,
    Vec<CarriedObject>,
    Vec<(u64, u64)>,
) {
    let at_startup: Vec<snapshot::StartupObject> = snapshot::objects()
        .into_iter()
        .filter(|o| o.site != 0)
        .collect();
    let unchanged: std::collections::HashSet<u64> = at_startup
        .iter()
        .filter(|o| o.unchanged)
        .map(|o| o.addr)
        .collect();
    let by_value = |o: &heap::Object| {
        // SAFETY: a live object of `size` bytes, its threads parked.
        let b = unsafe { std::slice::from_raw_parts(o.addr as *const u8, o.size) };
        CarriedObject {
            addr: o.addr as u64,
            size: o.size as u64,
            site: o.site as u64,
            bytes: crate::checkpoint::to_hex(b),
        }
    };
    let mut carried = Vec::new();
    let mut live = Vec::new();
    heap::for_each_live(|o| {
        live.push((o.addr as u64, o.size as u64));
        if !o.site.is_null() && !unchanged.contains(&(o.addr as u64)) {
            carried.push(by_value(&o));
        }
    });
    live.sort_unstable();
    // Memory a library allocated for the program (asprintf, getline) that
    // the carried state points to, conservatively: carried too.
    let mut seen: std::collections::HashSet<u64> = carried.iter().map(|c| c.addr).collect();
    let mut work: Vec<(u64, u64)> = carried.iter().map(|c| (c.addr, c.size)).collect();
    work.extend(
        crate::globals::all()
            .filter(|g| snapshot::global_value(g.name).as_deref() != Some(crate::globals::bytes(g)))
            .map(|g| (g.addr as u64, g.size as u64)),
    );
    while let Some((a, len)) = work.pop() {
        let mut w = a.next_multiple_of(8);
        while w + 8 <= a + len {
            // SAFETY: an aligned word inside a live object or global.
            let p = unsafe { (w as *const u64).read() };
            w += 8;
            let Some(o) = (p >= 4096).then(|| heap::find(p as usize)).flatten() else {
                continue;
            };
            if o.site.is_null() && seen.insert(o.addr as u64) {
                carried.push(by_value(&o));
                work.push((o.addr as u64, o.size as u64));
            }
        }
    }
    (at_startup, carried, live)
}

/// Serves `Request::Freeze` on its own thread (it waits for the outcome).
pub fn freeze(conn: UnixStream, req: &FreezeRequest) {
    let mut out = &conn;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let frozen = (|| {
        if !is_startup_child() {
            return Err(format!(
                "refused: process {pid} is not a worker forked at start-up"
            ));
        }
        if !startup_log::is_startup_over() {
            return Err(format!(
                "refused: worker {pid} has not reached its first quiescent point yet"
            ));
        }
        quiesce::quiesce(Duration::from_millis(req.timeout_ms), None).map_err(|e| {
            format!(
                "rolled back: worker {pid}: quiescence timed out after {} ms; threads not at a quiescent point: {:?}",
                req.timeout_ms, e.busy
            )
        })?;
        let (startup_objects, objects, live) = heap_state();
        let st = ChildState {
            pid,
            globals: crate::checkpoint::saved_globals(),
            startup_objects,
            objects,
            runtime_fds: worker_fds::collect(&req.master_files),
            live,
            held: crate::held_connections::held(),
        };
        let fds: Vec<i32> = st.runtime_fds.fds.iter().map(|f| f.number).collect();
        // The new workers share this worker's files as the new master
        // shares the old one's: a rollback gives them back.
        let shared = crate::shared_files::save(
            &crate::update::program_fds(),
            &crate::shared_files::startup_fds(),
        );
        Ok((serde_json::to_string(&st).unwrap_or_default(), fds, shared))
    })();
    let (state, fds, shared) = match frozen {
        Ok(s) => s,
        Err(message) => {
            let _ = send(&mut out, &Reply::Error { message });
            return;
        }
    };
    let count = fds.len() as u32;
    if send(
        &mut out,
        &Reply::Frozen(Frozen {
            pid,
            state,
            fds: count,
        }),
    )
    .is_err()
    {
        resume_as_before(&shared);
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(300)));
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    // The master asks for the connections once it has read the state (so
    // no descriptor rides on bytes it reads as text).
    if count > 0 {
        let _ = reader.read_line(&mut line);
        if line.trim() != "fds" || worker_fds::send(conn.as_fd(), &fds).is_err() {
            resume_as_before(&shared);
            return;
        }
        line.clear();
    }
    // Committed: leave (the new worker serves). Anything else, the master
    // gone included: resume.
    let _ = reader.read_line(&mut line);
    if line.trim() == "commit" {
        crate::update::finish_old_process();
    }
    resume_as_before(&shared);
}

/// A frozen worker resumes after a rollback: the master has killed the new
/// master before it says so (the new workers die with it), so the files
/// they shared with this worker are given back first.
fn resume_as_before(shared: &crate::shared_files::Saved) {
    let done = shared.restore();
    // SAFETY: getpid has no preconditions.
    done.log(&format!("worker {}", unsafe { libc::getpid() }));
    for e in &done.errors {
        eprintln!("mcr-rt: rollback: left as the new version made it: {e}");
    }
    quiesce::resume();
}

// ---- old master: freezing its workers ----

struct FrozenWorker {
    conn: UnixStream,
    state: String,
    /// Its run-time descriptors, at private numbers.
    fds: Vec<OwnedFd>,
}

/// The old workers frozen for an update, by fork order. Dropped without
/// [`FrozenWorkers::commit`], they resume.
pub struct FrozenWorkers {
    list: Vec<Option<FrozenWorker>>,
    /// Live children forked after start-up, not updated.
    pub children_left: u64,
}

impl FrozenWorkers {
    pub fn count(&self) -> u64 {
        self.list.iter().flatten().count() as u64
    }

    /// The checkpoints in a memfd for the new master (None: no workers).
    pub fn write_states(&self) -> std::io::Result<Option<OwnedFd>> {
        if self.list.is_empty() {
            return Ok(None);
        }
        let v: Vec<Option<OldWorker>> = self
            .list
            .iter()
            .map(|w| {
                w.as_ref().map(|w| OldWorker {
                    state: w.state.clone(),
                    fds: w.fds.iter().map(|f| f.as_raw_fd()).collect(),
                })
            })
            .collect();
        let fd = crate::checkpoint::memfd("mcr-workers")?;
        let mut f = std::fs::File::from(fd.try_clone()?);
        f.write_all(&serde_json::to_vec(&v).map_err(std::io::Error::other)?)?;
        use std::io::Seek;
        f.rewind()?;
        Ok(Some(fd))
    }

    /// The old workers' run-time descriptors, which the new master must
    /// inherit under these numbers.
    pub fn handed_fds(&self) -> Vec<i32> {
        self.list
            .iter()
            .flatten()
            .flat_map(|w| w.fds.iter().map(|f| f.as_raw_fd()))
            .collect()
    }

    /// The new version serves: the old workers leave.
    pub fn commit(mut self) {
        for w in self.list.drain(..).flatten() {
            let _ = (&w.conn).write_all(b"commit\n");
        }
    }
}

impl Drop for FrozenWorkers {
    fn drop(&mut self) {
        for w in self.list.drain(..).flatten() {
            let _ = (&w.conn).write_all(b"resume\n");
        }
    }
}

/// Whether `pid` runs another program than this one (a helper the worker
/// `exec`ed: not code of ours, not a worker we update).
fn runs_other_program(pid: i32) -> bool {
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe"));
    let ours = std::fs::read_link("/proc/self/exe");
    matches!((theirs, ours), (Ok(t), Ok(o)) if t != o)
}

/// Whether `pid` is a live child of this process.
fn is_live_child(pid: i32) -> bool {
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

/// Freezes every worker start-up forked that still runs. On failure the
/// ones already frozen resume.
pub fn freeze_all(timeout: Duration) -> Result<FrozenWorkers, String> {
    let mut out = FrozenWorkers {
        list: Vec::new(),
        children_left: 0,
    };
    let startup = startup_log::forks();
    // A pid listed twice (a dead child's, reused) counts once.
    let mut seen = std::collections::HashSet::new();
    let later: Vec<i32> = RUNTIME_FORKS
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&p| seen.insert(p) && is_live_child(p) && !runs_other_program(p))
        .collect();
    // A worker start-up forked is gone and one forked since runs this
    // program: most likely its respawned successor. The new master's
    // start-up makes a fresh worker for that place, and the successor
    // would go on serving the old version beside it.
    if let (Some(&gone), Some(&since)) =
        (startup.iter().find(|&&p| !is_live_child(p)), later.first())
    {
        return Err(format!(
            "refused: worker {gone}, forked at start-up, is gone and process {since}, forked since, runs the same program (a respawned worker?); a worker forked after start-up is not carried by an update, and it would go on serving the old version"
        ));
    }
    // Otherwise they are per-connection children: they finish as they are.
    out.children_left = later.len() as u64;
    let master_files = worker_fds::files_held();
    for pid in startup {
        if !is_live_child(pid) || runs_other_program(pid) {
            out.list.push(None);
            continue;
        }
        let addr = SocketAddr::from_abstract_name(control_socket_name(pid as u32).as_bytes())
            .map_err(|e| e.to_string())?;
        let conn = UnixStream::connect_addr(&addr)
            .map_err(|e| format!("worker {pid}: no control socket: {e}"))?;
        let conn = UnixStream::from(crate::control::to_private_fd(OwnedFd::from(conn)));
        let _ = conn.set_read_timeout(Some(timeout + Duration::from_secs(5)));
        let mut req = serde_json::to_vec(&Request::Freeze(FreezeRequest {
            timeout_ms: timeout.as_millis() as u64,
            master_files: master_files.clone(),
        }))
        .expect("request serializes");
        req.push(b'\n');
        (&conn)
            .write_all(&req)
            .map_err(|e| format!("worker {pid}: {e}"))?;
        // Byte by byte up to the newline: the descriptors asked for next
        // must not be read as text.
        let line =
            read_line_exact(&conn).map_err(|e| format!("worker {pid} did not answer: {e}"))?;
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Frozen(f)) => {
                let mut w = FrozenWorker {
                    conn,
                    state: f.state,
                    fds: Vec::new(),
                };
                if f.fds > 0 {
                    (&w.conn)
                        .write_all(b"fds\n")
                        .and_then(|_| worker_fds::receive(w.conn.as_fd(), f.fds as usize))
                        .map(|fds| w.fds = fds)
                        .map_err(|e| format!("worker {pid}: its connections: {e}"))?;
                }
                out.list.push(Some(w));
            }
            Ok(Reply::Error { message }) => return Err(message),
            _ => return Err(format!("worker {pid}: unexpected answer {line:?}")),
        }
    }
    Ok(out)
}

/// One line from `conn`, without reading past its newline.
fn read_line_exact(conn: &UnixStream) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Peek what is there, then take exactly up to the newline.
        // SAFETY: recv into a local buffer of that length.
        let n = unsafe {
            libc::recv(
                conn.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_PEEK,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = n as usize;
        let take = buf[..n]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(n, |i| i + 1);
        let mut got = vec![0u8; take];
        (&*conn).read_exact(&mut got)?;
        out.extend_from_slice(&got);
        if out.last() == Some(&b'\n') {
            out.pop();
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
    }
}
