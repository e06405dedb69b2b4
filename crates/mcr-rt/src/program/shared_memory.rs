//! Shared anonymous mappings (`mmap(MAP_SHARED|MAP_ANONYMOUS)`): memory a
//! master makes at start-up and shares with the workers it forks (nginx's
//! shared zones: the accept mutex, `limit_req` and cache metadata).
//!
//! They are start-up resources like descriptors: old workers keep using
//! them until commit, the master's state points into them, and a new
//! master that made its own zone would point its workers at memory the old
//! ones do not see. So the old version hands each one over: it opens its
//! own mapping through `/proc/self/map_files` (the shmem file behind it)
//! and the new version, before its start-up runs, maps that file at the
//! same address. Its start-up then makes its own zone elsewhere (unused
//! when state keeps the old pointer), and the workers it forks share the
//! old zone with the old workers. Opening `map_files` needs
//! `CAP_SYS_ADMIN`; without it the update is rolled back, naming the
//! mapping, rather than leaving pointers into memory the new version lacks.

use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// One shared anonymous mapping, as the checkpointing process hands it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedMapping {
    pub start: u64,
    pub end: u64,
    pub writable: bool,
    /// The shmem file, inherited by the new version under this number.
    pub fd: i32,
}

/// Whether old address `p` lies in one of the mappings handed over.
pub fn contains(list: &[SharedMapping], p: u64) -> bool {
    list.iter().any(|m| m.start <= p && p < m.end)
}

/// The files opened for the update in progress (old side).
static HANDED: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// `/proc/self/maps` lines of shared anonymous memory: (start, end, writable).
fn shared_anonymous() -> Vec<(u64, u64, bool)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path: Vec<&str> = f.skip(3).collect();
            // MAP_SHARED|MAP_ANONYMOUS shows as the deleted /dev/zero.
            if perms.as_bytes().get(3) != Some(&b's') || path.join(" ") != "/dev/zero (deleted)" {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
                perms.as_bytes().get(1) == Some(&b'w'),
            ))
        })
        .collect()
}

/// Old side, at checkpoint: opens every shared anonymous mapping for the
/// new version (kept open until [`release`]).
pub fn open_for_handover() -> Result<Vec<SharedMapping>, String> {
    let mut out = Vec::new();
    let mut handed = HANDED.lock().unwrap();
    handed.clear();
    for (start, end, writable) in shared_anonymous() {
        let path = format!("/proc/self/map_files/{start:x}-{end:x}");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| {
                format!(
                    "the shared memory mapping at {start:#x}-{end:#x} (mmap MAP_SHARED|MAP_ANONYMOUS) cannot be handed to the new version: {path}: {e}{}",
                    if e.kind() == std::io::ErrorKind::PermissionDenied {
                        " (it needs CAP_SYS_ADMIN)"
                    } else {
                        ""
                    }
                )
            })?;
        let fd = crate::base::private_fd::to_private_fd(OwnedFd::from(f));
        out.push(SharedMapping {
            start,
            end,
            writable,
            fd: fd.as_raw_fd(),
        });
        handed.push(fd);
    }
    Ok(out)
}

/// The descriptors the new version must inherit.
pub fn handed_fds() -> Vec<i32> {
    HANDED
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.as_raw_fd())
        .collect()
}

/// Old side, once the new version is spawned (or the update failed).
pub fn release() {
    HANDED.lock().unwrap().clear();
}

/// New side, before its start-up: each old mapping at its address.
pub fn map(list: &[SharedMapping]) -> Result<(), String> {
    for m in list {
        let prot = libc::PROT_READ | if m.writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fixed, non-replacing shared mapping of the inherited
        // shmem file at the address it had in the old version; nothing of
        // this process is there yet (its start-up has not run).
        let p = unsafe {
            libc::mmap(
                m.start as *mut libc::c_void,
                (m.end - m.start) as usize,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                m.fd,
                0,
            )
        };
        // SAFETY: the inherited descriptor; the mapping keeps the file.
        unsafe { libc::close(m.fd) };
        if p != libc::MAP_FAILED && p as u64 != m.start {
            // SAFETY: a mapping just made elsewhere (a kernel that took the
            // address as a hint), not the program's.
            unsafe { libc::munmap(p, (m.end - m.start) as usize) };
        }
        if p as u64 != m.start {
            return Err(format!(
                "cannot map the old version's shared memory at {:#x}-{:#x}: {}",
                m.start,
                m.end,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
