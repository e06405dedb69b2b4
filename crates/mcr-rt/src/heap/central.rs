//! Per-class central free lists, shared by all threads. Thread caches take
//! and give back slots here in batches, so the per-class lock is taken once
//! per batch, not once per allocation. When a class runs dry it gets a new
//! page from the page allocator and carves it lazily, a batch at a time, so
//! untouched slots cost no memory.

use super::layout::*;
use super::pages::PAGES;
use super::region::{desc, page_addr};
use super::size_class::{slot_size, slots_per_page, NCLASSES};
use super::sync::Locked;
use std::sync::atomic::Ordering;

pub(super) struct Central {
    /// Free slots (addresses of their headers), linked through
    /// `Header::site`, 0-terminated.
    pub head: usize,
    pub count: usize,
    /// Page being carved (0 = none).
    pub carve_page: usize,
}

/// One cache line per class so that classes do not contend.
#[repr(align(64))]
pub(super) struct CentralSlot(pub Locked<Central>);

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: CentralSlot = CentralSlot(Locked::new(Central {
    head: 0,
    count: 0,
    carve_page: 0,
}));

pub(super) static CENTRAL: [CentralSlot; NCLASSES] = [EMPTY; NCLASSES];

/// Header of the slot at address `slot`.
#[inline(always)]
pub(super) fn hdr(slot: usize) -> &'static Header {
    // SAFETY: callers pass the start of a slot inside a committed page of
    // the region; headers are 16-aligned atomics.
    unsafe { &*(slot as *const Header) }
}

#[inline(always)]
pub(super) fn next_of(slot: usize) -> usize {
    hdr(slot).site.load(Ordering::Relaxed)
}

#[inline(always)]
pub(super) fn set_next(slot: usize, next: usize) {
    hdr(slot).site.store(next, Ordering::Relaxed);
}

impl Central {
    /// Takes up to `want` free slots of class `c` (at least one unless out of
    /// memory). Returns the chain's head and length.
    pub(super) fn take(&mut self, c: usize, want: usize) -> (usize, usize) {
        let mut head = 0;
        let mut n = 0;
        // From the free list first: walk `want` links.
        if self.count > 0 {
            head = self.head;
            let mut last = head;
            n = 1;
            while n < want && n < self.count {
                last = next_of(last);
                n += 1;
            }
            self.head = next_of(last);
            self.count -= n;
            set_next(last, 0);
            if n == want {
                return (head, n);
            }
        }
        // Then carve.
        let per_page = slots_per_page(c);
        let ss = slot_size(c);
        while n < want {
            if self.carve_page == 0 {
                let Ok((p, _)) = PAGES.with(|r| r.alloc(1)) else {
                    break;
                };
                desc(p).store(Desc::new(Kind::Small, c as u8, 0));
                self.carve_page = p;
            }
            let d = desc(self.carve_page);
            let carved = d.load().a as usize;
            let k = (want - n).min(per_page - carved);
            let pa = page_addr(self.carve_page);
            // Link the new slots in front of the chain, last one first.
            for i in (carved..carved + k).rev() {
                let s = pa + i * ss;
                hdr(s).word.store(0, Ordering::Relaxed);
                set_next(s, head);
                head = s;
            }
            n += k;
            // Publish after the headers are written: `find` trusts slots
            // below the carved count.
            d.set_a((carved + k) as u32);
            if carved + k == per_page {
                self.carve_page = 0;
            }
        }
        (head, n)
    }

    /// Gives back the chain `head ..= tail` of `n` slots.
    #[inline]
    pub(super) fn give(&mut self, head: usize, tail: usize, n: usize) {
        set_next(tail, self.head);
        self.head = head;
        self.count += n;
    }
}
