//! The new version's side of a live update. Started by the old version with
//! `MCR_RESTORE_FD` (checkpoint state), `MCR_STATUS_FD` (progress to the old
//! version) and `MCR_COMMIT_FD` (its go-ahead). The heap image was adopted
//! before the first allocation (see `heap`); start-up then runs against the
//! old start-up log, and at the main thread's first quiescent point the
//! state is transferred. Nothing here is visible to the program unless the
//! old version commits; any failure exits, and the old version resumes.

use crate::base::fault::fault;
use crate::base::update_link::{
    self, env_fd, fail, status, COMMIT_FD_ENV, RESTORE_FD_ENV, RESTORING, STATUS_FD_ENV,
};

use crate::new_version::{restore_state, transfer};
use crate::{interpose::quiesce, interpose::startup_log};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static T0: Mutex<Option<Instant>> = Mutex::new(None);

/// The update's channels kept from the program's range closes until commit.
static KEPT_CHANNELS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Called from the runtime's initialisation on the main thread.
pub fn init_from_env() {
    let Some(fd) = env_fd(RESTORE_FD_ENV) else {
        return;
    };
    update_link::open_from_env();
    *T0.lock().unwrap() = Some(Instant::now());
    if fault("restore") {
        fail("MCR_FAULT=restore");
    }
    let state = match crate::old_version::checkpoint::read(fd) {
        Ok(s) => s,
        Err(e) => fail(&format!("cannot read the checkpoint: {e}")),
    };
    for fd in [
        env_fd(STATUS_FD_ENV),
        env_fd(COMMIT_FD_ENV),
        env_fd(crate::heap::HEAP_FD_ENV),
    ]
    .into_iter()
    .flatten()
    {
        // SAFETY: our own pipes and memfd: never passed on to the program's children.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // A start-up's closefrom() must leave them to us (released at commit).
        crate::base::private_fd::keep(fd);
        KEPT_CHANNELS.lock().unwrap().push(fd);
    }
    crate::interpose::range_close::note_inherited();
    crate::new_version::workers::init_from_env();
    transfer::map_old_image(&state);
    if let Err(e) = crate::program::shared_memory::map(&state.shared_mappings) {
        fail(&e);
    }
    startup_log::on_main_startup_over(main_startup_over);
    startup_log::start_replay(state.startup_log.clone());
    crate::interpose::startup_inputs::start_replay(state.startup_inputs.clone());
    restore_state::put(state);
    RESTORING.store(true, Ordering::SeqCst);
    quiesce::REQUESTED.store(true, Ordering::SeqCst);
    status("phase restore-init 0");
}

/// The main thread reached its first quiescent point: transfer, report,
/// wait for the old version's go-ahead, resume. True when state was
/// transferred (the caller's wait was set up from start-up state).
fn main_startup_over() -> bool {
    if !RESTORING.load(Ordering::SeqCst) {
        return false;
    }
    let t_start = T0.lock().unwrap().unwrap_or_else(Instant::now);
    // The process the old version started may not be this one: a program
    // that daemonizes (`daemon(3)`) serves from its child. The old version
    // kills this one on a rollback and reports it as the new PID.
    // SAFETY: getpid has no preconditions.
    status(&format!("pid {}", unsafe { libc::getpid() }));
    status(&format!(
        "phase startup-replay {:.3}",
        t_start.elapsed().as_secs_f64() * 1e3
    ));
    if fault("startup") {
        fail("MCR_FAULT=startup");
    }
    let unclaimed = startup_log::finish_replay();
    if std::env::var_os("MCR_DEBUG").is_some() {
        let (given, fresh) = crate::interpose::startup_inputs::replay_summary();
        eprintln!(
            "mcr-rt: start-up inputs: {given} answered from the old start-up, {fresh} drawn afresh"
        );
    }
    let t = Instant::now();
    if let Err(e) = restore_state::wait_threads_parked(Duration::from_secs(5)) {
        fail(&e);
    }
    status(&format!(
        "phase new-quiesce {:.3}",
        t.elapsed().as_secs_f64() * 1e3
    ));
    let t = Instant::now();
    let state = restore_state::take().expect("restore state");
    if fault("transfer") {
        fail("MCR_FAULT=transfer");
    }
    let new_startup = crate::program::snapshot::live_objects(true);
    let mut report = match transfer::run(&state, &new_startup, &status) {
        Ok(r) => r,
        Err(e) => fail(&e.to_string()),
    };
    // The program's own hooks, once the state is in place; still before
    // the old version commits, so a crash here rolls back too.
    let hooks = crate::program::hooks::all().unwrap_or_default();
    report.hook_calls += crate::program::hooks::run_after_transfer(&hooks, &status);
    // Connections old threads were parked on: each must be served by the
    // new version, or led to its `accept`, before the old one commits.
    let not_kept: Vec<i32> = unclaimed.iter().flat_map(|e| e.fds.clone()).collect();
    report.connections_led = crate::interpose::held_connections::settle(&state.held, &not_kept)
        .unwrap_or_else(|e| fail(&e));
    status(&format!(
        "phase transfer {:.3}",
        t.elapsed().as_secs_f64() * 1e3
    ));
    if fault("crash") {
        // SAFETY: a deliberate crash right after transfer, for tests.
        unsafe { libc::raise(libc::SIGSEGV) };
    }
    if !crate::base::control_bound::wait_bound(Duration::from_secs(2)) {
        fail("the control socket of the new version did not come up");
    }
    // Workers the start-up forked: each transfers on its own, from its old
    // counterpart's checkpoint, and must be ready too.
    let t = Instant::now();
    (report.workers, report.worker_fds) =
        crate::new_version::workers::wait_ready(Duration::from_secs(5))
            .unwrap_or_else(|e| fail(&e));
    status(&format!(
        "phase workers {:.3}",
        t.elapsed().as_secs_f64() * 1e3
    ));
    report.fds_closed = unclaimed.iter().map(|e| e.fds.len() as u64).sum();
    status(&format!(
        "ready {}",
        serde_json::to_string(&report).unwrap_or_default()
    ));
    // Read at initialisation: the program may have replaced its
    // environment since (nginx keeps only TZ).
    let cfd = update_link::commit_fd();
    if cfd < 0 {
        fail("no commit channel")
    }
    // SAFETY: the commit pipe's read end, ours alone.
    let f = unsafe { std::fs::File::from_raw_fd(cfd) };
    let mut line = String::new();
    if BufReader::new(f).read_line(&mut line).unwrap_or(0) == 0 || line.trim() != "commit" {
        fail("the old version did not commit");
    }
    crate::new_version::workers::commit_new();
    for e in &unclaimed {
        for &fd in &e.fds {
            // SAFETY: an inherited start-up resource the new version does not use.
            unsafe { libc::close(fd) };
        }
    }
    for v in [
        RESTORE_FD_ENV,
        crate::heap::HEAP_FD_ENV,
        COMMIT_FD_ENV,
        crate::interpose::children::WORKERS_FD_ENV,
    ] {
        std::env::remove_var(v);
    }
    notify_supervisor();
    RESTORING.store(false, Ordering::SeqCst);
    status("committed");
    for fd in KEPT_CHANNELS.lock().unwrap().drain(..) {
        crate::base::private_fd::release(fd);
    }
    update_link::close_status();
    std::env::remove_var(STATUS_FD_ENV);
    quiesce::resume();
    let _ = std::io::stderr().flush();
    true
}

/// Tells systemd (when it supervises us) that the service's main PID changed.
fn notify_supervisor() {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let msg = format!("MAINPID={}\nREADY=1\n", std::process::id());
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    if let Some(abs) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(a) = std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()) {
            let _ = sock.send_to_addr(msg.as_bytes(), &a);
        }
    } else {
        let _ = sock.send_to(msg.as_bytes(), &path);
    }
}
