//! The client side of the control protocol (mcr_types::protocol).
//!
//! Every step is bounded: connecting (a process whose control thread does
//! not accept fills its backlog, and a blocking `connect` would then wait
//! forever), sending, and the whole exchange, which has one deadline
//! (`timeout_s`, or `$MCR_CTL_TIMEOUT` seconds when set). Errors are one line
//! that names the process.

use anyhow::{anyhow, bail, Result};
use mcr_types::protocol::{control_socket_name, Info, PhaseTime, Reply, Request, UpdateReport};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Longest wait for the process to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The reply deadline: `$MCR_CTL_TIMEOUT` (seconds) if set, else `default_s`.
fn timeout(default_s: f64) -> f64 {
    std::env::var("MCR_CTL_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(default_s)
}

/// What /proc says about a PID: `None` if there is no such process.
fn process_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may hold spaces and parentheses.
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

fn gone(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z') | Some('X'))
}

/// Whether the process is gone or goes within a second: a process that
/// dies closes its sockets before /proc shows it dead.
fn gone_soon(pid: u32) -> bool {
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        if gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    gone(pid)
}

/// Connects to `@mcr/<pid>` without blocking longer than `CONNECT_TIMEOUT`.
fn connect(pid: u32) -> Result<UnixStream> {
    match process_state(pid) {
        None => bail!("no process with PID {pid}"),
        Some('Z') | Some('X') => bail!("process {pid} has exited"),
        _ => {}
    }
    let name = control_socket_name(pid);
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_un is valid; the name fits (checked below).
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let nb = name.as_bytes();
    if nb.len() + 1 > sa.sun_path.len() {
        bail!("control socket name too long");
    }
    // Abstract namespace: a leading NUL, no terminator.
    for (d, s) in sa.sun_path[1..].iter_mut().zip(nb) {
        *d = *s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + nb.len()) as libc::socklen_t;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        // SAFETY: connect(2) with a sockaddr_un of the given length.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_un as *const libc::sockaddr,
                len,
            )
        };
        if r == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) | Some(libc::ENOENT) => {
                if gone(pid) {
                    bail!("process {pid} has exited");
                }
                bail!(
                    "process {pid} is not a program built with mcr-cc (no control socket @{name})"
                )
            }
            // Backlog full (nobody accepts): retry until the deadline.
            Some(libc::EAGAIN) | Some(libc::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(libc::EAGAIN) => bail!(
                "process {pid} does not accept control connections (waited {} s; is it stopped?)",
                CONNECT_TIMEOUT.as_secs()
            ),
            _ => bail!("cannot reach process {pid}: {e}"),
        }
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn exchange(
    pid: u32,
    req: &Request,
    timeout_s: f64,
    mut on: impl FnMut(Reply) -> Option<Reply>,
) -> Result<Reply> {
    let timeout_s = timeout(timeout_s);
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    let mut s = connect(pid)?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    // A refusing process answers and closes without reading the request:
    // a failed write is reported only if no answer can be read either.
    let sent = s.write_all(&line);
    let mut r = BufReader::new(s);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("process {pid} did not answer within {timeout_s} s");
        }
        r.get_ref().set_read_timeout(Some(left))?;
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) if sent.is_err() => {
                let e = sent.as_ref().unwrap_err();
                if gone_soon(pid) {
                    bail!("process {pid} exited during the command");
                }
                bail!("process {pid}: sending the request: {e}")
            }
            Ok(0) => {
                if gone_soon(pid) {
                    bail!("process {pid} exited during the command");
                }
                bail!("process {pid} closed the control connection without answering")
            }
            Ok(_) if !l.ends_with('\n') => {
                // A partial line: the peer closed mid-reply.
                if gone_soon(pid) {
                    bail!("process {pid} exited during the command");
                }
                bail!("process {pid} closed the control connection mid-reply")
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("process {pid} did not answer within {timeout_s} s")
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                if gone_soon(pid) {
                    bail!("process {pid} exited during the command");
                }
                bail!("process {pid} reset the control connection")
            }
            Err(e) => bail!("process {pid}: {e}"),
        }
        let reply: Reply =
            serde_json::from_str(&l).map_err(|e| anyhow!("process {pid}: bad reply: {e}"))?;
        if let Reply::Error { message } = &reply {
            bail!("process {pid}: {message}");
        }
        if let Some(done) = on(reply) {
            return Ok(done);
        }
    }
}

/// One request, one reply.
pub fn ask(pid: u32, req: &Request, timeout_s: f64) -> Result<Reply> {
    exchange(pid, req, timeout_s, Some)
}

/// An update: phase replies stream in, the last one is the report.
pub fn update(
    pid: u32,
    req: &Request,
    timeout_s: f64,
    mut phase: impl FnMut(&PhaseTime),
) -> Result<UpdateReport> {
    match exchange(pid, req, timeout_s, |r| match r {
        Reply::Phase(p) => {
            phase(&p);
            None
        }
        other => Some(other),
    })? {
        Reply::Updated(u) => Ok(u),
        r => bail!("process {pid}: unexpected reply: {r:?}"),
    }
}

/// Instrumented processes: those with an `@mcr/<pid>` socket listening
/// that answer (processes of other users refuse, and are left out). Asked
/// in parallel, each within a few seconds.
pub fn list() -> Vec<Info> {
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let mut pids: Vec<u32> = unix
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix("@mcr/")?.parse().ok())
        .collect();
    pids.sort();
    pids.dedup();
    let mut out: Vec<Info> = std::thread::scope(|s| {
        let hs: Vec<_> = pids
            .iter()
            .map(|&pid| {
                s.spawn(move || match ask(pid, &Request::Info, 3.0) {
                    Ok(Reply::Info(i)) => Some(i),
                    _ => None,
                })
            })
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    out.sort_by_key(|i| i.pid);
    out
}
