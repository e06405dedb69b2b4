//! Text for people (aligned, sorted by bytes) and JSON for scripts.

use mcr_types::protocol::{HeapReport, Info, TraceReport, UpdateReport};
use std::collections::BTreeMap;

fn json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializes"));
}

pub fn ps(infos: &[Info], as_json: bool) {
    if as_json {
        return json(&infos);
    }
    println!(
        "{:>8}  {:>10}  {:>12}  {:>7}  {:<16}  PROGRAM",
        "PID", "OBJECTS", "HEAP BYTES", "THREADS", "TYPEMAP"
    );
    for i in infos {
        println!(
            "{:>8}  {:>10}  {:>12}  {:>7}  {:<16}  {}",
            i.pid, i.objects, i.heap_bytes, i.threads, i.typemap_id, i.program
        );
    }
}

pub fn heap(h: &HeapReport, as_json: bool, by_site: bool) {
    if as_json {
        return json(h);
    }
    println!("{} live objects, {} bytes", h.objects, h.bytes);
    if by_site {
        println!(
            "{:>10}  {:>12}  {:<28}  {:<20}  TYPE",
            "OBJECTS", "BYTES", "SITE", "FUNCTION"
        );
        for s in &h.sites {
            println!(
                "{:>10}  {:>12}  {:<28}  {:<20}  {}",
                s.objects,
                s.bytes,
                s.site,
                s.function,
                s.ty.as_deref().unwrap_or("(untyped)")
            );
        }
        return;
    }
    // By type; untyped objects stay per site, since their site is all we know.
    let mut rows: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &h.sites {
        let k = match &s.ty {
            Some(t) => t.clone(),
            None => format!("(untyped) {}", s.site),
        };
        let e = rows.entry(k).or_default();
        e.0 += s.objects;
        e.1 += s.bytes;
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(&b.0)));
    println!("{:>10}  {:>12}  TYPE", "OBJECTS", "BYTES");
    for (k, (n, b)) in rows {
        println!("{n:>10}  {b:>12}  {k}");
    }
}

pub fn trace(t: &TraceReport, as_json: bool) {
    if as_json {
        return json(t);
    }
    println!(
        "{} objects: {} reachable, {} unreachable ({} precise, {} conservative edges; {:.1} ms)",
        t.objects, t.reachable, t.unreachable, t.precise_edges, t.conservative_edges, t.millis
    );
    println!(
        "{:>10}  {:>12}  {:>14}  {:<30}  LEAKED AT",
        "REACHABLE", "UNREACHABLE", "LEAKED BYTES", "TYPE"
    );
    for r in &t.rows {
        println!(
            "{:>10}  {:>12}  {:>14}  {:<30}  {}",
            r.reachable,
            r.unreachable,
            r.unreachable_bytes,
            r.what,
            r.leak_sites.join(", ")
        );
    }
}

pub fn update(r: &UpdateReport, as_json: bool) {
    if as_json {
        return json(r);
    }
    println!("updated: pid {} -> {}", r.old_pid, r.new_pid);
    println!(
        "  objects: {} precise ({} moved to a new layout), {} conservative; {} bytes; {} globals",
        r.objects_precise, r.objects_moved, r.objects_conservative, r.bytes, r.globals
    );
    println!(
        "  descriptors: {} inherited, {} start-up resources closed",
        r.fds_inherited, r.fds_closed
    );
    println!("  downtime: {:.2} ms", r.downtime_ms);
}
