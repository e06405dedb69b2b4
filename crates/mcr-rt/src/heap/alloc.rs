//! Allocation, free and resizing: the logic behind every C entry point.
//! Small requests take a slot from the thread cache; large ones (and small
//! ones the cache cannot serve) go to the central structures.

use super::central::{hdr, CENTRAL};
use super::layout::*;
use super::pages::PAGES;
use super::region::{self, desc, page_addr};
use super::size_class::{class_of_need, slot_size, MAX_SLOT};
use super::thread_cache::{self, ThreadCache};
use std::sync::atomic::Ordering;

/// A slot located from an address: its header and the end of the space
/// its payload may use.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub start: usize,
    pub end: usize,
    /// Size class, or `None` for a large object.
    pub class: Option<usize>,
}

impl Slot {
    #[inline(always)]
    pub fn header(&self) -> &'static Header {
        hdr(self.start)
    }
    /// The payload address if the slot holds a live object.
    #[inline(always)]
    pub fn live(&self) -> Option<(usize, u64)> {
        let w = self.header().word.load(Ordering::Acquire);
        (w & W_ALLOC != 0).then(|| (self.start + word_offset(w), w))
    }
}

/// The slot whose memory contains `addr`, if `addr` is in a carved slot of
/// a small page or anywhere in a large run. O(1): page table, then a
/// multiplication.
#[inline(always)]
pub(super) fn locate(addr: usize) -> Option<Slot> {
    let off = addr.wrapping_sub(region::base());
    if off >= region::len() {
        return None;
    }
    let idx = off >> PAGE_SHIFT;
    let d = desc(idx).load();
    match d.kind {
        Kind::Small => {
            let c = d.class as usize;
            let si = super::size_class::slot_index(c, off & (PAGE - 1));
            if si >= d.a as usize {
                return None;
            }
            let start = page_addr(idx) + si * slot_size(c);
            Some(Slot {
                start,
                end: start + slot_size(c),
                class: Some(c),
            })
        }
        Kind::LargeHead => large_slot(idx, d.a as usize),
        Kind::LargeCont => {
            let head = idx.checked_sub(d.a as usize)?;
            let hd = desc(head).load();
            if hd.kind != Kind::LargeHead {
                return None;
            }
            large_slot(head, hd.a as usize)
        }
        _ => None,
    }
}

fn large_slot(head: usize, n: usize) -> Option<Slot> {
    let start = page_addr(head);
    Some(Slot {
        start,
        end: start + n * PAGE,
        class: None,
    })
}

#[inline(always)]
fn tc() -> &'static mut ThreadCache {
    // SAFETY: the calling thread's own cache; nothing else mutates it, and
    // the allocator never re-enters itself on the same thread while holding
    // this reference (refill paths do not allocate through the cache).
    unsafe { &mut *thread_cache::current() }
}

fn set_enomem() {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = libc::ENOMEM };
}

/// Allocates `size` bytes with the default 16-byte alignment.
#[inline(always)]
pub(super) fn malloc(size: usize, site: usize) -> *mut u8 {
    if size <= MAX_SLOT - HEADER {
        // Small: the common case.
        let c = match class_of_need(size + HEADER) {
            Some(c) => c,
            None => unreachable_small(),
        };
        let t = tc();
        let mut s = t.pop(c);
        if s == 0 {
            s = t.refill(c);
            if s == 0 {
                set_enomem();
                return std::ptr::null_mut();
            }
        }
        let h = hdr(s);
        h.site.store(site, Ordering::Relaxed);
        h.word.store(make_word(size, HEADER), Ordering::Release);
        t.account(1, size as i64);
        super::startup_order::note((s + HEADER) as *mut u8);
        (s + HEADER) as *mut u8
    } else {
        alloc_large(size, 16, site, false)
    }
}

#[cold]
fn unreachable_small() -> ! {
    fatal("size class table broken")
}

/// Allocates with alignment `align` (a power of two).
pub(super) fn memalign(align: usize, size: usize, site: usize) -> *mut u8 {
    if align <= 16 {
        return malloc(size, site);
    }
    // `max(1)`: even a zero-size object must start inside its slot.
    if size <= MAX_SLOT && align <= MAX_SLOT {
        if let Some(c) = class_of_need(size.max(1) + align) {
            let t = tc();
            let mut s = t.pop(c);
            if s == 0 {
                s = t.refill(c);
                if s == 0 {
                    set_enomem();
                    return std::ptr::null_mut();
                }
            }
            let p = (s + HEADER + align - 1) & !(align - 1);
            let h = hdr(s);
            h.site.store(site, Ordering::Relaxed);
            h.word.store(make_word(size, p - s), Ordering::Release);
            t.account(1, size as i64);
            super::startup_order::note(p as *mut u8);
            return p as *mut u8;
        }
    }
    alloc_large(size, align, site, false)
}

/// Allocates zeroed memory.
pub(super) fn calloc(n: usize, size: usize, site: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        set_enomem();
        return std::ptr::null_mut();
    };
    if total > MAX_SLOT - HEADER {
        return alloc_large(total, 16, site, true);
    }
    let p = malloc(total, site);
    if !p.is_null() {
        // SAFETY: p is a fresh allocation of `total` bytes.
        unsafe { std::ptr::write_bytes(p, 0, total) };
    }
    p
}

/// A large object: a run of pages with the header at its start.
#[cold]
fn alloc_large(size: usize, align: usize, site: usize, zero: bool) -> *mut u8 {
    // Initialise first: the region's length is 0 until then.
    super::init::ensure();
    let align = align.max(16);
    if align > MAX_OFFSET || size > MAX_SIZE || size > region::len() {
        set_enomem();
        return std::ptr::null_mut();
    }
    // For alignments up to a page the payload sits at `align` from the
    // page-aligned run start; beyond that the run is over-allocated.
    let span = if align <= PAGE {
        align + size.max(1)
    } else {
        align + size + PAGE
    };
    let n = span.div_ceil(PAGE);
    let Ok((start, fresh)) = PAGES.with(|r| r.alloc(n)) else {
        set_enomem();
        return std::ptr::null_mut();
    };
    let base = page_addr(start);
    let p = if align <= PAGE {
        base + align
    } else {
        (base + HEADER + align - 1) & !(align - 1)
    };
    if zero && !fresh {
        // SAFETY: the run is ours: [p, p + size) lies within it.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0, size) };
    }
    let h = hdr(base);
    h.site.store(site, Ordering::Relaxed);
    h.word.store(make_word(size, p - base), Ordering::Release);
    for i in 1..n {
        desc(start + i).store(Desc::new(Kind::LargeCont, 0, i as u32));
    }
    desc(start).store(Desc::new(Kind::LargeHead, 0, n as u32));
    tc().account(1, size as i64);
    super::startup_order::note(p as *mut u8);
    p as *mut u8
}

/// Frees `p`, which must be null, foreign (then glibc's), or a live
/// object's payload address.
#[inline(always)]
pub(super) fn free(p: *mut u8) {
    let a = p as usize;
    if a.wrapping_sub(region::base()) >= region::len() {
        if !p.is_null() {
            foreign_free(p);
        }
        return;
    }
    // Inline the small-page case of `locate`.
    let off = a - region::base();
    let idx = off >> PAGE_SHIFT;
    let d = desc(idx).load();
    if d.kind == Kind::Small {
        let c = d.class as usize;
        let si = super::size_class::slot_index(c, off & (PAGE - 1));
        let s = page_addr(idx) + si * slot_size(c);
        let h = hdr(s);
        let w = h.word.load(Ordering::Relaxed);
        if si >= d.a as usize || w & W_ALLOC == 0 || s + word_offset(w) != a {
            invalid_free(p);
        }
        if w & W_CARVED != 0 {
            super::carved::drop_within(a, word_size(w));
        }
        h.word.store(0, Ordering::Release);
        let t = tc();
        t.account(-1, -(word_size(w) as i64));
        if !t.push(c, s) {
            t.push_slow(c, s);
        }
    } else {
        free_large(p);
    }
}

#[cold]
fn free_large(p: *mut u8) {
    let a = p as usize;
    let Some(slot) = locate(a) else {
        invalid_free(p)
    };
    let h = slot.header();
    let w = h.word.load(Ordering::Relaxed);
    if slot.class.is_some() || w & W_ALLOC == 0 || slot.start + word_offset(w) != a {
        invalid_free(p);
    }
    if w & W_CARVED != 0 {
        super::carved::drop_within(a, word_size(w));
    }
    h.word.store(0, Ordering::Release);
    tc().account(-1, -(word_size(w) as i64));
    let start = (slot.start - region::base()) >> PAGE_SHIFT;
    let n = (slot.end - slot.start) / PAGE;
    if n >= 16 {
        // Give big runs' memory back to the kernel (the pages stay mapped).
        // SAFETY: the run is ours and dead; nobody else can reach it until
        // it is in the free lists below.
        unsafe {
            libc::madvise(
                slot.start as *mut libc::c_void,
                n * PAGE,
                libc::MADV_DONTNEED,
            );
        }
    }
    PAGES.with(|r| r.free(start, n));
}

/// Usable bytes at `p` (at least the requested size).
pub(super) fn usable_size(p: *mut u8) -> usize {
    let a = p as usize;
    if p.is_null() {
        return 0;
    }
    if a.wrapping_sub(region::base()) >= region::len() {
        return foreign_usable_size(p);
    }
    match locate(a) {
        Some(s) => match s.live() {
            Some((payload, _)) if payload == a => s.end - a,
            _ => 0,
        },
        None => 0,
    }
}

/// `realloc` with glibc's semantics; `site` null keeps the object's site
/// (an uninstrumented `realloc` of a typed object keeps its type).
pub(super) fn realloc(p: *mut u8, size: usize, site: usize, keep_site: bool) -> *mut u8 {
    if p.is_null() {
        return malloc(size, site);
    }
    if size == 0 {
        free(p);
        return std::ptr::null_mut();
    }
    let a = p as usize;
    if a.wrapping_sub(region::base()) >= region::len() {
        return foreign_realloc(p, size, site);
    }
    let Some(slot) = locate(a) else {
        invalid_free(p)
    };
    let h = slot.header();
    let w = h.word.load(Ordering::Relaxed);
    if w & W_ALLOC == 0 || slot.start + word_offset(w) != a {
        invalid_free(p);
    }
    let old = word_size(w);
    let cap = slot.end - a;
    let new_site = if keep_site && site == 0 {
        h.site.load(Ordering::Relaxed)
    } else {
        site
    };
    // Keep the block when the new size fits and would not fit a smaller
    // class (small) or fewer pages (large): no copy, no waste.
    let fits = size <= cap
        && match slot.class {
            Some(c) => {
                word_offset(w) != HEADER
                    || class_of_need(size + HEADER) == Some(c)
                    || size * 2 > cap
            }
            None => size + word_offset(w) > (slot.end - slot.start) - PAGE,
        };
    if fits {
        if w & W_CARVED != 0 && size < old {
            super::carved::drop_within(a + size, old - size);
        }
        h.site.store(new_site, Ordering::Relaxed);
        h.word.store(word_with_size(w, size), Ordering::Release);
        tc().account(0, size as i64 - old as i64);
        super::startup_order::note(p);
        return p;
    }
    let q = malloc(size, new_site);
    if q.is_null() {
        return q;
    }
    // Programs may use the whole usable size (`malloc_usable_size`, as
    // redis's strings do), so all of it moves, as with glibc.
    // SAFETY: both blocks are live and distinct; `cap` bytes are usable at p.
    unsafe { std::ptr::copy_nonoverlapping(p, q, cap.min(size)) };
    free(p);
    q
}

/// Gives the live object whose payload starts at `p` a new size (within
/// its slot's usable bytes) and site, without moving it: an object kept at
/// its address and converted to a new layout in place. False when `p` is
/// not such an object or `size` exceeds its usable bytes.
pub(super) fn resize_in_place(p: usize, size: usize, site: usize) -> bool {
    let Some(slot) = locate(p) else {
        return false;
    };
    let h = slot.header();
    let w = h.word.load(Ordering::Acquire);
    if w & W_ALLOC == 0 || slot.start + word_offset(w) != p || size > slot.end - p {
        return false;
    }
    let old = word_size(w);
    h.site.store(site, Ordering::Release);
    h.word.store(word_with_size(w, size), Ordering::Release);
    tc().account(0, size as i64 - old as i64);
    true
}

/// Sets the site of the live object whose payload starts at `p`.
pub(super) fn retag(p: usize, site: usize) {
    if let Some(s) = locate(p) {
        if let Some((payload, _)) = s.live() {
            if payload == p {
                s.header().site.store(site, Ordering::Release);
            }
        }
    }
}

#[cold]
fn invalid_free(p: *mut u8) -> ! {
    let _ = p;
    fatal("free(): invalid pointer or double free")
}

/// Writes `msg` to stderr and aborts, without allocating.
#[cold]
pub(super) fn fatal(msg: &str) -> ! {
    let pre = b"mcr-rt heap: ";
    // SAFETY: writes from valid buffers; abort never returns.
    unsafe {
        libc::write(2, pre.as_ptr() as *const libc::c_void, pre.len());
        libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
        libc::write(2, b"\n".as_ptr() as *const libc::c_void, 1);
        libc::abort()
    }
}

extern "C" {
    fn __libc_free(p: *mut libc::c_void);
    fn __libc_realloc(p: *mut libc::c_void, n: usize) -> *mut libc::c_void;
}

/// Memory from glibc's heap (allocated before we interposed, or by code that
/// calls `__libc_malloc` directly) goes back to glibc.
#[cold]
fn foreign_free(p: *mut u8) {
    // SAFETY: p is not ours; by elimination it is glibc's.
    unsafe { __libc_free(p as *mut libc::c_void) }
}

#[cold]
fn foreign_realloc(p: *mut u8, size: usize, _site: usize) -> *mut u8 {
    // SAFETY: p is glibc's; it stays there.
    unsafe { __libc_realloc(p as *mut libc::c_void, size) as *mut u8 }
}

/// glibc's chunk layout: the size word sits just before the payload, with
/// flag bits; mmapped chunks carry two words of overhead, others one.
#[cold]
fn foreign_usable_size(p: *mut u8) -> usize {
    // SAFETY: p is a glibc chunk's payload; its size word precedes it.
    let sz = unsafe { *(p as *const usize).sub(1) };
    let chunk = sz & !7;
    if sz & 2 != 0 {
        chunk - 16
    } else {
        chunk - 8
    }
}

/// Allocations in flight in the central lists are not counted anywhere;
/// exported for tests of the accounting.
#[allow(dead_code)]
pub(super) fn central_free_slots(c: usize) -> usize {
    CENTRAL[c].0.with(|cl| cl.count)
}
