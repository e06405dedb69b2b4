//! Pointers the kernel keeps for the program: the `data` word of every
//! epoll registration, which names a connection object in most servers.

use super::context::Ctx;
use super::TransferError;

/// Pointers the kernel keeps for the program: `epoll_event.data` of every
/// registration on every epoll instance, read back from
/// /proc/self/fdinfo and re-registered (`EPOLL_CTL_MOD`) when it named an
/// object that moved.
pub(super) fn rewrite_epoll_registrations(ctx: &Ctx) -> Result<u64, TransferError> {
    if ctx.moves.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for epfd in crate::base::epoll_info::instances() {
        for r in crate::base::epoll_info::registrations(epfd) {
            if ctx.move_containing(r.data).is_none() {
                continue;
            }
            let Some(q) = ctx.translate(r.data, "")? else {
                continue;
            };
            let mut ev = libc::epoll_event {
                events: r.events,
                u64: q,
            };
            // SAFETY: re-registering an existing registration with a new cookie.
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, r.fd, &mut ev) } == 0 {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// A worker's epoll cookies, read by its old self and re-registered by the
/// caller: each is a word that may point into a moved object.
pub(super) fn translate_cookies(ctx: &Ctx, cookies: &mut [u64]) -> Result<(), TransferError> {
    for c in cookies.iter_mut() {
        if let Some(q) = ctx.translate(*c, "")? {
            *c = q;
        }
    }
    Ok(())
}
