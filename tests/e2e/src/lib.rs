//! Harness of the mcr end-to-end suite (in the style of CRIU's ZDTM): builds
//! the C fixtures in `tests/fixtures/` with `mcr-cc`, runs them on loopback,
//! talks their line protocol, live-updates them with `mcr-ctl update --json`
//! and cleans every process up.
//!
//! Every wait is bounded; every address is 127.0.0.1; each test gets its own
//! temporary directory (the fixture binaries are copied into it, so the
//! processes of one test are recognisable by their executable's path) and
//! its own port.

use mcr_types::protocol::UpdateReport;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

pub use mcr_types::protocol::UpdateReport as Report;

/// Where the fixtures' C sources live.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// The toolchain under test: `mcr-cc`, `mcr-ctl` and `libmcr_rt.a` in one
/// directory (`$MCR_BIN_DIR`, else the cargo profile directory the test
/// executable was built into).
pub struct Toolchain {
    pub dir: PathBuf,
    pub cc: PathBuf,
    pub ctl: PathBuf,
    pub rt: PathBuf,
}

pub fn toolchain() -> &'static Toolchain {
    static T: OnceLock<Toolchain> = OnceLock::new();
    T.get_or_init(|| {
        let dir = match std::env::var_os("MCR_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                let exe = std::env::current_exe().expect("current_exe");
                let mut d = exe.parent().expect("test executable has a directory").to_path_buf();
                if d.file_name().is_some_and(|n| n == "deps") {
                    d.pop();
                }
                d
            }
        };
        let t = Toolchain { cc: dir.join("mcr-cc"), ctl: dir.join("mcr-ctl"), rt: dir.join("libmcr_rt.a"), dir };
        for p in [&t.cc, &t.ctl, &t.rt] {
            assert!(
                p.is_file(),
                "mcr-e2e: {} not found. Build the toolchain first with `cargo build --workspace` \
                 (same profile as the tests), or point MCR_BIN_DIR at a directory holding mcr-cc, mcr-ctl and libmcr_rt.a.",
                p.display()
            );
        }
        // Forked workers and new versions whose parent exits are re-parented
        // to the test process, so Drop can reap them.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        t
    })
}

/// Optimisation level a fixture is built at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    O0,
    O2,
}

impl Opt {
    fn flag(self) -> &'static str {
        match self {
            Opt::O0 => "-O0",
            Opt::O2 => "-O2",
        }
    }
}

fn fnv(h: u64, b: &[u8]) -> u64 {
    let mut h = if h == 0 { 0xcbf29ce484222325 } else { h };
    for &x in b {
        h = (h ^ x as u64).wrapping_mul(0x100000001b3);
    }
    h
}

fn file_stamp(p: &Path) -> Vec<u8> {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!("{}:{}:{}", p.display(), m.len(), t.as_nanos()).into_bytes()
}

/// Builds `tests/fixtures/<name>.c` with mcr-cc (`-DFIXTURE_VERSION=<version>`
/// plus `defines`, each `NAME` or `NAME=VALUE`) and returns the binary.
/// Builds are cached under `<profile dir>/mcr-e2e-fixtures/`, keyed by the
/// sources, the flags and the toolchain's files, so each is compiled once.
pub fn build(name: &str, version: u32, opt: Opt, defines: &[&str]) -> PathBuf {
    let tc = toolchain();
    let src = fixtures_dir().join(format!("{name}.c"));
    let mut args: Vec<String> = vec![
        opt.flag().into(),
        "-Wall".into(),
        format!("-DFIXTURE_VERSION={version}"),
    ];
    args.extend(defines.iter().map(|d| format!("-D{d}")));
    let mut h = fnv(
        0,
        &std::fs::read(&src).unwrap_or_else(|e| panic!("fixture {}: {e}", src.display())),
    );
    h = fnv(
        h,
        &std::fs::read(fixtures_dir().join("fixture.h")).expect("fixture.h"),
    );
    h = fnv(h, args.join(" ").as_bytes());
    let tag: String = defines
        .iter()
        .flat_map(|d| {
            std::iter::once('-').chain(d.chars().map(|c| {
                if c.is_ascii_alphanumeric() {
                    c
                } else {
                    '_'
                }
            }))
        })
        .collect();
    // A fixture's own mcr.toml (allocators, renames) sits beside it; one
    // for a set of defines (`<name>-<DEFINE>.mcr.toml`) goes with them.
    let config = Some(fixtures_dir().join(format!("{name}{tag}.mcr.toml")))
        .filter(|c| !tag.is_empty() && c.is_file())
        .unwrap_or_else(|| fixtures_dir().join(format!("{name}.mcr.toml")));
    if let Ok(c) = std::fs::read(&config) {
        h = fnv(h, &c);
    }
    h = fnv(h, &file_stamp(&tc.cc));
    h = fnv(h, &file_stamp(&tc.rt));
    let cache = tc.dir.join("mcr-e2e-fixtures");
    std::fs::create_dir_all(&cache).expect("create fixture cache");
    let prefix = format!(
        "{name}-v{version}{tag}-{}-",
        opt.flag().trim_start_matches('-')
    );
    let out = cache.join(format!("{prefix}{h:016x}"));

    // One build per key at a time within this process.
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let lock = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(out.clone())
        .or_default()
        .clone();
    let _g = lock.lock().unwrap();
    if out.is_file() {
        return out;
    }
    let tmp = cache.join(format!(".tmp-{}-{h:016x}", std::process::id()));
    let r = Command::new(&tc.cc)
        .args(&args)
        .arg(&src)
        .arg("-o")
        .arg(&tmp)
        .env("MCR_RT_LIB", &tc.rt)
        .env(
            "MCR_CONFIG",
            if config.is_file() {
                config.as_os_str()
            } else {
                std::ffi::OsStr::new("/dev/null")
            },
        )
        .output()
        .expect("run mcr-cc");
    assert!(
        r.status.success(),
        "mcr-cc {} {} failed ({}):\n{}{}",
        args.join(" "),
        src.display(),
        r.status,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    std::fs::rename(&tmp, &out).expect("rename built fixture");
    prune_fixture_cache(&cache, &prefix, &out);
    out
}

/// Removes builds of the same fixture and flags made with older sources or
/// toolchains (left alone for ten minutes, in case another run uses them):
/// `<prefix><16 hex digits>` files of `cache` other than `keep`. mcr-ctl's
/// tests prune their fixture cache with it too (it had grown to 13 GB).
pub fn prune_fixture_cache(cache: &Path, prefix: &str, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let stale = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        let rest = e
            .file_name()
            .to_string_lossy()
            .strip_prefix(prefix)
            .map(str::to_string);
        if p != keep
            && stale
            && rest.is_some_and(|r| r.len() == 16 && r.chars().all(|c| c.is_ascii_hexdigit()))
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Builds a plain clang-22 binary (not instrumented), for refusal tests.
pub fn build_plain(name: &str, version: u32) -> PathBuf {
    let tc = toolchain();
    let src = fixtures_dir().join(format!("{name}.c"));
    let cache = tc.dir.join("mcr-e2e-fixtures");
    std::fs::create_dir_all(&cache).expect("create fixture cache");
    let mut h = fnv(0, &std::fs::read(&src).expect("fixture source"));
    h = fnv(
        h,
        &std::fs::read(fixtures_dir().join("fixture.h")).expect("fixture.h"),
    );
    let out = cache.join(format!("{name}-v{version}-plain-{h:016x}"));
    if out.is_file() {
        return out;
    }
    let tmp = cache.join(format!(
        ".tmp-plain-{}-{h:016x}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let r = Command::new("clang-22")
        .args(["-O2", &format!("-DFIXTURE_VERSION={version}")])
        .arg(&src)
        .args(["-o"])
        .arg(&tmp)
        .arg("-lpthread")
        .output()
        .expect("run clang-22");
    assert!(
        r.status.success(),
        "clang-22 {}: {}",
        src.display(),
        String::from_utf8_lossy(&r.stderr)
    );
    std::fs::rename(&tmp, &out).expect("rename");
    out
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// One test's directory: fixture binaries are copied here, servers run here.
pub struct Case {
    pub dir: tempfile::TempDir,
    pub fixture: String,
}

impl Case {
    pub fn new(fixture: &str) -> Case {
        let _ = toolchain();
        let dir = tempfile::Builder::new()
            .prefix(&format!("mcr-e2e-{fixture}-"))
            .tempdir()
            .expect("tempdir");
        Case {
            dir,
            fixture: fixture.into(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The fixture built for `version` at `opt`, copied into this case's directory.
    pub fn bin(&self, version: u32, opt: Opt) -> PathBuf {
        self.bin_with(version, opt, &[])
    }

    pub fn bin_with(&self, version: u32, opt: Opt, defines: &[&str]) -> PathBuf {
        let built = build(&self.fixture, version, opt, defines);
        let mut name = format!(
            "{}-v{version}-{}",
            self.fixture,
            opt.flag().trim_start_matches('-')
        );
        for d in defines {
            name.push('-');
            name.extend(
                d.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
            );
        }
        self.install(&built, &name)
    }

    /// Copies a binary into the case directory under `name`.
    pub fn install(&self, built: &Path, name: &str) -> PathBuf {
        let dst = self.path().join(name);
        if !dst.exists() {
            std::fs::copy(built, &dst)
                .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", built.display(), dst.display()));
        }
        dst
    }

    pub fn start(&self, bin: &Path) -> Server {
        self.start_with(bin, &[], &[])
    }

    /// Starts `bin PORT extra_args...` in the case directory with extra
    /// environment; waits (bounded) until it answers PING. A port found
    /// taken is retried with another.
    pub fn start_with(&self, bin: &Path, env: &[(&str, &str)], extra_args: &[&str]) -> Server {
        self.start_full(bin, env, extra_args, true, None)
    }

    /// A binary not built with mcr-cc has no control socket to wait for.
    pub fn start_plain(&self, bin: &Path) -> Server {
        self.start_full(bin, &[], &[], false, None)
    }

    /// Starts a program that daemonizes (`daemon(3)`: the process started
    /// exits, its child serves) and writes its PID to `pidfile` in the case
    /// directory: the server is that process.
    pub fn start_daemon(
        &self,
        bin: &Path,
        env: &[(&str, &str)],
        extra_args: &[&str],
        pidfile: &str,
    ) -> Server {
        self.start_full(bin, env, extra_args, true, Some(pidfile))
    }

    fn start_full(
        &self,
        bin: &Path,
        env: &[(&str, &str)],
        extra_args: &[&str],
        wait_control: bool,
        daemon_pidfile: Option<&str>,
    ) -> Server {
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let log = Arc::new(Mutex::new(String::new()));
            let mut cmd = Command::new(bin);
            cmd.arg(port.to_string())
                .args(extra_args)
                .current_dir(self.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = spawn_retrying(&mut cmd, bin);
            drain(child.stdout.take().unwrap(), log.clone());
            drain(child.stderr.take().unwrap(), log.clone());
            let pid = child.id();
            let mut server = Server {
                dir: self.path().to_path_buf(),
                port,
                pid,
                child,
                pids: vec![pid],
                log,
                admin: None,
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut daemonized = false;
            loop {
                if let (Some(f), false) = (daemon_pidfile, daemonized) {
                    if let Some(p) = std::fs::read_to_string(self.path().join(f))
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok())
                        .filter(|&p| p != pid && pid_alive(p))
                    {
                        let _ = server.child.wait(); // the daemon's parent exits
                        (server.pid, server.pids, daemonized) = (p, vec![pid, p], true);
                    }
                }
                if let Some(st) = (!daemonized)
                    .then(|| server.child.try_wait().ok().flatten())
                    .flatten()
                    .filter(|st| !(daemon_pidfile.is_some() && st.success()))
                {
                    std::thread::sleep(Duration::from_millis(50));
                    last = format!(
                        "{} exited with {st} before serving:\n{}",
                        bin.display(),
                        server.log()
                    );
                    if st.code() == Some(3) {
                        break; // port taken: try another
                    }
                    panic!("{last}");
                }
                if server.admin.is_none() {
                    if let Ok(mut c) = Client::connect(port) {
                        if c.try_cmd("PING").as_deref().is_ok_and(|r| r == "PONG") {
                            server.admin = Some(Mutex::new(c));
                        }
                    }
                }
                // The runtime binds its control socket from a thread of its
                // own: wait for it too, or mcr-ctl says "not built with mcr-cc".
                if server.admin.is_some()
                    && (daemon_pidfile.is_none() || daemonized)
                    && (!wait_control || has_control_socket(server.pid))
                {
                    return server;
                }
                if Instant::now() > deadline {
                    panic!(
                        "{} did not answer PING on port {port} (or bind its control socket) within 15 s:\n{}",
                        bin.display(),
                        server.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start {}: {last}", bin.display());
    }
}

/// Whether `@mcr/<pid>` is listening (the runtime's control socket).
pub fn has_control_socket(pid: u32) -> bool {
    let want = format!("@{}", mcr_types::protocol::control_socket_name(pid));
    std::fs::read_to_string("/proc/net/unix").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().nth(7) == Some(want.as_str()))
    })
}

/// Spawns, retrying ETXTBSY: a binary just copied by one test thread can be
/// held open for writing by a child another thread forked at that moment.
fn spawn_retrying(cmd: &mut Command, bin: &Path) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("start {}: {e}", bin.display()),
        }
    }
}

fn drain(mut r: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => log
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
}

/// A line-protocol client: one command line out, one reply line back.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client { stream, reader })
    }

    /// Sends one line and reads the reply line (without its newline).
    pub fn try_cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.send(format!("{line}\n").as_bytes())?;
        self.read_line()
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.try_cmd(line)
            .unwrap_or_else(|e| panic!("command {line:?}: {e}"))
    }

    /// Raw bytes (e.g. half a line).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn read_line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.reader.read_line(&mut l)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        Ok(l.trim_end_matches(['\n', '\r']).to_string())
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// Why an update failed: mcr-ctl's exit code and what it said.
#[derive(Debug, Clone)]
pub struct UpdateFailure {
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
}

impl std::fmt::Display for UpdateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mcr-ctl exit {:?}: {}{}",
            self.code,
            self.stderr.trim(),
            self.stdout.trim()
        )
    }
}

/// Runs `mcr-ctl ARGS` with a bounded wait; (exit code, stdout, stderr).
pub fn ctl(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(&toolchain().ctl)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mcr-ctl");
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let t1 = read_all(child.stdout.take().unwrap(), out.clone());
    let t2 = read_all(child.stderr.take().unwrap(), err.clone());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait mcr-ctl") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = t1.join();
    let _ = t2.join();
    let (o, e) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    match status {
        Some(st) => (st.code(), o, e),
        None => (
            None,
            o,
            format!("{e}\n(mcr-ctl {args:?} killed after {limit:?})"),
        ),
    }
}

fn read_all(
    mut r: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        *into.lock().unwrap() = String::from_utf8_lossy(&s).into_owned();
    })
}

/// `mcr-ctl update PID BINARY --json [extra...]`: the parsed report when
/// mcr-ctl exits 0, else its exit code and messages.
pub fn update_with(pid: u32, binary: &Path, extra: &[&str]) -> Result<UpdateReport, UpdateFailure> {
    let pid_s = pid.to_string();
    let bin = binary.to_string_lossy().into_owned();
    let mut args = vec!["update", &pid_s, &bin, "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = ctl(&args, Duration::from_secs(90));
    if code == Some(0) {
        serde_json::from_str(&stdout).map_err(|e| UpdateFailure {
            code,
            stderr: format!("mcr-ctl exited 0 but its report does not parse: {e}\n{stderr}"),
            stdout,
        })
    } else {
        Err(UpdateFailure {
            code,
            stderr,
            stdout,
        })
    }
}

pub fn update(pid: u32, binary: &Path) -> Result<UpdateReport, String> {
    update_with(pid, binary, &[]).map_err(|e| e.to_string())
}

/// A running fixture (the old version, then whatever version serves).
pub struct Server {
    dir: PathBuf,
    pub port: u16,
    /// The process serving now.
    pub pid: u32,
    child: Child,
    /// Every PID that served, oldest first.
    pub pids: Vec<u32>,
    log: Arc<Mutex<String>>,
    /// A connection opened at start and kept: DUMP and CHECK go through it,
    /// so it also proves that a connection survives each update.
    admin: Option<Mutex<Client>>,
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie has exited.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The program's descriptors (below mcr-rt's private range at 900) and
/// what each refers to (`socket:[inode]`, a path, `anon_inode:[eventpoll]`).
/// mcr-rt's control listener is left out: it sits at a low number for a
/// moment after it is bound, before it moves to the private range.
pub fn program_fds(pid: u32) -> Vec<(i32, String)> {
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let control: Vec<String> = unix
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(7)
                .is_some_and(|n| n.starts_with("@mcr/"))
        })
        .filter_map(|l| Some(format!("socket:[{}]", l.split_whitespace().nth(6)?)))
        .collect();
    let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n: i32 = e.file_name().to_str()?.parse().ok()?;
                    let t = std::fs::read_link(e.path())
                        .ok()?
                        .to_string_lossy()
                        .into_owned();
                    (n < 900 && !control.contains(&t)).then_some((n, t))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The main thread's blocked-signal mask (`SigBlk` in /proc/PID/status).
pub fn sig_blocked(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:").map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Processes (not zombies) whose executable lies in `dir`.
/// The parent pid of `pid` (0 if it is gone): which process forked a
/// stray one, in failure messages.
pub fn parent_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            rest.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

pub fn processes_in(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            if exe.starts_with(dir) && pid_alive(pid) {
                out.push(pid);
            }
        }
    }
    out.sort();
    out
}

impl Server {
    /// Everything the server processes wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
            .unwrap_or_else(|e| panic!("connect to port {}: {e}\n{}", self.port, self.log()))
    }

    /// One command on the admin connection.
    pub fn cmd(&self, line: &str) -> String {
        let admin = self.admin.as_ref().expect("admin connection");
        let mut c = admin.lock().unwrap();
        c.try_cmd(line).unwrap_or_else(|e| {
            panic!(
                "admin command {line:?} on pid {}: {e}\nserver output:\n{}",
                self.pid,
                self.log()
            )
        })
    }

    /// Opens a connection and closes it again: an event on the listening
    /// socket, which makes a poll()/select() loop rebuild its descriptor
    /// set (needed before docs/history.md #7 was fixed; the tests still
    /// run both with and without it). Changes the fixture's accept count.
    pub fn poke(&self) {
        drop(TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("poke connect"));
        std::thread::sleep(Duration::from_millis(100));
    }

    pub fn dump(&self) -> String {
        self.cmd("DUMP")
    }

    /// CHECK must answer OK.
    pub fn check(&self) {
        let r = self.cmd("CHECK");
        assert_eq!(
            r,
            "OK",
            "CHECK on pid {}; server output:\n{}",
            self.pid,
            self.log()
        );
    }

    pub fn version(&self) -> String {
        self.cmd("VERSION")
    }

    /// Live processes running a binary of this test.
    pub fn processes(&self) -> Vec<u32> {
        processes_in(&self.dir)
    }

    pub fn update(&mut self, bin: &Path) -> Result<UpdateReport, UpdateFailure> {
        self.update_with(bin, &[])
    }

    /// Updates; on success the new PID becomes the server's and the old
    /// process must be gone within 5 s.
    pub fn update_with(
        &mut self,
        bin: &Path,
        extra: &[&str],
    ) -> Result<UpdateReport, UpdateFailure> {
        let old = self.pid;
        let r = update_with(old, bin, extra);
        if let Ok(rep) = &r {
            assert_eq!(rep.old_pid, old, "report names another old pid");
            assert!(
                rep.new_pid != 0 && rep.new_pid != old,
                "report: new pid {}",
                rep.new_pid
            );
            self.pid = rep.new_pid;
            self.pids.push(rep.new_pid);
            let deadline = Instant::now() + Duration::from_secs(5);
            while pid_alive(old) {
                if old == self.child.id() {
                    let _ = self.child.try_wait();
                }
                assert!(
                    Instant::now() < deadline,
                    "old process {old} still alive 5 s after a committed update"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                pid_alive(rep.new_pid),
                "new process {} is not alive after the update:\n{}",
                rep.new_pid,
                self.log()
            );
            // The new version reports ready only once @mcr/<pid> listens
            // (docs/history.md #11); checked here, with a short grace, so a
            // following update never races it.
            wait_for(Duration::from_secs(5), || {
                has_control_socket(rep.new_pid).then_some(())
            })
            .unwrap_or_else(|| {
                panic!(
                    "new version {} has no control socket 5 s after the update",
                    rep.new_pid
                )
            });
        }
        r
    }

    /// The update must succeed; panics with mcr-ctl's message and the server output.
    /// Also checks that the new version holds exactly the old version's
    /// descriptors (same numbers, same open files): nothing leaked, nothing
    /// lost, nothing re-created.
    pub fn update_ok(&mut self, bin: &Path) -> UpdateReport {
        // Connections a test just closed may still be open in the server:
        // wait until the set has been stable for 100 ms (at most 2 s).
        let mut fds = program_fds(self.pid);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let again = program_fds(self.pid);
            if again == fds {
                break;
            }
            fds = again;
        }
        let mask = sig_blocked(self.pid);
        match self.update(bin) {
            Ok(r) => {
                assert_eq!(
                    sig_blocked(self.pid),
                    mask,
                    "main thread's blocked signals (SigBlk) after the update"
                );
                let after = program_fds(self.pid);
                assert_eq!(
                    after, fds,
                    "descriptors of the new version (left) vs the old one (right)"
                );
                r
            }
            Err(e) => panic!(
                "update of pid {} to {} failed: {e}\nserver output:\n{}",
                self.pid,
                bin.display(),
                self.log()
            ),
        }
    }

    /// The update must fail and roll back: non-zero exit, the same PID
    /// still serving the same DUMP, CHECK OK, no new process left behind.
    /// Returns mcr-ctl's message.
    pub fn update_rolls_back(&mut self, bin: &Path, extra: &[&str]) -> String {
        let before = self.dump();
        let procs = self.processes();
        let old = self.pid;
        let r = self.update_with(bin, extra);
        let e = match r {
            Ok(rep) => panic!(
                "update to {} was expected to fail but succeeded: {rep:?}",
                bin.display()
            ),
            Err(e) => e,
        };
        assert!(
            e.code.is_some_and(|c| c != 0),
            "mcr-ctl must exit non-zero: {e}"
        );
        assert_eq!(self.pid, old);
        assert!(
            pid_alive(old),
            "old process {old} died: {e}\n{}",
            self.log()
        );
        assert_eq!(
            self.dump(),
            before,
            "state changed by a failed update ({e})"
        );
        self.check();
        self.wait_processes(&procs, &e.to_string());
        e.to_string()
    }

    /// Waits (up to 5 s) until the live processes of this test are exactly `want`.
    pub fn wait_processes(&self, want: &[u32], why: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.processes();
            if now == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes {now:?} != expected {want:?} ({why}); their parents: {:?}\n{}",
                now.iter().map(|&p| parent_of(p)).collect::<Vec<_>>(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.admin = None;
        for round in 0..3 {
            let mut pids = self.processes();
            if round == 0 {
                pids.extend(self.pids.iter().copied().filter(|&p| pid_alive(p)));
            }
            if pids.is_empty() {
                break;
            }
            for &p in &pids {
                // SAFETY: signalling a process this test started (or its child).
                unsafe { libc::kill(p as i32, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            for &p in &pids {
                if p != self.child.id() {
                    // SAFETY: reaps it if it is our (adopted) child; ECHILD otherwise.
                    unsafe { libc::waitpid(p as i32, std::ptr::null_mut(), libc::WNOHANG) };
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
        // Adopted processes killed above become zombies of this process: reap.
        for &p in &self.pids {
            if p != self.child.id() {
                let deadline = Instant::now() + Duration::from_millis(500);
                // SAFETY: only our own children are reaped; others give ECHILD.
                while unsafe { libc::waitpid(p as i32, std::ptr::null_mut(), libc::WNOHANG) } == 0
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// The `MCR_FAULT` phases mcr-rt knows.
pub const FAULT_PHASES: [&str; 6] = [
    "quiesce",
    "checkpoint",
    "restore",
    "startup",
    "transfer",
    "crash",
];

/// Calls `f` repeatedly until it returns Some, at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a counting client saw: requests sent, its slowest answer, and its
/// connection (kept open by the caller).
pub struct Counted {
    pub sent: i64,
    pub slowest: Duration,
    pub client: Client,
}

/// A client that sends `ADD 1` (fixture `tcp_state`) without pause until
/// `stop`, checking that each answer continues its own count: nothing
/// lost, nothing answered twice. Errors name the client and the request.
pub fn counting_client(
    mut c: Client,
    i: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<Counted, String>> {
    std::thread::spawn(move || {
        let (mut sent, mut slowest) = (0i64, Duration::ZERO);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            let r = c
                .try_cmd("ADD 1")
                .map_err(|e| format!("client {i} after {sent} requests: {e}"))?;
            sent += 1;
            if r != sent.to_string() {
                return Err(format!("client {i}: request {sent} answered {r:?}"));
            }
            slowest = slowest.max(t.elapsed());
        }
        Ok(Counted {
            sent,
            slowest,
            client: c,
        })
    })
}
