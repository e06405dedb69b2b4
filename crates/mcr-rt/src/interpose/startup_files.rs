//! Files the old start-up opened for writing (a pidfile), saved before the
//! new version starts and put back on a rollback. The new start-up writes
//! them again (it runs for real: a closed entry of the start-up log is not
//! handed over), so a rolled-back update left the pidfile naming a process
//! that no longer exists, and a supervisor following it lost the server.

use crate::interpose::startup_log::Entry;
use std::path::PathBuf;

/// Files bigger than this are not saved (nor restored): start-up files
/// that are written whole are small; a big one is data the program keeps
/// writing through its descriptor, which the new start-up does not touch.
const MAX_SAVED: u64 = 1 << 20;

/// The files and their bytes (None: the file did not exist).
pub struct SavedFiles(Vec<(PathBuf, Option<Vec<u8>>)>);

/// Whether an `open` (flags) or `fopen` (mode) entry of the start-up log
/// opened its file for writing other than appending (logs are appended to).
fn writes_in_place(e: &Entry) -> Option<&str> {
    let (path, how) = e.key.rsplit_once('|')?;
    let writes = match e.kind.as_str() {
        "open" => how
            .parse::<i32>()
            .ok()
            .is_some_and(|f| f & libc::O_ACCMODE != libc::O_RDONLY && f & libc::O_APPEND == 0),
        "fopen" => (how.contains('w') || how.contains('+')) && !how.contains('a'),
        _ => false,
    };
    // Kernel files (`/proc/self/oom_score_adj`) are settings, not files a
    // new start-up rewrites for the old process.
    let kernel = ["/proc/", "/sys/", "/dev/"]
        .iter()
        .any(|k| path.starts_with(k));
    (writes && !kernel && !path.is_empty()).then_some(path)
}

/// Saves the files the start-up in `log` wrote, as they are now. Paths are
/// resolved from the current directory, as the new version's start-up,
/// started there, will resolve them.
pub fn save(log: &[Entry]) -> SavedFiles {
    let mut out: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
    for path in log.iter().filter_map(writes_in_place).map(PathBuf::from) {
        if out.iter().any(|(p, _)| *p == path) {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() <= MAX_SAVED => {
                if let Ok(bytes) = std::fs::read(&path) {
                    out.push((path, Some(bytes)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.push((path, None)),
            _ => {}
        }
    }
    SavedFiles(out)
}

impl SavedFiles {
    /// Puts back what changed since [`save`]: bytes rewritten, a file the
    /// new start-up created removed.
    pub fn restore(&self) {
        for (path, saved) in &self.0 {
            let now = std::fs::read(path).ok();
            if now == *saved {
                continue;
            }
            let _ = match saved {
                Some(bytes) => std::fs::write(path, bytes),
                None => std::fs::remove_file(path),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, key: &str) -> Entry {
        let mut e = Entry::new(kind, key.into());
        e.fds = vec![3];
        e.open = false;
        e
    }

    #[test]
    fn pidfiles_are_saved_and_put_back_logs_are_not() {
        let dir = std::env::temp_dir().join(format!("mcr-startup-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pid, log, fresh) = (dir.join("a.pid"), dir.join("a.log"), dir.join("b.pid"));
        std::fs::write(&pid, "100\n").unwrap();
        std::fs::write(&log, "line\n").unwrap();
        let wr = (libc::O_WRONLY).to_string();
        let app = (libc::O_WRONLY | libc::O_APPEND).to_string();
        let entries = [
            entry("fopen", &format!("{}|w", pid.display())),
            entry("open", &format!("{}|{app}", log.display())),
            entry("open", &format!("{}|{wr}", fresh.display())),
            entry("fopen", &format!("{}|r", log.display())),
        ];
        let saved = save(&entries);
        assert_eq!(saved.0.len(), 2, "the pidfile and the absent one");
        std::fs::write(&pid, "200\n").unwrap();
        std::fs::write(&log, "line\nmore\n").unwrap();
        std::fs::write(&fresh, "300\n").unwrap();
        saved.restore();
        assert_eq!(std::fs::read_to_string(&pid).unwrap(), "100\n");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "line\nmore\n");
        assert!(!fresh.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
