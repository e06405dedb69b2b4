//! The old version's side of a live update: refuse what cannot be done,
//! quiesce, checkpoint, start the new version with every descriptor
//! inherited, follow it through its start-up and state transfer, then commit
//! (the old version exits) or roll back (the new one is killed, the old one
//! resumes where it stopped).
//!
//! The new version runs as a second process, so rollback is instant and
//! needs nothing from the new version. Its PID differs: the pidfile the
//! program rewrites at start-up names it, and `MAINPID=` goes to systemd.

use crate::control::send;
use crate::{checkpoint, quiesce, startup_log};
use mcr_types::plan::{Change, Versions};
use mcr_types::protocol::{PhaseTime, Reply, UpdateReport, UpdateRequest};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static IN_PROGRESS: AtomicBool = AtomicBool::new(false);

#[derive(Debug)]
pub struct UpdateError(pub String);

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, UpdateError> {
    Err(UpdateError(m.into()))
}

/// `MCR_FAULT=<phase>` makes that phase fail, for rollback tests.
pub fn fault(phase: &str) -> bool {
    std::env::var("MCR_FAULT").is_ok_and(|v| v.split(',').any(|p| p == phase))
}

/// The type map embedded in a binary built by mcr-cc.
pub fn typemap_of(path: &str) -> Result<mcr_types::TypeMap, UpdateError> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).map_err(|e| UpdateError(format!("cannot read {path}: {e}")))?;
    let f = object::File::parse(&*data)
        .map_err(|e| UpdateError(format!("{path} is not an executable: {e}")))?;
    let sec = f
        .section_by_name(mcr_types::section::SECTION_NAME)
        .ok_or_else(|| UpdateError(format!("{path} was not built with mcr-cc (no type map)")))?;
    let bytes = sec.data().map_err(|e| UpdateError(e.to_string()))?;
    mcr_types::decode_section(bytes).map_err(|e| UpdateError(format!("{path}: {e}")))
}

/// Refuses an update whose types no rule converts (names type and field).
pub fn check_compatible(
    old: &mcr_types::TypeMap,
    new: &mcr_types::TypeMap,
) -> Result<(), UpdateError> {
    let v = Versions::new(old, new, new.renames.clone().into_iter().collect());
    let mut used: Vec<&str> = old.globals.iter().map(|g| g.ty.as_str()).collect();
    used.extend(old.alloc_sites.iter().filter_map(|s| s.ty.as_deref()));
    used.sort();
    used.dedup();
    for t in used {
        if let Change::NeedsUserCode(e) = v.change(t) {
            return err(format!("refused: {e}"));
        }
    }
    Ok(())
}

struct Phases<'a, W: Write> {
    out: &'a mut W,
    list: Vec<PhaseTime>,
    t: Instant,
}

impl<W: Write> Phases<'_, W> {
    fn done(&mut self, phase: &str) {
        self.done_ms(phase, self.t.elapsed().as_secs_f64() * 1e3);
        self.t = Instant::now();
    }
    fn done_ms(&mut self, phase: &str, millis: f64) {
        let p = PhaseTime {
            phase: phase.into(),
            millis,
        };
        let _ = send(self.out, &Reply::Phase(p.clone()));
        self.list.push(p);
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a local array.
    unsafe { libc::syscall(libc::SYS_pipe2, fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // SAFETY: fresh descriptors we own.
    unsafe {
        (
            crate::control::to_private_fd(OwnedFd::from_raw_fd(fds[0])),
            crate::control::to_private_fd(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn set_cloexec(fd: i32, on: bool) -> i32 {
    // SAFETY: fcntl on a descriptor number; errors are ignored.
    unsafe {
        let old = libc::fcntl(fd, libc::F_GETFD);
        if old >= 0 {
            let new = if on {
                old | libc::FD_CLOEXEC
            } else {
                old & !libc::FD_CLOEXEC
            };
            libc::fcntl(fd, libc::F_SETFD, new);
        }
        old
    }
}

/// The program's descriptors (the runtime's are above the private base).
pub(crate) fn program_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&n: &i32| n < crate::control::PRIVATE_FD_BASE)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a whole update; `Ok` means the new version is serving and this
/// process must exit.
pub fn run(req: &UpdateRequest, out: &mut impl Write) -> Result<UpdateReport, UpdateError> {
    if IN_PROGRESS.swap(true, Ordering::SeqCst) {
        return err("refused: an update is already in progress");
    }
    let r = run_locked(req, out);
    if r.is_err() {
        IN_PROGRESS.store(false, Ordering::SeqCst);
    }
    r
}

fn run_locked(req: &UpdateRequest, out: &mut impl Write) -> Result<UpdateReport, UpdateError> {
    let mut ph = Phases {
        out,
        list: vec![],
        t: Instant::now(),
    };
    if crate::children::is_startup_child() {
        // SAFETY: getppid has no preconditions.
        let master = unsafe { libc::getppid() };
        return err(format!(
            "refused: this process is a worker its master (pid {master}) forked at start-up: update the master, its workers follow"
        ));
    }
    if !startup_log::is_startup_over() {
        return err("refused: the program has not reached its first quiescent point yet (start-up still running)");
    }
    let new_map = typemap_of(&req.binary)?;
    let old_map = mcr_types::decode_section(crate::sections::typemap_bytes()).unwrap_or_default();
    check_compatible(&old_map, &new_map)?;
    // Needed by the checkpoint; read before the program stops.
    let _ = crate::checkpoint::functions();
    ph.done("check");

    if fault("quiesce") {
        return err("rolled back: quiescence failed (MCR_FAULT=quiesce)");
    }
    let q0 = Instant::now();
    quiesce::quiesce(Duration::from_millis(req.timeout_ms), None).map_err(|e| {
        UpdateError(format!(
            "rolled back: quiescence timed out after {} ms; threads not at a quiescent point: {:?}",
            req.timeout_ms, e.busy
        ))
    })?;
    ph.done("quiesce");
    let result = with_quiesced(req, &mut ph, q0);
    if result.is_err() {
        quiesce::resume();
    }
    result
}

fn with_quiesced<W: Write>(
    req: &UpdateRequest,
    ph: &mut Phases<'_, W>,
    q0: Instant,
) -> Result<UpdateReport, UpdateError> {
    if fault("checkpoint") {
        return err("rolled back: checkpoint failed (MCR_FAULT=checkpoint)");
    }
    let (heap_fd, state_fd) =
        checkpoint::write().map_err(|e| UpdateError(format!("rolled back: checkpoint: {e}")))?;
    ph.done("checkpoint");
    // Workers start-up forked: frozen, their checkpoints for the new
    // master's replayed forks. Dropped (any failure below), they resume.
    let workers =
        crate::children::freeze_all(Duration::from_millis(req.timeout_ms)).map_err(|e| {
            UpdateError(
                if e.starts_with("refused") || e.starts_with("rolled back") {
                    e
                } else {
                    format!("rolled back: {e}")
                },
            )
        })?;
    let workers_fd = workers
        .write_states()
        .map_err(|e| UpdateError(format!("rolled back: checkpoint of the workers: {e}")))?;
    if workers.count() > 0 {
        ph.done("freeze-workers");
    }

    let (status_r, status_w) = pipe();
    let (commit_r, commit_w) = pipe();
    let args: Vec<String> = match &req.args {
        Some(a) => a.clone(),
        None => std::fs::read("/proc/self/cmdline")
            .unwrap_or_default()
            .split(|b| *b == 0)
            .skip(1)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    };
    let arg0 = std::fs::read("/proc/self/cmdline")
        .ok()
        .and_then(|c| {
            c.split(|b| *b == 0)
                .next()
                .map(|s| String::from_utf8_lossy(s).into_owned())
        })
        .unwrap_or_else(|| req.binary.clone());
    // Every program descriptor is inherited under its number.
    let fds = program_fds();
    let saved: Vec<(i32, i32)> = fds.iter().map(|&fd| (fd, set_cloexec(fd, false))).collect();
    let mut handed = vec![
        heap_fd.as_raw_fd(),
        state_fd.as_raw_fd(),
        status_w.as_raw_fd(),
        commit_r.as_raw_fd(),
    ];
    handed.extend(workers_fd.as_ref().map(|f| f.as_raw_fd()));
    for &fd in &handed {
        set_cloexec(fd, false);
    }
    // The new version inherits the spawning thread's signal mask: ours
    // blocks everything (see control::start), the program's main thread's
    // is what the new program must start with.
    let ours = crate::threads::set_sigmask(crate::threads::main_sigmask());
    let mut cmd = std::process::Command::new(&req.binary);
    if let Some(f) = &workers_fd {
        cmd.env(crate::children::WORKERS_FD_ENV, f.as_raw_fd().to_string());
    }
    let spawned = cmd
        .arg0(arg0)
        .args(&args)
        .env(crate::heap::HEAP_FD_ENV, heap_fd.as_raw_fd().to_string())
        .env("MCR_RESTORE_FD", state_fd.as_raw_fd().to_string())
        .env("MCR_STATUS_FD", status_w.as_raw_fd().to_string())
        .env("MCR_COMMIT_FD", commit_r.as_raw_fd().to_string())
        .spawn();
    crate::threads::set_sigmask(ours);
    for (fd, flags) in saved {
        if flags >= 0 {
            // SAFETY: restores the flags read above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags) };
        }
    }
    for &fd in &handed {
        set_cloexec(fd, true);
    }
    drop(status_w);
    drop(commit_r);
    let mut child = spawned
        .map_err(|e| UpdateError(format!("rolled back: cannot start {}: {e}", req.binary)))?;
    ph.done("spawn");

    let outcome = follow_new_version(&status_r, &commit_w, ph);
    match outcome {
        Ok(mut report) => {
            report.old_pid = std::process::id();
            report.new_pid = child.id();
            report.downtime_ms = q0.elapsed().as_secs_f64() * 1e3;
            report.phases = std::mem::take(&mut ph.list);
            report.fds_inherited = fds.len() as u64;
            // The new workers serve: the old ones leave.
            workers.commit();
            Ok(report)
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Reads the new version's progress until it is ready, then commits.
fn follow_new_version<W: Write>(
    status: &OwnedFd,
    commit: &OwnedFd,
    ph: &mut Phases<'_, W>,
) -> Result<UpdateReport, UpdateError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: a duplicate of our own pipe's read end.
    let f = unsafe {
        std::fs::File::from_raw_fd(libc::fcntl(status.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900))
    };
    let mut lines = BufReader::new(f);
    let mut report = UpdateReport::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return err("rolled back: the new version did not become ready within 30 s");
        }
        // Lines already buffered need no poll: they are no longer in the pipe.
        if lines.buffer().is_empty() {
            let mut p = libc::pollfd {
                fd: status.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one valid descriptor.
            unsafe { libc::poll(&mut p, 1, left.as_millis().min(1000) as i32) };
            if p.revents == 0 {
                continue;
            }
        }
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return err("rolled back: the new version exited during start-up or transfer");
        }
        let line = line.trim_end();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "phase" => {
                let (name, ms) = rest.split_once(' ').unwrap_or((rest, "0"));
                ph.done_ms(name, ms.parse().unwrap_or(0.0));
                ph.t = Instant::now();
            }
            "error" => return err(format!("rolled back: new version: {rest}")),
            "ready" => {
                if let Ok(r) = serde_json::from_str::<UpdateReport>(rest) {
                    report = r;
                }
                let mut c = std::fs::File::from(
                    commit.try_clone().map_err(|e| UpdateError(e.to_string()))?,
                );
                c.write_all(b"commit\n")
                    .map_err(|e| UpdateError(format!("rolled back: commit: {e}")))?;
            }
            "committed" => {
                ph.done("commit");
                return Ok(report);
            }
            _ => {}
        }
    }
}

/// After a committed update: leave without running the program's exit
/// handlers (they would remove pidfiles or sockets the new version owns).
pub fn finish_old_process() -> ! {
    // SAFETY: _exit ends the process immediately.
    unsafe { libc::_exit(0) }
}
