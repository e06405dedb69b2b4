//! "Kept unless changed since start-up", field by field.
//!
//! A value the old version's start-up built and never changed afterwards is
//! start-up state: the new version's start-up rebuilt it (maybe with a new
//! default, a new pid, a new descriptor), and that copy wins. A whole global
//! is rarely all one or the other: `struct wrec { pid_t pid; int fd; long
//! forwarded; }` holds a worker's pid and channel, set at start-up, next to
//! a counter the program changes. So the rule is applied per field (and per
//! element of an array of structs): a leaf whose old bytes still equal its
//! bytes at the end of the old start-up keeps the new version's value.
//!
//! Leaves are scalars, enums, bit-fields, and arrays of scalars taken whole
//! (a `char name[16]` is one value: mixing its bytes would make a string
//! neither version wrote). Pointers and unions are leaves too, and so is an
//! array of pointers (an allow-list: mixing its elements would make a list
//! neither version built). They are converted (copied) when changed and
//! reported to the caller, which knows whether the objects they point to
//! exist in this process. One that still holds its start-up value is the
//! caller's to decide too ([`UnchangedRef`]): the pointer did not change,
//! but what it points to may have (a table built at start-up that received
//! entries since), and only the caller can look.

use super::{is_scalar_kind, is_sync_type, read_bits, write_bits, PlanError, Versions};
use crate::model::{TypeDef, TypeKind};

/// A pointer or union leaf that took the old value (it changed since
/// start-up): where it now is, so the caller can translate what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedRef {
    /// Path of the leaf (`wk[0].p`), for messages.
    pub path: String,
    /// Address of the leaf in the destination buffer.
    pub at: usize,
    pub len: usize,
    /// The pointee type (of every element, for an array of pointers);
    /// `None` for a union, only known conservatively.
    pub target: Option<String>,
}

/// A pointer or union leaf that still holds its value from the end of the
/// old start-up, handed to the caller's decision: `true` keeps the new
/// start-up's value, `false` takes the old one (then reported as a
/// [`ChangedRef`], to be translated like a changed one).
pub struct UnchangedRef<'b> {
    /// Path of the leaf (`allow[0]`), for messages.
    pub path: &'b str,
    /// The old bytes of the leaf (a pointer, every element of an array of
    /// pointers, or a union's bytes).
    pub old: &'b [u8],
    /// The pointee type (of every element, for an array of pointers);
    /// `None` for a union.
    pub target: Option<&'b str>,
}

impl Versions<'_> {
    /// Does a value of old type `t` hold pointers or unions anywhere?
    /// (Cached per type: globals are arrays of many elements.)
    pub fn holds_refs(&self, t: &TypeDef) -> bool {
        let key = t as *const TypeDef as usize;
        if let Some(&b) = self.refs.borrow().get(&key) {
            return b;
        }
        let look = |n: &str| self.old_type(n).cloned();
        let mut slots = Vec::new();
        super::pointer_slots(&look, t, 0, &mut slots, 0);
        let b = !slots.is_empty() || super::has_union(&look, t, 0);
        self.refs.borrow_mut().insert(key, b);
        b
    }

    /// Converts one value of old type `o` into new type `n` like
    /// [`Versions::convert`], except for leaves whose bytes in `now` equal
    /// those in `startup` (the old value at the end of the old version's
    /// start-up): those keep what `dst` holds (the new version's start-up
    /// value). Pointer or union leaves that still hold their non-zero
    /// start-up value are put to `unchanged_ref` (`true`: keep the new
    /// value). Pointer or
    /// union leaves that took the old value and are not zero are pushed to
    /// `changed_refs`.
    #[allow(clippy::too_many_arguments)]
    pub fn convert_changed(
        &self,
        o: &TypeDef,
        n: &TypeDef,
        now: &[u8],
        startup: &[u8],
        dst: &mut [u8],
        path: &str,
        changed_refs: &mut Vec<ChangedRef>,
        unchanged_ref: &mut dyn FnMut(&UnchangedRef) -> bool,
    ) -> Result<(), PlanError> {
        if is_sync_type(&o.name) || is_sync_type(&n.name) {
            return Ok(());
        }
        if now == startup && !self.holds_refs(o) {
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
                        // A transform hook covers the type (as in
                        // `convert`): the field keeps the new value for it.
                        continue;
                    }
                    if f.bit_size.is_some() || nf.bit_size.is_some() {
                        let (off, bit) = (f.offset as usize, f.bit_offset.unwrap_or(0));
                        let width = f.bit_size.unwrap_or(ot.size as u32 * 8);
                        let v = read_bits(now, off, bit, width);
                        if v != read_bits(startup, off, bit, width) {
                            write_bits(
                                dst,
                                nf.offset as usize,
                                nf.bit_offset.unwrap_or(0),
                                nf.bit_size.unwrap_or(nt.size as u32 * 8),
                                v,
                            );
                        }
                        continue;
                    }
                    let (so, no) = (f.offset as usize, nf.offset as usize);
                    let (os, ns) = (ot.size as usize, nt.size as usize);
                    if so + os > now.len() || so + os > startup.len() || no + ns > dst.len() {
                        continue; // a flexible tail
                    }
                    self.convert_changed(
                        ot,
                        nt,
                        &now[so..so + os],
                        &startup[so..so + os],
                        &mut dst[no..no + ns],
                        &format!("{path}.{}", f.name),
                        changed_refs,
                        unchanged_ref,
                    )?;
                }
                Ok(())
            }
            (TypeKind::Array, TypeKind::Array) => {
                let (ot, nt) = self.elems(o, n)?;
                if !matches!(ot.kind, TypeKind::Struct | TypeKind::Array) {
                    // An array of scalars (a string, a buffer) is one value.
                    return self.leaf(o, n, now, startup, dst, path, changed_refs, unchanged_ref);
                }
                let (os, ns) = (ot.size.max(1) as usize, nt.size.max(1) as usize);
                let k = (now.len().min(startup.len()) / os).min(dst.len() / ns);
                for i in 0..k {
                    self.convert_changed(
                        ot,
                        nt,
                        &now[i * os..(i + 1) * os],
                        &startup[i * os..(i + 1) * os],
                        &mut dst[i * ns..(i + 1) * ns],
                        &format!("{path}[{i}]"),
                        changed_refs,
                        unchanged_ref,
                    )?;
                }
                Ok(())
            }
            _ => self.leaf(o, n, now, startup, dst, path, changed_refs, unchanged_ref),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &self,
        o: &TypeDef,
        n: &TypeDef,
        now: &[u8],
        startup: &[u8],
        dst: &mut [u8],
        path: &str,
        changed_refs: &mut Vec<ChangedRef>,
        unchanged_ref: &mut dyn FnMut(&UnchangedRef) -> bool,
    ) -> Result<(), PlanError> {
        let elem = (o.kind == TypeKind::Array)
            .then(|| self.old_type(o.target.as_deref().unwrap_or("")))
            .flatten();
        let scalar = is_scalar_kind(o.kind) || elem.is_some_and(|e| is_scalar_kind(e.kind));
        if now == startup {
            // A scalar, or a null pointer since start-up: nothing of the
            // old state to keep.
            if scalar || now.iter().all(|&b| b == 0) {
                return Ok(());
            }
            let ptr = |t: &TypeDef| (t.kind == TypeKind::Pointer).then(|| t.target.clone());
            let target = ptr(o)
                .or_else(|| elem.and_then(ptr))
                .map(|t| t.unwrap_or_default());
            let keep_new = unchanged_ref(&UnchangedRef {
                path,
                old: now,
                target: target.as_deref(),
            });
            if keep_new {
                return Ok(());
            }
        }
        self.convert(o, n, now, dst, path)?;
        if !scalar && now.iter().any(|&b| b != 0) {
            let ptr = |t: &TypeDef| {
                (t.kind == TypeKind::Pointer).then(|| t.target.clone().unwrap_or_default())
            };
            changed_refs.push(ChangedRef {
                path: path.to_string(),
                at: dst.as_ptr() as usize,
                len: dst.len(),
                target: ptr(n).or_else(|| {
                    let ne = self.new_type(n.target.as_deref().unwrap_or(""))?;
                    (n.kind == TypeKind::Array).then(|| ptr(ne)).flatten()
                }),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Renames;
    use crate::model::*;
    use crate::plan::Versions;

    fn ty(name: &str, kind: TypeKind, size: u64) -> TypeDef {
        TypeDef {
            name: name.into(),
            kind,
            size,
            fields: vec![],
            target: None,
            count: None,
            encoding: Some(Encoding::Signed),
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
    fn versions_map(wrec: TypeDef) -> TypeMap {
        let mut arr = ty("struct wrec[2]", TypeKind::Array, wrec.size * 2);
        arr.target = Some("struct wrec".into());
        arr.count = Some(2);
        let mut name = ty("char[4]", TypeKind::Array, 4);
        name.target = Some("char".into());
        name.count = Some(4);
        let mut ptr = ty("int *", TypeKind::Pointer, 8);
        ptr.target = Some("int".into());
        TypeMap {
            types: vec![
                ty("int", TypeKind::Scalar, 4),
                ty("long", TypeKind::Scalar, 8),
                ty("char", TypeKind::Scalar, 1),
                name,
                ptr,
                wrec,
                arr,
            ],
            ..TypeMap::new()
        }
    }

    fn bytes(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn unchanged_fields_keep_the_new_start_up_values() {
        // v1: { int pid; int fd; long forwarded; char name[4]; int *p; }
        let mut w1 = ty("struct wrec", TypeKind::Struct, 32);
        w1.fields = vec![
            field("pid", 0, "int"),
            field("fd", 4, "int"),
            field("forwarded", 8, "long"),
            field("name", 16, "char[4]"),
            field("p", 24, "int *"),
        ];
        // v2 adds `last` after forwarded.
        let mut w2 = ty("struct wrec", TypeKind::Struct, 40);
        w2.fields = vec![
            field("pid", 0, "int"),
            field("fd", 4, "int"),
            field("forwarded", 8, "long"),
            field("last", 16, "long"),
            field("name", 24, "char[4]"),
            field("p", 32, "int *"),
        ];
        let (old, new) = (versions_map(w1), versions_map(w2));
        let v = Versions::new(&old, &new, Renames::new());
        let rec1 = |pid: i32, fd: i32, fw: i64, name: &[u8; 4], p: u64| {
            bytes(&[
                &pid.to_le_bytes(),
                &fd.to_le_bytes(),
                &fw.to_le_bytes(),
                name,
                &[0; 4],
                &p.to_le_bytes(),
            ])
        };
        // Start-up: pids 100/101, fds 4/5; worker 0 then served 3 and was
        // renamed, worker 1 untouched.
        let startup = bytes(&[
            &rec1(100, 4, 0, b"ab\0\0", 0),
            &rec1(101, 5, 0, b"cd\0\0", 0),
        ]);
        let now = bytes(&[
            &rec1(100, 4, 3, b"x\0\0\0", 0x1000),
            &rec1(101, 5, 0, b"cd\0\0", 0),
        ]);
        // New start-up: pids 200/201, fds 9/10, names "NEW".
        let rec2 = |pid: i32, fd: i32| {
            bytes(&[
                &pid.to_le_bytes(),
                &fd.to_le_bytes(),
                &0i64.to_le_bytes(),
                &7i64.to_le_bytes(),
                b"NEW\0",
                &[0; 4],
                &0u64.to_le_bytes(),
            ])
        };
        let mut dst = bytes(&[&rec2(200, 9), &rec2(201, 10)]);
        let mut refs = vec![];
        v.convert_changed(
            v.old_type("struct wrec[2]").unwrap(),
            v.new_type("struct wrec[2]").unwrap(),
            &now,
            &startup,
            &mut dst,
            "wk",
            &mut refs,
            &mut |_| panic!("no pointer is unchanged since start-up"),
        )
        .unwrap();
        let i32_at = |o: usize| i32::from_le_bytes(dst[o..o + 4].try_into().unwrap());
        let i64_at = |o: usize| i64::from_le_bytes(dst[o..o + 8].try_into().unwrap());
        // Worker 0: pid and fd from the new start-up, counter and the whole
        // name (not a mix of bytes) from the old state, added field kept.
        assert_eq!(
            (i32_at(0), i32_at(4), i64_at(8), i64_at(16)),
            (200, 9, 3, 7)
        );
        assert_eq!(&dst[24..28], b"x\0\0\0");
        assert_eq!(i64_at(32), 0x1000);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].path, "wk[0].p");
        assert_eq!(refs[0].at, dst.as_ptr() as usize + 32);
        assert_eq!((refs[0].len, refs[0].target.as_deref()), (8, Some("int")));
        // Worker 1: nothing changed since start-up, all new.
        assert_eq!(&dst[40..80], &rec2(201, 10)[..]);
    }

    /// Pointers that still hold their start-up value go to the caller's
    /// decision: kept new when it says so, else taken old and reported.
    #[test]
    fn unchanged_pointers_are_the_callers_to_decide() {
        // struct wrec { int pid; int fd; long forwarded; char name[4]; int *p; }
        let mut w = ty("struct wrec", TypeKind::Struct, 32);
        w.fields = vec![
            field("pid", 0, "int"),
            field("fd", 4, "int"),
            field("forwarded", 8, "long"),
            field("name", 16, "char[4]"),
            field("p", 24, "int *"),
        ];
        let map = versions_map(w);
        let v = Versions::new(&map, &map, Renames::new());
        let rec = |pid: i32, p: u64| {
            bytes(&[
                &pid.to_le_bytes(),
                &[0; 4],
                &0i64.to_le_bytes(),
                b"ab\0\0",
                &[0; 4],
                &p.to_le_bytes(),
            ])
        };
        // Nothing changed since start-up; the new start-up made other
        // pids and pointers.
        let old = bytes(&[&rec(100, 0x1000), &rec(101, 0x2000)]);
        let new = bytes(&[&rec(200, 0x9000), &rec(201, 0xa000)]);
        let mut dst = new.clone();
        let (mut refs, mut asked) = (vec![], vec![]);
        v.convert_changed(
            v.old_type("struct wrec[2]").unwrap(),
            v.new_type("struct wrec[2]").unwrap(),
            &old,
            &old,
            &mut dst,
            "wk",
            &mut refs,
            &mut |u| {
                let p = u64::from_le_bytes(u.old.try_into().unwrap());
                asked.push((u.path.to_string(), p, u.target.map(str::to_string)));
                p == 0x1000 // "its pointee is unchanged": keep the new value
            },
        )
        .unwrap();
        assert_eq!(
            asked,
            vec![
                ("wk[0].p".to_string(), 0x1000, Some("int".to_string())),
                ("wk[1].p".to_string(), 0x2000, Some("int".to_string())),
            ]
        );
        let u64_at = |o: usize| u64::from_le_bytes(dst[o..o + 8].try_into().unwrap());
        // Scalars: the new start-up's; wk[0].p kept new, wk[1].p old.
        assert_eq!(&dst[..24], &new[..24]);
        assert_eq!((u64_at(24), u64_at(56)), (0x9000, 0x2000));
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].path, "wk[1].p");
        assert_eq!(refs[0].at, dst.as_ptr() as usize + 56);
    }

    /// An array of pointers (an allow-list) is one leaf: asked about once,
    /// with all its elements, and kept or taken whole, even when it grew.
    #[test]
    fn an_array_of_pointers_is_decided_whole() {
        let arr = |n: u64| {
            let mut a = ty(&format!("char *[{n}]"), TypeKind::Array, 8 * n);
            a.target = Some("char *".into());
            a.count = Some(n);
            a
        };
        let mut p = ty("char *", TypeKind::Pointer, 8);
        p.target = Some("char".into());
        let map = |n: u64| TypeMap {
            types: vec![ty("char", TypeKind::Scalar, 1), p.clone(), arr(n)],
            ..TypeMap::new()
        };
        let (old, new) = (map(3), map(4));
        let v = Versions::new(&old, &new, Renames::new());
        let words = |w: &[u64]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let now = words(&[0x10, 0x20, 0]);
        let fresh = words(&[0x90, 0xa0, 0xb0, 0]);
        for keep in [true, false] {
            let (mut dst, mut refs, mut asked) = (fresh.clone(), vec![], 0);
            v.convert_changed(
                v.old_type("char *[3]").unwrap(),
                v.new_type("char *[4]").unwrap(),
                &now,
                &now,
                &mut dst,
                "allow",
                &mut refs,
                &mut |u| {
                    asked += 1;
                    assert_eq!((u.path, u.old, u.target), ("allow", &now[..], Some("char")));
                    keep
                },
            )
            .unwrap();
            assert_eq!(asked, 1);
            if keep {
                assert_eq!(dst, fresh);
                assert!(refs.is_empty());
            } else {
                assert_eq!(dst, words(&[0x10, 0x20, 0, 0]));
                assert_eq!((refs.len(), refs[0].len), (1, 32));
            }
        }
    }
}
