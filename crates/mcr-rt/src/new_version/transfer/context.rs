//! The translation context between the old version and this one: the two
//! type maps, where every old object, global, thread-local, function and
//! library went, and how a pointer found in old state is translated. Built
//! once per transfer; the phases fill in its moves and read it.

use super::TransferError;
use crate::old_version::checkpoint::State;
use crate::{program::globals, program::thread_locals};
use mcr_types::plan::{pointer_slots, Versions};
use mcr_types::{TypeDef, TypeKind, TypeMap};
use std::collections::HashMap;

/// An old object whose contents now live at another address: rebuilt in a
/// new layout, or poured into its new-version counterpart from start-up.
pub(super) struct Move<'a> {
    pub(super) old: u64,
    pub(super) old_size: u64,
    pub(super) new: u64,
    /// Its type's name, the same in both versions (an old type is looked
    /// up in the new map under its own name); empty for untyped objects
    /// (then offsets are kept). Borrowed from the checkpoint's site list:
    /// one allocation per moved object was a measurable part of moving
    /// 50,000.
    pub(super) ty: &'a str,
    /// Offsets inside are unchanged, so untyped memory may point into it.
    pub(super) same_layout: bool,
    /// Converted where it was (a carved object): no old copy to free.
    pub(super) in_place: bool,
}

pub(super) struct Ctx<'a> {
    pub(super) v: Versions<'a>,
    pub(super) moves: Vec<Move<'a>>,
    pub(super) old_globals: Vec<(u64, u64, &'a str, &'a str)>,
    /// Every thread-local variable of every old thread, named by
    /// `thread_locals::instance_label`, sorted by address. Only precise
    /// pointers are translated through it: glibc's own TLS vectors (untyped
    /// heap objects) point into the old threads' TLS blocks too.
    pub(super) old_tls: Vec<(u64, u64, &'a str, &'a str)>,
    /// The new globals, and the thread-locals of the new threads paired
    /// with old ones (under the same labels).
    pub(super) new_globals: HashMap<&'a str, (u64, &'a str)>,
    pub(super) old_funcs: HashMap<u64, &'a str>,
    /// Old shared-library ranges and how far each library moved.
    pub(super) libs: Vec<(u64, u64, i64)>,
    /// Built on the first old function pointer found: parsing our own
    /// symbol table costs milliseconds most updates need not pay.
    pub(super) new_funcs: std::cell::OnceCell<HashMap<&'static str, u64>>,
    pub(super) slots: HashMap<String, std::rc::Rc<Slots>>,
    /// Lowest start and highest end of all moves (set once they are sorted):
    /// a cheap first test before the binary search.
    pub(super) moves_span: (u64, u64),
    /// Spans of the old globals, thread-locals, functions and libraries:
    /// a word outside all of them needs no lookup (most words of a large
    /// untyped buffer are data, and were 40% of a 1 GB transfer).
    pub(super) static_spans: Vec<(u64, u64)>,
}

/// Where a type's pointers are: precise slots with their pointee type, and
/// union ranges scanned conservatively.
pub(super) struct Slots {
    pub(super) precise: Vec<(u64, String)>,
    pub(super) unions: Vec<(u64, u64)>,
}

impl Slots {
    pub(super) fn is_empty(&self) -> bool {
        self.precise.is_empty() && self.unions.is_empty()
    }
}

impl<'a> Ctx<'a> {
    pub(super) fn slots_of(&mut self, ty: &str) -> std::rc::Rc<Slots> {
        if let Some(s) = self.slots.get(ty) {
            return s.clone();
        }
        let mut s = Slots {
            precise: Vec::new(),
            unions: Vec::new(),
        };
        if let Some(t) = self.v.new_type(ty) {
            let look = |n: &str| self.v.new_type(n).cloned();
            pointer_slots(&look, t, 0, &mut s.precise, 0);
            mcr_types::plan::union_ranges(&look, t, 0, &mut s.unions, 0);
        }
        let s = std::rc::Rc::new(s);
        self.slots.insert(ty.to_string(), s.clone());
        s
    }

    /// Sorts the moves by old address once every object is placed, so
    /// that [`Ctx::move_containing`] can search them.
    pub(super) fn seal_moves(&mut self) {
        self.moves.sort_by_key(|m| m.old);
        self.moves_span = (
            self.moves.first().map_or(0, |m| m.old),
            self.moves
                .iter()
                .map(|m| m.old + m.old_size)
                .max()
                .unwrap_or(0),
        );
    }

    /// Writes the old value of a global (or of one thread's thread-local)
    /// into its new-version counterpart at `na`, of new type `nty`,
    /// converted by the types' plan, all of it (the caller rewrites its
    /// pointers); values of hooked types are queued for their hook.
    ///
    /// # Safety
    /// `na` must be a live variable as long as `nty` (or, with no known
    /// type, as the old value).
    pub(super) unsafe fn pour(
        &self,
        planner: &mut crate::program::hooks::Planner,
        g: &crate::old_version::checkpoint::SavedGlobal,
        na: u64,
        nty: &str,
    ) -> Result<(), TransferError> {
        let (ot, nt) = (self.v.old_type(&g.type_name), self.v.new_type(nty));
        let old = &g.bytes;
        let nsize = nt.map(|t| t.size).unwrap_or(old.len() as u64) as usize;
        // SAFETY: per the caller.
        let dst = unsafe { std::slice::from_raw_parts_mut(na as *mut u8, nsize) };
        match (ot, nt) {
            (Some(o), Some(n)) => {
                self.v.convert(o, n, old, dst, &g.name)?;
                planner.collect_copy(&self.v, o, n, old, na, 1)?;
            }
            _ => {
                let k = old.len().min(dst.len());
                dst[..k].copy_from_slice(&old[..k]);
            }
        }
        Ok(())
    }

    /// Offset `off` inside an old `ot` value, as an offset inside `nt`.
    pub(super) fn map_offset(&self, ot: &TypeDef, nt: &TypeDef, off: u64) -> Option<u64> {
        if off == 0 && ot.kind != TypeKind::Struct {
            return Some(0);
        }
        match (ot.kind, nt.kind) {
            (TypeKind::Struct, TypeKind::Struct) => {
                for f in &ot.fields {
                    let ft = self.v.old_type(&f.ty)?;
                    if off >= f.offset && off < f.offset + ft.size.max(1) {
                        let nf = self.v.new_field_for(nt, &ot.name, &f.name)?;
                        let nft = self.v.new_type(&nf.ty)?;
                        return Some(nf.offset + self.map_offset(ft, nft, off - f.offset)?);
                    }
                }
                if off == 0 {
                    Some(0)
                } else {
                    None
                }
            }
            (TypeKind::Array, TypeKind::Array) => {
                let oe = self.v.old_type(ot.target.as_deref()?)?;
                let ne = self.v.new_type(nt.target.as_deref()?)?;
                let i = off / oe.size.max(1);
                Some(i * ne.size + self.map_offset(oe, ne, off % oe.size.max(1))?)
            }
            _ => Some(off.min(nt.size)),
        }
    }

    /// The new value of a pointer found in old state, if it must change.
    /// `target` is the pointee type the pointer is declared with: a pointer
    /// to offset 0 of a struct is a pointer to the struct unless it is
    /// declared as a pointer to its first member.
    /// The moved object whose old copy holds `p`.
    pub(super) fn move_containing(&self, p: u64) -> Option<&Move<'_>> {
        if p < self.moves_span.0 || p >= self.moves_span.1 {
            return None;
        }
        let i = self.moves.partition_point(|m| m.old <= p);
        let m = self.moves.get(i.checked_sub(1)?)?;
        (p < m.old + m.old_size).then_some(m)
    }

    /// A pointer one past the end of a moved object (a pool block's `end`,
    /// an array's bound), as one past the end of its counterpart. Heap
    /// objects are never adjacent (a header separates them), so such a
    /// pointer names no other object.
    pub(super) fn translate_end(&self, p: u64) -> Option<u64> {
        let m = self.move_containing(p.checked_sub(1)?)?;
        if p != m.old + m.old_size {
            return None;
        }
        // As the object was converted: its elements, then its tail as is.
        let len = match (self.v.old_type(m.ty), self.v.new_type(m.ty)) {
            (Some(ot), Some(nt)) if ot.size > 0 => {
                let n = self.v.element_count(ot, m.old_size, true);
                n * nt.size + (m.old_size - n * ot.size)
            }
            _ => m.old_size,
        };
        Some(m.new + len)
    }

    /// A pointer into one of `vars` (old globals or thread-locals, sorted
    /// by address), as a pointer into its new counterpart; `None` if `p`
    /// is in none of them.
    pub(super) fn translate_static(
        &self,
        vars: &[(u64, u64, &str, &str)],
        p: u64,
        target: &str,
    ) -> Option<Result<Option<u64>, TransferError>> {
        let j = vars.partition_point(|g| g.0 <= p);
        let (a, sz, name, ty) = *vars.get(j.checked_sub(1)?)?;
        if p >= a + sz.max(1) {
            return None;
        }
        let Some(&(na, nty)) = self.new_globals.get(name) else {
            return Some(Err(TransferError::GlobalGone(name.into())));
        };
        let off = match (self.v.old_type(ty), self.v.new_type(nty)) {
            (Some(_), Some(_))
                if p == a
                    && (target == ty
                        || self
                            .v
                            .old_type(target)
                            .is_none_or(|t| t.kind != TypeKind::Scalar)) =>
            {
                0
            }
            (Some(o), Some(n)) => self.map_offset(o, n, p - a).unwrap_or(p - a),
            _ => p - a,
        };
        Some(Ok(Some(na + off)))
    }

    pub(super) fn translate(&self, p: u64, target: &str) -> Result<Option<u64>, TransferError> {
        if p == 0 {
            return Ok(None);
        }
        if let Some(m) = self.move_containing(p) {
            let (Some(ot), Some(nt)) = (self.v.old_type(m.ty), self.v.new_type(m.ty)) else {
                return Ok(Some(m.new + (p - m.old)));
            };
            let rel = p - m.old;
            let (el, off) = (rel / ot.size.max(1), rel % ot.size.max(1));
            let whole = off == 0
                && (target == m.ty || self.v.old_type(target).is_none_or(|t| t.size >= ot.size));
            let noff = if whole {
                0
            } else {
                self.map_offset(ot, nt, off).unwrap_or(0)
            };
            return Ok(Some(m.new + el * nt.size + noff));
        }
        if let Some(end) = self.translate_end(p) {
            return Ok(Some(end));
        }
        if !self.static_spans.iter().any(|&(a, b)| a <= p && p < b) {
            return Ok(None);
        }
        if let Some(r) = self.translate_static(&self.old_globals, p, target) {
            return r;
        }
        if !target.is_empty() {
            if let Some(r) = self.translate_static(&self.old_tls, p, target) {
                return r;
            }
        }
        if let Some(name) = self.old_funcs.get(&p) {
            let funcs = self.new_funcs.get_or_init(|| {
                crate::base::own_binary::functions()
                    .iter()
                    .map(|(n, a)| (n.as_str(), *a))
                    .collect()
            });
            let n = funcs
                .get(*name)
                .ok_or_else(|| TransferError::FunctionGone(name.to_string()))?;
            return Ok(Some(*n));
        }
        let k = self.libs.partition_point(|l| l.0 <= p);
        if k > 0 && p < self.libs[k - 1].1 {
            return Ok(Some((p as i64 + self.libs[k - 1].2) as u64));
        }
        Ok(None)
    }
}

/// Shared libraries of the old process found again here, and their shift.
fn library_shifts(state: &State) -> Vec<(u64, u64, i64)> {
    let now = crate::base::own_binary::libraries();
    let mut v: Vec<_> = state
        .libraries
        .iter()
        .filter_map(|(path, a, b)| {
            let (_, na, nb) = now.iter().find(|x| &x.0 == path)?;
            (nb - na == b - a).then_some((*a, *b, *na as i64 - *a as i64))
        })
        .collect();
    v.sort_by_key(|l| l.0);
    v
}

/// Thread-locals seen as globals by pointer translation: the old threads'
/// instances (address, size, label, type) and the new counterparts'
/// (label, address, type), labels from `thread_locals::instance_label`.
#[derive(Default)]
pub(super) struct TlsViews {
    old: Vec<(u64, u64, String, String)>,
    new: Vec<(String, u64, &'static str)>,
}

impl TlsViews {
    pub(super) fn of(state: &State, pairs: &[thread_locals::Paired]) -> TlsViews {
        let old = state
            .threads
            .iter()
            .flat_map(|t| {
                t.vars.iter().map(|v| {
                    let label = thread_locals::instance_label(&v.name, &t.key);
                    (v.addr, v.size, label, v.type_name.clone())
                })
            })
            .collect();
        let new = pairs
            .iter()
            .flat_map(|p| {
                p.new.iter().map(|i| {
                    let label = thread_locals::instance_label(i.var.name, &p.old.key);
                    (label, i.addr as u64, i.var.type_name)
                })
            })
            .collect();
        TlsViews { old, new }
    }
}

/// The translation context between the old version (`state`) and this one.
pub(super) fn build<'a>(
    state: &'a State,
    new_map: &'a TypeMap,
    hooks: &'a [mcr_types::hooks::HookDecl],
    tls: &'a TlsViews,
) -> Ctx<'a> {
    let mut old_globals: Vec<_> = state
        .globals
        .iter()
        .map(|g| (g.addr, g.size, g.name.as_str(), g.type_name.as_str()))
        .collect();
    old_globals.sort_by_key(|g| g.0);
    let mut old_tls: Vec<_> = tls
        .old
        .iter()
        .map(|(a, n, l, t)| (*a, *n, l.as_str(), t.as_str()))
        .collect();
    old_tls.sort_by_key(|g| g.0);
    let new_vars: Vec<_> = globals::all().collect();
    let mut new_globals: HashMap<&'a str, (u64, &'a str)> = new_vars
        .iter()
        .map(|g| (g.name, (g.addr as u64, g.type_name)))
        .chain(tls.new.iter().map(|(l, a, t)| (l.as_str(), (*a, *t))))
        .collect();
    // A global that moved to another unit (or became static) is the same
    // variable under a new name: reachable under its old name too.
    let old_names: Vec<&str> = state.globals.iter().map(|g| g.name.as_str()).collect();
    let new_names: Vec<&str> = new_vars.iter().map(|g| g.name).collect();
    for (o, n) in mcr_types::plan::moved_globals(&old_names, &new_names) {
        if let Some(&v) = new_globals.get(n) {
            new_globals.insert(o, v);
        }
    }
    let span = |v: &[(u64, u64, &str, &str)]| match (
        v.first(),
        v.iter().map(|g| g.0 + g.1.max(1)).max(),
    ) {
        (Some(f), Some(end)) => Some((f.0, end)),
        _ => None,
    };
    let funcs = (state.functions.iter().map(|f| f.1).min())
        .zip(state.functions.iter().map(|f| f.1 + 1).max());
    let libs = library_shifts(state);
    let lib_span = (libs.iter().map(|l| l.0).min()).zip(libs.iter().map(|l| l.1).max());
    let static_spans = [span(&old_globals), span(&old_tls), funcs, lib_span]
        .into_iter()
        .flatten()
        .collect();
    Ctx {
        v: Versions::new(
            &state.typemap,
            new_map,
            new_map.renames.clone().into_iter().collect(),
        )
        .with_hooks(hooks),
        moves: vec![],
        old_globals,
        old_tls,
        new_globals,
        old_funcs: state
            .functions
            .iter()
            .map(|(n, a)| (*a, n.as_str()))
            .collect(),
        new_funcs: std::cell::OnceCell::new(),
        libs,
        slots: HashMap::new(),
        moves_span: (0, 0),
        static_spans,
    }
}
