//! Writing what the runtime reads (ABI.md): per-site descriptors in
//! `mcr_sites`, per-global descriptors in `mcr_globals`, the unit's type
//! map record in `mcr_typemap`; and rewriting the allocation calls to
//! carry their descriptor.
//!
//! Every emitted global is put in `@llvm.used` (a superset of
//! `@llvm.compiler.used`): that keeps it through optimisation, and makes
//! LLVM mark its section `SHF_GNU_RETAIN` so `--gc-sections` keeps it too.

use crate::alloc_sites::{AllocKind, Rewrite, Site};
use crate::globals::GlobalInfo;
use crate::ir::{Ir, Ty, Val};
use inkwell::llvm_sys::LLVMLinkage;
use mcr_types::abi::WrapperKind;
use std::collections::HashMap;

use mcr_types::abi::{
    Field, DECLARED_POINTS_SECTION, GLOBALS_SECTION, GLOBAL_FIELDS, SITES_SECTION, SITE_FIELDS,
    TYPEMAP_SECTION,
};

pub struct Emitter<'a> {
    ir: &'a Ir,
    strings: HashMap<String, Val>,
    used: Vec<Val>,
    site_ty: Ty,
    global_ty: Ty,
}

impl<'a> Emitter<'a> {
    pub fn new(ir: &'a Ir) -> Self {
        // The records' LLVM types, from the field lists of mcr_types::abi
        // that the runtime's structs are checked against.
        let record = |fields: &[Field]| {
            let tys: Vec<Ty> = fields
                .iter()
                .map(|f| match f {
                    Field::U32 => ir.i32_ty(),
                    Field::U64 => ir.i64_ty(),
                    Field::Ptr => ir.ptr_ty(),
                })
                .collect();
            ir.struct_ty(&tys)
        };
        Emitter {
            ir,
            strings: HashMap::new(),
            used: Vec::new(),
            site_ty: record(SITE_FIELDS),
            global_ty: record(GLOBAL_FIELDS),
        }
    }

    /// A NUL-terminated string constant, shared within the unit.
    fn cstr(&mut self, s: &str) -> Val {
        if let Some(v) = self.strings.get(s) {
            return *v;
        }
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        let init = self.ir.const_bytes(&bytes);
        let g = self.ir.add_global(init.type_of(), "__mcr_str", init);
        g.set_linkage(LLVMLinkage::LLVMPrivateLinkage);
        g.set_constant(true);
        g.set_unnamed_addr();
        g.set_alignment(1);
        self.strings.insert(s.to_string(), g);
        g
    }

    fn opt_cstr(&mut self, s: Option<&str>) -> Val {
        match s {
            Some(s) => self.cstr(s),
            None => self.ir.const_null(self.ir.ptr_ty()),
        }
    }

    /// The descriptor of one allocation site.
    pub fn site(&mut self, site: &Site, file: &str) -> Val {
        let ir = self.ir;
        let key = mcr_types::site_key(file, &site.function, site.ordinal);
        let vals = [
            ir.const_int(ir.i64_ty(), key),
            self.cstr(file),
            self.cstr(&site.function),
            ir.const_int(ir.i32_ty(), site.line as u64),
            ir.const_int(
                ir.i32_ty(),
                site.ty.is_some() as u64 | ((site.carve.is_some() as u64) << 1),
            ),
            self.opt_cstr(site.ty.as_deref()),
            ir.const_int(ir.i64_ty(), site.elem_size),
        ];
        let init = ir.const_struct(&vals);
        let g = ir.add_global(self.site_ty, "__mcr_site", init);
        g.set_linkage(LLVMLinkage::LLVMInternalLinkage);
        g.set_section(SITES_SECTION);
        g.set_alignment(8);
        self.used.push(g);
        g
    }

    /// The descriptor of one global variable.
    pub fn global(&mut self, gi: &GlobalInfo) {
        let ir = self.ir;
        let r = &gi.record;
        // A thread-local has no address common to all threads: the
        // descriptor points at a function returning its address in the
        // calling thread (ABI.md).
        let addr = if r.thread_local {
            ir.define_tls_accessor("__mcr_tls_addr", gi.value)
        } else {
            gi.value
        };
        let flags =
            (r.thread_local as u64) | ((r.constant as u64) << 1) | ((r.thread_local as u64) << 2);
        let vals = [
            addr,
            self.cstr(&r.name),
            self.cstr(&r.ty),
            ir.const_int(ir.i64_ty(), r.size),
            ir.const_int(ir.i64_ty(), flags),
        ];
        let init = ir.const_struct(&vals);
        let g = ir.add_global(self.global_ty, "__mcr_global", init);
        g.set_linkage(LLVMLinkage::LLVMInternalLinkage);
        g.set_section(GLOBALS_SECTION);
        g.set_alignment(8);
        self.used.push(g);
    }

    /// The unit's type-map record (alignment 1, so records concatenate).
    pub fn typemap(&mut self, record: &[u8]) {
        let init = self.ir.const_bytes(record);
        let g = self.ir.add_global(init.type_of(), "__mcr_typemap", init);
        g.set_linkage(LLVMLinkage::LLVMInternalLinkage);
        g.set_constant(true);
        g.set_section(TYPEMAP_SECTION);
        g.set_alignment(1);
        self.used.push(g);
    }

    /// Says that this unit marks declared quiescent points
    /// ([`DECLARED_POINTS_SECTION`]).
    pub fn declared_points(&mut self) {
        let init = self.ir.const_bytes(&[1]);
        let g = self
            .ir
            .add_global(init.type_of(), "__mcr_declared_points", init);
        g.set_linkage(LLVMLinkage::LLVMInternalLinkage);
        g.set_constant(true);
        g.set_section(DECLARED_POINTS_SECTION);
        g.set_alignment(1);
        self.used.push(g);
    }

    /// The record of an allocation wrapper this unit proved (`wrappers.rs`),
    /// for calls of it from other units.
    pub fn wrapper(&mut self, f: Val, kind: AllocKind) {
        let ir = self.ir;
        let vals = [
            f,
            ir.const_int(ir.i32_ty(), wrapper_kind(kind) as u64),
            ir.const_int(ir.i32_ty(), 0),
        ];
        let init = ir.const_struct(&vals);
        let g = ir.add_global(init.type_of(), "__mcr_wrapper", init);
        g.set_linkage(LLVMLinkage::LLVMInternalLinkage);
        g.set_constant(true);
        g.set_section(mcr_types::abi::WRAPPERS_SECTION);
        g.set_alignment(8);
        self.used.push(g);
    }

    pub fn finish(self) {
        self.ir.append_used("llvm.used", &self.used);
    }
}

/// Points an allocation call at its descriptor: standard allocators become
/// the typed runtime entry point with the descriptor appended; user
/// wrappers keep their call and pass the result to `__mcr_retag`.
pub fn rewrite_call(ir: &Ir, site: &Site, desc: Val) {
    let call = site.call;
    let loc = call.debug_loc();
    let p = ir.ptr_ty();
    match site.rewrite {
        Rewrite::Typed(kind) => {
            let fty = call.called_fn_type();
            let mut params = fty.param_types();
            params.push(p);
            let new_ty = ir.fn_ty(fty.return_type(), &params);
            let entry = ir.get_or_declare(kind.entry(), new_ty);
            if kind.returns() == 'p'
                && !matches!(
                    kind,
                    crate::alloc_sites::AllocKind::Realloc
                        | crate::alloc_sites::AllocKind::ReallocArray
                )
            {
                ir.add_fn_attr(entry, 0, "noalias", 0);
            }
            ir.add_fn_attr(entry, u32::MAX, "nounwind", 0);
            let mut args: Vec<Val> = (0..call.num_args())
                .filter_map(|i| call.operand(i))
                .collect();
            args.push(desc);
            let new = ir.build_call(new_ty, entry, &args, call, loc);
            call.replace_all_uses_with(new);
            call.erase();
        }
        Rewrite::Retag => {
            let Some(next) = call.next_instruction() else {
                return;
            };
            let fty = ir.fn_ty(p, &[p, p]);
            let retag = ir.get_or_declare("__mcr_retag", fty);
            ir.add_fn_attr(retag, u32::MAX, "nounwind", 0);
            ir.build_call(fty, retag, &[call, desc], next, loc);
        }
        Rewrite::RetagIfWrapper(kind) => {
            let (Some(next), Some(callee)) = (call.next_instruction(), call.called_value()) else {
                return;
            };
            let fty = ir.fn_ty(p, &[p, p, p, ir.i32_ty()]);
            let retag = ir.get_or_declare("__mcr_retag_wrapped", fty);
            ir.add_fn_attr(retag, u32::MAX, "nounwind", 0);
            let k = ir.const_int(ir.i32_ty(), wrapper_kind(kind) as u64);
            ir.build_call(fty, retag, &[call, desc, callee, k], next, loc);
        }
        Rewrite::Carve { size_arg } => {
            let (Some(next), Some(size)) = (call.next_instruction(), call.operand(size_arg)) else {
                return;
            };
            let fty = ir.fn_ty(p, &[p, ir.i64_ty(), p]);
            let carve = ir.get_or_declare("__mcr_carve", fty);
            ir.add_fn_attr(carve, u32::MAX, "nounwind", 0);
            ir.build_call(fty, carve, &[call, size, desc], next, loc);
        }
    }
}

/// The ABI's code for the libc allocator a wrapper behaves like.
fn wrapper_kind(kind: AllocKind) -> WrapperKind {
    match kind {
        AllocKind::Calloc => WrapperKind::Calloc,
        AllocKind::Realloc => WrapperKind::Realloc,
        AllocKind::Strdup => WrapperKind::Strdup,
        _ => WrapperKind::Malloc,
    }
}
