//! Typed heap objects held by hidden references (issue 5). A word that is
//! not a pointer by type (a `uintptr_t` or `long`, bytes of a char buffer,
//! untyped memory, a union member) may hold an object's address; such a
//! word cannot be rewritten safely (it may be a number that only looks
//! like an address), so the object it names must keep its address.
//!
//! Before the transfer decides which objects move, [`find`] scans every
//! hidden word of the old state (globals, thread-locals, typed and untyped
//! heap objects, carved objects and the blocks around them) for addresses
//! inside typed heap objects whose layout changes. Such an object is
//! *pinned*: [`convert`] turns it into its new layout where it is (through a
//! copy of the old bytes, as the layouts overlap) and records the new size
//! and site in its heap header; precise pointers to it are then rewritten
//! as for any moved object, whose new address is its old one.
//!
//! Refused, naming the type and the holder:
//! - a pinned object whose new layout does not fit in its heap slot's
//!   usable bytes (it can neither move nor stay);
//! - a hidden reference to an interior address whose offset changes in the
//!   new layout (it would name another field).
//!
//! A reference found only in unions is weaker: union members are scanned
//! conservatively and rewritten anyway, so an object referenced only from
//! unions is pinned when it fits and otherwise moves as before.

use super::context::{Ctx, Move};
use super::interior::Rewrites;
use super::sites::site_text;
use super::TransferError;
use crate::heap::{self, Site};
use crate::old_version::checkpoint::{SavedSite, State};
use mcr_types::plan::{has_union, pointer_slots, union_ranges, Versions};
use mcr_types::{TypeDef, TypeKind};
use std::collections::{HashMap, HashSet};

/// Why an object held by a hidden reference cannot be kept.
#[derive(Debug)]
pub enum PinError {
    DoesNotFit {
        ty: String,
        old_size: u64,
        new_size: u64,
        usable: u64,
        from: String,
    },
    Interior {
        ty: String,
        from: String,
        old_off: u64,
        new_off: Option<u64>,
    },
}

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinError::DoesNotFit { ty, old_size, new_size, usable, from } => write!(
                f,
                "an object of `{ty}` grows from {old_size} to {new_size} bytes and is referenced from {from}, which is not a pointer by type; it cannot move and does not fit in place (its heap slot has {usable} usable bytes)"
            ),
            PinError::Interior { ty, from, old_off, new_off } => {
                write!(
                    f,
                    "an object of `{ty}` changes layout and {from} holds the address of byte {old_off} inside it, "
                )?;
                match new_off {
                    Some(n) => write!(f, "which is byte {n} in the new layout"),
                    None => write!(f, "which has no counterpart in the new layout"),
                }?;
                f.write_str(": the object stays in place but that reference, not a pointer by type, cannot be rewritten")
            }
        }
    }
}

/// What an old allocation site allocates: its type's name, its old type,
/// and its new type if the layout changes.
type Facts<'s> = Option<(&'s str, &'s TypeDef, Option<&'s TypeDef>)>;

/// An old typed heap object whose layout changes: it moves unless pinned.
struct Candidate<'s> {
    addr: u64,
    size: u64,
    ty: &'s str,
    ot: &'s TypeDef,
    nt: &'s TypeDef,
    count: u64,
}

impl Candidate<'_> {
    fn new_size(&self) -> u64 {
        self.count * self.nt.size + (self.size - self.count * self.ot.size)
    }
}

/// A hidden word naming a candidate: which one, where inside, whether it
/// lies in a union, and who holds it.
struct Ref {
    cand: usize,
    rel: u64,
    union: bool,
    from: String,
    /// The word's address, when it lies in untyped heap memory read in
    /// place (it may then be rewritten: `interior`).
    word: Option<u64>,
}

/// What each byte offset of one old type is: [`HIDDEN`], [`PRECISE`] (the
/// start of a pointer slot: skipped) or [`UNION`]. A table, because the scan
/// asks once per word that lands in a candidate, and precise pointers into
/// changed objects are the common case (a list of changed nodes).
type Words = std::rc::Rc<[u8]>;
const HIDDEN: u8 = 0;
const PRECISE: u8 = 1;
const UNION: u8 = 2;

/// How to read the words of one value.
enum Shape<'s> {
    /// Every word may be an address.
    Untyped,
    /// Untyped heap memory, read where it lives (`interior`).
    UntypedHeap,
    /// `count` elements of an old type, then an untyped tail.
    Typed(&'s TypeDef, u64),
}

struct Scanner<'s, 'c> {
    v: &'c Versions<'s>,
    cands: Vec<Candidate<'s>>,
    span: (u64, u64),
    /// Start and end of each candidate, apart: the binary search runs per
    /// word and touches only these.
    starts: Vec<u64>,
    ends: Vec<u64>,
    /// By the type's address (types live as long as the maps).
    words: HashMap<usize, Words>,
    refs: Vec<Ref>,
    /// Per candidate: bit 0 once a hidden reference to its start is
    /// recorded, bit 1 once a union's. More of those change nothing (a
    /// start stays right), and a hash table in untyped memory may hold
    /// thousands: each would cost a holder's description.
    start_seen: Vec<u8>,
}

impl<'s> Scanner<'s, '_> {
    /// What each byte of an old `t` value is.
    fn word_kinds(&mut self, t: &TypeDef) -> Words {
        let v = self.v;
        self.words
            .entry(t as *const TypeDef as usize)
            .or_insert_with(|| {
                let look = |n: &str| v.old_type(n).cloned();
                let mut kinds = vec![HIDDEN; t.size as usize];
                let mut unions = Vec::new();
                union_ranges(&look, t, 0, &mut unions, 0);
                for (o, l) in unions {
                    let end = (o + l).min(t.size) as usize;
                    kinds[(o as usize).min(end)..end].fill(UNION);
                }
                let mut precise = Vec::new();
                pointer_slots(&look, t, 0, &mut precise, 0);
                for (o, _) in precise {
                    if let Some(k) = kinds.get_mut(o as usize) {
                        *k = PRECISE;
                    }
                }
                kinds.into()
            })
            .clone()
    }

    /// The candidate containing `p`.
    fn candidate(&self, p: u64) -> Option<usize> {
        if p < self.span.0 || p >= self.span.1 {
            return None;
        }
        let i = self.starts.partition_point(|&a| a <= p).checked_sub(1)?;
        (p < self.ends[i]).then_some(i)
    }

    /// Scans the words of one old value (`bytes`, which lived at `addr`).
    /// `from(off, field)` says who holds a reference found at offset `off`.
    fn scan(&mut self, addr: u64, bytes: &[u8], shape: Shape<'s>, from: &dyn Fn(u64) -> String) {
        if self.cands.is_empty() {
            return;
        }
        // Typed: the word kinds of one element, and how many bytes they cover.
        let in_place = matches!(shape, Shape::UntypedHeap);
        let (kinds, esize, typed_len) = match shape {
            Shape::Typed(t, n) if t.size > 0 => (Some(self.word_kinds(t)), t.size, n * t.size),
            _ => (None, 1, 0),
        };
        let len = bytes.len() as u64;
        let mut w = addr.next_multiple_of(8);
        while w + 8 <= addr + len {
            let k = w - addr;
            w += 8;
            let p = u64::from_ne_bytes(bytes[k as usize..k as usize + 8].try_into().unwrap());
            if p < 4096 {
                continue;
            }
            let kind = match &kinds {
                Some(kinds) if k < typed_len => kinds[(k % esize) as usize],
                _ => HIDDEN,
            };
            if kind == PRECISE {
                continue;
            }
            let Some(cand) = self.candidate(p) else {
                continue;
            };
            let union = kind == UNION;
            let rel = p - self.cands[cand].addr;
            if rel == 0 {
                let bit = 1 << union as u8;
                if self.start_seen[cand] & bit != 0 {
                    continue;
                }
                self.start_seen[cand] |= bit;
            }
            self.refs.push(Ref {
                cand,
                rel,
                union,
                from: from(k),
                word: in_place.then_some(w - 8),
            });
        }
    }
}

/// `off` inside a value of old type `t`, as a C programmer names it:
/// (`.a.b[2]`, leaf type).
fn field_at(v: &Versions, t: &TypeDef, off: u64, depth: u32) -> (String, String) {
    if depth < 16 {
        match t.kind {
            TypeKind::Struct => {
                for f in &t.fields {
                    let Some(ft) = v.old_type(&f.ty) else {
                        continue;
                    };
                    if off >= f.offset && off < f.offset + ft.size.max(1) {
                        let (p, leaf) = field_at(v, ft, off - f.offset, depth + 1);
                        return (format!(".{}{p}", f.name), leaf);
                    }
                }
            }
            TypeKind::Array => {
                if let Some(e) = t.target.as_deref().and_then(|n| v.old_type(n)) {
                    if e.size > 0 && e.kind != TypeKind::Scalar {
                        let (p, leaf) = field_at(v, e, off % e.size, depth + 1);
                        return (format!("[{}]{p}", off / e.size), leaf);
                    }
                }
            }
            _ => {}
        }
    }
    (String::new(), t.name.clone())
}

/// A global's identity (`name`, `file:name` for a static, or
/// `file:function:name` for a function's static) as a C programmer says it.
fn global_text(what: &str, id: &str) -> String {
    let mut parts = id.rsplitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(file), None) => format!("the {what} `{n}` (static, {file})"),
        (Some(n), Some(func), Some(file)) => {
            format!("the {what} `{n}` (static in `{func}`, {file})")
        }
        _ => format!("the {what} `{id}`"),
    }
}

/// "the global `g` (`T`)" or "field `.a` (`long`) of the global `g`".
fn describe(v: &Versions, t: Option<&TypeDef>, off: u64, whole: &str) -> String {
    let Some(t) = t else {
        return whole.to_string();
    };
    match field_at(v, t, off, 0) {
        (p, leaf) if p.is_empty() => format!("{whole} (`{leaf}`)"),
        (p, leaf) => format!(
            "field `{}` (`{leaf}`) of {whole}",
            p.trim_start_matches('.')
        ),
    }
}

/// Finds the objects to pin (see the module comment). `inherited` are the
/// old heap objects, `pairs` those poured into new start-up counterparts
/// (they move whatever holds them: a hidden reference to one whose layout
/// changes is refused later, as before), `carved_parents` the heap blocks
/// holding carved objects.
pub(super) fn find<'s>(
    state: &'s State,
    ctx: &Ctx<'s>,
    inherited: &[heap::Object],
    pairs: &HashMap<u64, u64>,
    carved_parents: &HashSet<u64>,
    old_sites: &HashMap<u64, &'s SavedSite>,
) -> Result<(HashSet<u64>, Rewrites), TransferError> {
    let v = &ctx.v;
    // What each old site allocates (type name, old type, new type when
    // its layout changes), worked out once per site; neighbours in the
    // heap mostly share a site, so the last answer is kept at hand.
    let mut by_site: HashMap<u64, Facts<'s>> = HashMap::new();
    let mut last: (u64, Facts<'s>) = (u64::MAX, None);
    let mut facts = |site: u64| -> Facts<'s> {
        if last.0 != site {
            let f = *by_site.entry(site).or_insert_with(|| {
                let tn = old_sites.get(&site)?.type_name.as_deref()?;
                let ot = v.old_type(tn).filter(|t| t.size > 0)?;
                let nt = v.new_type(tn).filter(|t| t.size > 0);
                Some((tn, ot, nt.filter(|nt| !v.identical(ot, nt, 0))))
            });
            last = (site, f);
        }
        last.1
    };
    let mut cands = Vec::new();
    for o in inherited {
        let (a, size) = (o.addr as u64, o.size as u64);
        let Some((tn, ot, Some(nt))) = facts(o.site as u64) else {
            continue;
        };
        if pairs.contains_key(&a) || carved_parents.contains(&a) {
            continue;
        }
        let count = v.element_count(ot, size, true);
        cands.push(Candidate {
            addr: a,
            size,
            ty: tn,
            ot,
            nt,
            count,
        });
    }
    if cands.is_empty() {
        return Ok((HashSet::new(), Rewrites::default()));
    }
    cands.sort_by_key(|c| c.addr);
    let span = (
        cands[0].addr,
        cands
            .iter()
            .map(|c| c.addr + c.size.max(1))
            .max()
            .unwrap_or(0),
    );
    let mut sc = Scanner {
        v,
        starts: cands.iter().map(|c| c.addr).collect(),
        ends: cands.iter().map(|c| c.addr + c.size.max(1)).collect(),
        start_seen: vec![0; cands.len()],
        cands,
        span,
        words: HashMap::new(),
        refs: Vec::new(),
    };

    // Globals, as they will be poured. One kept from the new start-up (no
    // pointer, unchanged since start-up: see `transfer::run`) holds
    // nothing of the old heap once the transfer is over.
    for g in &state.globals {
        let ot = v.old_type(&g.type_name);
        if g.unchanged_since_startup {
            let look = |n: &str| v.old_type(n).cloned();
            let has_ptr = ot.is_none_or(|t| {
                let mut s = Vec::new();
                pointer_slots(&look, t, 0, &mut s, 0);
                !s.is_empty() || has_union(&look, t, 0)
            });
            if !has_ptr {
                continue;
            }
        }
        let bytes = &g.bytes;
        let shape = ot.map_or(Shape::Untyped, |t| Shape::Typed(t, 1));
        let whole = global_text("global", &g.name);
        sc.scan(g.addr, bytes, shape, &|k| describe(v, ot, k, &whole));
    }
    for t in &state.threads {
        for g in &t.vars {
            let ot = v.old_type(&g.type_name);
            let bytes = &g.bytes;
            let shape = ot.map_or(Shape::Untyped, |t| Shape::Typed(t, 1));
            let whole = global_text("thread-local", &g.name);
            sc.scan(g.addr, bytes, shape, &|k| describe(v, ot, k, &whole));
        }
    }
    // The old heap, still at its old addresses. Who holds a reference is
    // only worked out when one is found (site names cost a search).
    for o in inherited {
        let (a, size) = (o.addr as u64, o.size as u64);
        let site = || old_sites.get(&(o.site as u64)).copied();
        let untyped = |ra: u64, rlen: u64, sc: &mut Scanner<'s, '_>| {
            // SAFETY: a range inside a live inherited object.
            let bytes = unsafe { std::slice::from_raw_parts(ra as *const u8, rlen as usize) };
            sc.scan(ra, bytes, Shape::UntypedHeap, &|_| {
                format!("untyped memory allocated at {}", site_text(site(), state))
            });
        };
        if !carved_parents.is_empty() && carved_parents.contains(&a) {
            for (ra, rlen) in super::carved::gaps(a, size, &state.carved) {
                untyped(ra, rlen, &mut sc);
            }
            continue;
        }
        let Some((tn, ot, _)) = facts(o.site as u64) else {
            untyped(a, size, &mut sc);
            continue;
        };
        let count = v.element_count(ot, size, true);
        // SAFETY: a live inherited object of `size` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(a as *const u8, size as usize) };
        sc.scan(a, bytes, Shape::Typed(ot, count), &|k| {
            let whole = format!(
                "an object of `{tn}` allocated at {}",
                site_text(site(), state)
            );
            if k >= count * ot.size {
                format!("the bytes after the last `{tn}` of {whole}")
            } else {
                describe(v, Some(ot), k % ot.size, &whole)
            }
        });
    }
    for &(a, size, site) in &state.carved {
        let saved = old_sites.get(&site).copied();
        // SAFETY: a carved object inside a live inherited heap block.
        let bytes = unsafe { std::slice::from_raw_parts(a as *const u8, size as usize) };
        match facts(site) {
            Some((tn, ot, _)) => {
                let count = v.element_count(ot, size, true);
                sc.scan(a, bytes, Shape::Typed(ot, count), &|k| {
                    let whole = format!("a carved `{tn}` allocated at {}", site_text(saved, state));
                    describe(v, Some(ot), k % ot.size, &whole)
                });
            }
            None => {
                sc.scan(a, bytes, Shape::Untyped, &|_| {
                    format!("untyped memory carved at {}", site_text(saved, state))
                });
            }
        }
    }
    decide(ctx, &sc.cands, &sc.refs)
}

/// Which referenced candidates are pinned, and the untyped words naming a
/// field of theirs that moves (`interior`); refuses those that cannot be.
fn decide(
    ctx: &Ctx,
    cands: &[Candidate],
    refs: &[Ref],
) -> Result<(HashSet<u64>, Rewrites), TransferError> {
    let mut rewrites = Rewrites::default();
    let mut by_cand: HashMap<usize, Vec<&Ref>> = HashMap::new();
    for r in refs {
        by_cand.entry(r.cand).or_default().push(r);
    }
    let mut pinned = HashSet::new();
    let mut order: Vec<_> = by_cand.into_iter().collect();
    order.sort_by_key(|(c, _)| *c);
    for (i, rs) in order {
        let c = &cands[i];
        let usable = heap::usable_size(c.addr as usize) as u64;
        let fits = c.new_size() <= usable;
        let hidden: Vec<&&Ref> = rs.iter().filter(|r| !r.union).collect();
        if let Some(first) = hidden.first() {
            if !fits {
                return Err(PinError::DoesNotFit {
                    ty: c.ty.to_string(),
                    old_size: c.size,
                    new_size: c.new_size(),
                    usable,
                    from: first.from.clone(),
                }
                .into());
            }
            for r in &hidden {
                let n = new_offset(ctx, c.ot, c.nt, c.size, r.rel);
                if let (Some(n), Some(w), true) = (n, r.word, Rewrites::allowed()) {
                    if n != r.rel {
                        rewrites.add(w, c.addr + n);
                    }
                    continue;
                }
                if n != Some(r.rel) {
                    return Err(PinError::Interior {
                        ty: c.ty.to_string(),
                        from: r.from.clone(),
                        old_off: r.rel,
                        new_off: n,
                    }
                    .into());
                }
            }
        } else if !fits {
            continue; // only unions: it moves and they are rewritten
        }
        if std::env::var_os("MCR_DEBUG").is_some() {
            eprintln!(
                "mcr-rt: {} at {:#x} kept in place: referenced from {}",
                c.ty, c.addr, rs[0].from
            );
        }
        pinned.insert(c.addr);
    }
    Ok((pinned, rewrites))
}

/// Offset `rel` inside an old object of `size` bytes of `ot` elements (then
/// a tail), as an offset inside the same object converted to `nt`.
pub(super) fn new_offset(
    ctx: &Ctx,
    ot: &TypeDef,
    nt: &TypeDef,
    size: u64,
    rel: u64,
) -> Option<u64> {
    let count = ctx.v.element_count(ot, size, true);
    if ot.size == 0 {
        return None;
    }
    if rel >= count * ot.size {
        return Some(count * nt.size + (rel - count * ot.size));
    }
    if rel.is_multiple_of(ot.size) {
        return Some(rel / ot.size * nt.size);
    }
    let off = ctx.map_offset(ot, nt, rel % ot.size)?;
    Some(rel / ot.size * nt.size + off)
}

impl Ctx<'_> {
    /// Whether a word holding `p`, inside the old extent of `m`, is still
    /// right without being rewritten: `m` kept its address and the offset
    /// of `p` inside it did not change.
    pub(super) fn keeps_address(&self, m: &Move<'_>, p: u64) -> bool {
        if !m.in_place {
            return false;
        }
        let rel = p - m.old;
        if rel == 0 {
            return true;
        }
        match (self.v.old_type(m.ty), self.v.new_type(m.ty)) {
            (Some(ot), Some(nt)) => new_offset(self, ot, nt, m.old_size, rel) == Some(rel),
            _ => true,
        }
    }
}

/// Converts the pinned object `addr` (`size` bytes of `count` old `ot`
/// elements, then a tail) to `count` new `nt` elements where it is, and
/// records it as a [`Move`] to its own address. `find` checked it fits.
#[allow(clippy::too_many_arguments)]
pub(super) fn convert<'a>(
    ctx: &mut Ctx<'a>,
    planner: &mut crate::program::hooks::Planner,
    addr: u64,
    size: u64,
    tn: &'a str,
    (ot, nt): (&TypeDef, &TypeDef),
    count: u64,
    site: *const Site,
) -> Result<(), TransferError> {
    let new_size = count * nt.size + (size - count * ot.size);
    let room = heap::usable_size(addr as usize) as u64;
    if new_size > room {
        return Err(PinError::DoesNotFit {
            ty: tn.to_string(),
            old_size: size,
            new_size,
            usable: room,
            from: "a hidden reference".into(),
        }
        .into());
    }
    // SAFETY: a live inherited object whose heap slot has `room` usable
    // bytes; no other thread runs during the transfer.
    let old = unsafe { ctx.convert_in_place(addr, size, room, tn, (ot, nt), count) }?;
    planner.collect_copy(&ctx.v, ot, nt, &old, addr, count)?;
    let resized = heap::resize_in_place(addr as usize, new_size as usize, site);
    debug_assert!(resized, "{tn} at {addr:#x} fits its slot (checked above)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{describe, global_text};
    use mcr_types::plan::Versions;
    use mcr_types::TypeMap;

    fn map() -> TypeMap {
        serde_json::from_str(
            r#"{"schema": 1, "types": [
                {"name": "long", "kind": "scalar", "size": 8, "encoding": "signed"},
                {"name": "char", "kind": "scalar", "size": 1, "encoding": "char"},
                {"name": "char[16]", "kind": "array", "size": 16, "target": "char", "count": 16},
                {"name": "struct in", "kind": "struct", "size": 24, "fields": [
                    {"name": "n", "offset": 0, "type": "long"},
                    {"name": "tag", "offset": 8, "type": "char[16]"}]},
                {"name": "struct in[2]", "kind": "array", "size": 48, "target": "struct in", "count": 2},
                {"name": "struct out", "kind": "struct", "size": 56, "fields": [
                    {"name": "id", "offset": 0, "type": "long"},
                    {"name": "ins", "offset": 8, "type": "struct in[2]"}]}
            ]}"#,
        )
        .expect("type map")
    }

    #[test]
    fn holders_are_named_as_in_c() {
        let m = map();
        let v = Versions::new(&m, &m, Default::default());
        let out = v.old_type("struct out");
        assert_eq!(
            describe(&v, out, 0, "the global `o`"),
            "field `id` (`long`) of the global `o`"
        );
        assert_eq!(
            describe(&v, out, 8 + 24 + 8, "the global `o`"),
            "field `ins[1].tag` (`char[16]`) of the global `o`"
        );
        let long = v.old_type("long");
        assert_eq!(describe(&v, long, 0, "x"), "x (`long`)");
        assert_eq!(
            describe(&v, v.old_type("char[16]"), 8, "x"),
            "x (`char[16]`)"
        );
        assert_eq!(describe(&v, None, 8, "untyped memory"), "untyped memory");
    }

    #[test]
    fn global_identities_read_as_c() {
        assert_eq!(global_text("global", "count"), "the global `count`");
        assert_eq!(
            global_text("global", "src/a.c:as_int"),
            "the global `as_int` (static, src/a.c)"
        );
        assert_eq!(
            global_text("thread-local", "a.c:main:buf"),
            "the thread-local `buf` (static in `main`, a.c)"
        );
    }
}
