//! The open files the old version shares with the new one, given back as
//! they were on a rollback.
//!
//! Every program descriptor is inherited, so the two processes hold the
//! same open file descriptions, and whatever the new version's start-up
//! does to them it does to the old version's files too: `fcntl(F_SETFL)`
//! (`O_NONBLOCK` belongs to the open file, not to the descriptor),
//! `setsockopt`, `lseek`, and `epoll_ctl` on an inherited epoll instance.
//! The start-up replay even turns an `EPOLL_CTL_ADD` on a claimed instance
//! into a `MOD`, so a registration the old program made comes to carry
//! the new program's `data` (its pointer, meaningless in the old process).
//! Killing the new version undoes none of it: lighttpd 1.4.69, given back
//! its listener registered with 1.4.79's `fdnode`, found no handler there
//! and accepted no connection again (issue 16).
//!
//! So before it starts the new version, the old one records the state of
//! each of its files ([`save`]; its threads are parked, nothing of its own
//! changes them until it resumes), and a rollback, once the new version is
//! dead, puts back whatever differs ([`Saved::restore`]): file status
//! flags, the offset of a regular file opened read-only, the usual socket
//! options of start-up's sockets, and every epoll instance's registrations
//! (events and data; those the new version added are deleted, those it
//! deleted added again). A frozen worker does the same for its own files.
//!
//! Not given back (no start-up we know does it to an inherited file): a
//! timer a new start-up re-armed (`timerfd_settime`), an eventfd counter or
//! bytes it read, `F_SETOWN`/`F_SETSIG`, socket filters, `shutdown`, and
//! socket options outside [`SOCK_OPTS`]; a buffer size the new start-up
//! set is put back, but stays fixed (the kernel no longer tunes it).

use crate::base::descriptor::stat;
use crate::base::epoll_info::{self, Registration};
use std::fmt;

/// The status flags `F_SETFL` can change (the access mode and creation
/// flags it ignores).
mod epoll;
use epoll::*;

const SETTABLE_FLAGS: i32 =
    libc::O_APPEND | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME | libc::O_NONBLOCK;

/// `kcmp(2)` type comparing a file with the target of an epoll registration.
const KCMP_EPOLL_TFD: libc::c_int = 7;

/// A socket option saved and put back, by `getsockopt`/`setsockopt` with
/// the bytes as the kernel gives them.
struct SockOpt {
    level: libc::c_int,
    name: libc::c_int,
    label: &'static str,
    /// The kernel reports twice what was set (`SO_RCVBUF`, `SO_SNDBUF`):
    /// setting half gives the reported value back.
    doubled: bool,
}

const fn opt(level: libc::c_int, name: libc::c_int, label: &'static str) -> SockOpt {
    SockOpt {
        level,
        name,
        label,
        doubled: false,
    }
}

/// The options a server's start-up sets on its sockets. One that does not
/// apply to a socket (a TCP option on a Unix socket) fails `getsockopt`
/// and is not saved.
const SOCK_OPTS: &[SockOpt] = &[
    opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR"),
    opt(libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT"),
    opt(libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE"),
    opt(libc::SOL_SOCKET, libc::SO_LINGER, "SO_LINGER"),
    opt(libc::SOL_SOCKET, libc::SO_RCVLOWAT, "SO_RCVLOWAT"),
    opt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, "SO_RCVTIMEO"),
    opt(libc::SOL_SOCKET, libc::SO_SNDTIMEO, "SO_SNDTIMEO"),
    opt(libc::SOL_SOCKET, libc::SO_OOBINLINE, "SO_OOBINLINE"),
    opt(libc::SOL_SOCKET, libc::SO_BROADCAST, "SO_BROADCAST"),
    opt(libc::SOL_SOCKET, libc::SO_PRIORITY, "SO_PRIORITY"),
    opt(libc::SOL_SOCKET, libc::SO_PASSCRED, "SO_PASSCRED"),
    SockOpt {
        doubled: true,
        ..opt(libc::SOL_SOCKET, libc::SO_RCVBUF, "SO_RCVBUF")
    },
    SockOpt {
        doubled: true,
        ..opt(libc::SOL_SOCKET, libc::SO_SNDBUF, "SO_SNDBUF")
    },
    opt(libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY"),
    opt(libc::IPPROTO_TCP, libc::TCP_CORK, "TCP_CORK"),
    opt(
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        "TCP_DEFER_ACCEPT",
    ),
    opt(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE"),
    opt(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL"),
    opt(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, "TCP_KEEPCNT"),
    opt(libc::IPPROTO_TCP, libc::TCP_FASTOPEN, "TCP_FASTOPEN"),
    opt(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        "TCP_USER_TIMEOUT",
    ),
    opt(
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        "TCP_NOTSENT_LOWAT",
    ),
    opt(libc::IPPROTO_IP, libc::IP_TOS, "IP_TOS"),
    opt(libc::IPPROTO_IP, libc::IP_TTL, "IP_TTL"),
    opt(libc::IPPROTO_IP, libc::IP_FREEBIND, "IP_FREEBIND"),
    opt(libc::IPPROTO_IP, libc::IP_TRANSPARENT, "IP_TRANSPARENT"),
    opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY"),
    opt(libc::IPPROTO_IPV6, libc::IPV6_TCLASS, "IPV6_TCLASS"),
    opt(
        libc::IPPROTO_IPV6,
        libc::IPV6_UNICAST_HOPS,
        "IPV6_UNICAST_HOPS",
    ),
];

/// An option's value as `getsockopt` wrote it (`struct linger` and
/// `struct timeval` are the largest kept).
#[derive(Clone, Copy, PartialEq, Eq)]
struct OptValue {
    bytes: [u8; 16],
    len: libc::socklen_t,
}

/// What could not be given back; the old version then runs with what the
/// new start-up left (reported with the rollback).
#[derive(Debug)]
pub enum RestoreError {
    /// A system call putting something back failed.
    Call { fd: i32, what: String, errno: i32 },
    /// A registration the new version made, of a file the old version
    /// holds under no descriptor this process could delete it with.
    Unreachable { epfd: i32, tfd: i32 },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Call { fd, what, errno } => write!(
                f,
                "descriptor {fd}: {what}: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            RestoreError::Unreachable { epfd, tfd } => write!(
                f,
                "epoll instance {epfd}: the registration under number {tfd} the new version made could not be deleted (no descriptor of its file)"
            ),
        }
    }
}

impl std::error::Error for RestoreError {}

/// What a rollback put back, and what it could not.
#[derive(Default)]
pub struct Restored {
    /// One line per change undone (logged under `MCR_DEBUG`).
    pub changes: Vec<String>,
    pub errors: Vec<RestoreError>,
}

impl Restored {
    /// Under `MCR_DEBUG`, one line per change undone on stderr.
    pub fn log(&self, who: &str) {
        if std::env::var_os("MCR_DEBUG").is_some() {
            for c in &self.changes {
                eprintln!("mcr-rt: rollback gave {who} back {c}");
            }
        }
    }

    fn call(&mut self, fd: i32, r: libc::c_int, what: String) {
        if r < 0 {
            self.errors.push(RestoreError::Call {
                fd,
                what,
                errno: crate::base::libc_calls::errno(),
            });
        } else {
            self.changes.push(format!("descriptor {fd}: {what}"));
        }
    }
}

/// One of the old version's descriptors as it was before the new version
/// started.
struct SavedFile {
    fd: i32,
    /// `(st_dev, st_ino)`: the same file is still under this number.
    id: (u64, u64),
    status_flags: i32,
    /// A regular file's offset, when opened read-only. One open for
    /// writing keeps the offset the new version left: put back, the old
    /// version would write over what the new one wrote (a log both write
    /// to, its error message), where it would have written anyway.
    offset: Option<i64>,
    sockopts: Vec<(&'static SockOpt, OptValue)>,
    /// An epoll instance's registrations.
    registrations: Option<Vec<Listed>>,
}

/// The old version's files as they were before the new version started.
pub struct Saved(Vec<SavedFile>);

fn identity(fd: i32) -> Option<(u64, u64)> {
    stat(fd).map(|st| (st.st_dev, st.st_ino))
}

fn get_opt(fd: i32, o: &SockOpt) -> Option<OptValue> {
    let mut v = OptValue {
        bytes: [0; 16],
        len: 16,
    };
    // SAFETY: getsockopt into a local buffer of the length given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            o.level,
            o.name,
            v.bytes.as_mut_ptr() as *mut libc::c_void,
            &mut v.len,
        )
    };
    (r == 0).then_some(v)
}

fn int_opt(fd: i32, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a local int.
    let r = unsafe { libc::getsockopt(fd, level, name, &mut v as *mut _ as *mut _, &mut l) };
    (r == 0).then_some(v)
}

/// The options of socket `fd` worth saving. A connected TCP socket's buffer
/// sizes are left out: the kernel tunes them itself as traffic flows (it
/// may have since), and setting one would stop that for good.
fn socket_options(fd: i32) -> Vec<(&'static SockOpt, OptValue)> {
    let tuned = int_opt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
        && int_opt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Some(1);
    SOCK_OPTS
        .iter()
        .filter(|o| !(o.doubled && tuned))
        .filter_map(|o| Some((o, get_opt(fd, o)?)))
        .collect()
}

/// The descriptors of the start-up log's resources still open: what the
/// replay hands to the new start-up as its own.
pub fn startup_fds() -> Vec<i32> {
    crate::interpose::startup_log::entries()
        .iter()
        .filter(|e| e.open)
        .flat_map(|e| e.fds.iter().filter(|fd| !e.closed.contains(fd)).copied())
        .collect()
}

/// Records the state of the old version's descriptors `fds`; called with
/// its threads parked, right before the new version is started. Socket
/// options are read only on `startup` descriptors (those the replay hands
/// to the new start-up as its own: listeners): start-up code sets options on
/// its own sockets, not on connections it does not know of, and 10 000
/// connections would cost some 300 000 `getsockopt` calls in the downtime.
/// Status flags and epoll registrations are read for every descriptor.
pub fn save(fds: &[i32], startup: &[i32]) -> Saved {
    let mut out = Vec::new();
    for &fd in fds {
        let Some(st) = stat(fd) else { continue };
        let (id, kind) = ((st.st_dev, st.st_ino), st.st_mode & libc::S_IFMT);
        // SAFETY: F_GETFL on a descriptor number.
        let status_flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if status_flags < 0 {
            continue;
        }
        let offset = (kind == libc::S_IFREG && status_flags & libc::O_ACCMODE == libc::O_RDONLY)
            // SAFETY: lseek without moving, to read the offset.
            .then(|| unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) })
            .filter(|&o| o >= 0);
        let sockopts = if kind == libc::S_IFSOCK && startup.contains(&fd) {
            socket_options(fd)
        } else {
            Vec::new()
        };
        // An epoll instance is an anonymous inode, of no file type (kernels
        // since 6.15 may say a regular file): /proc is asked only then.
        let anonymous = kind == 0 || kind == libc::S_IFREG;
        let registrations = (anonymous && epoll_info::is_instance(fd)).then(|| listed(fd));
        out.push(SavedFile {
            fd,
            id,
            status_flags,
            offset,
            sockopts,
            registrations,
        });
    }
    Saved(out)
}

impl Saved {
    /// Puts back what differs from [`save`]. Call it once the new version
    /// (and every process of it that could still act on these files) is
    /// dead, with the old version's threads still parked.
    pub fn restore(&self) -> Restored {
        let mut done = Restored::default();
        for f in &self.0 {
            if identity(f.fd) != Some(f.id) {
                // Nothing of the old program closes a descriptor while its
                // threads are parked; a runtime bug if it happens.
                done.changes.push(format!(
                    "descriptor {}: no longer the file saved, left alone",
                    f.fd
                ));
                continue;
            }
            restore_status_flags(f, &mut done);
            restore_offset(f, &mut done);
            restore_sockopts(f, &mut done);
            if let Some(saved) = &f.registrations {
                restore_registrations(f.fd, saved, &self.0, &mut done);
            }
        }
        done
    }
}

fn restore_status_flags(f: &SavedFile, done: &mut Restored) {
    // SAFETY: F_GETFL on a descriptor of ours.
    let now = unsafe { libc::fcntl(f.fd, libc::F_GETFL) };
    if now < 0 || (now ^ f.status_flags) & SETTABLE_FLAGS == 0 {
        return;
    }
    // SAFETY: F_SETFL with the flags this descriptor had.
    let r = unsafe { libc::fcntl(f.fd, libc::F_SETFL, f.status_flags & SETTABLE_FLAGS) };
    done.call(
        f.fd,
        r,
        format!(
            "status flags {:#o} -> {:#o}",
            now & SETTABLE_FLAGS,
            f.status_flags & SETTABLE_FLAGS
        ),
    );
}

fn restore_offset(f: &SavedFile, done: &mut Restored) {
    let Some(saved) = f.offset else { return };
    // SAFETY: lseek without moving, to read the offset.
    let now = unsafe { libc::lseek(f.fd, 0, libc::SEEK_CUR) };
    if now == saved {
        return;
    }
    // SAFETY: lseek back to the offset this file had.
    let r = unsafe { libc::lseek(f.fd, saved, libc::SEEK_SET) };
    done.call(
        f.fd,
        if r < 0 { -1 } else { 0 },
        format!("offset {now} -> {saved}"),
    );
}

fn restore_sockopts(f: &SavedFile, done: &mut Restored) {
    for &(o, saved) in &f.sockopts {
        let Some(now) = get_opt(f.fd, o) else {
            continue;
        };
        if now == saved {
            continue;
        }
        let mut value = saved;
        if o.doubled && value.len as usize == std::mem::size_of::<libc::c_int>() {
            let v = libc::c_int::from_ne_bytes(value.bytes[..4].try_into().unwrap_or_default());
            value.bytes[..4].copy_from_slice(&(v / 2).to_ne_bytes());
        }
        // SAFETY: setsockopt with the bytes getsockopt gave for this option.
        let r = unsafe {
            libc::setsockopt(
                f.fd,
                o.level,
                o.name,
                value.bytes.as_ptr() as *const libc::c_void,
                value.len,
            )
        };
        done.call(f.fd, r, format!("socket option {} put back", o.label));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's view: each descriptor's status flags and each epoll
    /// instance's registrations (offsets left out).
    fn kernel_view(fds: &[i32]) -> Vec<String> {
        let mut out = Vec::new();
        for fd in fds {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
            for l in info
                .lines()
                .filter(|l| l.starts_with("flags:") || l.starts_with("tfd:"))
            {
                let words: Vec<&str> = l
                    .split_whitespace()
                    .filter(|w| !w.starts_with("pos:"))
                    .collect();
                out.push(format!("{fd}: {}", words.join(" ")));
            }
        }
        out
    }

    fn int_option(fd: i32, name: libc::c_int) -> libc::c_int {
        int_opt(fd, libc::SOL_SOCKET, name).unwrap()
    }

    /// What a new start-up does to shared files, and all of it given back.
    /// (A registration under a number this process has not open needs a
    /// free number while the test runs beside others: the e2e fixture
    /// `shared_files` has it.)
    #[test]
    fn registrations_flags_and_options_are_given_back() {
        let mut sv = [0; 2];
        // SAFETY: plain descriptor-creating calls into locals.
        let (ep, efd) = unsafe {
            assert_eq!(
                libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()),
                0
            );
            (libc::epoll_create1(0), libc::eventfd(0, 0))
        };
        assert!(ep >= 0 && efd >= 0);
        let (a, b) = (sv[0], sv[1]);
        let add = |fd: i32, events: u32, data: u64| {
            assert_eq!(ctl(ep, libc::EPOLL_CTL_ADD, fd, events, data), 0);
        };
        add(a, libc::EPOLLIN as u32, 0x1000);
        add(
            efd,
            libc::EPOLLIN as u32 | libc::EPOLLONESHOT as u32,
            0x2000,
        );
        let fds = [ep, a, b, efd];
        let before = kernel_view(&fds);
        let rcvlowat = int_option(a, libc::SO_RCVLOWAT);
        let saved = save(&fds, &[a, b]);

        // The new version's start-up: the same registration with its own
        // data and EPOLLET, one deleted, one added; O_NONBLOCK set on a
        // shared file; a socket option changed.
        assert_eq!(
            ctl(
                ep,
                libc::EPOLL_CTL_MOD,
                a,
                libc::EPOLLIN as u32 | libc::EPOLLET as u32,
                0x9999
            ),
            0
        );
        assert_eq!(ctl(ep, libc::EPOLL_CTL_DEL, efd, 0, 0), 0);
        add(b, libc::EPOLLOUT as u32, 0x3000);
        // SAFETY: fcntl and setsockopt on our own descriptors.
        unsafe {
            libc::fcntl(
                b,
                libc::F_SETFL,
                libc::fcntl(b, libc::F_GETFL) | libc::O_NONBLOCK,
            );
            let v: libc::c_int = 4096;
            libc::setsockopt(
                a,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                &v as *const _ as *const libc::c_void,
                4,
            );
        }
        assert_ne!(kernel_view(&fds), before);
        assert_ne!(int_option(a, libc::SO_RCVLOWAT), rcvlowat);

        let done = saved.restore();
        assert!(done.errors.is_empty(), "{:?}", done.errors);
        assert_eq!(done.changes.len(), 5, "{:#?}", done.changes);
        assert_eq!(kernel_view(&fds), before);
        assert_eq!(int_option(a, libc::SO_RCVLOWAT), rcvlowat);
        // Nothing left to give back.
        let again = saved.restore();
        assert!(again.changes.is_empty() && again.errors.is_empty());
        for fd in fds {
            // SAFETY: our own descriptors, closed once.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
    }
}
