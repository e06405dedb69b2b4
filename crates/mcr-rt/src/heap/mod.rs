//! The typed heap: the allocator every allocation of the program goes
//! through, and the registry of its live objects.
//!
//! - Memory comes from one region the heap reserves itself
//!   ([`region()`]), never from glibc: mcr must control addresses, since
//!   an update maps the old heap's image at the same addresses in the new
//!   process ([`write_image`], [`adopt_image`]).
//! - Every slot carries a 16-byte header (site, size, flags) and every
//!   64 KiB page a page-table entry, both inside the region, so the
//!   region's bytes alone describe every object; [`find`] resolves an
//!   interior pointer in O(1) and [`for_each_live`] walks the page table.
//! - The malloc/free fast path uses per-thread caches of free slots, with
//!   no lock; per-class central lists and the page allocator have their
//!   own futex locks, all taken around `fork` (see `init`).
//! - The runtime's own Rust code allocates from glibc ([`RuntimeAlloc`]).
//!
//! Layout details are in `layout.rs`; the C symbols in `entry.rs`.

mod alloc;
mod api;
mod carve_index;
pub mod carved;
mod central;
mod deferred_free;
mod entry;
mod global_alloc;
mod image;
mod init;
mod layout;
mod pages;
mod region;
mod site;
mod size_class;
pub mod startup_order;
mod sync;
mod thread_cache;

pub use api::{
    clear_inherited, find, for_each_live, is_inherited, region, resize_in_place, set_site, stats,
    usable_size, Object, Stats,
};
pub use deferred_free::{defer_frees, deferred as deferred_frees, take_deferred};
pub use entry::*;
pub use global_alloc::RuntimeAlloc;
pub use image::{prepare_image, read_image_info, write_image, ImageInfo, PreparedImage};
pub use init::{is_initialized, HEAP_FD_ENV};
pub use layout::PAGE as HEAP_PAGE;
pub use site::Site;

use std::fmt;
use std::os::fd::RawFd;

/// The runtime's Rust allocations go to glibc, never to the program's heap.
#[global_allocator]
static GLOBAL: RuntimeAlloc = RuntimeAlloc;

/// Why an image does not fit this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFault {
    Magic,
    Version,
    Geometry,
    Truncated,
}

/// Errors of the heap's region and image operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapError {
    /// `mmap`/`mprotect` failed with this errno.
    Map(i32),
    /// The address range an image needs is in use in this process.
    AddressTaken(usize),
    /// The region is exhausted.
    OutOfMemory,
    /// The heap already serves allocations: an image can only be adopted
    /// before the first one.
    AlreadyInitialized,
    /// The file is not a heap image this build can adopt.
    BadImage(ImageFault),
    /// Reading the image failed with this errno.
    Io(i32),
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::Map(e) => write!(f, "mapping heap memory failed (errno {e})"),
            HeapError::AddressTaken(a) => write!(f, "heap address {a:#x} is already mapped"),
            HeapError::OutOfMemory => write!(f, "heap region exhausted"),
            HeapError::AlreadyInitialized => {
                write!(f, "heap already initialised: an image must be adopted before the first allocation")
            }
            HeapError::BadImage(k) => write!(f, "not a usable heap image ({k:?})"),
            HeapError::Io(e) => write!(f, "reading the heap image failed (errno {e})"),
        }
    }
}

impl std::error::Error for HeapError {}

impl HeapError {
    /// A negative integer that round-trips through an atomic (errno and
    /// address details beyond 32 bits are lost for `AddressTaken`).
    fn code(&self) -> i32 {
        let (k, v) = match *self {
            HeapError::Map(e) => (1, e),
            HeapError::AddressTaken(_) => (2, 0),
            HeapError::OutOfMemory => (3, 0),
            HeapError::AlreadyInitialized => (4, 0),
            HeapError::BadImage(f) => (5, f as i32),
            HeapError::Io(e) => (6, e),
        };
        -((k << 16) | (v & 0xffff))
    }

    fn from_code(c: i32) -> HeapError {
        let c = -c;
        let v = c & 0xffff;
        match c >> 16 {
            1 => HeapError::Map(v),
            2 => HeapError::AddressTaken(0),
            3 => HeapError::OutOfMemory,
            4 => HeapError::AlreadyInitialized,
            5 => HeapError::BadImage(match v {
                0 => ImageFault::Magic,
                1 => ImageFault::Version,
                2 => ImageFault::Geometry,
                _ => ImageFault::Truncated,
            }),
            _ => HeapError::Io(v),
        }
    }
}

/// Adopts the heap image in `fd` as this process's heap: maps it
/// copy-on-write at `info.base` and rebuilds the free lists, so every old
/// live object is live at its old address (marked inherited, with its old
/// site pointer) and new allocations take free slots.
///
/// Only possible before the first allocation of the process, which in a C
/// program comes before any constructor: the usual way is to export
/// `MCR_HEAP_FD=<fd>` ([`HEAP_FD_ENV`]) to the new process, and the heap's
/// lazy initialisation adopts it (the fd is left open for its owner to
/// close; the mapping does not need it); check the outcome
/// with [`adopt_status`]. If adoption fails the heap starts empty.
///
/// # Safety
/// `fd` must be a heap image written by [`write_image`] for the same
/// build of the heap; nothing else may map the image's address range.
pub unsafe fn adopt_image(fd: RawFd, info: &ImageInfo) -> Result<(), HeapError> {
    if init::is_initialized() {
        return Err(HeapError::AlreadyInitialized);
    }
    let info = *info;
    // Initialise through the normal path so racing threads wait for us.
    if !init::init_slow_with(Some((fd, info))) {
        return Err(HeapError::AlreadyInitialized);
    }
    match init::adopt_result() {
        Some(r) => r,
        None => Ok(()),
    }
}

/// Outcome of the adoption attempted at initialisation: `None` if none was
/// attempted.
pub fn adopt_status() -> Option<Result<(), HeapError>> {
    init::adopt_result()
}
