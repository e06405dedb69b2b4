//! The control channel: an abstract Unix socket `@mcr/<pid>` served by a
//! runtime thread the program does not know about. Its descriptors live
//! above [`PRIVATE_FD_BASE`] so the program's own numbering is untouched.
//! Only the process owner and root may talk to it (peer credentials).

use mcr_types::protocol::{control_socket_name, Reply, Request};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

/// Runtime-private descriptors are moved at or above this number.
pub const PRIVATE_FD_BASE: i32 = 900;

/// Moves a descriptor to the private range, close-on-exec.
pub fn to_private_fd(fd: OwnedFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own; the original is dropped.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PRIVATE_FD_BASE) };
    if n < 0 {
        return fd;
    }
    // SAFETY: `n` is a fresh descriptor we now own.
    unsafe { OwnedFd::from_raw_fd(n) }
}

/// The control socket is listening (a new version reports ready only then,
/// so `mcr-ctl` can reach it as soon as the update returns).
pub static BOUND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The listening socket's descriptor (a forked child closes its copy).
pub static LISTENER_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// In a forked child: the parent's control socket is the parent's.
pub fn forget_parent_socket() {
    let fd = LISTENER_FD.swap(-1, std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: our own descriptor, copied by fork; the child never uses it.
        unsafe { libc::close(fd) };
    }
    for slot in &OPEN_CONNS {
        let c = slot.swap(-1, std::sync::atomic::Ordering::SeqCst);
        if c >= 0 {
            // SAFETY: a copy of the parent's control connection.
            unsafe { libc::close(c) };
        }
    }
    BOUND.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// Waits (bounded) until the control socket listens.
pub fn wait_bound(timeout: std::time::Duration) -> bool {
    let t = std::time::Instant::now();
    while !BOUND.load(std::sync::atomic::Ordering::SeqCst) {
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// Starts the control thread (again, in a forked child).
///
/// The thread (and every thread it starts) blocks all signals: a signal
/// sent to the process must reach one of the program's threads, never
/// ours (timedrun's `waitpid` waits for a SIGTERM to interrupt it).
pub fn start() {
    // SAFETY: sigset manipulation on locals; the old mask is restored.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let _ = std::thread::Builder::new()
            .name("mcr-control".into())
            .stack_size(256 * 1024)
            .spawn(serve);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

fn serve() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let Ok(addr) = SocketAddr::from_abstract_name(control_socket_name(pid).as_bytes()) else {
        return;
    };
    let listener = match UnixListener::bind_addr(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcr-rt: control socket @{}: {e}", control_socket_name(pid));
            return;
        }
    };
    let listener = UnixListener::from(to_private_fd(OwnedFd::from(listener)));
    LISTENER_FD.store(listener.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    // A new version will likely need its symbol table in its transfer: read
    // it now, while its start-up runs, and report ready only after (so no
    // descriptor of ours is open behind the program's back by then). An
    // old version reads its own in an update's check phase.
    if crate::restore::RESTORING.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = crate::checkpoint::functions();
    }
    BOUND.store(true, std::sync::atomic::Ordering::SeqCst);
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let conn = UnixStream::from(to_private_fd(OwnedFd::from(conn)));
        if !peer_allowed(&conn) {
            let mut c = &conn;
            let _ = send(
                &mut c,
                &Reply::Error {
                    message: "permission denied: not the process owner".into(),
                },
            );
            continue;
        }
        // A client that sends nothing must not stall the channel.
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        match serde_json::from_str::<Request>(&line) {
            // An update runs on its own thread, so a second one gets its
            // refusal meanwhile; everything else is answered here, where it
            // allocates nothing of a thread's own in the program's heap.
            Ok(Request::Update(u)) => {
                let _ = std::thread::Builder::new()
                    .name("mcr-update".into())
                    .stack_size(256 * 1024)
                    .spawn(move || handle(conn, Ok(Request::Update(u))));
            }
            // A worker frozen for its master's update waits on this
            // connection for the outcome.
            Ok(Request::Freeze(f)) => {
                let _ = std::thread::Builder::new()
                    .name("mcr-freeze".into())
                    .stack_size(256 * 1024)
                    .spawn(move || crate::children::freeze(conn, &f));
            }
            req => handle(conn, req),
        }
    }
}

fn peer_allowed(conn: &UnixStream) -> bool {
    // SAFETY: SO_PEERCRED into a local ucred of the right size.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        if libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        ) != 0
        {
            return false;
        }
        cred.uid == 0 || cred.uid == libc::geteuid()
    }
}

/// Writes one reply line.
pub fn send(w: &mut impl Write, r: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).expect("reply serializes");
    line.push(b'\n');
    w.write_all(&line)
}

/// Control connections being served: a forked child closes its copies
/// (they name the parent's socket and would keep it alive).
static OPEN_CONNS: [std::sync::atomic::AtomicI32; 16] =
    [const { std::sync::atomic::AtomicI32::new(-1) }; 16];

/// Remembers a connection while it is served.
struct Tracked(usize);

impl Tracked {
    fn new(fd: i32) -> Option<Tracked> {
        use std::sync::atomic::Ordering;
        (0..OPEN_CONNS.len())
            .find(|&i| {
                OPEN_CONNS[i]
                    .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            })
            .map(Tracked)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        OPEN_CONNS[self.0].store(-1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn handle(conn: UnixStream, req: Result<Request, serde_json::Error>) {
    let _tracked = Tracked::new(conn.as_raw_fd());
    let _ = conn.set_read_timeout(None);
    let mut out = &conn;
    let reply = match req {
        Err(e) => Reply::Error {
            message: format!("bad request: {e}"),
        },
        Ok(Request::Info) => Reply::Info(crate::report::info()),
        Ok(Request::Heap) => Reply::Heap(crate::report::heap()),
        Ok(Request::Trace) => Reply::Trace(crate::trace::trace()),
        Ok(Request::Freeze(_)) => Reply::Error {
            message: "freeze requests are served on their own thread".into(),
        },
        Ok(Request::Update(u)) => match crate::update::run(&u, &mut out) {
            Ok(r) => {
                let _ = send(&mut out, &Reply::Updated(r));
                crate::update::finish_old_process();
            }
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        },
    };
    let _ = send(&mut out, &reply);
}
