//! The byte layout of the heap region. Everything needed to enumerate the
//! heap lives in the region itself, so that its bytes alone (a checkpoint
//! image) describe every object:
//!
//! ```text
//! base: page 0            RegionHeader (magic, base, length, top)
//!       pages 1..META     page table: one PageDesc (16 bytes) per page
//!       pages META..top   data pages: small-object pages and large runs
//!       pages top..       reserved, PROT_NONE until needed
//! ```
//!
//! A small-object page is cut into equal slots of one size class; each
//! slot starts with a [`Header`]. A large object is a run of whole pages
//! with one `Header` at the start of its first page.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Heap page size: the unit of the page table and of large runs.
pub const PAGE: usize = 64 * 1024;
pub const PAGE_SHIFT: u32 = 16;
/// Size of a slot header, and the default payload offset.
pub const HEADER: usize = 16;
/// Default size of the reserved region.
pub const DEFAULT_REGION: usize = 64 << 30;
/// Image format version (bump with any change of this file).
pub const VERSION: u64 = 1;
pub const MAGIC: u64 = u64::from_le_bytes(*b"MCRHEAP1");

/// Header of every object slot.
///
/// `word`: bit 0 allocated, bit 1 inherited (from an adopted image),
/// bit 2 holds carved objects,
/// bits 4..28 payload offset from the header in 16-byte units (1 unless
/// the allocation was over-aligned), bits 28..64 requested size.
/// A free slot has `word == 0` and keeps the next free slot's address in
/// `site` (free lists are threaded through the headers).
#[repr(C)]
pub struct Header {
    pub site: AtomicUsize,
    pub word: AtomicU64,
}

pub const W_ALLOC: u64 = 1;
pub const W_INHERITED: u64 = 2;
/// Objects were carved inside by a pool or slab allocator (`carved`).
pub const W_CARVED: u64 = 4;
const OFF_SHIFT: u32 = 4;
const OFF_BITS: u32 = 24;
const SIZE_SHIFT: u32 = 28;
/// Largest payload offset (alignment padding) a header can express.
pub const MAX_OFFSET: usize = ((1 << OFF_BITS) - 1) * 16;
/// Largest requested size a header can express.
pub const MAX_SIZE: usize = (1usize << (64 - SIZE_SHIFT)) - 1;

#[inline(always)]
pub fn make_word(size: usize, offset: usize) -> u64 {
    debug_assert!(offset.is_multiple_of(16) && offset <= MAX_OFFSET && size <= MAX_SIZE);
    ((size as u64) << SIZE_SHIFT) | (((offset / 16) as u64) << OFF_SHIFT) | W_ALLOC
}
#[inline(always)]
pub fn word_size(w: u64) -> usize {
    (w >> SIZE_SHIFT) as usize
}
#[inline(always)]
pub fn word_offset(w: u64) -> usize {
    (((w >> OFF_SHIFT) & ((1 << OFF_BITS) - 1)) * 16) as usize
}
#[inline(always)]
pub fn word_with_size(w: u64, size: usize) -> u64 {
    (w & ((1 << SIZE_SHIFT) - 1)) | ((size as u64) << SIZE_SHIFT)
}

/// What a page is used for (low byte of [`PageDesc::w0`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Never handed out (beyond `top`) or freshly reserved.
    Unused = 0,
    /// Region header or page table.
    Meta = 1,
    /// Slots of one size class; `a` = slots carved so far.
    Small = 2,
    /// First page of a large object; `a` = pages in the run.
    LargeHead = 3,
    /// Later page of a large object; `a` = distance to the head page.
    LargeCont = 4,
    /// First page of a free run; `a` = run length, `b`/`c` = next/prev
    /// free run of the same bin (page index + 1, 0 = none).
    FreeHead = 5,
    /// Last page of a free run longer than one page; `a` = run length.
    FreeTail = 6,
    /// Any other page of a free run.
    FreeBody = 7,
}

impl Kind {
    pub fn from_u8(k: u8) -> Kind {
        match k {
            1 => Kind::Meta,
            2 => Kind::Small,
            3 => Kind::LargeHead,
            4 => Kind::LargeCont,
            5 => Kind::FreeHead,
            6 => Kind::FreeTail,
            7 => Kind::FreeBody,
            _ => Kind::Unused,
        }
    }
}

/// One page-table entry. `w0` = kind | class << 8 | a << 32,
/// `w1` = b | c << 32. Atomic so that lock-free readers (`find`,
/// `for_each_live` while the program runs) never see torn values.
#[repr(C)]
pub struct PageDesc {
    pub w0: AtomicU64,
    pub w1: AtomicU64,
}

/// Decoded copy of a [`PageDesc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub kind: Kind,
    pub class: u8,
    pub a: u32,
    pub b: u32,
    pub c: u32,
}

impl Desc {
    pub fn new(kind: Kind, class: u8, a: u32) -> Desc {
        Desc {
            kind,
            class,
            a,
            b: 0,
            c: 0,
        }
    }
}

impl PageDesc {
    #[inline(always)]
    pub fn load(&self) -> Desc {
        let w0 = self.w0.load(Ordering::Acquire);
        let w1 = self.w1.load(Ordering::Acquire);
        Desc {
            kind: Kind::from_u8(w0 as u8),
            class: (w0 >> 8) as u8,
            a: (w0 >> 32) as u32,
            b: w1 as u32,
            c: (w1 >> 32) as u32,
        }
    }
    #[inline(always)]
    pub fn store(&self, d: Desc) {
        self.w1
            .store(d.b as u64 | (d.c as u64) << 32, Ordering::Relaxed);
        self.w0.store(
            d.kind as u64 | (d.class as u64) << 8 | (d.a as u64) << 32,
            Ordering::Release,
        );
    }
    /// Sets only the `a` field (carved count of a small page).
    #[inline(always)]
    pub fn set_a(&self, a: u32) {
        let w0 = self.w0.load(Ordering::Relaxed);
        self.w0
            .store((w0 & 0xffff_ffff) | (a as u64) << 32, Ordering::Release);
    }
}

/// Page 0 of the region.
#[repr(C)]
pub struct RegionHeader {
    pub magic: u64,
    pub version: u64,
    /// Address the region was reserved at; an image is only valid there.
    pub base: u64,
    /// Reserved length in bytes.
    pub len: u64,
    pub page_size: u64,
    /// Pages taken by the header and the page table.
    pub meta_pages: u64,
    /// High-water mark: pages `[0, top)` are mapped read-write.
    pub top: AtomicU64,
}

/// Number of meta pages (header + page table) of a region of `len` bytes.
pub const fn meta_pages(len: usize) -> usize {
    let npages = len / PAGE;
    1 + (npages * std::mem::size_of::<PageDesc>()).div_ceil(PAGE)
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER);
const _: () = assert!(std::mem::size_of::<PageDesc>() == 16);
const _: () = assert!(1 << PAGE_SHIFT == PAGE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_word_round_trip() {
        let w = make_word(123_456_789, 4096);
        assert_eq!(word_size(w), 123_456_789);
        assert_eq!(word_offset(w), 4096);
        assert_eq!(w & W_ALLOC, W_ALLOC);
        let w2 = word_with_size(w | W_INHERITED, 7);
        assert_eq!(word_size(w2), 7);
        assert_eq!(word_offset(w2), 4096);
        assert_eq!(w2 & W_INHERITED, W_INHERITED);
        assert_eq!(word_size(make_word(MAX_SIZE, MAX_OFFSET)), MAX_SIZE);
    }
}
