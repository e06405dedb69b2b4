//! Globals and function-static variables of the unit, named as model.rs
//! says: the symbol for external globals, `file:name` for file statics,
//! `file:function:name` for function statics.

use crate::debuginfo::{ops, DiTypes};
use crate::ir::{Ir, Md, Val};
use inkwell::llvm_sys::LLVMLinkage;
use mcr_types::Global;

const TAG_SUBPROGRAM: u16 = 0x2e;
/// DILexicalBlock and DILexicalBlockFile both carry this tag.
const TAG_LEXICAL_BLOCK: u16 = 0x0b;

/// One defined global with what its descriptor needs.
pub struct GlobalInfo {
    pub value: Val,
    pub record: Global,
}

/// The enclosing function name of a variable scope, if any.
fn function_of(ir: &Ir, mut scope: Option<Md>) -> Option<String> {
    for _ in 0..64 {
        let s = scope?;
        if !s.is_node(ir) {
            return None;
        }
        match s.tag() {
            TAG_SUBPROGRAM => return s.str_op(ir, ops::SP_NAME),
            TAG_LEXICAL_BLOCK => scope = s.node_op(ir, ops::BLOCK_SCOPE),
            _ => return None,
        }
    }
    None
}

/// Every defined global of the module that carries debug info (compiler
/// temporaries such as string literals carry none and are not state).
pub fn collect(ir: &Ir, di: &mut DiTypes, unit_file: &str) -> Vec<GlobalInfo> {
    let mut out = Vec::new();
    for g in ir.globals() {
        let sym = g.name();
        if sym.starts_with("__mcr_hook_type_") {
            // mcr.h's MCR_TRANSFORM: not state, but its type names the
            // hook's old-layout struct, which the update check compares
            // with the old version's (so it must be in the type map).
            if let Some(var) = ir.global_di_vars(g).first() {
                di.name(var.node_op(ir, ops::VAR_TYPE));
            }
            continue;
        }
        if g.is_declaration() || sym.starts_with("llvm.") || sym.starts_with("__mcr") {
            continue;
        }
        if matches!(g.linkage(), LLVMLinkage::LLVMAvailableExternallyLinkage) {
            continue;
        }
        // String literals (`.str`, `.str.1`): constant, private, not state.
        if g.is_global_constant() && matches!(g.linkage(), LLVMLinkage::LLVMPrivateLinkage) {
            continue;
        }
        let Some(var) = ir.global_di_vars(g).first().copied() else {
            continue;
        };
        let name = var.str_op(ir, ops::VAR_NAME).unwrap_or_else(|| sym.clone());
        let ty = di.name(var.node_op(ir, ops::VAR_TYPE));
        let is_static = matches!(
            g.linkage(),
            LLVMLinkage::LLVMInternalLinkage | LLVMLinkage::LLVMPrivateLinkage
        );
        let func = function_of(ir, var.node_op(ir, ops::VAR_SCOPE));
        let id = match (&func, is_static) {
            (Some(f), _) => format!("{unit_file}:{f}:{name}"),
            (None, true) => format!("{unit_file}:{name}"),
            (None, false) => sym.clone(),
        };
        let vt = g.global_value_type();
        let size = if ir.is_sized(vt) { ir.abi_size(vt) } else { 0 };
        out.push(GlobalInfo {
            value: g,
            record: Global {
                name: id,
                symbol: sym,
                ty,
                size,
                file: unit_file.to_string(),
                is_static: is_static || func.is_some(),
                thread_local: g.is_thread_local(),
                constant: g.is_global_constant(),
            },
        });
    }
    out
}
