//! Checkpoint and restore of the heap region. The image is the region's own
//! bytes (header, page table, in-use pages) at their offsets from the base,
//! with holes where pages are free: the image alone describes every object.
//! Restoring maps it copy-on-write at the same base, so every old object
//! keeps its address, and rebuilds the allocator's free lists from the
//! slot headers and page table.

use super::central::{hdr, set_next, CENTRAL};
use super::init;
use super::layout::*;
use super::pages::PAGES;
use super::region::{self, desc, page_addr, top};
use super::size_class::{slot_size, slots_per_page};
use super::thread_cache;
use super::{HeapError, ImageFault};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

/// Where an image belongs and how big it is; also recorded in the image's
/// first page, so it can be read back from the image alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Address the region must be mapped at.
    pub base: u64,
    /// Reserved length of the region.
    pub len: u64,
    /// Image file length (= pages in use * page size).
    pub file_len: u64,
    pub page_size: u64,
    pub version: u64,
    /// Bytes actually written (the rest are holes).
    pub written: u64,
}

/// Writes the heap region into `fd` (a memfd or regular file) at offsets
/// relative to the region base, leaving free pages as holes. `fd` must be
/// empty or the one `prepared` maps: holes are not cleared. Call while the
/// program's threads are parked: the heap's locks are held during the
/// write, so any other thread that allocates waits. Returns the mapping
/// written through, to drop when the time it takes (unmapping, ending the
/// copy threads: ~5 ms for 70 MB) does not count, and never with the heap
/// locked (glibc frees a thread's bookkeeping through `free`).
pub fn write_image(
    fd: RawFd,
    prepared: Option<PreparedImage>,
) -> io::Result<(ImageInfo, PreparedImage)> {
    init::ensure();
    init::lock_all();
    let r = write_locked(fd, prepared);
    init::unlock_all();
    r
}

fn write_locked(
    fd: RawFd,
    prepared: Option<PreparedImage>,
) -> io::Result<(ImageInfo, PreparedImage)> {
    let top = top();
    let file_len = top * PAGE;
    // Only the length is set: a prepared image keeps the pages
    // [`prepare_image`] allocated, and they read as zeros until written.
    // SAFETY: a plain syscall on the caller's fd.
    if unsafe { libc::ftruncate(fd, file_len as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let map = match prepared {
        Some(p) => p.grow(fd, file_len)?,
        None => PreparedImage::map(fd, file_len)?,
    };
    let mut runs = Vec::new();
    let written = for_each_image_run(top, |addr, len| {
        runs.push((addr, len));
        Ok(())
    })?;
    map.copy_in(&runs, written);
    let h = region::header();
    let info = ImageInfo {
        base: h.base,
        len: h.len,
        file_len: file_len as u64,
        page_size: PAGE as u64,
        version: VERSION,
        written: written as u64,
    };
    Ok((info, map))
}

/// An image file mapped shared for writing, its pages allocated and mapped
/// ([`prepare_image`]) while the program still serves: the checkpoint then
/// copies the heap into it at `memcpy` speed, with no page to allocate or
/// map while every thread is stopped. Unmapped when dropped; the pages stay
/// in the file.
pub struct PreparedImage {
    addr: usize,
    len: usize,
    copiers: Vec<Copier>,
}

/// A thread started with the prepared image that copies its share of the
/// heap at the checkpoint. Started, and waited for until it runs, while the
/// program serves: creating and starting a thread allocates in the
/// program's heap (glibc's bookkeeping), which the checkpoint holds locked.
struct Copier {
    job: std::sync::mpsc::Sender<Vec<(usize, usize, usize)>>,
    done: std::sync::mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Copier {
    fn start() -> Option<Self> {
        let (job, jobs) = std::sync::mpsc::channel::<Vec<(usize, usize, usize)>>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mcr-checkpoint".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // Started: Rust's thread start-up (its stack guard's
                // `pthread_getattr_np`) reallocs through the heap, which
                // must not be locked by the checkpoint yet.
                let _ = done_tx.send(());
                for part in jobs {
                    for (from, to, len) in part {
                        // SAFETY: the checkpoint hands out disjoint runs of
                        // populated heap memory and their places in the
                        // image's mapping, and waits for `done`.
                        unsafe {
                            std::ptr::copy_nonoverlapping(from as *const u8, to as *mut u8, len)
                        };
                    }
                    let _ = done_tx.send(());
                }
            })
            .ok()?;
        done.recv().ok()?;
        Some(Self { job, done, thread })
    }
}

/// Heap bytes below which the checkpoint copies on one thread (no copy
/// thread is started): splitting the copy costs more than it saves.
const PARALLEL_COPY_MIN: usize = 16 << 20;

impl PreparedImage {
    /// Maps the first `len` bytes of `fd` shared, for writing.
    fn map(fd: RawFd, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self {
                addr: 0,
                len: 0,
                copiers: Vec::new(),
            });
        }
        // SAFETY: a fresh shared mapping of the caller's file; ours until
        // dropped.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if m == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // A child the program forks meanwhile (a server forking per
        // connection) would keep the image's pages alive: it does not get
        // the mapping. The flag stays through `grow`'s mremap.
        // SAFETY: advice on our own mapping.
        unsafe { libc::madvise(m, len, libc::MADV_DONTFORK) };
        Ok(Self {
            addr: m as usize,
            len,
            copiers: Vec::new(),
        })
    }

    /// The same mapping over the first `len` bytes of `fd` (the heap may
    /// have grown since it was prepared).
    fn grow(mut self, fd: RawFd, len: usize) -> io::Result<Self> {
        if len <= self.len {
            return Ok(self);
        }
        if self.len == 0 {
            let mut m = Self::map(fd, len)?;
            m.copiers = std::mem::take(&mut self.copiers);
            return Ok(m);
        }
        // SAFETY: our own mapping; the file is at least `len` long.
        let m = unsafe {
            libc::mremap(
                self.addr as *mut libc::c_void,
                self.len,
                len,
                libc::MREMAP_MAYMOVE,
            )
        };
        if m == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let copiers = std::mem::take(&mut self.copiers);
        self.len = 0; // remapped: nothing left to unmap at the old place
        Ok(Self {
            addr: m as usize,
            len,
            copiers,
        })
    }

    /// Copies each heap run `(address, length)` to its offset from the
    /// region base; `total` bytes in all. Large images are copied by the
    /// copier threads too: the program's own are parked, their cores idle.
    fn copy_in(&self, runs: &[(usize, usize)], total: usize) {
        let (base, to) = (region::base(), self.addr);
        let mut shares: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); self.copiers.len() + 1];
        let share = if total < PARALLEL_COPY_MIN {
            usize::MAX
        } else {
            total.div_ceil(shares.len()).next_multiple_of(PAGE)
        };
        // Equal shares of bytes, a run split where a share ends.
        let (mut k, mut room) = (0, share);
        for &(mut a, mut l) in runs {
            debug_assert!(a - base + l <= self.len);
            while l > 0 {
                let n = l.min(room);
                shares[k].push((a, to + (a - base), n));
                (a, l, room) = (a + n, l - n, room - n);
                if room == 0 {
                    (k, room) = if k + 1 < shares.len() {
                        (k + 1, share)
                    } else {
                        (k, usize::MAX)
                    };
                }
            }
        }
        let mine = shares.remove(0);
        let mut waiting = Vec::new();
        for (c, part) in self.copiers.iter().zip(shares) {
            if part.is_empty() {
                continue;
            }
            match c.job.send(part) {
                Ok(()) => waiting.push(c),
                // SAFETY: as in the copier's loop (the copier is gone).
                Err(e) => e.0.iter().for_each(|&(f, t, n)| unsafe {
                    std::ptr::copy_nonoverlapping(f as *const u8, t as *mut u8, n)
                }),
            }
        }
        for &(f, t, n) in &mine {
            // SAFETY: [f, f + n) is populated heap memory below `top`; its
            // place [t, t + n) lies inside this mapping of a file `top`
            // pages long; no other copy writes there.
            unsafe { std::ptr::copy_nonoverlapping(f as *const u8, t as *mut u8, n) };
        }
        for c in waiting {
            let _ = c.done.recv();
        }
    }
}

impl Drop for PreparedImage {
    fn drop(&mut self) {
        for c in self.copiers.drain(..) {
            drop(c.job);
            let _ = c.thread.join();
        }
        if self.len > 0 {
            // SAFETY: our own mapping, no longer used.
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        }
    }
}

/// Allocates, zeroes and maps, in the empty memfd `fd`, the pages an image
/// of the heap as it is now would fill. Called while the program still
/// serves: the checkpoint then copies into memory that is already there
/// and already mapped, at `memcpy` speed, instead of paying a page
/// allocation and a page fault per page while every thread is stopped
/// (`pwrite` into unprepared pages ran at a third of `memcpy` here, into
/// prepared pages at half). The pages are touched, not just reserved:
/// `fallocate` leaves shmem pages unzeroed, and the first touch of memory a
/// virtual machine's host has reclaimed is what costs (a 1 GB copy took
/// 0.2 s or 2.6 s depending on it). Needs no heap lock: the page table is
/// read with atomic loads, and a page that changes state before the
/// checkpoint only costs a fault then or a page that stays zero.
pub fn prepare_image(fd: RawFd) -> io::Result<PreparedImage> {
    init::ensure();
    let top = top();
    let len = top * PAGE;
    // SAFETY: a plain syscall on the caller's fd.
    if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut map = PreparedImage::map(fd, len)?;
    let total = for_each_image_run(top, |addr, len| {
        let at = map.addr + (addr - region::base());
        // SAFETY: a range of our own shared mapping, populated for writing
        // (allocated, zeroed and mapped).
        if unsafe { libc::madvise(at as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) } != 0 {
            // Before Linux 5.14: one write per page does the same.
            for p in (at..at + len).step_by(KPAGE) {
                // SAFETY: inside the mapping; the page reads as zero.
                unsafe { (p as *mut u8).write_volatile(0) };
            }
        }
        Ok(())
    })?;
    if total >= PARALLEL_COPY_MIN {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        map.copiers = (1..threads).filter_map(|_| Copier::start()).collect();
    }
    Ok(map)
}

/// Calls `f(address, length)` for each run of heap memory below page `top`
/// that an image must hold: the header and page table, and the populated
/// parts of pages in use. Returns the total length.
fn for_each_image_run(
    top: usize,
    mut f: impl FnMut(usize, usize) -> io::Result<()>,
) -> io::Result<usize> {
    let meta = region::meta_pages();
    // Page-table pages that describe pages below `top`; the rest are zero.
    let pt_pages = (top * std::mem::size_of::<PageDesc>()).div_ceil(PAGE);
    let used = |i: usize| -> bool {
        if i < meta {
            return i <= pt_pages;
        }
        matches!(
            desc(i).load().kind,
            Kind::Small | Kind::LargeHead | Kind::LargeCont
        )
    };
    // SAFETY: open(2) of a procfs file; closed below through File.
    let pagemap = unsafe {
        let f = libc::open(
            c"/proc/self/pagemap".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        (f >= 0).then(|| std::fs::File::from_raw_fd(f))
    };
    let mut total = 0;
    let mut i = 0;
    while i < top {
        if !used(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < top && used(i) {
            i += 1;
        }
        // Anonymous memory the kernel never populated reads as zeros: leave
        // it as a hole (a big calloc'd table costs nothing in the image).
        // Pages of an adopted image are file-backed: written in full.
        let split = region::file_pages().clamp(start, i);
        if split > start {
            f(page_addr(start), (split - start) * PAGE)?;
            total += (split - start) * PAGE;
        }
        if i > split {
            total += populated_runs(pagemap.as_ref(), split, i, &mut f)?;
        }
    }
    Ok(total)
}

/// Size of the kernel's pages, the unit of /proc/self/pagemap.
const KPAGE: usize = 4096;

/// Calls `f` on the runs of kernel pages of heap pages `[start, end)` that
/// are present or swapped out, per /proc/self/pagemap (the whole range when
/// it is unavailable). Returns their total length.
fn populated_runs(
    pagemap: Option<&std::fs::File>,
    start: usize,
    end: usize,
    f: &mut impl FnMut(usize, usize) -> io::Result<()>,
) -> io::Result<usize> {
    let (from, to) = (page_addr(start), page_addr(end));
    let Some(pm) = pagemap else {
        f(from, to - from)?;
        return Ok(to - from);
    };
    let mut buf = [0u64; 512];
    let mut total = 0;
    let mut run: Option<usize> = None; // start address of a populated run
    let mut addr = from;
    while addr < to {
        let n = ((to - addr) / KPAGE).min(buf.len());
        let bytes = n * 8;
        let ok = pm
            .read_exact_at(
                // SAFETY: viewing the u64 buffer as bytes, same lifetime.
                unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, bytes) },
                (addr / KPAGE * 8) as u64,
            )
            .is_ok();
        for (k, &e) in buf[..n].iter().enumerate() {
            let a = addr + k * KPAGE;
            // Bit 63: present; bit 62: swapped. Unreadable: assume present.
            let populated = !ok || e & (3 << 62) != 0;
            match (populated, run) {
                (true, None) => run = Some(a),
                (false, Some(r)) => {
                    f(r, a - r)?;
                    total += a - r;
                    run = None;
                }
                _ => {}
            }
        }
        addr += n * KPAGE;
    }
    if let Some(r) = run {
        f(r, to - r)?;
        total += to - r;
    }
    Ok(total)
}

/// Reads the [`ImageInfo`] recorded in an image's first page.
pub fn read_image_info(fd: RawFd) -> Result<ImageInfo, HeapError> {
    let mut h = std::mem::MaybeUninit::<RegionHeader>::uninit();
    let sz = std::mem::size_of::<RegionHeader>();
    // SAFETY: reading at most `sz` bytes into the local buffer.
    let n = unsafe { libc::pread(fd, h.as_mut_ptr() as *mut libc::c_void, sz, 0) };
    if n < 0 {
        return Err(HeapError::Io(region::errno()));
    }
    if n as usize != sz {
        return Err(HeapError::BadImage(ImageFault::Truncated));
    }
    // SAFETY: fully initialised by pread; RegionHeader is plain data.
    let h = unsafe { h.assume_init() };
    if h.magic != MAGIC {
        return Err(HeapError::BadImage(ImageFault::Magic));
    }
    if h.version != VERSION {
        return Err(HeapError::BadImage(ImageFault::Version));
    }
    let len = h.len as usize;
    let top = h.top.load(Ordering::Relaxed) as usize;
    if h.page_size != PAGE as u64
        || !(h.base as usize).is_multiple_of(PAGE)
        || !len.is_multiple_of(PAGE)
        || h.meta_pages as usize != meta_pages(len)
        || top < h.meta_pages as usize
        || top > len / PAGE
    {
        return Err(HeapError::BadImage(ImageFault::Geometry));
    }
    // SAFETY: fstat into a local struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the local above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(HeapError::Io(region::errno()));
    }
    if (st.st_size as usize) < top * PAGE {
        return Err(HeapError::BadImage(ImageFault::Truncated));
    }
    Ok(ImageInfo {
        base: h.base,
        len: h.len,
        file_len: (top * PAGE) as u64,
        page_size: PAGE as u64,
        version: VERSION,
        written: 0,
    })
}

/// Maps the image in `fd` at its recorded base and makes it this process's
/// heap. Called during initialisation only (no cache active, no other
/// thread allocating).
pub(super) fn adopt(fd: RawFd) -> Result<(), HeapError> {
    let info = read_image_info(fd)?;
    adopt_info(fd, &info)
}

pub(super) fn adopt_info(fd: RawFd, info: &ImageInfo) -> Result<(), HeapError> {
    let on_file = read_image_info(fd)?;
    if on_file.base != info.base || on_file.len != info.len || on_file.file_len != info.file_len {
        return Err(HeapError::BadImage(ImageFault::Geometry));
    }
    let base = info.base as usize;
    let len = info.len as usize;
    let file_len = info.file_len as usize;
    region::reserve_at(base, len)?;
    // SAFETY: replaces the first `file_len` bytes of the reservation we just
    // made (nothing else lives there) with a private, copy-on-write mapping
    // of the image.
    let p = unsafe {
        libc::mmap(
            base as *mut libc::c_void,
            file_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED || p as usize != base {
        let e = region::errno();
        // SAFETY: our own reservation.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
        return Err(HeapError::Map(e));
    }
    region::publish(base, len, super::layout::meta_pages(len), file_len / PAGE);
    region::set_file_pages(file_len / PAGE);
    // SAFETY: initialisation: no other thread uses the heap yet.
    unsafe { rebuild() };
    Ok(())
}

/// Rebuilds the free lists, the free page runs and the statistics from the
/// page table and the headers; marks every live object inherited.
///
/// # Safety
/// No other thread may use the heap.
unsafe fn rebuild() {
    // SAFETY: exclusive access, per the caller.
    let pages = unsafe { PAGES.get_unlocked() };
    pages.clear();
    for c in CENTRAL.iter() {
        // SAFETY: as above.
        let cl = unsafe { c.0.get_unlocked() };
        cl.head = 0;
        cl.count = 0;
        cl.carve_page = 0;
    }
    // SAFETY: as above.
    unsafe { thread_cache::reset_for_adopt() };
    let (mut objects, mut bytes) = (0i64, 0i64);
    let top = top();
    let mut free_start: Option<usize> = None;
    let mut i = region::meta_pages();
    while i < top {
        let d = desc(i).load();
        let mut next = i + 1;
        let mut is_free = false;
        match d.kind {
            Kind::Small => {
                let c = d.class as usize;
                let ss = slot_size(c);
                let per = slots_per_page(c);
                let pa = page_addr(i);
                // SAFETY: as above.
                let cl = unsafe { CENTRAL[c].0.get_unlocked() };
                for si in (0..per).rev() {
                    let s = pa + si * ss;
                    let h = hdr(s);
                    let w = h.word.load(Ordering::Relaxed);
                    if si < d.a as usize && w & W_ALLOC != 0 {
                        h.word.store(w | W_INHERITED, Ordering::Relaxed);
                        objects += 1;
                        bytes += word_size(w) as i64;
                    } else {
                        h.word.store(0, Ordering::Relaxed);
                        set_next(s, cl.head);
                        cl.head = s;
                        cl.count += 1;
                    }
                }
                desc(i).set_a(per as u32);
            }
            Kind::LargeHead => {
                let h = hdr(page_addr(i));
                let w = h.word.load(Ordering::Relaxed);
                let n = (d.a as usize).max(1);
                if w & W_ALLOC != 0 {
                    h.word.store(w | W_INHERITED, Ordering::Relaxed);
                    objects += 1;
                    bytes += word_size(w) as i64;
                    next = i + n;
                } else {
                    is_free = true;
                }
            }
            _ => is_free = true,
        }
        if is_free {
            desc(i).store(Desc::new(Kind::FreeBody, 0, 0));
            free_start.get_or_insert(i);
        } else if let Some(s) = free_start.take() {
            pages.insert(s, i - s);
        }
        i = next.min(top);
    }
    if let Some(s) = free_start {
        pages.insert(s, top - s);
    }
    // SAFETY: exclusive access.
    let r = unsafe { thread_cache::REGISTRY.get_unlocked() };
    r.dead_objects = objects;
    r.dead_bytes = bytes;
}
