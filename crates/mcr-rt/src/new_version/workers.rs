//! The new master's workers (see `interpose::children` for the whole
//! protocol): its start-up's forks are paired with the old workers; each
//! new worker receives its counterpart's state at its first quiescent
//! point (`transfer::run_worker`), reports ready over a private channel
//! and waits for the new master's commit.

use crate::heap;
use crate::interpose::children::{
    self, line_from, line_to, raw_close, runs_other_program, ChildRestore, WORKERS_FD_ENV,
};
use crate::interpose::{quiesce, worker_fds};
use crate::new_version::restore_state;
use crate::program::snapshot;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

extern "C" {
    fn free(p: *mut u8);
}

/// New master: reads the old workers' checkpoints and notes the inherited
/// descriptors (called by the restore at initialisation).
pub fn init_from_env() {
    let inherited = crate::base::private_fd::program_fds();
    children::on_worker_restore(restore_child);
    let Some(fd) = crate::base::update_link::env_fd(WORKERS_FD_ENV) else {
        children::expect_old_workers(Vec::new(), inherited);
        return;
    };
    // SAFETY: the memfd the old version handed us for this.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    children::expect_old_workers(serde_json::from_str(&s).unwrap_or_default(), inherited);
}

/// A new worker at its first quiescent point: its counterpart's state in,
/// its connections installed, ready to the new master, then wait for commit.
fn restore_child(mut r: ChildRestore) {
    let fail = |msg: &str| -> ! {
        line_to(&r.link, &format!("error {msg}"));
        eprintln!("mcr-rt: live update failed in a new worker: {msg}");
        // SAFETY: leave at once; the new master fails and the old version resumes.
        unsafe { libc::_exit(70) }
    };
    if let Err(e) = restore_state::wait_threads_parked(Duration::from_secs(5)) {
        fail(&e);
    }
    if crate::base::fault::fault("worker") {
        fail("MCR_FAULT=worker");
    }
    // Its control thread opens files (its symbol table) and sockets at
    // low numbers for a moment: done once it listens, before the old
    // worker's descriptors take their numbers.
    if !crate::base::control_bound::wait_bound(Duration::from_secs(2)) {
        fail("the control socket of the new worker did not come up");
    }
    let new_startup = snapshot::live_objects(true);
    let mut fds_installed = 0;
    let carried = match &r.old {
        Some(old) => {
            let mut cookies: Vec<u64> = old
                .runtime_fds
                .registrations
                .iter()
                .map(|g| g.data)
                .collect();
            let objects = match restore_state::with_state(|s| {
                crate::new_version::transfer::run_worker(s, old, &new_startup, &mut cookies)
            }) {
                Some(Ok(rep)) => rep.globals + rep.objects_precise + rep.objects_conservative,
                Some(Err(e)) => fail(&format!("from old worker {}: {e}", old.pid)),
                None => fail("the new master's restore state is gone"),
            };
            let held = std::mem::take(&mut r.fds);
            match worker_fds::install(&old.runtime_fds, held, &cookies) {
                Ok(n) => fds_installed = n,
                Err(e) => fail(&format!("from old worker {}: {e}", old.pid)),
            }
            // Its connections are back under their numbers: each one an
            // old thread was parked on is served, led, or refused.
            if let Err(e) = crate::interpose::held_connections::settle(&old.held, &[]) {
                fail(&format!("from old worker {}: {e}", old.pid));
            }
            objects
        }
        None => 0,
    };
    // The new master's heap came with the fork: its inherited objects are
    // the old master's, nothing of this process points to them.
    let mut old_objects = Vec::new();
    heap::for_each_live(|o| {
        if heap::is_inherited(o.addr) {
            old_objects.push(o.addr);
        }
    });
    for a in old_objects {
        // SAFETY: a live object of the old master nothing here refers to.
        unsafe { free(a as *mut u8) };
    }
    heap::clear_inherited();
    line_to(&r.link, &format!("ready {carried} {fds_installed}"));
    if line_from(&r.link, None).as_deref() != Some("commit") {
        // SAFETY: the update was not committed: this process must not run.
        unsafe { libc::_exit(70) };
    }
    // SAFETY: prctl on ourselves; the program's own setting is left alone.
    unsafe {
        let mut sig: libc::c_int = 0;
        libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int);
        if sig == libc::SIGKILL {
            libc::prctl(libc::PR_SET_PDEATHSIG, 0);
        }
    }
    drop(r);
    restore_state::finish_in_child();
    quiesce::resume();
}

/// New master, after its own transfer: every child it forked must report
/// ready. Returns how many were paired with an old worker, and how many
/// descriptors of old workers they took over.
pub fn wait_ready(timeout: Duration) -> Result<(u64, u64), String> {
    let deadline = Instant::now() + timeout;
    let list = children::new_children();
    let mut fds = 0;
    for c in list.iter() {
        match line_from(&c.link, Some(deadline)) {
            Some(l) if l.starts_with("ready") => {
                fds += l
                    .split_whitespace()
                    .nth(2)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Some(l) => {
                return Err(format!(
                    "worker {}: {}",
                    c.pid,
                    l.strip_prefix("error ").unwrap_or(&l)
                ))
            }
            None if Instant::now() >= deadline => {
                return Err(format!(
                    "worker {} did not reach a quiescent point within {} s",
                    c.pid,
                    timeout.as_secs()
                ))
            }
            // Its channel closed on exec: a helper program, not a worker.
            None if runs_other_program(c.pid) => {}
            None => return Err(format!("worker {} exited during its restore", c.pid)),
        }
    }
    Ok((list.iter().filter(|c| c.paired).count() as u64, fds))
}

/// New master, committed: its children run.
pub fn commit_new() {
    for c in children::new_children().drain(..) {
        line_to(&c.link, "commit");
    }
    // Connections of old workers no new fork was paired with end here.
    for w in children::take_unpaired_old_workers() {
        for fd in w.fds {
            raw_close(fd);
        }
    }
}
