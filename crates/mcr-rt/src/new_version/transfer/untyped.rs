//! The conservative scan of untyped memory: every aligned word that could
//! be a pointer. Untyped memory must not point into an object that moved
//! to a new layout (the update is refused, naming where the memory was
//! allocated). Its words that hold the exact address of an old function,
//! or an address inside an old global, are rewritten (libraries keep
//! callbacks and pointers to the program's static data: libevent's
//! events); with 64-bit randomized addresses an integer that equals one by
//! chance is not a practical risk, and `MCR_STRICT_CONSERVATIVE=1` refuses
//! the update instead.

use super::carved;
use super::context::Ctx;
use super::interior::Rewrites;
use super::place::UntypedObject;
use super::sites::site_text;
use super::TransferError;
use crate::old_version::checkpoint::State;
use mcr_types::protocol::UpdateReport;

/// Scans every untyped object placing left, around the carved objects
/// inside them (those are typed).
pub(super) fn run(
    ctx: &Ctx,
    state: &State,
    untyped: &[UntypedObject],
    interior_words: &Rewrites,
    report: &mut UpdateReport,
) -> Result<(), TransferError> {
    let strict = std::env::var_os("MCR_STRICT_CONSERVATIVE").is_some();
    for o in untyped {
        for (a, sz) in carved::gaps(o.addr, o.size, &state.carved) {
            for w in (a.next_multiple_of(8)..(a + sz).saturating_sub(7)).step_by(8) {
                // SAFETY: reading inside a live object.
                let p = unsafe { (w as *const u64).read() };
                if p < 4096 || interior_words.covers(w) {
                    continue;
                }
                if let Some(m) = ctx.move_containing(p).filter(|m| !m.same_layout) {
                    // A carved or pinned object converted in place kept its
                    // address: a pointer to its start (or to a field that
                    // kept its offset) is still right (stale words in a
                    // pool's free space typically are such pointers).
                    if ctx.keeps_address(m, p) {
                        continue;
                    }
                    // A field of a moved object named by untyped memory
                    // follows the field (`interior`).
                    if let Some(q) = ctx.moved_field(m, p).filter(|_| !m.in_place) {
                        // SAFETY: an aligned word inside a live object.
                        unsafe { (w as *mut u64).write(q) };
                        report.conservative_rewrites += 1;
                        continue;
                    }
                    return Err(TransferError::MovedReferencedFromUntyped {
                        ty: m.ty.to_string(),
                        from_site: format!(
                            "untyped memory allocated at {}",
                            site_text(o.site, state)
                        ),
                        at: p - m.old,
                    });
                }
                if let Some(q) = ctx.translate(p, "")?.filter(|&q| q != p) {
                    if strict {
                        return Err(TransferError::StaticReferencedFromUntyped {
                            from_site: site_text(o.site, state),
                        });
                    }
                    // SAFETY: an aligned word inside a live object.
                    unsafe { (w as *mut u64).write(q) };
                    report.conservative_rewrites += 1;
                }
            }
        }
    }
    Ok(())
}

/// A worker's carried untyped objects: every word that translates is
/// rewritten. Its objects arrived by value, so no old copy of a moved
/// object is reachable through them but by address.
pub(super) fn rewrite_carried(
    ctx: &Ctx,
    untyped: &[UntypedObject],
    report: &mut UpdateReport,
) -> Result<(), TransferError> {
    for o in untyped {
        for w in (o.addr..o.addr + o.size.saturating_sub(7)).step_by(8) {
            // SAFETY: an aligned word inside a live object.
            let p = unsafe { (w as *const u64).read() };
            if p < 4096 {
                continue;
            }
            if let Some(q) = ctx.translate(p, "")? {
                // SAFETY: as above.
                unsafe { (w as *mut u64).write(q) };
                report.conservative_rewrites += 1;
            }
        }
    }
    Ok(())
}
