//! Objects the program's own pool and slab allocators carve out of heap
//! blocks (mcr.toml `[allocators.NAME] kind = "pool" | "slab"`): nginx's
//! `ngx_palloc` hands out pieces of a pool's block, memcached's
//! `slabs_alloc` items of a 1 MiB slab page. The heap sees one untyped
//! block; the pass tells the runtime, after each such call, the piece's
//! address, size and call site (`__mcr_carve`), and before each declared
//! free (`__mcr_uncarve`) or pool release (`__mcr_carve_release`).
//!
//! The index is an ordered map from start address to (size, site), under
//! one futex lock (taken around `fork` with the heap's locks), in the
//! runtime's own glibc memory. Carved objects never overlap: a new carve
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
use super::layout::W_CARVED;
use super::site::Site;
use super::sync::Locked;
use std::collections::BTreeMap;
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

#[derive(Clone, Copy)]
pub(super) struct Entry {
    size: usize,
    site: usize,
}

pub(super) static INDEX: Locked<BTreeMap<usize, Entry>> = Locked::new(BTreeMap::new());
/// Entries in the index: 0 lets lookups skip the lock.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Carves that were not inside a heap object (not recorded).
static OUTSIDE: AtomicU64 = AtomicU64::new(0);

/// Removes every entry overlapping `[a, a + len)` (`len` 0 counts as 1).
fn evict(m: &mut BTreeMap<usize, Entry>, a: usize, len: usize) {
    let end = a + len.max(1);
    while let Some((&s, e)) = m.range(..end).next_back() {
        if s + e.size.max(1) <= a {
            break;
        }
        m.remove(&s);
        COUNT.fetch_sub(1, Ordering::Relaxed);
    }
}

fn insert(m: &mut BTreeMap<usize, Entry>, addr: usize, size: usize, site: usize) {
    evict(m, addr, size);
    m.insert(addr, Entry { size, site });
    COUNT.fetch_add(1, Ordering::Relaxed);
}

/// Records `[p, p + size)` as an object of `site` carved from the heap
/// block holding it.
pub fn carve(p: usize, size: usize, site: *const Site) {
    if p == 0 {
        return;
    }
    let Some(parent) = find_heap(p) else {
        OUTSIDE.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if p + size > parent.addr + parent.size {
        OUTSIDE.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if p == parent.addr && size == parent.size {
        super::api::set_site(p, site);
        return;
    }
    super::api::set_header_flag(parent.addr, W_CARVED);
    INDEX.with(|m| insert(m, p, size, site as usize));
}

/// The object carved at exactly `p` was given back to its allocator.
pub fn uncarve(p: usize) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    INDEX.with(|m| {
        if m.remove(&p).is_some() {
            COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    });
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
    INDEX.with(|m| {
        let keys: Vec<usize> = m.range(a..a + len).map(|(&k, _)| k).collect();
        for k in keys {
            m.remove(&k);
            COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    });
}

/// The carved object containing `addr` (or starting at it, if empty).
pub fn find(addr: usize) -> Option<Carved> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    INDEX.with(|m| {
        let (&a, e) = m.range(..=addr).next_back()?;
        (addr < a + e.size || (e.size == 0 && addr == a)).then_some(Carved {
            addr: a,
            size: e.size,
            site: e.site as *const Site,
        })
    })
}

/// Every carved object, in address order (a copy: the program keeps
/// running).
pub fn all() -> Vec<Carved> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return Vec::new();
    }
    INDEX.with(|m| {
        m.iter()
            .map(|(&a, e)| Carved {
                addr: a,
                size: e.size,
                site: e.site as *const Site,
            })
            .collect()
    })
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
    INDEX.with(|m| {
        for c in objs {
            if let Some(parent) = find_heap(c.addr) {
                super::api::set_header_flag(parent.addr, W_CARVED);
                insert(m, c.addr, c.size, c.site as usize);
            }
        }
    });
}

/// Sets the site of the carved object starting at `addr`.
pub fn set_site(addr: usize, site: *const Site) {
    INDEX.with(|m| {
        if let Some(e) = m.get_mut(&addr) {
            e.site = site as usize;
        }
    });
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
