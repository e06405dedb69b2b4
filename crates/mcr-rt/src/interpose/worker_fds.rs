//! Descriptors a forked worker opened after its own start-up: its client
//! connections (nginx, Apache prefork: the worker accepts, not the master).
//!
//! A master's descriptors reach the new master by `exec` inheritance; a
//! worker's do not, because the new worker is a child of the new master.
//! So they travel by hand:
//! - Old worker, at its first quiescent point: the identities (device,
//!   inode) of its descriptors are noted; what it holds at freeze that was
//!   not there then is *run-time*. Each goes to the old master over the
//!   freeze connection (`SCM_RIGHTS`), with its number, its close-on-exec
//!   flag and its epoll registrations (read back from
//!   `/proc/self/fdinfo`, the kernel's own record).
//! - Old master: keeps them at private numbers, hands them to the new
//!   master with its own, named by worker in the workers' checkpoint.
//! - New worker, after its transfer: each takes its old number (a number
//!   the new start-up took refuses the update), and its registrations are
//!   added to the epoll instance its own start-up made under the old
//!   instance's number, with `epoll_event.data` rewritten like any word
//!   that may point into a moved object.
//!
//! Both old and new worker hold the connections until commit; only the old
//! one ever runs until then, so no byte is read twice or lost.

use crate::base::epoll_info;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

/// At most this many descriptors per message (the kernel's SCM_MAX_FD is 253).
const PER_MESSAGE: usize = 200;

/// What the old worker held at the end of its start-up: (number, device, inode).
static AT_STARTUP: Mutex<Vec<(i32, u64, u64)>> = Mutex::new(Vec::new());

/// One run-time descriptor of an old worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeFd {
    pub number: i32,
    pub cloexec: bool,
    /// What /proc says it is (`socket:[1234]`), for messages.
    pub what: String,
}

/// One epoll registration that involves a run-time descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub epfd: i32,
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// The epoll instance is itself run-time (it travels with its
    /// registrations; only `data` may need rewriting).
    pub instance_carried: bool,
}

/// An old worker's run-time descriptors, in the order they are sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuntimeFds {
    pub fds: Vec<RuntimeFd>,
    pub registrations: Vec<Registration>,
}

fn identity(fd: i32) -> Option<(u64, u64)> {
    crate::base::descriptor::stat(fd).map(|st| (st.st_dev, st.st_ino))
}

fn is_regular_file(fd: i32) -> bool {
    crate::base::descriptor::kind(fd) == Some(libc::S_IFREG)
}

fn link(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The worker's start-up is over: what it holds now is its start-up's.
pub fn note_startup_end() {
    let v = crate::base::private_fd::program_fds()
        .into_iter()
        .filter_map(|fd| identity(fd).map(|(d, i)| (fd, d, i)))
        .collect();
    *AT_STARTUP.lock().unwrap() = v;
}

/// (device, inode) of every program descriptor this process holds.
pub fn files_held() -> Vec<(u64, u64)> {
    crate::base::private_fd::program_fds()
        .into_iter()
        .filter_map(identity)
        .collect()
}

/// The old worker's run-time descriptors and the registrations that
/// involve them (its threads are parked). A descriptor the master holds
/// too (`master_files`: a channel to another worker that the master passed
/// it, as nginx does) is the master's: the new master passes its own.
pub fn collect(master_files: &[(u64, u64)]) -> RuntimeFds {
    let startup = AT_STARTUP.lock().unwrap().clone();
    let mut out = RuntimeFds::default();
    let mut runtime = HashSet::new();
    let mut epolls = Vec::new();
    for fd in crate::base::private_fd::program_fds() {
        let Some((dev, ino)) = identity(fd) else {
            continue;
        };
        let what = link(fd);
        if what == epoll_info::EPOLL_LINK {
            epolls.push(fd);
        }
        // A socket or pipe inode is one channel; a regular file's is only
        // the file (the worker may have opened it again on its own).
        if startup.contains(&(fd, dev, ino))
            || (master_files.contains(&(dev, ino)) && !is_regular_file(fd))
        {
            continue;
        }
        // SAFETY: F_GETFD on a descriptor we hold.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        runtime.insert(fd);
        out.fds.push(RuntimeFd {
            number: fd,
            cloexec: flags >= 0 && flags & libc::FD_CLOEXEC != 0,
            what,
        });
    }
    for epfd in epolls {
        let carried = runtime.contains(&epfd);
        for r in registrations(epfd) {
            if carried || runtime.contains(&r.fd) {
                out.registrations.push(Registration {
                    instance_carried: carried,
                    ..r
                });
            }
        }
    }
    out
}

/// The registrations of epoll instance `epfd`, as the kernel lists them.
/// A target whose number now names another file (closed and reused
/// without `EPOLL_CTL_DEL`) is left out: it is not that descriptor's.
fn registrations(epfd: i32) -> Vec<Registration> {
    epoll_info::registrations(epfd)
        .into_iter()
        .filter(|r| r.ino.is_some() && identity(r.fd).map(|i| i.1) == r.ino)
        .map(|r| Registration {
            epfd,
            fd: r.fd,
            events: r.events,
            data: r.data,
            instance_carried: false,
        })
        .collect()
}

/// Sends `fds` (in order) over `sock`, at most [`PER_MESSAGE`] a message.
pub fn send(sock: BorrowedFd<'_>, fds: &[i32]) -> std::io::Result<()> {
    for chunk in fds.chunks(PER_MESSAGE) {
        // SAFETY: these numbers are open in this process for the call.
        let borrowed: Vec<BorrowedFd<'_>> = chunk
            .iter()
            .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
            .collect();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(chunk.len()))];
        let mut cmsg = rustix::net::SendAncillaryBuffer::new(&mut space);
        cmsg.push(rustix::net::SendAncillaryMessage::ScmRights(&borrowed));
        let n = [chunk.len() as u8];
        rustix::net::sendmsg(
            sock,
            &[IoSlice::new(&n)],
            &mut cmsg,
            rustix::net::SendFlags::NOSIGNAL,
        )?;
    }
    Ok(())
}

/// Receives `count` descriptors sent by [`send`], close-on-exec, moved
/// above the program's numbers.
pub fn receive(sock: BorrowedFd<'_>, count: usize) -> std::io::Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let want = (count - out.len()).min(PER_MESSAGE);
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(want))];
        let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        let r = loop {
            match rustix::net::recvmsg(
                sock,
                &mut [IoSliceMut::new(&mut byte)],
                &mut cmsg,
                rustix::net::RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r?,
            }
        };
        if r.bytes == 0 {
            return Err(std::io::Error::other(
                "the worker closed its channel while sending its connections",
            ));
        }
        let before = out.len();
        for m in cmsg.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = m {
                out.extend(fds.map(crate::base::private_fd::to_private_fd));
            }
        }
        if out.len() - before != byte[0] as usize {
            return Err(std::io::Error::other(format!(
                "{} of {} descriptors arrived (the limit on open files?)",
                out.len() - before,
                byte[0]
            )));
        }
    }
    Ok(out)
}

/// New worker, after its transfer: every run-time descriptor of its old
/// counterpart under its old number (`held[i]` is `old.fds[i]` at a
/// private number, closed here), then the registrations, `cookies[i]`
/// being `old.registrations[i].data` rewritten. Returns how many
/// descriptors were installed.
pub fn install(old: &RuntimeFds, held: Vec<OwnedFd>, cookies: &[u64]) -> Result<u64, String> {
    if held.len() != old.fds.len() {
        return Err(format!(
            "{} connections of the old worker were handed over, {} expected",
            held.len(),
            old.fds.len()
        ));
    }
    for (f, h) in old.fds.iter().zip(&held) {
        if identity(f.number).is_some() {
            if std::env::var_os("MCR_DEBUG_FDS").is_some() {
                for fd in crate::base::private_fd::program_fds() {
                    eprintln!("mcr-rt: new worker fd {fd} -> {}", link(fd));
                }
                for f in &old.fds {
                    eprintln!("mcr-rt: old worker run-time fd {} -> {}", f.number, f.what);
                }
            }
            return Err(format!(
                "descriptor {} of the old worker ({}, opened after its start-up) is taken in the new worker by {} made by its start-up",
                f.number,
                f.what,
                link(f.number)
            ));
        }
        let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: dup3 onto a number nothing in this process holds (checked
        // above; the program's threads are parked).
        if unsafe { libc::dup3(h.as_fd().as_raw_fd(), f.number, flags) } < 0 {
            return Err(format!(
                "descriptor {} of the old worker: {}",
                f.number,
                std::io::Error::last_os_error()
            ));
        }
    }
    drop(held);
    for (r, &data) in old.registrations.iter().zip(cookies) {
        if r.instance_carried {
            if data == r.data {
                continue;
            }
        } else if !epoll_info::is_instance(r.epfd) {
            return Err(format!(
                "descriptor {} of the old worker was an epoll instance its start-up made, watching connection {}; in the new worker it is {}",
                r.epfd,
                r.fd,
                match link(r.epfd) {
                    l if l.is_empty() => "closed".to_string(),
                    l => l,
                }
            ));
        }
        let op = if r.instance_carried {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        let mut ev = libc::epoll_event {
            events: r.events,
            u64: data,
        };
        // SAFETY: epoll_ctl on descriptors this process holds, with a local event.
        if unsafe { libc::epoll_ctl(r.epfd, op, r.fd, &mut ev) } != 0 {
            return Err(format!(
                "registering connection {} on epoll instance {}: {}",
                r.fd,
                r.epfd,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(old.fds.len() as u64)
}
