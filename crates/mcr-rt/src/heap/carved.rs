//! Objects the program's own pool and slab allocators carve out of heap
//! blocks (mcr.toml `[allocators.NAME] kind = "pool" | "slab"`): nginx's
//! `ngx_palloc` hands out pieces of a pool's block, memcached's
//! `slabs_alloc` items of a 1 MiB slab page. The heap sees one untyped
//! block; the pass tells the runtime, after each such call, the piece's
//! address, size and call site (`__mcr_carve`), and before each declared
//! free (`__mcr_uncarve`) or pool release (`__mcr_carve_release`).
//!
//! The index (`carve_index`: intervals bucketed by 4 KiB of address space)
//! is under one futex lock (taken around `fork` with the heap's locks), in
//! the runtime's own glibc memory. Carved objects never overlap: a new carve
//! evicts whatever it overlaps, so an allocator that recycles memory
//! without telling us (a pool reset, a slab page moved to another class)
//! leaves no stale object behind once the memory is handed out again.
//! A heap block that holds carved objects has `W_CARVED` in its header,
//! so freeing it drops them (the pool is gone) at the cost of one bit test
//! on every `free`; a program that declares no such allocator pays nothing
//! else.
//!
//! A carve that covers a whole heap object (a pool's "large" allocation
//! served straight from `malloc`) just types that object. A carve outside
//! the heap (a block the allocator mapped itself) is not recorded: it
//! stays part of untyped memory.
//!
//! The index is not in the heap image: the checkpoint carries it (see
//! `checkpoint::State::carved`) and the new version rebuilds it.

use super::api::find as find_heap;
use super::carve_index::{Index, Obj};
use super::layout::W_CARVED;
use super::site::Site;
use super::sync::Locked;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A live carved object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carved {
    pub addr: usize,
    pub size: usize,
    /// The carving call's site (as for heap objects, possibly an old
    /// binary's descriptor right after an update: never dereferenced here).
    pub site: *const Site,
}

impl From<Obj> for Carved {
    fn from(o: Obj) -> Carved {
        Carved {
            addr: o.addr,
            size: o.size,
            site: o.site as *const Site,
        }
    }
}

pub(super) static INDEX: Locked<Index> = Locked::new(Index::new());
/// Entries in the index, mirrored outside the lock: 0 lets every entry
/// point skip it.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Carves that were not inside a heap object (not recorded).
static OUTSIDE: AtomicU64 = AtomicU64::new(0);

fn with_index<R>(f: impl FnOnce(&mut Index) -> R) -> R {
    INDEX.with(|ix| {
        let r = f(ix);
        COUNT.store(ix.len(), Ordering::Relaxed);
        r
    })
}

/// Records `[p, p + size)` as an object of `site` carved from the heap
/// block holding it.
pub fn carve(p: usize, size: usize, site: *const Site) {
    if p == 0 {
        return;
    }
    let Some(parent) = super::api::find_and_flag(p, W_CARVED) else {
        OUTSIDE.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if p + size > parent.addr + parent.size {
        OUTSIDE.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if p == parent.addr && size == parent.size {
        // A whole heap object: typed, not nested (the flag is harmless).
        super::api::set_site(p, site);
        return;
    }
    with_index(|ix| {
        ix.insert(Obj {
            addr: p,
            size,
            site: site as usize,
        })
    });
}

/// The object carved at exactly `p` was given back to its allocator.
pub fn uncarve(p: usize) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    with_index(|ix| ix.remove(p));
}

/// Every object carved from the heap block holding `p` is dead (a pool
/// reset or destroyed through a declared release function).
pub fn release(p: usize) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(parent) = find_heap(p) {
        drop_within(parent.addr, parent.size);
    }
}

/// Drops the carved objects starting inside `[a, a + len)`: the heap block
/// there was freed or shrunk.
#[cold]
pub(super) fn drop_within(a: usize, len: usize) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    with_index(|ix| ix.drop_within(a, len));
}

/// The carved object containing `addr` (or starting at it, if empty).
pub fn find(addr: usize) -> Option<Carved> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    INDEX.with(|ix| ix.containing(addr).map(Carved::from))
}

/// Every carved object, in address order (a copy: the program keeps
/// running).
pub fn all() -> Vec<Carved> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return Vec::new();
    }
    INDEX.with(|ix| ix.all().into_iter().map(Carved::from).collect())
}

/// Number of carved objects, and of carves outside the heap (ignored).
pub fn counts() -> (usize, u64) {
    (
        COUNT.load(Ordering::Relaxed),
        OUTSIDE.load(Ordering::Relaxed),
    )
}

/// Records carved objects inherited from the old version (their blocks
/// came with the heap image), with their sites translated.
pub fn restore(objs: impl IntoIterator<Item = Carved>) {
    with_index(|ix| {
        for c in objs {
            if let Some(parent) = find_heap(c.addr) {
                super::api::set_header_flag(parent.addr, W_CARVED);
                ix.insert(Obj {
                    addr: c.addr,
                    size: c.size,
                    site: c.site as usize,
                });
            }
        }
    });
}

/// Sets the site of the carved object starting at `addr`.
pub fn set_site(addr: usize, site: *const Site) {
    with_index(|ix| ix.set_site(addr, site as usize));
}

/// After a call to a pool or slab allocator (docs/ABI.md): `p` is an
/// object of `size` bytes of `site` inside memory the allocator owns.
/// Returns `p`.
#[no_mangle]
pub extern "C" fn __mcr_carve(p: *mut c_void, size: usize, site: *const Site) -> *mut c_void {
    carve(p as usize, size, site);
    p
}

/// Before a call to a slab allocator's declared free function.
#[no_mangle]
pub extern "C" fn __mcr_uncarve(p: *mut c_void) -> *mut c_void {
    uncarve(p as usize);
    p
}

/// Before a call to a pool's declared release function (reset, destroy).
#[no_mangle]
pub extern "C" fn __mcr_carve_release(p: *mut c_void) -> *mut c_void {
    release(p as usize);
    p
}
