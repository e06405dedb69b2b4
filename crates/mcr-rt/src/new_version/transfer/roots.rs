//! The roots: the program's globals and every thread's thread-locals.
//! Globals keep the new start-up's values unless the old program changed
//! them since its own start-up, field by field (`global_values`);
//! thread-locals always take the old thread's values (there is no
//! start-up snapshot of them). Then their pointers are rewritten.

use super::context::Ctx;
use super::global_values::{self, Pristine};
use super::TransferError;
use crate::old_version::checkpoint::State;
use crate::program::hooks::Planner;
use crate::program::thread_locals;
use mcr_types::protocol::UpdateReport;

pub(super) fn run(
    ctx: &mut Ctx,
    planner: &mut Planner,
    state: &State,
    tls: &[thread_locals::Paired],
    pristine: &mut Pristine,
    report: &mut UpdateReport,
) -> Result<(), TransferError> {
    let mut whole = global_values::transfer(ctx, planner, state, pristine, report)?;
    for p in tls {
        for g in &p.old.vars {
            let Some(i) = p.new.iter().find(|i| i.var.name == g.name) else {
                continue;
            };
            let (na, nty) = (i.addr as u64, i.var.type_name);
            // SAFETY: the variable in a live, parked thread of this process,
            // as long as its descriptor says.
            unsafe { ctx.pour(planner, g, na, nty) }?;
            report.thread_locals += 1;
            let label = thread_locals::instance_label(&g.name, &p.old.key);
            whole.push((na, nty.to_string(), label));
        }
    }
    let debug = std::env::var_os("MCR_DEBUG").is_some();
    for (a, t, name) in whole {
        let n = ctx.fix_pointers(a, &t, 1)?;
        if debug {
            eprintln!("mcr-rt: global {name} ({t}) at {a:#x}: {n} pointers rewritten");
        }
    }
    Ok(())
}
