//! Mutable tracing and state transfer, run in the new version at its main
//! thread's first quiescent point with every other thread parked.
//!
//! The old heap is already here, at its old addresses (heap image). An old
//! object whose type kept its layout, or whose type is unknown, stays where
//! it is; one whose type changed is re-allocated in the new layout and every
//! precise pointer to it is rewritten. Pointers into the old binary (globals,
//! functions) are rewritten through names. A changed object that a hidden
//! reference (untyped memory, an integer, a char buffer, a union) holds
//! keeps its address and is converted in place when it fits (`pinned`);
//! otherwise the update is refused.

use crate::checkpoint::{from_hex, State};
use crate::heap::{self, Site};
use crate::snapshot::StartupObject;
use crate::{globals, sections, thread_locals};
use mcr_types::plan::{pointer_slots, PlanError, Versions};
use mcr_types::protocol::UpdateReport;
use mcr_types::{TypeDef, TypeKind, TypeMap};
use std::collections::HashMap;

mod carved;
mod global_values;
mod interior;
mod pinned;

#[derive(Debug)]
pub enum TransferError {
    Plan(PlanError),
    Alloc(u64),
    MovedReferencedFromUntyped {
        ty: String,
        from_site: String,
        /// The byte of the old object the reference names.
        at: u64,
    },
    FunctionGone(String),
    GlobalGone(String),
    StaticReferencedFromUntyped {
        from_site: String,
    },
    Hook(String),
    WorkerDangling {
        what: String,
    },
    CarvedGrows {
        ty: String,
        old_size: u64,
        new_size: u64,
        allocator: String,
        site: String,
    },
    Pinned(pinned::PinError),
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::Plan(e) => write!(f, "{e}"),
            TransferError::Alloc(n) => write!(f, "out of memory allocating {n} bytes"),
            TransferError::MovedReferencedFromUntyped { ty, from_site, at } => write!(
                f,
                "an object of `{ty}` changes layout but {from_site} points to byte {at} of it"
            ),
            TransferError::FunctionGone(n) => write!(f, "function `{n}` is referenced by the state but gone in the new version"),
            TransferError::StaticReferencedFromUntyped { from_site } => write!(
                f,
                "untyped memory allocated at {from_site} points into the old binary (MCR_STRICT_CONSERVATIVE)"
            ),
            TransferError::WorkerDangling { what } => write!(
                f,
                "a worker's {what} points to an object of its heap that is not carried (memory of a library, or a start-up object without a counterpart)"
            ),
            TransferError::GlobalGone(n) => write!(f, "global `{n}` is referenced by the state but gone in the new version"),
            TransferError::Hook(m) => f.write_str(m),
            TransferError::Pinned(e) => write!(f, "{e}"),
            TransferError::CarvedGrows { ty, old_size, new_size, allocator, site } => write!(
                f,
                "an object of `{ty}` carved by {allocator} at {site} needs {new_size} bytes in the new version but has {old_size}: objects carved by a pool or slab allocator cannot move, so `{ty}` must not grow"
            ),
        }
    }
}

impl From<pinned::PinError> for TransferError {
    fn from(e: pinned::PinError) -> Self {
        TransferError::Pinned(e)
    }
}

impl From<PlanError> for TransferError {
    fn from(e: PlanError) -> Self {
        TransferError::Plan(e)
    }
}

extern "C" {
    fn __mcr_malloc(size: usize, site: *const Site) -> *mut u8;
    fn free(p: *mut u8);
}

/// Maps the old binary's image (and the earlier ones it had mapped)
/// read-only at their old addresses, so string literals and constant
/// tables that old state points to stay readable (`old_images`).
pub fn map_old_image(state: &State) {
    crate::old_images::map(
        state.old_pid,
        &state.old_exe,
        &state.image,
        &state.earlier_images,
    );
}

/// An old object whose contents now live at another address: rebuilt in a
/// new layout, or poured into its new-version counterpart from start-up.
struct Move<'a> {
    old: u64,
    old_size: u64,
    new: u64,
    /// Its type's name, the same in both versions (an old type is looked
    /// up in the new map under its own name); empty for untyped objects
    /// (then offsets are kept). Borrowed from the checkpoint's site list:
    /// one allocation per moved object was a measurable part of moving
    /// 50,000.
    ty: &'a str,
    /// Offsets inside are unchanged, so untyped memory may point into it.
    same_layout: bool,
    /// Converted where it was (a carved object): no old copy to free.
    in_place: bool,
}

struct Ctx<'a> {
    v: Versions<'a>,
    moves: Vec<Move<'a>>,
    old_globals: Vec<(u64, u64, &'a str, &'a str)>,
    /// Every thread-local variable of every old thread, named by
    /// `thread_locals::instance_label`, sorted by address. Only precise
    /// pointers are translated through it: glibc's own TLS vectors (untyped
    /// heap objects) point into the old threads' TLS blocks too.
    old_tls: Vec<(u64, u64, &'a str, &'a str)>,
    /// The new globals, and the thread-locals of the new threads paired
    /// with old ones (under the same labels).
    new_globals: HashMap<&'a str, (u64, &'a str)>,
    old_funcs: HashMap<u64, &'a str>,
    /// Old shared-library ranges and how far each library moved.
    libs: Vec<(u64, u64, i64)>,
    /// Built on the first old function pointer found: parsing our own
    /// symbol table costs milliseconds most updates need not pay.
    new_funcs: std::cell::OnceCell<HashMap<&'static str, u64>>,
    slots: HashMap<String, std::rc::Rc<Slots>>,
    /// Lowest start and highest end of all moves (set once they are sorted):
    /// a cheap first test before the binary search.
    moves_span: (u64, u64),
    /// Spans of the old globals, thread-locals, functions and libraries:
    /// a word outside all of them needs no lookup (most words of a large
    /// untyped buffer are data, and were 40% of a 1 GB transfer).
    static_spans: Vec<(u64, u64)>,
}

/// Where a type's pointers are: precise slots with their pointee type, and
/// union ranges scanned conservatively.
struct Slots {
    precise: Vec<(u64, String)>,
    unions: Vec<(u64, u64)>,
}

impl Slots {
    fn is_empty(&self) -> bool {
        self.precise.is_empty() && self.unions.is_empty()
    }
}

impl<'a> Ctx<'a> {
    fn slots_of(&mut self, ty: &str) -> std::rc::Rc<Slots> {
        if let Some(s) = self.slots.get(ty) {
            return s.clone();
        }
        let mut s = Slots {
            precise: Vec::new(),
            unions: Vec::new(),
        };
        if let Some(t) = self.v.new_type(ty) {
            let look = |n: &str| self.v.new_type(n).cloned();
            pointer_slots(&look, t, 0, &mut s.precise, 0);
            mcr_types::plan::union_ranges(&look, t, 0, &mut s.unions, 0);
        }
        let s = std::rc::Rc::new(s);
        self.slots.insert(ty.to_string(), s.clone());
        s
    }

    /// Offset `off` inside an old `ot` value, as an offset inside `nt`.
    fn map_offset(&self, ot: &TypeDef, nt: &TypeDef, off: u64) -> Option<u64> {
        if off == 0 && ot.kind != TypeKind::Struct {
            return Some(0);
        }
        match (ot.kind, nt.kind) {
            (TypeKind::Struct, TypeKind::Struct) => {
                for f in &ot.fields {
                    let ft = self.v.old_type(&f.ty)?;
                    if off >= f.offset && off < f.offset + ft.size.max(1) {
                        let nf = self.v.new_field_for(nt, &ot.name, &f.name)?;
                        let nft = self.v.new_type(&nf.ty)?;
                        return Some(nf.offset + self.map_offset(ft, nft, off - f.offset)?);
                    }
                }
                if off == 0 {
                    Some(0)
                } else {
                    None
                }
            }
            (TypeKind::Array, TypeKind::Array) => {
                let oe = self.v.old_type(ot.target.as_deref()?)?;
                let ne = self.v.new_type(nt.target.as_deref()?)?;
                let i = off / oe.size.max(1);
                Some(i * ne.size + self.map_offset(oe, ne, off % oe.size.max(1))?)
            }
            _ => Some(off.min(nt.size)),
        }
    }

    /// The new value of a pointer found in old state, if it must change.
    /// `target` is the pointee type the pointer is declared with: a pointer
    /// to offset 0 of a struct is a pointer to the struct unless it is
    /// declared as a pointer to its first member.
    /// The moved object whose old copy holds `p`.
    fn move_containing(&self, p: u64) -> Option<&Move<'_>> {
        if p < self.moves_span.0 || p >= self.moves_span.1 {
            return None;
        }
        let i = self.moves.partition_point(|m| m.old <= p);
        let m = self.moves.get(i.checked_sub(1)?)?;
        (p < m.old + m.old_size).then_some(m)
    }

    /// A pointer one past the end of a moved object (a pool block's `end`,
    /// an array's bound), as one past the end of its counterpart. Heap
    /// objects are never adjacent (a header separates them), so such a
    /// pointer names no other object.
    fn translate_end(&self, p: u64) -> Option<u64> {
        let m = self.move_containing(p.checked_sub(1)?)?;
        if p != m.old + m.old_size {
            return None;
        }
        // As the object was converted: its elements, then its tail as is.
        let len = match (self.v.old_type(m.ty), self.v.new_type(m.ty)) {
            (Some(ot), Some(nt)) if ot.size > 0 => {
                let n = self.v.element_count(ot, m.old_size, true);
                n * nt.size + (m.old_size - n * ot.size)
            }
            _ => m.old_size,
        };
        Some(m.new + len)
    }

    /// A pointer into one of `vars` (old globals or thread-locals, sorted
    /// by address), as a pointer into its new counterpart; `None` if `p`
    /// is in none of them.
    fn translate_static(
        &self,
        vars: &[(u64, u64, &str, &str)],
        p: u64,
        target: &str,
    ) -> Option<Result<Option<u64>, TransferError>> {
        let j = vars.partition_point(|g| g.0 <= p);
        let (a, sz, name, ty) = *vars.get(j.checked_sub(1)?)?;
        if p >= a + sz.max(1) {
            return None;
        }
        let Some(&(na, nty)) = self.new_globals.get(name) else {
            return Some(Err(TransferError::GlobalGone(name.into())));
        };
        let off = match (self.v.old_type(ty), self.v.new_type(nty)) {
            (Some(_), Some(_))
                if p == a
                    && (target == ty
                        || self
                            .v
                            .old_type(target)
                            .is_none_or(|t| t.kind != TypeKind::Scalar)) =>
            {
                0
            }
            (Some(o), Some(n)) => self.map_offset(o, n, p - a).unwrap_or(p - a),
            _ => p - a,
        };
        Some(Ok(Some(na + off)))
    }

    fn translate(&self, p: u64, target: &str) -> Result<Option<u64>, TransferError> {
        if p == 0 {
            return Ok(None);
        }
        if let Some(m) = self.move_containing(p) {
            let (Some(ot), Some(nt)) = (self.v.old_type(m.ty), self.v.new_type(m.ty)) else {
                return Ok(Some(m.new + (p - m.old)));
            };
            let rel = p - m.old;
            let (el, off) = (rel / ot.size.max(1), rel % ot.size.max(1));
            let whole = off == 0
                && (target == m.ty || self.v.old_type(target).is_none_or(|t| t.size >= ot.size));
            let noff = if whole {
                0
            } else {
                self.map_offset(ot, nt, off).unwrap_or(0)
            };
            return Ok(Some(m.new + el * nt.size + noff));
        }
        if let Some(end) = self.translate_end(p) {
            return Ok(Some(end));
        }
        if !self.static_spans.iter().any(|&(a, b)| a <= p && p < b) {
            return Ok(None);
        }
        if let Some(r) = self.translate_static(&self.old_globals, p, target) {
            return r;
        }
        if !target.is_empty() {
            if let Some(r) = self.translate_static(&self.old_tls, p, target) {
                return r;
            }
        }
        if let Some(name) = self.old_funcs.get(&p) {
            let funcs = self.new_funcs.get_or_init(|| {
                crate::checkpoint::functions()
                    .iter()
                    .map(|(n, a)| (n.as_str(), *a))
                    .collect()
            });
            let n = funcs
                .get(*name)
                .ok_or_else(|| TransferError::FunctionGone(name.to_string()))?;
            return Ok(Some(*n));
        }
        let k = self.libs.partition_point(|l| l.0 <= p);
        if k > 0 && p < self.libs[k - 1].1 {
            return Ok(Some((p as i64 + self.libs[k - 1].2) as u64));
        }
        Ok(None)
    }

    /// Words of a typed value that are not pointers by type (integers, char
    /// arrays) but hold the address of an object that moved: one whose
    /// layout did not change is followed (as in untyped memory); one whose
    /// layout changed cannot be, and the update is refused. Objects such
    /// words hold were pinned beforehand (`pinned`), so this only fires
    /// for those that could not be (start-up objects paired elsewhere).
    fn check_hidden_references(
        &self,
        addr: u64,
        len: u64,
        size: u64,
        slots: &Slots,
        ty: &str,
    ) -> Result<(), TransferError> {
        let mut w = addr.next_multiple_of(8);
        while w + 8 <= addr + len {
            // SAFETY: an aligned word inside a live typed value.
            let p = unsafe { (w as *const u64).read() };
            let here = w;
            w += 8;
            let Some(m) = self.move_containing(p) else {
                continue;
            };
            let off = (here - addr) % size;
            if slots.precise.iter().any(|(o, _)| *o == off)
                || slots.unions.iter().any(|&(o, l)| off >= o && off < o + l)
            {
                continue;
            }
            if self.keeps_address(m, p) {
                continue;
            }
            if !m.same_layout {
                return Err(TransferError::MovedReferencedFromUntyped {
                    ty: m.ty.to_string(),
                    from_site: format!("a non-pointer field of `{ty}`"),
                    at: p - m.old,
                });
            }
            // SAFETY: as above.
            unsafe { (here as *mut u64).write(m.new + (p - m.old)) };
        }
        Ok(())
    }

    /// Converts the object at `addr` (`size` bytes: `count` old `ot`
    /// elements, then a tail kept as it is) to `count` new `nt` elements
    /// where it is, and records it as a [`Move`] to its own address (an
    /// object that cannot move: carved, or held by a hidden reference).
    /// Returns the old bytes.
    ///
    /// # Safety
    /// `[addr, addr + room)` must be live memory of this object, no other
    /// thread may use it, and the new size must fit in `room`.
    unsafe fn convert_in_place(
        &mut self,
        addr: u64,
        size: u64,
        room: u64,
        tn: &'a str,
        (ot, nt): (&TypeDef, &TypeDef),
        count: u64,
    ) -> Result<Vec<u8>, TransferError> {
        let (os, ns) = (ot.size as usize, nt.size as usize);
        let (from, to) = (count as usize * os, count as usize * ns);
        let new_size = to + (size as usize - from);
        // SAFETY: per the caller's contract.
        let bytes = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, room as usize) };
        let old = bytes[..size as usize].to_vec();
        bytes[..new_size.max(size as usize)].fill(0);
        self.v
            .convert_elements(ot, nt, &old, bytes, count as usize, tn)?;
        bytes[to..new_size].copy_from_slice(&old[from..]);
        self.moves.push(Move {
            old: addr,
            old_size: size,
            new: addr,
            ty: tn,
            same_layout: false,
            in_place: true,
        });
        Ok(old)
    }

    /// Rewrites the pointers of `count` values of new type `ty` at `addr`.
    fn fix_pointers(&mut self, addr: u64, ty: &str, count: u64) -> Result<u64, TransferError> {
        let slots = self.slots_of(ty);
        let size = self.v.new_type(ty).map(|t| t.size).unwrap_or(0).max(1);
        if !self.moves.is_empty() {
            self.check_hidden_references(addr, size * count, size, &slots, ty)?;
        }
        if slots.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        for e in 0..count {
            for &(off, len) in &slots.unions {
                let start = addr + e * size + off;
                for w in (start.next_multiple_of(8)..start + len.saturating_sub(7)).step_by(8) {
                    // SAFETY: an aligned word inside a union of a live value.
                    let p = unsafe { (w as *const u64).read() };
                    if p >= 4096 {
                        if let Some(q) = self.translate(p, "")? {
                            // SAFETY: as above.
                            unsafe { (w as *mut u64).write(q) };
                            n += 1;
                        }
                    }
                }
            }
            for (off, target) in &slots.precise {
                let at = (addr + e * size + off) as *mut u64;
                // SAFETY: `at` is a pointer field inside a live object or
                // global of type `ty`, per the type map.
                let p = unsafe { at.read_unaligned() };
                if let Some(q) = self.translate(p, target)? {
                    // SAFETY: as above.
                    unsafe { at.write_unaligned(q) };
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// Pointers the kernel keeps for the program: `epoll_event.data` of every
/// registration on every epoll instance, read back from
/// /proc/self/fdinfo and re-registered (`EPOLL_CTL_MOD`) when it named an
/// object that moved.
fn rewrite_epoll_registrations(ctx: &Ctx) -> Result<u64, TransferError> {
    if ctx.moves.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for epfd in crate::epoll_info::instances() {
        for r in crate::epoll_info::registrations(epfd) {
            if ctx.move_containing(r.data).is_none() {
                continue;
            }
            let Some(q) = ctx.translate(r.data, "")? else {
                continue;
            };
            let mut ev = libc::epoll_event {
                events: r.events,
                u64: q,
            };
            // SAFETY: re-registering an existing registration with a new cookie.
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, r.fd, &mut ev) } == 0 {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn site_text(s: Option<&crate::checkpoint::SavedSite>, state: &State) -> String {
    let Some(s) = s else {
        return "(uninstrumented code)".into();
    };
    let id = format!("{:016x}", s.key);
    state
        .typemap
        .alloc_sites
        .iter()
        .find(|x| x.id == id)
        .map(|x| format!("{}:{}", x.file, x.line))
        .unwrap_or(id)
}

/// Pairs old and new start-up objects: same allocation site (or, for
/// untyped ones, same size), in allocation order, when both versions made
/// as many. A paired old object's state is poured into its counterpart,
/// which the new version's threads and libraries already point to.
fn pair_startup_objects(
    state: &State,
    old_sites: &HashMap<u64, &crate::checkpoint::SavedSite>,
    inherited: &HashMap<u64, u64>,
    new_startup: &[StartupObject],
) -> HashMap<u64, u64> {
    // Old side: program roots are the old globals and typed objects.
    let old_untyped: HashMap<u64, u64> = state
        .startup_objects
        .iter()
        .filter(|o| old_sites.get(&o.site).is_none_or(|s| s.type_name.is_none()))
        .map(|o| (o.addr, o.size))
        .collect();
    let old_globals: Vec<Vec<u8>> = state.globals.iter().map(|g| g.bytes.clone()).collect();
    let mut roots: Vec<(u64, u64)> = old_globals
        .iter()
        .map(|b| (b.as_ptr() as u64, b.len() as u64))
        .collect();
    roots.extend(
        state
            .startup_objects
            .iter()
            .filter(|o| !old_untyped.contains_key(&o.addr))
            .map(|o| (o.addr, o.size)),
    );
    let old_reach = program_reachable(&roots, &old_untyped);
    // New side: the same, before transfer touches anything.
    let new_untyped: HashMap<u64, u64> = new_startup
        .iter()
        .filter(|o| o.site == 0)
        .map(|o| (o.addr, o.size))
        .collect();
    let mut roots: Vec<(u64, u64)> = globals::all()
        .map(|g| (g.addr as u64, g.size as u64))
        .collect();
    roots.extend(
        new_startup
            .iter()
            .filter(|o| o.site != 0)
            .map(|o| (o.addr, o.size)),
    );
    let new_reach = program_reachable(&roots, &new_untyped);

    let mut old_groups: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for o in &state.startup_objects {
        if inherited.get(&o.addr) != Some(&o.size) {
            continue; // freed or reallocated since start-up
        }
        if old_untyped.contains_key(&o.addr) && !old_reach.contains(&o.addr) {
            continue; // a library's private memory
        }
        let key = old_sites.get(&o.site).map_or((0, o.size), |s| (s.key, 0));
        old_groups.entry(key).or_default().push(o.addr);
    }
    let mut new_groups: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
    for o in new_startup {
        if o.site == 0 && !new_reach.contains(&o.addr) {
            continue;
        }
        let key = if o.site == 0 {
            (0, o.size)
        } else {
            // SAFETY: non-null sites of new objects are this binary's descriptors.
            (unsafe { (*(o.site as *const Site)).key }, 0)
        };
        new_groups.entry(key).or_default().push((o.addr, o.size));
    }
    let mut pairs = HashMap::new();
    for (k, olds) in old_groups {
        let Some(news) = new_groups.get(&k) else {
            continue;
        };
        if news.len() != olds.len() {
            continue;
        }
        for (o, n) in olds.iter().zip(news) {
            pairs.insert(*o, n.0);
        }
    }
    pairs
}

/// Untyped start-up objects the program's own state points to, directly or
/// through other such objects (conservatively). Only those are paired: an
/// untyped object only a library points to (libc's environment, stdio
/// buffers) is that library's, and its new version's start-up rebuilt it.
fn program_reachable(
    roots: &[(u64, u64)],
    untyped: &HashMap<u64, u64>,
) -> std::collections::HashSet<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut work: Vec<(u64, u64)> = roots.to_vec();
    while let Some((a, len)) = work.pop() {
        let mut w = a.next_multiple_of(8);
        while w + 8 <= a + len {
            // SAFETY: an aligned word inside a live object, global or copy.
            let p = unsafe { (w as *const u64).read() };
            w += 8;
            if p < 4096 {
                continue;
            }
            if let Some(o) = heap::find(p as usize) {
                let start = o.addr as u64;
                if let Some(&sz) = untyped.get(&start) {
                    if seen.insert(start) {
                        work.push((start, sz));
                    }
                }
            }
        }
    }
    seen
}

/// Shared libraries of the old process found again here, and their shift.
fn library_shifts(state: &State) -> Vec<(u64, u64, i64)> {
    let now = crate::checkpoint::libraries();
    let mut v: Vec<_> = state
        .libraries
        .iter()
        .filter_map(|(path, a, b)| {
            let (_, na, nb) = now.iter().find(|x| &x.0 == path)?;
            (nb - na == b - a).then_some((*a, *b, *na as i64 - *a as i64))
        })
        .collect();
    v.sort_by_key(|l| l.0);
    v
}

/// Writes the old value of a global (or of one thread's thread-local) into
/// its new-version counterpart at `na`, of new type `nty`, converted by
/// the types' plan, all of it (the caller rewrites its pointers); values
/// of hooked types are queued for their hook.
///
/// # Safety
/// `na` must be a live variable as long as `nty` (or, with no known type,
/// as the old value).
unsafe fn pour(
    ctx: &Ctx,
    planner: &mut crate::hooks::Planner,
    g: &crate::checkpoint::SavedGlobal,
    na: u64,
    nty: &str,
) -> Result<(), TransferError> {
    let (ot, nt) = (ctx.v.old_type(&g.type_name), ctx.v.new_type(nty));
    let old = &g.bytes;
    let nsize = nt.map(|t| t.size).unwrap_or(old.len() as u64) as usize;
    // SAFETY: per the caller.
    let dst = unsafe { std::slice::from_raw_parts_mut(na as *mut u8, nsize) };
    match (ot, nt) {
        (Some(o), Some(n)) => {
            ctx.v.convert(o, n, old, dst, &g.name)?;
            planner.collect_copy(&ctx.v, o, n, old, na, 1)?;
        }
        _ => {
            let k = old.len().min(dst.len());
            dst[..k].copy_from_slice(&old[..k]);
        }
    }
    Ok(())
}

/// Thread-locals seen as globals by pointer translation: the old threads'
/// instances (address, size, label, type) and the new counterparts'
/// (label, address, type), labels from `thread_locals::instance_label`.
#[derive(Default)]
struct TlsViews {
    old: Vec<(u64, u64, String, String)>,
    new: Vec<(String, u64, &'static str)>,
}

impl TlsViews {
    fn of(state: &State, pairs: &[thread_locals::Paired]) -> TlsViews {
        let old = state
            .threads
            .iter()
            .flat_map(|t| {
                t.vars.iter().map(|v| {
                    let label = thread_locals::instance_label(&v.name, &t.key);
                    (v.addr, v.size, label, v.type_name.clone())
                })
            })
            .collect();
        let new = pairs
            .iter()
            .flat_map(|p| {
                p.new.iter().map(|i| {
                    let label = thread_locals::instance_label(i.var.name, &p.old.key);
                    (label, i.addr as u64, i.var.type_name)
                })
            })
            .collect();
        TlsViews { old, new }
    }
}

/// The translation context between the old version (`state`) and this one.
fn context<'a>(
    state: &'a State,
    new_map: &'a TypeMap,
    hooks: &'a [mcr_types::hooks::HookDecl],
    tls: &'a TlsViews,
) -> Ctx<'a> {
    let mut old_globals: Vec<_> = state
        .globals
        .iter()
        .map(|g| (g.addr, g.size, g.name.as_str(), g.type_name.as_str()))
        .collect();
    old_globals.sort_by_key(|g| g.0);
    let mut old_tls: Vec<_> = tls
        .old
        .iter()
        .map(|(a, n, l, t)| (*a, *n, l.as_str(), t.as_str()))
        .collect();
    old_tls.sort_by_key(|g| g.0);
    let new_vars: Vec<_> = globals::all().collect();
    let mut new_globals: HashMap<&'a str, (u64, &'a str)> = new_vars
        .iter()
        .map(|g| (g.name, (g.addr as u64, g.type_name)))
        .chain(tls.new.iter().map(|(l, a, t)| (l.as_str(), (*a, *t))))
        .collect();
    // A global that moved to another unit (or became static) is the same
    // variable under a new name: reachable under its old name too.
    let old_names: Vec<&str> = state.globals.iter().map(|g| g.name.as_str()).collect();
    let new_names: Vec<&str> = new_vars.iter().map(|g| g.name).collect();
    for (o, n) in mcr_types::plan::moved_globals(&old_names, &new_names) {
        if let Some(&v) = new_globals.get(n) {
            new_globals.insert(o, v);
        }
    }
    let span = |v: &[(u64, u64, &str, &str)]| match (
        v.first(),
        v.iter().map(|g| g.0 + g.1.max(1)).max(),
    ) {
        (Some(f), Some(end)) => Some((f.0, end)),
        _ => None,
    };
    let funcs = (state.functions.iter().map(|f| f.1).min())
        .zip(state.functions.iter().map(|f| f.1 + 1).max());
    let libs = library_shifts(state);
    let lib_span = (libs.iter().map(|l| l.0).min()).zip(libs.iter().map(|l| l.1).max());
    let static_spans = [span(&old_globals), span(&old_tls), funcs, lib_span]
        .into_iter()
        .flatten()
        .collect();
    Ctx {
        v: Versions::new(
            &state.typemap,
            new_map,
            new_map.renames.clone().into_iter().collect(),
        )
        .with_hooks(hooks),
        moves: vec![],
        old_globals,
        old_tls,
        new_globals,
        old_funcs: state
            .functions
            .iter()
            .map(|(n, a)| (*a, n.as_str()))
            .collect(),
        new_funcs: std::cell::OnceCell::new(),
        libs,
        slots: HashMap::new(),
        moves_span: (0, 0),
        static_spans,
    }
}

/// Transfers the old version's state into this process. `status` tells the
/// old version which user hook runs (a crash in it is then named).
pub fn run(
    state: &State,
    new_startup: &[StartupObject],
    status: &dyn Fn(&str),
) -> Result<UpdateReport, TransferError> {
    let laps = crate::debug_laps::DebugLaps::start("transfer");
    let new_map = sections::typemap();
    laps.lap("new typemap decoded");
    let hooks = crate::hooks::all().map_err(TransferError::Hook)?;
    laps.lap("hooks");
    let decls: Vec<_> = hooks.iter().map(|h| h.decl.clone()).collect();
    let old_sites: HashMap<u64, &crate::checkpoint::SavedSite> =
        state.sites.iter().map(|s| (s.addr, s)).collect();
    let new_sites: HashMap<u64, &'static Site> =
        sections::sites().iter().map(|s| (s.key, s)).collect();
    // Thread-local variables: each new thread receives its counterpart's.
    // Every instance is a global of its own to pointers (a pointer to an
    // old thread's variable becomes one to its counterpart's).
    let tls = thread_locals::pair(&state.threads);
    let tls_views = TlsViews::of(state, &tls);
    laps.lap("tls");
    let mut ctx = context(state, new_map, &decls, &tls_views);
    laps.lap("context built");
    // Before anything touches the old heap: which unchanged pointers of
    // the globals lead only to start-up state nobody changed.
    let mut pristine = global_values::Pristine::prepare(state, &ctx);
    laps.lap("unchanged pointers of globals decided");
    let mut planner = crate::hooks::Planner::new(&ctx.v, hooks);
    let mut report = UpdateReport::default();

    let mut inherited = Vec::new();
    heap::for_each_live(|o| {
        if heap::is_inherited(o.addr) {
            inherited.push(o);
        }
    });
    laps.lap("inherited objects listed");
    let sizes: HashMap<u64, u64> = inherited
        .iter()
        .map(|o| (o.addr as u64, o.size as u64))
        .collect();
    let mut pairs = pair_startup_objects(state, &old_sites, &sizes, new_startup);
    let carved_parents = carved::parents(state);
    pairs.retain(|old, _| !carved_parents.contains(old));
    let new_sizes: HashMap<u64, u64> = new_startup.iter().map(|o| (o.addr, o.size)).collect();
    let unchanged_startup: std::collections::HashSet<u64> = state
        .startup_objects
        .iter()
        .filter(|o| o.unchanged)
        .map(|o| o.addr)
        .collect();
    // Typed objects that stay, to have their pointers fixed: (addr, type, count).
    let mut typed: Vec<(u64, &str, u64)> = Vec::new();
    let mut untyped: Vec<(u64, u64, Option<&crate::checkpoint::SavedSite>)> = Vec::new();
    laps.lap("start-up objects paired");
    // Changed objects that hidden references hold stay where they are.
    let (pins, mut interior_words) =
        pinned::find(state, &ctx, &inherited, &pairs, &carved_parents, &old_sites)?;
    laps.lap("hidden references scanned");
    // What an old site means here, worked out once per site.
    type SiteInfo<'s> = (
        Option<&'s crate::checkpoint::SavedSite>,
        *const Site,
        (Option<&'s str>, Option<&'s TypeDef>, Option<&'s TypeDef>),
    );
    let mut site_info: HashMap<u64, SiteInfo> = HashMap::new();
    for o in &inherited {
        report.bytes += o.size as u64;
        let &mut (old_site, site_ptr, typed_pair) =
            site_info.entry(o.site as u64).or_insert_with(|| {
                let old_site = old_sites.get(&(o.site as u64)).copied();
                let new_site = old_site.and_then(|s| new_sites.get(&s.key)).copied();
                let ty = old_site.and_then(|s| s.type_name.as_deref());
                (
                    old_site,
                    new_site.map_or(std::ptr::null(), |s| s as *const Site),
                    (
                        ty,
                        ty.and_then(|t| ctx.v.old_type(t)),
                        ty.and_then(|t| ctx.v.new_type(t)),
                    ),
                )
            });
        if let Some(&n) = (!pairs.is_empty())
            .then(|| pairs.get(&(o.addr as u64)))
            .flatten()
        {
            let nsize = new_sizes[&n];
            // SAFETY: both are live objects of the given sizes.
            let (src, dst) = unsafe {
                (
                    std::slice::from_raw_parts(o.addr as *const u8, o.size),
                    std::slice::from_raw_parts_mut(n as *mut u8, nsize as usize),
                )
            };
            match typed_pair {
                (Some(tn), Some(ot), Some(nt)) if ot.size > 0 && nt.size > 0 => {
                    let count = ctx
                        .v
                        .element_count(ot, o.size as u64, true)
                        .min(ctx.v.element_count(nt, nsize, false));
                    // Built at start-up and never changed since, with no
                    // pointers, or part of a start-up graph that a global
                    // left for the new start-up's (global_values.rs): what
                    // the new start-up built wins (a changed default, a new
                    // table), as for globals.
                    let keep_new = unchanged_startup.contains(&(o.addr as u64))
                        && (ctx.slots_of(tn).is_empty() || pristine.keeps_new(o.addr as u64));
                    if std::env::var_os("MCR_DEBUG").is_some() {
                        eprintln!(
                            "mcr-rt: start-up object {tn} at {:#x}: unchanged {}, pointers {}, kept from the new start-up: {keep_new}",
                            o.addr,
                            unchanged_startup.contains(&(o.addr as u64)),
                            !ctx.slots_of(tn).is_empty()
                        );
                    }
                    if !keep_new {
                        ctx.v
                            .convert_elements(ot, nt, src, dst, count as usize, tn)?;
                    }
                    if !keep_new {
                        planner.collect(&ctx.v, ot, nt, o.addr as u64, n, count)?;
                    }
                    let same = ctx.v.identical(ot, nt, 0);
                    ctx.moves.push(Move {
                        old: o.addr as u64,
                        old_size: o.size as u64,
                        new: n,
                        ty: tn,
                        same_layout: same,
                        in_place: false,
                    });
                    if !keep_new {
                        typed.push((n, tn, count)); // its pointers are old ones
                    }
                    report.objects_precise += 1;
                }
                _ => {
                    // Part of a start-up graph left for the new one: the
                    // new bytes stay (a string the new entry points to).
                    let keep_new = unchanged_startup.contains(&(o.addr as u64))
                        && pristine.keeps_new(o.addr as u64);
                    if !keep_new {
                        let k = src.len().min(dst.len());
                        dst[..k].copy_from_slice(&src[..k]);
                        untyped.push((n, nsize, old_site));
                    }
                    ctx.moves.push(Move {
                        old: o.addr as u64,
                        old_size: o.size as u64,
                        new: n,
                        ty: "",
                        same_layout: true,
                        in_place: false,
                    });
                    report.objects_conservative += 1;
                }
            }
            report.objects_paired += 1;
            continue;
        }
        let (Some(tn), Some(ot), Some(nt)) = typed_pair else {
            heap::set_site(o.addr, site_ptr);
            report.objects_conservative += 1;
            untyped.push((o.addr as u64, o.size as u64, old_site));
            continue;
        };
        let count = ctx.v.element_count(ot, o.size as u64, true);
        report.objects_precise += 1;
        if ctx.v.identical(ot, nt, 0) {
            heap::set_site(o.addr, site_ptr);
            if planner.contains_hooked(&ctx.v, nt) {
                // SAFETY: a live object of `o.size` bytes.
                let old = unsafe { std::slice::from_raw_parts(o.addr as *const u8, o.size) };
                planner.collect_copy(&ctx.v, ot, nt, old, o.addr as u64, count)?;
            }
            typed.push((o.addr as u64, tn, count));
            continue;
        }
        if pins.contains(&(o.addr as u64)) {
            let size = o.size as u64;
            pinned::convert(
                &mut ctx,
                &mut planner,
                o.addr as u64,
                size,
                tn,
                (ot, nt),
                count,
                site_ptr,
            )?;
            typed.push((o.addr as u64, tn, count));
            report.objects_pinned += 1;
            continue;
        }
        let tail = o.size as u64 - count * ot.size;
        let new_size = count * nt.size + tail;
        // SAFETY: allocation through the runtime's own typed entry point.
        let p = unsafe { __mcr_malloc(new_size as usize, site_ptr) };
        if p.is_null() {
            return Err(TransferError::Alloc(new_size));
        }
        // SAFETY: `o` is a live object of `o.size` bytes; `p` is fresh.
        let (src, dst) = unsafe {
            std::ptr::write_bytes(p, 0, new_size as usize);
            (
                std::slice::from_raw_parts(o.addr as *const u8, o.size),
                std::slice::from_raw_parts_mut(p, new_size as usize),
            )
        };
        ctx.v
            .convert_elements(ot, nt, src, dst, count as usize, tn)?;
        dst[(count * nt.size) as usize..].copy_from_slice(&src[(count * ot.size) as usize..]);
        planner.collect(&ctx.v, ot, nt, o.addr as u64, p as u64, count)?;
        ctx.moves.push(Move {
            old: o.addr as u64,
            old_size: o.size as u64,
            new: p as u64,
            ty: tn,
            same_layout: false,
            in_place: false,
        });
        typed.push((p as u64, tn, count));
        report.objects_moved += 1;
    }
    laps.lap("heap objects placed");
    let carved_objects = carved::place(
        state,
        &mut ctx,
        &old_sites,
        &new_sites,
        &mut typed,
        &mut untyped,
        &mut report,
    )?;
    ctx.moves.sort_by_key(|m| m.old);
    ctx.moves_span = (
        ctx.moves.first().map_or(0, |m| m.old),
        ctx.moves
            .iter()
            .map(|m| m.old + m.old_size)
            .max()
            .unwrap_or(0),
    );
    laps.lap("objects placed");

    // Untyped memory must not point into an object that moves. Its words
    // that hold the exact address of an old function, or an address inside
    // an old global, are rewritten (libraries keep callbacks and pointers to
    // the program's static data: libevent's events); with 64-bit randomized
    // addresses an integer that equals one by chance is not a practical
    // risk, and MCR_STRICT_CONSERVATIVE=1 refuses the update instead.
    let strict = std::env::var_os("MCR_STRICT_CONSERVATIVE").is_some();
    interior_words.relocate(&ctx);
    for (a, sz, site) in untyped.iter().flat_map(|&(a, sz, site)| {
        carved::gaps(a, sz, &state.carved)
            .into_iter()
            .map(move |(a, sz)| (a, sz, site))
    }) {
        for w in (a.next_multiple_of(8)..(a + sz).saturating_sub(7)).step_by(8) {
            // SAFETY: reading inside a live object.
            let p = unsafe { (w as *const u64).read() };
            if p < 4096 || interior_words.covers(w) {
                continue;
            }
            if let Some(m) = ctx.move_containing(p).filter(|m| !m.same_layout) {
                // A carved or pinned object converted in place kept its
                // address: a pointer to its start (or to a field that kept
                // its offset) is still right (stale words in a pool's free
                // space typically are such pointers).
                if ctx.keeps_address(m, p) {
                    continue;
                }
                if let Some(q) = ctx.moved_field(m, p).filter(|_| !m.in_place) {
                    // SAFETY: an aligned word inside a live object.
                    unsafe { (w as *mut u64).write(q) };
                    report.conservative_rewrites += 1;
                    continue;
                }
                return Err(TransferError::MovedReferencedFromUntyped {
                    ty: m.ty.to_string(),
                    from_site: format!("untyped memory allocated at {}", site_text(site, state)),
                    at: p - m.old,
                });
            }
            if let Some(q) = ctx.translate(p, "")?.filter(|&q| q != p) {
                if strict {
                    return Err(TransferError::StaticReferencedFromUntyped {
                        from_site: site_text(site, state),
                    });
                }
                // SAFETY: an aligned word inside a live object.
                unsafe { (w as *mut u64).write(q) };
                report.conservative_rewrites += 1;
            }
        }
    }

    report.conservative_rewrites += interior_words.apply();
    laps.lap("untyped scanned");
    // Globals: kept from the new start-up unless changed since the old one,
    // field by field (global_values.rs).
    let mut fixed_globals =
        global_values::transfer(&mut ctx, &mut planner, state, &mut pristine, &mut report)?;
    // Thread-locals: old state always wins (no start-up snapshot of them).
    for p in &tls {
        for g in &p.old.vars {
            let Some(i) = p.new.iter().find(|i| i.var.name == g.name) else {
                continue;
            };
            let (na, nty) = (i.addr as u64, i.var.type_name);
            // SAFETY: the variable in a live, parked thread of this process,
            // as long as its descriptor says.
            unsafe { pour(&ctx, &mut planner, g, na, nty) }?;
            report.thread_locals += 1;
            let label = thread_locals::instance_label(&g.name, &p.old.key);
            fixed_globals.push((na, nty.to_string(), label));
        }
    }
    let debug = std::env::var_os("MCR_DEBUG").is_some();
    for (a, t, name) in fixed_globals {
        let n = ctx.fix_pointers(a, &t, 1)?;
        if debug {
            eprintln!("mcr-rt: global {name} ({t}) at {a:#x}: {n} pointers rewritten");
        }
    }
    laps.lap("globals transferred");
    let mut rewritten = 0;
    for (a, t, n) in &typed {
        rewritten += ctx.fix_pointers(*a, t, *n)?;
    }
    if debug {
        eprintln!(
            "mcr-rt: {} typed objects, {rewritten} pointers rewritten, {} moved",
            typed.len(),
            ctx.moves.len()
        );
    }
    laps.lap("pointers rewritten");
    // User hooks: the new state is complete, the old copies still readable.
    let translate = |p: u64| ctx.translate(p, "").ok().flatten().unwrap_or(p);
    let is_old_copy = |p: u64| ctx.move_containing(p).is_some_and(|m| !m.in_place);
    report.hook_calls = crate::hooks::run_transforms(
        &mut planner,
        &ctx.v,
        &translate,
        &crate::hooks::Validity {
            is_old_copy: &is_old_copy,
        },
        status,
    )
    .map_err(TransferError::Hook)?;
    for m in ctx.moves.iter().filter(|m| !m.in_place) {
        // SAFETY: the old copy of a moved object; nothing points to it now.
        unsafe { free(m.old as *mut u8) };
    }
    for p in crate::hooks::take_deferred() {
        // The old copies of moved objects were freed just above.
        if !is_old_copy(p as u64) {
            // SAFETY: a pointer a hook passed to free(), deferred until now.
            unsafe { free(p as *mut u8) };
        }
    }
    heap::carved::restore(carved_objects);
    laps.lap("hooks run, old copies freed");
    report.kernel_pointers = rewrite_epoll_registrations(&ctx)?;
    heap::clear_inherited();
    laps.lap("done");
    Ok(report)
}

/// A worker's state into this process, a new worker its new master forked
/// (see `children`). The old worker's objects are not in this process's
/// memory (its heap came from the new master by `fork`): they arrive by
/// value in its checkpoint. Its start-up objects are paired with this
/// worker's own (same site, same order); those it changed since, and those
/// it allocated after, are carried: poured into their counterpart or
/// allocated anew, converted to the new layout, their pointers rewritten.
/// Its globals are carried field by field (what changed since its
/// start-up), their changed pointers rewritten too.
pub(crate) fn run_worker(
    state: &State,
    w: &crate::children::ChildState,
    new_startup: &[StartupObject],
    cookies: &mut [u64],
) -> Result<UpdateReport, TransferError> {
    let tls = TlsViews::default();
    let mut ctx = context(state, sections::typemap(), &[], &tls);
    let mut report = UpdateReport::default();
    let old_sites: HashMap<u64, &crate::checkpoint::SavedSite> =
        state.sites.iter().map(|s| (s.addr, s)).collect();
    let new_sites: HashMap<u64, &'static Site> =
        sections::sites().iter().map(|s| (s.key, s)).collect();
    let old_key = |site: u64| old_sites.get(&site).map(|s| s.key);
    let old_ty = |site: u64| old_sites.get(&site).and_then(|s| s.type_name.as_deref());

    // Start-up objects: same site, same order, as many on both sides.
    let mut olds: HashMap<u64, Vec<&StartupObject>> = HashMap::new();
    for o in &w.startup_objects {
        if let Some(k) = old_key(o.site) {
            olds.entry(k).or_default().push(o);
        }
    }
    let mut news: HashMap<u64, Vec<u64>> = HashMap::new();
    for o in new_startup.iter().filter(|o| o.site != 0) {
        // SAFETY: non-null sites of this process's objects are its descriptors.
        news.entry(unsafe { (*(o.site as *const Site)).key })
            .or_default()
            .push(o.addr);
    }
    let mut pairs: HashMap<u64, u64> = HashMap::new();
    for (k, os) in &olds {
        if let Some(ns) = news.get(k).filter(|ns| ns.len() == os.len()) {
            for (o, &n) in os.iter().zip(ns) {
                pairs.insert(o.addr, n);
                let ty = old_ty(o.site).unwrap_or("");
                let same = match (ctx.v.old_type(ty), ctx.v.new_type(ty)) {
                    (Some(a), Some(b)) => ctx.v.identical(a, b, 0),
                    _ => true,
                };
                ctx.moves.push(Move {
                    old: o.addr,
                    old_size: o.size,
                    new: n,
                    ty,
                    same_layout: same,
                    in_place: false,
                });
            }
        }
    }
    report.objects_paired = pairs.len() as u64;

    // Carried objects: into their counterpart, or allocated anew.
    let mut typed: Vec<(u64, String, u64)> = Vec::new();
    let mut untyped: Vec<(u64, u64)> = Vec::new();
    for c in &w.objects {
        let src = from_hex(&c.bytes);
        let tn = old_ty(c.site);
        let types = tn.and_then(|t| Some((t, ctx.v.old_type(t)?, ctx.v.new_type(t)?)));
        let types = types.filter(|(_, ot, nt)| ot.size > 0 && nt.size > 0);
        let count = types.map_or(0, |(_, ot, _)| ctx.v.element_count(ot, c.size, true));
        let new_size = match types {
            Some((_, ot, nt)) => count * nt.size + (c.size - count * ot.size),
            None => c.size,
        };
        let (new, new_size) = match pairs.get(&c.addr) {
            Some(&n) => (n, heap::find(n as usize).map_or(0, |o| o.size as u64)),
            None => {
                let site = old_key(c.site)
                    .and_then(|k| new_sites.get(&k))
                    .map_or(std::ptr::null(), |s| *s as *const Site);
                // SAFETY: allocation through the runtime's own typed entry point.
                let p = unsafe { __mcr_malloc(new_size as usize, site) };
                if p.is_null() {
                    return Err(TransferError::Alloc(new_size));
                }
                // SAFETY: a fresh object of `new_size` bytes.
                unsafe { std::ptr::write_bytes(p, 0, new_size as usize) };
                ctx.moves.push(Move {
                    old: c.addr,
                    old_size: c.size,
                    new: p as u64,
                    ty: tn.unwrap_or(""),
                    same_layout: types.is_none_or(|(_, ot, nt)| ctx.v.identical(ot, nt, 0)),
                    in_place: false,
                });
                (p as u64, new_size)
            }
        };
        // SAFETY: `new` is a live object of `new_size` bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(new as *mut u8, new_size as usize) };
        match types {
            Some((tn, ot, nt)) => {
                let count = count.min(ctx.v.element_count(nt, new_size, false));
                let (os, ns) = (ot.size as usize, nt.size as usize);
                ctx.v
                    .convert_elements(ot, nt, &src, dst, count as usize, tn)?;
                let (ot_end, nt_end) = (count as usize * os, count as usize * ns);
                let k = (src.len() - ot_end.min(src.len())).min(dst.len() - nt_end.min(dst.len()));
                dst[nt_end..nt_end + k].copy_from_slice(&src[ot_end..ot_end + k]);
                typed.push((new, tn.to_string(), count));
                report.objects_precise += 1;
            }
            None => {
                let k = src.len().min(dst.len());
                dst[..k].copy_from_slice(&src[..k]);
                untyped.push((new, k as u64));
                report.objects_conservative += 1;
            }
        }
        report.bytes += c.size;
    }
    ctx.moves.sort_by_key(|m| m.old);
    ctx.moves_span = (
        ctx.moves.first().map_or(0, |m| m.old),
        ctx.moves
            .iter()
            .map(|m| m.old + m.old_size)
            .max()
            .unwrap_or(0),
    );

    // A precise pointer to an old object nothing carried (a library's
    // buffer, a start-up object without a counterpart) would dangle. One to
    // memory the old worker had freed already dangled there too: the
    // program never follows it (nginx's free connection slots keep their
    // last pool), and it stays as it is.
    let old_heap = (state.heap.base, state.heap.base + state.heap.len);
    let dangling = |ctx: &Ctx, p: u64| {
        p >= old_heap.0
            && p < old_heap.1
            && ctx.move_containing(p).is_none()
            && (w.live.is_empty() || w.points_to_live(p))
    };
    for (a, tn, count) in &typed {
        let slots = ctx.slots_of(tn);
        let size = ctx.v.new_type(tn).map_or(0, |t| t.size).max(1);
        for e in 0..*count {
            for (off, _) in &slots.precise {
                // SAFETY: a pointer field inside a live object of type `tn`.
                let p = unsafe { ((a + e * size + off) as *const u64).read_unaligned() };
                if dangling(&ctx, p) {
                    return Err(TransferError::WorkerDangling {
                        what: format!("an object of `{tn}`"),
                    });
                }
            }
        }
    }
    for (a, tn, count) in &typed {
        ctx.fix_pointers(*a, tn, *count)?;
    }
    for &(a, len) in &untyped {
        for wd in (a..a + len.saturating_sub(7)).step_by(8) {
            // SAFETY: an aligned word inside a live object.
            let p = unsafe { (wd as *const u64).read() };
            if p < 4096 {
                continue;
            }
            if let Some(q) = ctx.translate(p, "")? {
                // SAFETY: as above.
                unsafe { (wd as *mut u64).write(q) };
                report.conservative_rewrites += 1;
            }
        }
    }

    // Globals, field by field: what changed since the worker's start-up.
    // The old worker's heap is not here to look at: an unchanged pointer
    // keeps the new start-up's value, unless it leads into the old shared
    // memory, which the new master took over (the new start-up's own zone
    // is not what the old workers shared).
    let shared = &state.shared_mappings;
    let into_shared = |old: &[u8]| {
        !shared.is_empty()
            && old.chunks(8).any(|w| {
                let mut b = [0u8; 8];
                b[..w.len()].copy_from_slice(w);
                let p = u64::from_ne_bytes(b);
                crate::shared_memory::contains(shared, p)
            })
    };
    for g in w
        .globals
        .iter()
        .filter(|g| !g.unchanged_since_startup || into_shared(&g.bytes))
    {
        let Some(&(na, nty)) = ctx.new_globals.get(g.name.as_str()) else {
            continue;
        };
        let (Some(ot), Some(nt)) = (ctx.v.old_type(&g.type_name), ctx.v.new_type(nty)) else {
            continue;
        };
        let now = &g.bytes;
        let at_startup = g
            .startup_bytes
            .clone()
            .unwrap_or_else(|| vec![0; now.len()]);
        // SAFETY: the new global is `nt.size` bytes long per its descriptor.
        let dst = unsafe { std::slice::from_raw_parts_mut(na as *mut u8, nt.size as usize) };
        let mut refs = Vec::new();
        ctx.v.convert_changed(
            ot,
            nt,
            now,
            &at_startup,
            dst,
            &g.name,
            &mut refs,
            &mut |r| !into_shared(r.old),
        )?;
        for r in refs {
            for wd in (r.at..r.at + r.len.saturating_sub(7)).step_by(8) {
                // SAFETY: a word inside the pointer or union leaf just converted.
                let p = unsafe { (wd as *const u64).read_unaligned() };
                if r.target.is_some() && dangling(&ctx, p) {
                    return Err(TransferError::WorkerDangling {
                        what: format!("`{}`", r.path),
                    });
                }
                if let Some(q) = ctx.translate(p, r.target.as_deref().unwrap_or(""))? {
                    // SAFETY: as above.
                    unsafe { (wd as *mut u64).write_unaligned(q) };
                }
            }
        }
        report.globals += 1;
    }
    // `epoll_event.data` of the worker's connections: a word that may
    // point into a moved object.
    for c in cookies.iter_mut() {
        if let Some(q) = ctx.translate(*c, "")? {
            *c = q;
        }
    }
    Ok(report)
}
