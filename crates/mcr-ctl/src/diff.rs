//! `mcr-ctl diff OLD NEW`: the transfer plan between two versions, before
//! anything runs.

use anyhow::{Context, Result};
use mcr_types::hooks::{HookDecl, HookKind};
use mcr_types::plan::{Change, Versions};
use mcr_types::TypeMap;
use serde::Serialize;

/// A type map and the user hooks (`mcr.h`) of a binary; a `.toml` type map
/// has no hooks.
fn load(path: &str) -> Result<(TypeMap, Vec<HookDecl>)> {
    if path.ends_with(".toml") {
        let s = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let m = TypeMap::from_toml(&s).with_context(|| format!("{path} is not a type map"))?;
        return Ok((m, Vec::new()));
    }
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let f = object::File::parse(&*data).with_context(|| format!("{path} is not an ELF file"))?;
    let sec = f
        .section_by_name(mcr_types::section::SECTION_NAME)
        .with_context(|| format!("{path} was not built with mcr-cc (no type map)"))?;
    let map = mcr_types::decode_section(sec.data()?)?;
    let hooks = match f.section_by_name(mcr_types::hooks::SECTION_NAME) {
        Some(sec) => mcr_types::hooks::decode(sec.data()?).with_context(|| path.to_string())?,
        None => Vec::new(),
    };
    Ok((map, hooks))
}

#[derive(Serialize)]
struct Row {
    name: String,
    change: String,
    detail: String,
}

/// Prints the report; returns whether an update would be refused.
pub fn run(old: &str, new: &str, json: bool) -> Result<bool> {
    let ((o, _), (n, hooks)) = (load(old)?, load(new)?);
    let v = Versions::new(&o, &n, n.renames.clone().into_iter().collect()).with_hooks(&hooks);
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
            Change::Hooked {
                hook,
                old_layout,
                covers,
            } => {
                let mut d = format!("transform hook `{hook}` (old layout `{old_layout}`)");
                if let Some(e) = covers {
                    let fields: Vec<String> = match (v.old_type(&t.name), v.new_type(&t.name)) {
                        (Some(o), Some(n)) => v
                            .fields_without_rule(o, n)
                            .into_iter()
                            .map(|(f, a, b)| format!("`{f}` ({a} -> {b})"))
                            .collect(),
                        _ => Vec::new(),
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
                let rules = describe(&v, &t.name);
                if !rules.is_empty() {
                    d.push_str(&format!(" rules: {rules}"));
                }
                ("hook".to_string(), d)
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
    for h in &hooks {
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
            HookKind::Transform => continue,
        };
        rows.push(Row {
            name,
            change: "hook".into(),
            detail,
        });
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
