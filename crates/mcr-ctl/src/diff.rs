//! `mcr-ctl diff OLD NEW`: the transfer plan between two versions, before
//! anything runs.

use anyhow::{Context, Result};
use mcr_types::hooks::{HookDecl, HookKind};
use mcr_types::plan::{is_transferred, Change, Versions};
use mcr_types::{TypeKind, TypeMap};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// A type map and the user hooks (`mcr.h`) of a binary; a `.toml` type map
/// has no hooks.
fn load(path: &str) -> Result<(TypeMap, Vec<HookDecl>)> {
    if path.ends_with(".toml") {
        let s = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let m = TypeMap::from_toml(&s).with_context(|| format!("{path} is not a type map"))?;
        return Ok((m, Vec::new()));
    }
    let e = mcr_types::binary::read(std::path::Path::new(path))?;
    Ok((e.typemap, e.hooks))
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct Row {
    name: String,
    change: String,
    detail: String,
}

/// A global present in both versions whose type changed (its name, or the
/// layout behind the same name).
#[derive(Serialize, Debug, PartialEq)]
struct GlobalRow {
    name: String,
    old_type: String,
    new_type: String,
    change: String,
    detail: String,
}

/// An allocation site (same file, function and ordinal) that allocates a
/// different type in the new version.
#[derive(Serialize, Debug, PartialEq)]
struct Retyped {
    site: String,
    old_type: Option<String>,
    new_type: Option<String>,
}

#[derive(Serialize, Debug, Default, PartialEq)]
struct Sites {
    old: usize,
    /// Old sites without a type: their objects are carried as bytes.
    old_untyped: usize,
    new: usize,
    added: usize,
    removed: usize,
    retyped: Vec<Retyped>,
}

#[derive(Serialize, Debug)]
struct Report {
    types: Vec<Row>,
    globals_changed: Vec<GlobalRow>,
    globals_added: Vec<String>,
    globals_removed: Vec<String>,
    alloc_sites: Sites,
    /// Why the update is refused (the runtime's own check,
    /// `Versions::refusals`): types that need user code and hold values it
    /// converts, globals whose new type no rule converts into.
    refused_by: Vec<String>,
    refused: bool,
    /// Changed types (transform or needs user code) that no carried-over
    /// global or typed allocation site holds, by value or inside another
    /// such value: the update never converts them, so their objects (in
    /// untyped memory, or reached only through pointers from it) keep the
    /// old layout's bytes.
    unconverted: Vec<String>,
    /// Process-wide globals of both versions whose type holds pointers (or
    /// unions). Each pointer field that still holds its value from the end
    /// of the old start-up takes the new start-up's value when all it
    /// leads to is static data or start-up state nobody changed, else the
    /// old value: decided at update time, from the running program's
    /// start-up snapshot, which a type map does not have.
    pointer_globals: Vec<String>,
}

/// The old types whose values an update converts: those of carried-over
/// globals and typed sites, and every type nested in them by value
/// (fields, array elements; pointer targets are objects of their own).
fn converted_types(v: &Versions, o: &TypeMap) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = mcr_types::plan::types_in_use(o)
        .into_iter()
        .map(String::from)
        .collect();
    while let Some(n) = todo.pop() {
        let Some(t) = v.old_type(&n) else { continue };
        if !seen.insert(t.name.clone()) {
            continue;
        }
        todo.extend(t.fields.iter().map(|f| f.ty.clone()));
        if t.kind == TypeKind::Array {
            todo.extend(t.target.clone());
        }
    }
    seen
}

fn is_aggregate(k: TypeKind) -> bool {
    matches!(k, TypeKind::Struct | TypeKind::Union | TypeKind::Enum)
}

/// `struct <anon@file.h:856>[4]` -> `struct <anon@file.h:856>`: the named
/// aggregate behind arrays and pointers of it.
fn base(ty: &str) -> &str {
    let mut t = ty.trim_end();
    loop {
        if let Some(x) = t.strip_suffix('*') {
            t = x.trim_end();
        } else if t.ends_with(']') {
            match t.rfind('[') {
                Some(i) => t = t[..i].trim_end(),
                None => return t,
            }
        } else {
            return t;
        }
    }
}

fn decl_file(t: &mcr_types::model::TypeDef) -> &str {
    t.decl
        .as_deref()
        .and_then(|d| d.rsplit_once(':'))
        .map_or("", |(f, _)| f)
}

/// Anonymous structs, unions and enums are named after the line that
/// declares them (`struct <anon@memcached.h:856>`), so a line added above
/// one renames it. Pairs each old anonymous type gone from the new map
/// with the new one that takes its place: the type of the same field of the
/// same (or paired) struct, of the same global, else the only new
/// anonymous type of that kind, declared in the same file, with the same
/// layout. Without this a moved declaration shows as "removed" + "added".
fn pair_anonymous(v: &Versions, o: &TypeMap, n: &TypeMap) -> HashMap<String, String> {
    let gone = |x: &str| x.contains("<anon@") && v.old_type(x).is_some() && v.new_type(x).is_none();
    let fresh =
        |x: &str| x.contains("<anon@") && v.new_type(x).is_some() && v.old_type(x).is_none();
    let mut pairs: HashMap<String, String> = HashMap::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut link = |a: &str, b: &str, pairs: &mut HashMap<String, String>| -> bool {
        let (a, b) = (base(a), base(b));
        // The same decoration around both, and each side still unpaired.
        if a == b || !gone(a) || !fresh(b) || pairs.contains_key(a) || taken.contains(b) {
            return false;
        }
        pairs.insert(a.to_string(), b.to_string());
        taken.insert(b.to_string());
        true
    };
    let new_globals: HashMap<&str, &str> = n
        .globals
        .iter()
        .map(|g| (g.name.as_str(), g.ty.as_str()))
        .collect();
    for g in &o.globals {
        if let Some(nt) = new_globals.get(g.name.as_str()) {
            link(&g.ty, nt, &mut pairs);
        }
    }
    // Fields, to a fixed point: an anonymous struct inside a paired one.
    loop {
        let mut more = false;
        for t in o.types.iter().filter(|t| is_aggregate(t.kind)) {
            let counterpart = pairs.get(&t.name).cloned().unwrap_or(t.name.clone());
            let Some(nt) = v.new_type(&counterpart) else {
                continue;
            };
            for f in &t.fields {
                if let Some(nf) = v.new_field_for(nt, &t.name, &f.name) {
                    more |= link(&f.ty, &nf.ty, &mut pairs);
                }
            }
        }
        if !more {
            break;
        }
    }
    // Left over (a function's local type): a twin of the same kind and
    // layout declared in the same file. Lines shift but declarations keep
    // their order, so among several twins the k-th old one takes the k-th
    // new one (twins have the same layout: the pairing cannot mislead).
    let line = |t: &mcr_types::model::TypeDef| {
        t.decl
            .as_deref()
            .and_then(|d| d.rsplit_once(':'))
            .and_then(|(_, l)| l.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let mut left: Vec<_> = o
        .types
        .iter()
        .filter(|t| gone(&t.name) && !pairs.contains_key(&t.name))
        .collect();
    left.sort_by_key(|t| line(t));
    let mut candidates: Vec<_> = n.types.iter().filter(|x| fresh(&x.name)).collect();
    candidates.sort_by_key(|x| line(x));
    for t in left {
        let twin = candidates.iter().find(|x| {
            !taken.contains(&x.name)
                && x.kind == t.kind
                && decl_file(x) == decl_file(t)
                && v.identical(t, x, 0)
        });
        if let Some(x) = twin {
            pairs.insert(t.name.clone(), x.name.clone());
            taken.insert(x.name.clone());
        }
    }
    pairs
}

fn report<'a>(o: &'a TypeMap, n: &'a TypeMap, hooks: &[HookDecl]) -> Report {
    let v = Versions::new(o, n, n.renames.clone().into_iter().collect()).with_hooks(hooks);
    let anon = pair_anonymous(&v, o, n);
    let mut types = Vec::new();
    for t in o.types.iter().filter(|t| is_aggregate(t.kind)) {
        // Its counterpart: same name (or a typedef of it: `typedef struct
        // {..} x_t;` became `typedef struct x_s x_t;`), else its anonymous twin.
        let by_alias = || {
            v.new_type(&t.name)
                .or_else(|| t.aliases.iter().find_map(|a| v.new_type(a)))
                .map(|x| x.name.as_str())
        };
        let (name, now) = match (anon.get(&t.name), by_alias()) {
            (Some(x), _) => (format!("{} (now {})", t.name, x), x.as_str()),
            (None, Some(x)) if x != t.name => (format!("{} (now {})", t.name, x), x),
            _ => (t.name.clone(), t.name.as_str()),
        };
        let (change, detail) = match v.change_between(&t.name, now) {
            Change::Identical => continue,
            Change::Transform => ("transform".to_string(), describe(&v, &t.name, now)),
            Change::Removed => ("removed".to_string(), String::new()),
            Change::NeedsUserCode(e) => ("needs user code".to_string(), e.to_string()),
            Change::Hooked {
                hook,
                old_layout,
                covers,
            } => (
                "hook".to_string(),
                describe_hook(&v, t, now, &hook, &old_layout, covers),
            ),
        };
        types.push(Row {
            name,
            change,
            detail,
        });
    }
    types.extend(unused_hooks(&v, hooks));
    let paired: BTreeSet<&str> = anon.values().map(String::as_str).collect();
    // An enum is a struct's field type, so a new one is only "added" with
    // the struct that uses it; count new structs and unions.
    for t in &n.types {
        if matches!(t.kind, TypeKind::Struct | TypeKind::Union)
            && v.old_type(&t.name).is_none()
            && !t.aliases.iter().any(|a| v.old_type(a).is_some())
            && !paired.contains(t.name.as_str())
        {
            types.push(Row {
                name: t.name.clone(),
                change: "added".into(),
                detail: String::new(),
            });
        }
    }
    let carved_growth = carved_growth(&v, o);
    types.extend(carved_growth.iter().cloned());

    // Constants are not carried over: left out.
    let mut new_globals: HashMap<&str, &mcr_types::model::Global> = n
        .globals
        .iter()
        .filter(|g| is_transferred(g))
        .map(|g| (g.name.as_str(), g))
        .collect();
    let mut old_names: BTreeSet<&str> = o.globals.iter().map(|g| g.name.as_str()).collect();
    // Moved to another unit (or made static): the same variable.
    let names = |m: &'a TypeMap| {
        m.globals
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>()
    };
    let moved = mcr_types::plan::moved_globals(&names(o), &names(n));
    for &(old_name, new_name) in &moved {
        if let Some(&g) = new_globals.get(new_name) {
            new_globals.insert(old_name, g);
            old_names.insert(new_name);
        }
    }
    let mut globals_changed = Vec::new();
    let mut globals_removed = Vec::new();
    for g in o.globals.iter().filter(|g| is_transferred(g)) {
        let Some(ng) = new_globals.get(g.name.as_str()) else {
            globals_removed.push(g.name.clone());
            continue;
        };
        let moved_to = (ng.name != g.name).then(|| format!("moved to `{}`", ng.name));
        let (change, detail) = match v.change_between(&g.ty, &ng.ty) {
            Change::Identical if moved_to.is_some() => ("moved", String::new()),
            Change::Identical => continue,
            Change::Transform => ("transform", String::new()),
            // A type the new map does not describe (a declared-only struct
            // seen through a pointer): bytes are copied as they are.
            Change::Removed => ("copied", "type not described in both maps".to_string()),
            Change::NeedsUserCode(e) => ("needs user code", e.to_string()),
            Change::Hooked { hook, .. } => ("hook", format!("transform hook `{hook}`")),
        };
        let detail = match (moved_to, detail.is_empty()) {
            (Some(m), true) => m,
            (Some(m), false) => format!("{m}; {detail}"),
            (None, _) => detail,
        };
        globals_changed.push(GlobalRow {
            name: g.name.clone(),
            old_type: g.ty.clone(),
            new_type: ng.ty.clone(),
            change: change.into(),
            detail,
        });
    }
    let globals_added = n
        .globals
        .iter()
        .filter(|g| is_transferred(g) && !old_names.contains(g.name.as_str()))
        .map(|g| g.name.clone())
        .collect();
    // Thread-locals always take the old value (no start-up snapshot of them).
    let pointer_globals = o
        .globals
        .iter()
        .filter(|g| {
            is_transferred(g) && !g.thread_local && new_globals.contains_key(g.name.as_str())
        })
        .filter(|g| v.old_type(&g.ty).is_some_and(|t| v.holds_refs(t)))
        .map(|g| g.name.clone())
        .collect();

    let new_sites: HashMap<&str, &mcr_types::model::AllocSite> =
        n.alloc_sites.iter().map(|s| (s.id.as_str(), s)).collect();
    let old_ids: BTreeSet<&str> = o.alloc_sites.iter().map(|s| s.id.as_str()).collect();
    let mut sites = Sites {
        old: o.alloc_sites.len(),
        old_untyped: o.alloc_sites.iter().filter(|s| s.ty.is_none()).count(),
        new: n.alloc_sites.len(),
        ..Default::default()
    };
    for s in &o.alloc_sites {
        match new_sites.get(s.id.as_str()) {
            None => sites.removed += 1,
            Some(ns) if ns.ty != s.ty => sites.retyped.push(Retyped {
                site: format!("{}:{}#{}", s.file, s.function, s.ordinal),
                old_type: s.ty.clone(),
                new_type: ns.ty.clone(),
            }),
            Some(_) => {}
        }
    }
    sites.added = n
        .alloc_sites
        .iter()
        .filter(|s| !old_ids.contains(s.id.as_str()))
        .count();

    // The verdict is the runtime's (mcr-rt update::check_compatible): only
    // types whose values are converted can refuse an update.
    let mut refused_by = v.refusals();
    refused_by.extend(
        carved_growth
            .iter()
            .map(|r| format!("type `{}` (carved): {}", r.name, r.detail)),
    );
    let converted = converted_types(&v, o);
    let unconverted = o
        .types
        .iter()
        .filter(|t| is_aggregate(t.kind) && !converted.contains(&t.name))
        .filter(|t| {
            types.iter().any(|r| {
                (r.change == "transform" || r.change == "needs user code" || r.change == "hook")
                    && (r.name == t.name || r.name.starts_with(&format!("{} (now ", t.name)))
            })
        })
        .map(|t| t.name.clone())
        .collect();
    Report {
        types,
        globals_changed,
        globals_added,
        globals_removed,
        alloc_sites: sites,
        refused: !refused_by.is_empty(),
        unconverted,
        refused_by,
        pointer_globals,
    }
}

/// What a transform hook does for type `t` (new name `now`): the fields it
/// converts that no rule does, and the rules for the rest.
fn describe_hook(
    v: &Versions,
    t: &mcr_types::model::TypeDef,
    now: &str,
    hook: &str,
    old_layout: &str,
    covers: Option<mcr_types::plan::PlanError>,
) -> String {
    let mut d = format!("transform hook `{hook}` (old layout `{old_layout}`)");
    if let Some(e) = covers {
        let fields: Vec<String> = match v.new_type(now) {
            Some(n) => v
                .fields_without_rule(t, n)
                .into_iter()
                .map(|(f, a, b)| format!("`{f}` ({a} -> {b})"))
                .collect(),
            None => Vec::new(),
        };
        if fields.is_empty() {
            d.push_str(&format!(" converts what no rule does ({e});"));
        } else {
            d.push_str(&format!(
                " converts what no rule does: {};",
                fields.join(", ")
            ));
        }
    }
    let rules = describe(v, &t.name, now);
    if !rules.is_empty() {
        d.push_str(&format!(" rules: {rules}"));
    }
    d
}

/// Hooks of the new version that will not run as a transform (and the
/// after-transfer hooks, which always run once).
fn unused_hooks(v: &Versions, hooks: &[HookDecl]) -> Vec<Row> {
    hooks
        .iter()
        .filter_map(|h| {
            let (name, detail) = match h.kind {
                HookKind::AfterTransfer => (
                    format!("after transfer: `{}`", h.function),
                    "runs once after the transfer, before the new version resumes".to_string(),
                ),
                HookKind::Transform if v.old_type(&h.new_type).is_none() => (
                    h.new_type.clone(),
                    format!(
                        "transform hook `{}` is never called: the old version has no such type",
                        h.function
                    ),
                ),
                HookKind::Transform if matches!(v.change(&h.new_type), Change::Identical) => (
                    h.new_type.clone(),
                    format!(
                        "transform hook `{}` is not called: the old version already has the new layout",
                        h.function
                    ),
                ),
                HookKind::Transform => return None,
            };
            Some(Row {
                name,
                change: "hook".into(),
                detail,
            })
        })
        .collect()
}

/// Types carved by a pool or slab allocator (mcr.toml) that need more
/// bytes in the new version: their objects cannot move (the allocator owns
/// the memory around them), so the runtime converts them in place and
/// refuses an update that would not fit. One row per type, naming the
/// allocators and sites.
fn carved_growth(v: &Versions, o: &TypeMap) -> Vec<Row> {
    let mut by_type: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for s in o.alloc_sites.iter().filter(|s| s.carve.is_some()) {
        let Some(t) = s.ty.as_deref() else { continue };
        let (Some(ot), Some(nt)) = (v.old_type(t), v.new_type(t)) else {
            continue;
        };
        if nt.size > ot.size {
            by_type
                .entry(t)
                .or_default()
                .push(format!("{} at {}:{}", s.allocator, s.file, s.line));
        }
    }
    by_type
        .into_iter()
        .map(|(t, sites)| {
            let (os, ns) = (v.old_type(t).unwrap().size, v.new_type(t).unwrap().size);
            Row {
                name: t.to_string(),
                change: "carved, grows".into(),
                detail: format!(
                    "size {os}->{ns}; carved by {} (a pool or slab allocator's objects cannot move)",
                    sites.join(", ")
                ),
            }
        })
        .collect()
}

/// Prints the report; returns whether an update would be refused.
pub fn run(old: &str, new: &str, json: bool) -> Result<bool> {
    let ((o, _), (n, hooks)) = (load(old)?, load(new)?);
    let r = report(&o, &n, &hooks);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(r.refused);
    }
    if r.types.is_empty() {
        println!("no type changes");
    }
    for t in &r.types {
        println!("{:<32} {:<16} {}", t.name, t.change, t.detail);
    }
    for g in &r.globals_changed {
        println!(
            "global {}: {} -> {}: {}{}{}",
            g.name,
            g.old_type,
            g.new_type,
            g.change,
            if g.detail.is_empty() { "" } else { ": " },
            g.detail
        );
    }
    if !(r.globals_changed.is_empty() && r.globals_removed.is_empty()) {
        println!(
            "(globals: writable ones, thread-locals included; constants are not carried over)"
        );
    }
    for g in &r.globals_removed {
        println!("global {g}: removed (its value is dropped)");
    }
    if !r.globals_added.is_empty() {
        println!(
            "globals added: {} (the new version's start-up sets them)",
            r.globals_added.join(", ")
        );
    }
    if !r.pointer_globals.is_empty() {
        const SHOWN: usize = 12;
        let more = r.pointer_globals.len().saturating_sub(SHOWN);
        println!(
            "{} globals hold pointers: which of their pointer fields take the new start-up's \
             value is decided at update time (one unchanged since the old start-up does when all \
             it leads to is static data or start-up state nobody changed; otherwise the old \
             value, rewritten): {}{}",
            r.pointer_globals.len(),
            r.pointer_globals[..r.pointer_globals.len() - more].join(", "),
            if more > 0 {
                format!(" and {more} more (--json lists all)")
            } else {
                String::new()
            }
        );
    }
    let s = &r.alloc_sites;
    println!(
        "allocation sites: {} ({} untyped) -> {}: {} added, {} removed, {} allocate another type",
        s.old,
        s.old_untyped,
        s.new,
        s.added,
        s.removed,
        s.retyped.len()
    );
    for x in &s.retyped {
        println!(
            "  site {}: {} -> {}",
            x.site,
            x.old_type.as_deref().unwrap_or("(untyped)"),
            x.new_type.as_deref().unwrap_or("(untyped)")
        );
    }
    if r.refused {
        println!("update would be REFUSED:");
        for why in &r.refused_by {
            println!("  {why}");
        }
    }
    if !r.unconverted.is_empty() {
        println!(
            "{} changed types are never converted (no carried-over global or typed allocation \
             site holds them; {} of {} sites are untyped): objects of theirs keep the old \
             layout's bytes: {}",
            r.unconverted.len(),
            s.old_untyped,
            s.old,
            r.unconverted.join(", ")
        );
    }
    Ok(r.refused)
}

fn describe(v: &Versions, old: &str, new: &str) -> String {
    let (Some(o), Some(n)) = (v.old_type(old), v.new_type(new)) else {
        return String::new();
    };
    let mut parts = Vec::new();
    let mut kept = Vec::new();
    for f in &o.fields {
        match v.new_field_for(n, &o.name, &f.name) {
            None => parts.push(format!("-{}", f.name)),
            Some(x) => {
                kept.push(x.name.split('.').next().unwrap_or("").to_string());
                if x.name != f.name {
                    parts.push(format!("{} renamed {}", f.name, x.name));
                }
                if x.ty != f.ty {
                    parts.push(format!("{}: {} -> {}", x.name, f.ty, x.ty));
                } else if x.offset != f.offset {
                    parts.push(format!("{} moved {}->{}", x.name, f.offset, x.offset));
                } else if let (Some(a), Some(b)) = (v.old_type(&f.ty), v.new_type(&x.ty)) {
                    if !v.identical(a, b, 0) {
                        // Same name and place, but its own layout changed.
                        parts.push(format!("{}: {} changed", x.name, x.ty));
                    }
                }
            }
        }
    }
    for f in &n.fields {
        if !kept.contains(&f.name) {
            parts.push(format!("+{}", f.name));
        }
    }
    if o.size != n.size {
        parts.push(format!("size {}->{}", o.size, n.size));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Old version: `struct a { int x; }` (only reachable through a
    /// pointer unless `site_a` types a site with it), `struct e`, a global
    /// table of two `struct e`, two allocation sites.
    fn old(site_a: bool) -> TypeMap {
        let a_site = if site_a { "type = \"struct a\"\n" } else { "" };
        TypeMap::from_toml(&format!(
            r#"
schema = 1
[[types]]
name = "int"
kind = "scalar"
size = 4
encoding = "signed"
[[types]]
name = "struct a"
kind = "struct"
size = 4
[[types.fields]]
name = "x"
offset = 0
type = "int"
[[types]]
name = "struct e"
kind = "struct"
size = 4
[[types.fields]]
name = "v"
offset = 0
type = "int"
[[types]]
name = "struct e[2]"
kind = "array"
size = 8
target = "struct e"
count = 2
[[globals]]
name = "table"
symbol = "table"
type = "struct e[2]"
size = 8
file = "t.c"
[[globals]]
name = "t.c:gone"
symbol = "gone"
type = "int"
size = 4
file = "t.c"
is_static = true
[[alloc_sites]]
id = "1"
file = "t.c"
line = 3
function = "f"
ordinal = 0
allocator = "malloc"
{a_site}rule = "alloc-token"
[[alloc_sites]]
id = "2"
file = "t.c"
line = 9
function = "g"
ordinal = 0
allocator = "malloc"
type = "struct e"
rule = "alloc-token"
"#
        ))
        .unwrap()
    }

    /// New version: `a.x` became a struct, the table grew to three, `gone`
    /// is gone, site 2 now allocates an `int`, site 3 is new.
    fn new() -> TypeMap {
        TypeMap::from_toml(
            r#"
schema = 1
[[types]]
name = "int"
kind = "scalar"
size = 4
encoding = "signed"
[[types]]
name = "struct in"
kind = "struct"
size = 4
[[types.fields]]
name = "i"
offset = 0
type = "int"
[[types]]
name = "struct a"
kind = "struct"
size = 4
[[types.fields]]
name = "x"
offset = 0
type = "struct in"
[[types]]
name = "struct e"
kind = "struct"
size = 4
[[types.fields]]
name = "v"
offset = 0
type = "int"
[[types]]
name = "struct e[3]"
kind = "array"
size = 12
target = "struct e"
count = 3
[[globals]]
name = "table"
symbol = "table"
type = "struct e[3]"
size = 12
file = "t.c"
[[globals]]
name = "fresh"
symbol = "fresh"
type = "int"
size = 4
file = "t.c"
[[alloc_sites]]
id = "1"
file = "t.c"
line = 3
function = "f"
ordinal = 0
allocator = "malloc"
rule = "no-evidence"
[[alloc_sites]]
id = "2"
file = "t.c"
line = 9
function = "g"
ordinal = 0
allocator = "malloc"
type = "int"
rule = "alloc-token"
[[alloc_sites]]
id = "3"
file = "t.c"
line = 12
function = "h"
ordinal = 0
allocator = "calloc"
type = "struct in"
rule = "alloc-token"
"#,
        )
        .unwrap()
    }

    #[test]
    fn globals_whose_type_changed_name_are_reported() {
        let r = report(&old(false), &new(), &[]);
        assert_eq!(
            r.globals_changed,
            vec![GlobalRow {
                name: "table".into(),
                old_type: "struct e[2]".into(),
                new_type: "struct e[3]".into(),
                change: "transform".into(),
                detail: String::new(),
            }]
        );
        assert_eq!(r.globals_removed, vec!["t.c:gone".to_string()]);
        assert_eq!(r.globals_added, vec!["fresh".to_string()]);
    }

    #[test]
    fn allocation_sites_matched_by_id() {
        let r = report(&old(false), &new(), &[]);
        let s = &r.alloc_sites;
        assert_eq!(
            (s.old, s.old_untyped, s.new, s.added, s.removed),
            (2, 1, 3, 1, 0)
        );
        assert_eq!(
            s.retyped,
            vec![Retyped {
                site: "t.c:g#0".into(),
                old_type: Some("struct e".into()),
                new_type: Some("int".into()),
            }]
        );
    }

    /// A map with `struct s { struct <anon@a.h:LINE> in; }`, the anonymous
    /// struct holding an int, and two functions' local anonymous unions of
    /// the same layout.
    fn anon_map(line: u32, local: u32, member: &str) -> TypeMap {
        let local2 = local + 40;
        TypeMap::from_toml(&format!(
            r#"
schema = 1
[[types]]
name = "int"
kind = "scalar"
size = 4
encoding = "signed"
[[types]]
name = "struct <anon@a.h:{line}>"
kind = "struct"
size = 4
decl = "a.h:{line}"
[[types.fields]]
name = "{member}"
offset = 0
type = "int"
[[types]]
name = "struct s"
kind = "struct"
size = 4
[[types.fields]]
name = "in"
offset = 0
type = "struct <anon@a.h:{line}>"
[[types]]
name = "union <anon@a.c:{local}>"
kind = "union"
size = 4
decl = "a.c:{local}"
[[types.fields]]
name = "u"
offset = 0
type = "int"
[[types]]
name = "union <anon@a.c:{local2}>"
kind = "union"
size = 4
decl = "a.c:{local2}"
[[types.fields]]
name = "u"
offset = 0
type = "int"
"#
        ))
        .unwrap()
    }

    /// Lines added above anonymous types rename them; they are the same
    /// types, not one removed and another added.
    #[test]
    fn anonymous_types_moved_by_lines_are_paired() {
        let r = report(&anon_map(3, 10, "x"), &anon_map(5, 12, "x"), &[]);
        assert_eq!(r.types, vec![], "{:#?}", r.types);
        // Paired through `struct s.in` also when its layout changes.
        let r = report(&anon_map(3, 10, "x"), &anon_map(5, 12, "y"), &[]);
        assert_eq!(
            r.types,
            vec![
                Row {
                    name: "struct <anon@a.h:3> (now struct <anon@a.h:5>)".into(),
                    change: "transform".into(),
                    detail: "-x, +y".into(),
                },
                Row {
                    name: "struct s".into(),
                    change: "transform".into(),
                    detail: "in: struct <anon@a.h:3> -> struct <anon@a.h:5>".into(),
                },
            ]
        );
    }

    /// nginx 1.26: `typedef struct {..} ngx_table_elt_t;` became `typedef
    /// struct ngx_table_elt_s ngx_table_elt_t;`: one type, renamed, not
    /// one removed and one added.
    #[test]
    fn typedef_of_an_anonymous_struct_given_a_tag() {
        let m = |name: &str, alias: &str, fields: &[&str]| {
            let mut t = format!(
                "schema = 1\n[[types]]\nname = \"int\"\nkind = \"scalar\"\nsize = 4\nencoding = \"signed\"\n\
                 [[types]]\nname = \"{name}\"\nkind = \"struct\"\nsize = {}\naliases = [{alias}]\n",
                4 * fields.len()
            );
            for (i, f) in fields.iter().enumerate() {
                t += &format!(
                    "[[types.fields]]\nname = \"{f}\"\noffset = {}\ntype = \"int\"\n",
                    4 * i
                );
            }
            TypeMap::from_toml(&t).unwrap()
        };
        let r = report(
            &m("elt_t", "", &["a"]),
            &m("struct elt_s", "\"elt_t\"", &["a", "next"]),
            &[],
        );
        assert_eq!(
            r.types,
            vec![Row {
                name: "elt_t (now struct elt_s)".into(),
                change: "transform".into(),
                detail: "+next, size 4->8".into(),
            }]
        );
    }

    /// The verdict is the runtime's: a type that needs user code refuses
    /// the update only when a global or a typed site holds values of it.
    #[test]
    fn refused_only_when_a_converted_value_needs_user_code() {
        let r = report(&old(false), &new(), &[]);
        let a = r.types.iter().find(|t| t.name == "struct a").unwrap();
        assert_eq!(a.change, "needs user code");
        assert!(!r.refused, "{:?}", r.refused_by);
        assert_eq!(r.unconverted, vec!["struct a".to_string()]);

        let r = report(&old(true), &new(), &[]);
        assert!(r.refused);
        assert!(r.unconverted.is_empty(), "{:?}", r.unconverted);
        assert_eq!(r.refused_by.len(), 1);
        assert!(
            r.refused_by[0].starts_with("type `struct a`: field `x`"),
            "{:?}",
            r.refused_by
        );
    }

    /// A global holding a pointer (and one holding it in a struct) is
    /// listed as decided at update time; `table` (no pointers) and a
    /// thread-local pointer (always the old value) are not.
    #[test]
    fn pointer_globals_are_listed() {
        let extra = TypeMap::from_toml(
            r#"
schema = 1
[[types]]
name = "int *"
kind = "pointer"
size = 8
target = "int"
[[types]]
name = "struct holder"
kind = "struct"
size = 8
[[types.fields]]
name = "p"
offset = 0
type = "int *"
[[globals]]
name = "mode"
symbol = "mode"
type = "int *"
size = 8
file = "t.c"
[[globals]]
name = "h"
symbol = "h"
type = "struct holder"
size = 8
file = "t.c"
[[globals]]
name = "tls"
symbol = "tls"
type = "int *"
size = 8
file = "t.c"
thread_local = true
"#,
        )
        .unwrap();
        let with = |mut m: TypeMap| {
            m.types.extend(extra.types.iter().cloned());
            m.globals.extend(extra.globals.iter().cloned());
            m
        };
        let r = report(&with(old(false)), &with(new()), &[]);
        assert_eq!(r.pointer_globals, vec!["mode".to_string(), "h".to_string()]);
    }
}
