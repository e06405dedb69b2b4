//! Start-up's nondeterministic inputs: random bytes (`getrandom`,
//! `getentropy`, reads of `/dev/urandom` and `/dev/random`), the clocks
//! (`time`, `gettimeofday`, `clock_gettime`) and the host name
//! (`gethostname`, `uname`), as the main thread's start-up got them.
//!
//! Why: start-up derives state from them that run-time data depends on. A
//! hash seed drawn at start-up (redis's `dictSetHashFunctionSeed`) placed
//! every key the old version stored; a start time (memcached's
//! `process_started`) is what every item's time is relative to. Such a
//! global never changes after start-up, so the globals' rule would give it
//! the new start-up's fresh draw, and the old data would be read with the
//! wrong seed or clock. So the old version logs what each call answered
//! (recording) and the new version's start-up gets the same answers, call
//! for call (replay): its derived state comes out as the old one's.
//!
//! Matching: the k-th call of a kind (and answer length) in the new
//! start-up gets the k-th such answer of the old one; a call with no old
//! counterpart keeps its real answer. Either way the answer is logged
//! again, so the next update replays the same values. The pid is not an
//! input here: the new process really has another one, and a pidfile or
//! `kill(getpid(), ...)` must see it.
//!
//! Only the main thread's calls from program code are covered: `mcr-pass`
//! routes them here (`mcr_types::abi::STARTUP_INPUT_CALLS`), so libraries'
//! and the runtime's own clock reads are never logged; threads other than
//! the main one draw fresh (their order is not reproducible).

use crate::base::libc_calls::real;
use crate::{interpose::startup_log, program::threads};
use libc::{c_char, c_int, c_uint, c_void, size_t, ssize_t};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// One answer start-up got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Input {
    /// What was asked: `random`, `time`, `gettimeofday`, `clock <id>`,
    /// `hostname`, `uname`.
    pub kind: String,
    /// The bytes the call wrote to its caller.
    #[serde(with = "crate::base::hex::hex_bytes")]
    pub bytes: Vec<u8>,
}

/// More than this many inputs in one start-up are not logged (a start-up
/// that reads the clock in a loop); later calls keep their real answers.
const MAX_INPUTS: usize = 100_000;

struct Log {
    /// This start-up's answers, in call order: what the next update replays.
    answered: Vec<Input>,
    /// In replay, the old start-up's answers, and which were given again.
    old: Vec<Input>,
    given: Vec<bool>,
}

static LOG: Mutex<Log> = Mutex::new(Log {
    answered: Vec::new(),
    old: Vec::new(),
    given: Vec::new(),
});

/// The answers this process's start-up got (for the checkpoint).
pub fn entries() -> Vec<Input> {
    LOG.lock().unwrap().answered.clone()
}

/// A new version: its start-up gets `old`'s answers.
pub fn start_replay(old: Vec<Input>) {
    let mut log = LOG.lock().unwrap();
    log.given = vec![false; old.len()];
    log.old = old;
}

/// How many of the old answers start-up was given again, and how many it
/// drew afresh (no old counterpart).
pub fn replay_summary() -> (usize, usize) {
    let log = LOG.lock().unwrap();
    let given = log.given.iter().filter(|g| **g).count();
    (given, log.answered.len().saturating_sub(given))
}

/// Whether a call now is start-up's: the main thread, before its first
/// quiescent point, while recording or replaying.
fn active() -> bool {
    !crate::base::sandbox::confined()
        && !startup_log::is_startup_over()
        && threads::current().is_some_and(|t| t.is_main)
        && (startup_log::is_recording() || startup_log::is_replaying())
}

/// The call wrote `len` bytes at `out` as its answer: logged, and in
/// replay replaced by the old start-up's answer of the same kind and length.
fn answer(kind: &str, out: *mut u8, len: usize) {
    if out.is_null() || len == 0 || !active() {
        return;
    }
    // SAFETY: the call just wrote `len` bytes there for its caller.
    let got = unsafe { std::slice::from_raw_parts_mut(out, len) };
    let mut log = LOG.lock().unwrap();
    if log.answered.len() >= MAX_INPUTS {
        return;
    }
    let Log { old, given, .. } = &mut *log;
    if let Some(i) =
        (0..old.len()).find(|&i| !given[i] && old[i].kind == kind && old[i].bytes.len() == len)
    {
        given[i] = true;
        got.copy_from_slice(&old[i].bytes);
    }
    log.answered.push(Input {
        kind: kind.to_string(),
        bytes: got.to_vec(),
    });
}

/// `fd` reads from a kernel random device (`/dev/random` 1:8,
/// `/dev/urandom` 1:9), however the program opened it.
fn is_random_device(fd: c_int) -> bool {
    let Some(st) = (fd >= 0)
        .then(|| crate::base::descriptor::stat(fd))
        .flatten()
    else {
        return false;
    };
    st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && libc::major(st.st_rdev) == 1
        && matches!(libc::minor(st.st_rdev), 8 | 9)
}

/// After `read(fd, buf, ..)` returned `r`: random bytes are an input.
pub(crate) fn after_read(fd: c_int, buf: *mut c_void, r: ssize_t) -> ssize_t {
    if r > 0 && active() && is_random_device(fd) {
        answer("random", buf as *mut u8, r as usize);
    }
    r
}

fn stream_is_random(f: *mut libc::FILE) -> bool {
    // SAFETY: the caller's open stream.
    !f.is_null() && is_random_device(unsafe { libc::fileno(f) })
}

/// # Safety
/// Same contract as `getrandom`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_getrandom(buf: *mut c_void, n: size_t, fl: c_uint) -> ssize_t {
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real!(getrandom: fn(*mut c_void, size_t, c_uint) -> ssize_t)(buf, n, fl) };
    if r > 0 {
        answer("random", buf as *mut u8, r as usize);
    }
    r
}

/// # Safety
/// Same contract as `getentropy`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_getentropy(buf: *mut c_void, n: size_t) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real!(getentropy: fn(*mut c_void, size_t) -> c_int)(buf, n) };
    if r == 0 {
        answer("random", buf as *mut u8, n);
    }
    r
}

/// # Safety
/// Same contract as `fread`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_fread(
    p: *mut c_void,
    size: size_t,
    n: size_t,
    f: *mut libc::FILE,
) -> size_t {
    let real_fread = real!(fread: fn(*mut c_void, size_t, size_t, *mut libc::FILE) -> size_t);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real_fread(p, size, n, f) };
    if r > 0 && active() && stream_is_random(f) {
        answer("random", p as *mut u8, r * size);
    }
    r
}

/// `fread` under `_FORTIFY_SOURCE`.
///
/// # Safety
/// Same contract as glibc's `__fread_chk`.
#[no_mangle]
pub unsafe extern "C" fn __mcr___fread_chk(
    p: *mut c_void,
    cap: size_t,
    size: size_t,
    n: size_t,
    f: *mut libc::FILE,
) -> size_t {
    let real_fread_chk =
        real!(__fread_chk: fn(*mut c_void, size_t, size_t, size_t, *mut libc::FILE) -> size_t);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real_fread_chk(p, cap, size, n, f) };
    if r > 0 && active() && stream_is_random(f) {
        answer("random", p as *mut u8, r * size);
    }
    r
}

/// # Safety
/// Same contract as `time`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_time(t: *mut libc::time_t) -> libc::time_t {
    // SAFETY: asks for the value only; `t` is written below.
    let mut v = unsafe { real!(time: fn(*mut libc::time_t) -> libc::time_t)(std::ptr::null_mut()) };
    if v != -1 {
        answer(
            "time",
            &mut v as *mut libc::time_t as *mut u8,
            std::mem::size_of::<libc::time_t>(),
        );
    }
    if !t.is_null() {
        // SAFETY: the caller's out-parameter.
        unsafe { *t = v };
    }
    v
}

/// # Safety
/// Same contract as `gettimeofday`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_gettimeofday(tv: *mut libc::timeval, tz: *mut c_void) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real!(gettimeofday: fn(*mut libc::timeval, *mut c_void) -> c_int)(tv, tz) };
    if r == 0 {
        answer(
            "gettimeofday",
            tv as *mut u8,
            std::mem::size_of::<libc::timeval>(),
        );
    }
    r
}

/// # Safety
/// Same contract as `clock_gettime`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_clock_gettime(
    clk: libc::clockid_t,
    ts: *mut libc::timespec,
) -> c_int {
    let real_clock_gettime =
        real!(clock_gettime: fn(libc::clockid_t, *mut libc::timespec) -> c_int);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real_clock_gettime(clk, ts) };
    // The wall and monotonic clocks; CPU-time clocks measure this process.
    let wall_or_monotonic = matches!(
        clk,
        libc::CLOCK_REALTIME
            | libc::CLOCK_MONOTONIC
            | libc::CLOCK_MONOTONIC_RAW
            | libc::CLOCK_REALTIME_COARSE
            | libc::CLOCK_MONOTONIC_COARSE
            | libc::CLOCK_BOOTTIME
    );
    if r == 0 && wall_or_monotonic && active() {
        answer(
            &format!("clock {clk}"),
            ts as *mut u8,
            std::mem::size_of::<libc::timespec>(),
        );
    }
    r
}

/// # Safety
/// Same contract as `gethostname`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_gethostname(name: *mut c_char, len: size_t) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real!(gethostname: fn(*mut c_char, size_t) -> c_int)(name, len) };
    if r == 0 && active() {
        // SAFETY: gethostname wrote at most `len` bytes there.
        let n = unsafe { libc::strnlen(name, len) };
        answer("hostname", name as *mut u8, (n + 1).min(len));
    }
    r
}

/// # Safety
/// Same contract as `uname`.
#[no_mangle]
pub unsafe extern "C" fn __mcr_uname(buf: *mut libc::utsname) -> c_int {
    // SAFETY: forwarding the caller's argument.
    let r = unsafe { real!(uname: fn(*mut libc::utsname) -> c_int)(buf) };
    if r == 0 {
        answer(
            "uname",
            buf as *mut u8,
            std::mem::size_of::<libc::utsname>(),
        );
    }
    r
}
