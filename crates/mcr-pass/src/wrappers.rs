//! Finding the unit's allocation wrappers without `mcr.toml`: a function
//! that returns what `malloc`, `calloc`, `realloc` or `strdup` (or another
//! such wrapper) returned, with the size or pointer taken unchanged from
//! its own parameters (`zmalloc`, `ck_malloc`, every server's `xmalloc`).
//!
//! Proof, on an SSA copy of the module (mem2reg: the front end's allocas
//! would hide the data flow): every `ret` returns a call of one allocator
//! kind, or NULL (through phis and selects); each of that call's size
//! arguments is one parameter of the function, unchanged (casts, and a
//! select with a constant as `MALLOC_MIN_SIZE` does, are allowed; `n + 16`
//! is not: the object would not be the caller's `T`s). A function whose
//! parameters then line up with the libc allocator's is a wrapper of that
//! kind: its callers' sites are typed as if they called libc. Anything
//! else (a pointer into the allocation, a cached object, another shape)
//! is not proven and needs `[allocators]`.

use crate::alloc_sites::{AllocKind, Wrappers};
use crate::ir::{Ir, ModuleCopy, Val};
use inkwell::llvm_sys::LLVMOpcode;
use std::collections::HashMap;

/// What a proven allocator function does with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shape {
    kind: AllocKind,
    /// For each of the kind's size arguments (`AllocKind::size_args`), the
    /// parameter it comes from.
    size_from: Vec<u32>,
    /// For realloc and strdup, the parameter the pointer comes from.
    ptr_from: Option<u32>,
}

impl Shape {
    /// The libc allocator itself: its own arguments.
    fn of(kind: AllocKind) -> Shape {
        Shape {
            kind,
            size_from: kind.size_args().to_vec(),
            ptr_from: ptr_arg(kind),
        }
    }
}

/// The kinds a wrapper can have, and the argument holding their pointer.
fn ptr_arg(kind: AllocKind) -> Option<u32> {
    match kind {
        AllocKind::Realloc | AllocKind::Strdup => Some(0),
        _ => None,
    }
}

fn wrappable(kind: AllocKind) -> bool {
    matches!(
        kind,
        AllocKind::Malloc | AllocKind::Calloc | AllocKind::Realloc | AllocKind::Strdup
    )
}

/// The unit's functions proven to be wrappers of a libc allocator, with
/// that allocator's prototype, by name. `known` (mcr.toml's) are taken as
/// given and not reported again.
pub fn find(ir: &Ir, known: &Wrappers) -> Wrappers {
    let Some(copy) = ModuleCopy::new(ir, "mem2reg") else {
        return Wrappers::new();
    };
    let ssa = copy.ir();
    let mut shapes: HashMap<String, Shape> = known
        .iter()
        .filter(|(_, k)| wrappable(**k))
        .map(|(n, &k)| (n.clone(), Shape::of(k)))
        .collect();
    let candidates: Vec<Val> = ssa
        .functions()
        .into_iter()
        .filter(|f| {
            !f.is_declaration()
                && !known.contains_key(&f.name())
                && f.global_value_type().return_type().is_pointer()
        })
        .collect();
    // Wrappers of wrappers (zmalloc -> ztrymalloc_usable -> malloc): until
    // nothing new is proven.
    loop {
        let mut grew = false;
        for &f in &candidates {
            let name = f.name();
            if shapes.contains_key(&name) {
                continue;
            }
            if let Some(s) = prove(f, &shapes) {
                shapes.insert(name, s);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    candidates
        .iter()
        .filter_map(|f| {
            let s = shapes.get(&f.name())?;
            libc_prototype(*f, s).then(|| (f.name(), s.kind))
        })
        .collect()
}

/// The shape `f` has, if every return is one allocator call's result
/// (or NULL) and its arguments are `f`'s parameters unchanged.
fn prove(f: Val, shapes: &HashMap<String, Shape>) -> Option<Shape> {
    let params = f.params();
    let mut found: Option<Shape> = None;
    let mut any = false;
    for i in f.instructions() {
        if i.opcode() != Some(LLVMOpcode::LLVMRet) {
            continue;
        }
        let mut leaves = Vec::new();
        returned(i.operand(0)?, &mut leaves, 0)?;
        for call in leaves {
            let callee = call.called_value().filter(|c| c.is_function())?;
            let name = callee.name();
            let inner = shapes.get(&name).cloned().or_else(|| {
                let k = AllocKind::from_name(&name).filter(|k| wrappable(*k))?;
                callee.is_declaration().then(|| Shape::of(k))
            })?;
            let shape = Shape {
                kind: inner.kind,
                size_from: inner
                    .size_from
                    .iter()
                    .map(|&a| param_of(call.operand(a)?, &params, 0))
                    .collect::<Option<Vec<u32>>>()?,
                ptr_from: match inner.ptr_from {
                    Some(a) => Some(param_of(call.operand(a)?, &params, 0)?),
                    None => None,
                },
            };
            match &found {
                Some(s) if *s != shape => return None,
                _ => found = Some(shape),
            }
            any = true;
        }
    }
    found.filter(|_| any)
}

/// The calls whose result `v` is, through phis and selects; NULL adds
/// nothing; anything else is not an allocation and fails.
fn returned(v: Val, out: &mut Vec<Val>, depth: u32) -> Option<()> {
    if depth > 16 {
        return None;
    }
    if v.is_null_constant() {
        return Some(());
    }
    if v.is_call() {
        out.push(v);
        return Some(());
    }
    match v.opcode()? {
        LLVMOpcode::LLVMPHI => {
            for x in v.phi_incoming() {
                returned(x, out, depth + 1)?;
            }
            Some(())
        }
        LLVMOpcode::LLVMSelect => {
            returned(v.operand(1)?, out, depth + 1)?;
            returned(v.operand(2)?, out, depth + 1)
        }
        _ => None,
    }
}

/// The index of the parameter `v` is, unchanged: through integer casts,
/// phis and selects whose other inputs are constants (`MALLOC_MIN_SIZE`).
fn param_of(v: Val, params: &[Val], depth: u32) -> Option<u32> {
    if depth > 8 {
        return None;
    }
    if v.is_argument() {
        return params.iter().position(|p| *p == v).map(|i| i as u32);
    }
    let arms: Vec<Val> = match v.opcode()? {
        LLVMOpcode::LLVMZExt | LLVMOpcode::LLVMSExt | LLVMOpcode::LLVMTrunc => vec![v.operand(0)?],
        LLVMOpcode::LLVMSelect => vec![v.operand(1)?, v.operand(2)?],
        LLVMOpcode::LLVMPHI => v.phi_incoming(),
        // `+ PREFIX_SIZE` where that is 0 (redis with malloc_usable_size).
        LLVMOpcode::LLVMAdd | LLVMOpcode::LLVMOr => {
            let (a, b) = (v.operand(0)?, v.operand(1)?);
            match (a.const_int(), b.const_int()) {
                (_, Some(0)) => vec![a],
                (Some(0), _) => vec![b],
                _ => return None,
            }
        }
        _ => return None,
    };
    let mut from = None;
    for a in arms.into_iter().filter(|a| a.const_int().is_none()) {
        let p = param_of(a, params, depth + 1)?;
        if from.is_some_and(|q| q != p) {
            return None;
        }
        from = Some(p);
    }
    from
}

/// `f`'s parameters are the libc allocator's, in its order: a call of `f`
/// can be typed like a call of libc's.
fn libc_prototype(f: Val, s: &Shape) -> bool {
    let params = f.global_value_type().param_types();
    let want = s.kind.params();
    params.len() == want.len()
        && params.iter().zip(want.chars()).all(|(t, c)| match c {
            'p' => t.is_pointer(),
            _ => t.is_integer() && t.int_width() == 64,
        })
        && *s == Shape::of(s.kind)
}
