//! Harness of the `mcr-ctl` integration tests: builds the C fixtures of
//! `tests/heap-fixtures/` with `mcr-cc`, runs them (each prints "ready" and
//! blocks reading stdin), runs `mcr-ctl` against them with a bounded wait,
//! and cleans up.
//!
//! The toolchain: `$MCR_BIN_DIR` (holding mcr-cc, mcr-ctl, libmcr_rt.a) if
//! set, else the cargo profile directory this test was built into (build
//! it first: `cargo build -p mcr-cc -p mcr-ctl -p mcr-rt`, same profile).
#![allow(dead_code)]

use mcr_types::protocol::{HeapReport, TraceReport, TraceRow};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Longest a single `mcr-ctl` run may take before the test calls it a hang.
pub const CTL_LIMIT: Duration = Duration::from_secs(60);

pub struct Toolchain {
    pub dir: PathBuf,
    pub cc: PathBuf,
    pub ctl: PathBuf,
    pub rt: PathBuf,
}

pub fn toolchain() -> &'static Toolchain {
    static T: OnceLock<Toolchain> = OnceLock::new();
    T.get_or_init(|| {
        let (dir, ctl) = match std::env::var_os("MCR_BIN_DIR") {
            Some(d) => {
                let d = PathBuf::from(d);
                (d.clone(), d.join("mcr-ctl"))
            }
            None => {
                let exe = std::env::current_exe().expect("current_exe");
                let mut d = exe.parent().expect("test dir").to_path_buf();
                if d.file_name().is_some_and(|n| n == "deps") {
                    d.pop();
                }
                (d, PathBuf::from(env!("CARGO_BIN_EXE_mcr-ctl")))
            }
        };
        let t = Toolchain {
            cc: dir.join("mcr-cc"),
            rt: dir.join("libmcr_rt.a"),
            ctl,
            dir,
        };
        for p in [&t.cc, &t.ctl, &t.rt] {
            assert!(
                p.is_file(),
                "{} not found: build the toolchain first (`cargo build -p mcr-cc -p mcr-ctl -p mcr-rt`, \
                 same profile as the tests) or set MCR_BIN_DIR",
                p.display()
            );
        }
        t
    })
}

/// `tests/` of the workspace (fixtures are compiled from there, so sites
/// read `heap-fixtures/<name>.c:<line>`).
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests")
}

pub fn fixture_source(name: &str) -> PathBuf {
    tests_dir().join("heap-fixtures").join(format!("{name}.c"))
}

fn fnv(mut h: u64, b: &[u8]) -> u64 {
    if h == 0 {
        h = 0xcbf2_9ce4_8422_2325;
    }
    for &x in b {
        h = (h ^ x as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn stamp(p: &Path) -> Vec<u8> {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!("{}:{}:{}", p.display(), m.len(), t.as_nanos()).into_bytes()
}

/// How a fixture is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// mcr-cc at -O2 / -O0.
    O2,
    O0,
    /// Plain clang-22, not instrumented.
    Plain,
}

/// Builds a fixture (cached under `<bin dir>/mcr-ctl-fixtures/`, keyed by
/// sources, flags and toolchain) and returns the binary.
pub fn build(name: &str, how: Build) -> PathBuf {
    let tc = toolchain();
    let src = fixture_source(name);
    let (cc, flags): (PathBuf, &[&str]) = match how {
        Build::O2 => (tc.cc.clone(), &["-O2", "-Wall"]),
        Build::O0 => (tc.cc.clone(), &["-O0", "-Wall"]),
        Build::Plain => (PathBuf::from("clang-22"), &["-O2", "-Wall"]),
    };
    let mut h = fnv(0, &std::fs::read(&src).expect("fixture source"));
    h = fnv(
        h,
        &std::fs::read(tests_dir().join("heap-fixtures/hf.h")).expect("hf.h"),
    );
    h = fnv(h, format!("{how:?}").as_bytes());
    // A fixture's second translation unit, if it has one.
    let lib = tests_dir().join(format!("heap-fixtures/{name}.lib.c"));
    if let Ok(c) = std::fs::read(&lib) {
        h = fnv(h, &c);
    }
    // A fixture's own mcr.toml (pool and slab allocators) sits beside it.
    let config = tests_dir().join(format!("heap-fixtures/{name}.mcr.toml"));
    if let Ok(c) = std::fs::read(&config) {
        h = fnv(h, &c);
    }
    if how != Build::Plain {
        h = fnv(h, &stamp(&tc.cc));
        h = fnv(h, &stamp(&tc.rt));
    }
    let cache = tc.dir.join("mcr-ctl-fixtures");
    std::fs::create_dir_all(&cache).expect("fixture cache");
    let out = cache.join(format!("{name}-{how:?}-{h:016x}"));
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if out.is_file() {
        return out;
    }
    let tmp = cache.join(format!(".tmp-{}-{name}-{h:016x}", std::process::id()));
    let r = Command::new(&cc)
        .args(flags)
        .arg(format!("heap-fixtures/{name}.c"))
        .args(lib.is_file().then(|| format!("heap-fixtures/{name}.lib.c")))
        .arg("-o")
        .arg(&tmp)
        .arg("-lpthread")
        .current_dir(tests_dir())
        .env("MCR_RT_LIB", &tc.rt)
        .env(
            "MCR_CONFIG",
            if config.is_file() {
                config.clone()
            } else {
                PathBuf::from("/dev/null")
            },
        )
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", cc.display()));
    assert!(
        r.status.success(),
        "{} {name}.c failed:\n{}{}",
        cc.display(),
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    std::fs::rename(&tmp, &out).expect("rename fixture");
    mcr_e2e::prune_fixture_cache(&cache, &format!("{name}-{how:?}-"), &out);
    out
}

/// The line of the first source line of a fixture holding `SITE:<tag>`.
pub fn site_line(name: &str, tag: &str) -> String {
    let src = std::fs::read_to_string(fixture_source(name)).expect("fixture source");
    let want = format!("SITE:{tag} ");
    let n = src
        .lines()
        .position(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("{name}.c has no SITE:{tag} marker"));
    format!("heap-fixtures/{name}.c:{}", n + 1)
}

/// Whether `@mcr/<pid>` is listening.
pub fn has_control_socket(pid: u32) -> bool {
    let want = format!("@mcr/{pid}");
    std::fs::read_to_string("/proc/net/unix").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().nth(7) == Some(want.as_str()))
    })
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Sends SIGSTOP and waits (bounded) until every thread of `pid` is
/// stopped: the signal takes effect asynchronously, and the control thread
/// may answer one more request meanwhile.
pub fn stop_process(pid: u32) {
    // SAFETY: signalling a fixture the calling test started.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let all_stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
            tasks.flatten().all(|t| {
                std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                    // The state follows the command name's closing parenthesis.
                    s.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
            })
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), all_stopped),
        "process {pid} did not stop within 5 s"
    );
}

/// A running fixture; killed (with the children it reported) on drop.
pub struct Fixture {
    pub child: Child,
    pub pid: u32,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    rx: mpsc::Receiver<String>,
    pub extra_pids: Vec<u32>,
}

impl Fixture {
    /// Starts `bin args...` (through `wrapper` if given, e.g. setpriv) and
    /// waits until it printed "ready" and, if `instrumented`, its control
    /// socket listens.
    pub fn start_full(bin: &Path, args: &[&str], wrapper: &[&str], instrumented: bool) -> Fixture {
        let mut cmd = if wrapper.is_empty() {
            Command::new(bin)
        } else {
            let mut c = Command::new(wrapper[0]);
            c.args(&wrapper[1..]).arg(bin);
            c
        };
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_retrying(&mut cmd, bin);
        let pid = child.id();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                l2.lock().unwrap().push(l.clone());
                let _ = tx.send(l);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let l3 = lines.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            l3.lock()
                .unwrap()
                .extend(s.lines().map(|l| format!("stderr: {l}")));
        });
        let stdin = child.stdin.take();
        let mut f = Fixture {
            child,
            pid,
            stdin,
            lines,
            rx,
            extra_pids: Vec::new(),
        };
        f.expect_line("ready", Duration::from_secs(20));
        if instrumented {
            assert!(
                wait_until(Duration::from_secs(20), || has_control_socket(pid)),
                "{} (pid {pid}) did not open its control socket within 20 s:\n{}",
                bin.display(),
                f.output()
            );
        }
        f
    }

    pub fn start(bin: &Path) -> Fixture {
        Fixture::start_full(bin, &[], &[], true)
    }

    /// Waits for a stdout line starting with `prefix`; returns it.
    pub fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "pid {}: no line \"{prefix}\" within {limit:?}; output:\n{}",
                    self.pid,
                    self.output()
                ),
            }
        }
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

fn spawn_retrying(cmd: &mut Command, bin: &Path) -> Child {
    for _ in 0..50 {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("start {}: {e}", bin.display()),
        }
    }
    panic!("start {}: text file busy", bin.display());
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stdin = None; // end of file: the fixture exits by itself
        for &p in &self.extra_pids {
            // SAFETY: signalling a process this test started (a fixture's child).
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        // SAFETY: as above; SIGCONT in case a test stopped it.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGCONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `mcr-ctl` run did.
#[derive(Debug)]
pub struct Ctl {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `mcr-ctl args...` (through `wrapper` if given), killing it and
/// failing the test if it takes longer than [`CTL_LIMIT`].
pub fn ctl_full(args: &[&str], wrapper: &[&str], env: &[(&str, &str)]) -> Ctl {
    let tc = toolchain();
    let mut cmd = if wrapper.is_empty() {
        Command::new(&tc.ctl)
    } else {
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(&tc.ctl);
        c
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let mut c = cmd.spawn().expect("run mcr-ctl");
    let mut out = c.stdout.take().unwrap();
    let mut err = c.stderr.take().unwrap();
    let ho = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let he = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = c.try_wait().expect("wait mcr-ctl") {
            break s;
        }
        if t0.elapsed() > CTL_LIMIT {
            let _ = c.kill();
            let _ = c.wait();
            panic!("mcr-ctl {args:?} hung (killed after {CTL_LIMIT:?})");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ctl {
        code: status.code(),
        stdout: ho.join().unwrap(),
        stderr: he.join().unwrap(),
        elapsed: t0.elapsed(),
    }
}

pub fn ctl(args: &[&str]) -> Ctl {
    ctl_full(args, &[], &[])
}

/// `mcr-ctl <args> --json`, which must succeed; parsed.
pub fn ctl_json<T: serde::de::DeserializeOwned>(args: &[&str]) -> T {
    let mut a = args.to_vec();
    a.push("--json");
    let r = ctl(&a);
    assert_eq!(
        r.code,
        Some(0),
        "mcr-ctl {a:?} failed: {}{}",
        r.stdout,
        r.stderr
    );
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("mcr-ctl {a:?}: bad JSON ({e}):\n{}", r.stdout))
}

pub fn heap(pid: u32) -> HeapReport {
    ctl_json(&["heap", &pid.to_string()])
}

pub fn trace(pid: u32) -> TraceReport {
    ctl_json(&["trace", &pid.to_string()])
}

/// Live (objects, bytes) per type (untyped: `untyped @ <site>`).
pub fn heap_by_type(h: &HeapReport) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for s in &h.sites {
        let k =
            s.ty.clone()
                .unwrap_or_else(|| format!("untyped @ {}", s.site));
        let e: &mut (u64, u64) = m.entry(k).or_default();
        e.0 += s.objects;
        e.1 += s.bytes;
    }
    m
}

/// Live (objects, bytes) per site.
pub fn heap_by_site(h: &HeapReport) -> HashMap<String, (u64, u64)> {
    h.sites
        .iter()
        .map(|s| (s.site.clone(), (s.objects, s.bytes)))
        .collect()
}

pub fn row<'a>(rows: &'a [TraceRow], what: &str) -> Option<&'a TraceRow> {
    rows.iter().find(|r| r.what == what)
}

/// (reachable, unreachable) of a type row, (0, 0) when absent.
pub fn counts(rows: &[TraceRow], what: &str) -> (u64, u64) {
    row(rows, what).map_or((0, 0), |r| (r.reachable, r.unreachable))
}

/// Checks a trace exactly: every `(type, reachable, unreachable)` in
/// `types` and `(site, reachable, unreachable)` in `sites`, the total of
/// unreachable objects (so nothing else leaked, in particular nothing of
/// the runtime's or libc's), and that what is unreachable is reported
/// leaked with its bytes.
pub fn check_trace(t: &TraceReport, types: &[(&str, u64, u64)], sites: &[(&str, u64, u64)]) {
    let show = || serde_json::to_string_pretty(t).unwrap();
    for &(ty, r, u) in types {
        assert_eq!(
            counts(&t.rows, ty),
            (r, u),
            "type {ty}: (reachable, unreachable)\n{}",
            show()
        );
    }
    for &(s, r, u) in sites {
        assert_eq!(
            counts(&t.sites, s),
            (r, u),
            "site {s}: (reachable, unreachable)\n{}",
            show()
        );
    }
    let want_unreachable: u64 = types.iter().map(|x| x.2).sum::<u64>()
        + sites
            .iter()
            .filter(|(s, _, _)| {
                // Sites of a listed type are counted with their type.
                row(&t.sites, s).is_some_and(|r| {
                    r.ty.as_deref()
                        .is_none_or(|ty| !types.iter().any(|x| x.0 == ty))
                })
            })
            .map(|x| x.2)
            .sum::<u64>();
    assert_eq!(
        t.unreachable,
        want_unreachable,
        "unreachable objects in total\n{}",
        show()
    );
    assert_eq!(t.reachable + t.unreachable, t.objects);
    assert_eq!(
        counts(&t.rows, "untyped @ (uninstrumented)").1,
        0,
        "libc's and the runtime's own objects must not look leaked\n{}",
        show()
    );
    for r in &t.rows {
        assert_eq!(r.unreachable == 0, r.unreachable_bytes == 0, "{r:?}");
        assert_eq!(r.unreachable == 0, r.leak_sites.is_empty(), "{r:?}");
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
