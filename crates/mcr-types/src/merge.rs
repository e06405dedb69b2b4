//! Merging per-translation-unit maps into one program map.

use crate::model::{TypeDef, TypeMap, SCHEMA_VERSION};
use std::collections::HashMap;

/// Merges maps: identical types (same name and structure) collapse into one;
/// a different layout under a name already taken gets a `#N` suffix, and
/// the references inside its own unit are renamed with it.
pub fn merge(maps: Vec<TypeMap>) -> TypeMap {
    let mut out = TypeMap {
        schema: SCHEMA_VERSION,
        ..Default::default()
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    for mut m in maps {
        let mut renames: HashMap<String, String> = HashMap::new();
        for t in &m.types {
            if let Some(&i) = index.get(&t.name) {
                if !same_layout(&out.types[i], t) {
                    let mut n = 2;
                    let renamed = loop {
                        let cand = format!("{}#{}", t.name, n);
                        match index.get(&cand) {
                            Some(&j) if same_layout(&out.types[j], t) => break cand,
                            Some(_) => n += 1,
                            None => break cand,
                        }
                    };
                    renames.insert(t.name.clone(), renamed);
                }
            }
        }
        if !renames.is_empty() {
            rename_types(&mut m, &renames);
        }
        for t in m.types {
            match index.get(&t.name) {
                Some(&i) => {
                    let have = &mut out.types[i];
                    for a in t.aliases {
                        if !have.aliases.contains(&a) {
                            have.aliases.push(a);
                        }
                    }
                }
                None => {
                    index.insert(t.name.clone(), out.types.len());
                    out.types.push(t);
                }
            }
        }
        out.units.extend(m.units);
        out.globals.extend(m.globals);
        out.alloc_sites.extend(m.alloc_sites);
        out.renames.extend(m.renames);
    }
    // A global declared in several units appears once per definition only.
    let mut seen = std::collections::HashSet::new();
    out.globals.retain(|g| seen.insert(g.name.clone()));
    out
}

fn same_layout(a: &TypeDef, b: &TypeDef) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.fields == b.fields
        && a.target == b.target
        && a.count == b.count
        && a.enumerators == b.enumerators
}

fn rename_types(m: &mut TypeMap, renames: &HashMap<String, String>) {
    let r = |s: &mut String| {
        if let Some(n) = renames.get(s.as_str()) {
            *s = n.clone();
        }
    };
    for t in &mut m.types {
        r(&mut t.name);
        if let Some(x) = t.target.as_mut() {
            r(x);
        }
        for f in &mut t.fields {
            r(&mut f.ty);
        }
    }
    for g in &mut m.globals {
        r(&mut g.ty);
    }
    for s in &mut m.alloc_sites {
        if let Some(x) = s.ty.as_mut() {
            r(x);
        }
    }
}
