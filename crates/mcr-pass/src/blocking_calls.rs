//! Routing calls through the runtime (ABI.md "Blocking-call wrappers" and
//! "Start-up input wrappers"): calls that can block, so it can park a
//! thread there when the program quiesces, and calls whose answers differ
//! from run to run, so a new version's start-up gets the old one's.

use crate::ir::Ir;
use mcr_types::abi::{wrapper_name, BLOCKING_CALLS, STARTUP_INPUT_CALLS};

/// Rewrites direct calls to the external functions in [`BLOCKING_CALLS`]
/// and [`STARTUP_INPUT_CALLS`] to their runtime wrappers; a function of
/// that name defined in the unit itself is the program's own and is left
/// alone, as are uses that are not calls (address taken). Returns the
/// number of calls rewritten.
pub fn rewrite(ir: &Ir) -> usize {
    let mut n = 0;
    for name in BLOCKING_CALLS.iter().chain(STARTUP_INPUT_CALLS) {
        let Some(f) = ir.named_function(name) else {
            continue;
        };
        if !f.is_declaration() {
            continue;
        }
        let wrapper = ir.get_or_declare(&wrapper_name(name), f.global_value_type());
        for u in f.users() {
            if !u.is_call() || u.called_value() != Some(f) {
                continue;
            }
            let last = u.num_operands() - 1;
            u.set_operand(last, wrapper);
            n += 1;
        }
    }
    n
}

/// Marks every rewritten blocking call made directly in one of
/// `functions` (mcr.toml `[quiescent]`, the program's event loops) with a
/// call to `__mcr_declared_point()` right before it: the runtime then
/// takes that call, and only such calls, for a quiescent point. Returns
/// the number of calls marked.
pub fn mark_declared_points(ir: &Ir, functions: &std::collections::BTreeSet<String>) -> usize {
    if functions.is_empty() {
        return 0;
    }
    let marker_ty = ir.fn_ty(ir.void_ty(), &[]);
    let mut n = 0;
    for name in BLOCKING_CALLS.iter().filter(|&&n| n != "pthread_create") {
        let Some(w) = ir.named_function(&wrapper_name(name)) else {
            continue;
        };
        for u in w.users() {
            if !u.is_call()
                || u.called_value() != Some(w)
                || !functions.contains(&u.parent_function().name())
            {
                continue;
            }
            let marker = ir.get_or_declare("__mcr_declared_point", marker_ty);
            ir.build_call(marker_ty, marker, &[], u, u.debug_loc());
            n += 1;
        }
    }
    n
}
