//! Routing calls that can block through the runtime (ABI.md "Blocking-call
//! wrappers"), so it can park a thread there when the program quiesces.

use crate::ir::Ir;

/// The functions whose direct calls become `__mcr_<name>` calls.
pub const BLOCKING: &[&str] = &[
    "accept",
    "accept4",
    "epoll_wait",
    "epoll_pwait",
    "select",
    "pselect",
    "poll",
    "ppoll",
    "read",
    "readv",
    "recv",
    "recvfrom",
    "recvmsg",
    "waitpid",
    "wait",
    "sigwait",
    "sigwaitinfo",
    "sigtimedwait",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "nanosleep",
    "clock_nanosleep",
    "sleep",
    "usleep",
    "pause",
    "sigsuspend",
    "pthread_create",
];

/// Rewrites direct calls to the external functions in [`BLOCKING`]; a
/// function of that name defined in the unit itself is the program's own
/// and is left alone, as are uses that are not calls (address taken).
/// Returns the number of calls rewritten.
pub fn rewrite(ir: &Ir) -> usize {
    let mut n = 0;
    for name in BLOCKING {
        let Some(f) = ir.named_function(name) else {
            continue;
        };
        if !f.is_declaration() {
            continue;
        }
        let wrapper = ir.get_or_declare(&format!("__mcr_{name}"), f.global_value_type());
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
    for name in BLOCKING.iter().filter(|&&n| n != "pthread_create") {
        let Some(w) = ir.named_function(&format!("__mcr_{name}")) else {
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
