//! The old version's side of a live update: refuse what cannot be done,
//! quiesce, checkpoint, start the new version with every descriptor
//! inherited, follow it through its start-up and state transfer, then commit
//! (the old version exits) or roll back (the new one is killed, the old one
//! resumes where it stopped).
//!
//! The new version runs as a second process, so rollback is instant and
//! needs nothing from the new version. Its PID differs: the pidfile the
//! program rewrites at start-up names it, and `MAINPID=` goes to systemd.

use crate::base::fault::fault;
use crate::{interpose::quiesce, interpose::startup_log, old_version::checkpoint};
use mcr_types::hooks::HookDecl;
use mcr_types::plan::Versions;
use mcr_types::protocol::{PhaseTime, Reply, UpdateReport, UpdateRequest};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
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

/// The type map and the user hooks embedded in a binary built by mcr-cc.
pub fn typemap_of(path: &str) -> Result<(mcr_types::TypeMap, Vec<HookDecl>), UpdateError> {
    let e = mcr_types::binary::read(std::path::Path::new(path))
        .map_err(|e| UpdateError(e.to_string()))?;
    Ok((e.typemap, e.hooks))
}

/// Refuses an update whose types no rule and no hook of the new version
/// converts (names type and field), or whose hooks declare an old layout
/// that is not the old version's.
pub fn check_compatible(
    old: &mcr_types::TypeMap,
    new: &mcr_types::TypeMap,
    hooks: &[HookDecl],
) -> Result<(), UpdateError> {
    let v = Versions::new(old, new, new.renames.clone().into_iter().collect()).with_hooks(hooks);
    match v.refusals().into_iter().next() {
        Some(why) => err(format!("refused: {why}")),
        None => Ok(()),
    }
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
        let _ = Reply::Phase(p.clone()).send(self.out);
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
            crate::base::private_fd::to_private_fd(OwnedFd::from_raw_fd(fds[0])),
            crate::base::private_fd::to_private_fd(OwnedFd::from_raw_fd(fds[1])),
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
    if crate::interpose::children::is_startup_child() {
        // SAFETY: getppid has no preconditions.
        let master = unsafe { libc::getppid() };
        return err(format!(
            "refused: this process is a worker its master (pid {master}) forked at start-up: update the master, its workers follow"
        ));
    }
    if let Some(parent) = crate::interpose::children::forked_after_startup_by() {
        // Its new version would run main() again: sshd's session process
        // came back as a fresh "sshd -R" waiting for its listener's
        // re-exec state, the session's progress on the old stack lost.
        return err(format!(
            "refused: this process was forked by pid {parent} after that one's start-up (a per-connection or per-session process): its work is on a stack a new version's start-up does not rebuild; it is not updated on its own"
        ));
    }
    if !startup_log::is_startup_over() {
        return err("refused: the program has not reached its first quiescent point yet (start-up still running)");
    }
    let (new_map, hooks) = typemap_of(&req.binary)?;
    let old_map = crate::program::sections::typemap();
    check_compatible(old_map, &new_map, &hooks)?;
    // Needed by the checkpoint; read before the program stops.
    let _ = crate::base::own_binary::functions();
    ph.done("check");
    // The image's pages, allocated before the program stops (the copy in
    // the checkpoint then runs at memory speed), and the type map.
    let prepared = checkpoint::Prepared::new(old_map.clone())
        .map_err(|e| UpdateError(format!("refused: cannot create the heap image: {e}")))?;
    ph.done("prepare");

    if fault("quiesce") {
        return err("rolled back: quiescence failed (MCR_FAULT=quiesce)");
    }
    let q0 = Instant::now();
    crate::interpose::profile::set_quiescent_sites(req.quiescent_sites.as_deref());
    let result = quiesce::quiesce(Duration::from_millis(req.timeout_ms), None)
        .map_err(|e| {
            let busy: Vec<String> = e
                .busy
                .iter()
                .map(|&(tid, pc)| match pc {
                    0 => format!("thread {tid} (running)"),
                    pc => format!(
                        "thread {tid} (blocked in a call from {}, not a quiescent point)",
                        crate::base::own_binary::describe_pc(pc as u64)
                    ),
                })
                .collect();
            UpdateError(format!(
                "rolled back: quiescence timed out after {} ms; threads not at a quiescent point: {}{}",
                req.timeout_ms,
                busy.join(", "),
                if e.starting > 0 {
                    format!(", and {} created but not started yet", e.starting)
                } else {
                    String::new()
                }
            ))
        })
        .and_then(|()| {
            ph.done("quiesce");
            let r = with_quiesced(req, &mut ph, q0, prepared);
            if r.is_err() {
                quiesce::resume();
            }
            r
        });
    if result.is_err() {
        crate::interpose::profile::set_quiescent_sites(None);
    }
    result
}

fn with_quiesced<W: Write>(
    req: &UpdateRequest,
    ph: &mut Phases<'_, W>,
    q0: Instant,
    prepared: checkpoint::Prepared,
) -> Result<UpdateReport, UpdateError> {
    if fault("checkpoint") {
        return err("rolled back: checkpoint failed (MCR_FAULT=checkpoint)");
    }
    let (heap_fd, state_fd, image_mapping) = checkpoint::write(prepared)
        .map_err(|e| UpdateError(format!("rolled back: checkpoint: {e}")))?;
    ph.done("checkpoint");
    // Workers start-up forked: frozen, their checkpoints for the new
    // master's replayed forks. Dropped (any failure below), they resume.
    let workers = crate::old_version::workers::freeze_all(Duration::from_millis(req.timeout_ms))
        .map_err(|e| {
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
    // The arguments as the program was started: /proc/self/cmdline shows
    // what it may have written over them since (a process title).
    let started: Vec<std::ffi::OsString> = match crate::program::args::original_args() {
        Some(a) => a.to_vec(),
        None => std::fs::read("/proc/self/cmdline")
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| std::ffi::OsString::from_vec(s.to_vec()))
            .collect(),
    };
    let args: Vec<std::ffi::OsString> = match &req.args {
        Some(a) => a.iter().map(Into::into).collect(),
        None => started.iter().skip(1).cloned().collect(),
    };
    let arg0 = started
        .first()
        .cloned()
        .unwrap_or_else(|| req.binary.clone().into());
    // The new start-up rewrites the files the old one wrote (a pidfile):
    // a rollback puts them back.
    let startup_files = crate::interpose::startup_files::save(&startup_log::entries());
    // Every program descriptor is inherited under its number: the new
    // start-up shares their open files, and a rollback gives them back.
    let fds = crate::base::private_fd::program_fds();
    let laps = crate::base::debug_laps::DebugLaps::start("shared files");
    let shared =
        crate::interpose::shared_files::save(&fds, &crate::interpose::shared_files::startup_fds());
    laps.lap(&format!("{} descriptors saved", fds.len()));
    let saved: Vec<(i32, i32)> = fds.iter().map(|&fd| (fd, set_cloexec(fd, false))).collect();
    let mut handed = vec![
        heap_fd.as_raw_fd(),
        state_fd.as_raw_fd(),
        status_w.as_raw_fd(),
        commit_r.as_raw_fd(),
    ];
    handed.extend(workers_fd.as_ref().map(|f| f.as_raw_fd()));
    handed.extend(workers.handed_fds());
    handed.extend(crate::program::shared_memory::handed_fds());
    // Earlier binaries' images: inherited under their numbers, since
    // /proc/<pid>/fd is closed to the new version when this one dropped
    // its privileges (see old_images).
    handed.extend(crate::program::old_images::saved().iter().map(|i| i.fd));
    for &fd in &handed {
        set_cloexec(fd, false);
    }
    // The new version inherits the spawning thread's signal mask: ours
    // blocks everything (see control::start), the program's main thread's
    // is what the new program must start with.
    let ours = crate::program::threads::set_sigmask(crate::program::threads::main_sigmask());
    let mut cmd = std::process::Command::new(&req.binary);
    if let Some(f) = &workers_fd {
        cmd.env(
            crate::interpose::children::WORKERS_FD_ENV,
            f.as_raw_fd().to_string(),
        );
    }
    let spawned = cmd
        .arg0(arg0)
        .args(&args)
        .env(crate::heap::HEAP_FD_ENV, heap_fd.as_raw_fd().to_string())
        .env(
            crate::base::update_link::RESTORE_FD_ENV,
            state_fd.as_raw_fd().to_string(),
        )
        .env(
            crate::base::update_link::STATUS_FD_ENV,
            status_w.as_raw_fd().to_string(),
        )
        .env(
            crate::base::update_link::COMMIT_FD_ENV,
            commit_r.as_raw_fd().to_string(),
        )
        .spawn();
    crate::program::threads::set_sigmask(ours);
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
    crate::program::shared_memory::release();
    let mut child = spawned
        .map_err(|e| UpdateError(format!("rolled back: cannot start {}: {e}", req.binary)))?;
    ph.done("spawn");
    // While the new version starts.
    drop(image_mapping);

    let mut serving = None;
    let outcome = follow_new_version(&status_r, &commit_w, ph, &mut serving);
    match outcome {
        Ok(mut report) => {
            report.old_pid = std::process::id();
            report.new_pid = serving.unwrap_or(child.id());
            report.downtime_ms = q0.elapsed().as_secs_f64() * 1e3;
            report.phases = std::mem::take(&mut ph.list);
            report.fds_inherited = fds.len() as u64;
            report.children_left = workers.children_left;
            report.profile_points = req.quiescent_sites.as_ref().map(Vec::len);
            // The new workers serve: the old ones leave.
            workers.commit();
            Ok(report)
        }
        Err(UpdateError(mut e)) => {
            let daemon_child = serving.filter(|&p| p != child.id());
            if e.contains(DIED) || e.contains(DIED_IN_HOOK) {
                match daemon_child {
                    // The process started exited long ago (`daemon(3)`):
                    // its status says nothing of the child that served.
                    Some(pid) => e.push_str(&format!(
                        " (pid {pid}, the daemon child of the process started)"
                    )),
                    // It died on its own: say how (a crash, an exit code).
                    None => {
                        if let Some(how) = exit_text(&mut child) {
                            e.push_str(": ");
                            e.push_str(&how);
                        }
                    }
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            if let Some(pid) = daemon_child {
                kill_if_running(pid, &req.binary);
            }
            startup_files.restore();
            give_back_shared_files(&shared, &mut e);
            Err(UpdateError(e))
        }
    }
}

/// After a rollback, with the new version dead: the open files it shared
/// with this process as they were before it started (see `shared_files`).
/// What changed back is logged under `MCR_DEBUG`; what could not be is
/// added to the rollback's message.
fn give_back_shared_files(shared: &crate::interpose::shared_files::Saved, message: &mut String) {
    let done = shared.restore();
    done.log("the old version");
    if !done.errors.is_empty() {
        let errors: Vec<String> = done.errors.iter().map(ToString::to_string).collect();
        message.push_str(&format!(
            "; left as the new version made them: {}",
            errors.join("; ")
        ));
    }
}

/// Kills `pid`, a daemon's child the new version announced as its serving
/// process, if it still runs `binary` (the pid may have ended and been
/// reused since). Waits (up to 1 s) until it has let go of its files: it
/// is not our child to wait for, and the files it shared with us are given
/// back next.
fn kill_if_running(pid: u32, binary: &str) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    let want = std::fs::canonicalize(binary);
    if let (Ok(exe), Ok(want)) = (exe, want) {
        if exe == want {
            // SAFETY: signalling the new version's own process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(1);
            while is_running(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Whether `pid` exists and is not a zombie yet (a zombie has closed its
/// files).
fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ...": comm may hold spaces, so split after ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Mark the rollback messages of a new version that died by itself.
const DIED: &str = "the new version exited";
const DIED_IN_HOOK: &str = "the new version died";

/// How a child that died by itself ended (waits up to 1 s for it).
fn exit_text(child: &mut std::process::Child) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                return Some(match (st.code(), st.signal()) {
                    (Some(c), _) => format!("exit status {c}"),
                    (_, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
                    _ => format!("{st}"),
                })
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Reads the new version's progress until it is ready, then commits.
fn follow_new_version<W: Write>(
    status: &OwnedFd,
    commit: &OwnedFd,
    ph: &mut Phases<'_, W>,
    serving: &mut Option<u32>,
) -> Result<UpdateReport, UpdateError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: a duplicate of our own pipe's read end.
    let f = unsafe {
        std::fs::File::from_raw_fd(libc::fcntl(status.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900))
    };
    let mut lines = BufReader::new(f);
    let mut report = UpdateReport::default();
    // The user hook running now, if any (named if the new version dies).
    let mut in_hook: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return err(match &in_hook {
                Some(h) => format!(
                    "rolled back: the new version did not become ready within 30 s (still in its {h})"
                ),
                None => "rolled back: the new version did not become ready within 30 s".into(),
            });
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
            return err(match &in_hook {
                Some(h) => format!("rolled back: {DIED_IN_HOOK} in its {h}"),
                None => format!("rolled back: {DIED} during start-up or transfer"),
            });
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
            "pid" => *serving = rest.parse().ok(),
            "hook" => in_hook = Some(rest.to_string()),
            "hook-done" => in_hook = None,
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
