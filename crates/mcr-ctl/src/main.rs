//! `mcr-ctl`: talks to running programs built with mcr-cc.

mod client;
mod diff;
mod profile;
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
    /// Walk the heap from the roots (globals, thread-locals, thread stacks;
    /// not registers): reachable and unreachable (leaked) objects.
    Trace {
        pid: u32,
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "type")]
        by: By,
    },
    /// Record where threads wait while the program serves; keep their
    /// quiescent points with the build (<exe>.mcr-profile.toml).
    Profile {
        pid: u32,
        /// How long to record, in seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Where to keep the profile (default: beside the executable).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
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
        /// Quiescent points from this profile (default: the one kept beside
        /// the running executable, if it matches the build).
        #[arg(long, conflicts_with = "no_profile")]
        profile: Option<std::path::PathBuf>,
        /// Ignore any profile: every blocking call is a quiescent point.
        #[arg(long)]
        no_profile: bool,
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
        Cmd::Profile {
            pid,
            duration,
            out,
            json,
        } => profile::run(pid, duration, out, json)?,
        Cmd::Update {
            pid,
            new_binary,
            timeout,
            json,
            profile: profile_file,
            no_profile,
            args,
        } => {
            let quiescent_sites = if no_profile {
                None
            } else {
                profile::for_update(pid, profile_file.as_deref(), json)?
            };
            let binary = std::fs::canonicalize(&new_binary)
                .with_context(|| format!("new binary {new_binary}"))?
                .to_string_lossy()
                .into_owned();
            let req = Request::Update(UpdateRequest {
                binary,
                args: (!args.is_empty()).then_some(args),
                timeout_ms: (timeout * 1e3) as u64,
                quiescent_sites,
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
