//! `mcr-ctl diff OLD NEW`: the transfer plan between two versions, before
//! anything runs.

use anyhow::{Context, Result};
use mcr_types::plan::{Change, Versions};
use mcr_types::TypeMap;
use serde::Serialize;

fn load(path: &str) -> Result<TypeMap> {
    if path.ends_with(".toml") {
        let s = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        return TypeMap::from_toml(&s).with_context(|| format!("{path} is not a type map"));
    }
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let f = object::File::parse(&*data).with_context(|| format!("{path} is not an ELF file"))?;
    let sec = f
        .section_by_name(mcr_types::section::SECTION_NAME)
        .with_context(|| format!("{path} was not built with mcr-cc (no type map)"))?;
    Ok(mcr_types::decode_section(sec.data()?)?)
}

#[derive(Serialize)]
struct Row {
    name: String,
    change: String,
    detail: String,
}

/// Prints the report; returns whether an update would be refused.
pub fn run(old: &str, new: &str, json: bool) -> Result<bool> {
    let (o, n) = (load(old)?, load(new)?);
    let v = Versions::new(&o, &n, n.renames.clone().into_iter().collect());
    let mut rows = Vec::new();
    let mut refused = false;
    for t in &o.types {
        if !matches!(
            t.kind,
            mcr_types::TypeKind::Struct | mcr_types::TypeKind::Union | mcr_types::TypeKind::Enum
        ) {
            continue;
        }
        let (change, detail) = match v.change(&t.name) {
            Change::Identical => continue,
            Change::Transform => ("transform".to_string(), describe(&v, &t.name)),
            Change::Removed => ("removed".to_string(), String::new()),
            Change::NeedsUserCode(e) => {
                refused = true;
                ("needs user code".to_string(), e.to_string())
            }
        };
        rows.push(Row {
            name: t.name.clone(),
            change,
            detail,
        });
    }
    for t in &n.types {
        if matches!(
            t.kind,
            mcr_types::TypeKind::Struct | mcr_types::TypeKind::Union
        ) && v.old_type(&t.name).is_none()
        {
            rows.push(Row {
                name: t.name.clone(),
                change: "added".into(),
                detail: String::new(),
            });
        }
    }
    for r in carved_growth(&v, &o) {
        refused = true;
        rows.push(r);
    }
    let gone: Vec<_> = o
        .globals
        .iter()
        .filter(|g| !n.globals.iter().any(|x| x.name == g.name))
        .map(|g| g.name.clone())
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"types": rows, "globals_removed": gone, "refused": refused})
            )?
        );
    } else {
        if rows.is_empty() {
            println!("no type changes");
        }
        for r in &rows {
            println!("{:<32} {:<16} {}", r.name, r.change, r.detail);
        }
        for g in &gone {
            println!("global {g}: removed (its value is dropped)");
        }
        if refused {
            println!("update would be REFUSED");
        }
    }
    Ok(refused)
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

fn describe(v: &Versions, name: &str) -> String {
    let (Some(o), Some(n)) = (v.old_type(name), v.new_type(name)) else {
        return String::new();
    };
    let mut parts = Vec::new();
    let mut kept = Vec::new();
    for f in &o.fields {
        match v.new_field_for(n, &o.name, &f.name) {
            None => parts.push(format!("-{}", f.name)),
            Some(x) => {
                kept.push(x.name.as_str());
                if x.name != f.name {
                    parts.push(format!("{} renamed {}", f.name, x.name));
                }
                if x.ty != f.ty {
                    parts.push(format!("{}: {} -> {}", x.name, f.ty, x.ty));
                } else if x.offset != f.offset {
                    parts.push(format!("{} moved {}->{}", x.name, f.offset, x.offset));
                }
            }
        }
    }
    for f in &n.fields {
        if !kept.contains(&f.name.as_str()) {
            parts.push(format!("+{}", f.name));
        }
    }
    if o.size != n.size {
        parts.push(format!("size {}->{}", o.size, n.size));
    }
    parts.join(", ")
}
