//! A collector's walk over the live heap: precise through typed fields,
//! conservative through untyped objects, unions, integers wide enough for a
//! pointer, byte buffers, thread stacks, thread-local storage and shared
//! libraries' data. Answers what is reachable, and so what leaked.
//!
//! # Roots
//!
//! - The program's globals and function statics (the `mcr_globals`
//!   descriptors), through the same per-type scan plans as heap objects.
//! - The thread-local variables (`__thread`) of every program thread, the
//!   same way (`thread_locals` finds them in each thread): precise, so a
//!   pointer a conservative scan would miss (not 8-aligned, in a packed
//!   struct) is followed. The TLS block is still scanned as a whole below.
//! - The stack of every program thread (`threads::all`). A thread blocked
//!   in a system call (`/proc/self/task/TID/syscall` gives its stack
//!   pointer) is scanned from its stack pointer (less the 128-byte red
//!   zone) to the top of its stack block, which on glibc also holds the
//!   thread's static TLS and descriptor; a thread that is running is
//!   scanned over its whole stack block, dead frames included (stale
//!   pointers there can make a leak look reachable). Live frames can hold
//!   stale words too (padding, unused spill slots): conservative stack
//!   scanning never promises more than "reachable or maybe reachable".
//!   **Registers are not scanned**: a pointer that a blocked thread keeps
//!   only in a callee-saved register (not spilled to its stack) is missed,
//!   and the object may be reported unreachable. The kernel keeps those
//!   registers outside the process; reading them needs ptrace, which a
//!   process cannot do to itself.
//! - The stacks of live threads the runtime does not know (made by code
//!   mcr-cc did not compile, through a library's own `pthread_create`),
//!   found in glibc's thread lists (below), scanned the same way.
//! - The static TLS block and descriptor of every live thread, found in
//!   glibc's thread lists the way debuggers find them (the `_thread_db_*`
//!   layout symbols libc exports for libthread_db): the main thread's TLS
//!   is not on its stack, and runtime threads' TLS holds the runtime's few
//!   objects in this heap (Rust's std allocates a thread's handle and its
//!   TLS-destructor list with `malloc`; glibc allocates each thread's
//!   dynamic TLS vector with it). Of threads that exited, whose stacks
//!   glibc caches, only the TLS vector is followed (it is reused with the
//!   stack); of runtime threads left behind by a `fork` (cached, never
//!   exited), the whole TLS. Without those symbols (another libc): the main
//!   thread's and the calling thread's TLS, with assumed sizes.
//! - Writable segments (data, bss, RELRO) of every shared object loaded,
//!   from the dynamic linker's list: libc's stdio buffers, `environ`, the
//!   dynamic linker's own allocations. The executable's own writable data
//!   is not scanned as a whole: its program globals are described
//!   precisely, the rest is the runtime's own state.
//!
//! Not roots, on purpose: the runtime's glibc heap (where this walk keeps
//! its own arrays holding the address of every object: scanning it would
//! make every leak look reachable), runtime threads' stack frames (they
//! hold addresses of objects the runtime looked at, leaked or not), free
//! heap slots. Not roots yet: anonymous mappings the program makes itself
//! (`mmap`), which the runtime does not record.
//!
//! Known false leak: in a forked child, the std thread handle and
//! TLS-destructor list of the parent's control thread (2 small untyped
//! objects) are orphaned once the child's own control thread reuses that
//! thread's cached stack; they show as `(uninstrumented)` leaks.
//!
//! # Objects
//!
//! The walk works on a snapshot of live objects, sorted by address, and
//! resolves a candidate pointer by binary search within its 64 KiB heap
//! page. Any pointer into an object (interior pointers included) keeps the
//! whole object alive. A typed object is scanned with its type's plan
//! (pointer fields precisely; unions, integers of 8 bytes or more and byte
//! arrays of 8 bytes or more conservatively, word by word at 8-byte
//! alignment), repeated for each element when the object holds several,
//! and any tail past the last whole element conservatively. Untyped objects
//! are scanned conservatively. Pointers stored at addresses that are not
//! multiples of 8 are not found.
//!
//! The program keeps running while the walk runs: counts are exact when
//! its threads are blocked, approximate otherwise. Memory that can vanish
//! under the walk (stacks, libraries' data) is read with
//! `process_vm_readv`, so a thread exiting meanwhile cannot fault it.

use super::scan_plan::{plan_of, Plan};
use super::trace_roots::*;
use crate::heap::{self, Object, Site};
use crate::{
    inspect::report, program::globals, program::sections, program::thread_locals, program::threads,
};
use mcr_types::protocol::{TraceReport, TraceRow};
use mcr_types::TypeDef;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Heap page size used to bucket the sorted objects for lookups.
const BUCKET_SHIFT: u32 = 16;
/// A multiplicative hasher for pointer-sized keys (sites).
#[derive(Default)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 ^ (n as u64 >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type PtrMap<V> = HashMap<usize, V, BuildHasherDefault<PtrHasher>>;

/// The object snapshot and its lookup structure.
struct Objects {
    objs: Vec<Object>,
    /// Lowest and highest (exclusive) address covered by an object.
    lo: u64,
    hi: u64,
    /// For each 64 KiB bucket from `lo`, the index of the first object
    /// starting at or after the bucket's start.
    first: Vec<u32>,
}

impl Objects {
    fn new(mut objs: Vec<Object>) -> Objects {
        if !objs.windows(2).all(|w| w[0].addr < w[1].addr) {
            objs.sort_unstable_by_key(|o| o.addr);
            objs.dedup_by_key(|o| o.addr);
        }
        let lo = objs.first().map_or(0, |o| o.addr as u64) & !((1 << BUCKET_SHIFT) - 1);
        let hi = objs
            .iter()
            .map(|o| (o.addr + o.size.max(1)) as u64)
            .max()
            .unwrap_or(0);
        let nb = if hi > lo {
            ((hi - lo) >> BUCKET_SHIFT) as usize + 2
        } else {
            1
        };
        let mut first = vec![0u32; nb];
        let mut i = 0usize;
        for (b, f) in first.iter_mut().enumerate() {
            let start = lo + ((b as u64) << BUCKET_SHIFT);
            while i < objs.len() && (objs[i].addr as u64) < start {
                i += 1;
            }
            *f = i as u32;
        }
        Objects {
            objs,
            lo,
            hi,
            first,
        }
    }

    /// Index of the object containing `p` (or starting at `p`, if empty).
    #[inline]
    fn lookup(&self, p: u64) -> Option<usize> {
        if p < self.lo || p >= self.hi {
            return None;
        }
        let b = ((p - self.lo) >> BUCKET_SHIFT) as usize;
        // The object is the last one starting at or before p: it starts in
        // this bucket or is the last one starting before it.
        let (s, e) = (self.first[b] as usize, self.first[b + 1] as usize);
        let in_bucket = &self.objs[s..e];
        let k = in_bucket.partition_point(|o| o.addr as u64 <= p);
        let i = if k > 0 {
            s + k - 1
        } else if s > 0 {
            s - 1
        } else {
            return None;
        };
        let o = &self.objs[i];
        let (a, n) = (o.addr as u64, o.size as u64);
        (p < a + n || (n == 0 && p == a)).then_some(i)
    }
}

struct Walker<'a> {
    o: Objects,
    /// Objects carved out of heap blocks by pool and slab allocators;
    /// index `i` here is `o.objs.len() + i` in `marked` and `work`.
    c: Objects,
    marked: Vec<bool>,
    work: Vec<u32>,
    idx: HashMap<&'a str, &'a TypeDef>,
    /// Scan plan per site; `None` = conservative.
    plans: PtrMap<Option<std::rc::Rc<Plan>>>,
    precise: u64,
    conservative: u64,
    /// Buffer for reads of memory that may vanish.
    buf: Vec<u64>,
}

impl Walker<'_> {
    #[inline]
    fn mark(&mut self, p: u64, precise: bool) {
        let n = self.o.objs.len();
        let i = match self.c.lookup(p) {
            Some(ci) => {
                // The block holding a live carved object is live too.
                if let Some(pi) = self.o.lookup(p) {
                    if !self.marked[pi] {
                        self.marked[pi] = true;
                        self.work.push(pi as u32);
                    }
                }
                n + ci
            }
            None => match self.o.lookup(p) {
                Some(i) => i,
                None => return,
            },
        };
        if precise {
            self.precise += 1;
        } else {
            self.conservative += 1;
        }
        if !self.marked[i] {
            self.marked[i] = true;
            self.work.push(i as u32);
        }
    }

    /// Scans `[a, a+len)` word by word (aligned words only).
    ///
    /// # Safety
    /// The range must be readable for the whole walk (heap objects, globals).
    unsafe fn scan_words(&mut self, a: u64, len: u64) {
        let mut w = (a + 7) & !7;
        let end = a + len;
        while w + 8 <= end {
            // SAFETY: inside readable memory, per the caller.
            let p = unsafe { (w as *const u64).read() };
            if p >= self.o.lo && p < self.o.hi {
                self.mark(p, false);
            }
            w += 8;
        }
    }

    /// Scans memory that may be unmapped meanwhile (another thread's stack,
    /// a library's data): copied first with `process_vm_readv`, which fails
    /// instead of faulting; unreadable pages are skipped.
    fn scan_foreign(&mut self, lo: u64, hi: u64) {
        const CHUNK: u64 = 64 * 1024;
        const PAGE: u64 = 4096;
        let mut a = (lo + 7) & !7;
        let hi = hi & !7;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize((CHUNK / 8) as usize, 0);
        while a < hi {
            // Up to a chunk, not crossing a chunk boundary, so a failure
            // costs at most one chunk of page-by-page retries.
            let n = (hi - a).min(CHUNK - (a % CHUNK)).max(8) & !7;
            let got = read_self(a, &mut buf[..(n / 8) as usize]);
            if got == n as usize {
                for &p in &buf[..(n / 8) as usize] {
                    if p >= self.o.lo && p < self.o.hi {
                        self.mark(p, false);
                    }
                }
                a += n;
                continue;
            }
            // Part is unreadable: go page by page.
            let end = a + n;
            while a < end {
                let m = (end - a).min(PAGE - (a % PAGE)).max(8) & !7;
                let got = read_self(a, &mut buf[..(m / 8) as usize]);
                for &p in &buf[..got / 8] {
                    if p >= self.o.lo && p < self.o.hi {
                        self.mark(p, false);
                    }
                }
                a += m;
            }
        }
        self.buf = buf;
    }

    /// Scans a thread's stack block: from its stack pointer up if it is
    /// blocked in a system call, else all of it.
    fn scan_stack(&mut self, (lo, hi): (usize, usize), tid: i32) {
        let (lo, hi) = (lo as u64, hi as u64);
        let from = match (tid > 0).then(|| blocked_sp(tid)).flatten() {
            Some(sp) if sp > lo && sp < hi => (sp - RED_ZONE as u64).max(lo),
            _ => lo,
        };
        self.scan_foreign(from, hi);
        self.drain();
    }

    fn plan_for_site(&mut self, site: *const Site) -> Option<std::rc::Rc<Plan>> {
        if let Some(p) = self.plans.get(&(site as usize)) {
            return p.clone();
        }
        let (_, _, ty) = report::describe_site(site);
        let plan = ty
            .as_deref()
            .and_then(|t| self.idx.get(t))
            .and_then(|t| plan_of(&self.idx, t))
            .map(std::rc::Rc::new);
        self.plans.insert(site as usize, plan.clone());
        plan
    }

    /// Scans `[addr, addr+size)` with a plan (`None`: conservatively).
    ///
    /// # Safety
    /// The range must be readable for the whole walk.
    unsafe fn scan_with(&mut self, plan: Option<&Plan>, addr: u64, size: u64) {
        let Some(plan) = plan.filter(|p| p.elem > 0) else {
            // SAFETY: per the caller.
            return unsafe { self.scan_words(addr, size) };
        };
        let n = size / plan.elem;
        for e in 0..n {
            let base = addr + e * plan.elem;
            for &off in &plan.ptrs {
                // SAFETY: a pointer field inside the range.
                let p = unsafe { ((base + off as u64) as *const u64).read_unaligned() };
                if p >= self.o.lo && p < self.o.hi {
                    self.mark(p, true);
                }
            }
            for &(off, len) in &plan.cons {
                // SAFETY: a part of the range.
                unsafe { self.scan_words(base + off as u64, len as u64) };
            }
        }
        // A tail beyond the whole elements (a flexible array, a payload).
        let rest = size - n * plan.elem;
        if rest >= 8 {
            // SAFETY: the end of the range.
            unsafe { self.scan_words(addr + n * plan.elem, rest) };
        }
    }

    fn object(&self, i: usize) -> Object {
        let n = self.o.objs.len();
        if i < n {
            self.o.objs[i]
        } else {
            self.c.objs[i - n]
        }
    }

    fn drain(&mut self) {
        while let Some(i) = self.work.pop() {
            let o = self.object(i as usize);
            let plan = self.plan_for_site(o.site);
            let (a, end) = (o.addr as u64, (o.addr + o.size) as u64);
            // Carved objects inside a heap block are scanned as themselves
            // when reached; the block's own bytes are what lies between.
            let mut k = if (i as usize) < self.o.objs.len() {
                self.c.objs.partition_point(|c| (c.addr as u64) < a)
            } else {
                self.c.objs.len()
            };
            if k >= self.c.objs.len() || self.c.objs[k].addr as u64 >= end {
                // SAFETY: a live object's bytes; the heap region is never
                // unmapped while the process runs, so even an object freed
                // meanwhile stays readable.
                unsafe { self.scan_with(plan.as_deref(), a, end - a) };
                continue;
            }
            let mut at = a;
            while k < self.c.objs.len() && (self.c.objs[k].addr as u64) < end {
                let c = self.c.objs[k];
                // SAFETY: a gap inside the live block.
                unsafe { self.scan_words(at, (c.addr as u64).saturating_sub(at)) };
                at = at.max((c.addr + c.size) as u64);
                k += 1;
            }
            // SAFETY: the rest of the block.
            unsafe { self.scan_words(at, end.saturating_sub(at)) };
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    reachable: u64,
    reachable_bytes: u64,
    unreachable: u64,
    unreachable_bytes: u64,
}

/// Walks from the roots and reports reachability per type and per site.
pub fn trace() -> TraceReport {
    let t0 = Instant::now();
    let map = sections::typemap();
    let mut idx: HashMap<&str, &TypeDef> = HashMap::new();
    for t in &map.types {
        idx.insert(t.name.as_str(), t);
        for a in &t.aliases {
            idx.entry(a.as_str()).or_insert(t);
        }
    }
    let mut objs = Vec::with_capacity(heap::stats().objects as usize + 1024);
    heap::for_each_live(|o| objs.push(o));
    let o = Objects::new(objs);
    let c = Objects::new(
        heap::carved::all()
            .into_iter()
            .map(|c| Object {
                addr: c.addr,
                size: c.size,
                site: c.site,
            })
            .collect(),
    );
    let n = o.objs.len() + c.objs.len();
    let mut w = Walker {
        o,
        c,
        marked: vec![false; n],
        work: Vec::new(),
        idx,
        plans: PtrMap::default(),
        precise: 0,
        conservative: 0,
        buf: Vec::new(),
    };

    // Roots: globals.
    for g in globals::all() {
        let plan = w.idx.get(g.type_name).and_then(|t| plan_of(&w.idx, t));
        // SAFETY: a live global of `size` bytes.
        unsafe { w.scan_with(plan.as_ref(), g.addr as u64, g.size as u64) };
    }
    w.drain();
    // Roots: every program thread's thread-local variables, typed. Copied
    // first: a thread can exit (and its TLS vanish) during the walk.
    let mut tls_roots = 0;
    for (_, vars) in thread_locals::per_thread() {
        for i in vars {
            let plan = w.idx.get(i.var.type_name).and_then(|t| plan_of(&w.idx, t));
            let mut copy = vec![0u64; i.var.size.div_ceil(8)];
            if read_self(i.addr as u64, &mut copy) < i.var.size {
                continue;
            }
            // SAFETY: our own copy of the variable's bytes.
            unsafe { w.scan_with(plan.as_ref(), copy.as_ptr() as u64, i.var.size as u64) };
            tls_roots += 1;
        }
    }
    w.drain();
    // Program threads' stacks (and, inside their stack blocks, their TLS).
    let mut main_alive = false;
    let mut stacks = Vec::new();
    for t in threads::all() {
        if !t.alive.load(Ordering::SeqCst) || t.stack.1 <= t.stack.0 {
            continue;
        }
        main_alive |= t.is_main;
        stacks.push(t.stack);
        w.scan_stack(t.stack, t.tid.load(Ordering::SeqCst));
    }
    let glibc = glibc_threads();
    // Threads the runtime does not know: made by code mcr-cc did not
    // compile (a library's own pthread_create). Their stacks are roots too.
    // Runtime threads (started like this one) are not.
    if let Some(g) = &glibc {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        let runtime_start = peek(me + g.start_off);
        let main_tp = MAIN_TP.load(Ordering::Relaxed);
        for &d in &g.live {
            let known = (main_alive && d == main_tp)
                || stacks.iter().any(|&(lo, hi)| d >= lo && d < hi)
                || peek(d + g.start_off) == runtime_start;
            if !known {
                if let Some(st) = stack_of(d) {
                    let tid = peek(d + g.tid_off).map_or(0, |t| t as u32 as i32);
                    w.scan_stack(st, tid);
                }
            }
        }
    }
    // Static TLS and descriptor of every live thread: the main thread's are
    // not on its stack, and runtime threads' hold the runtime's own objects
    // in this heap (their std::thread handles, glibc's TLS vectors).
    // Threads that exited keep only their TLS vector (glibc reuses it with
    // the cached stack).
    if let Some(g) = glibc {
        for &d in &g.live {
            w.scan_foreign((d - g.tls_below) as u64, (d + g.tcb) as u64);
        }
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        let runtime_start = peek(me + g.start_off);
        for &d in &g.cached {
            if runtime_start.is_some() && peek(d + g.start_off) == runtime_start {
                // A runtime thread (started like this one) that a fork left
                // behind without running its TLS destructors: what its TLS
                // holds is the runtime's, not a leak of the program.
                w.scan_foreign((d - g.tls_below) as u64, (d + g.tcb) as u64);
            } else if let Some(p) = peek(d + g.dtv_off) {
                w.mark(p as u64, false);
            }
        }
    } else {
        // Not glibc as we know it: the main thread and this one at least.
        let main_tp = MAIN_TP.load(Ordering::Relaxed);
        if main_alive && main_tp != 0 {
            w.scan_foreign(
                (main_tp - FALLBACK_TLS) as u64,
                (main_tp + FALLBACK_TCB) as u64,
            );
        }
        // SAFETY: pthread_self has no preconditions.
        let tp = unsafe { libc::pthread_self() } as usize;
        w.scan_foreign((tp - FALLBACK_TLS) as u64, (tp + FALLBACK_TCB) as u64);
    }
    w.drain();
    // Shared libraries' data and bss hold their own pointers into the heap.
    for (a, b) in library_data_ranges() {
        w.scan_foreign(a, b);
    }
    // Anonymous memory the program mapped itself is untyped memory of its own.
    for (a, len) in crate::program::mappings::all() {
        w.scan_foreign(a as u64, (a + len) as u64);
    }
    w.drain();

    // Tally per site, then per type.
    let mut by_site: PtrMap<Tally> = PtrMap::default();
    for (i, ob) in w.o.objs.iter().chain(w.c.objs.iter()).enumerate() {
        let t = by_site.entry(ob.site as usize).or_default();
        if w.marked[i] {
            t.reachable += 1;
            t.reachable_bytes += ob.size as u64;
        } else {
            t.unreachable += 1;
            t.unreachable_bytes += ob.size as u64;
        }
    }
    let mut rows: HashMap<String, TraceRow> = HashMap::new();
    let mut sites = Vec::new();
    let mut rep = TraceReport {
        objects: n as u64,
        ..Default::default()
    };
    for (site, t) in by_site {
        let (where_, function, ty) = report::describe_site(site as *const Site);
        let key = ty.clone().unwrap_or_else(|| format!("untyped @ {where_}"));
        let r = rows.entry(key.clone()).or_insert_with(|| TraceRow {
            what: key,
            ..Default::default()
        });
        add(r, &t);
        if t.unreachable > 0 && !r.leak_sites.contains(&where_) {
            r.leak_sites.push(where_.clone());
        }
        rep.reachable += t.reachable;
        rep.unreachable += t.unreachable;
        let mut s = TraceRow {
            what: where_,
            function: Some(function).filter(|f| !f.is_empty()),
            ty,
            ..Default::default()
        };
        add(&mut s, &t);
        sites.push(s);
    }
    rep.rows = rows.into_values().collect();
    for r in &mut rep.rows {
        r.leak_sites.sort();
    }
    sort_rows(&mut rep.rows);
    sort_rows(&mut sites);
    rep.sites = sites;
    rep.precise_edges = w.precise;
    rep.conservative_edges = w.conservative;
    rep.thread_locals = tls_roots;
    rep.millis = t0.elapsed().as_secs_f64() * 1e3;
    rep
}

fn add(r: &mut TraceRow, t: &Tally) {
    r.reachable += t.reachable;
    r.reachable_bytes += t.reachable_bytes;
    r.unreachable += t.unreachable;
    r.unreachable_bytes += t.unreachable_bytes;
}

/// Leaked bytes first, then all bytes, then name.
fn sort_rows(rows: &mut [TraceRow]) {
    rows.sort_by(|a, b| {
        b.unreachable_bytes
            .cmp(&a.unreachable_bytes)
            .then(
                (b.reachable_bytes + b.unreachable_bytes)
                    .cmp(&(a.reachable_bytes + a.unreachable_bytes)),
            )
            .then(a.what.cmp(&b.what))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(addr: usize, size: usize) -> Object {
        Object {
            addr,
            size,
            site: std::ptr::null(),
        }
    }

    #[test]
    fn lookup_resolves_interior_pointers_only() {
        let base = 0x7000_0000_0000usize;
        let o = Objects::new(vec![
            obj(base + 16, 32),
            obj(base + 64, 0),
            obj(base + 0x2_0010, 0x3_0000), // spans buckets
            obj(base + 0x6_0000, 8),
        ]);
        assert_eq!(o.lookup(base as u64), None);
        assert_eq!(o.lookup(base as u64 + 16), Some(0));
        assert_eq!(o.lookup(base as u64 + 47), Some(0));
        assert_eq!(o.lookup(base as u64 + 48), None);
        assert_eq!(o.lookup(base as u64 + 64), Some(1));
        assert_eq!(o.lookup(base as u64 + 65), None);
        assert_eq!(o.lookup(base as u64 + 0x2_0010), Some(2));
        assert_eq!(o.lookup(base as u64 + 0x4_0000), Some(2));
        assert_eq!(o.lookup(base as u64 + 0x5_0010), None);
        assert_eq!(o.lookup(base as u64 + 0x6_0007), Some(3));
        assert_eq!(o.lookup(base as u64 + 0x6_0008), None);
        assert_eq!(o.lookup(u64::MAX), None);
    }

    #[test]
    fn unsorted_snapshot_is_sorted() {
        let o = Objects::new(vec![obj(0x20_0000, 8), obj(0x10_0000, 8)]);
        assert_eq!(o.lookup(0x10_0004), Some(0));
        assert_eq!(o.lookup(0x20_0004), Some(1));
    }

    #[test]
    fn read_self_stops_at_unmapped_memory() {
        let v = [1u64, 2, 3, 4];
        let mut out = [0u64; 4];
        assert_eq!(read_self(v.as_ptr() as u64, &mut out), 32);
        assert_eq!(out, v);
        assert_eq!(read_self(8, &mut out), 0);
    }
}
