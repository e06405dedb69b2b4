//! The program's thread-local variables (`__thread`, `_Thread_local`), in
//! every program thread.
//!
//! `mcr-pass` gives each one an accessor, a function returning its address
//! in the calling thread (docs/ABI.md). The runtime calls it once, on any
//! thread, and keeps the distance from that thread's `pthread_self()`:
//! the executable's TLS block is static TLS (module 1), laid out at the same
//! distance from the thread descriptor in every thread (glibc allocates
//! descriptor and static TLS together, below the thread pointer on x86-64),
//! so the variable of any thread is at `its pthread_t + distance`. This
//! needs no ELF parsing and no knowledge of the TLS model the compiler
//! chose (local-exec, initial-exec, or a `__tls_get_addr` call the linker
//! relaxed). The threads are the runtime's registry (`threads`), which
//! knows each one's `pthread_t`; threads it does not know (started by code
//! mcr-cc did not compile) are not covered.

use crate::program::sections::{self, GLOBAL_THREAD_LOCAL, GLOBAL_TLS_ACCESSOR};
use crate::program::threads::{self, ThreadRec};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

/// One thread-local variable of the program.
pub struct TlsVar {
    /// Its type-map name (the identity of a global).
    pub name: &'static str,
    pub type_name: &'static str,
    pub size: usize,
    /// Its address minus `pthread_self()`, the same in every thread.
    pub offset: isize,
}

/// Every thread-local variable of the executable that has an accessor.
pub fn vars() -> &'static [TlsVar] {
    static VARS: OnceLock<Vec<TlsVar>> = OnceLock::new();
    VARS.get_or_init(|| {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as isize;
        sections::globals()
            .iter()
            .filter(|d| {
                d.flags & (GLOBAL_THREAD_LOCAL | GLOBAL_TLS_ACCESSOR)
                    == GLOBAL_THREAD_LOCAL | GLOBAL_TLS_ACCESSOR
                    && !d.addr.is_null()
            })
            .map(|d| {
                // SAFETY: with GLOBAL_TLS_ACCESSOR, `addr` is the function
                // mcr-pass defined: no arguments, returns a pointer, touches
                // nothing but the calling thread's TLS.
                let f: extern "C" fn() -> *mut u8 = unsafe { std::mem::transmute(d.addr) };
                TlsVar {
                    name: sections::cstr(d.name),
                    type_name: sections::cstr(d.type_name),
                    size: d.size as usize,
                    offset: f() as isize - me,
                }
            })
            .collect()
    })
}

/// The address of `v` in the thread whose `pthread_t` is `pthread`.
pub fn addr_in(v: &TlsVar, pthread: usize) -> usize {
    (pthread as isize + v.offset) as usize
}

/// How a thread is recognised in another version of the program: its
/// start routine's name (`main` for the main thread) and its rank among
/// the threads created with that routine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ThreadKey {
    pub start: String,
    pub ordinal: u32,
}

/// The name of the function at `addr` in this executable ("?" if its
/// symbol table does not say: stripped).
fn function_name(addr: usize) -> String {
    crate::base::own_binary::functions()
        .iter()
        .find(|(_, a)| *a == addr as u64)
        .map_or_else(|| "?".to_string(), |(n, _)| n.clone())
}

pub fn key_of(t: &ThreadRec) -> ThreadKey {
    ThreadKey {
        start: if t.is_main {
            "main".into()
        } else {
            function_name(t.start)
        },
        ordinal: t.ordinal,
    }
}

/// One thread-local variable of one thread.
pub struct Instance {
    pub var: &'static TlsVar,
    pub addr: usize,
}

/// The live program threads with their thread-local variables. Only
/// meaningful while those threads cannot exit (quiesced, or parked at the
/// end of start-up): a thread's TLS goes with it.
pub fn per_thread() -> Vec<(&'static ThreadRec, Vec<Instance>)> {
    let vars = vars();
    if vars.is_empty() {
        return Vec::new();
    }
    threads::all()
        .into_iter()
        .filter(|t| t.alive.load(Ordering::SeqCst) && t.pthread != 0)
        .map(|t| {
            let inst = vars
                .iter()
                .map(|v| Instance {
                    var: v,
                    addr: addr_in(v, t.pthread),
                })
                .collect();
            (t, inst)
        })
        .collect()
}

/// A thread of this process and its counterpart in the old version's
/// checkpoint.
pub struct Paired<'s> {
    pub old: &'s SavedThread,
    pub new: Vec<Instance>,
}

/// `name` of the thread `key`, as errors and the debug log name it.
pub fn instance_label(name: &str, key: &ThreadKey) -> String {
    format!("{name} (thread {}#{})", key.start, key.ordinal)
}

/// Pairs this process's threads with the old version's, by start routine
/// and rank; threads without a counterpart on either side are left out
/// (their variables keep what this version's start-up put there).
pub fn pair(saved: &[SavedThread]) -> Vec<Paired<'_>> {
    let mut out = Vec::new();
    let mut here = per_thread();
    for old in saved {
        if let Some(i) = here.iter().position(|(t, _)| key_of(t) == old.key) {
            let (_, new) = here.swap_remove(i);
            out.push(Paired { old, new });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    std::thread_local! {
        static PROBE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn probe_addr() -> usize {
        PROBE.with(|p| p as *const _ as usize)
    }

    /// The premise of `addr_in`: a thread-local of the executable is at the
    /// same distance from `pthread_self()` in every thread.
    #[test]
    fn static_tls_is_at_a_fixed_distance_from_the_thread_descriptor() {
        // SAFETY: pthread_self has no preconditions.
        let here = probe_addr() as isize - unsafe { libc::pthread_self() } as isize;
        let (addr, pt) = std::thread::spawn(|| {
            PROBE.with(|p| p.set(7));
            // SAFETY: as above.
            (probe_addr(), unsafe { libc::pthread_self() } as usize)
        })
        .join()
        .unwrap();
        let v = TlsVar {
            name: "PROBE",
            type_name: "unsigned long",
            size: 8,
            offset: here,
        };
        assert_eq!(addr_in(&v, pt), addr);
    }
}

/// The thread-local variables of one program thread.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SavedThread {
    pub key: ThreadKey,
    /// As globals; `addr` is the variable's address in that thread.
    pub vars: Vec<crate::program::globals::SavedGlobal>,
}
