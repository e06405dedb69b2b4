//! Concurrency: objects allocated on one thread and freed on another,
//! with a concurrent enumerator, and exact per-site counts afterwards.

use mcr_rt::heap::{self, Site};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

extern "C" {
    fn free(p: *mut c_void);
    fn __mcr_malloc(n: usize, site: *const Site) -> *mut c_void;
    fn __mcr_calloc(n: usize, m: usize, site: *const Site) -> *mut c_void;
    fn __mcr_realloc(p: *mut c_void, n: usize, site: *const Site) -> *mut c_void;
}

const fn site(key: u64) -> Site {
    Site {
        key,
        file: std::ptr::null(),
        function: std::ptr::null(),
        line: 0,
        flags: 0,
        type_name: std::ptr::null(),
        elem_size: 0,
    }
}

static KEEP: Site = site(100);
static PASS: Site = site(101);

fn count_site(s: &Site) -> (usize, usize) {
    let mut n = 0;
    let mut b = 0;
    heap::for_each_live(|o| {
        if std::ptr::eq(o.site, s) {
            n += 1;
            b += o.size;
        }
    });
    (n, b)
}

/// xorshift, so sizes vary without a dependency.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn size_for(r: u64) -> usize {
    match r % 100 {
        0 => (r >> 8) as usize % 300_000,
        1..=9 => (r >> 8) as usize % 20_000,
        _ => (r >> 8) as usize % 256,
    }
}

#[test]
fn heap_cross_thread_free_and_concurrent_walk() {
    let (tx, rx) = mpsc::sync_channel::<(usize, usize, u8)>(1024);
    let stop = AtomicBool::new(false);
    /// Stops the walker even when an assertion below panics (else the
    /// scope would wait for it forever).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|sc| {
        // Walker: enumerates while everything runs; must not crash.
        sc.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let mut n = 0usize;
                heap::for_each_live(|o| {
                    n += 1;
                    let _ = heap::find(o.addr);
                });
                assert!(n > 0);
                let _ = heap::stats();
            }
        });
        // Consumer: checks bytes and frees what others allocated.
        let consumer = sc.spawn(move || {
            let mut freed = 0usize;
            for (p, n, tag) in rx {
                // SAFETY: p is a live allocation of n bytes filled with tag.
                unsafe {
                    let s = std::slice::from_raw_parts(p as *const u8, n);
                    assert!(s.iter().all(|&b| b == tag), "corrupted object");
                    let o = heap::find(p).unwrap();
                    assert_eq!((o.addr, o.size), (p, n));
                    free(p as *mut c_void);
                }
                freed += 1;
            }
            freed
        });
        let _stop = Stop(&stop);
        let producers: Vec<_> = (0..2u64)
            .map(|t| {
                let tx = tx.clone();
                sc.spawn(move || {
                    let mut st = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                    let mut local = Vec::new();
                    for i in 0..40_000u64 {
                        let r = rng(&mut st);
                        let n = size_for(r);
                        let tag = (r >> 40) as u8;
                        // SAFETY: allocator calls; writes within the object.
                        unsafe {
                            let p = if i % 7 == 0 {
                                let p = __mcr_calloc(1, n, &PASS) as *mut u8;
                                assert!(std::slice::from_raw_parts(p, n).iter().all(|&b| b == 0));
                                p
                            } else {
                                __mcr_malloc(n, &PASS) as *mut u8
                            };
                            assert!(!p.is_null());
                            std::ptr::write_bytes(p, tag, n);
                            if i % 3 == 0 {
                                // Some die on this thread, some after a realloc.
                                local.push((p as usize, n, tag));
                                if local.len() > 64 {
                                    let (q, m, tg) = local.swap_remove((r % 64) as usize);
                                    let q =
                                        __mcr_realloc(q as *mut c_void, m + 10, &PASS) as *mut u8;
                                    assert!(std::slice::from_raw_parts(q, m)
                                        .iter()
                                        .all(|&b| b == tg));
                                    free(q as *mut c_void);
                                }
                            } else {
                                tx.send((p as usize, n, tag)).unwrap();
                            }
                        }
                    }
                    for (p, _, _) in local {
                        // SAFETY: live allocation.
                        unsafe { free(p as *mut c_void) };
                    }
                })
            })
            .collect();
        drop(tx);
        for p in producers {
            p.join().unwrap();
        }
        let freed = consumer.join().unwrap();
        assert!(freed > 40_000);
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(count_site(&PASS), (0, 0), "every PASS object was freed");
}

#[test]
fn heap_enumerate_exact_counts_and_stats() {
    let before = heap::stats();
    let mut ptrs = Vec::new();
    let mut bytes = 0;
    for i in 0..5000usize {
        let n = (i * 37) % 3000 + if i % 500 == 0 { 100_000 } else { 0 };
        // SAFETY: allocator call.
        let p = unsafe { __mcr_malloc(n, &KEEP) };
        ptrs.push(p);
        bytes += n;
    }
    assert_eq!(count_site(&KEEP), (5000, bytes));
    let mid = heap::stats();
    // Other tests run concurrently: only a lower bound is certain.
    assert!(mid.objects + 10_000 >= before.objects + 5000 || mid.objects >= 5000);
    assert!(mid.mapped_bytes as usize >= bytes);
    // Addresses are visited in increasing order.
    let mut last = 0;
    heap::for_each_live(|o| {
        assert!(o.addr > last || last == 0);
        last = o.addr;
    });
    for (i, p) in ptrs.iter().enumerate() {
        if i % 2 == 0 {
            // SAFETY: live allocation.
            unsafe { free(*p) };
        }
    }
    assert_eq!(count_site(&KEEP).0, 2500);
    for (i, p) in ptrs.iter().enumerate() {
        if i % 2 == 1 {
            // SAFETY: live allocation.
            unsafe { free(*p) };
        }
    }
    assert_eq!(count_site(&KEEP), (0, 0));
}

#[test]
fn heap_threads_exit_and_stats_balance() {
    // Threads that allocate and exit: their caches are flushed and their
    // counters kept; net effect of balanced work on the totals is zero.
    static S: Site = site(102);
    let hs: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                let v: Vec<usize> = (0..2000)
                    // SAFETY: allocator call.
                    .map(|i| unsafe { __mcr_malloc(i % 500, &S) } as usize)
                    .collect();
                for p in v {
                    // SAFETY: live allocation.
                    unsafe { free(p as *mut c_void) };
                }
                // SAFETY: allocator call; kept live on purpose.
                unsafe { __mcr_malloc(7, &S) as usize }
            })
        })
        .collect();
    let kept: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(count_site(&S), (8, 56));
    for p in kept {
        // SAFETY: live allocation, freed by another thread than its allocator.
        unsafe { free(p as *mut c_void) };
    }
    assert_eq!(count_site(&S), (0, 0));
}
