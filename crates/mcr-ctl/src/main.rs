//! `mcr-ctl`: talks to running programs built with mcr-cc.

mod client;
mod diff;
mod render;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mcr_types::protocol::{Reply, Request, UpdateRequest};

#[derive(Parser)]
#[command(
    name = "mcr-ctl",
    version,
    about = "Inspect and live-update programs built with mcr-cc"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum By {
    Type,
    Site,
}

#[derive(Subcommand)]
enum Cmd {
    /// List instrumented processes visible to you.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Live objects and bytes per type or allocation site.
    Heap {
        pid: u32,
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "type")]
        by: By,
    },
    /// Walk the heap from the roots: reachable and unreachable (leaked) objects.
    Trace {
        pid: u32,
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "type")]
        by: By,
    },
    /// Replace a running program by a new version, keeping its state and connections.
    Update {
        pid: u32,
        new_binary: String,
        /// Quiescence deadline in seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
        #[arg(long)]
        json: bool,
        /// Arguments for the new version (default: the old ones).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// What an update from OLD to NEW would do to each type (binaries or .typemap.toml).
    Diff {
        old: String,
        new: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mcr-ctl: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ps { json } => {
            let infos = client::list();
            render::ps(&infos, json);
        }
        Cmd::Heap { pid, json, by } => match client::ask(pid, &Request::Heap, 30.0)? {
            Reply::Heap(h) => render::heap(&h, json, matches!(by, By::Site)),
            r => bail!("unexpected reply: {r:?}"),
        },
        Cmd::Trace { pid, json, by } => match client::ask(pid, &Request::Trace, 120.0)? {
            Reply::Trace(t) => render::trace(&t, json, matches!(by, By::Site)),
            r => bail!("unexpected reply: {r:?}"),
        },
        Cmd::Update {
            pid,
            new_binary,
            timeout,
            json,
            args,
        } => {
            let binary = std::fs::canonicalize(&new_binary)
                .with_context(|| format!("new binary {new_binary}"))?
                .to_string_lossy()
                .into_owned();
            let req = Request::Update(UpdateRequest {
                binary,
                args: (!args.is_empty()).then_some(args),
                timeout_ms: (timeout * 1e3) as u64,
            });
            let report = client::update(pid, &req, timeout + 60.0, |p| {
                if !json {
                    eprintln!("  {:<16} {:>9.2} ms", p.phase, p.millis);
                }
            })?;
            render::update(&report, json);
        }
        Cmd::Diff { old, new, json } => {
            let refused = diff::run(&old, &new, json)?;
            if refused {
                std::process::exit(2);
            }
        }
    }
    Ok(())
}
