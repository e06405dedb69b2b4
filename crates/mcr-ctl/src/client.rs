//! The client side of the control protocol (mcr_types::protocol).

use anyhow::{anyhow, bail, Result};
use mcr_types::protocol::{control_socket_name, Info, PhaseTime, Reply, Request, UpdateReport};
use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

fn connect(pid: u32, timeout_s: f64) -> Result<UnixStream> {
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        bail!("no process with PID {pid}");
    }
    let addr = SocketAddr::from_abstract_name(control_socket_name(pid).as_bytes())?;
    let s = UnixStream::connect_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            anyhow!(
                "process {pid} is not a program built with mcr-cc (no control socket @{})",
                control_socket_name(pid)
            )
        } else {
            anyhow!("cannot reach process {pid}: {e}")
        }
    })?;
    s.set_read_timeout(Some(Duration::from_secs_f64(timeout_s)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn exchange(
    pid: u32,
    req: &Request,
    timeout_s: f64,
    mut on: impl FnMut(Reply) -> Option<Reply>,
) -> Result<Reply> {
    let mut s = connect(pid, timeout_s)?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut r = BufReader::new(s);
    loop {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) => bail!(
                "process {pid} closed the control connection without answering (did it exit?)"
            ),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("process {pid} did not answer within {timeout_s} s")
            }
            Err(e) => bail!("process {pid}: {e}"),
        }
        let reply: Reply =
            serde_json::from_str(&l).map_err(|e| anyhow!("bad reply from {pid}: {e}"))?;
        if let Reply::Error { message } = &reply {
            bail!("{message}");
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
        r => bail!("unexpected reply: {r:?}"),
    }
}

/// Instrumented processes: those with an `@mcr/<pid>` socket listening.
pub fn list() -> Vec<Info> {
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let mut pids: Vec<u32> = unix
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix("@mcr/")?.parse().ok())
        .collect();
    pids.sort();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| match ask(pid, &Request::Info, 5.0) {
            Ok(Reply::Info(i)) => Some(i),
            _ => None,
        })
        .collect()
}
