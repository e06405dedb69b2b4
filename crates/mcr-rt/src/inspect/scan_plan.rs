//! A type's scan plan for the trace: where its pointers are (followed
//! precisely) and which ranges are scanned conservatively (unions,
//! integers of 8 bytes or more, byte arrays of 8 bytes or more), per
//! element of the type, built once per type from the type map.

use mcr_types::{TypeDef, TypeKind};
use std::collections::HashMap;

/// How the objects of one allocation site (or one global) are scanned.
#[derive(Default)]
pub(super) struct Plan {
    /// Size of one element of the type; 0: scan everything conservatively.
    pub(super) elem: u64,
    /// Offsets of pointer fields in one element.
    pub(super) ptrs: Vec<u32>,
    /// (offset, length) of parts scanned conservatively in one element.
    pub(super) cons: Vec<(u32, u32)>,
}

/// Builds the scan plan of a type: `None` when its layout is not fully
/// known (then the caller scans conservatively).
pub(super) fn plan_of(idx: &HashMap<&str, &TypeDef>, ty: &TypeDef) -> Option<Plan> {
    if ty.size == 0 || ty.size > u32::MAX as u64 {
        return None;
    }
    // Objects of bytes (strdup, char buffers) may hold anything memcpy'd.
    if ty.kind == TypeKind::Scalar && ty.size == 1 {
        return None;
    }
    let mut p = Plan {
        elem: ty.size,
        ..Default::default()
    };
    let mut cons = Vec::new();
    if !layout(idx, ty, 0, &mut p.ptrs, &mut cons, 0) {
        return None;
    }
    cons.sort_unstable();
    for (o, l) in cons {
        match p.cons.last_mut() {
            Some((po, pl)) if *po + *pl >= o => *pl = (*pl).max(o + l - *po),
            _ => p.cons.push((o, l)),
        }
    }
    Some(p)
}

/// Adds the pointer slots and conservative ranges of `ty` at `base`; false
/// if some part's type is unknown.
pub(super) fn layout(
    idx: &HashMap<&str, &TypeDef>,
    ty: &TypeDef,
    base: u64,
    ptrs: &mut Vec<u32>,
    cons: &mut Vec<(u32, u32)>,
    depth: u32,
) -> bool {
    if depth > 16 {
        return false;
    }
    match ty.kind {
        TypeKind::Pointer => ptrs.push(base as u32),
        TypeKind::Union => cons.push((base as u32, ty.size as u32)),
        TypeKind::Scalar => {
            // An integer that can hold a pointer (uintptr_t, long, size_t).
            if ty.size >= 8 && ty.encoding != Some(mcr_types::Encoding::Float) {
                cons.push((base as u32, ty.size as u32));
            }
        }
        TypeKind::Struct => {
            for f in &ty.fields {
                if f.bit_size.is_some() {
                    continue;
                }
                let Some(ft) = idx.get(f.ty.as_str()) else {
                    return false;
                };
                if !layout(idx, ft, base + f.offset, ptrs, cons, depth + 1) {
                    return false;
                }
            }
        }
        TypeKind::Array => {
            let Some(et) = ty.target.as_deref().and_then(|t| idx.get(t)) else {
                return false;
            };
            let Some(n) = ty.count else {
                return true; // flexible: the object's tail is scanned conservatively
            };
            if et.size == 0 || n == 0 {
                return true;
            }
            if et.size == 1 {
                // A byte buffer: anything may have been memcpy'd into it.
                if n >= 8 {
                    cons.push((base as u32, n as u32));
                }
                return true;
            }
            let (mut ip, mut ic) = (Vec::new(), Vec::new());
            if !layout(idx, et, 0, &mut ip, &mut ic, depth + 1) {
                return false;
            }
            if ip.is_empty() && ic.is_empty() {
                return true;
            }
            for i in 0..n {
                let o = base + i * et.size;
                ptrs.extend(ip.iter().map(|x| x + o as u32));
                cons.extend(ic.iter().map(|&(x, l)| (x + o as u32, l)));
            }
        }
        TypeKind::Enum | TypeKind::Function => {}
    }
    true
}
