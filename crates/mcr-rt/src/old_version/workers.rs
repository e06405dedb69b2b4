//! The old master's workers in an update (see `interpose::children` for
//! the whole protocol): each start-up worker still alive is asked over its
//! own control socket to freeze; it parks its threads and answers with its
//! checkpoint, then waits on that connection for `commit` (it exits) or
//! anything else, end of file included (it resumes).

use crate::heap;
use crate::interpose::children::{
    self, is_live_child, is_startup_child, runs_other_program, CarriedObject, ChildState, OldWorker,
};
use crate::interpose::{quiesce, startup_log, worker_fds};
use crate::program::snapshot;
use mcr_types::protocol::{control_socket_name, FreezeRequest, Frozen, Reply, Request};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

/// This worker's heap for its checkpoint: its program start-up objects,
/// and by value the program objects (from instrumented sites) it built or
/// changed since. A library's own memory is not carried: the new worker's
/// libraries rebuilt theirs. Also every live object (address, size), by
/// address, from the same walk (`ChildState::live`).
/// This worker's heap for its checkpoint: its program start-up objects,
/// and by value the program objects (from instrumented sites) it built or
/// changed since. A library's own memory is not carried: the new worker's
/// libraries rebuilt theirs. Also every live object (address, size), by
/// address, from the same walk (`ChildState::live`).
fn heap_state() -> (
    Vec<snapshot::StartupObject>,
    Vec<CarriedObject>,
    Vec<(u64, u64)>,
) {
    let at_startup: Vec<snapshot::StartupObject> = snapshot::objects()
        .into_iter()
        .filter(|o| o.site != 0)
        .collect();
    let unchanged: std::collections::HashSet<u64> = at_startup
        .iter()
        .filter(|o| o.unchanged)
        .map(|o| o.addr)
        .collect();
    let by_value = |o: &heap::Object| {
        // SAFETY: a live object of `size` bytes, its threads parked.
        let b = unsafe { std::slice::from_raw_parts(o.addr as *const u8, o.size) };
        CarriedObject {
            addr: o.addr as u64,
            size: o.size as u64,
            site: o.site as u64,
            bytes: crate::base::hex::to_hex(b),
        }
    };
    let mut carried = Vec::new();
    let mut live = Vec::new();
    heap::for_each_live(|o| {
        live.push((o.addr as u64, o.size as u64));
        if !o.site.is_null() && !unchanged.contains(&(o.addr as u64)) {
            carried.push(by_value(&o));
        }
    });
    live.sort_unstable();
    // Memory a library allocated for the program (asprintf, getline) that
    // the carried state points to, conservatively: carried too.
    let mut seen: std::collections::HashSet<u64> = carried.iter().map(|c| c.addr).collect();
    let mut work: Vec<(u64, u64)> = carried.iter().map(|c| (c.addr, c.size)).collect();
    work.extend(
        crate::program::globals::all()
            .filter(|g| {
                snapshot::global_value(g.name).as_deref() != Some(crate::program::globals::bytes(g))
            })
            .map(|g| (g.addr as u64, g.size as u64)),
    );
    while let Some((a, len)) = work.pop() {
        let mut w = a.next_multiple_of(8);
        while w + 8 <= a + len {
            // SAFETY: an aligned word inside a live object or global.
            let p = unsafe { (w as *const u64).read() };
            w += 8;
            let Some(o) = (p >= 4096).then(|| heap::find(p as usize)).flatten() else {
                continue;
            };
            if o.site.is_null() && seen.insert(o.addr as u64) {
                carried.push(by_value(&o));
                work.push((o.addr as u64, o.size as u64));
            }
        }
    }
    (at_startup, carried, live)
}

/// Serves `Request::Freeze` on its own thread (it waits for the outcome).
pub fn freeze(conn: UnixStream, req: &FreezeRequest) {
    let mut out = &conn;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let frozen = (|| {
        if !is_startup_child() {
            return Err(format!(
                "refused: process {pid} is not a worker forked at start-up"
            ));
        }
        if !startup_log::is_startup_over() {
            return Err(format!(
                "refused: worker {pid} has not reached its first quiescent point yet"
            ));
        }
        quiesce::quiesce(Duration::from_millis(req.timeout_ms), None).map_err(|e| {
            format!(
                "rolled back: worker {pid}: quiescence timed out after {} ms; threads not at a quiescent point: {:?}",
                req.timeout_ms, e.busy
            )
        })?;
        let (startup_objects, objects, live) = heap_state();
        let st = ChildState {
            pid,
            globals: crate::old_version::checkpoint::saved_globals(),
            startup_objects,
            objects,
            runtime_fds: worker_fds::collect(&req.master_files),
            live,
            held: crate::interpose::held_connections::held(),
        };
        let fds: Vec<i32> = st.runtime_fds.fds.iter().map(|f| f.number).collect();
        // The new workers share this worker's files as the new master
        // shares the old one's: a rollback gives them back.
        let shared = crate::interpose::shared_files::save(
            &crate::base::private_fd::program_fds(),
            &crate::interpose::shared_files::startup_fds(),
        );
        Ok((serde_json::to_string(&st).unwrap_or_default(), fds, shared))
    })();
    let (state, fds, shared) = match frozen {
        Ok(s) => s,
        Err(message) => {
            let _ = Reply::Error { message }.send(&mut out);
            return;
        }
    };
    let count = fds.len() as u32;
    if Reply::Frozen(Frozen {
        pid,
        state,
        fds: count,
    })
    .send(&mut out)
    .is_err()
    {
        resume_as_before(&shared);
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(300)));
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    // The master asks for the connections once it has read the state (so
    // no descriptor rides on bytes it reads as text).
    if count > 0 {
        let _ = reader.read_line(&mut line);
        if line.trim() != "fds" || worker_fds::send(conn.as_fd(), &fds).is_err() {
            resume_as_before(&shared);
            return;
        }
        line.clear();
    }
    // Committed: leave (the new worker serves). Anything else, the master
    // gone included: resume.
    let _ = reader.read_line(&mut line);
    if line.trim() == "commit" {
        crate::old_version::committed::finish_old_process();
    }
    resume_as_before(&shared);
}

/// A frozen worker resumes after a rollback: the master has killed the new
/// master before it says so (the new workers die with it), so the files
/// they shared with this worker are given back first.
fn resume_as_before(shared: &crate::interpose::shared_files::Saved) {
    let done = shared.restore();
    // SAFETY: getpid has no preconditions.
    done.log(&format!("worker {}", unsafe { libc::getpid() }));
    for e in &done.errors {
        eprintln!("mcr-rt: rollback: left as the new version made it: {e}");
    }
    quiesce::resume();
}

// ---- old master: freezing its workers ----

struct FrozenWorker {
    conn: UnixStream,
    state: String,
    /// Its run-time descriptors, at private numbers.
    fds: Vec<OwnedFd>,
}

/// The old workers frozen for an update, by fork order. Dropped without
/// [`FrozenWorkers::commit`], they resume.
pub struct FrozenWorkers {
    list: Vec<Option<FrozenWorker>>,
    /// Live children forked after start-up, not updated.
    pub children_left: u64,
}

impl FrozenWorkers {
    pub fn count(&self) -> u64 {
        self.list.iter().flatten().count() as u64
    }

    /// The checkpoints in a memfd for the new master (None: no workers).
    pub fn write_states(&self) -> std::io::Result<Option<OwnedFd>> {
        if self.list.is_empty() {
            return Ok(None);
        }
        let v: Vec<Option<OldWorker>> = self
            .list
            .iter()
            .map(|w| {
                w.as_ref().map(|w| OldWorker {
                    state: w.state.clone(),
                    fds: w.fds.iter().map(|f| f.as_raw_fd()).collect(),
                })
            })
            .collect();
        let fd = crate::old_version::checkpoint::memfd("mcr-workers")?;
        let mut f = std::fs::File::from(fd.try_clone()?);
        f.write_all(&serde_json::to_vec(&v).map_err(std::io::Error::other)?)?;
        use std::io::Seek;
        f.rewind()?;
        Ok(Some(fd))
    }

    /// The old workers' run-time descriptors, which the new master must
    /// inherit under these numbers.
    pub fn handed_fds(&self) -> Vec<i32> {
        self.list
            .iter()
            .flatten()
            .flat_map(|w| w.fds.iter().map(|f| f.as_raw_fd()))
            .collect()
    }

    /// The new version serves: the old workers leave.
    pub fn commit(mut self) {
        for w in self.list.drain(..).flatten() {
            let _ = (&w.conn).write_all(b"commit\n");
        }
    }
}

impl Drop for FrozenWorkers {
    fn drop(&mut self) {
        for w in self.list.drain(..).flatten() {
            let _ = (&w.conn).write_all(b"resume\n");
        }
    }
}

/// Freezes every worker start-up forked that still runs. On failure the
/// ones already frozen resume.
pub fn freeze_all(timeout: Duration) -> Result<FrozenWorkers, String> {
    let mut out = FrozenWorkers {
        list: Vec::new(),
        children_left: 0,
    };
    let startup = startup_log::forks();
    // A pid listed twice (a dead child's, reused) counts once.
    let mut seen = std::collections::HashSet::new();
    let later: Vec<i32> = children::runtime_forks()
        .into_iter()
        .filter(|&p| seen.insert(p) && is_live_child(p) && !runs_other_program(p))
        .collect();
    // A worker start-up forked is gone and one forked since runs this
    // program: most likely its respawned successor. The new master's
    // start-up makes a fresh worker for that place, and the successor
    // would go on serving the old version beside it.
    if let (Some(&gone), Some(&since)) =
        (startup.iter().find(|&&p| !is_live_child(p)), later.first())
    {
        return Err(format!(
            "refused: worker {gone}, forked at start-up, is gone and process {since}, forked since, runs the same program (a respawned worker?); a worker forked after start-up is not carried by an update, and it would go on serving the old version"
        ));
    }
    // Otherwise they are per-connection children: they finish as they are.
    out.children_left = later.len() as u64;
    let master_files = worker_fds::files_held();
    for pid in startup {
        if !is_live_child(pid) || runs_other_program(pid) {
            out.list.push(None);
            continue;
        }
        let addr = SocketAddr::from_abstract_name(control_socket_name(pid as u32).as_bytes())
            .map_err(|e| e.to_string())?;
        let conn = UnixStream::connect_addr(&addr)
            .map_err(|e| format!("worker {pid}: no control socket: {e}"))?;
        let conn = UnixStream::from(crate::base::private_fd::to_private_fd(OwnedFd::from(conn)));
        let _ = conn.set_read_timeout(Some(timeout + Duration::from_secs(5)));
        let mut req = serde_json::to_vec(&Request::Freeze(FreezeRequest {
            timeout_ms: timeout.as_millis() as u64,
            master_files: master_files.clone(),
        }))
        .expect("request serializes");
        req.push(b'\n');
        (&conn)
            .write_all(&req)
            .map_err(|e| format!("worker {pid}: {e}"))?;
        // Byte by byte up to the newline: the descriptors asked for next
        // must not be read as text.
        let line =
            read_line_exact(&conn).map_err(|e| format!("worker {pid} did not answer: {e}"))?;
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Frozen(f)) => {
                let mut w = FrozenWorker {
                    conn,
                    state: f.state,
                    fds: Vec::new(),
                };
                if f.fds > 0 {
                    (&w.conn)
                        .write_all(b"fds\n")
                        .and_then(|_| worker_fds::receive(w.conn.as_fd(), f.fds as usize))
                        .map(|fds| w.fds = fds)
                        .map_err(|e| format!("worker {pid}: its connections: {e}"))?;
                }
                out.list.push(Some(w));
            }
            Ok(Reply::Error { message }) => return Err(message),
            _ => return Err(format!("worker {pid}: unexpected answer {line:?}")),
        }
    }
    Ok(out)
}

/// One line from `conn`, without reading past its newline.
fn read_line_exact(conn: &UnixStream) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Peek what is there, then take exactly up to the newline.
        // SAFETY: recv into a local buffer of that length.
        let n = unsafe {
            libc::recv(
                conn.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_PEEK,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = n as usize;
        let take = buf[..n]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(n, |i| i + 1);
        let mut got = vec![0u8; take];
        (&*conn).read_exact(&mut got)?;
        out.extend_from_slice(&got);
        if out.last() == Some(&b'\n') {
            out.pop();
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
    }
}
