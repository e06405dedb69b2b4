//! Reading LLVM debug-info type metadata into `mcr_types` type definitions.
//!
//! Every DI type node gets a *canonical name*: its C spelling with typedefs
//! and qualifiers resolved (`struct node`, `unsigned long`, `char *`,
//! `int[2][3]`, `char[]`, `int (int, char *)`, `int (*)(int, char *)`).
//! Typedef names become `aliases` of the type they name, except that an
//! anonymous struct is named by its typedef (`pair_t`), or else
//! `struct <anon@file:line>`. Forward declarations get a name but no
//! definition (the defining unit supplies it), so incomplete types never
//! clash with complete ones when maps are merged.

use crate::ir::{Ir, Md, MdOp};
use mcr_types::{Encoding, Enumerator, Field, TypeDef, TypeKind};
use std::collections::HashMap;

/// Operand positions of the LLVM 22 debug-info nodes read through
/// `LLVMGetMDNodeOperands`. They changed in LLVM 22 (size and offset
/// became operands 3 and 4 of every DIType); this is the one place that
/// knows them, pinned by the `operand_positions_match_llvm22` test.
pub mod ops {
    /// DILocalVariable / DIGlobalVariable: name.
    pub const VAR_NAME: usize = 1;
    /// DILocalVariable / DIGlobalVariable: scope.
    pub const VAR_SCOPE: usize = 0;
    /// DILocalVariable / DIGlobalVariable: type.
    pub const VAR_TYPE: usize = 3;
    /// Any DIType: name.
    pub const TYPE_NAME: usize = 2;
    /// DIDerivedType (pointer, typedef, member, qualifiers), DICompositeType
    /// (enum underlying type, array element): base type.
    pub const BASE_TYPE: usize = 5;
    /// DICompositeType: elements tuple (members, enumerators, subranges).
    pub const ELEMENTS: usize = 6;
    /// DISubroutineType: the type array (return type first).
    pub const SUBROUTINE_TYPES: usize = 5;
    /// DISubprogram: scope, name, type.
    pub const SP_SCOPE: usize = 1;
    pub const SP_NAME: usize = 2;
    pub const SP_TYPE: usize = 4;
    /// DILexicalBlock(File): parent scope.
    pub const BLOCK_SCOPE: usize = 1;
    /// DISubrange: count, lower bound, upper bound.
    pub const SUBRANGE_COUNT: usize = 0;
    pub const SUBRANGE_LOWER: usize = 1;
    pub const SUBRANGE_UPPER: usize = 2;
    /// DIEnumerator: name (the value is not an operand).
    pub const ENUMERATOR_NAME: usize = 0;
}

/// DWARF tags used below.
pub mod tag {
    pub const ARRAY: u16 = 0x01;
    pub const CLASS: u16 = 0x02;
    pub const ENUM: u16 = 0x04;
    pub const MEMBER: u16 = 0x0d;
    pub const POINTER: u16 = 0x0f;
    pub const REFERENCE: u16 = 0x10;
    pub const STRUCT: u16 = 0x13;
    pub const SUBROUTINE: u16 = 0x15;
    pub const TYPEDEF: u16 = 0x16;
    pub const UNION: u16 = 0x17;
    pub const SUBRANGE: u16 = 0x21;
    pub const BASE: u16 = 0x24;
    pub const CONST: u16 = 0x26;
    pub const ENUMERATOR: u16 = 0x28;
    pub const VOLATILE: u16 = 0x35;
    pub const RESTRICT: u16 = 0x37;
    pub const ATOMIC: u16 = 0x47;
}

const FLAG_FWD_DECL: i32 = 1 << 2;
const FLAG_BIT_FIELD: i32 = 1 << 19;

/// The TU's debug types, named and converted on demand.
pub struct DiTypes<'a> {
    ir: &'a Ir,
    compile_dir: String,
    pub defs: Vec<TypeDef>,
    index: HashMap<String, usize>,
    /// Canonical name of every DI type node seen.
    names: HashMap<Md, String>,
    /// Anonymous composite -> the typedef naming it.
    anon_typedef: HashMap<Md, String>,
    /// Canonical name -> defining node (struct/union/enum).
    nodes: HashMap<String, Md>,
}

impl<'a> DiTypes<'a> {
    pub fn new(ir: &'a Ir, compile_dir: &str) -> Self {
        DiTypes {
            ir,
            compile_dir: compile_dir.to_string(),
            defs: Vec::new(),
            index: HashMap::new(),
            names: HashMap::new(),
            anon_typedef: HashMap::new(),
            nodes: HashMap::new(),
        }
    }

    /// The definition named `name` (or aliased so).
    pub fn def(&self, name: &str) -> Option<&TypeDef> {
        if let Some(&i) = self.index.get(name) {
            return Some(&self.defs[i]);
        }
        self.defs
            .iter()
            .find(|t| t.aliases.iter().any(|a| a == name))
    }

    /// Size in bytes of the type named `name`, if defined.
    pub fn size_of(&self, name: &str) -> Option<u64> {
        self.def(name).map(|d| d.size)
    }

    /// Skips typedefs and qualifiers.
    pub fn strip(&self, mut t: Option<Md>) -> Option<Md> {
        for _ in 0..64 {
            let m = t?;
            if !m.is_di_type() {
                return None;
            }
            match m.tag() {
                tag::TYPEDEF | tag::CONST | tag::VOLATILE | tag::RESTRICT | tag::ATOMIC => {
                    t = m.node_op(self.ir, ops::BASE_TYPE)
                }
                _ => return Some(m),
            }
        }
        None
    }

    /// If `t` is (after typedefs) a pointer: `Some(pointee)`, the pointee
    /// being `None` for `void *`.
    pub fn pointee(&self, t: Option<Md>) -> Option<Option<Md>> {
        let m = self.strip(t)?;
        matches!(m.tag(), tag::POINTER | tag::REFERENCE).then(|| m.node_op(self.ir, ops::BASE_TYPE))
    }

    /// Byte-buffer pointees (`void`, `char`, `unsigned char`, their
    /// typedefs such as `uint8_t`) say nothing about what the memory holds.
    pub fn is_generic(&self, t: Option<Md>) -> bool {
        match self.strip(t) {
            None => true,
            Some(m) => m.tag() == tag::BASE && m.type_name().contains("char"),
        }
    }

    /// `char`, `signed char`, `unsigned char` (by canonical name).
    pub fn is_char_name(&self, name: &str) -> bool {
        self.def(name)
            .is_some_and(|d| d.kind == TypeKind::Scalar && d.encoding == Some(Encoding::Char))
    }

    fn rel(&self, file: &str) -> String {
        crate::paths::relative_to(file, &self.compile_dir)
    }

    fn decl_of(&self, m: Md) -> Option<String> {
        let line = m.type_line();
        let f = m.scope_file()?;
        Some(format!("{}:{}", self.rel(&f.file_name()), line))
    }

    fn push(&mut self, def: TypeDef) -> usize {
        let i = self.defs.len();
        self.index.insert(def.name.clone(), i);
        self.defs.push(def);
        i
    }

    fn new_def(name: &str, kind: TypeKind, size: u64) -> TypeDef {
        TypeDef {
            name: name.to_string(),
            kind,
            size,
            fields: vec![],
            target: None,
            count: None,
            encoding: None,
            enumerators: vec![],
            aliases: vec![],
            decl: None,
        }
    }

    /// Registers `char` (for `strdup` sites in units that never name it).
    pub fn ensure_char(&mut self) {
        self.ensure_scalar("char", 1, Some(Encoding::Char));
    }

    fn ensure_scalar(&mut self, name: &str, size: u64, enc: Option<Encoding>) {
        if !self.index.contains_key(name) {
            let mut d = Self::new_def(name, TypeKind::Scalar, size);
            d.encoding = enc;
            self.push(d);
        }
    }

    /// Canonical name of a DI type (registering it and what it refers to).
    pub fn name(&mut self, t: Option<Md>) -> String {
        let Some(m) = t else {
            self.ensure_scalar("void", 0, None);
            return "void".into();
        };
        if let Some(n) = self.names.get(&m) {
            return n.clone();
        }
        if !m.is_di_type() {
            return "<unknown>".into();
        }
        let n = self.name_uncached(m);
        self.names.insert(m, n.clone());
        n
    }

    fn name_uncached(&mut self, m: Md) -> String {
        let ir = self.ir;
        let size = m.size_bits() / 8;
        match m.tag() {
            tag::BASE => {
                let n = m.type_name();
                let enc = encoding_for(&n);
                self.ensure_scalar(&n, size, Some(enc));
                n
            }
            tag::CONST | tag::VOLATILE | tag::RESTRICT | tag::ATOMIC => {
                self.name(m.node_op(ir, ops::BASE_TYPE))
            }
            tag::TYPEDEF => {
                let alias = m.type_name();
                let base = m.node_op(ir, ops::BASE_TYPE);
                if let Some(b) = self.strip(base) {
                    if matches!(b.tag(), tag::STRUCT | tag::UNION | tag::ENUM | tag::CLASS)
                        && b.type_name().is_empty()
                        && !self.names.contains_key(&b)
                    {
                        self.anon_typedef.entry(b).or_insert_with(|| alias.clone());
                    }
                }
                let target = self.name(base);
                if target != alias {
                    if let Some(&i) = self.index.get(&target) {
                        if !self.defs[i].aliases.contains(&alias) {
                            self.defs[i].aliases.push(alias);
                        }
                    }
                }
                target
            }
            tag::POINTER | tag::REFERENCE => {
                let base = m.node_op(ir, ops::BASE_TYPE);
                let sb = self.strip(base);
                let n = match sb {
                    Some(b) if b.tag() == tag::SUBROUTINE => {
                        let (ret, params) = self.signature(b);
                        self.name(Some(b));
                        format!("{ret} (*)({params})")
                    }
                    _ => format!("{} *", self.name(base)),
                };
                if !self.index.contains_key(&n) {
                    let mut d = Self::new_def(&n, TypeKind::Pointer, size.max(8));
                    d.target = Some(match sb {
                        Some(b) if b.tag() == tag::SUBROUTINE => self.name(Some(b)),
                        _ => self.name(base),
                    });
                    self.push(d);
                }
                n
            }
            tag::SUBROUTINE => {
                let (ret, params) = self.signature(m);
                let n = format!("{ret} ({params})");
                if !self.index.contains_key(&n) {
                    self.push(Self::new_def(&n, TypeKind::Function, 0));
                }
                n
            }
            tag::ARRAY => self.array(m),
            tag::STRUCT | tag::UNION | tag::CLASS | tag::ENUM => self.composite(m),
            other => {
                let n = match m.type_name() {
                    s if !s.is_empty() => s,
                    _ => format!("<dwarf tag {other:#x}>"),
                };
                self.ensure_scalar(&n, size, None);
                n
            }
        }
    }

    /// (return type, parameter list) names of a DISubroutineType.
    fn signature(&mut self, m: Md) -> (String, String) {
        let ir = self.ir;
        let Some(types) = m.node_op(ir, ops::SUBROUTINE_TYPES) else {
            return ("void".into(), String::new());
        };
        let ops_ = types.operands(ir);
        let mut ret = "void".to_string();
        let mut params = Vec::new();
        for (i, o) in ops_.iter().enumerate() {
            let n = match o {
                MdOp::Node(t) => self.name(Some(*t)),
                MdOp::Null if i == 0 => "void".into(),
                MdOp::Null => "...".into(),
                _ => "?".into(),
            };
            if i == 0 {
                ret = n;
            } else {
                params.push(n);
            }
        }
        (ret, params.join(", "))
    }

    fn array(&mut self, m: Md) -> String {
        let ir = self.ir;
        let base = m.node_op(ir, ops::BASE_TYPE);
        let elem = self.name(base);
        let mut dims: Vec<Option<u64>> = Vec::new();
        if let Some(els) = m.node_op(ir, ops::ELEMENTS) {
            for o in els.operands(ir) {
                if let MdOp::Node(sr) = o {
                    if sr.tag() == tag::SUBRANGE {
                        dims.push(subrange_count(ir, sr));
                    }
                }
            }
        }
        if dims.is_empty() {
            dims.push(None);
        }
        let elem_size = self.size_of(&elem).unwrap_or(0);
        // Build from the innermost dimension out: int[2][3] is 2 x int[3].
        let mut inner_name = elem.clone();
        let mut inner_size = elem_size;
        let mut suffix = String::new();
        for (i, d) in dims.iter().enumerate().rev() {
            suffix = format!(
                "[{}]{}",
                d.map(|c| c.to_string()).unwrap_or_default(),
                suffix
            );
            let n = format!("{elem}{suffix}");
            let size = d.map(|c| c * inner_size).unwrap_or(0);
            let size = if i == 0 && d.is_some() {
                (m.size_bits() / 8).max(size)
            } else {
                size
            };
            if !self.index.contains_key(&n) {
                let mut def = Self::new_def(&n, TypeKind::Array, size);
                def.target = Some(inner_name.clone());
                def.count = *d;
                self.push(def);
            }
            inner_name = n;
            inner_size = size;
        }
        inner_name
    }

    fn composite(&mut self, m: Md) -> String {
        let ir = self.ir;
        let t = m.tag();
        let word = match t {
            tag::UNION => "union",
            tag::ENUM => "enum",
            _ => "struct",
        };
        let raw = m.type_name();
        let name = if !raw.is_empty() {
            format!("{word} {raw}")
        } else if let Some(td) = self.anon_typedef.get(&m) {
            td.clone()
        } else {
            let d = self.decl_of(m).unwrap_or_else(|| "?".into());
            format!("{word} <anon@{d}>")
        };
        self.names.insert(m, name.clone());
        if m.flags() & FLAG_FWD_DECL != 0 || self.index.contains_key(&name) {
            return name;
        }
        let kind = match t {
            tag::UNION => TypeKind::Union,
            tag::ENUM => TypeKind::Enum,
            _ => TypeKind::Struct,
        };
        let mut def = Self::new_def(&name, kind, m.size_bits() / 8);
        def.decl = self.decl_of(m);
        let idx = self.push(def);
        self.nodes.insert(name.clone(), m);
        let elements = m
            .node_op(ir, ops::ELEMENTS)
            .map(|e| e.operands(ir))
            .unwrap_or_default();
        if kind == TypeKind::Enum {
            let target = m.node_op(ir, ops::BASE_TYPE).map(|b| self.name(Some(b)));
            let mut enums = Vec::new();
            for (i, o) in elements.iter().enumerate() {
                if let MdOp::Node(e) = o {
                    if e.tag() == tag::ENUMERATOR {
                        let name = e.str_op(ir, ops::ENUMERATOR_NAME).unwrap_or_default();
                        let value = enumerator_value(&e.print(ir)).unwrap_or(i as i64);
                        enums.push(Enumerator { name, value });
                    }
                }
            }
            let d = &mut self.defs[idx];
            d.target = target;
            d.enumerators = enums;
            return name;
        }
        let mut fields = Vec::new();
        for o in elements {
            let MdOp::Node(f) = o else { continue };
            if f.tag() != tag::MEMBER {
                continue;
            }
            let fname = f.str_op(ir, ops::TYPE_NAME).unwrap_or_default();
            let fty = self.name(f.node_op(ir, ops::BASE_TYPE));
            let off = f.offset_bits();
            let (offset, bit_offset, bit_size) = if f.flags() & FLAG_BIT_FIELD != 0 {
                (off / 8, Some((off % 8) as u32), Some(f.size_bits() as u32))
            } else {
                (off / 8, None, None)
            };
            fields.push(Field {
                name: fname,
                offset,
                ty: fty,
                bit_offset,
                bit_size,
            });
        }
        self.defs[idx].fields = fields;
        name
    }

    /// Canonical name for an alias or a name.
    pub fn canonical(&self, name: &str) -> Option<String> {
        self.def(name).map(|d| d.name.clone())
    }

    /// The defining node of a struct/union/enum by canonical name.
    pub fn node(&self, name: &str) -> Option<Md> {
        self.nodes.get(name).copied()
    }

    /// Resolves the bare type name of an `!alloc_token` (`node`, `pair_t`,
    /// `char *`, `node[4]`, `unsigned long`, `outer::(unnamed struct at
    /// x.c:11:16)`) to a canonical name of this TU. Arrays resolve to their
    /// element (the size check accounts for the count). Ambiguity -> None.
    pub fn resolve_token(&mut self, tok: &str) -> Option<String> {
        let mut t = tok.trim();
        while t.ends_with(']') {
            t = t[..t.rfind('[')?].trim_end();
        }
        if let Some(base) = t.strip_suffix('*') {
            let base = base.trim_end();
            let inner = self.resolve_token(base)?;
            let n = format!("{inner} *");
            if !self.index.contains_key(&n) {
                let mut d = Self::new_def(&n, TypeKind::Pointer, 8);
                d.target = Some(inner);
                self.push(d);
            }
            return Some(n);
        }
        if let Some(pos) = t.find("(unnamed ").or_else(|| t.find("(anonymous ")) {
            let at = t[pos..].rfind(" at ")? + pos + 4;
            let loc = t[at..].trim_end_matches(')');
            let mut parts = loc.rsplitn(3, ':');
            let _col = parts.next()?;
            let line = parts.next()?;
            let file = parts.next()?;
            let decl = format!("{}:{}", self.rel(file), line);
            let hits: Vec<&TypeDef> = self
                .defs
                .iter()
                .filter(|d| {
                    matches!(d.kind, TypeKind::Struct | TypeKind::Union)
                        && d.decl.as_deref() == Some(&decl)
                })
                .collect();
            return (hits.len() == 1).then(|| hits[0].name.clone());
        }
        if t == "void" {
            return Some(self.name(None));
        }
        let t = t
            .strip_prefix("struct ")
            .or_else(|| t.strip_prefix("union "))
            .or_else(|| t.strip_prefix("enum "))
            .unwrap_or(t);
        let mut found: Vec<String> = Vec::new();
        for cand in [
            format!("struct {t}"),
            format!("union {t}"),
            format!("enum {t}"),
            t.to_string(),
        ] {
            if let Some(c) = self.canonical(&cand) {
                if !found.contains(&c) {
                    found.push(c);
                }
            }
        }
        (found.len() == 1).then(|| found.remove(0))
    }

    /// The DI type of the sub-object at byte `off` of an object of type
    /// `t`, `want` bytes large. Unions answer only when one member fits.
    pub fn sub_object(&self, t: Option<Md>, off: u64, want: u64) -> Option<Option<Md>> {
        let mut cur = t;
        let mut off = off;
        for _ in 0..32 {
            let m = self.strip(cur);
            let size = m.map(|m| m.size_bits() / 8).unwrap_or(0);
            let Some(m) = m else {
                return (off == 0).then_some(cur);
            };
            match m.tag() {
                tag::STRUCT | tag::CLASS | tag::UNION => {
                    if off == 0 && size == want {
                        return Some(cur);
                    }
                    let els = m.node_op(self.ir, ops::ELEMENTS)?.operands(self.ir);
                    let mut hits = Vec::new();
                    for o in els {
                        let MdOp::Node(f) = o else { continue };
                        if f.tag() != tag::MEMBER || f.flags() & FLAG_BIT_FIELD != 0 {
                            continue;
                        }
                        let fo = f.offset_bits() / 8;
                        let fs = f.size_bits() / 8;
                        if off >= fo && (off < fo + fs || (fs == 0 && off == fo)) {
                            hits.push((f, fo));
                        }
                    }
                    if hits.len() != 1 {
                        return None;
                    }
                    let (f, fo) = hits[0];
                    cur = f.node_op(self.ir, ops::BASE_TYPE);
                    off -= fo;
                }
                tag::ARRAY => {
                    let elem = m.node_op(self.ir, ops::BASE_TYPE);
                    let es = self.strip(elem).map(|e| e.size_bits() / 8).unwrap_or(0);
                    if off == 0 && size == want && size != 0 {
                        return Some(cur);
                    }
                    if es == 0 {
                        return None;
                    }
                    off %= es;
                    cur = elem;
                }
                _ => return (off == 0 && (size == want || want == 0)).then_some(cur),
            }
        }
        None
    }

    /// True when an object of type `a` is a prefix of one of type `b`
    /// (`b` is `a`, or `b`'s member at offset 0 has `a` as prefix): C-style
    /// inheritance and header structs.
    pub fn is_prefix(&self, a: &str, b: &str) -> bool {
        let mut cur = b.to_string();
        for _ in 0..16 {
            if cur == a {
                return true;
            }
            let Some(d) = self.def(&cur) else {
                return false;
            };
            if d.kind != TypeKind::Struct {
                return false;
            }
            match d.fields.first() {
                Some(f) if f.offset == 0 && f.bit_size.is_none() => {
                    cur = self.canonical(&f.ty).unwrap_or(f.ty.clone())
                }
                _ => return false,
            }
        }
        false
    }

    /// A struct ending in a flexible array (`T x[]`, or the old `T x[0]`,
    /// `T x[1]` struct hack): (offset of the array, element size).
    pub fn flexible_tail(&self, name: &str) -> Option<(u64, u64)> {
        let d = self.def(name)?;
        if d.kind != TypeKind::Struct {
            return None;
        }
        let f = d.fields.last()?;
        let a = self.def(&f.ty)?;
        if a.kind != TypeKind::Array || !matches!(a.count, None | Some(0) | Some(1)) {
            return None;
        }
        let es = self.size_of(a.target.as_deref()?)?;
        (es > 0).then_some((f.offset, es))
    }

    /// The element type of a flexible tail.
    pub fn flexible_elem(&self, name: &str) -> Option<String> {
        let d = self.def(name)?;
        let f = d.fields.last()?;
        let a = self.def(&f.ty)?;
        a.target.as_deref().and_then(|t| self.canonical(t))
    }
}

fn subrange_count(ir: &Ir, sr: Md) -> Option<u64> {
    let o = sr.operands(ir);
    match o.get(ops::SUBRANGE_COUNT) {
        Some(MdOp::Int(n)) if *n >= 0 => return Some(*n as u64),
        Some(MdOp::Int(_)) => return None,
        _ => {}
    }
    let lower = match o.get(ops::SUBRANGE_LOWER) {
        Some(MdOp::Int(l)) => *l,
        _ => 0,
    };
    match o.get(ops::SUBRANGE_UPPER) {
        Some(MdOp::Int(u)) if *u >= lower => Some((u - lower + 1) as u64),
        _ => None,
    }
}

/// `value: N` out of a printed DIEnumerator (the C API has no getter).
fn enumerator_value(printed: &str) -> Option<i64> {
    let at = printed.find("value: ")? + 7;
    let rest = &printed[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Scalar encoding from the C spelling of a base type (DIBasicType's
/// encoding has no C-API getter; C's basic type names are unambiguous).
pub fn encoding_for(name: &str) -> Encoding {
    if name == "_Bool" || name == "bool" {
        Encoding::Bool
    } else if name.contains("float")
        || name.contains("double")
        || name.contains("_Float")
        || name.contains("_Complex")
    {
        Encoding::Float
    } else if name.contains("char") {
        Encoding::Char
    } else if name.contains("unsigned") {
        Encoding::Unsigned
    } else {
        Encoding::Signed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkwell::context::Context;
    use inkwell::memory_buffer::MemoryBuffer;

    /// Debug info as clang-22 emits it for:
    /// ```c
    /// struct node { struct node *next; int v; };
    /// typedef struct { int a; double b; } pair_t;
    /// struct blob { int n; char data[]; };
    /// enum color { RED = 1, GREEN = 5 };
    /// struct s { unsigned f:3; pair_t p; enum color c; int arr[2][3]; };
    /// ```
    pub(crate) const IR: &str = r#"
source_filename = "t.c"
target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:64-S128"
target triple = "x86_64-pc-linux-gnu"
@gn = dso_local global ptr null, align 8, !dbg !11
@gs = dso_local global [56 x i8] zeroinitializer, align 8, !dbg !30
@gb = dso_local global ptr null, align 8, !dbg !50
!llvm.dbg.cu = !{!7}
!llvm.module.flags = !{!20, !21}
!3 = !DIFile(filename: "t.c", directory: "/tmp/exp")
!6 = !DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)
!7 = distinct !DICompileUnit(language: DW_LANG_C11, file: !3, producer: "clang", isOptimized: false, runtimeVersion: 0, emissionKind: FullDebug, globals: !10)
!10 = !{!11, !30, !50}
!11 = !DIGlobalVariableExpression(var: !12, expr: !DIExpression())
!12 = distinct !DIGlobalVariable(name: "gn", scope: !7, file: !3, line: 8, type: !13, isLocal: false, isDefinition: true)
!13 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !14, size: 64)
!14 = distinct !DICompositeType(tag: DW_TAG_structure_type, name: "node", file: !3, line: 3, size: 128, elements: !15)
!15 = !{!16, !17}
!16 = !DIDerivedType(tag: DW_TAG_member, name: "next", scope: !14, file: !3, line: 3, baseType: !13, size: 64)
!17 = !DIDerivedType(tag: DW_TAG_member, name: "v", scope: !14, file: !3, line: 3, baseType: !6, size: 32, offset: 64)
!20 = !{i32 7, !"Dwarf Version", i32 5}
!21 = !{i32 2, !"Debug Info Version", i32 3}
!30 = !DIGlobalVariableExpression(var: !31, expr: !DIExpression())
!31 = distinct !DIGlobalVariable(name: "gs", scope: !7, file: !3, line: 9, type: !32, isLocal: false, isDefinition: true)
!32 = distinct !DICompositeType(tag: DW_TAG_structure_type, name: "s", file: !3, line: 5, size: 448, elements: !33)
!33 = !{!34, !35, !40, !44}
!34 = !DIDerivedType(tag: DW_TAG_member, name: "f", scope: !32, file: !3, line: 5, baseType: !49, size: 3, flags: DIFlagBitField, extraData: i64 0)
!35 = !DIDerivedType(tag: DW_TAG_member, name: "p", scope: !32, file: !3, line: 5, baseType: !36, size: 128, offset: 64)
!36 = !DIDerivedType(tag: DW_TAG_typedef, name: "pair_t", file: !3, line: 2, baseType: !37)
!37 = distinct !DICompositeType(tag: DW_TAG_structure_type, file: !3, line: 2, size: 128, elements: !38)
!38 = !{!39, !48}
!39 = !DIDerivedType(tag: DW_TAG_member, name: "a", scope: !37, file: !3, line: 2, baseType: !6, size: 32)
!48 = !DIDerivedType(tag: DW_TAG_member, name: "b", scope: !37, file: !3, line: 2, baseType: !47, size: 64, offset: 64)
!47 = !DIBasicType(name: "double", size: 64, encoding: DW_ATE_float)
!49 = !DIBasicType(name: "unsigned int", size: 32, encoding: DW_ATE_unsigned)
!40 = !DIDerivedType(tag: DW_TAG_member, name: "c", scope: !32, file: !3, line: 5, baseType: !41, size: 32, offset: 192)
!41 = !DICompositeType(tag: DW_TAG_enumeration_type, name: "color", file: !3, line: 4, baseType: !49, size: 32, elements: !42)
!42 = !{!43, !60}
!43 = !DIEnumerator(name: "RED", value: 1, isUnsigned: true)
!60 = !DIEnumerator(name: "GREEN", value: 5, isUnsigned: true)
!44 = !DIDerivedType(tag: DW_TAG_member, name: "arr", scope: !32, file: !3, line: 5, baseType: !45, size: 192, offset: 224)
!45 = !DICompositeType(tag: DW_TAG_array_type, baseType: !6, size: 192, elements: !46)
!46 = !{!61, !62}
!61 = !DISubrange(count: 2)
!62 = !DISubrange(count: 3)
!50 = !DIGlobalVariableExpression(var: !51, expr: !DIExpression())
!51 = distinct !DIGlobalVariable(name: "gb", scope: !7, file: !3, line: 10, type: !52, isLocal: false, isDefinition: true)
!52 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !53, size: 64)
!53 = distinct !DICompositeType(tag: DW_TAG_structure_type, name: "blob", file: !3, line: 4, size: 32, elements: !54)
!54 = !{!55, !56}
!55 = !DIDerivedType(tag: DW_TAG_member, name: "n", scope: !53, file: !3, line: 4, baseType: !6, size: 32)
!56 = !DIDerivedType(tag: DW_TAG_member, name: "data", scope: !53, file: !3, line: 4, baseType: !57, offset: 32)
!57 = !DICompositeType(tag: DW_TAG_array_type, baseType: !58, elements: !59)
!58 = !DIBasicType(name: "char", size: 8, encoding: DW_ATE_signed_char)
!59 = !{!63}
!63 = !DISubrange(count: -1)
"#;

    pub(crate) fn with_module<R>(f: impl FnOnce(&Ir, &inkwell::module::Module) -> R) -> R {
        let ctx = Context::create();
        let buf = MemoryBuffer::create_from_memory_range_copy(IR.as_bytes(), "t.ll");
        let m = ctx.create_module_from_ir(buf).expect("test IR parses");
        let ir = Ir::new(m.as_mut_ptr());
        f(&ir, &m)
    }

    fn var_type(ir: &Ir, g: &str) -> Option<Md> {
        let gv = ir.named_global(g).unwrap();
        let var = ir.global_di_vars(gv)[0];
        assert_eq!(var.str_op(ir, ops::VAR_NAME).as_deref(), Some(g));
        var.node_op(ir, ops::VAR_TYPE)
    }

    #[test]
    fn operand_positions_match_llvm22() {
        with_module(|ir, _| {
            let t = var_type(ir, "gn").unwrap();
            assert_eq!(t.tag(), tag::POINTER);
            let node = t.node_op(ir, ops::BASE_TYPE).unwrap();
            assert_eq!(node.tag(), tag::STRUCT);
            assert_eq!(node.str_op(ir, ops::TYPE_NAME).as_deref(), Some("node"));
            let els = node.node_op(ir, ops::ELEMENTS).unwrap().operands(ir);
            assert_eq!(els.len(), 2);
            let MdOp::Node(v) = els[1] else {
                panic!("member")
            };
            assert_eq!(v.str_op(ir, ops::TYPE_NAME).as_deref(), Some("v"));
            assert_eq!(v.offset_bits(), 64);
            assert_eq!(v.size_bits(), 32);
        });
    }

    #[test]
    fn names_layouts_typedefs_enums_arrays() {
        with_module(|ir, _| {
            let mut di = DiTypes::new(ir, "/tmp/exp");
            assert_eq!(di.name(var_type(ir, "gn")), "struct node *");
            assert_eq!(di.name(var_type(ir, "gs")), "struct s");
            assert_eq!(di.name(var_type(ir, "gb")), "struct blob *");
            let s = di.def("struct s").unwrap().clone();
            assert_eq!(s.size, 56);
            let tys: Vec<(&str, u64, &str)> = s
                .fields
                .iter()
                .map(|f| (f.name.as_str(), f.offset, f.ty.as_str()))
                .collect();
            assert_eq!(
                tys,
                vec![
                    ("f", 0, "unsigned int"),
                    ("p", 8, "pair_t"),
                    ("c", 24, "enum color"),
                    ("arr", 28, "int[2][3]")
                ]
            );
            assert_eq!(s.fields[0].bit_size, Some(3));
            let pair = di.def("pair_t").unwrap();
            assert_eq!(
                (pair.kind, pair.size, pair.fields.len()),
                (TypeKind::Struct, 16, 2)
            );
            let arr = di.def("int[2][3]").unwrap();
            assert_eq!(
                (arr.count, arr.target.as_deref(), arr.size),
                (Some(2), Some("int[3]"), 24)
            );
            let e = di.def("enum color").unwrap();
            assert_eq!(
                e.enumerators.iter().map(|e| e.value).collect::<Vec<_>>(),
                vec![1, 5]
            );
            assert_eq!(di.def("char[]").unwrap().count, None);
            assert_eq!(di.flexible_tail("struct blob"), Some((4, 1)));
            assert_eq!(di.resolve_token("node").as_deref(), Some("struct node"));
            assert_eq!(di.resolve_token("node *").as_deref(), Some("struct node *"));
            assert_eq!(di.resolve_token("node[4]").as_deref(), Some("struct node"));
            assert_eq!(di.resolve_token("pair_t").as_deref(), Some("pair_t"));
            assert_eq!(di.resolve_token("nope"), None);
            // Member lookup by offset: the double inside pair_t inside s.
            let st = var_type(ir, "gs");
            let b = di.sub_object(st, 16, 8).unwrap();
            assert_eq!(di.name(b), "double");
            assert!(di.is_prefix("struct node", "struct node"));
        });
    }
}
