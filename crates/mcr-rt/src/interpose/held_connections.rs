//! Connections a thread of the old version was parked on (a `read` on a
//! client connection: a server that serves one connection at a time, or
//! one thread per connection), and what becomes of them in the new version.
//!
//! The new version's threads leave their start-up at their own first
//! waits, which need not be where the old threads waited: the old thread
//! parked in `read(conn)`, the new one comes out of start-up in `accept`,
//! and nothing in the new version would ever read `conn` again. The update
//! would report success and the client's connection would hang.
//!
//! So before the new version reports ready, each descriptor an old thread
//! was parked on and that is not a start-up resource (those the new
//! start-up claims from the log and waits on by its own design) is:
//! - served, when a thread of the new version waits on it too, or an epoll
//!   instance the new version holds has it registered (an epoll server
//!   carries its connections in the inherited instance), or a new thread
//!   waits in `poll`/`select`: their sets are passed per call and rebuilt
//!   from the transferred state (see `quiesce`), which cannot be seen from
//!   here, so such a wait is taken to serve it;
//! - led, when `accept` on a listening socket gave it and a thread of the
//!   new version waits in `accept` on that same socket: the next `accept`
//!   calls on that socket are answered with the held connections, as the
//!   new start-up's calls are answered from the old start-up log. The new
//!   version reaches the old one's point along its own code: the server of
//!   one connection at a time reads it, the thread-per-connection server
//!   starts a thread for it. A thread gets whichever held connection comes
//!   first, not necessarily its old counterpart's;
//! - otherwise refused: the update rolls back with one message naming the
//!   descriptor, where the old thread waits on it and where the new
//!   version's counterpart of that thread waits instead.
//!
//! The master checks before it reports ready (`restore`); a worker forked
//! at start-up checks its own connections once `worker_fds` put them back
//! under their numbers (`children`), and leads them to its own `accept`.
//!
//! A led connection is, to the new program, one it just accepted: what it
//! does for each accepted connection runs again (a connection counter
//! counts it twice; a server that greets each connection with a banner
//! sends it again), and bytes the old thread had already read from it into
//! its stack are lost, as is any stack at a quiescent point. The bytes
//! still in the socket are the new version's to read.

use crate::base::descriptor::stat;
use crate::base::own_binary::describe_pc;
use crate::program::thread_locals::{key_of, ThreadKey};
use crate::program::threads::CallKind;
use crate::program::threads::{self, Waiting};
use libc::c_int;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

/// One descriptor an old thread was parked on, as the checkpoint says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Held {
    pub fd: c_int,
    /// Its inode then: a number the new start-up closed and reused is not
    /// the connection.
    pub ino: u64,
    /// The call the old thread waits in, and its call site.
    pub call: String,
    pub site: String,
    pub thread: ThreadKey,
    /// The listening socket `accept` gave it on, with that socket's inode.
    #[serde(default)]
    pub listener: Option<(c_int, u64)>,
}

/// Descriptor numbers whose listening socket is remembered: a table, so
/// `accept` neither locks nor allocates to note one. A connection at a
/// higher number is not led (an update with it parked on is refused).
const TRACKED: usize = 4096;

/// Per connection descriptor: the listening descriptor `accept` gave it
/// on, plus one (0: not accepted, or closed since).
static ACCEPTED_ON: [AtomicI32; TRACKED] = [const { AtomicI32::new(0) }; TRACKED];

/// Held connections the next `accept` on their listening socket returns
/// (listening fd, connection fd), in the old threads' order.
static LED: Mutex<Vec<(c_int, c_int)>> = Mutex::new(Vec::new());
/// `LED` is not empty: the only thing `accept` looks at otherwise.
static ANY_LED: AtomicBool = AtomicBool::new(false);

fn noted(fd: c_int) -> Option<&'static AtomicI32> {
    usize::try_from(fd).ok().and_then(|i| ACCEPTED_ON.get(i))
}

/// A descriptor is being closed: what `accept` gave it on no longer holds.
pub(crate) fn fd_closed(fd: c_int) {
    if let Some(slot) = noted(fd) {
        slot.store(0, Ordering::Relaxed);
    }
}

fn inode(fd: c_int) -> Option<u64> {
    stat(fd).map(|st| st.st_ino)
}

fn is_socket(fd: c_int) -> bool {
    stat(fd).is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

fn is_listening(fd: c_int) -> bool {
    let mut on: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a local int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut on as *mut c_int as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0 && on != 0
}

/// `accept`/`accept4` on `listener`: a held connection led to it if there
/// is one, else the real call; either way the connection's listening
/// socket is noted for the next update.
///
/// # Safety
/// `addr` and `len` as for `accept` (both null, or `len` points to the
/// size of the buffer at `addr`).
pub unsafe fn accept(
    listener: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let fd = match take_led(listener) {
        // SAFETY: the caller's accept arguments.
        Some(fd) => unsafe { hand_over(fd, addr, len, flags) },
        None => real(),
    };
    if fd >= 0 {
        if let Some(slot) = noted(fd) {
            slot.store(listener + 1, Ordering::Relaxed);
        }
    }
    fd
}

fn take_led(listener: c_int) -> Option<c_int> {
    if !ANY_LED.load(Ordering::Acquire) {
        return None;
    }
    let mut led = LED.lock().unwrap_or_else(|e| e.into_inner());
    let i = led.iter().position(|&(l, _)| l == listener)?;
    let (_, fd) = led.remove(i);
    ANY_LED.store(!led.is_empty(), Ordering::Release);
    Some(fd)
}

/// Gives a held connection out as `accept4(.., flags)` would give a new
/// one: the peer's address, and the flags set as asked (they are the new
/// program's to choose, whatever the old one set since its `accept`).
///
/// # Safety
/// As [`accept`].
unsafe fn hand_over(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's address buffer and its length, as accept takes
    // them; fcntl on a descriptor this process holds.
    unsafe {
        if !addr.is_null() && !len.is_null() {
            libc::getpeername(fd, addr, len);
        }
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            let nb = if flags & libc::SOCK_NONBLOCK != 0 {
                fl | libc::O_NONBLOCK
            } else {
                fl & !libc::O_NONBLOCK
            };
            libc::fcntl(fd, libc::F_SETFL, nb);
        }
        let cloexec = if flags & libc::SOCK_CLOEXEC != 0 {
            libc::FD_CLOEXEC
        } else {
            0
        };
        libc::fcntl(fd, libc::F_SETFD, cloexec);
    }
    fd
}

/// Old side, in the checkpoint: the descriptors parked threads wait on
/// in a data call (`read`, `recv`...) that are not start-up resources.
pub fn held() -> Vec<Held> {
    let startup: Vec<c_int> = crate::interpose::startup_log::entries()
        .iter()
        .filter(|e| e.open)
        .flat_map(|e| e.fds.iter().filter(|fd| !e.closed.contains(fd)).copied())
        .collect();
    let mut out = Vec::new();
    for t in threads::all() {
        if !t.alive.load(Ordering::SeqCst) {
            continue;
        }
        let Some(w) = t.waiting() else { continue };
        let CallKind::Data(fd) = w.kind else { continue };
        if startup.contains(&fd) {
            continue;
        }
        let Some(ino) = inode(fd) else { continue };
        // A number `dup2` put something else at keeps its note: only a
        // socket is taken for the connection `accept` gave.
        let listener = noted(fd)
            .filter(|_| is_socket(fd))
            .map(|s| s.load(Ordering::Relaxed) - 1)
            .filter(|&l| l >= 0 && is_listening(l))
            .and_then(|l| Some((l, inode(l)?)));
        out.push(Held {
            fd,
            ino,
            call: w.call.into(),
            site: site_text(w.pc),
            thread: key_of(t),
            listener,
        });
    }
    out
}

fn site_text(pc: usize) -> String {
    match pc {
        0 => "an unknown call site".into(),
        pc => describe_pc(pc as u64),
    }
}

fn thread_text(k: &ThreadKey) -> String {
    if k.start == "main" {
        "main thread".into()
    } else {
        format!("thread {}#{}", k.start, k.ordinal)
    }
}

/// New side, before it reports ready: each descriptor the old threads
/// held is served, led to an `accept`, or the update is refused (the
/// error names it). `not_kept`: inherited descriptors the new start-up did
/// not claim (closed at commit; an epoll instance among them serves
/// nothing). Returns how many connections are led.
pub fn settle(held: &[Held], not_kept: &[c_int]) -> Result<u64, String> {
    if held.is_empty() {
        return Ok(0);
    }
    let waits: Vec<(ThreadKey, Waiting)> = threads::all()
        .into_iter()
        .filter(|t| t.alive.load(Ordering::SeqCst))
        .filter_map(|t| Some((key_of(t), t.waiting()?)))
        .collect();
    let registered: Vec<(c_int, Option<u64>)> = crate::base::epoll_info::instances()
        .into_iter()
        .filter(|ep| !not_kept.contains(ep))
        .flat_map(crate::base::epoll_info::registrations)
        .map(|r| (r.fd, r.ino))
        .collect();
    // A poll or select set is rebuilt per call from the transferred state.
    let per_call_set = waits
        .iter()
        .any(|(_, w)| w.kind == CallKind::EventSet && !w.call.starts_with("epoll"));
    let mut led = Vec::new();
    for h in held {
        let what = match h.listener {
            Some((l, _)) => format!("a connection accepted on descriptor {l}"),
            None => "opened after start-up".to_string(),
        };
        if inode(h.fd) != Some(h.ino) {
            return Err(format!(
                "descriptor {} ({what}), which the old version's {} waits on in {} at {}, was closed by the new version's start-up",
                h.fd,
                thread_text(&h.thread),
                h.call,
                h.site
            ));
        }
        let waited_on = waits
            .iter()
            .any(|(_, w)| matches!(w.kind, CallKind::Data(fd) if fd == h.fd));
        let in_epoll = registered
            .iter()
            .any(|&(fd, ino)| fd == h.fd && ino.is_none_or(|i| i == h.ino));
        if waited_on || in_epoll || per_call_set {
            continue;
        }
        let accepting = h.listener.filter(|&(l, ino)| {
            inode(l) == Some(ino)
                && waits
                    .iter()
                    .any(|(_, w)| w.fd == l && matches!(w.call, "accept" | "accept4"))
        });
        if let Some((l, _)) = accepting {
            led.push((l, h.fd));
            continue;
        }
        let instead = match waits.iter().find(|(k, _)| *k == h.thread) {
            Some((k, w)) => format!(
                "the new version's {} waits instead in {} at {}",
                thread_text(k),
                w.call,
                site_text(w.pc)
            ),
            None => {
                let main = waits
                    .iter()
                    .find(|(k, _)| k.start == "main")
                    .map(|(_, w)| {
                        format!(
                            "; its main thread waits in {} at {}",
                            w.call,
                            site_text(w.pc)
                        )
                    })
                    .unwrap_or_default();
                format!("the new version has no counterpart of that thread{main}")
            }
        };
        let no_accept = match h.listener {
            Some((l, _)) => format!(", nor waits in accept on descriptor {l}"),
            None => String::new(),
        };
        return Err(format!(
            "descriptor {} ({what}) would be left unserved: the old version's {} waits on it in {} at {}, {instead}; no thread of the new version waits on it or has it in an epoll set{no_accept}",
            h.fd,
            thread_text(&h.thread),
            h.call,
            h.site
        ));
    }
    let n = led.len() as u64;
    let mut q = LED.lock().unwrap_or_else(|e| e.into_inner());
    q.extend(led);
    ANY_LED.store(!q.is_empty(), Ordering::Release);
    Ok(n)
}
