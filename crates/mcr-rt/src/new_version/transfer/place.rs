//! Placing every inherited heap object (the old heap is here, at its old
//! addresses): an object whose type kept its layout, or whose type is
//! unknown, *keeps* its address; one paired with a new start-up object is
//! *poured* into it; one whose layout changed *moves* to a fresh object in
//! the new layout, unless a hidden reference *pins* it, and then it is
//! converted where it is. What comes out still holds old pointers: the
//! later phases rewrite them.

use super::context::{Ctx, Move};
use super::global_values::Pristine;
use super::pinned;
use super::sites::{SiteMeaning, SiteTable};
use super::TransferError;
use crate::heap::{self, Object, Site};
use crate::old_version::checkpoint::{SavedSite, State};
use crate::program::hooks::Planner;
use mcr_types::protocol::UpdateReport;
use std::collections::{HashMap, HashSet};

extern "C" {
    fn __mcr_malloc(size: usize, site: *const Site) -> *mut u8;
}

/// `count` values of type `ty` at `addr`, in their new layout, whose
/// pointers are still the old version's.
pub(super) struct TypedValue<'s> {
    pub(super) addr: u64,
    pub(super) ty: &'s str,
    pub(super) count: u64,
}

/// Memory with no known type, scanned word by word (conservatively).
pub(super) struct UntypedObject<'s> {
    pub(super) addr: u64,
    pub(super) size: u64,
    /// Where the old object was allocated, for messages.
    pub(super) site: Option<&'s SavedSite>,
}

/// What placing left for the pointer phases.
#[derive(Default)]
pub(super) struct Placed<'s> {
    pub(super) typed: Vec<TypedValue<'s>>,
    pub(super) untyped: Vec<UntypedObject<'s>>,
}

/// The heap objects the old version handed over.
pub(super) fn inherited_objects() -> Vec<Object> {
    let mut inherited = Vec::new();
    heap::for_each_live(|o| {
        if heap::is_inherited(o.addr) {
            inherited.push(o);
        }
    });
    inherited
}

/// A fresh heap object of `size` zeroed bytes at this version's `site`.
pub(super) fn alloc_zeroed(size: u64, site: *const Site) -> Result<*mut u8, TransferError> {
    // SAFETY: allocation through the runtime's own typed entry point.
    let p = unsafe { __mcr_malloc(size as usize, site) };
    if p.is_null() {
        return Err(TransferError::Alloc(size));
    }
    // SAFETY: a fresh object of `size` bytes.
    unsafe { std::ptr::write_bytes(p, 0, size as usize) };
    Ok(p)
}

/// The inputs of placement, decided by the phases before it.
pub(super) struct Decisions<'d> {
    /// Old start-up object -> its new counterpart (`startup_pairs`).
    pub(super) pairs: &'d HashMap<u64, u64>,
    /// Sizes of the new start-up objects.
    pub(super) new_sizes: &'d HashMap<u64, u64>,
    /// Old start-up objects unchanged since the old start-up.
    pub(super) unchanged_startup: &'d HashSet<u64>,
    /// Changed objects a hidden reference holds (`pinned`).
    pub(super) pins: &'d HashSet<u64>,
    /// Which unchanged start-up graphs the new start-up's values win.
    pub(super) pristine: &'d Pristine,
}

/// Places every inherited object (see the module comment).
pub(super) fn run<'s>(
    ctx: &mut Ctx<'s>,
    planner: &mut Planner,
    sites: &SiteTable<'s>,
    inherited: &[Object],
    d: &Decisions,
    report: &mut UpdateReport,
) -> Result<Placed<'s>, TransferError> {
    let mut placed = Placed::default();
    let mut meanings: HashMap<u64, SiteMeaning<'s>> = HashMap::new();
    for o in inherited {
        report.bytes += o.size as u64;
        let m = *meanings
            .entry(o.site as u64)
            .or_insert_with(|| sites.meaning(o.site as u64, &ctx.v));
        if let Some(&n) = (!d.pairs.is_empty())
            .then(|| d.pairs.get(&(o.addr as u64)))
            .flatten()
        {
            pour_into_pair(ctx, planner, o, n, m, d, &mut placed, report)?;
            report.objects_paired += 1;
            continue;
        }
        let Some((tn, ot, nt)) = m.typed() else {
            heap::set_site(o.addr, m.new);
            report.objects_conservative += 1;
            placed.untyped.push(UntypedObject {
                addr: o.addr as u64,
                size: o.size as u64,
                site: m.old,
            });
            continue;
        };
        let count = ctx.v.element_count(ot, o.size as u64, true);
        report.objects_precise += 1;
        if ctx.v.identical(ot, nt, 0) {
            // Keep: same layout, same address.
            heap::set_site(o.addr, m.new);
            if planner.contains_hooked(&ctx.v, nt) {
                // SAFETY: a live object of `o.size` bytes.
                let old = unsafe { std::slice::from_raw_parts(o.addr as *const u8, o.size) };
                planner.collect_copy(&ctx.v, ot, nt, old, o.addr as u64, count)?;
            }
            placed.typed.push(TypedValue {
                addr: o.addr as u64,
                ty: tn,
                count,
            });
            continue;
        }
        if d.pins.contains(&(o.addr as u64)) {
            // Pin: converted where it is.
            pinned::convert(
                ctx,
                planner,
                o.addr as u64,
                o.size as u64,
                tn,
                (ot, nt),
                count,
                m.new,
            )?;
            placed.typed.push(TypedValue {
                addr: o.addr as u64,
                ty: tn,
                count,
            });
            report.objects_pinned += 1;
            continue;
        }
        // Move: a fresh object in the new layout.
        let tail = o.size as u64 - count * ot.size;
        let new_size = count * nt.size + tail;
        let p = alloc_zeroed(new_size, m.new)?;
        // SAFETY: `o` is a live object of `o.size` bytes; `p` is fresh.
        let (src, dst) = unsafe {
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
        placed.typed.push(TypedValue {
            addr: p as u64,
            ty: tn,
            count,
        });
        report.objects_moved += 1;
    }
    Ok(placed)
}

/// Pours an old start-up object into its new counterpart `n`, converted to
/// the new layout, unless what the new start-up built wins (see
/// `global_values`): built at start-up and never changed since, with no
/// pointers or part of a start-up graph a global left to the new
/// start-up's (a changed default, a new table), as for globals.
#[allow(clippy::too_many_arguments)]
fn pour_into_pair<'s>(
    ctx: &mut Ctx<'s>,
    planner: &mut Planner,
    o: &Object,
    n: u64,
    m: SiteMeaning<'s>,
    d: &Decisions,
    placed: &mut Placed<'s>,
    report: &mut UpdateReport,
) -> Result<(), TransferError> {
    let nsize = d.new_sizes[&n];
    // SAFETY: both are live objects of the given sizes.
    let (src, dst) = unsafe {
        (
            std::slice::from_raw_parts(o.addr as *const u8, o.size),
            std::slice::from_raw_parts_mut(n as *mut u8, nsize as usize),
        )
    };
    let unchanged = d.unchanged_startup.contains(&(o.addr as u64));
    match m.typed() {
        Some((tn, ot, nt)) if ot.size > 0 && nt.size > 0 => {
            let count = ctx
                .v
                .element_count(ot, o.size as u64, true)
                .min(ctx.v.element_count(nt, nsize, false));
            let keep_new =
                unchanged && (ctx.slots_of(tn).is_empty() || d.pristine.keeps_new(o.addr as u64));
            if std::env::var_os("MCR_DEBUG").is_some() {
                eprintln!(
                    "mcr-rt: start-up object {tn} at {:#x}: unchanged {unchanged}, pointers {}, kept from the new start-up: {keep_new}",
                    o.addr,
                    !ctx.slots_of(tn).is_empty()
                );
            }
            if !keep_new {
                ctx.v
                    .convert_elements(ot, nt, src, dst, count as usize, tn)?;
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
                // Its pointers are old ones.
                placed.typed.push(TypedValue {
                    addr: n,
                    ty: tn,
                    count,
                });
            }
            report.objects_precise += 1;
        }
        _ => {
            // Part of a start-up graph left for the new one: the new bytes
            // stay (a string the new entry points to).
            let keep_new = unchanged && d.pristine.keeps_new(o.addr as u64);
            if !keep_new {
                let k = src.len().min(dst.len());
                dst[..k].copy_from_slice(&src[..k]);
                placed.untyped.push(UntypedObject {
                    addr: n,
                    size: nsize,
                    site: m.old,
                });
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
    Ok(())
}

/// The old state that placing needs besides the heap: used to decide
/// which start-up objects are unchanged.
pub(super) fn unchanged_startup(state: &State) -> HashSet<u64> {
    state
        .startup_objects
        .iter()
        .filter(|o| o.unchanged)
        .map(|o| o.addr)
        .collect()
}
