//! One record of the start-up log: a long-lived resource a call of the
//! old version's start-up made (its kind, the arguments that identify it,
//! its descriptors, what became of them), or an identity call and the
//! credentials it left. Recorded by the old version, claimed by the new
//! version's start-up (`startup_log`).

use libc::c_int;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub kind: String,
    /// The arguments that identify the resource (`2,1,0` for an IPv4 TCP socket).
    pub key: String,
    pub fds: Vec<c_int>,
    /// Hex of the address passed to `bind`.
    #[serde(default)]
    pub bound: Option<String>,
    #[serde(default)]
    pub listening: bool,
    /// Still open (not closed through `close`) at checkpoint time: some of
    /// its descriptors at least.
    pub open: bool,
    /// Descriptors of `fds` the program closed (a master closes the
    /// worker's end of a socketpair after `fork`). Such an entry is never
    /// replayed: the closed number may be another resource's by now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<c_int>,
    /// `fork`: the child's pid (entries of this kind have no descriptors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// A process identity call (`setuid`, `setgroups`, `setsid`, ...; see
    /// `identity.rs`): its result and the credentials it left. Such entries
    /// have no descriptors; `key` holds the call's arguments as written in C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Outcome>,
    #[serde(skip)]
    pub claimed: bool,
    /// Paired with a call of the new start-up that got a fresh resource,
    /// because this one was closed (see `claim`).
    #[serde(skip)]
    pub passed_over: bool,
    /// Made by this process's own start-up during replay (no old
    /// counterpart): logged for the next update, never handed out.
    #[serde(skip)]
    pub fresh: bool,
}

impl Entry {
    /// A resource of `kind` start-up just made: open, not paired.
    pub(crate) fn new(kind: &str, key: String) -> Entry {
        Entry {
            kind: kind.into(),
            key,
            fds: vec![],
            bound: None,
            listening: false,
            open: true,
            closed: vec![],
            pid: None,
            identity: None,
            claimed: false,
            passed_over: false,
            fresh: false,
        }
    }
}

/// What an identity call did in the process that made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The call's return value.
    pub result: i64,
    /// `errno` when it failed, else 0.
    #[serde(default)]
    pub errno: i32,
    /// Real, effective and saved user ids right after the call.
    pub uids: [u32; 3],
    /// Real, effective and saved group ids right after the call.
    pub gids: [u32; 3],
    /// Supplementary groups right after the call, sorted.
    pub groups: Vec<u32>,
    /// `prctl(PR_GET_DUMPABLE)` right after the call (a change of
    /// credentials clears it; the replayed call must not leave the new
    /// process open to ptrace by the unprivileged user).
    #[serde(default)]
    pub dumpable: i32,
}
