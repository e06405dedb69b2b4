//! Epoll registrations on an instance the old version shares with the
//! new one, put back as they were on a rollback: added ones deleted,
//! deleted ones re-added, changed ones modified, a `dup`ed file told
//! apart with `kcmp`.

use super::*;

pub(super) fn ctl(epfd: i32, op: libc::c_int, fd: i32, events: u32, data: u64) -> libc::c_int {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: epoll_ctl on our epoll instance with a local event. The real
    // call: the start-up log's wrapper only matters in a new version.
    unsafe {
        crate::base::libc_calls::real!(
            epoll_ctl: fn(libc::c_int, libc::c_int, libc::c_int, *mut libc::epoll_event) -> libc::c_int
        )(epfd, op, fd, &mut ev)
    }
}

/// Whether descriptor `fd` is the file of the registration of `epfd` under
/// number `tfd` (the `toff`-th of that number): `kcmp(KCMP_EPOLL_TFD)`,
/// exact. None when the kernel does not offer it.
pub(super) fn is_target(epfd: i32, tfd: i32, toff: u32, fd: i32) -> Option<bool> {
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: getpid has no preconditions; kcmp only reads `slot`.
    let r = unsafe {
        let pid = libc::getpid();
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            fd,
            &slot as *const Slot,
        )
    };
    match r {
        0 => Some(true),
        r if r > 0 => Some(false),
        _ if crate::base::libc_calls::errno() == libc::ENOENT
            || crate::base::libc_calls::errno() == libc::EBADF =>
        {
            Some(false)
        }
        _ => None,
    }
}

/// One registration of an epoll instance, and whether it is the one of
/// the file its number names in this process (`own`). One that is not is
/// stale (the program closed and reused the number without
/// `EPOLL_CTL_DEL` while the file stayed open elsewhere: the kernel keeps
/// it) or a new version's (a `dup` of an inherited file).
pub(super) struct Listed {
    pub(super) r: Registration,
    pub(super) own: bool,
    /// Its rank among the registrations under the same number (`kcmp`).
    pub(super) toff: u32,
}

/// The registrations of `epfd`, each told own or not. A socket's inode has
/// one open file, so an inode match settles it; an anonymous inode (every
/// eventfd, epoll instance, timerfd shares one) or a pipe's may have many:
/// `kcmp` tells, which walks the instance's registrations, so it is asked
/// only then (10 000 connections would cost 10^8 steps in the downtime).
pub(super) fn listed(epfd: i32) -> Vec<Listed> {
    let regs = epoll_info::registrations(epfd);
    let mut out: Vec<Listed> = Vec::with_capacity(regs.len());
    let mut ranks: std::collections::HashMap<i32, u32> = std::collections::HashMap::new();
    for r in regs {
        let rank = ranks.entry(r.fd).or_insert(0);
        let toff = *rank;
        *rank += 1;
        let here = stat(r.fd);
        let same_inode = r.ino.is_some() && here.map(|st| st.st_ino) == r.ino;
        let socket = here.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
        let own = same_inode && (socket || is_target(epfd, r.fd, toff, r.fd).unwrap_or(true));
        out.push(Listed { r, own, toff });
    }
    out
}

/// Puts back epoll instance `epfd`'s registrations as `saved` lists them:
/// one the new version changed is changed back, one it added deleted, one
/// it deleted added again. Stale ones the old program had are left alone.
pub(super) fn restore_registrations(
    epfd: i32,
    saved: &[Listed],
    files: &[SavedFile],
    done: &mut Restored,
) {
    let now = listed(epfd);
    let mut seen = vec![false; saved.len()];
    let same = |s: &Listed, n: &Listed| s.own == n.own && s.r.fd == n.r.fd && s.r.ino == n.r.ino;
    let mut changed = Vec::new();
    for n in &now {
        let unchanged = saved.iter().enumerate().position(|(k, s)| {
            !seen[k] && same(s, n) && (s.r.events, s.r.data) == (n.r.events, n.r.data)
        });
        match unchanged {
            Some(k) => seen[k] = true,
            None => changed.push(n),
        }
    }
    // Last first: deleting a registration shifts the rank (`toff`) of the
    // ones after it under the same number, never of those before.
    for n in changed.into_iter().rev() {
        let before = saved
            .iter()
            .enumerate()
            .position(|(k, s)| !seen[k] && n.own && same(s, n));
        match before {
            Some(k) => {
                seen[k] = true;
                modify(epfd, &saved[k].r, &n.r, done);
            }
            None if n.own => {
                let res = ctl(epfd, libc::EPOLL_CTL_DEL, n.r.fd, 0, 0);
                done.call(
                    epfd,
                    res,
                    format!(
                        "registration of {} (events {:#x}, data {:#x}) the new version added, deleted",
                        n.r.fd, n.r.events, n.r.data
                    ),
                );
            }
            None => delete_foreign(epfd, &n.r, n.toff, files, done),
        }
    }
    // An own registration's file was the one saved under its number: still
    // there, it is registered again.
    let still = |fd: i32| {
        files
            .iter()
            .any(|f| f.fd == fd && identity(fd) == Some(f.id))
    };
    for (s, _) in saved
        .iter()
        .zip(&seen)
        .filter(|(s, &seen)| !seen && s.own && still(s.r.fd))
    {
        let res = ctl(epfd, libc::EPOLL_CTL_ADD, s.r.fd, s.r.events, s.r.data);
        done.call(
            epfd,
            res,
            format!(
                "registration of {} (events {:#x}, data {:#x}) the new version deleted, added again",
                s.r.fd, s.r.events, s.r.data
            ),
        );
    }
}

/// Changes registration `r` back to `s` (same file, same number). One with
/// `EPOLLEXCLUSIVE` cannot be modified: it is deleted and added again.
pub(super) fn modify(epfd: i32, s: &Registration, r: &Registration, done: &mut Restored) {
    let exclusive = libc::EPOLLEXCLUSIVE as u32;
    let res = if (s.events | r.events) & exclusive != 0 {
        match ctl(epfd, libc::EPOLL_CTL_DEL, s.fd, 0, 0) {
            0 => ctl(epfd, libc::EPOLL_CTL_ADD, s.fd, s.events, s.data),
            e => e,
        }
    } else {
        ctl(epfd, libc::EPOLL_CTL_MOD, s.fd, s.events, s.data)
    };
    done.call(
        epfd,
        res,
        format!(
            "registration of {}: events {:#x} -> {:#x}, data {:#x} -> {:#x}",
            s.fd, r.events, s.events, r.data, s.data
        ),
    );
}

/// Deletes a registration the new version made of a file this process
/// holds under another number than the registration's (a `dup` of an
/// inherited descriptor): `EPOLL_CTL_DEL` needs that very (file, number)
/// pair, so the file is put under the number for the call, if it is free.
/// Such a file is never a regular one (epoll refuses those), so closing
/// the number again drops no `fcntl` lock of the program's.
pub(super) fn delete_foreign(
    epfd: i32,
    r: &Registration,
    toff: u32,
    files: &[SavedFile],
    done: &mut Restored,
) {
    let holder = files
        .iter()
        .map(|f| f.fd)
        .find(|&fd| is_target(epfd, r.fd, toff, fd) == Some(true));
    let free = identity(r.fd).is_none();
    let Some(holder) = holder.filter(|_| free) else {
        // Held by no descriptor of ours: by a process of the new version
        // still going, or under a number that is another file here.
        done.errors
            .push(RestoreError::Unreachable { epfd, tfd: r.fd });
        return;
    };
    // SAFETY: dup3 onto a number this process has not open (checked just
    // above, with every program thread parked), closed again right after.
    let res = unsafe {
        if libc::dup3(holder, r.fd, libc::O_CLOEXEC) != r.fd {
            -1
        } else {
            let res = ctl(epfd, libc::EPOLL_CTL_DEL, r.fd, 0, 0);
            // The raw call: the program's `close` wrapper is not for ours.
            libc::syscall(libc::SYS_close, r.fd);
            res
        }
    };
    done.call(
        epfd,
        res,
        format!(
            "registration under number {} (a descriptor of the new version of the file at {holder}; events {:#x}, data {:#x}), deleted",
            r.fd, r.events, r.data
        ),
    );
}
