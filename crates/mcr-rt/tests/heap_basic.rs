//! The malloc family and typed entry points of the heap, called through
//! their C symbols (which also serve this test binary's own libc).

use mcr_rt::heap::{self, Site};
use std::ffi::c_void;
use std::ptr::null;

extern "C" {
    fn malloc(n: usize) -> *mut c_void;
    fn free(p: *mut c_void);
    fn calloc(n: usize, m: usize) -> *mut c_void;
    fn realloc(p: *mut c_void, n: usize) -> *mut c_void;
    fn reallocarray(p: *mut c_void, n: usize, m: usize) -> *mut c_void;
    fn posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> i32;
    fn aligned_alloc(align: usize, n: usize) -> *mut c_void;
    fn memalign(align: usize, n: usize) -> *mut c_void;
    fn valloc(n: usize) -> *mut c_void;
    fn pvalloc(n: usize) -> *mut c_void;
    fn malloc_usable_size(p: *mut c_void) -> usize;
    fn strdup(s: *const i8) -> *mut i8;
    fn __mcr_malloc(n: usize, site: *const Site) -> *mut c_void;
    fn __mcr_calloc(n: usize, m: usize, site: *const Site) -> *mut c_void;
    fn __mcr_realloc(p: *mut c_void, n: usize, site: *const Site) -> *mut c_void;
    fn __mcr_reallocarray(p: *mut c_void, n: usize, m: usize, site: *const Site) -> *mut c_void;
    fn __mcr_strdup(s: *const i8, site: *const Site) -> *mut i8;
    fn __mcr_strndup(s: *const i8, n: usize, site: *const Site) -> *mut i8;
    fn __mcr_posix_memalign(
        out: *mut *mut c_void,
        align: usize,
        n: usize,
        site: *const Site,
    ) -> i32;
    fn __mcr_aligned_alloc(align: usize, n: usize, site: *const Site) -> *mut c_void;
    fn __mcr_memalign(align: usize, n: usize, site: *const Site) -> *mut c_void;
    fn __mcr_valloc(n: usize, site: *const Site) -> *mut c_void;
    fn __mcr_retag(p: *mut c_void, site: *const Site) -> *mut c_void;
}

static SITE_A: Site = Site {
    key: 1,
    file: c"a.c".as_ptr(),
    function: c"f".as_ptr(),
    line: 10,
    flags: Site::TYPED,
    type_name: c"node".as_ptr(),
    elem_size: 24,
};
static SITE_B: Site = Site {
    key: 2,
    file: c"b.c".as_ptr(),
    function: c"g".as_ptr(),
    line: 20,
    flags: 0,
    type_name: std::ptr::null(),
    elem_size: 0,
};

fn in_region(p: *mut c_void) -> bool {
    let (b, l) = heap::region();
    (p as usize).wrapping_sub(b) < l
}

fn check(p: *mut c_void, size: usize, site: *const Site) {
    assert!(!p.is_null());
    assert!(in_region(p), "{p:?} not in heap region");
    let o = heap::find(p as usize).unwrap_or_else(|| panic!("no live object at {p:?} size {size}"));
    assert_eq!(o.addr, p as usize);
    assert_eq!(o.size, size);
    assert_eq!(o.site, site);
    // SAFETY: live allocation.
    assert!(unsafe { malloc_usable_size(p) } >= size);
}

const SIZES: &[usize] = &[
    0,
    1,
    7,
    8,
    15,
    16,
    17,
    24,
    100,
    240,
    241,
    1000,
    4096,
    10_000,
    32_752,
    32_753,
    40_000,
    65_536,
    100_000,
    1 << 20,
    5 << 20,
];

#[test]
fn heap_malloc_free_all_sizes() {
    for &n in SIZES {
        // SAFETY: C allocator calls with valid arguments.
        unsafe {
            let p = malloc(n);
            check(p, n, null());
            assert_eq!(p as usize % 16, 0);
            std::ptr::write_bytes(p as *mut u8, 0xab, n);
            let q = __mcr_malloc(n, &SITE_A);
            check(q, n, &SITE_A);
            assert_ne!(p, q);
            free(p);
            assert!(
                heap::find(p as usize).is_none()
                    || n == 0 && heap::find(p as usize).unwrap().addr != p as usize
            );
            free(q);
        }
    }
    // SAFETY: free(NULL) is a no-op.
    unsafe { free(std::ptr::null_mut()) };
}

#[test]
fn heap_calloc_zeroes_and_overflows() {
    for &n in SIZES {
        // SAFETY: C allocator calls; reads within the allocation.
        unsafe {
            // Dirty memory first so reuse would show.
            let d = malloc(n);
            std::ptr::write_bytes(d as *mut u8, 0xff, n);
            free(d);
            let p = calloc(1, n);
            check(p, n, null());
            assert!(std::slice::from_raw_parts(p as *const u8, n)
                .iter()
                .all(|&b| b == 0));
            free(p);
            let q = __mcr_calloc(n, 3, &SITE_B);
            check(q, n * 3, &SITE_B);
            assert!(std::slice::from_raw_parts(q as *const u8, 3 * n)
                .iter()
                .all(|&b| b == 0));
            free(q);
        }
    }
    // SAFETY: overflow must fail cleanly.
    unsafe {
        // black_box: LLVM may elide an allocation only compared with null.
        use std::hint::black_box as bb;
        assert!(bb(calloc(bb(usize::MAX / 2), 3)).is_null());
        assert!(bb(reallocarray(std::ptr::null_mut(), bb(usize::MAX / 2), 3)).is_null());
        assert!(bb(malloc(bb(usize::MAX - 8))).is_null());
        assert!(bb(malloc(bb(1 << 62))).is_null());
    }
}

#[test]
fn heap_realloc_grow_shrink_keeps_bytes() {
    // SAFETY: C allocator calls; accesses within the current size.
    unsafe {
        let mut p = __mcr_malloc(10, &SITE_A) as *mut u8;
        for i in 0..10 {
            *p.add(i) = i as u8;
        }
        let mut size = 10;
        for &n in &[
            20usize,
            200,
            5000,
            40_000,
            300_000,
            2 << 20,
            70_000,
            1000,
            33,
            3,
            100_000,
            5,
        ] {
            let q = realloc(p as *mut c_void, n) as *mut u8;
            // Plain realloc keeps the site.
            check(q as *mut c_void, n, &SITE_A);
            for i in 0..size.min(n).min(10) {
                assert_eq!(*q.add(i), i as u8, "byte {i} after realloc {size} -> {n}");
            }
            for i in 10.min(n)..n {
                *q.add(i) = 0x5a;
            }
            p = q;
            size = n;
        }
        let q = __mcr_realloc(p as *mut c_void, 64, &SITE_B);
        check(q, 64, &SITE_B);
        let r = __mcr_reallocarray(q, 4, 32, &SITE_A);
        check(r, 128, &SITE_A);
        assert!(realloc(r, 0).is_null());
        let n = realloc(std::ptr::null_mut(), 77);
        check(n, 77, null());
        free(n);
    }
}

#[test]
fn heap_aligned_entry_points() {
    let mut aligns = vec![
        8usize,
        16,
        32,
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
        65536,
        1 << 20,
    ];
    aligns.dedup();
    for &a in &aligns {
        for &n in &[0usize, 1, 24, 100, 3000, 40_000, 200_000] {
            // SAFETY: C allocator calls with valid arguments.
            unsafe {
                let mut p = std::ptr::null_mut();
                assert_eq!(posix_memalign(&mut p, a, n), 0);
                check(p, n, null());
                assert_eq!(p as usize % a, 0, "posix_memalign({a}, {n})");
                std::ptr::write_bytes(p as *mut u8, 1, n);
                free(p);
                let p = aligned_alloc(a, n);
                check(p, n, null());
                assert_eq!(p as usize % a, 0);
                free(p);
                let p = memalign(a, n);
                check(p, n, null());
                assert_eq!(p as usize % a, 0);
                // realloc of an aligned block
                let q = realloc(p, n + 10);
                check(q, n + 10, null());
                free(q);
                let mut p = std::ptr::null_mut();
                assert_eq!(__mcr_posix_memalign(&mut p, a.max(8), n, &SITE_A), 0);
                check(p, n, &SITE_A);
                assert_eq!(p as usize % a, 0);
                // interior pointer of an aligned object
                if n > 1 {
                    assert_eq!(heap::find(p as usize + n - 1).unwrap().addr, p as usize);
                }
                free(p);
                let p = __mcr_aligned_alloc(a, n, &SITE_B);
                check(p, n, &SITE_B);
                assert_eq!(p as usize % a, 0);
                free(p);
                let p = __mcr_memalign(a, n, &SITE_B);
                check(p, n, &SITE_B);
                assert_eq!(p as usize % a, 0);
                free(p);
            }
        }
    }
    // SAFETY: invalid alignments fail cleanly.
    unsafe {
        let mut p = std::ptr::null_mut();
        assert_eq!(posix_memalign(&mut p, 24, 10), libc::EINVAL);
        assert_eq!(posix_memalign(&mut p, 4, 10), libc::EINVAL);
        let v = valloc(10);
        check(v, 10, null());
        assert_eq!(v as usize % 4096, 0);
        free(v);
        let v = pvalloc(10);
        check(v, 4096, null());
        assert_eq!(v as usize % 4096, 0);
        free(v);
        let v = __mcr_valloc(5000, &SITE_A);
        check(v, 5000, &SITE_A);
        assert_eq!(v as usize % 4096, 0);
        free(v);
    }
}

#[test]
fn heap_strdup_and_retag() {
    // SAFETY: C string calls on NUL-terminated strings.
    unsafe {
        let s = __mcr_strdup(c"hello".as_ptr(), &SITE_A);
        check(s as *mut c_void, 6, &SITE_A);
        assert_eq!(std::ffi::CStr::from_ptr(s), c"hello");
        let t = __mcr_strndup(c"hello".as_ptr(), 3, &SITE_B);
        check(t as *mut c_void, 4, &SITE_B);
        assert_eq!(std::ffi::CStr::from_ptr(t), c"hel");
        // libc's own strdup comes through our malloc, untyped.
        let u = strdup(c"world".as_ptr());
        check(u as *mut c_void, 6, null());
        assert_eq!(__mcr_retag(u as *mut c_void, &SITE_B), u as *mut c_void);
        check(u as *mut c_void, 6, &SITE_B);
        assert!(__mcr_retag(std::ptr::null_mut(), &SITE_B).is_null());
        let mut x = 5u64;
        let xp = &mut x as *mut u64 as *mut c_void;
        assert_eq!(__mcr_retag(xp, &SITE_B), xp);
        free(s as *mut c_void);
        free(t as *mut c_void);
        free(u as *mut c_void);
    }
}

#[test]
fn heap_find_interior_and_set_site() {
    // SAFETY: C allocator calls.
    unsafe {
        for &n in &[1usize, 24, 1000, 30_000, 100_000, 3 << 20] {
            let p = __mcr_malloc(n, &SITE_A) as usize;
            for off in [0, n / 2, n - 1] {
                let o = heap::find(p + off).unwrap();
                assert_eq!((o.addr, o.size, o.site), (p, n, &SITE_A as *const Site));
            }
            assert!(
                heap::find(p + n).is_none_or(|o| o.addr != p),
                "one past the end"
            );
            assert!(heap::find(p - 1).is_none_or(|o| o.addr != p));
            assert!(heap::set_site(p + n / 2, &SITE_B));
            assert_eq!(heap::find(p).unwrap().site, &SITE_B as *const Site);
            assert!(!heap::is_inherited(p));
            free(p as *mut c_void);
            assert!(heap::find(p).is_none_or(|o| o.addr != p));
            assert!(!heap::set_site(p, &SITE_B) || heap::find(p).is_some());
        }
        let x = 0u64;
        assert!(heap::find(&x as *const u64 as usize).is_none());
        assert!(heap::find(0).is_none());
        assert!(heap::find(usize::MAX).is_none());
        let (b, l) = heap::region();
        assert!(heap::find(b).is_none(), "region header is no object");
        assert!(heap::find(b + l - 1).is_none());
    }
}

/// An object the state transfer keeps at its address and converts to a
/// larger layout: it may take its slot's usable bytes, no more, and its
/// header then reports the new size and site.
#[test]
fn heap_resize_in_place_within_usable_size() {
    // SAFETY: C allocator calls; writes within the usable size.
    unsafe {
        let p = __mcr_malloc(40, &SITE_B);
        let room = heap::usable_size(p as usize);
        assert_eq!(room, malloc_usable_size(p));
        assert!(room >= 40);
        assert!(!heap::resize_in_place(p as usize, room + 1, &SITE_A));
        check(p, 40, &SITE_B);
        assert!(!heap::resize_in_place(p as usize + 8, 40, &SITE_A));
        assert!(heap::resize_in_place(p as usize, room, &SITE_A));
        check(p, room, &SITE_A);
        std::ptr::write_bytes(p as *mut u8, 7, room);
        assert_eq!(
            heap::find(p as usize + room - 1).map(|o| o.addr),
            Some(p as usize)
        );
        assert!(heap::resize_in_place(p as usize, 8, &SITE_B));
        check(p, 8, &SITE_B);
        assert_eq!(heap::usable_size(p as usize), room);
        free(p);
    }
}
