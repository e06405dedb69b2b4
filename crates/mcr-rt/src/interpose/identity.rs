//! Process identity calls of start-up: credentials (`setuid`, `setgid`,
//! `setgroups`, `initgroups` and the `e`/`re`/`res` forms) and session and
//! process group (`setsid`, `setpgid`, `setpgrp`).
//!
//! Why they need replaying: servers drop their privileges at start-up
//! (memcached `-u`, vsftpd, a daemon's `setuid(nobody)`) and daemons call
//! `setsid`. The new version is spawned by the old process, so it starts
//! with the old process's *current* credentials (already dropped) and inside
//! its session. Run for real, `setgroups` as nobody fails with `EPERM` and
//! the program exits ("can't drop privileges").
//!
//! Old version: each call of start-up is logged in the start-up log (kind =
//! the call's name, key = its arguments as written in C, and an [`Outcome`]:
//! result, errno, the credentials it left). New version's start-up: each
//! call is matched with the old start-up's next call of the same name
//! (call order), then:
//! - same arguments, the old call failed: the same failure, no kernel call;
//! - same arguments, its effect already holds (the real/effective/saved
//!   ids or the supplementary groups equal what the old call left; already
//!   leader of its process group): the old result, no kernel call;
//! - otherwise (effect missing, other arguments, no old counterpart): the
//!   call is made. A credential call the kernel then refuses with `EPERM`
//!   rolls the update back with a message naming the call, the old
//!   start-up's call and this process's credentials: the new version cannot
//!   take credentials the old one gave up (unless the old start-up's call
//!   was refused too: the program lived with that, the failure is its).
//!
//! `setsid` never "already holds": the new version is a member of the old
//! version's session, not its leader, so it is made for real and the new
//! version leads a session of its own, as after a fresh start
//! (docs/decisions.md says why).
//!
//! Calls after start-up are neither logged nor replayed. `chroot` is not
//! covered, nor `daemon(3)`, whose `fork`/`setsid` are libc-internal calls
//! (made for real in both versions).

use crate::base::libc_calls::real;
use crate::interpose::startup_log::{self, Outcome};
use libc::{c_char, c_int, gid_t, pid_t, size_t, uid_t};

/// The part of the process's identity a call changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Affects {
    Uids,
    Gids,
    Groups,
    Session,
    ProcessGroup,
}

impl Affects {
    fn is_credential(self) -> bool {
        matches!(self, Affects::Uids | Affects::Gids | Affects::Groups)
    }
}

/// The calling process's credentials.
struct Creds {
    uids: [u32; 3],
    gids: [u32; 3],
    groups: Vec<u32>,
}

fn creds() -> Creds {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut gr, mut ge, mut gs) = (0, 0, 0);
    // SAFETY: out-parameters on our stack.
    unsafe {
        libc::getresuid(&mut r, &mut e, &mut s);
        libc::getresgid(&mut gr, &mut ge, &mut gs);
    }
    Creds {
        uids: [r, e, s],
        gids: [gr, ge, gs],
        groups: current_groups(),
    }
}

fn current_groups() -> Vec<u32> {
    // SAFETY: getgroups(0, NULL) only counts.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut v = vec![0 as gid_t; n.max(0) as usize];
    // SAFETY: room for n groups.
    let n = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    v.truncate(n.max(0) as usize);
    sorted(v)
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

fn dumpable() -> i32 {
    // SAFETY: prctl query without pointers.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }
}

fn outcome(result: i64, errno: i32) -> Outcome {
    let c = creds();
    Outcome {
        result,
        errno: if result < 0 { errno } else { 0 },
        uids: c.uids,
        gids: c.gids,
        groups: c.groups,
        dumpable: dumpable(),
    }
}

fn set_errno(e: c_int) {
    // SAFETY: errno's location is thread-local and always valid.
    unsafe { *libc::__errno_location() = e };
}

fn strerror(e: c_int) -> String {
    // SAFETY: strerror returns a NUL-terminated static or thread-local string.
    unsafe { std::ffi::CStr::from_ptr(libc::strerror(e)) }
        .to_string_lossy()
        .into_owned()
}

fn ids(v: &[u32; 3]) -> String {
    format!("{}/{}/{}", v[0], v[1], v[2])
}

fn group_list(v: &[u32]) -> String {
    let s: Vec<String> = v.iter().map(u32::to_string).collect();
    format!("{{{}}}", s.join(", "))
}

/// The credentials, in words (for rollback messages).
fn describe(c: &Creds) -> String {
    format!(
        "real/effective/saved uid {}, gid {}, supplementary groups {}",
        ids(&c.uids),
        ids(&c.gids),
        group_list(&c.groups)
    )
}

/// Whether the effect the old call had already holds in this process.
fn holds(affects: Affects, args: &str, old: &Outcome) -> bool {
    let now = creds();
    match affects {
        Affects::Uids => now.uids == old.uids,
        Affects::Gids => now.gids == old.gids,
        Affects::Groups => now.groups == old.groups,
        // A spawned new version is a member of the old session, never its
        // leader: setsid is always made for real.
        Affects::Session => false,
        // SAFETY: getpgid/getpid of ourselves.
        Affects::ProcessGroup => args == "0, 0" && unsafe { libc::getpgid(0) == libc::getpid() },
    }
}

/// Makes the call. A start-up child of a replaying master dies with it
/// until commit (`PR_SET_PDEATHSIG`, see children.rs), a setting the
/// kernel clears when credentials change: it is set again.
fn perform(real: impl FnOnce() -> c_int) -> (c_int, c_int) {
    let mut sig: c_int = 0;
    // SAFETY: prctl with an out-parameter on our stack.
    unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut c_int) };
    let r = real();
    let e = crate::base::libc_calls::errno();
    if sig == libc::SIGKILL && crate::interpose::children::awaiting_commit() {
        // SAFETY: prctl on ourselves with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    (r, e)
}

/// One identity call: logged in the old start-up, matched in the new one.
/// `noop`: whether the call, with these arguments, would change nothing
/// (only asked when no old call with the same arguments decides).
fn call(
    name: &'static str,
    args: String,
    affects: Affects,
    noop: impl FnOnce() -> bool,
    real: impl FnOnce() -> c_int,
) -> c_int {
    if startup_log::is_replaying() {
        return replay(name, args, affects, noop, real);
    }
    let (r, e) = perform(real);
    if startup_log::is_recording() && !startup_log::is_startup_over() {
        startup_log::record_identity(name, args, outcome(r as i64, e));
    }
    set_errno(e);
    r
}

fn replay(
    name: &'static str,
    args: String,
    affects: Affects,
    noop: impl FnOnce() -> bool,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let old = startup_log::claim_identity(name);
    if let Some((_, e)) = &old {
        let was = e.identity.as_ref().expect("identity entry");
        if e.key == args {
            if was.result < 0 {
                set_errno(was.errno);
                return was.result as c_int;
            }
            if holds(affects, &args, was) {
                if was.dumpable == 0 && dumpable() != 0 {
                    // SAFETY: prctl on ourselves with integer arguments.
                    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
                }
                return was.result as c_int;
            }
        }
    }
    // setgroups is refused to an unprivileged process even when it would
    // change nothing.
    let (r, e) = if affects == Affects::Groups && noop() {
        (0, 0)
    } else {
        perform(real)
    };
    // Refused: the new version cannot take what the old one gave up. Unless
    // the old start-up's call was refused too (and survived that).
    let old_failed = old
        .as_ref()
        .is_some_and(|(_, o)| o.identity.as_ref().is_some_and(|w| w.result < 0));
    if r < 0 && e == libc::EPERM && affects.is_credential() && !old_failed {
        let mine = describe(&creds());
        let msg = match &old {
            Some((_, o)) if o.key == args => format!(
                "{name}({args}) in the new version's start-up: the old version's start-up made the same call \
                 and it succeeded, but the kernel refuses it here ({}): this process runs with the credentials \
                 the old version has now ({mine})",
                strerror(e)
            ),
            Some((_, o)) => format!(
                "{name}({args}) in the new version's start-up does not match the old version's start-up, \
                 which called {name}({}): this process runs with the credentials the old version has now \
                 ({mine}) and cannot take others ({}); restart the program to change them",
                o.key,
                strerror(e)
            ),
            None => format!(
                "{name}({args}) in the new version's start-up has no counterpart in the old version's \
                 start-up and the kernel refuses it ({}): this process runs with the credentials the old \
                 version has now ({mine}); restart the program to change them",
                strerror(e)
            ),
        };
        crate::base::update_link::fail(&msg);
    }
    let out = outcome(r as i64, e);
    match old {
        Some((i, _)) => startup_log::amend_identity(i, args, out),
        None => startup_log::record_identity(name, args, out),
    }
    set_errno(e);
    r
}

/// An id argument as written in C (`-1` leaves it unchanged).
fn id(v: u32) -> String {
    if v == u32::MAX {
        "-1".into()
    } else {
        v.to_string()
    }
}

fn never() -> bool {
    false
}

/// # Safety
/// Same contract as `setuid`.
#[no_mangle]
pub unsafe extern "C" fn setuid(u: uid_t) -> c_int {
    let f = real!(setuid: fn(uid_t) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    call("setuid", id(u), Affects::Uids, never, || unsafe { f(u) })
}

/// # Safety
/// Same contract as `seteuid`.
#[no_mangle]
pub unsafe extern "C" fn seteuid(u: uid_t) -> c_int {
    let f = real!(seteuid: fn(uid_t) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    call("seteuid", id(u), Affects::Uids, never, || unsafe { f(u) })
}

/// # Safety
/// Same contract as `setreuid`.
#[no_mangle]
pub unsafe extern "C" fn setreuid(r: uid_t, e: uid_t) -> c_int {
    let f = real!(setreuid: fn(uid_t, uid_t) -> c_int);
    let args = format!("{}, {}", id(r), id(e));
    // SAFETY: forwarding the caller's arguments.
    call("setreuid", args, Affects::Uids, never, || unsafe {
        f(r, e)
    })
}

/// # Safety
/// Same contract as `setresuid`.
#[no_mangle]
pub unsafe extern "C" fn setresuid(r: uid_t, e: uid_t, s: uid_t) -> c_int {
    let f = real!(setresuid: fn(uid_t, uid_t, uid_t) -> c_int);
    let args = format!("{}, {}, {}", id(r), id(e), id(s));
    // SAFETY: forwarding the caller's arguments.
    call("setresuid", args, Affects::Uids, never, || unsafe {
        f(r, e, s)
    })
}

/// # Safety
/// Same contract as `setgid`.
#[no_mangle]
pub unsafe extern "C" fn setgid(g: gid_t) -> c_int {
    let f = real!(setgid: fn(gid_t) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    call("setgid", id(g), Affects::Gids, never, || unsafe { f(g) })
}

/// # Safety
/// Same contract as `setegid`.
#[no_mangle]
pub unsafe extern "C" fn setegid(g: gid_t) -> c_int {
    let f = real!(setegid: fn(gid_t) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    call("setegid", id(g), Affects::Gids, never, || unsafe { f(g) })
}

/// # Safety
/// Same contract as `setregid`.
#[no_mangle]
pub unsafe extern "C" fn setregid(r: gid_t, e: gid_t) -> c_int {
    let f = real!(setregid: fn(gid_t, gid_t) -> c_int);
    let args = format!("{}, {}", id(r), id(e));
    // SAFETY: forwarding the caller's arguments.
    call("setregid", args, Affects::Gids, never, || unsafe {
        f(r, e)
    })
}

/// # Safety
/// Same contract as `setresgid`.
#[no_mangle]
pub unsafe extern "C" fn setresgid(r: gid_t, e: gid_t, s: gid_t) -> c_int {
    let f = real!(setresgid: fn(gid_t, gid_t, gid_t) -> c_int);
    let args = format!("{}, {}, {}", id(r), id(e), id(s));
    // SAFETY: forwarding the caller's arguments.
    call("setresgid", args, Affects::Gids, never, || unsafe {
        f(r, e, s)
    })
}

/// # Safety
/// Same contract as `setgroups`.
#[no_mangle]
pub unsafe extern "C" fn setgroups(n: size_t, list: *const gid_t) -> c_int {
    let f = real!(setgroups: fn(size_t, *const gid_t) -> c_int);
    let want: Vec<u32> = if n == 0 || list.is_null() {
        vec![]
    } else {
        // SAFETY: the caller passes `n` groups.
        unsafe { std::slice::from_raw_parts(list, n) }.to_vec()
    };
    let args = format!("{n}, {}", group_list(&want));
    let noop = || sorted(want) == current_groups();
    // SAFETY: forwarding the caller's arguments.
    call("setgroups", args, Affects::Groups, noop, || unsafe {
        f(n, list)
    })
}

/// The groups `initgroups(user, g)` would set (None: cannot tell).
fn group_list_of(user: *const c_char, g: gid_t) -> Option<Vec<u32>> {
    let mut n: c_int = 64;
    loop {
        let mut v = vec![0 as gid_t; n as usize];
        let had = n;
        // SAFETY: `v` has room for `n` groups; `n` is updated.
        let r = unsafe { libc::getgrouplist(user, g, v.as_mut_ptr(), &mut n) };
        if r >= 0 {
            v.truncate(n as usize);
            return Some(sorted(v));
        }
        if n <= had || n > 65536 {
            return None;
        }
    }
}

/// # Safety
/// Same contract as `initgroups`.
#[no_mangle]
pub unsafe extern "C" fn initgroups(user: *const c_char, g: gid_t) -> c_int {
    let f = real!(initgroups: fn(*const c_char, gid_t) -> c_int);
    let args = format!("\"{}\", {g}", crate::program::sections::cstr(user));
    let noop = || group_list_of(user, g).is_some_and(|v| v == current_groups());
    // SAFETY: forwarding the caller's arguments.
    call("initgroups", args, Affects::Groups, noop, || unsafe {
        f(user, g)
    })
}

/// # Safety
/// Same contract as `setsid`.
#[no_mangle]
pub unsafe extern "C" fn setsid() -> pid_t {
    let f = real!(setsid: fn() -> pid_t);
    // SAFETY: forwarding the call.
    call(
        "setsid",
        String::new(),
        Affects::Session,
        never,
        || unsafe { f() },
    )
}

/// # Safety
/// Same contract as `setpgid`.
#[no_mangle]
pub unsafe extern "C" fn setpgid(pid: pid_t, pgid: pid_t) -> c_int {
    let f = real!(setpgid: fn(pid_t, pid_t) -> c_int);
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // "Make me the leader of my own group" is spelled several ways; the
    // pid differs between versions, so all are one key.
    let target = if pid == 0 { me } else { pid };
    let args = if target == me && (pgid == 0 || pgid == me) {
        "0, 0".to_string()
    } else {
        format!("{pid}, {pgid}")
    };
    // SAFETY: forwarding the caller's arguments.
    call("setpgid", args, Affects::ProcessGroup, never, || unsafe {
        f(pid, pgid)
    })
}

/// `setpgrp()` is `setpgid(0, 0)` (libc's own call to it is internal).
///
/// # Safety
/// Same contract as `setpgrp`.
#[no_mangle]
pub unsafe extern "C" fn setpgrp() -> c_int {
    // SAFETY: same contract.
    unsafe { setpgid(0, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_in_c() {
        assert_eq!(id(65534), "65534");
        assert_eq!(id(u32::MAX), "-1");
        assert_eq!(group_list(&[]), "{}");
        assert_eq!(group_list(&[4, 65534]), "{4, 65534}");
    }

    #[test]
    fn current_credentials_hold_for_themselves() {
        let c = creds();
        let o = outcome(0, 0);
        assert!(holds(Affects::Uids, "", &o));
        assert!(holds(Affects::Gids, "", &o));
        assert!(holds(Affects::Groups, "", &o));
        assert!(!holds(Affects::Session, "", &o));
        let mut other = o.clone();
        other.uids[1] = c.uids[1].wrapping_add(1);
        assert!(!holds(Affects::Uids, "", &other));
        other.groups.push(u32::MAX - 7);
        assert!(!holds(Affects::Groups, "", &other));
    }

    #[test]
    fn outcome_roundtrips_in_the_log_format() {
        let o = Outcome {
            result: -1,
            errno: libc::EPERM,
            uids: [65534; 3],
            gids: [65534; 3],
            groups: vec![65534],
            dumpable: 0,
        };
        let s = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Outcome>(&s).unwrap(), o);
    }
}
