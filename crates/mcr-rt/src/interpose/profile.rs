//! `mcr-ctl profile`: where each program thread spends its time blocked,
//! per blocking call site. The calls a thread waits in most are the tops of
//! its loops, i.e. its quiescent points; `mcr-ctl` keeps them with the
//! build and hands them to later updates. Recording costs two clock reads
//! and a stack walk per blocking call, and only while a profile runs.

use crate::base::static_name::StaticName;
use crate::program::threads::{BlockState, ThreadRec};
use mcr_types::protocol::{BlockingSite, CodeRef, ProfileReport, ProfiledThread};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A profile is being recorded.
pub static PROFILING: AtomicBool = AtomicBool::new(false);

/// One (thread, call site) pair; claimed once with a CAS on `site`.
struct Slot {
    site: AtomicUsize,
    tid: AtomicI32,
    call: StaticName,
    calls: AtomicU64,
    blocked_ns: AtomicU64,
}

const SLOTS: usize = 1024;
static TABLE: [Slot; SLOTS] = [const {
    Slot {
        site: AtomicUsize::new(0),
        tid: AtomicI32::new(0),
        call: StaticName::new(),
        calls: AtomicU64::new(0),
        blocked_ns: AtomicU64::new(0),
    }
}; SLOTS];
/// Pairs that found the table full (reported, so a truncated profile shows).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Adds one blocking call of `tid` at `site` that took `ns`.
pub fn record(site: usize, tid: i32, call: &'static str, ns: u64) {
    // An unknown site still counts, under 1 (0 marks a free slot).
    let key = site.max(1);
    let start = (key ^ (tid as usize).wrapping_mul(0x9e37_79b9)) % SLOTS;
    for i in 0..SLOTS {
        let s = &TABLE[(start + i) % SLOTS];
        let cur = s.site.load(Ordering::Acquire);
        let mine = if cur == 0 {
            match s
                .site
                .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    s.tid.store(tid, Ordering::Release);
                    s.call.store(call);
                    true
                }
                Err(other) => other == key && s.tid.load(Ordering::Acquire) == tid,
            }
        } else {
            cur == key && s.tid.load(Ordering::Acquire) == tid
        };
        if mine {
            s.calls.fetch_add(1, Ordering::Relaxed);
            s.blocked_ns.fetch_add(ns, Ordering::Relaxed);
            return;
        }
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

fn clear() {
    for s in &TABLE {
        s.calls.store(0, Ordering::Relaxed);
        s.blocked_ns.store(0, Ordering::Relaxed);
        s.tid.store(0, Ordering::Relaxed);
        s.site.store(0, Ordering::Release);
    }
    DROPPED.store(0, Ordering::Relaxed);
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A blocking call begins while profiling.
pub fn enter(rec: &ThreadRec, site: usize, call: &'static str) {
    let c = &rec.profile;
    c.site.store(site, Ordering::Relaxed);
    c.name.store(call);
    c.since.store(now_ns(), Ordering::Release);
}

/// The call [`enter`]ed ends; counted unless the profile's end already
/// counted it.
pub fn leave(rec: &ThreadRec) {
    let since = rec.profile.since.swap(0, Ordering::AcqRel);
    if since != 0 {
        record_call(rec, now_ns().saturating_sub(since));
    }
}

fn record_call(rec: &ThreadRec, ns: u64) {
    let c = &rec.profile;
    let call = c.name.load();
    record(
        c.site.load(Ordering::Relaxed),
        rec.tid.load(Ordering::Relaxed),
        call,
        ns,
    );
}

/// Records for `duration`, then reports. Runs on the control thread; the
/// program's threads keep serving throughout.
///
/// Threads already blocked when it starts are interrupted once (like
/// quiescence does, the wrapper retries the call) so their call sites are
/// seen; calls still blocked when it ends count up to the end. Condition
/// waits cannot be interrupted: one that began before the profile and
/// outlasts it is counted at an unknown site.
pub fn run(duration: Duration) -> Result<ProfileReport, String> {
    if PROFILING.swap(true, Ordering::SeqCst) {
        return Err("a profile is already being recorded".into());
    }
    clear();
    let start = now_ns();
    for t in crate::program::threads::all() {
        if t.state() == BlockState::Interruptible {
            t.profile.kicked.store(true, Ordering::SeqCst);
            crate::program::threads::interrupt(t);
        }
    }
    std::thread::sleep(duration);
    PROFILING.store(false, Ordering::SeqCst);
    let end = now_ns();
    for t in crate::program::threads::all() {
        t.profile.kicked.store(false, Ordering::SeqCst);
        let since = t.profile.since.swap(0, Ordering::AcqRel);
        if since != 0 {
            record_call(t, end.saturating_sub(since));
        } else if t.state() == BlockState::Uninterruptible {
            record(
                0,
                t.tid.load(Ordering::Relaxed),
                "condition wait",
                end - start,
            );
        }
    }
    let libraries = crate::base::own_binary::libraries();
    let mut threads: Vec<ProfiledThread> = crate::program::threads::all()
        .iter()
        .map(|t| ProfiledThread {
            tid: t.tid.load(Ordering::SeqCst),
            is_main: t.is_main,
            sites: vec![],
        })
        .collect();
    for s in &TABLE {
        let site = s.site.load(Ordering::Acquire);
        if site == 0 {
            continue;
        }
        let tid = s.tid.load(Ordering::Acquire);
        let call = s.call.load();
        let entry = BlockingSite {
            at: if site > 1 {
                code_ref(site as u64, &libraries)
            } else {
                CodeRef::default()
            },
            call: call.to_string(),
            calls: s.calls.load(Ordering::Relaxed),
            blocked_ns: s.blocked_ns.load(Ordering::Relaxed),
        };
        match threads.iter_mut().find(|t| t.tid == tid) {
            Some(t) => t.sites.push(entry),
            // A thread that ended during the window.
            None => threads.push(ProfiledThread {
                tid,
                is_main: false,
                sites: vec![entry],
            }),
        }
    }
    for t in &mut threads {
        t.sites.sort_by_key(|s| std::cmp::Reverse(s.blocked_ns));
    }
    let dropped = DROPPED.load(Ordering::Relaxed);
    if dropped > 0 {
        return Err(format!(
            "profile table full ({SLOTS} thread/site pairs, {dropped} calls not counted)"
        ));
    }
    Ok(ProfileReport {
        duration_ms: duration.as_millis() as u64,
        threads,
    })
}

/// Quiescent points in force during an update (absolute addresses, sorted);
/// empty: every blocking call is one.
static QUIESCENT_SITES: std::sync::RwLock<Vec<usize>> = std::sync::RwLock::new(Vec::new());
static USE_SITES: AtomicBool = AtomicBool::new(false);

/// A code address of this process as module + offset.
fn code_ref(pc: u64, libraries: &[(String, u64, u64)]) -> CodeRef {
    let (base, end) = crate::base::own_binary::load_span();
    if (base..end).contains(&pc) {
        return CodeRef {
            module: String::new(),
            offset: pc - base,
        };
    }
    match libraries.iter().find(|(_, a, b)| (*a..*b).contains(&pc)) {
        Some((path, start, _)) => CodeRef {
            module: path.clone(),
            offset: pc - start,
        },
        None => CodeRef {
            module: "?".into(),
            offset: pc,
        },
    }
}

/// Installs the profile's quiescent points for one update; `None` restores
/// the default. A point in a library this process has not loaded is skipped.
pub fn set_quiescent_sites(sites: Option<&[CodeRef]>) {
    let (base, _) = crate::base::own_binary::load_span();
    let libraries = if sites.is_some_and(|s| s.iter().any(|c| !c.module.is_empty())) {
        crate::base::own_binary::libraries()
    } else {
        vec![]
    };
    let mut w = QUIESCENT_SITES.write().unwrap_or_else(|e| e.into_inner());
    w.clear();
    for c in sites.unwrap_or_default() {
        let start = if c.module.is_empty() {
            Some(base)
        } else {
            libraries.iter().find(|l| l.0 == c.module).map(|l| l.1)
        };
        if let Some(start) = start {
            w.push((start + c.offset) as usize);
        }
    }
    w.sort_unstable();
    USE_SITES.store(sites.is_some(), Ordering::SeqCst);
}

/// Whether a blocking call made from `site` is a quiescent point.
pub fn is_quiescent_site(site: impl FnOnce() -> usize) -> bool {
    if !USE_SITES.load(Ordering::SeqCst) {
        return true;
    }
    let site = site();
    QUIESCENT_SITES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .binary_search(&site)
        .is_ok()
}

/// Whether quiescent points come from a profile right now.
pub fn sites_in_force() -> bool {
    USE_SITES.load(Ordering::SeqCst)
}
