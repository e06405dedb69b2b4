//! Text for people (aligned columns, largest first) and JSON for scripts.

use crate::profile::QuiescentPoint;
use mcr_types::protocol::{
    CodeRef, HeapReport, Info, ProfileReport, TraceReport, TraceRow, UpdateReport,
};
use std::collections::BTreeMap;

fn json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializes"));
}

/// Column alignment.
#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// Prints a table whose columns are as wide as their widest cell. The last
/// column is never padded (no trailing blanks).
fn table(head: &[(&str, Align)], rows: &[Vec<String>]) {
    let mut wid: Vec<usize> = head.iter().map(|(h, _)| h.len()).collect();
    for r in rows {
        for (w, c) in wid.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, c) in cells.enumerate() {
            let (w, a) = (wid[i], head[i].1);
            if i > 0 {
                out.push_str("  ");
            }
            let pad = w.saturating_sub(c.chars().count());
            let last = i + 1 == head.len();
            match a {
                Right => {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(c);
                }
                Left => {
                    out.push_str(c);
                    if !last {
                        out.push_str(&" ".repeat(pad));
                    }
                }
            }
        }
        println!("{}", out.trim_end());
    };
    line(&mut head.iter().map(|(h, _)| *h));
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

/// An empty cell would break the columns for `awk`: show a dash.
fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.into()
    }
}

pub fn ps(infos: &[Info], as_json: bool) {
    if as_json {
        return json(&infos);
    }
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|i| {
            vec![
                i.pid.to_string(),
                i.objects.to_string(),
                i.heap_bytes.to_string(),
                i.threads.to_string(),
                i.typemap_id.clone(),
                i.program.clone(),
            ]
        })
        .collect();
    table(
        &[
            ("PID", Right),
            ("OBJECTS", Right),
            ("HEAP BYTES", Right),
            ("THREADS", Right),
            ("TYPEMAP", Left),
            ("PROGRAM", Left),
        ],
        &rows,
    );
}

pub fn heap(h: &HeapReport, as_json: bool, by_site: bool) {
    if as_json {
        return json(h);
    }
    println!("{} live objects, {} bytes", h.objects, h.bytes);
    if h.carved_objects > 0 {
        println!(
            "{} carved objects, {} bytes, inside them (pool and slab allocators; rows marked [carved])",
            h.carved_objects, h.carved_bytes
        );
    }
    let carved = |s: &mcr_types::protocol::SiteUsage, t: String| {
        if s.carved {
            format!("{t} [carved]")
        } else {
            t
        }
    };
    if by_site {
        let mut sites: Vec<_> = h.sites.iter().collect();
        sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.site.cmp(&b.site)));
        let rows: Vec<Vec<String>> = sites
            .iter()
            .map(|s| {
                vec![
                    s.objects.to_string(),
                    s.bytes.to_string(),
                    s.site.clone(),
                    or_dash(&s.function),
                    carved(s, s.ty.clone().unwrap_or_else(|| "(untyped)".into())),
                ]
            })
            .collect();
        return table(
            &[
                ("OBJECTS", Right),
                ("BYTES", Right),
                ("SITE", Left),
                ("FUNCTION", Left),
                ("TYPE", Left),
            ],
            &rows,
        );
    }
    // By type; untyped objects stay per site, since their site is all we know.
    let mut rows: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &h.sites {
        let k = carved(
            s,
            match &s.ty {
                Some(t) => t.clone(),
                None => format!("(untyped) {}", s.site),
            },
        );
        let e = rows.entry(k).or_default();
        e.0 += s.objects;
        e.1 += s.bytes;
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(&b.0)));
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, (n, b))| vec![n.to_string(), b.to_string(), k])
        .collect();
    table(
        &[("OBJECTS", Right), ("BYTES", Right), ("TYPE", Left)],
        &rows,
    );
}

/// Leaked bytes first, then all bytes, then name (the runtime sorts the
/// same way; older runtimes sorted by leaked bytes only).
fn by_bytes(rows: &[TraceRow]) -> Vec<&TraceRow> {
    let mut v: Vec<&TraceRow> = rows.iter().collect();
    v.sort_by(|a, b| {
        b.unreachable_bytes
            .cmp(&a.unreachable_bytes)
            .then(
                (b.reachable_bytes + b.unreachable_bytes)
                    .cmp(&(a.reachable_bytes + a.unreachable_bytes)),
            )
            .then(a.what.cmp(&b.what))
    });
    v
}

pub fn trace(t: &TraceReport, as_json: bool, by_site: bool) {
    if as_json {
        return json(t);
    }
    println!(
        "{} objects: {} reachable, {} unreachable ({} precise, {} conservative edges; {} thread-locals; {:.1} ms)",
        t.objects,
        t.reachable,
        t.unreachable,
        t.precise_edges,
        t.conservative_edges,
        t.thread_locals,
        t.millis
    );
    if by_site {
        let rows: Vec<Vec<String>> = by_bytes(&t.sites)
            .into_iter()
            .map(|r| {
                vec![
                    r.reachable.to_string(),
                    r.reachable_bytes.to_string(),
                    r.unreachable.to_string(),
                    r.unreachable_bytes.to_string(),
                    r.what.clone(),
                    or_dash(r.function.as_deref().unwrap_or("")),
                    r.ty.clone().unwrap_or_else(|| "(untyped)".into()),
                ]
            })
            .collect();
        return table(
            &[
                ("REACHABLE", Right),
                ("BYTES", Right),
                ("UNREACHABLE", Right),
                ("LEAKED BYTES", Right),
                ("SITE", Left),
                ("FUNCTION", Left),
                ("TYPE", Left),
            ],
            &rows,
        );
    }
    let rows: Vec<Vec<String>> = by_bytes(&t.rows)
        .into_iter()
        .map(|r| {
            vec![
                r.reachable.to_string(),
                r.reachable_bytes.to_string(),
                r.unreachable.to_string(),
                r.unreachable_bytes.to_string(),
                r.what.clone(),
                r.leak_sites.join(", "),
            ]
        })
        .collect();
    table(
        &[
            ("REACHABLE", Right),
            ("BYTES", Right),
            ("UNREACHABLE", Right),
            ("LEAKED BYTES", Right),
            ("TYPE", Left),
            ("LEAKED AT", Left),
        ],
        &rows,
    );
}

pub fn update(r: &UpdateReport, as_json: bool) {
    if as_json {
        return json(r);
    }
    println!("updated: pid {} -> {}", r.old_pid, r.new_pid);
    println!(
        "  objects: {} precise ({} moved to a new layout, {} converted in place: held by hidden references), {} conservative; {} bytes; {} globals, {} thread-locals",
        r.objects_precise,
        r.objects_moved,
        r.objects_pinned,
        r.objects_conservative,
        r.bytes,
        r.globals,
        r.thread_locals
    );
    if r.objects_carved > 0 {
        println!(
            "  carved by pool/slab allocators: {} kept in place, {} of them converted to a new layout",
            r.objects_carved, r.objects_carved_converted
        );
    }
    println!(
        "  descriptors: {} inherited, {} start-up resources closed",
        r.fds_inherited, r.fds_closed
    );
    if r.connections_led > 0 {
        println!(
            "  connections held by parked threads, led to the new version's accept: {}",
            r.connections_led
        );
    }
    if r.hook_calls > 0 {
        println!("  user hooks: {} calls", r.hook_calls);
    }
    match r.profile_points {
        Some(n) => println!("  quiescent points: {n} from the build's profile"),
        None => println!("  quiescent points: every blocking call (no profile)"),
    }
    if r.workers > 0 {
        println!(
            "  workers: {} forked at start-up, each given its old counterpart's state",
            r.workers
        );
        if r.worker_fds > 0 {
            println!(
                "  worker connections: {} handed to the new workers under their numbers",
                r.worker_fds
            );
        }
    }
    if r.children_left > 0 {
        println!(
            "  children left on the old version: {} (forked after start-up, they finish as they are)",
            r.children_left
        );
    }
    println!("  downtime: {:.2} ms", r.downtime_ms);
}

/// `mcr-ctl profile`: per thread, where it waited, largest share first.
pub fn profile(
    r: &ProfileReport,
    points: &[QuiescentPoint],
    function: impl Fn(&CodeRef) -> String,
    location: impl Fn(&CodeRef) -> String,
) {
    println!("profile of {} ms", r.duration_ms);
    for t in &r.threads {
        let total: u64 = t.sites.iter().map(|s| s.blocked_ns).sum();
        println!(
            "thread {}{}: blocked {:.1} ms",
            t.tid,
            if t.is_main { " (main)" } else { "" },
            total as f64 / 1e6
        );
        if t.sites.is_empty() {
            println!("  (no blocking call in the window)");
            continue;
        }
        let rows: Vec<Vec<String>> = t
            .sites
            .iter()
            .map(|s| {
                let share = if total > 0 {
                    100.0 * s.blocked_ns as f64 / total as f64
                } else {
                    0.0
                };
                let quiescent = points.iter().any(|p| p.at == s.at);
                vec![
                    format!("{share:.1}%"),
                    s.calls.to_string(),
                    s.call.clone(),
                    if s.at.offset == 0 {
                        "(unknown)".into()
                    } else {
                        function(&s.at)
                    },
                    location(&s.at),
                    if quiescent { "quiescent point" } else { "" }.into(),
                ]
            })
            .collect();
        table(
            &[
                ("  share", Right),
                ("calls", Right),
                ("call", Left),
                ("called from", Left),
                ("at", Left),
                ("", Left),
            ],
            &rows,
        );
    }
}
