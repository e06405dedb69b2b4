//! Large objects: page runs are reused, split and coalesced, and reused
//! memory is zeroed by calloc. One test per binary, so nothing else
//! allocates large runs meanwhile.

use mcr_rt::heap::{self, HEAP_PAGE as PAGE};
use std::ffi::c_void;

extern "C" {
    fn malloc(n: usize) -> *mut c_void;
    fn calloc(n: usize, m: usize) -> *mut c_void;
    fn free(p: *mut c_void);
}

/// A large object of exactly `pages` pages (header included).
fn big(pages: usize) -> usize {
    // SAFETY: allocator call.
    let p = unsafe { malloc(pages * PAGE - 64) } as usize;
    assert_ne!(p, 0);
    assert_eq!(p % PAGE, 16, "large payloads follow their header");
    p
}

fn release(p: usize) {
    // SAFETY: live allocation.
    unsafe { free(p as *mut c_void) };
}

#[test]
fn heap_page_runs_split_coalesce_and_reuse() {
    let a = big(3);
    let b = big(3);
    let c = big(3);
    assert_eq!(b, a + 3 * PAGE);
    assert_eq!(c, b + 3 * PAGE);
    let mapped = heap::stats().mapped_bytes;

    // Free the middle, then the first: one 6-page run at a.
    release(b);
    release(a);
    let d = big(5);
    assert_eq!(d, a, "5 pages carved from the coalesced 6-page run");
    let e = big(1);
    assert_eq!(e, a + 5 * PAGE, "the remaining page is reused");
    release(d);
    release(e);
    release(c);
    let f = big(9);
    assert_eq!(f, a, "all three runs merged back");
    assert_eq!(
        heap::stats().mapped_bytes,
        mapped,
        "reuse does not grow the region"
    );

    // A big run is returned to the kernel on free and reused dirty-free:
    // calloc must still see zeros.
    // SAFETY: writes within the allocation.
    unsafe { std::ptr::write_bytes(f as *mut u8, 0xee, 9 * PAGE - 64) };
    release(f);
    let g = big(40);
    // SAFETY: writes within the allocation.
    unsafe { std::ptr::write_bytes(g as *mut u8, 0xee, 40 * PAGE - 64) };
    release(g);
    // SAFETY: calloc, then reads within it.
    unsafe {
        let z = calloc(1, 30 * PAGE) as *const u8;
        assert!(std::slice::from_raw_parts(z, 30 * PAGE)
            .iter()
            .all(|&x| x == 0));
        free(z as *mut c_void);
    }
}
