//! `mcr-ctl profile PID`: records where the program's threads wait while it
//! serves, picks each thread's quiescent points (the calls it spends its
//! blocked time in: the tops of its loops), and keeps them beside the
//! executable as `<exe>.mcr-profile.toml`. `mcr-ctl update` then parks
//! threads only there: a thread blocked anywhere else (half-way through a
//! request) is let run until it comes round.

use anyhow::{bail, Context, Result};
use mcr_types::protocol::{CodeRef, ProfileReport, Reply, Request};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A call site is a quiescent point of a thread if the thread spends at
/// least this share of its blocked time there.
const QUIESCENT_SHARE: f64 = 0.2;

/// What is kept with the build.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedProfile {
    /// The executable profiled, and a hash of its bytes: offsets are only
    /// meaningful for this very build.
    pub binary: String,
    pub binary_hash: String,
    pub duration_ms: u64,
    /// Shared libraries holding quiescent points, with their hashes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub libraries: BTreeMap<String, String>,
    #[serde(rename = "quiescent_point", default)]
    pub quiescent_points: Vec<QuiescentPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuiescentPoint {
    /// Return address of the call.
    #[serde(flatten)]
    pub at: CodeRef,
    pub call: String,
    /// `function+0xNN`, and `file:line` when the build has line tables.
    pub function: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
}

/// Where the profile of an executable is kept.
pub fn profile_path(exe: &Path) -> PathBuf {
    let mut p = exe.as_os_str().to_owned();
    p.push(".mcr-profile.toml");
    PathBuf::from(p)
}

fn hash_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:016x}", mcr_types::fnv1a(bytes.iter().copied())))
}

/// Names code addresses of the executable and its libraries.
struct Symbolizer {
    exe: PathBuf,
    loaders: std::cell::RefCell<BTreeMap<String, Option<addr2line::Loader>>>,
}

impl Symbolizer {
    fn new(exe: &Path) -> Symbolizer {
        Symbolizer {
            exe: exe.to_path_buf(),
            loaders: Default::default(),
        }
    }
    fn with<T>(
        &self,
        at: &CodeRef,
        f: impl FnOnce(&addr2line::Loader, u64) -> Option<T>,
    ) -> Option<T> {
        let mut l = self.loaders.borrow_mut();
        let loader = l.entry(at.module.clone()).or_insert_with(|| {
            let path = if at.module.is_empty() {
                self.exe.as_path()
            } else {
                Path::new(&at.module)
            };
            addr2line::Loader::new(path).ok()
        });
        // The return address is just after the call: look up the call itself.
        f(loader.as_ref()?, at.offset.saturating_sub(1))
    }
    /// The function's name; in a library, `lib+0xoffset` unless its debug
    /// info names the function (its exported symbols alone would name the
    /// nearest export, which misleads).
    fn function(&self, at: &CodeRef) -> String {
        if !at.module.is_empty() {
            let lib = at.module.rsplit('/').next().unwrap_or(&at.module);
            let named = self.with(at, |l, probe| {
                let mut frames = l.find_frames(probe).ok()?;
                let f = frames.next().ok()??;
                Some(f.function?.demangle().ok()?.into_owned())
            });
            return match named {
                Some(n) => format!("{n} ({lib})"),
                None => format!("{lib}+{:#x}", at.offset),
            };
        }
        self.with(at, |l, probe| l.find_symbol(probe).map(str::to_string))
            .unwrap_or_else(|| format!("{:#x}", at.offset))
    }
    fn location(&self, at: &CodeRef) -> String {
        let loc = self.with(at, |l, probe| {
            let loc = l.find_location(probe).ok()??;
            Some((loc.file?.to_string(), loc.line))
        });
        match loc {
            Some((f, Some(n))) => format!("{f}:{n}"),
            Some((f, None)) => f,
            None => String::new(),
        }
    }
}

/// The executable a process runs (its path on disk).
pub fn exe_of(pid: u32) -> Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("process {pid}: cannot read its executable"))
}

pub fn run(pid: u32, seconds: f64, out: Option<PathBuf>, json: bool) -> Result<()> {
    if !(0.1..=3600.0).contains(&seconds) {
        bail!("--duration must be between 0.1 and 3600 seconds");
    }
    let exe = exe_of(pid)?;
    let duration_ms = (seconds * 1e3) as u64;
    let report = match crate::client::ask(pid, &Request::Profile { duration_ms }, seconds + 30.0)? {
        Reply::Profile(p) => p,
        r => bail!("process {pid}: unexpected reply: {r:?}"),
    };
    let sym = Symbolizer::new(&exe);
    let points = quiescent_points(&report, &sym);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::render::profile(&report, &points, |a| sym.function(a), |a| sym.location(a));
    }
    if points.is_empty() {
        bail!("no thread blocked during the profile: nothing saved (profile while the program serves)");
    }
    let saved = SavedProfile {
        binary: exe.to_string_lossy().into_owned(),
        binary_hash: hash_file(&exe)?,
        duration_ms: report.duration_ms,
        libraries: points
            .iter()
            .filter(|p| !p.at.module.is_empty())
            .map(|p| Ok((p.at.module.clone(), hash_file(Path::new(&p.at.module))?)))
            .collect::<Result<_>>()?,
        quiescent_points: points,
    };
    let path = out.unwrap_or_else(|| profile_path(&exe));
    std::fs::write(&path, toml::to_string(&saved)?).with_context(|| {
        format!(
            "writing {} (choose another place with --out)",
            path.display()
        )
    })?;
    if !json {
        println!(
            "{} quiescent point(s) saved to {}; `mcr-ctl update` uses them for this build",
            saved.quiescent_points.len(),
            path.display()
        );
    }
    Ok(())
}

/// Per thread, the call sites holding at least [`QUIESCENT_SHARE`] of its
/// blocked time; unknown sites (offset 0) never count.
fn quiescent_points(r: &ProfileReport, sym: &Symbolizer) -> Vec<QuiescentPoint> {
    let mut out: Vec<QuiescentPoint> = Vec::new();
    for t in &r.threads {
        let total: u64 = t.sites.iter().map(|s| s.blocked_ns).sum();
        for s in &t.sites {
            if s.at.offset == 0
                || s.at.module == "?"
                || total == 0
                || (s.blocked_ns as f64) < QUIESCENT_SHARE * total as f64
                || out.iter().any(|p| p.at == s.at)
            {
                continue;
            }
            out.push(QuiescentPoint {
                at: s.at.clone(),
                call: s.call.clone(),
                function: sym.function(&s.at),
                location: sym.location(&s.at),
            });
        }
    }
    out.sort_by(|a, b| (&a.at.module, a.at.offset).cmp(&(&b.at.module, b.at.offset)));
    out
}

/// The quiescent points `mcr-ctl update` hands to the process: from
/// `explicit`, or the profile kept beside its executable if there is one
/// for this very build. Says on stderr which it uses (unless `quiet`) and
/// always when it ignores a stale one.
pub fn for_update(pid: u32, explicit: Option<&Path>, quiet: bool) -> Result<Option<Vec<CodeRef>>> {
    // No process (or not ours to look at): the update itself says so.
    let Ok(exe) = exe_of(pid) else {
        return Ok(None);
    };
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = profile_path(&exe);
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading profile {}", path.display()))?;
    let saved: SavedProfile =
        toml::from_str(&text).with_context(|| format!("profile {}", path.display()))?;
    let stale = saved.binary_hash != hash_file(&exe)?
        || saved
            .libraries
            .iter()
            .any(|(lib, h)| hash_file(Path::new(lib)).ok().as_ref() != Some(h));
    if stale {
        let msg = format!(
            "profile {} was recorded for another build of {} or its libraries",
            path.display(),
            exe.display()
        );
        if explicit.is_some() {
            bail!("{msg}");
        }
        eprintln!("mcr-ctl: {msg}: ignored, every blocking call counts as a quiescent point");
        return Ok(None);
    }
    if !quiet {
        eprintln!(
            "  quiescent points: {} from {}",
            saved.quiescent_points.len(),
            path.display()
        );
    }
    Ok(Some(
        saved.quiescent_points.into_iter().map(|p| p.at).collect(),
    ))
}
