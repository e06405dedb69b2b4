//! The user's transform hooks (`MCR_TRANSFORM`), run once the new state is
//! complete and the old copies of moved objects are still readable; then
//! those old copies are freed, with what hooks asked to free.

use super::context::Ctx;
use super::TransferError;
use crate::heap::{self, carved::Carved};
use crate::program::hooks::{self, Planner, Validity};

extern "C" {
    fn free(p: *mut u8);
}

/// Runs the hooks (returns how many calls), frees the old copies and
/// records this version's carved objects. `status` names the running hook
/// to the old version.
pub(super) fn run(
    ctx: &Ctx,
    planner: &mut Planner,
    carved_objects: Vec<Carved>,
    status: &dyn Fn(&str),
) -> Result<u64, TransferError> {
    let translate = |p: u64| ctx.translate(p, "").ok().flatten().unwrap_or(p);
    let is_old_copy = |p: u64| ctx.move_containing(p).is_some_and(|m| !m.in_place);
    let calls = hooks::run_transforms(
        planner,
        &ctx.v,
        &translate,
        &Validity {
            is_old_copy: &is_old_copy,
        },
        status,
    )
    .map_err(TransferError::Hook)?;
    for m in ctx.moves.iter().filter(|m| !m.in_place) {
        // SAFETY: the old copy of a moved object; nothing points to it now.
        unsafe { free(m.old as *mut u8) };
    }
    for p in heap::take_deferred() {
        // The old copies of moved objects were freed just above.
        if !is_old_copy(p as u64) {
            // SAFETY: a pointer a hook passed to free(), deferred until now.
            unsafe { free(p as *mut u8) };
        }
    }
    heap::carved::restore(carved_objects);
    Ok(calls)
}
