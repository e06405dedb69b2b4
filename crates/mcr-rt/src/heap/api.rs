//! What the rest of the runtime asks of the heap: resolve an address to its
//! object, enumerate live objects, retag them, and count them.

use super::alloc::locate;
use super::layout::*;
use super::region::{self, desc, page_addr, top};
use super::site::Site;
use super::size_class::slot_size;
use super::{init, thread_cache};
use std::sync::atomic::Ordering;

/// A live heap object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object {
    /// Payload address (what `malloc` returned).
    pub addr: usize,
    /// Requested size in bytes.
    pub size: usize,
    /// Allocation site; null for untyped allocations. May point into a
    /// previous binary for inherited objects: never dereference those
    /// before translating them with [`set_site`].
    pub site: *const Site,
}

/// Heap totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Live objects.
    pub objects: u64,
    /// Requested bytes of live objects.
    pub bytes: u64,
    /// Bytes of the region mapped read-write (metadata included).
    pub mapped_bytes: u64,
}

fn object_at(payload: usize, w: u64, site: usize) -> Object {
    Object {
        addr: payload,
        size: word_size(w),
        site: site as *const Site,
    }
}

/// The live object containing `addr` (any address in `[addr, addr+size)`,
/// or `addr` itself for a zero-size object). `None` for free memory,
/// headers, alignment padding and addresses outside the heap. O(1).
pub fn find(addr: usize) -> Option<Object> {
    let slot = locate(addr)?;
    let h = slot.header();
    let w = h.word.load(Ordering::Acquire);
    if w & W_ALLOC == 0 {
        return None;
    }
    let payload = slot.start + word_offset(w);
    let size = word_size(w);
    if addr < payload || (addr >= payload + size && !(size == 0 && addr == payload)) {
        return None;
    }
    Some(object_at(payload, w, h.site.load(Ordering::Acquire)))
}

/// Calls `f` for every live object, in address order. Exact when the
/// program's threads are parked; while they run it never faults, but may
/// miss or include objects allocated or freed meanwhile. `f` may allocate
/// (it should not free objects of this heap).
pub fn for_each_live(mut f: impl FnMut(Object)) {
    if !init::is_initialized() {
        return;
    }
    let top = top();
    let mut i = region::meta_pages();
    while i < top {
        let d = desc(i).load();
        match d.kind {
            Kind::Small => {
                let ss = slot_size(d.class as usize);
                let pa = page_addr(i);
                let carved = (d.a as usize).min(PAGE / ss);
                for si in 0..carved {
                    let s = pa + si * ss;
                    let h = super::central::hdr(s);
                    let w = h.word.load(Ordering::Acquire);
                    if w & W_ALLOC != 0 {
                        f(object_at(
                            s + word_offset(w),
                            w,
                            h.site.load(Ordering::Acquire),
                        ));
                    }
                }
                i += 1;
            }
            Kind::LargeHead => {
                let s = page_addr(i);
                let h = super::central::hdr(s);
                let w = h.word.load(Ordering::Acquire);
                if w & W_ALLOC != 0 {
                    f(object_at(
                        s + word_offset(w),
                        w,
                        h.site.load(Ordering::Acquire),
                    ));
                }
                i += (d.a as usize).max(1);
            }
            _ => i += 1,
        }
    }
}

/// Sets the site of the live object containing `addr`. False if there is
/// none.
pub fn set_site(addr: usize, site: *const Site) -> bool {
    with_live_header(addr, |h, _| h.site.store(site as usize, Ordering::Release)).is_some()
}

/// Bytes usable at the payload `addr` of a live object (its requested size
/// plus whatever its size class or page run leaves after it); 0 if `addr`
/// is not the start of a live object.
pub fn usable_size(addr: usize) -> usize {
    super::alloc::usable_size(addr as *mut u8)
}

/// Re-sizes and re-tags the live object starting at `addr` where it is
/// (see `alloc::resize_in_place`): the state transfer converts an object
/// that must keep its address to its new layout in its own slot, and the
/// header must then say what it holds for `mcr-ctl heap` and the next
/// update. False if it does not fit.
pub fn resize_in_place(addr: usize, size: usize, site: *const Site) -> bool {
    super::alloc::resize_in_place(addr, size, site as usize)
}

/// The live object containing `addr`, with `flag` set in its header (one
/// lookup: the carve path runs after every pool or slab allocation).
pub(super) fn find_and_flag(addr: usize, flag: u64) -> Option<Object> {
    let slot = locate(addr)?;
    let h = slot.header();
    let w = h.word.load(Ordering::Acquire);
    if w & W_ALLOC == 0 {
        return None;
    }
    let payload = slot.start + word_offset(w);
    let size = word_size(w);
    if addr < payload || (addr >= payload + size && !(size == 0 && addr == payload)) {
        return None;
    }
    if w & flag == 0 {
        h.word.fetch_or(flag, Ordering::AcqRel);
    }
    Some(object_at(payload, w, h.site.load(Ordering::Acquire)))
}

/// Sets `flag` in the header of the live object containing `addr`.
pub(super) fn set_header_flag(addr: usize, flag: u64) {
    with_live_header(addr, |h, w| {
        if w & flag == 0 {
            h.word.fetch_or(flag, Ordering::AcqRel);
        }
    });
}

/// Whether the live object containing `addr` came from an adopted image
/// (and [`clear_inherited`] has not run since).
pub fn is_inherited(addr: usize) -> bool {
    with_live_header(addr, |_, w| w & W_INHERITED != 0).unwrap_or(false)
}

/// Forgets which objects were inherited (after their sites are
/// translated). Call with the program's threads parked.
pub fn clear_inherited() {
    for_each_live(|o| {
        with_live_header(o.addr, |h, w| {
            if w & W_INHERITED != 0 {
                h.word.fetch_and(!W_INHERITED, Ordering::AcqRel);
            }
        });
    });
}

fn with_live_header<R>(addr: usize, f: impl FnOnce(&Header, u64) -> R) -> Option<R> {
    find(addr)?;
    let slot = locate(addr)?;
    let h = slot.header();
    let w = h.word.load(Ordering::Acquire);
    (w & W_ALLOC != 0).then(|| f(h, w))
}

/// Current totals. Cheap: sums per-thread counters.
pub fn stats() -> Stats {
    if !init::is_initialized() {
        return Stats::default();
    }
    let (o, b) = thread_cache::totals();
    Stats {
        objects: o.max(0) as u64,
        bytes: b.max(0) as u64,
        mapped_bytes: region::committed_bytes() as u64,
    }
}

/// Base address and length of the reserved region ((0, 0) before the
/// first allocation).
pub fn region() -> (usize, usize) {
    (region::base(), region::len())
}
