//! Carved objects (pool and slab allocators, see `heap::carved`) in the
//! state transfer. Their allocator owns the memory around them (free lists,
//! a pool's bump pointer, a slab's size class), so they cannot move: each
//! keeps its address. One whose type kept its layout is only re-typed; one
//! whose layout changed is converted in place when its new layout fits in
//! the bytes it has, and pointers into it are rewritten as for a moved
//! object (a [`Move`] whose old and new address are equal). One that would
//! need more bytes refuses the update, naming the type, the allocator and
//! the call site. The heap blocks holding them keep their address too
//! (never paired with a new start-up object), and their own bytes are
//! scanned conservatively *around* the carved objects.

use super::context::Ctx;
use super::place::{Placed, TypedValue, UntypedObject};
use super::sites::{site_text, SiteTable};
use super::TransferError;
use crate::heap::{self, carved::Carved};
use crate::old_version::checkpoint::State;
use mcr_types::protocol::UpdateReport;
use std::collections::HashSet;

/// Heap blocks that hold old carved objects: they must keep their address.
pub(super) fn parents(state: &State) -> HashSet<u64> {
    state
        .carved
        .iter()
        .filter_map(|&(a, _, _)| heap::find(a as usize))
        .map(|o| o.addr as u64)
        .collect()
}

/// Places every old carved object (see the module comment): typed ones go
/// to `typed` for their pointers to be fixed, untyped ones to `untyped`
/// for a conservative scan. Returns the objects to record in this
/// version's index once the transfer succeeds.
pub(super) fn place<'s>(
    state: &'s State,
    ctx: &mut Ctx<'s>,
    sites: &SiteTable<'s>,
    placed: &mut Placed<'s>,
    report: &mut UpdateReport,
) -> Result<Vec<Carved>, TransferError> {
    let mut out = Vec::with_capacity(state.carved.len());
    for &(addr, size, site) in &state.carved {
        let old_site = sites.old_site(site);
        let new_site = sites.new_site(old_site);
        out.push(Carved {
            addr: addr as usize,
            size: size as usize,
            site: new_site,
        });
        report.objects_carved += 1;
        let tn = old_site.and_then(|s| s.type_name.as_deref());
        let (Some(tn), Some(ot), Some(nt)) = (
            tn,
            tn.and_then(|t| ctx.v.old_type(t)),
            tn.and_then(|t| ctx.v.new_type(t)),
        ) else {
            report.objects_conservative += 1;
            placed.untyped.push(UntypedObject {
                addr,
                size,
                site: old_site,
            });
            continue;
        };
        report.objects_precise += 1;
        let count = ctx.v.element_count(ot, size, true);
        if ctx.v.identical(ot, nt, 0) {
            placed.typed.push(TypedValue {
                addr,
                ty: tn,
                count,
            });
            continue;
        }
        let tail = size - count * ot.size;
        let new_size = count * nt.size + tail;
        if new_size > size {
            let id = format!("{:016x}", old_site.map_or(0, |s| s.key));
            let allocator = state
                .typemap
                .alloc_sites
                .iter()
                .find(|x| x.id == id)
                .map_or_else(|| "its allocator".to_string(), |x| x.allocator.clone());
            return Err(TransferError::CarvedGrows {
                ty: tn.to_string(),
                old_size: size,
                new_size,
                allocator,
                site: site_text(old_site, state),
            });
        }
        // SAFETY: a live carved object of `size` bytes inside a live heap
        // block; no other thread runs during the transfer.
        unsafe { ctx.convert_in_place(addr, size, size, tn, (ot, nt), count) }?;
        placed.typed.push(TypedValue {
            addr,
            ty: tn,
            count,
        });
        report.objects_carved_converted += 1;
    }
    Ok(out)
}

/// The parts of `[a, a + len)` not covered by a carved object of `sorted`
/// (carved objects of the old version, sorted by address). A range that is
/// itself a carved object is returned whole: a carve never covers a whole
/// heap block (that one is typed instead), so it is the object, not a block.
pub(super) fn gaps(a: u64, len: u64, sorted: &[(u64, u64, u64)]) -> Vec<(u64, u64)> {
    let end = a + len;
    let mut k = sorted.partition_point(|c| c.0 < a);
    if k == sorted.len() || sorted[k].0 >= end || (sorted[k].0 == a && sorted[k].1 == len) {
        return vec![(a, len)];
    }
    let mut out = Vec::new();
    let mut at = a;
    while k < sorted.len() && sorted[k].0 < end {
        let (ca, cs, _) = sorted[k];
        if ca > at {
            out.push((at, ca - at));
        }
        at = at.max(ca + cs);
        k += 1;
    }
    if at < end {
        out.push((at, end - at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::gaps;

    #[test]
    fn gaps_skip_carved_objects() {
        let c = [(100, 10, 0), (120, 8, 0), (200, 50, 0)];
        assert_eq!(gaps(96, 40, &c), vec![(96, 4), (110, 10), (128, 8)]);
        assert_eq!(gaps(0, 50, &c), vec![(0, 50)]);
        assert_eq!(gaps(200, 50, &c), vec![(200, 50)]);
        assert_eq!(gaps(200, 60, &c), vec![(250, 10)]);
        assert_eq!(gaps(190, 100, &c), vec![(190, 10), (250, 40)]);
    }
}
