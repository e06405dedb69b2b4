//! What `mcr-ctl ps` and `mcr-ctl heap` show: a live view of the process.

use crate::heap::{self, Site};
use crate::{interpose::startup_log, program::sections, program::threads};
use mcr_types::protocol::{HeapReport, Info, SiteUsage};
use std::collections::HashMap;

/// Identity of this binary's type map (FNV-1a of the section).
pub fn typemap_id() -> String {
    format!(
        "{:016x}",
        mcr_types::fnv1a(sections::typemap_bytes().iter().copied())
    )
}

pub fn info() -> Info {
    let s = heap::stats();
    Info {
        pid: std::process::id(),
        program: std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        typemap_id: typemap_id(),
        objects: s.objects,
        heap_bytes: s.bytes,
        threads: threads::all().len() as u32,
        startup_over: startup_log::is_startup_over(),
    }
}

/// `file:line`, function and type of a site; untyped calls from code that
/// mcr-cc did not compile have no site. A pointer that is not one of this
/// binary's descriptors (an inherited object whose site was not translated,
/// a header read while another thread rewrote it) is not dereferenced.
pub fn describe_site(site: *const Site) -> (String, String, Option<String>) {
    if site.is_null() {
        return ("(uninstrumented)".into(), String::new(), None);
    }
    let all = sections::sites();
    let off = (site as usize).wrapping_sub(all.as_ptr() as usize);
    let size = std::mem::size_of::<Site>();
    let Some(s) = all.get(off / size).filter(|_| off.is_multiple_of(size)) else {
        return (format!("(unknown site {site:p})"), String::new(), None);
    };
    let ty = (!s.type_name.is_null()).then(|| sections::cstr(s.type_name).to_string());
    (
        format!("{}:{}", sections::cstr(s.file), s.line),
        sections::cstr(s.function).to_string(),
        ty,
    )
}

pub fn heap() -> HeapReport {
    let mut by_site: HashMap<usize, (u64, u64)> = HashMap::new();
    let (mut objects, mut bytes) = (0u64, 0u64);
    heap::for_each_live(|o| {
        let e = by_site.entry(o.site as usize).or_default();
        e.0 += 1;
        e.1 += o.size as u64;
        objects += 1;
        bytes += o.size as u64;
    });
    let mut carved: HashMap<usize, (u64, u64)> = HashMap::new();
    let (mut carved_objects, mut carved_bytes) = (0u64, 0u64);
    for c in heap::carved::all() {
        let e = carved.entry(c.site as usize).or_default();
        e.0 += 1;
        e.1 += c.size as u64;
        carved_objects += 1;
        carved_bytes += c.size as u64;
    }
    let rows = by_site
        .into_iter()
        .map(|r| (r, false))
        .chain(carved.into_iter().map(|r| (r, true)));
    let mut sites: Vec<SiteUsage> = rows
        .map(|((site, (n, b)), carved)| {
            let (site, function, ty) = describe_site(site as *const Site);
            SiteUsage {
                site,
                function,
                ty,
                objects: n,
                bytes: b,
                carved,
            }
        })
        .collect();
    let maps = crate::program::mappings::all();
    if !maps.is_empty() {
        let mbytes: u64 = maps.iter().map(|m| m.1 as u64).sum();
        sites.push(SiteUsage {
            site: "(anonymous mmap)".into(),
            function: String::new(),
            ty: None,
            objects: maps.len() as u64,
            bytes: mbytes,
            carved: false,
        });
    }
    sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.site.cmp(&b.site)));
    HeapReport {
        objects,
        bytes,
        sites,
        carved_objects,
        carved_bytes,
    }
}
