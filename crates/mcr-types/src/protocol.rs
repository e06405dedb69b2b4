//! The control protocol between `mcr-ctl` and a running program's runtime:
//! one JSON request line, then JSON reply lines, the last one final.
//! Lives here because both sides need it and neither may depend on the other.

use serde::{Deserialize, Serialize};

/// Abstract Unix socket name of a process's control channel (no file to go
/// stale: it vanishes with the process).
pub fn control_socket_name(pid: u32) -> String {
    format!("mcr/{pid}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Info,
    Heap,
    Trace,
    Update(UpdateRequest),
    /// Record where threads block for `duration_ms` (`mcr-ctl profile`).
    Profile {
        duration_ms: u64,
    },
    /// From a master being updated to a worker it forked at start-up:
    /// park every thread, answer with the worker's checkpoint, then wait on
    /// the same connection for `commit` (exit) or anything else (resume).
    Freeze(FreezeRequest),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FreezeRequest {
    pub timeout_ms: u64,
    /// (device, inode) of every descriptor the master holds: a worker's
    /// descriptor that is one of these is the master's (a channel it
    /// passed), not a connection of the worker's own.
    #[serde(default)]
    pub master_files: Vec<(u64, u64)>,
}

/// A frozen worker's answer to [`Request::Freeze`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frozen {
    pub pid: u32,
    /// The worker's checkpoint (JSON the runtime writes and reads; opaque here).
    pub state: String,
    /// How many descriptors it sends next (`SCM_RIGHTS`), when asked.
    #[serde(default)]
    pub fds: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRequest {
    pub binary: String,
    /// Arguments for the new version; the old ones when absent.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    pub timeout_ms: u64,
    /// Quiescent points from a profile of this build (return addresses of
    /// blocking calls); absent: every blocking call is a quiescent point.
    #[serde(default)]
    pub quiescent_sites: Option<Vec<CodeRef>>,
}

/// A code address that means the same in every run of one build: an offset
/// from the load address of the executable (`module` empty) or of a shared
/// library (its path). Blocking calls libraries make (libevent's
/// `epoll_wait`) are call sites in the library.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    pub offset: u64,
}

/// Time the threads spent blocked, per thread and blocking call site.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileReport {
    pub duration_ms: u64,
    pub threads: Vec<ProfiledThread>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfiledThread {
    pub tid: i32,
    pub is_main: bool,
    pub sites: Vec<BlockingSite>,
}

/// One blocking call site of one thread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlockingSite {
    /// Return address of the call (offset 0 when the stack did not show it).
    #[serde(flatten)]
    pub at: CodeRef,
    /// The blocking function called (`accept`, `epoll_wait`, `read`...).
    pub call: String,
    pub calls: u64,
    pub blocked_ns: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Info {
    pub pid: u32,
    pub program: String,
    pub typemap_id: String,
    pub objects: u64,
    pub heap_bytes: u64,
    pub threads: u32,
    pub startup_over: bool,
}

/// Live objects grouped by allocation site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteUsage {
    /// `file:line` of the site, `(uninstrumented)` for untyped calls from
    /// code mcr-cc did not compile.
    pub site: String,
    pub function: String,
    #[serde(default)]
    pub ty: Option<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Objects carved by a pool or slab allocator (mcr.toml), inside the
    /// heap blocks counted in the other rows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carved: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeapReport {
    /// Heap blocks (carved objects not included: they lie inside blocks).
    pub objects: u64,
    pub bytes: u64,
    pub sites: Vec<SiteUsage>,
    #[serde(default)]
    pub carved_objects: u64,
    #[serde(default)]
    pub carved_bytes: u64,
}

/// Reachability from the roots, per type (or per site for untyped objects),
/// or per allocation site in [`TraceReport::sites`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TraceRow {
    /// The type, `untyped @ <site>`, or (in `sites`) the site `file:line`.
    pub what: String,
    pub reachable: u64,
    pub unreachable: u64,
    pub unreachable_bytes: u64,
    #[serde(default)]
    pub reachable_bytes: u64,
    /// Sites that allocated the unreachable objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leak_sites: Vec<String>,
    /// In `sites`: the site's type (absent when untyped) and function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TraceReport {
    pub objects: u64,
    pub reachable: u64,
    pub unreachable: u64,
    pub precise_edges: u64,
    pub conservative_edges: u64,
    /// Thread-local variables scanned as roots, counted once per thread.
    #[serde(default)]
    pub thread_locals: u64,
    pub millis: f64,
    pub rows: Vec<TraceRow>,
    /// The same objects per allocation site.
    #[serde(default)]
    pub sites: Vec<TraceRow>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseTime {
    pub phase: String,
    pub millis: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateReport {
    pub old_pid: u32,
    pub new_pid: u32,
    pub phases: Vec<PhaseTime>,
    pub objects_precise: u64,
    pub objects_conservative: u64,
    pub objects_moved: u64,
    /// Old start-up objects whose state went into the new version's own
    /// start-up counterparts.
    #[serde(default)]
    pub objects_paired: u64,
    pub bytes: u64,
    pub globals: u64,
    /// Words in untyped memory that pointed into the old binary (functions,
    /// globals) and were rewritten.
    #[serde(default)]
    pub conservative_rewrites: u64,
    /// Objects carved by pool and slab allocators (kept at their address).
    #[serde(default)]
    pub objects_carved: u64,
    /// Of those, converted in place to a changed layout.
    #[serde(default)]
    pub objects_carved_converted: u64,
    /// Typed heap objects whose layout changed but that a hidden reference
    /// (an integer, a char buffer, a union, untyped memory) holds: kept at
    /// their address and converted in place.
    #[serde(default)]
    pub objects_pinned: u64,
    /// Registrations the kernel held (epoll `data`) rewritten to moved objects.
    #[serde(default)]
    pub kernel_pointers: u64,
    /// Thread-local variables carried over, counted once per thread.
    #[serde(default)]
    pub thread_locals: u64,
    pub fds_inherited: u64,
    pub fds_closed: u64,
    /// Calls of the new version's transform and after-transfer hooks.
    #[serde(default)]
    pub hook_calls: u64,
    /// From quiescence to the new version serving.
    pub downtime_ms: f64,
    /// Quiescent points the update used from a profile; `None`: every
    /// blocking call counted as one.
    #[serde(default)]
    pub profile_points: Option<usize>,
    /// Workers forked at start-up that were updated with their master
    /// (each paired with its old counterpart and given its state).
    #[serde(default)]
    pub workers: u64,
    /// Descriptors those workers opened after their start-up (client
    /// connections) handed to their new counterparts.
    #[serde(default)]
    pub worker_fds: u64,
    /// Processes the old master forked after its start-up that were not
    /// updated (per-connection children): they finish on the old version.
    #[serde(default)]
    pub children_left: u64,
    /// Connections threads of the old version were parked on that the new
    /// version's next `accept` on their listening socket is answered with
    /// (mcr-rt's held_connections).
    #[serde(default)]
    pub connections_led: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Reply {
    Info(Info),
    Heap(HeapReport),
    Trace(TraceReport),
    /// Progress of an update.
    Phase(PhaseTime),
    Updated(UpdateReport),
    Profile(ProfileReport),
    Frozen(Frozen),
    Error {
        message: String,
    },
}

impl Reply {
    /// Writes the reply as one line of JSON: the control protocol's framing.
    pub fn send(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(self).expect("reply serializes");
        line.push(b'\n');
        w.write_all(&line)
    }
}
