//! Calls that end carved objects: a slab allocator's free function
//! (`slabs_free(it, ...)`) and a pool's release function
//! (`ngx_reset_pool(pool)`), both named in mcr.toml. Before each direct
//! call the runtime is told (`__mcr_uncarve(ptr)`, `__mcr_carve_release(ptr)`,
//! docs/ABI.md), so its index of carved objects never keeps an object the
//! program has given back. Told *before* the call: the free function may
//! reuse the memory at once (a freelist link written into it).

use crate::alloc_sites::Carvers;
use crate::ir::Ir;

/// Inserts the runtime calls; returns how many were inserted.
pub fn rewrite(ir: &Ir, carvers: &Carvers) -> usize {
    let mut n = 0;
    let groups = [
        ("__mcr_uncarve", &carvers.frees),
        ("__mcr_carve_release", &carvers.releases),
    ];
    for (entry, names) in groups {
        for (name, &arg) in names {
            let Some(f) = ir.named_function(name) else {
                continue;
            };
            let p = ir.ptr_ty();
            let fty = ir.fn_ty(ir.ptr_ty(), &[p]);
            let hook = ir.get_or_declare(entry, fty);
            ir.add_fn_attr(hook, u32::MAX, "nounwind", 0);
            for u in f.users() {
                if !u.is_call() || u.called_value() != Some(f) || arg >= u.num_args() {
                    continue;
                }
                let Some(ptr) = u.operand(arg).filter(|v| v.type_of().is_pointer()) else {
                    continue;
                };
                ir.build_call(fty, hook, &[ptr], u, u.debug_loc());
                n += 1;
            }
        }
    }
    n
}
