//! The transfer plan: how a value of an old-version type becomes a value of
//! the new version's type, and where the pointers are inside a type.
//!
//! Fields are matched by name (or by a rename hint), never by position;
//! enums by constant name; integers are converted by value and a narrowing
//! that loses a value is an error naming the field.

use crate::hooks::{HookDecl, HookKind};
use crate::model::{Encoding, TypeDef, TypeKind, TypeMap};
use std::collections::HashMap;
use thiserror::Error;

mod since_startup;
pub use since_startup::{ChangedRef, UnchangedRef};

#[derive(Debug, Error, Clone, PartialEq)]
pub enum PlanError {
    #[error("type `{ty}`: field `{field}` changed from `{old}` to `{new}`, which no rule converts: add a transform hook")]
    NeedsUserCode {
        ty: String,
        field: String,
        old: String,
        new: String,
    },
    #[error(
        "`{path}` changed from `{old}` to `{new}`, which no rule converts: add a transform hook"
    )]
    NoRule {
        path: String,
        old: String,
        new: String,
    },
    #[error("value {value} of `{path}` does not fit in `{new}`")]
    Narrowing {
        path: String,
        value: i128,
        new: String,
    },
    #[error("`{path}`: enum constant with value {value} has no name in the old version")]
    UnknownEnumValue { path: String, value: i64 },
    #[error("`{path}`: enum constant `{name}` is gone in the new version")]
    EnumConstantGone { path: String, name: String },
    #[error("unknown type `{0}` in the type map")]
    UnknownType(String),
    #[error("transform hook `{hook}` for `{ty}` declares the old layout as `{old_layout}`, which differs from the old version's `{ty}` at field `{field}`: copy the old version's definition exactly")]
    HookOldLayout {
        hook: String,
        ty: String,
        old_layout: String,
        field: String,
    },
    #[error("transform hook `{hook}`: type `{missing}` is not in the new version's type map (is the file declaring the hook compiled with mcr-cc?)")]
    HookTypeUnknown { hook: String, missing: String },
    #[error("two transform hooks for `{ty}`: `{first}` and `{second}`")]
    HookTwice {
        ty: String,
        first: String,
        second: String,
    },
}

/// How a type changes between two versions.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Same name, same layout: bytes are copied.
    Identical,
    /// Layout differs; every field has a rule.
    Transform,
    /// No rule covers it.
    NeedsUserCode(PlanError),
    /// A user transform hook of the new version converts it (after the
    /// automatic rules did what they can); `covers` is what no rule would
    /// have converted, if anything.
    Hooked {
        hook: String,
        old_layout: String,
        covers: Option<PlanError>,
    },
    /// The type is gone from the new version.
    Removed,
}

/// Field rename hints (`[renames]` of mcr.toml): `"struct conn.fd" = "sfd"`.
pub type Renames = HashMap<String, String>;

/// Both versions' maps with lookup tables.
pub struct Versions<'a> {
    pub old: &'a TypeMap,
    pub new: &'a TypeMap,
    old_idx: HashMap<&'a str, &'a TypeDef>,
    new_idx: HashMap<&'a str, &'a TypeDef>,
    pub renames: Renames,
    /// Transform hooks of the new version, by the new type's canonical name.
    pub hooks: HashMap<String, HookDecl>,
    /// A second hook declared for one type (an error when that type is used).
    hooks_twice: HashMap<String, String>,
    /// `identical` of whole types, by (old name, new name): objects of one
    /// type are many, and the answer is the same for all of them.
    same: std::cell::RefCell<HashMap<(usize, usize), bool>>,
    /// `holds_refs` of old types, by address of the old type.
    refs: std::cell::RefCell<HashMap<usize, bool>>,
}

fn index(m: &TypeMap) -> HashMap<&str, &TypeDef> {
    let mut h = HashMap::new();
    for t in &m.types {
        h.insert(t.name.as_str(), t);
        for a in &t.aliases {
            h.entry(a.as_str()).or_insert(t);
        }
    }
    h
}

impl<'a> Versions<'a> {
    pub fn new(old: &'a TypeMap, new: &'a TypeMap, renames: Renames) -> Self {
        Versions {
            old,
            new,
            old_idx: index(old),
            new_idx: index(new),
            renames,
            hooks: HashMap::new(),
            hooks_twice: HashMap::new(),
            same: Default::default(),
            refs: Default::default(),
        }
    }

    /// Declares the new version's hooks (`mcr_hooks` section).
    pub fn with_hooks(mut self, hooks: &[HookDecl]) -> Self {
        for h in hooks.iter().filter(|h| h.kind == HookKind::Transform) {
            let name = self
                .new_type(&h.new_type)
                .map_or(h.new_type.clone(), |t| t.name.clone());
            match self.hooks.entry(name) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    self.hooks_twice.insert(e.key().clone(), h.function.clone());
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(h.clone());
                }
            }
        }
        self
    }

    /// The transform hook that converts old values of the type named `name`,
    /// if one applies: the hook's declared old layout must be exactly the
    /// old version's layout of the type. A hook whose declared layout does
    /// not match is an error, unless the type did not change at all (an
    /// update from a version that already has the new layout, v2 -> v2):
    /// then there is nothing to transform and the hook does not run.
    pub fn hook_for(&self, name: &str) -> Result<Option<&HookDecl>, PlanError> {
        let (Some(o), Some(n)) = (self.old_type(name), self.new_type(name)) else {
            return Ok(None);
        };
        let Some(h) = self.hooks.get(&n.name) else {
            return Ok(None);
        };
        if let Some(second) = self.hooks_twice.get(&n.name) {
            return Err(PlanError::HookTwice {
                ty: n.name.clone(),
                first: h.function.clone(),
                second: second.clone(),
            });
        }
        let Some(d) = self.new_type(&h.old_type) else {
            return Err(PlanError::HookTypeUnknown {
                hook: h.function.clone(),
                missing: h.old_type.clone(),
            });
        };
        if self.identical(o, d, 0) {
            return Ok(Some(h));
        }
        if self.identical(o, n, 0) {
            return Ok(None);
        }
        Err(PlanError::HookOldLayout {
            hook: h.function.clone(),
            ty: o.name.clone(),
            old_layout: h.old_type.clone(),
            field: self.first_difference(o, d),
        })
    }

    /// The first field where old type `o` and new-map type `d` differ.
    fn first_difference(&self, o: &TypeDef, d: &TypeDef) -> String {
        for (i, f) in o.fields.iter().enumerate() {
            match d.fields.get(i) {
                None => return f.name.clone(),
                Some(g)
                    if g.name != f.name
                        || g.offset != f.offset
                        || g.bit_offset != f.bit_offset
                        || g.bit_size != f.bit_size
                        || !self.same_named(&f.ty, &g.ty, 0) =>
                {
                    return f.name.clone()
                }
                _ => {}
            }
        }
        match d.fields.get(o.fields.len()) {
            Some(g) => g.name.clone(),
            None => format!("(size {} vs {})", o.size, d.size),
        }
    }

    pub fn old_type(&self, n: &str) -> Option<&'a TypeDef> {
        self.old_idx.get(n).copied()
    }

    pub fn new_type(&self, n: &str) -> Option<&'a TypeDef> {
        self.new_idx.get(n).copied()
    }

    /// The change of the type named `name` in the old version.
    pub fn change(&self, name: &str) -> Change {
        self.change_between(name, name)
    }

    /// The change from old type `old_name` to new type `new_name`: a
    /// global keeps its name while its type may not (`struct e[15]` ->
    /// `struct e[18]`, `int` -> `long`).
    pub fn change_between(&self, old_name: &str, new_name: &str) -> Change {
        let Some(o) = self.old_type(old_name) else {
            return Change::Removed;
        };
        let Some(n) = self.new_type(new_name) else {
            return Change::Removed;
        };
        match self.hook_for(new_name) {
            Err(e) => return Change::NeedsUserCode(e),
            Ok(Some(h)) => {
                return Change::Hooked {
                    hook: h.function.clone(),
                    old_layout: h.old_type.clone(),
                    covers: self.check_rules(o, n, &o.name).err(),
                }
            }
            Ok(None) => {}
        }
        if self.identical(o, n, 0) {
            return Change::Identical;
        }
        match self.check_rules(o, n, &o.name) {
            Ok(()) => Change::Transform,
            Err(e) => Change::NeedsUserCode(e),
        }
    }

    /// Why an update must be refused before anything stops, one line per
    /// reason: a type whose values it converts ([`types_in_use`]) that
    /// needs user code, or a global whose type became one that no rule
    /// converts into (`unsigned long` -> `struct entry[16]`: the same name
    /// would otherwise get the old bytes). Empty: it may proceed.
    pub fn refusals(&self) -> Vec<String> {
        if let Some(other) = other_program(self.old, self.new) {
            return vec![other];
        }
        let mut why = Vec::new();
        for t in types_in_use(self.old) {
            if let Change::NeedsUserCode(e) = self.change(t) {
                why.push(e.to_string());
            }
        }
        let mut new_globals: HashMap<&str, &str> = self
            .new
            .globals
            .iter()
            .map(|g| (g.name.as_str(), g.ty.as_str()))
            .collect();
        let names = |m: &'a TypeMap| {
            m.globals
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
        };
        for (o, n) in moved_globals(&names(self.old), &names(self.new)) {
            if let Some(&t) = new_globals.get(n) {
                new_globals.insert(o, t);
            }
        }
        for g in self.old.globals.iter().filter(|g| is_transferred(g)) {
            match new_globals.get(g.name.as_str()) {
                Some(&nt) if nt != g.ty => {
                    if let Change::NeedsUserCode(e) = self.change_between(&g.ty, nt) {
                        why.push(format!("global `{}`: {e}", g.name));
                    }
                }
                _ => {}
            }
        }
        why
    }

    /// Does a value of this type hold a synchronisation object?
    pub fn contains_sync(&self, t: &TypeDef, depth: u32) -> bool {
        if depth > 16 {
            return false;
        }
        if is_sync_type(&t.name) || t.aliases.iter().any(|a| is_sync_type(a)) {
            return true;
        }
        match t.kind {
            TypeKind::Struct => t.fields.iter().any(|f| {
                self.new_type(&f.ty)
                    .is_some_and(|ft| self.contains_sync(ft, depth + 1))
            }),
            TypeKind::Array => t
                .target
                .as_deref()
                .and_then(|x| self.new_type(x))
                .is_some_and(|et| self.contains_sync(et, depth + 1)),
            _ => false,
        }
    }

    /// How many whole values of `t` an object of `size` bytes holds: one
    /// when `t` ends in a flexible array member (the rest is its tail).
    pub fn element_count(&self, t: &TypeDef, size: u64, old: bool) -> u64 {
        if t.size == 0 {
            return 0;
        }
        let flexible = t.kind == TypeKind::Struct
            && t.fields.last().is_some_and(|f| {
                let ft = if old {
                    self.old_type(&f.ty)
                } else {
                    self.new_type(&f.ty)
                };
                ft.is_some_and(|ft| ft.kind == TypeKind::Array && ft.count.is_none())
            });
        if flexible {
            (size >= t.size) as u64
        } else {
            size / t.size
        }
    }

    /// Same layout, recursively (names, offsets, sizes, kinds).
    pub fn identical(&self, o: &TypeDef, n: &TypeDef, depth: u32) -> bool {
        // Types live in the two maps as long as `self`: their addresses are keys.
        let key = (o as *const TypeDef as usize, n as *const TypeDef as usize);
        if let Some(&b) = self.same.borrow().get(&key) {
            return b;
        }
        // Assumed while it is being computed: types that point to each
        // other (through `related`) end the recursion here.
        self.same.borrow_mut().insert(key, true);
        let b = self.identical_uncached(o, n, depth);
        self.same.borrow_mut().insert(key, b);
        b
    }

    fn identical_uncached(&self, o: &TypeDef, n: &TypeDef, depth: u32) -> bool {
        if depth > 32
            || o.kind != n.kind
            || o.size != n.size
            || o.count != n.count
            || o.encoding != n.encoding
        {
            return false;
        }
        match o.kind {
            TypeKind::Struct | TypeKind::Union => {
                o.fields.len() == n.fields.len()
                    && o.fields.iter().zip(&n.fields).all(|(a, b)| {
                        a.name == b.name
                            && a.offset == b.offset
                            && a.bit_offset == b.bit_offset
                            && a.bit_size == b.bit_size
                            && self.same_named(&a.ty, &b.ty, depth)
                    })
            }
            TypeKind::Array => self.same_named(
                o.target.as_deref().unwrap_or(""),
                n.target.as_deref().unwrap_or(""),
                depth,
            ),
            TypeKind::Enum => o.enumerators == n.enumerators,
            // Pointers are rewritten anyway; their pointee is checked on its
            // own (a retarget to an unrelated type is caught in `same_named`).
            _ => true,
        }
    }

    fn same_named(&self, a: &str, b: &str, depth: u32) -> bool {
        match (self.old_type(a), self.new_type(b)) {
            (Some(x), Some(y)) => {
                if x.kind == TypeKind::Pointer && y.kind == TypeKind::Pointer {
                    self.field_has_rule(x, y)
                } else {
                    self.identical(x, y, depth + 1)
                }
            }
            _ => a == b,
        }
    }

    /// The new version's field for an old one: same name, or the rename
    /// hint. A hint may name a field inside a struct field of the new type
    /// (`"LIBEVENT_THREAD.notify_event" = "n.notify_event"`: fields gathered
    /// into a new nested struct); that field is then given as one of `n`'s
    /// own, named by its path, at its offset inside `n`.
    pub fn new_field_for<'b>(
        &self,
        n: &'b TypeDef,
        owner: &str,
        old_field: &str,
    ) -> Option<std::borrow::Cow<'b, crate::model::Field>> {
        use std::borrow::Cow;
        let hint = self.renames.get(&format!("{owner}.{old_field}"));
        let want = hint.map(String::as_str).unwrap_or(old_field);
        let Some((outer, rest)) = want.split_once('.') else {
            return n.fields.iter().find(|f| f.name == want).map(Cow::Borrowed);
        };
        // A path: each step a struct field (not a bit-field) of the last.
        let mut f = n.fields.iter().find(|f| f.name == outer)?.clone();
        for step in rest.split('.') {
            let t = self
                .new_type(&f.ty)
                .filter(|t| t.kind == TypeKind::Struct)?;
            let g = t
                .fields
                .iter()
                .find(|g| g.name == step && g.bit_size.is_none())?;
            f = crate::model::Field {
                name: format!("{}.{}", f.name, g.name),
                offset: f.offset + g.offset,
                ty: g.ty.clone(),
                bit_offset: None,
                bit_size: None,
            };
        }
        Some(Cow::Owned(f))
    }

    /// Checks a value nested in another: a hook of its type covers it.
    fn check(&self, o: &TypeDef, n: &TypeDef, path: &str) -> Result<(), PlanError> {
        if self.hook_for(&o.name)?.is_some() {
            return Ok(());
        }
        self.check_rules(o, n, path)
    }

    /// Does a field of old type `ot` have a rule into new type `nt`? A
    /// pointer converts to a pointer to a related type only (same type,
    /// `void`, same-sized scalars): a pointer retargeted to an unrelated
    /// type (`bipbuf_t *` -> `char *`) points to data that changed meaning.
    pub fn field_has_rule(&self, ot: &TypeDef, nt: &TypeDef) -> bool {
        if ot.kind != nt.kind && !(is_scalarish(ot) && is_scalarish(nt)) {
            return false;
        }
        if ot.kind == TypeKind::Pointer {
            return self.related(
                ot.target.as_deref().unwrap_or(""),
                nt.target.as_deref().unwrap_or(""),
                0,
            );
        }
        true
    }

    /// Are old type `a` and new type `b` the same data for a pointer to
    /// them? Unknown (opaque) types are related only by name.
    fn related(&self, a: &str, b: &str, depth: u32) -> bool {
        if a == b || depth > 8 {
            return true;
        }
        let (Some(x), Some(y)) = (self.old_type(a), self.new_type(b)) else {
            return false;
        };
        // The same type under another tag or typedef (`struct clusterNode`
        // became `struct _clusterNode`, both `clusterNode`).
        if x.name == y.name
            || x.aliases.contains(&y.name)
            || y.aliases.contains(&x.name)
            || x.aliases.iter().any(|a| y.aliases.contains(a))
        {
            return true;
        }
        let void = |t: &TypeDef| t.name == "void" || (t.kind == TypeKind::Scalar && t.size == 0);
        if void(x) || void(y) {
            return true;
        }
        let float = |t: &TypeDef| t.encoding == Some(Encoding::Float);
        match (x.kind, y.kind) {
            (TypeKind::Pointer, TypeKind::Pointer) | (TypeKind::Array, TypeKind::Array) => self
                .related(
                    x.target.as_deref().unwrap_or(""),
                    y.target.as_deref().unwrap_or(""),
                    depth + 1,
                ),
            (a, b) if is_scalar_kind(a) && is_scalar_kind(b) => {
                x.size == y.size && float(x) == float(y)
            }
            (TypeKind::Function, TypeKind::Function) => true,
            (TypeKind::Struct, TypeKind::Struct) | (TypeKind::Union, TypeKind::Union) => {
                // Anonymous types are named by their declaration's line,
                // which moves with any edit above it.
                (x.name.contains("<anon@") && y.name.contains("<anon@")) || self.identical(x, y, 0)
            }
            _ => false,
        }
    }

    /// The fields of struct `o` that no rule converts into `n` (what a
    /// transform hook must do): (field, old type, new type).
    pub fn fields_without_rule(&self, o: &TypeDef, n: &TypeDef) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for f in &o.fields {
            let Some(nf) = self.new_field_for(n, &o.name, &f.name) else {
                continue;
            };
            let (Some(ot), Some(nt)) = (self.old_type(&f.ty), self.new_type(&nf.ty)) else {
                continue;
            };
            if !self.field_has_rule(ot, nt) || self.check(ot, nt, &f.name).is_err() {
                out.push((f.name.clone(), f.ty.clone(), nf.ty.clone()));
            }
        }
        out
    }

    /// Checks that every part of `o` has a rule into `n`.
    fn check_rules(&self, o: &TypeDef, n: &TypeDef, path: &str) -> Result<(), PlanError> {
        // An array's elements or a global's whole value: no field to name.
        let bad = || PlanError::NoRule {
            path: path.to_string(),
            old: o.name.clone(),
            new: n.name.clone(),
        };
        match (o.kind, n.kind) {
            (TypeKind::Scalar | TypeKind::Enum, TypeKind::Scalar | TypeKind::Enum) => Ok(()),
            (TypeKind::Pointer, TypeKind::Pointer) => {
                if self.field_has_rule(o, n) {
                    Ok(())
                } else {
                    Err(bad())
                }
            }
            (TypeKind::Array, TypeKind::Array) => {
                let (ot, nt) = self.elems(o, n)?;
                self.check(ot, nt, &format!("{path}[]"))
            }
            (TypeKind::Struct, TypeKind::Struct) => {
                for f in &o.fields {
                    let Some(nf) = self.new_field_for(n, &o.name, &f.name) else {
                        continue; // removed field
                    };
                    let ot = self
                        .old_type(&f.ty)
                        .ok_or_else(|| PlanError::UnknownType(f.ty.clone()))?;
                    let nt = self
                        .new_type(&nf.ty)
                        .ok_or_else(|| PlanError::UnknownType(nf.ty.clone()))?;
                    if self.hook_for(&ot.name)?.is_some() {
                        continue;
                    }
                    if !self.field_has_rule(ot, nt) {
                        return Err(PlanError::NeedsUserCode {
                            ty: o.name.clone(),
                            field: f.name.clone(),
                            old: f.ty.clone(),
                            new: nf.ty.clone(),
                        });
                    }
                    self.check(ot, nt, &format!("{}.{}", o.name, f.name))?;
                }
                Ok(())
            }
            (TypeKind::Union, TypeKind::Union) if o.size <= n.size => Ok(()),
            (TypeKind::Function, TypeKind::Function) => Ok(()),
            _ => Err(bad()),
        }
    }

    fn elems(&self, o: &TypeDef, n: &TypeDef) -> Result<(&'a TypeDef, &'a TypeDef), PlanError> {
        let on = o.target.clone().unwrap_or_default();
        let nn = n.target.clone().unwrap_or_default();
        Ok((
            self.old_type(&on).ok_or(PlanError::UnknownType(on))?,
            self.new_type(&nn).ok_or(PlanError::UnknownType(nn))?,
        ))
    }

    /// Whether a value of old type `o` becomes one of new type `n` byte for
    /// byte: same layout, and no lock or other sync object inside (those
    /// keep the new version's own, see `is_sync_type`).
    fn copied_as_is(&self, o: &TypeDef, n: &TypeDef) -> bool {
        !is_sync_type(&o.name)
            && !is_sync_type(&n.name)
            && self.identical(o, n, 0)
            && !self.contains_sync(n, 0)
    }

    /// Converts the first `count` elements of an array of old type `o`
    /// (`src`) into an array of new type `n` (`dst`), as [`Self::convert`]
    /// does one by one; an array whose element layout did not change is
    /// copied in one go (a start-up hash table of 65,536 buckets cost
    /// milliseconds element by element).
    pub fn convert_elements(
        &self,
        o: &TypeDef,
        n: &TypeDef,
        src: &[u8],
        dst: &mut [u8],
        count: usize,
        path: &str,
    ) -> Result<(), PlanError> {
        let (os, ns) = (o.size as usize, n.size as usize);
        if count > 1 && os == ns && self.copied_as_is(o, n) {
            let k = (count * os).min(src.len()).min(dst.len());
            dst[..k].copy_from_slice(&src[..k]);
            return Ok(());
        }
        for e in 0..count {
            self.convert(
                o,
                n,
                &src[e * os..(e + 1) * os],
                &mut dst[e * ns..(e + 1) * ns],
                path,
            )?;
        }
        Ok(())
    }

    /// Converts one value of old type `o` (bytes `src`) into new type `n`
    /// (bytes `dst`, already holding the new version's default: zero or
    /// what its start-up set). Pointers are copied as they are.
    pub fn convert(
        &self,
        o: &TypeDef,
        n: &TypeDef,
        src: &[u8],
        dst: &mut [u8],
        path: &str,
    ) -> Result<(), PlanError> {
        self.convert_at(o, n, src, dst, &ValuePath::Root(path))
    }

    fn convert_at(
        &self,
        o: &TypeDef,
        n: &TypeDef,
        src: &[u8],
        dst: &mut [u8],
        path: &ValuePath<'_>,
    ) -> Result<(), PlanError> {
        if is_sync_type(&o.name) || is_sync_type(&n.name) {
            return Ok(()); // the new version's own (see `is_sync_type`)
        }
        if self.copied_as_is(o, n) {
            let k = src.len().min(dst.len());
            dst[..k].copy_from_slice(&src[..k]);
            return Ok(());
        }
        match (o.kind, n.kind) {
            (TypeKind::Struct, TypeKind::Struct) => {
                for f in &o.fields {
                    let Some(nf) = self.new_field_for(n, &o.name, &f.name) else {
                        continue;
                    };
                    let ot = self
                        .old_type(&f.ty)
                        .ok_or_else(|| PlanError::UnknownType(f.ty.clone()))?;
                    let nt = self
                        .new_type(&nf.ty)
                        .ok_or_else(|| PlanError::UnknownType(nf.ty.clone()))?;
                    if !self.field_has_rule(ot, nt) {
                        // Only reached when a transform hook covers the
                        // type: the field keeps the new version's value
                        // (zero, or what its start-up set) for the hook.
                        continue;
                    }
                    let p = ValuePath::Field(path, &f.name);
                    if f.bit_size.is_some() || nf.bit_size.is_some() {
                        let v = read_bits(
                            src,
                            f.offset as usize,
                            f.bit_offset.unwrap_or(0),
                            f.bit_size.unwrap_or(ot.size as u32 * 8),
                        );
                        write_bits(
                            dst,
                            nf.offset as usize,
                            nf.bit_offset.unwrap_or(0),
                            nf.bit_size.unwrap_or(nt.size as u32 * 8),
                            v,
                        );
                        continue;
                    }
                    let so = f.offset as usize;
                    let no = nf.offset as usize;
                    if so + ot.size as usize > src.len() || no + nt.size as usize > dst.len() {
                        continue; // a flexible tail: handled by the object's element count
                    }
                    let (s, d) = (
                        &src[so..so + ot.size as usize],
                        &mut dst[no..no + nt.size as usize],
                    );
                    self.convert_at(ot, nt, s, d, &p)?;
                }
                Ok(())
            }
            (TypeKind::Array, TypeKind::Array) => {
                let (ot, nt) = self.elems(o, n)?;
                let (os, ns) = (ot.size.max(1) as usize, nt.size.max(1) as usize);
                let k = (src.len() / os).min(dst.len() / ns);
                for i in 0..k {
                    self.convert_at(
                        ot,
                        nt,
                        &src[i * os..(i + 1) * os],
                        &mut dst[i * ns..(i + 1) * ns],
                        &ValuePath::Element(path, i),
                    )?;
                }
                Ok(())
            }
            (TypeKind::Enum, TypeKind::Enum) => {
                let v = read_int(src, true);
                let name = o.enumerators.iter().find(|e| e.value as i128 == v).ok_or(
                    PlanError::UnknownEnumValue {
                        path: path.to_string(),
                        value: v as i64,
                    },
                )?;
                let nv = n.enumerators.iter().find(|e| e.name == name.name).ok_or(
                    PlanError::EnumConstantGone {
                        path: path.to_string(),
                        name: name.name.clone(),
                    },
                )?;
                write_int(dst, nv.value as i128, &n.name, path, true)
            }
            (a, b) if is_scalar_kind(a) && is_scalar_kind(b) => {
                if o.encoding == Some(Encoding::Float) || n.encoding == Some(Encoding::Float) {
                    let v = read_float(src, o);
                    write_float(dst, n, v);
                    return Ok(());
                }
                let v = read_int(
                    src,
                    o.encoding == Some(Encoding::Signed) || o.kind == TypeKind::Enum,
                );
                write_int(dst, v, &n.name, path, n.encoding == Some(Encoding::Signed))
            }
            _ => {
                let k = src.len().min(dst.len());
                dst[..k].copy_from_slice(&src[..k]);
                Ok(())
            }
        }
    }
}

/// Where a value sits in a converted object (`entry.key[3]`), spelled out
/// only when an error names it: converting 50,000 objects formatted one
/// path per field, a tenth of the transfer's time.
enum ValuePath<'a> {
    Root(&'a str),
    Field(&'a ValuePath<'a>, &'a str),
    Element(&'a ValuePath<'a>, usize),
}

impl std::fmt::Display for ValuePath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root(p) => f.write_str(p),
            Self::Field(p, name) => write!(f, "{p}.{name}"),
            Self::Element(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// Globals whose name changed only because they moved to another
/// translation unit or became (or stopped being) `static` there: old name
/// -> new name. A global is named by its symbol, or `file:name` /
/// `file:function:name` when static (model.rs), so a variable that moved
/// from `items.c` to `slabs_mover.c` has a new name but the same last
/// component. Paired only when that component is unique among the old
/// globals without a same-named counterpart and among the new ones.
pub fn moved_globals<'n>(old: &[&'n str], new: &[&'n str]) -> Vec<(&'n str, &'n str)> {
    let base = |n: &'n str| n.rsplit(':').next().unwrap_or(n);
    let old_set: std::collections::HashSet<&str> = old.iter().copied().collect();
    let new_set: std::collections::HashSet<&str> = new.iter().copied().collect();
    let mut gone: HashMap<&str, Vec<&'n str>> = HashMap::new();
    for &o in old.iter().filter(|o| !new_set.contains(*o)) {
        gone.entry(base(o)).or_default().push(o);
    }
    let mut fresh: HashMap<&str, Vec<&'n str>> = HashMap::new();
    for &n in new.iter().filter(|n| !old_set.contains(*n)) {
        fresh.entry(base(n)).or_default().push(n);
    }
    let mut out: Vec<(&'n str, &'n str)> = gone
        .iter()
        .filter_map(
            |(b, os)| match (os.as_slice(), fresh.get(b).map(Vec::as_slice)) {
                ([o], Some([n])) => Some((*o, *n)),
                _ => None,
            },
        )
        .collect();
    out.sort();
    out
}

/// Globals whose values an update carries over: every writable one,
/// thread-locals included (each thread's copy goes to its counterpart
/// thread); constants are the new binary's own.
/// Why `new` is not a version of the program `old` describes, if it is
/// not: memcached given nginx's binary would otherwise have its state
/// poured into another program's globals. A version keeps most of its
/// globals' names; a program with fewer than [`FEW_GLOBALS`] keeps at
/// least one source file's name.
pub fn other_program(old: &TypeMap, new: &TypeMap) -> Option<String> {
    let new_names: std::collections::HashSet<&str> =
        new.globals.iter().map(|g| g.name.as_str()).collect();
    let old_names: Vec<&str> = old.globals.iter().map(|g| g.name.as_str()).collect();
    let kept = old_names.iter().filter(|n| new_names.contains(*n)).count();
    let base = |m: &'_ TypeMap| -> std::collections::BTreeSet<String> {
        m.units
            .iter()
            .map(|u| u.file.rsplit('/').next().unwrap_or(&u.file).to_string())
            .collect()
    };
    let (old_files, new_files) = (base(old), base(new));
    let list = |f: &std::collections::BTreeSet<String>| {
        let mut v: Vec<&str> = f.iter().map(String::as_str).take(4).collect();
        if f.len() > 4 {
            v.push("...");
        }
        v.join(", ")
    };
    let other = if old_names.len() >= FEW_GLOBALS {
        kept * 4 < old_names.len()
    } else {
        !old_files.is_empty() && old_files.is_disjoint(&new_files)
    };
    other.then(|| {
        format!(
            "the new binary is another program: {kept} of the old version's {} globals exist in it, \
             and its sources ({}) are not the old version's ({})",
            old_names.len(),
            list(&new_files),
            list(&old_files)
        )
    })
}

/// Below this many globals, [`other_program`] compares source file names.
pub const FEW_GLOBALS: usize = 8;

pub fn is_transferred(g: &crate::model::Global) -> bool {
    !g.constant
}

/// The old version's types whose values an update converts: those of its
/// globals and of its typed allocation sites (each one checked through its
/// fields and array elements by [`Versions::change`]). An update is refused
/// when one of them needs user code; a type only reachable through pointers
/// is converted only where a global or site names it.
pub fn types_in_use(old: &TypeMap) -> Vec<&str> {
    let mut used: Vec<&str> = old
        .globals
        .iter()
        .filter(|g| is_transferred(g))
        .map(|g| g.ty.as_str())
        .collect();
    used.extend(old.alloc_sites.iter().filter_map(|s| s.ty.as_deref()));
    used.sort();
    used.dedup();
    used
}

/// Threads' synchronisation objects (mutexes, condition variables, ...) are
/// futex state shared with the threads that wait on them: the new version's
/// threads wait on the new version's objects, so those are never
/// overwritten with the old bytes (a moved object gets zeroes, which is the
/// static initialiser).
pub fn is_sync_type(name: &str) -> bool {
    matches!(
        name,
        "pthread_mutex_t"
            | "pthread_cond_t"
            | "pthread_rwlock_t"
            | "pthread_spinlock_t"
            | "pthread_barrier_t"
            | "sem_t"
    ) || name.starts_with("struct __pthread_")
}

fn is_scalar_kind(k: TypeKind) -> bool {
    matches!(k, TypeKind::Scalar | TypeKind::Enum)
}

fn is_scalarish(t: &TypeDef) -> bool {
    is_scalar_kind(t.kind)
}

fn read_int(b: &[u8], signed: bool) -> i128 {
    let mut buf = [0u8; 16];
    let n = b.len().min(16);
    buf[..n].copy_from_slice(&b[..n]);
    if signed && n > 0 && b[n - 1] & 0x80 != 0 {
        for x in buf.iter_mut().skip(n) {
            *x = 0xff;
        }
    }
    i128::from_le_bytes(buf)
}

fn write_int(
    dst: &mut [u8],
    v: i128,
    ty: &str,
    path: &ValuePath<'_>,
    signed: bool,
) -> Result<(), PlanError> {
    let bits = (dst.len() * 8) as u32;
    let fits = if bits >= 128 {
        true
    } else if signed {
        let lim = 1i128 << (bits - 1);
        v >= -lim && v < lim
    } else {
        v >= 0 && v < (1i128 << bits)
    };
    if !fits {
        return Err(PlanError::Narrowing {
            path: path.to_string(),
            value: v,
            new: ty.into(),
        });
    }
    let bytes = v.to_le_bytes();
    let n = dst.len().min(16);
    dst[..n].copy_from_slice(&bytes[..n]);
    Ok(())
}

fn read_float(b: &[u8], t: &TypeDef) -> f64 {
    match (t.encoding, b.len()) {
        (Some(Encoding::Float), 4) => f32::from_le_bytes(b.try_into().unwrap()) as f64,
        (Some(Encoding::Float), 8) => f64::from_le_bytes(b.try_into().unwrap()),
        _ => read_int(b, t.encoding == Some(Encoding::Signed)) as f64,
    }
}

fn write_float(d: &mut [u8], t: &TypeDef, v: f64) {
    match (t.encoding, d.len()) {
        (Some(Encoding::Float), 4) => d.copy_from_slice(&(v as f32).to_le_bytes()),
        (Some(Encoding::Float), 8) => d.copy_from_slice(&v.to_le_bytes()),
        _ => {
            let b = (v as i128).to_le_bytes();
            let n = d.len().min(16);
            d[..n].copy_from_slice(&b[..n]);
        }
    }
}

fn read_bits(b: &[u8], off: usize, bit: u32, width: u32) -> u64 {
    let mut v = 0u64;
    for i in 0..width {
        let pos = bit + i;
        let byte = off + (pos / 8) as usize;
        if byte < b.len() && b[byte] >> (pos % 8) & 1 == 1 {
            v |= 1 << i;
        }
    }
    v
}

fn write_bits(b: &mut [u8], off: usize, bit: u32, width: u32, v: u64) {
    for i in 0..width.min(64) {
        let pos = bit + i;
        let byte = off + (pos / 8) as usize;
        if byte < b.len() {
            let m = 1u8 << (pos % 8);
            if v >> i & 1 == 1 {
                b[byte] |= m;
            } else {
                b[byte] &= !m;
            }
        }
    }
}

/// Leaf parts of a type's layout that matter to tracing, at a byte offset.
enum Leaf<'a> {
    /// A pointer and the type it points to.
    Pointer(&'a str),
    /// A union of this size: only known conservatively.
    Union(u64),
}

/// Visits the pointers and unions of a type, through nested structs and
/// arrays (bit-fields are never either).
fn walk_leaves(
    map_index: &dyn Fn(&str) -> Option<TypeDef>,
    ty: &TypeDef,
    base: u64,
    depth: u32,
    f: &mut dyn FnMut(u64, Leaf),
) {
    if depth > 16 {
        return;
    }
    match ty.kind {
        TypeKind::Pointer => f(base, Leaf::Pointer(ty.target.as_deref().unwrap_or(""))),
        TypeKind::Union => f(base, Leaf::Union(ty.size)),
        TypeKind::Struct => {
            for fl in ty.fields.iter().filter(|fl| fl.bit_size.is_none()) {
                if let Some(ft) = map_index(&fl.ty) {
                    walk_leaves(map_index, &ft, base + fl.offset, depth + 1, f);
                }
            }
        }
        TypeKind::Array => {
            if let (Some(et), Some(n)) = (ty.target.as_deref().and_then(map_index), ty.count) {
                // The element's leaves once, then at every element's offset.
                let mut inner: Vec<(u64, Option<String>, u64)> = Vec::new();
                walk_leaves(map_index, &et, 0, depth + 1, &mut |o, leaf| match leaf {
                    Leaf::Pointer(t) => inner.push((o, Some(t.to_string()), 0)),
                    Leaf::Union(sz) => inner.push((o, None, sz)),
                });
                for i in 0..if inner.is_empty() { 0 } else { n } {
                    for (o, t, sz) in &inner {
                        let at = base + i * et.size + o;
                        match t {
                            Some(t) => f(at, Leaf::Pointer(t)),
                            None => f(at, Leaf::Union(*sz)),
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Where the pointers are in a type: (byte offset, pointee type name).
/// Unions are not entered: what they hold is only known conservatively.
pub fn pointer_slots(
    map_index: &dyn Fn(&str) -> Option<TypeDef>,
    ty: &TypeDef,
    base: u64,
    out: &mut Vec<(u64, String)>,
    depth: u32,
) {
    walk_leaves(map_index, ty, base, depth, &mut |o, leaf| {
        if let Leaf::Pointer(t) = leaf {
            out.push((o, t.to_string()));
        }
    });
}

/// Parts of a type only known conservatively (unions): (offset, size).
pub fn union_ranges(
    map_index: &dyn Fn(&str) -> Option<TypeDef>,
    ty: &TypeDef,
    base: u64,
    out: &mut Vec<(u64, u64)>,
    depth: u32,
) {
    walk_leaves(map_index, ty, base, depth, &mut |o, leaf| {
        if let Leaf::Union(size) = leaf {
            out.push((o, size));
        }
    });
}

/// Does a type hold memory only known conservatively (unions, `void *`
/// targets are precise pointers but untyped objects)?
pub fn has_union(map_index: &dyn Fn(&str) -> Option<TypeDef>, ty: &TypeDef, depth: u32) -> bool {
    if depth > 16 {
        return false;
    }
    match ty.kind {
        TypeKind::Union => true,
        TypeKind::Struct => ty
            .fields
            .iter()
            .any(|f| map_index(&f.ty).is_some_and(|t| has_union(map_index, &t, depth + 1))),
        TypeKind::Array => ty
            .target
            .as_deref()
            .and_then(map_index)
            .is_some_and(|t| has_union(map_index, &t, depth + 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn scalar(name: &str, size: u64, enc: Encoding) -> TypeDef {
        TypeDef {
            name: name.into(),
            kind: TypeKind::Scalar,
            size,
            fields: vec![],
            target: None,
            count: None,
            encoding: Some(enc),
            enumerators: vec![],
            aliases: vec![],
            decl: None,
        }
    }
    fn field(name: &str, offset: u64, ty: &str) -> Field {
        Field {
            name: name.into(),
            offset,
            ty: ty.into(),
            bit_offset: None,
            bit_size: None,
        }
    }
    fn strukt(fields: Vec<Field>, size: u64) -> TypeDef {
        TypeDef {
            name: "struct s".into(),
            kind: TypeKind::Struct,
            size,
            fields,
            target: None,
            count: None,
            encoding: None,
            enumerators: vec![],
            aliases: vec![],
            decl: None,
        }
    }
    fn map(types: Vec<TypeDef>) -> TypeMap {
        TypeMap {
            types,
            ..TypeMap::new()
        }
    }

    fn program(files: &[&str], globals: &[&str]) -> TypeMap {
        TypeMap {
            units: files
                .iter()
                .map(|f| Unit {
                    file: f.to_string(),
                    instrumented: true,
                    reason: None,
                })
                .collect(),
            globals: globals
                .iter()
                .map(|g| Global {
                    name: g.to_string(),
                    symbol: g.to_string(),
                    ty: "int".into(),
                    size: 4,
                    file: files[0].to_string(),
                    is_static: false,
                    thread_local: false,
                    constant: false,
                })
                .collect(),
            ..TypeMap::new()
        }
    }

    #[test]
    fn another_program_is_refused_a_new_version_is_not() {
        let names = |p: &str| (0..20).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        let (mc, ng) = (names("mc_"), names("ngx_"));
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let memcached = program(&["memcached.c", "items.c"], &refs(&mc));
        let nginx = program(&["src/core/nginx.c"], &refs(&ng));
        let why = Versions::new(&memcached, &nginx, Default::default()).refusals();
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].contains("another program: 0 of the old version's 20 globals"),
            "{why:?}"
        );
        // A release that renamed half its globals and all its files is still it.
        let mut next = refs(&mc)[..10].to_vec();
        next.extend(refs(&ng)[..10].iter());
        let release = program(&["proto_text.c"], &next);
        assert!(other_program(&memcached, &release).is_none());
        // Few globals: the source files decide.
        let tiny = program(&["one.c"], &["a"]);
        assert!(other_program(&tiny, &program(&["dir/one.c"], &["b"])).is_none());
        assert!(other_program(&tiny, &program(&["two.c"], &["a"])).is_some());
    }

    #[test]
    fn reorder_widen_add_remove() {
        let old = map(vec![
            scalar("int", 4, Encoding::Signed),
            scalar("long", 8, Encoding::Signed),
            strukt(
                vec![
                    field("a", 0, "int"),
                    field("b", 4, "int"),
                    field("gone", 8, "int"),
                ],
                12,
            ),
        ]);
        let new = map(vec![
            scalar("int", 4, Encoding::Signed),
            scalar("long", 8, Encoding::Signed),
            strukt(
                vec![
                    field("added", 0, "long"),
                    field("b", 8, "long"),
                    field("a", 16, "int"),
                ],
                24,
            ),
        ]);
        let v = Versions::new(&old, &new, Renames::new());
        assert_eq!(v.change("struct s"), Change::Transform);
        let mut src = vec![];
        src.extend(7i32.to_le_bytes());
        src.extend((-3i32).to_le_bytes());
        src.extend(9i32.to_le_bytes());
        let mut dst = vec![0u8; 24];
        v.convert(
            v.old_type("struct s").unwrap(),
            v.new_type("struct s").unwrap(),
            &src,
            &mut dst,
            "x",
        )
        .unwrap();
        assert_eq!(i64::from_le_bytes(dst[8..16].try_into().unwrap()), -3);
        assert_eq!(i32::from_le_bytes(dst[16..20].try_into().unwrap()), 7);
        assert_eq!(&dst[0..8], &[0; 8]);
    }

    #[test]
    fn renamed_field_keeps_its_value() {
        let old = map(vec![
            scalar("long", 8, Encoding::Signed),
            strukt(vec![field("served", 0, "long")], 8),
        ]);
        let new = map(vec![
            scalar("long", 8, Encoding::Signed),
            strukt(
                vec![field("spare", 0, "long"), field("total_served", 8, "long")],
                16,
            ),
        ]);
        let renames = Renames::from([("struct s.served".to_string(), "total_served".to_string())]);
        let v = Versions::new(&old, &new, renames);
        let mut dst = [0u8; 16];
        v.convert(
            v.old_type("struct s").unwrap(),
            v.new_type("struct s").unwrap(),
            &42i64.to_le_bytes(),
            &mut dst,
            "g",
        )
        .unwrap();
        assert_eq!(i64::from_le_bytes(dst[8..16].try_into().unwrap()), 42);
        assert_eq!(&dst[0..8], &[0; 8]);
        // Without the hint the value is dropped (the field looks removed).
        let v = Versions::new(&old, &new, Renames::new());
        let mut dst = [0u8; 16];
        v.convert(
            v.old_type("struct s").unwrap(),
            v.new_type("struct s").unwrap(),
            &42i64.to_le_bytes(),
            &mut dst,
            "g",
        )
        .unwrap();
        assert_eq!(dst, [0u8; 16]);
    }

    #[test]
    fn narrowing_that_loses_a_value_fails() {
        let old = map(vec![
            scalar("long", 8, Encoding::Signed),
            strukt(vec![field("a", 0, "long")], 8),
        ]);
        let new = map(vec![
            scalar("short", 2, Encoding::Signed),
            strukt(vec![field("a", 0, "short")], 2),
        ]);
        let v = Versions::new(&old, &new, Renames::new());
        let mut dst = [0u8; 2];
        let e = v
            .convert(
                v.old_type("struct s").unwrap(),
                v.new_type("struct s").unwrap(),
                &100000i64.to_le_bytes(),
                &mut dst,
                "g",
            )
            .unwrap_err();
        assert!(matches!(e, PlanError::Narrowing { .. }), "{e}");
        v.convert(
            v.old_type("struct s").unwrap(),
            v.new_type("struct s").unwrap(),
            &(-5i64).to_le_bytes(),
            &mut dst,
            "g",
        )
        .unwrap();
        assert_eq!(i16::from_le_bytes(dst), -5);
    }

    /// A global whose type changed name (redis 8's `used_memory`: a
    /// counter became a per-thread array) is refused when no rule converts
    /// it; a table that grew is not.
    #[test]
    fn global_whose_type_changed_name() {
        let glob = |ty: &str| Global {
            name: "g".into(),
            symbol: "g".into(),
            ty: ty.into(),
            size: 8,
            file: "g.c".into(),
            is_static: false,
            thread_local: false,
            constant: false,
        };
        let arr = |name: &str, count: u64| TypeDef {
            name: name.into(),
            kind: TypeKind::Array,
            size: 8 * count,
            target: Some("long".into()),
            count: Some(count),
            ..scalar("", 0, Encoding::Signed)
        };
        let mut old = map(vec![scalar("long", 8, Encoding::Signed), arr("long[2]", 2)]);
        let mut new = map(vec![
            scalar("long", 8, Encoding::Signed),
            arr("long[4]", 4),
            strukt(vec![field("a", 0, "long")], 8),
        ]);
        old.globals = vec![glob("long[2]")];
        new.globals = vec![glob("long[4]")];
        assert_eq!(
            Versions::new(&old, &new, Renames::new()).refusals(),
            Vec::<String>::new()
        );
        old.globals = vec![glob("long")];
        new.globals = vec![glob("struct s")];
        let why = Versions::new(&old, &new, Renames::new()).refusals();
        assert_eq!(
            why,
            vec!["global `g`: `long` changed from `long` to `struct s`, which no rule converts: add a transform hook".to_string()]
        );
        // A constant is the new binary's own: never carried over.
        old.globals[0].constant = true;
        new.globals[0].constant = true;
        assert!(Versions::new(&old, &new, Renames::new())
            .refusals()
            .is_empty());
    }

    #[test]
    fn scalar_to_struct_needs_user_code() {
        let mut inner = strukt(vec![], 4);
        inner.name = "struct in".into();
        let old = map(vec![
            scalar("int", 4, Encoding::Signed),
            strukt(vec![field("a", 0, "int")], 4),
        ]);
        let new = map(vec![inner, strukt(vec![field("a", 0, "struct in")], 4)]);
        let v = Versions::new(&old, &new, Renames::new());
        assert!(matches!(v.change("struct s"), Change::NeedsUserCode(_)));
    }
    fn ptr(name: &str, target: &str) -> TypeDef {
        TypeDef {
            name: name.into(),
            kind: TypeKind::Pointer,
            size: 8,
            target: Some(target.into()),
            ..scalar(name, 8, Encoding::Unsigned)
        }
    }
    fn named(mut t: TypeDef, name: &str) -> TypeDef {
        t.name = name.into();
        t
    }

    /// memcached 1.6.38 moved the slab rebalancer's globals to
    /// slabs_mover.c, as statics: same variables under new names.
    #[test]
    fn globals_moved_to_another_unit_are_paired() {
        let old = [
            "slab_rebalance_signal",
            "items.c:lru_type",
            "a.c:buf",
            "b.c:buf",
            "kept",
        ];
        let new = [
            "slabs_mover.c:slab_rebalance_signal",
            "lru.c:lru_type",
            "c.c:buf",
            "kept",
            "added",
        ];
        assert_eq!(
            moved_globals(&old, &new),
            vec![
                ("items.c:lru_type", "lru.c:lru_type"),
                (
                    "slab_rebalance_signal",
                    "slabs_mover.c:slab_rebalance_signal"
                ),
            ]
        );
    }

    /// redis 7 -> 8: `struct clusterNode` became `struct _clusterNode`,
    /// both `typedef`'d `clusterNode`: a pointer to it keeps its meaning.
    #[test]
    fn pointer_to_a_retagged_struct_is_related() {
        let mut a = named(strukt(vec![field("id", 0, "int")], 4), "struct clusterNode");
        a.aliases = vec!["clusterNode".into()];
        let mut b = named(
            strukt(vec![field("id", 0, "int")], 4),
            "struct _clusterNode",
        );
        b.aliases = vec!["clusterNode".into()];
        let int = scalar("int", 4, Encoding::Signed);
        let old = map(vec![
            int.clone(),
            a,
            ptr("struct clusterNode *", "struct clusterNode"),
            strukt(vec![field("node", 0, "struct clusterNode *")], 8),
        ]);
        let new = map(vec![
            int,
            b,
            ptr("struct _clusterNode *", "struct _clusterNode"),
            strukt(vec![field("node", 0, "struct _clusterNode *")], 8),
        ]);
        let v = Versions::new(&old, &new, Renames::new());
        assert!(!matches!(v.change("struct s"), Change::NeedsUserCode(_)));
    }

    /// memcached 1.6.18 -> 1.6.38: `crawler_client_t.buf` went from
    /// `bipbuf_t *` to `char *`: the data it points to changed meaning.
    #[test]
    fn pointer_retargeted_to_unrelated_type_needs_user_code() {
        let mut bipbuf = named(strukt(vec![field("size", 0, "int")], 4), "struct bipbuf");
        bipbuf.aliases = vec!["bipbuf_t".into()];
        let old = map(vec![
            scalar("int", 4, Encoding::Signed),
            bipbuf.clone(),
            ptr("bipbuf_t *", "bipbuf_t"),
            ptr("void *", "void"),
            scalar("void", 0, Encoding::Unsigned),
            strukt(
                vec![field("buf", 0, "bipbuf_t *"), field("any", 8, "void *")],
                16,
            ),
        ]);
        let new = map(vec![
            scalar("int", 4, Encoding::Signed),
            scalar("char", 1, Encoding::Char),
            scalar("unsigned int", 4, Encoding::Unsigned),
            bipbuf,
            ptr("char *", "char"),
            ptr("struct bipbuf *", "struct bipbuf"),
            ptr("unsigned int *", "unsigned int"),
            strukt(
                vec![
                    field("buf", 0, "char *"),
                    field("any", 8, "struct bipbuf *"),
                ],
                16,
            ),
        ]);
        let v = Versions::new(&old, &new, Renames::new());
        match v.change("struct s") {
            Change::NeedsUserCode(e) => assert_eq!(
                e.to_string(),
                "type `struct s`: field `buf` changed from `bipbuf_t *` to `char *`, which no rule converts: add a transform hook"
            ),
            c => panic!("{c:?}"),
        }
        // Through a typedef, from void, and to a same-sized scalar: related
        // (the layout is then the same: nothing to convert).
        let mut new2 = new.clone();
        new2.types.last_mut().unwrap().fields[0].ty = "struct bipbuf *".into();
        let v = Versions::new(&old, &new2, Renames::new());
        assert_eq!(v.change("struct s"), Change::Identical);
        let old3 = map(vec![
            scalar("int", 4, Encoding::Signed),
            ptr("int *", "int"),
            strukt(vec![field("p", 0, "int *")], 8),
        ]);
        let new3 = map(vec![
            scalar("unsigned int", 4, Encoding::Unsigned),
            scalar("long", 8, Encoding::Signed),
            ptr("unsigned int *", "unsigned int"),
            ptr("long *", "long"),
            strukt(vec![field("p", 0, "unsigned int *")], 8),
        ]);
        let v = Versions::new(&old3, &new3, Renames::new());
        assert_eq!(v.change("struct s"), Change::Identical);
        let mut new4 = new3.clone();
        new4.types.last_mut().unwrap().fields[0].ty = "long *".into();
        let v = Versions::new(&old3, &new4, Renames::new());
        assert!(matches!(v.change("struct s"), Change::NeedsUserCode(_)));
    }

    fn hook(new_type: &str, old_type: &str) -> HookDecl {
        HookDecl {
            kind: HookKind::Transform,
            new_type: new_type.into(),
            old_type: old_type.into(),
            function: "s_from_v1".into(),
            line: 1,
            new_size: 0,
            old_size: 0,
            offset: 0,
        }
    }

    /// An int that becomes a struct needs user code; a hook whose declared
    /// old layout matches covers it (also when the type is nested in
    /// another); a wrong old layout is refused naming the field; an update
    /// from a version with the new layout already does not run the hook.
    #[test]
    fn transform_hook_covers_what_no_rule_converts() {
        let inner = named(strukt(vec![field("x", 0, "int")], 4), "struct in");
        let old = map(vec![
            scalar("int", 4, Encoding::Signed),
            strukt(vec![field("a", 0, "int"), field("b", 4, "int")], 8),
            named(strukt(vec![field("s", 0, "struct s")], 8), "struct outer"),
        ]);
        let v1_copy = named(
            strukt(vec![field("a", 0, "int"), field("b", 4, "int")], 8),
            "struct s_v1",
        );
        let new = map(vec![
            scalar("int", 4, Encoding::Signed),
            inner,
            strukt(vec![field("a", 0, "struct in"), field("b", 4, "int")], 8),
            named(strukt(vec![field("s", 0, "struct s")], 8), "struct outer"),
            v1_copy.clone(),
        ]);
        let v = Versions::new(&old, &new, Renames::new());
        assert!(matches!(v.change("struct s"), Change::NeedsUserCode(_)));
        assert!(matches!(v.change("struct outer"), Change::NeedsUserCode(_)));
        let v = Versions::new(&old, &new, Renames::new())
            .with_hooks(&[hook("struct s", "struct s_v1")]);
        match v.change("struct s") {
            Change::Hooked {
                hook,
                old_layout,
                covers: Some(PlanError::NeedsUserCode { field, .. }),
            } => {
                assert_eq!(
                    (hook.as_str(), old_layout.as_str(), field.as_str()),
                    ("s_from_v1", "struct s_v1", "a")
                );
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(v.change("struct outer"), Change::Transform);
        // The user's copy of the old layout lacks field b.
        let mut wrong = new.clone();
        wrong.types.last_mut().unwrap().fields.pop();
        let v = Versions::new(&old, &wrong, Renames::new())
            .with_hooks(&[hook("struct s", "struct s_v1")]);
        match v.change("struct s") {
            Change::NeedsUserCode(e) => assert_eq!(
                e.to_string(),
                "transform hook `s_from_v1` for `struct s` declares the old layout as `struct s_v1`, which differs from the old version's `struct s` at field `b`: copy the old version's definition exactly"
            ),
            c => panic!("{c:?}"),
        }
        // v2 -> v2: the type did not change, the hook does not apply.
        let v = Versions::new(&new, &new, Renames::new())
            .with_hooks(&[hook("struct s", "struct s_v1")]);
        assert_eq!(v.change("struct s"), Change::Identical);
        // Two hooks for one type.
        let mut other = hook("struct s", "struct s_v1");
        other.function = "s_again".into();
        let v = Versions::new(&old, &new, Renames::new())
            .with_hooks(&[hook("struct s", "struct s_v1"), other]);
        match v.change("struct s") {
            Change::NeedsUserCode(e) => assert_eq!(
                e.to_string(),
                "two transform hooks for `struct s`: `s_from_v1` and `s_again`"
            ),
            c => panic!("{c:?}"),
        }
        // The declared old layout is not in the new map.
        let v = Versions::new(&old, &new, Renames::new())
            .with_hooks(&[hook("struct s", "struct nope")]);
        assert!(matches!(
            v.change("struct s"),
            Change::NeedsUserCode(PlanError::HookTypeUnknown { .. })
        ));
    }
}
