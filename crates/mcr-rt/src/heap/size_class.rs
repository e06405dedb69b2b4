//! Size classes of small objects. A class is a slot size (16-byte header
//! included); every slot size is a multiple of 16, so payloads that start
//! right after the header are 16-aligned like glibc's. Classes are 16 bytes
//! apart up to 256 and then four per power of two, which bounds internal
//! waste to 25% and keeps the number of classes (and so of partially used
//! pages) small. Requests whose slot would exceed [`MAX_SLOT`] are large
//! objects: runs of whole pages.

use super::layout::{HEADER, PAGE};

/// Largest slot size; larger requests become page runs.
pub const MAX_SLOT: usize = 32 * 1024;

const fn build_slots() -> ([u32; 64], usize) {
    let mut out = [0u32; 64];
    let mut n = 0;
    let mut s = 32;
    while s <= 256 {
        out[n] = s as u32;
        n += 1;
        s += 16;
    }
    let mut pow = 256;
    while pow < MAX_SLOT {
        let step = pow / 4;
        let mut k = 1;
        while k <= 4 {
            out[n] = (pow + k * step) as u32;
            n += 1;
            k += 1;
        }
        pow *= 2;
    }
    (out, n)
}

const SLOTS_AND_COUNT: ([u32; 64], usize) = build_slots();
/// Number of small size classes.
pub const NCLASSES: usize = SLOTS_AND_COUNT.1;
/// Slot size (header included) of each class.
pub const SLOT_SIZE: [u32; 64] = SLOTS_AND_COUNT.0;

const LOOKUP_LEN: usize = MAX_SLOT / 16 + 1;

const fn build_lookup() -> [u8; LOOKUP_LEN] {
    let mut t = [0u8; LOOKUP_LEN];
    let mut i = 0;
    let mut c = 0;
    while i < LOOKUP_LEN {
        // Smallest class whose slot holds i * 16 bytes.
        while (SLOT_SIZE[c] as usize) < i * 16 {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// Class of a slot of `ceil(need / 16) * 16` bytes.
static LOOKUP: [u8; LOOKUP_LEN] = build_lookup();

const fn build_magic() -> [u64; 64] {
    let mut m = [0u64; 64];
    let mut c = 0;
    while c < NCLASSES {
        m[c] = (1u64 << 32) / SLOT_SIZE[c] as u64 + 1;
        c += 1;
    }
    m
}

/// `ceil(2^32 / slot)`: `(off * MAGIC) >> 32 == off / slot` for every
/// offset inside a page (checked exhaustively by a test). Division is what
/// `free` and `find` would otherwise pay on every call.
static MAGIC: [u64; 64] = build_magic();

/// The class whose slots hold `need` bytes (header included), or `None`
/// when the request is a large object.
#[inline(always)]
pub fn class_of_need(need: usize) -> Option<usize> {
    if need <= MAX_SLOT {
        Some(LOOKUP[need.div_ceil(16)] as usize)
    } else {
        None
    }
}

/// Slot size of class `c`.
#[inline(always)]
pub fn slot_size(c: usize) -> usize {
    SLOT_SIZE[c] as usize
}

/// Slots that fit in one page of class `c`.
#[inline(always)]
pub fn slots_per_page(c: usize) -> usize {
    PAGE / slot_size(c)
}

/// Index of the slot containing page offset `off` in a page of class `c`.
#[inline(always)]
pub fn slot_index(c: usize, off: usize) -> usize {
    ((off as u64 * MAGIC[c]) >> 32) as usize
}

/// Slots moved between a thread cache and the central list at once: about
/// 64 KiB worth, at least 2, at most 128. A thread cache holds two batches,
/// so a thread that frees a hundred mid-sized objects and allocates them
/// again stays off the central list's lock (two threads doing so contended
/// on it at 16 KiB batches: 55-70 ns per 700-byte pair instead of ~10).
#[inline(always)]
pub fn batch(c: usize) -> usize {
    (64 * 1024 / slot_size(c)).clamp(2, 128)
}

const _: () = assert!(HEADER == 16);
const _: () = assert!(SLOTS_AND_COUNT.1 < 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_classes_cover_all_small_sizes() {
        for need in 0..=MAX_SLOT {
            let c = class_of_need(need).unwrap();
            assert!(slot_size(c) >= need, "need {need} class {c}");
            if c > 0 {
                assert!(slot_size(c - 1) < need.max(1), "need {need} not minimal");
            }
            assert_eq!(slot_size(c) % 16, 0);
        }
        assert!(class_of_need(MAX_SLOT + 1).is_none());
        assert_eq!(slot_size(NCLASSES - 1), MAX_SLOT);
    }

    #[test]
    fn heap_magic_division_is_exact() {
        for c in 0..NCLASSES {
            for off in 0..PAGE {
                assert_eq!(
                    slot_index(c, off),
                    off / slot_size(c),
                    "class {c} off {off}"
                );
            }
        }
    }
}
