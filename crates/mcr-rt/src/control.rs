//! The control channel: an abstract Unix socket `@mcr/<pid>` served by a
//! runtime thread the program does not know about. Its descriptors live
//! above [`PRIVATE_FD_BASE`] so the program's own numbering is untouched.
//! Only the process owner and root may talk to it (peer credentials).

use crate::base::control_bound;
use crate::base::private_fd::{raw_to_private, to_private_fd};
use mcr_types::protocol::{control_socket_name, Reply, Request};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

/// The pid whose name the listening socket carries (0: not bound yet).
static BOUND_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// In a forked child: the parent's control socket is the parent's.
///
/// Every descriptor that carries the parent's name is closed: the listener
/// and any connection being accepted or served when `fork` ran (an accepted
/// abstract socket shows the listener's name and keeps `@mcr/<parent>`
/// listed after the parent exits). Sweeping by name covers every window
/// between `accept`, the move above fd 900 and the end of a request, which
/// bookkeeping per connection cannot. Runs in the fork child handler: raw
/// system calls only, no allocation.
pub fn forget_parent_socket() {
    let parent = BOUND_PID.swap(0, std::sync::atomic::Ordering::SeqCst);
    control_bound::BOUND.store(false, std::sync::atomic::Ordering::SeqCst);
    // The parent's listener number is not the runtime's here (swept below).
    crate::base::private_fd::release(LISTENER_FD.swap(-1, std::sync::atomic::Ordering::SeqCst));
    if parent == 0 {
        return;
    }
    let mut want = [0u8; 24];
    let want = abstract_name(parent, &mut want);
    crate::base::private_fd::for_each_open_fd(|fd| {
        if socket_name_is(fd, want) {
            // SAFETY: a copy of the parent's control socket, which the child
            // never uses.
            unsafe { libc::close(fd) };
        }
    });
}

/// `\0mcr/<pid>` written into `buf` (what `sun_path` holds), no allocation.
fn abstract_name(pid: u32, buf: &mut [u8; 24]) -> &[u8] {
    let prefix = b"\0mcr/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut i) = (pid, digits.len());
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = prefix.len() + digits.len() - i;
    buf[prefix.len()..len].copy_from_slice(&digits[i..]);
    &buf[..len]
}

/// Whether `fd` is a Unix socket whose local address is `name`.
fn socket_name_is(fd: i32, name: &[u8]) -> bool {
    // SAFETY: getsockname into a local sockaddr_un of the size we pass.
    unsafe {
        let mut sa: libc::sockaddr_un = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        if libc::getsockname(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut len) != 0
            || sa.sun_family != libc::AF_UNIX as libc::sa_family_t
        {
            return false;
        }
        let path_len = (len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
        let path = std::slice::from_raw_parts(sa.sun_path.as_ptr() as *const u8, path_len);
        path == name
    }
}

/// The listening socket the control thread serves (-1: none).
static LISTENER_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// The control thread is to return (the process is being confined).
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The control thread of this process, while it runs.
static SERVING: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> = std::sync::Mutex::new(None);

/// Stops the control thread and waits (bounded) until it has exited, so
/// the program's threads are the process's only ones: `sandbox` calls it
/// before the program installs a seccomp filter. The listener is shut
/// down (its `poll` returns) and closed by the thread; the `@mcr/<pid>`
/// name goes with it.
pub fn stop() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    control_bound::BOUND.store(false, std::sync::atomic::Ordering::SeqCst);
    let fd = LISTENER_FD.swap(-1, std::sync::atomic::Ordering::SeqCst);
    crate::base::private_fd::release(fd);
    if fd >= 0 {
        // SAFETY: shutdown of our own listening socket; the thread closes it.
        unsafe { libc::syscall(libc::SYS_shutdown, fd, libc::SHUT_RDWR) };
    }
    let Some(h) = SERVING.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    // A request being served is finished first; never wait without bound.
    let t = std::time::Instant::now();
    while !h.is_finished() && t.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if h.is_finished() {
        let _ = h.join();
    } else {
        eprintln!("mcr-rt: control thread still busy after 2 s; confining the process with it");
    }
}

/// Starts the control thread (again, in a forked child).
///
/// The thread (and every thread it starts) blocks all signals: a signal
/// sent to the process must reach one of the program's threads, never
/// ours (timedrun's `waitpid` waits for a SIGTERM to interrupt it).
///
/// `in_child`: a forked child does not read its symbol table on that
/// thread (see `serve`).
pub fn start(in_child: bool) {
    // A seccomp filter the program installs must find no runtime thread.
    crate::base::sandbox::on_confine(stop);
    // Bound here, on the calling thread (the ELF constructor, or the fork
    // child handler), before the program's code runs: a socket made on the
    // control thread would hold a low descriptor for a moment, while the
    // program's start-up opens its own, and shift their numbers (memcached's
    // own tests expect exact ones).
    let Some(listener) = bind_listener() else {
        return;
    };
    // SAFETY: sigset manipulation on locals; the old mask is restored.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        LISTENER_FD.store(listener.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
        let h = std::thread::Builder::new()
            .name("mcr-control".into())
            .stack_size(256 * 1024)
            .spawn(move || serve(listener, in_child));
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        // A fork child's handle replaces its parent's (that thread is not here).
        let mut serving = SERVING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(parents) = serving.take() {
            std::mem::forget(parents);
        }
        *serving = h.ok();
    }
}

/// `@mcr/<pid>`, listening, above the private descriptor base. Made with
/// raw system calls: it runs on the main thread before `main`, and the
/// start-up log interposes `socket`/`bind`/`listen` there (this socket is
/// not the program's).
fn bind_listener() -> Option<UnixListener> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let name = control_socket_name(pid);
    // Before bind: a fork right after it must already sweep the name.
    BOUND_PID.store(pid, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: socket/bind/listen syscalls on a sockaddr_un we fill within
    // its size; the descriptor is owned right away.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ) as i32;
        if fd < 0 {
            return None;
        }
        let mut sa: libc::sockaddr_un = std::mem::zeroed();
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
        // Abstract: sun_path[0] stays 0, the name follows.
        for (d, b) in sa.sun_path[1..].iter_mut().zip(name.bytes()) {
            *d = b as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
        if libc::syscall(
            libc::SYS_bind,
            fd,
            &sa as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
        ) != 0
            || libc::syscall(libc::SYS_listen, fd, 128) != 0
        {
            eprintln!(
                "mcr-rt: control socket @{name}: {}",
                std::io::Error::last_os_error()
            );
            libc::syscall(libc::SYS_close, fd);
            return None;
        }
        let high = raw_to_private(fd);
        // The program's closefrom() must leave it open.
        crate::base::private_fd::keep(high);
        (high >= 0).then(|| UnixListener::from_raw_fd(high))
    }
}

fn serve(listener: UnixListener, in_child: bool) {
    // A new version will likely need its symbol table and its type map in
    // its transfer: read them now, while its start-up runs (the type map
    // holds no descriptor), and report ready only after (so no
    // descriptor of ours is open behind the program's back by then). An
    // old version reads its own in an update's check phase. Not in a
    // worker its new master forks: the worker's own start-up runs fresh
    // (not replayed) right now, and the file would hold a low number for a
    // moment and shift the ones it opens, which its old counterpart's
    // connections must find free; it reads the table on its main thread if
    // its transfer needs it.
    if crate::base::update_link::RESTORING.load(std::sync::atomic::Ordering::SeqCst) && !in_child {
        let _ = crate::program::sections::typemap();
        let _ = crate::base::own_binary::functions();
    }
    control_bound::BOUND.store(true, std::sync::atomic::Ordering::SeqCst);
    // Never block in accept(): the kernel reserves the lowest free
    // descriptor number for a blocked accept, which would shift every
    // descriptor the program opens meanwhile. Wait in poll(), accept only
    // what is there (the listener is non-blocking).
    let _ = listener.set_nonblocking(true);
    loop {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let polled = unsafe { libc::poll(&mut pfd, 1, -1) };
        if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if polled < 0 {
            continue;
        }
        if pfd.revents & libc::POLLNVAL != 0 {
            // Closed behind our back (a program's close() of a number it
            // never opened): its number may be the program's by now, so it
            // is not closed again; the thread ends rather than spin.
            crate::base::private_fd::release(pfd.fd);
            LISTENER_FD.store(-1, std::sync::atomic::Ordering::SeqCst);
            control_bound::BOUND.store(false, std::sync::atomic::Ordering::SeqCst);
            eprintln!("mcr-rt: control socket closed by the program; this process can no longer be updated");
            std::mem::forget(listener);
            return;
        }
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        let _ = conn.set_nonblocking(false);
        let conn = UnixStream::from(to_private_fd(OwnedFd::from(conn)));
        if !peer_allowed(&conn) {
            let mut c = &conn;
            let _ = Reply::Error {
                message: "permission denied: not the process owner".into(),
            }
            .send(&mut c);
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
            // An update or a profile runs on its own thread, so requests
            // keep being answered meanwhile.
            Ok(req @ (Request::Update(_) | Request::Profile { .. })) => {
                let _ = std::thread::Builder::new()
                    .name("mcr-update".into())
                    .stack_size(256 * 1024)
                    .spawn(move || handle(conn, Ok(req)));
            }
            // A worker frozen for its master's update waits on this
            // connection for the outcome.
            Ok(Request::Freeze(f)) => {
                let _ = std::thread::Builder::new()
                    .name("mcr-freeze".into())
                    .stack_size(256 * 1024)
                    .spawn(move || crate::old_version::workers::freeze(conn, &f));
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

fn handle(conn: UnixStream, req: Result<Request, serde_json::Error>) {
    let _ = conn.set_read_timeout(None);
    let mut out = &conn;
    let reply = match req {
        Err(e) => Reply::Error {
            message: format!("bad request: {e}"),
        },
        Ok(Request::Info) => Reply::Info(crate::inspect::report::info()),
        Ok(Request::Heap) => Reply::Heap(crate::inspect::report::heap()),
        Ok(Request::Trace) => Reply::Trace(crate::inspect::trace::trace()),
        Ok(Request::Profile { duration_ms }) => {
            match crate::interpose::profile::run(std::time::Duration::from_millis(duration_ms)) {
                Ok(p) => Reply::Profile(p),
                Err(message) => Reply::Error { message },
            }
        }
        Ok(Request::Freeze(_)) => Reply::Error {
            message: "freeze requests are served on their own thread".into(),
        },
        Ok(Request::Update(u)) => match crate::old_version::update::run(&u, &mut out) {
            Ok(r) => {
                let _ = Reply::Updated(r).send(&mut out);
                crate::old_version::committed::finish_old_process();
            }
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        },
    };
    let _ = reply.send(&mut out);
}
