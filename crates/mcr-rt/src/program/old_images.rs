//! The images of earlier versions' binaries, mapped read-only at their old
//! addresses and kept mapped through later updates.
//!
//! Old state may point into the old binary's constant data: a `const char
//! *mode` an admin command re-pointed to another string literal keeps the
//! old version's literal (literals have no name to translate by). The new
//! version maps the old image read-only (never executable) at its old
//! address so such pointers stay readable. After a second update the
//! pointer is still there, but the image it points into is no longer the
//! old process's own: it is one the old process itself had mapped from its
//! predecessor. So every process keeps the files of the images it mapped
//! open (runtime-private, close-on-exec descriptors) and lists them in its
//! checkpoint and hands them to the next version under the same numbers
//! (inherited at spawn: `/proc/<old pid>/fd` is closed to a new version
//! that runs with dropped privileges); the next version maps each again at
//! the same addresses, then closes the inherited descriptor (it keeps its
//! own).

use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// An earlier binary's image as the checkpointing process holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedImage {
    /// The descriptor of the binary in the checkpointing process.
    pub fd: i32,
    /// (start, end, file offset) of each mapping.
    pub ranges: Vec<(u64, u64, u64)>,
}

/// (start, end, file offset) of the mappings of one image.
type Ranges = Vec<(u64, u64, u64)>;

/// The images this process mapped, with the files they came from.
static MAPPED: Mutex<Vec<(OwnedFd, Ranges)>> = Mutex::new(Vec::new());

/// Maps the old process's own image (`image`, from its executable) and
/// every earlier image it had mapped (`earlier`), read-only at their
/// addresses. A range whose address is taken here stays unmapped.
///
/// An old version that dropped its privileges is not dumpable, and its
/// /proc entries are closed to us (we run with the same, dropped
/// credentials): its own image is then opened from the path it ran from,
/// `old_exe` (read at checkpoint time; a binary replaced since reads
/// "... (deleted)" there and is not opened, and a running one cannot be
/// overwritten in place). Earlier images come inherited (see the module
/// documentation), or else through `/proc/<old pid>/fd`.
pub fn map(old_pid: u32, old_exe: &str, image: &[(u64, u64, u64)], earlier: &[SavedImage]) {
    let own = std::fs::File::open(format!("/proc/{old_pid}/exe"))
        .or_else(|_| std::fs::File::open(old_exe));
    let sources = std::iter::once((own, image)).chain(earlier.iter().map(|e| {
        let f = std::fs::File::open(format!("/proc/self/fd/{}", e.fd))
            .or_else(|_| std::fs::File::open(format!("/proc/{old_pid}/fd/{}", e.fd)));
        // SAFETY: the descriptor the old version handed us for this image
        // (reopened just above); nothing else in this process uses it.
        unsafe { libc::close(e.fd) };
        (f, &e.ranges[..])
    }));
    let mut mapped = MAPPED.lock().unwrap();
    for (opened, ranges) in sources {
        let Ok(f) = opened else {
            continue;
        };
        let mut kept = Vec::new();
        for &(a, b, off) in ranges {
            // SAFETY: a fixed, non-replacing, read-only private mapping at
            // the old addresses; failure (address taken) leaves it unmapped.
            let p = unsafe {
                libc::mmap(
                    a as *mut libc::c_void,
                    (b - a) as usize,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_FIXED_NOREPLACE,
                    f.as_raw_fd(),
                    off as libc::off_t,
                )
            };
            if p as u64 == a {
                kept.push((a, b, off));
            }
        }
        if !kept.is_empty() {
            let fd = crate::base::private_fd::to_private_fd(OwnedFd::from(f));
            crate::base::private_fd::keep(fd.as_raw_fd());
            mapped.push((fd, kept));
        }
    }
}

/// The earlier images this process has mapped, for its checkpoint.
pub fn saved() -> Vec<SavedImage> {
    MAPPED
        .lock()
        .unwrap()
        .iter()
        .map(|(fd, ranges)| SavedImage {
            fd: fd.as_raw_fd(),
            ranges: ranges.clone(),
        })
        .collect()
}
