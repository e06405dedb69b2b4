//! A worker's own state, carried by value: a new worker its new master
//! forked has its heap from that master, so the old worker's objects are
//! not in this process's memory; they arrive in its checkpoint
//! (`children`). Its start-up objects are paired with this worker's own;
//! those it changed since, and those it allocated after, are poured into
//! their counterpart or allocated anew, converted to the new layout.
//! Its globals are carried field by field (what changed since its
//! start-up).

use super::context::{Ctx, Move};
use super::place::{alloc_zeroed, Placed, TypedValue, UntypedObject};
use super::sites::SiteTable;
use super::TransferError;
use crate::base::hex::from_hex;
use crate::heap;
use crate::interpose::children::ChildState;
use crate::old_version::checkpoint::State;
use mcr_types::protocol::UpdateReport;
use std::collections::HashMap;

/// The worker's carried objects, into their counterpart (`pairs`) or
/// allocated anew.
pub(super) fn place_carried<'s>(
    ctx: &mut Ctx<'s>,
    sites: &SiteTable<'s>,
    w: &ChildState,
    pairs: &HashMap<u64, u64>,
    report: &mut UpdateReport,
) -> Result<Placed<'s>, TransferError> {
    let mut placed = Placed::default();
    for c in &w.objects {
        let src = from_hex(&c.bytes);
        let m = sites.meaning(c.site, &ctx.v);
        let types = m.typed().filter(|(_, ot, nt)| ot.size > 0 && nt.size > 0);
        let count = types.map_or(0, |(_, ot, _)| ctx.v.element_count(ot, c.size, true));
        let new_size = match types {
            Some((_, ot, nt)) => count * nt.size + (c.size - count * ot.size),
            None => c.size,
        };
        let (new, new_size) = match pairs.get(&c.addr) {
            Some(&n) => (n, heap::find(n as usize).map_or(0, |o| o.size as u64)),
            None => {
                let p = alloc_zeroed(new_size, m.new)?;
                ctx.moves.push(Move {
                    old: c.addr,
                    old_size: c.size,
                    new: p as u64,
                    ty: m.ty.unwrap_or(""),
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
                placed.typed.push(TypedValue {
                    addr: new,
                    ty: tn,
                    count,
                });
                report.objects_precise += 1;
            }
            None => {
                let k = src.len().min(dst.len());
                dst[..k].copy_from_slice(&src[..k]);
                placed.untyped.push(UntypedObject {
                    addr: new,
                    size: k as u64,
                    site: m.old,
                });
                report.objects_conservative += 1;
            }
        }
        report.bytes += c.size;
    }
    Ok(placed)
}

/// Whether `p`, a precise pointer of old worker state, would dangle: it
/// points into the old heap at an object nothing carried (a library's
/// buffer, a start-up object without a counterpart). One to memory the
/// old worker had freed already dangled there too: the program never
/// follows it (nginx's free connection slots keep their last pool), and
/// it stays as it is.
fn dangles(ctx: &Ctx, state: &State, w: &ChildState, p: u64) -> bool {
    let old_heap = (state.heap.base, state.heap.base + state.heap.len);
    p >= old_heap.0
        && p < old_heap.1
        && ctx.move_containing(p).is_none()
        && (w.live.is_empty() || w.points_to_live(p))
}

/// Refuses the worker's update if a carried object's pointer would dangle.
pub(super) fn check_dangling(
    ctx: &mut Ctx,
    state: &State,
    w: &ChildState,
    typed: &[TypedValue],
) -> Result<(), TransferError> {
    for t in typed {
        let slots = ctx.slots_of(t.ty);
        let size = ctx.v.new_type(t.ty).map_or(0, |t| t.size).max(1);
        for e in 0..t.count {
            for (off, _) in &slots.precise {
                // SAFETY: a pointer field inside a live object of type `t.ty`.
                let p = unsafe { ((t.addr + e * size + off) as *const u64).read_unaligned() };
                if dangles(ctx, state, w, p) {
                    return Err(TransferError::WorkerDangling {
                        what: format!("an object of `{}`", t.ty),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The worker's globals, field by field: what changed since its start-up.
/// The old worker's heap is not here to look at: an unchanged pointer
/// keeps the new start-up's value, unless it leads into the old shared
/// memory, which the new master took over (the new start-up's own zone is
/// not what the old workers shared).
pub(super) fn carry_globals(
    ctx: &Ctx,
    state: &State,
    w: &ChildState,
    report: &mut UpdateReport,
) -> Result<(), TransferError> {
    let shared = &state.shared_mappings;
    let into_shared = |old: &[u8]| {
        !shared.is_empty()
            && old.chunks(8).any(|w| {
                let mut b = [0u8; 8];
                b[..w.len()].copy_from_slice(w);
                let p = u64::from_ne_bytes(b);
                crate::program::shared_memory::contains(shared, p)
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
                if r.target.is_some() && dangles(ctx, state, w, p) {
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
    Ok(())
}
