//! Wrappers of the blocking calls listed in docs/ABI.md. Each exists twice:
//! as `__mcr_<name>` (what `mcr-pass` rewrites direct calls to) and under the
//! libc name itself, defined in the executable so that calls made by
//! uninstrumented libraries (libevent's `epoll_wait`) are wrapped too. The
//! real function is found with `dlsym(RTLD_NEXT)`, never by name, which
//! would resolve back to the wrapper.

use crate::base::libc_calls::real;
use crate::interpose::quiesce::{blocking, blocking_cond, Wrapper};
use crate::program::threads::CallKind;
use libc::{c_int, c_uint, c_void, size_t, ssize_t};

/// Defines `$name` and `__mcr_$name` with one body; `$fd` is the
/// descriptor the call waits on (-1: none).
macro_rules! wrap {
    ($name:ident, $mcr:ident, ($($a:ident : $t:ty),*) -> $r:ty, $kind:expr, $fail:expr, $fd:expr) => {
        wrap!($name, $mcr, ($($a: $t),*) -> $r, $kind, $fail, $fd, |r| r);
    };
    // `$after` sees the call's result before the caller does.
    ($name:ident, $mcr:ident, ($($a:ident : $t:ty),*) -> $r:ty, $kind:expr, $fail:expr, $fd:expr, $after:expr) => {
        /// # Safety
        /// Same contract as the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $mcr($($a: $t),*) -> $r {
            let f = real!($name: fn($($t),*) -> $r);
            type F = unsafe extern "C" fn($($t),*) -> $r;
            let w = Wrapper { name: stringify!($name), entries: [$mcr as F as usize, $name as F as usize], fd: $fd };
            // SAFETY: forwarding the caller's arguments unchanged.
            let r = blocking(&w, $kind, || unsafe { f($($a),*) }, $fail);
            $after(r)
        }
        /// # Safety
        /// Same contract as the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $r {
            // SAFETY: same arguments, same contract.
            unsafe { $mcr($($a),*) }
        }
    };
}

/// The usual failure convention: -1 with `errno` set to `EINTR`.
fn neg<T: PartialEq + From<i8>>(r: T) -> bool {
    r == T::from(-1) && crate::base::libc_calls::errno() == libc::EINTR
}

use CallKind::*;

/// An event set wait, or [`NoWait`] when its timeout is zero.
fn set_unless(zero_timeout: bool) -> CallKind {
    if zero_timeout {
        NoWait
    } else {
        EventSet
    }
}

fn zero_tv(t: *const libc::timeval) -> bool {
    // SAFETY: the caller's timeout, NULL (wait forever) or valid for the call.
    !t.is_null() && unsafe { (*t).tv_sec == 0 && (*t).tv_usec == 0 }
}

fn zero_ts(t: *const libc::timespec) -> bool {
    // SAFETY: as `zero_tv`.
    !t.is_null() && unsafe { (*t).tv_sec == 0 && (*t).tv_nsec == 0 }
}
type Sa = *mut libc::sockaddr;
type Sl = *mut libc::socklen_t;
type Ev = *mut libc::epoll_event;
type Ss = *const libc::sigset_t;
type Fs = *mut libc::fd_set;
type Tv = *mut libc::timeval;
type Ts = *const libc::timespec;
type Tsm = *mut libc::timespec;
type Cv = *mut libc::pthread_cond_t;
type Mx = *mut libc::pthread_mutex_t;
type CondWait = unsafe extern "C" fn(Cv, Mx) -> c_int;
type CondTimedWait = unsafe extern "C" fn(Cv, Mx, Ts) -> c_int;

wrap!(epoll_wait, __mcr_epoll_wait, (ep: c_int, ev: Ev, n: c_int, t: c_int) -> c_int, set_unless(t == 0), neg, ep);
wrap!(epoll_pwait, __mcr_epoll_pwait, (ep: c_int, ev: Ev, n: c_int, t: c_int, s: Ss) -> c_int, set_unless(t == 0), neg, ep);
wrap!(select, __mcr_select, (n: c_int, r: Fs, w: Fs, e: Fs, t: Tv) -> c_int, set_unless(zero_tv(t)), neg, -1);
wrap!(pselect, __mcr_pselect, (n: c_int, r: Fs, w: Fs, e: Fs, t: Ts, s: Ss) -> c_int, set_unless(zero_ts(t)), neg, -1);
wrap!(poll, __mcr_poll, (p: *mut libc::pollfd, n: libc::nfds_t, t: c_int) -> c_int, set_unless(t == 0), neg, -1);
wrap!(ppoll, __mcr_ppoll, (p: *mut libc::pollfd, n: libc::nfds_t, t: Ts, s: Ss) -> c_int, set_unless(zero_ts(t)), neg, -1);
wrap!(read, __mcr_read, (fd: c_int, b: *mut c_void, n: size_t) -> ssize_t, Data(fd), neg, fd,
      |r| crate::interpose::startup_inputs::after_read(fd, b, r));
wrap!(readv, __mcr_readv, (fd: c_int, v: *const libc::iovec, n: c_int) -> ssize_t, Data(fd), neg, fd);
wrap!(recv, __mcr_recv, (fd: c_int, b: *mut c_void, n: size_t, f: c_int) -> ssize_t, Data(fd), neg, fd);
wrap!(recvfrom, __mcr_recvfrom, (fd: c_int, b: *mut c_void, n: size_t, f: c_int, a: Sa, l: Sl) -> ssize_t, Data(fd), neg, fd);
wrap!(recvmsg, __mcr_recvmsg, (fd: c_int, m: *mut libc::msghdr, f: c_int) -> ssize_t, Data(fd), neg, fd);
wrap!(waitpid, __mcr_waitpid, (p: libc::pid_t, s: *mut c_int, o: c_int) -> libc::pid_t, if o & libc::WNOHANG != 0 { NoWait } else { Wait }, neg, -1);
wrap!(wait, __mcr_wait, (s: *mut c_int) -> libc::pid_t, Wait, neg, -1);
wrap!(sigwaitinfo, __mcr_sigwaitinfo, (s: Ss, i: *mut libc::siginfo_t) -> c_int, EventWait, neg, -1);
wrap!(sigtimedwait, __mcr_sigtimedwait, (s: Ss, i: *mut libc::siginfo_t, t: Ts) -> c_int, if zero_ts(t) { NoWait } else { EventWait }, neg, -1);
wrap!(nanosleep, __mcr_nanosleep, (t: Ts, r: Tsm) -> c_int, Sleep, neg, -1);
wrap!(clock_nanosleep, __mcr_clock_nanosleep, (c: libc::clockid_t, f: c_int, t: Ts, r: Tsm) -> c_int, Sleep, |r: c_int| r == libc::EINTR, -1);
wrap!(usleep, __mcr_usleep, (u: libc::useconds_t) -> c_int, Sleep, neg, -1);
wrap!(pause, __mcr_pause, () -> c_int, EventWait, neg, -1);
// `sigsuspend` always ends in EINTR, and the program acts on the flags its
// handlers set before it calls again (nginx's master loop): an
// interruption of ours is handed back to it, never retried, so a signal of
// its own that came with ours is not slept through. It parks at its next
// call.
wrap!(sigsuspend, __mcr_sigsuspend, (s: Ss) -> c_int, EventWait, |_: c_int| false, -1);

/// `sigwait` reports errors by return value, not `errno`.
///
/// # Safety
/// Same contract as `sigwait`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_sigwait(s: Ss, sig: *mut c_int) -> c_int {
    let f = real!(sigwait: fn(Ss, *mut c_int) -> c_int);
    let w = Wrapper {
        name: "sigwait",
        entries: [
            __mcr_sigwait as unsafe extern "C" fn(Ss, *mut c_int) -> c_int as usize,
            0,
        ],
        fd: -1,
    };
    blocking(
        &w,
        EventWait,
        || {
            // SAFETY: forwarding the caller's arguments.
            let r = unsafe { f(s, sig) };
            if r != 0 {
                // SAFETY: errno is thread-local.
                unsafe { *libc::__errno_location() = r };
            }
            r
        },
        |r| r == libc::EINTR,
    )
}

/// `sleep` returns the seconds left; an interruption of ours sleeps again.
///
/// # Safety
/// Same contract as `sleep`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_sleep(s: c_uint) -> c_uint {
    let f = real!(nanosleep: fn(Ts, Tsm) -> c_int);
    let w = Wrapper {
        name: "sleep",
        entries: [
            __mcr_sleep as unsafe extern "C" fn(c_uint) -> c_uint as usize,
            0,
        ],
        fd: -1,
    };
    let ts = libc::timespec {
        tv_sec: s as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; remaining time is not needed.
    let r = blocking(&w, Sleep, || unsafe { f(&ts, std::ptr::null_mut()) }, neg);
    if r == 0 {
        0
    } else {
        s
    }
}

/// # Safety
/// Same contract as `pthread_cond_wait`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_pthread_cond_wait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
) -> c_int {
    let f = real!(pthread_cond_wait: fn(*mut libc::pthread_cond_t, *mut libc::pthread_mutex_t) -> c_int);
    let w = Wrapper {
        name: "pthread_cond_wait",
        entries: [__mcr_pthread_cond_wait as CondWait as usize, 0],
        fd: -1,
    };
    // SAFETY: forwarding the caller's arguments.
    blocking_cond(&w, m, || unsafe { f(c, m) })
}

/// # Safety
/// Same contract as `pthread_cond_timedwait`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_pthread_cond_timedwait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
    t: Ts,
) -> c_int {
    let f = real!(pthread_cond_timedwait: fn(*mut libc::pthread_cond_t, *mut libc::pthread_mutex_t, Ts) -> c_int);
    let w = Wrapper {
        name: "pthread_cond_timedwait",
        entries: [__mcr_pthread_cond_timedwait as CondTimedWait as usize, 0],
        fd: -1,
    };
    // SAFETY: forwarding the caller's arguments.
    blocking_cond(&w, m, || unsafe { f(c, m, t) })
}

type Accept = unsafe extern "C" fn(c_int, Sa, Sl) -> c_int;
type Accept4 = unsafe extern "C" fn(c_int, Sa, Sl, c_int) -> c_int;

/// `accept`: after an update it may be answered with a connection a thread
/// of the old version held (see `held_connections`).
///
/// # Safety
/// Same contract as `accept`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_accept(fd: c_int, a: Sa, l: Sl) -> c_int {
    let f = real!(accept: fn(c_int, Sa, Sl) -> c_int);
    let w = Wrapper {
        name: "accept",
        entries: [__mcr_accept as Accept as usize, accept as Accept as usize],
        fd,
    };
    // SAFETY: forwarding the caller's arguments, under `accept`'s contract.
    let call =
        || unsafe { crate::interpose::held_connections::accept(fd, a, l, 0, || f(fd, a, l)) };
    blocking(&w, EventWait, call, neg)
}

/// # Safety
/// Same contract as `accept`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, a: Sa, l: Sl) -> c_int {
    // SAFETY: same arguments, same contract.
    unsafe { __mcr_accept(fd, a, l) }
}

/// `accept4`, as `accept`; its flags apply to a held connection too.
///
/// # Safety
/// Same contract as `accept4`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_accept4(fd: c_int, a: Sa, l: Sl, fl: c_int) -> c_int {
    let f = real!(accept4: fn(c_int, Sa, Sl, c_int) -> c_int);
    let w = Wrapper {
        name: "accept4",
        entries: [
            __mcr_accept4 as Accept4 as usize,
            accept4 as Accept4 as usize,
        ],
        fd,
    };
    // SAFETY: forwarding the caller's arguments, under `accept4`'s contract.
    let call =
        || unsafe { crate::interpose::held_connections::accept(fd, a, l, fl, || f(fd, a, l, fl)) };
    blocking(&w, EventWait, call, neg)
}

/// # Safety
/// Same contract as `accept4`.
#[no_mangle]
pub unsafe extern "C" fn accept4(fd: c_int, a: Sa, l: Sl, fl: c_int) -> c_int {
    // SAFETY: same arguments, same contract.
    unsafe { __mcr_accept4(fd, a, l, fl) }
}
