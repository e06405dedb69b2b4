//! malloc+free through the typed heap against glibc's allocator, side by
//! side in one run: single-threaded, and two threads at once (per-pair time
//! of each thread). Target (issue 3): at most +20 ns per pair over glibc.
//!
//! `cargo bench -p mcr-rt --bench heap`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mcr_rt::heap;
use std::ffi::c_void;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

extern "C" {
    fn __libc_malloc(n: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
}

type Alloc = (
    &'static str,
    fn(usize) -> *mut c_void,
    unsafe fn(*mut c_void),
);

fn mcr_malloc(n: usize) -> *mut c_void {
    heap::malloc(n)
}
unsafe fn mcr_free(p: *mut c_void) {
    // SAFETY: caller passes a live allocation.
    unsafe { heap::free(p) }
}
fn glibc_malloc(n: usize) -> *mut c_void {
    // SAFETY: plain glibc call.
    unsafe { __libc_malloc(n) }
}
unsafe fn glibc_free(p: *mut c_void) {
    // SAFETY: caller passes a live glibc allocation.
    unsafe { __libc_free(p) }
}

const ALLOCS: [Alloc; 2] = [
    ("glibc", glibc_malloc, glibc_free),
    ("mcr", mcr_malloc, mcr_free),
];

/// `iters` pairs of `size`, or `iters / batch` rounds of `batch` mallocs
/// followed by their frees.
fn work(a: &Alloc, size: usize, batch: usize, iters: u64) {
    let mut v = [std::ptr::null_mut(); 128];
    let rounds = iters.div_ceil(batch as u64);
    for _ in 0..rounds {
        for slot in v.iter_mut().take(batch) {
            *slot = black_box((a.1)(black_box(size)));
        }
        for &p in v.iter().take(batch) {
            // SAFETY: allocated just above.
            unsafe { (a.2)(p) };
        }
    }
}

fn threaded(a: &Alloc, threads: usize, size: usize, batch: usize, iters: u64) -> Duration {
    if threads == 1 {
        let t = Instant::now();
        work(a, size, batch, iters);
        return t.elapsed();
    }
    let bar = Barrier::new(threads);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    work(a, size, batch, 64); // warm the thread's cache
                    bar.wait();
                    let t = Instant::now();
                    work(a, size, batch, iters);
                    t.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Per-pair time of one thread: the slowest thread's total.
    times.into_iter().max().unwrap()
}

fn bench(c: &mut Criterion) {
    for threads in [1usize, 2] {
        for (size, batch) in [(64usize, 1usize), (24, 100), (700, 100), (4000, 1)] {
            let mut g = c.benchmark_group(format!("pair/{threads}t/size{size}/batch{batch}"));
            g.measurement_time(Duration::from_secs(2));
            g.warm_up_time(Duration::from_millis(500));
            for a in &ALLOCS {
                g.bench_with_input(BenchmarkId::from_parameter(a.0), a, |b, a| {
                    b.iter_custom(|iters| threaded(a, threads, size, batch, iters))
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
