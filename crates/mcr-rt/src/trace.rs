//! A collector's walk over the live heap: precise through typed fields,
//! conservative through untyped objects, unions, unknown types and thread
//! stacks. Answers what is reachable, and so what leaked.

use crate::heap::{self, Object, Site};
use crate::{globals, report, sections, threads};
use mcr_types::plan::{has_union, pointer_slots, Versions};
use mcr_types::protocol::{TraceReport, TraceRow};
use mcr_types::TypeMap;
use std::collections::HashMap;
use std::time::Instant;

/// How a region of memory is to be scanned.
enum Scan {
    Precise(Vec<u64>, u64, u64),
    Conservative,
}

struct Walker<'a> {
    objs: Vec<Object>,
    index: HashMap<usize, usize>,
    marked: Vec<bool>,
    work: Vec<usize>,
    v: Versions<'a>,
    plans: HashMap<usize, std::rc::Rc<Scan>>,
    precise: u64,
    conservative: u64,
}

impl Walker<'_> {
    fn mark_addr(&mut self, p: u64, precise: bool) {
        if p < 4096 {
            return;
        }
        let Some(o) = heap::find(p as usize) else {
            return;
        };
        let Some(&i) = self.index.get(&o.addr) else {
            return;
        };
        if precise {
            self.precise += 1;
        } else {
            self.conservative += 1;
        }
        if !self.marked[i] {
            self.marked[i] = true;
            self.work.push(i);
        }
    }

    fn scan_words(&mut self, a: u64, len: u64) {
        let mut w = (a + 7) & !7;
        while w + 8 <= a + len {
            // SAFETY: reading inside live memory (an object, a global, a stack).
            let p = unsafe { (w as *const u64).read() };
            self.mark_addr(p, false);
            w += 8;
        }
    }

    fn plan_for(&mut self, site: *const Site) -> std::rc::Rc<Scan> {
        if let Some(p) = self.plans.get(&(site as usize)) {
            return p.clone();
        }
        let (_, _, ty) = report::describe_site(site);
        let plan = match ty.as_deref().and_then(|t| self.v.new_type(t)) {
            Some(t) if t.size > 0 => {
                let look = |n: &str| self.v.new_type(n).cloned();
                if has_union(&look, t, 0) {
                    Scan::Conservative
                } else {
                    let mut s = Vec::new();
                    pointer_slots(&look, t, 0, &mut s, 0);
                    Scan::Precise(s.into_iter().map(|x| x.0).collect(), t.size, 0)
                }
            }
            _ => Scan::Conservative,
        };
        let p = std::rc::Rc::new(plan);
        self.plans.insert(site as usize, p.clone());
        p
    }

    fn scan_object(&mut self, i: usize) {
        let o = self.objs[i];
        match &*self.plan_for(o.site) {
            Scan::Conservative => self.scan_words(o.addr as u64, o.size as u64),
            Scan::Precise(slots, size, _) => {
                let n = o.size as u64 / size;
                for e in 0..n {
                    for off in slots {
                        // SAFETY: a pointer field inside a live typed object.
                        let p = unsafe {
                            ((o.addr as u64 + e * size + off) as *const u64).read_unaligned()
                        };
                        self.mark_addr(p, true);
                    }
                }
                // A trailing part beyond the typed elements (flexible tail).
                let rest = o.size as u64 - n * size;
                if rest >= 8 {
                    self.scan_words(o.addr as u64 + n * size, rest);
                }
            }
        }
    }
}

/// Walks from the roots and reports reachability per type and site.
pub fn trace() -> TraceReport {
    let t0 = Instant::now();
    let map: TypeMap = mcr_types::decode_section(sections::typemap_bytes()).unwrap_or_default();
    let mut objs = Vec::new();
    heap::for_each_live(|o| objs.push(o));
    let index = objs.iter().enumerate().map(|(i, o)| (o.addr, i)).collect();
    let n = objs.len();
    let mut w = Walker {
        objs,
        index,
        marked: vec![false; n],
        work: vec![],
        v: Versions::new(&map, &map, Default::default()),
        plans: HashMap::new(),
        precise: 0,
        conservative: 0,
    };
    for g in globals::all() {
        let t = w.v.new_type(g.type_name).cloned();
        let look = |x: &str| w.v.new_type(x).cloned();
        match t {
            Some(t) if !has_union(&look, &t, 0) => {
                let mut s = Vec::new();
                pointer_slots(&look, &t, 0, &mut s, 0);
                for (off, _) in s {
                    // SAFETY: a pointer field of a live global.
                    let p = unsafe { ((g.addr as u64 + off) as *const u64).read_unaligned() };
                    w.mark_addr(p, true);
                }
            }
            _ => w.scan_words(g.addr as u64, g.size as u64),
        }
    }
    for (lo, hi) in threads::stack_ranges() {
        w.scan_words(lo as u64, (hi - lo) as u64);
    }
    // Shared libraries' data and bss hold their own pointers into the heap.
    for (lo, hi) in library_data_ranges() {
        w.scan_words(lo, hi - lo);
    }
    while let Some(i) = w.work.pop() {
        w.scan_object(i);
    }
    let mut rows: HashMap<String, TraceRow> = HashMap::new();
    let mut rep = TraceReport {
        objects: n as u64,
        ..Default::default()
    };
    for (i, o) in w.objs.iter().enumerate() {
        let (site, _, ty) = report::describe_site(o.site);
        let key = ty.unwrap_or_else(|| format!("untyped @ {site}"));
        let r = rows.entry(key.clone()).or_insert_with(|| TraceRow {
            what: key,
            ..Default::default()
        });
        if w.marked[i] {
            r.reachable += 1;
            rep.reachable += 1;
        } else {
            r.unreachable += 1;
            r.unreachable_bytes += o.size as u64;
            rep.unreachable += 1;
            if !r.leak_sites.contains(&site) {
                r.leak_sites.push(site);
            }
        }
    }
    rep.rows = rows.into_values().collect();
    rep.rows.sort_by(|a, b| {
        b.unreachable_bytes
            .cmp(&a.unreachable_bytes)
            .then(a.what.cmp(&b.what))
    });
    rep.precise_edges = w.precise;
    rep.conservative_edges = w.conservative;
    rep.millis = t0.elapsed().as_secs_f64() * 1e3;
    rep
}

/// Writable mappings of shared libraries (data, and the anonymous bss right
/// after it), from /proc/self/maps.
fn library_data_ranges() -> Vec<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut out = Vec::new();
    let mut prev_lib_end = 0u64;
    for l in maps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some((a, b)) = f.first().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap_or(0),
            u64::from_str_radix(b, 16).unwrap_or(0),
        );
        let path = f.get(5).copied().unwrap_or("");
        let rw = f.get(1).is_some_and(|p| p.starts_with("rw"));
        let is_lib = path.contains(".so");
        if rw && (is_lib || (path.is_empty() && a == prev_lib_end)) {
            out.push((a, b));
        }
        prev_lib_end = if is_lib { b } else { 0 };
    }
    out
}
