//! The page allocator: hands out runs of whole pages (for size-class pages
//! and large objects) and takes them back, coalescing neighbours. Free runs
//! are described in the page table itself (head/tail entries) and linked
//! into bins by length: exact bins for 1..=64 pages, one first-fit bin for
//! longer runs. All under one lock: it is off the fast path.

use super::layout::*;
use super::region::{self, desc, top};
use super::sync::Locked;
use super::HeapError;
use std::sync::atomic::Ordering;

const NBINS: usize = 65;

pub(super) struct FreeRuns {
    /// Head of each bin: page index + 1, 0 = empty.
    bins: [u32; NBINS],
}

pub(super) static PAGES: Locked<FreeRuns> = Locked::new(FreeRuns { bins: [0; NBINS] });

fn bin_of(len: usize) -> usize {
    len.min(NBINS) - 1
}

impl FreeRuns {
    /// Forgets all free runs (the bins are rebuilt after adopting an image).
    pub(super) fn clear(&mut self) {
        self.bins = [0; NBINS];
    }

    /// Links the run `[start, start + len)` into its bin and marks its
    /// head and tail.
    pub(super) fn insert(&mut self, start: usize, len: usize) {
        let b = bin_of(len);
        let next = self.bins[b];
        if next != 0 {
            let nd = desc(next as usize - 1);
            let mut d = nd.load();
            d.c = start as u32 + 1;
            nd.store(d);
        }
        if len > 1 {
            desc(start + len - 1).store(Desc::new(Kind::FreeTail, 0, len as u32));
        }
        desc(start).store(Desc {
            kind: Kind::FreeHead,
            class: 0,
            a: len as u32,
            b: next,
            c: 0,
        });
        self.bins[b] = start as u32 + 1;
    }

    fn remove(&mut self, start: usize) {
        let d = desc(start).load();
        debug_assert_eq!(d.kind, Kind::FreeHead);
        if d.c != 0 {
            let pd = desc(d.c as usize - 1);
            let mut p = pd.load();
            p.b = d.b;
            pd.store(p);
        } else {
            self.bins[bin_of(d.a as usize)] = d.b;
        }
        if d.b != 0 {
            let nd = desc(d.b as usize - 1);
            let mut n = nd.load();
            n.c = d.c;
            nd.store(n);
        }
    }

    /// Takes a run of `n` pages. Returns its first page and whether it is
    /// fresh (never used, hence zero-filled). The run's boundary entries
    /// read `Unused` until the caller labels the pages.
    pub(super) fn alloc(&mut self, n: usize) -> Result<(usize, bool), HeapError> {
        for b in bin_of(n)..NBINS {
            let mut cur = self.bins[b];
            while cur != 0 {
                let start = cur as usize - 1;
                let d = desc(start).load();
                let len = d.a as usize;
                if len >= n {
                    self.remove(start);
                    if len > n {
                        self.insert(start + n, len - n);
                    }
                    // The run's first and last entries may still read as a
                    // free head/tail: a concurrent `free` of a neighbour
                    // would merge the run back before the caller labels it.
                    desc(start).store(Desc::new(Kind::Unused, 0, 0));
                    desc(start + n - 1).store(Desc::new(Kind::Unused, 0, 0));
                    return Ok((start, false));
                }
                cur = d.b;
            }
        }
        // Grow the high-water mark.
        let t = top();
        let new_top = t.checked_add(n).ok_or(HeapError::OutOfMemory)?;
        if new_top > region::len() / PAGE {
            return Err(HeapError::OutOfMemory);
        }
        region::commit_to(new_top)?;
        region::header()
            .top
            .store(new_top as u64, Ordering::Release);
        Ok((t, true))
    }

    /// Returns the run `[start, start + n)`, merging it with free
    /// neighbours.
    pub(super) fn free(&mut self, mut start: usize, mut n: usize) {
        for i in start..start + n {
            desc(i).store(Desc::new(Kind::FreeBody, 0, 0));
        }
        let meta = region::meta_pages();
        if start > meta {
            let left = desc(start - 1).load();
            let lstart = match left.kind {
                Kind::FreeTail => Some(start - left.a as usize),
                Kind::FreeHead if left.a == 1 => Some(start - 1),
                _ => None,
            };
            if let Some(ls) = lstart {
                let llen = desc(ls).load().a as usize;
                self.remove(ls);
                desc(start - 1).store(Desc::new(Kind::FreeBody, 0, 0));
                start = ls;
                n += llen;
            }
        }
        let end = start + n;
        if end < top() {
            let right = desc(end).load();
            if right.kind == Kind::FreeHead {
                let rlen = right.a as usize;
                self.remove(end);
                desc(end).store(Desc::new(Kind::FreeBody, 0, 0));
                if rlen > 1 {
                    desc(end + rlen - 1).store(Desc::new(Kind::FreeBody, 0, 0));
                }
                n += rlen;
            }
        }
        self.insert(start, n);
    }
}
