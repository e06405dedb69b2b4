//! fork: the child gets a consistent heap even when other threads were
//! allocating at the moment of the fork.

use mcr_rt::heap::{self, Site};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    fn free(p: *mut c_void);
    fn malloc(n: usize) -> *mut c_void;
    fn __mcr_malloc(n: usize, site: *const Site) -> *mut c_void;
}

static S: Site = Site {
    key: 7,
    file: std::ptr::null(),
    function: std::ptr::null(),
    line: 0,
    flags: 0,
    type_name: std::ptr::null(),
    elem_size: 0,
};

fn count() -> usize {
    let mut n = 0;
    heap::for_each_live(|o| n += std::ptr::eq(o.site, &S) as usize);
    n
}

/// Child body: returns an exit code (0 = all good).
fn child(objs: &[(usize, usize)]) -> i32 {
    if count() != objs.len() {
        return 2;
    }
    for &(p, n) in objs {
        match heap::find(p) {
            Some(o) if o.size == n && o.addr == p => {}
            _ => return 3,
        }
        // SAFETY: live allocation of n bytes filled with its size's low byte.
        let ok = unsafe { std::slice::from_raw_parts(p as *const u8, n) }
            .iter()
            .all(|&b| b == n as u8);
        if !ok {
            return 4;
        }
    }
    // The allocator works in the child, from several threads.
    let hs: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                for i in 0..20_000 {
                    // SAFETY: allocator calls.
                    unsafe {
                        let p = malloc(i % 3000);
                        free(p);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        if h.join().is_err() {
            return 5;
        }
    }
    for &(p, _) in objs {
        // SAFETY: live allocation.
        unsafe { free(p as *mut c_void) };
    }
    if count() != 0 {
        return 6;
    }
    0
}

#[test]
fn heap_fork_child_is_consistent() {
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        // Background churn so that fork lands while locks are in use.
        for _ in 0..2 {
            sc.spawn(|| {
                let mut v = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..200 {
                        // SAFETY: allocator call.
                        v.push(unsafe { malloc((i * 97) % 40_000) });
                    }
                    for p in v.drain(..) {
                        // SAFETY: live allocation.
                        unsafe { free(p) };
                    }
                }
            });
        }
        let mut objs = Vec::new();
        for i in 0..300usize {
            let n = (i * 131) % 5000 + 1;
            // SAFETY: allocator call, then writes within it.
            let p = unsafe { __mcr_malloc(n, &S) } as usize;
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(p as *mut u8, n as u8, n) };
            objs.push((p, n));
        }
        for round in 0..20 {
            // SAFETY: fork; the child only runs `child` and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let code = child(&objs);
                // SAFETY: leave the child without running the harness.
                unsafe { libc::_exit(code) };
            }
            let mut status = 0;
            // SAFETY: waiting for our child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status),
                "round {round}: child died: {status:#x}"
            );
            assert_eq!(libc::WEXITSTATUS(status), 0, "round {round}");
        }
        assert_eq!(count(), objs.len());
        for (p, _) in objs {
            // SAFETY: live allocation.
            unsafe { free(p as *mut c_void) };
        }
        stop.store(true, Ordering::Relaxed);
    });
}
