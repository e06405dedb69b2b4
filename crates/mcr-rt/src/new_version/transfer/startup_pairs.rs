//! Pairing old start-up objects with the new start-up's: the new
//! version's threads and libraries already point to its own start-up
//! objects, so an old one's state is poured into its counterpart instead
//! of moving.

use super::context::{Ctx, Move};
use super::sites::SiteTable;
use crate::heap::{self, Site};
use crate::old_version::checkpoint::{SavedSite, State};
use crate::program::globals;
use crate::program::snapshot::StartupObject;
use std::collections::HashMap;

/// Pairs old and new start-up objects: same allocation site (or, for
/// untyped ones, same size), in allocation order, when both versions made
/// as many. A paired old object's state is poured into its counterpart,
/// which the new version's threads and libraries already point to.
pub(super) fn pair_startup_objects(
    state: &State,
    old_sites: &HashMap<u64, &SavedSite>,
    inherited: &HashMap<u64, u64>,
    new_startup: &[StartupObject],
) -> HashMap<u64, u64> {
    // Old side: program roots are the old globals and typed objects.
    let old_untyped: HashMap<u64, u64> = state
        .startup_objects
        .iter()
        .filter(|o| old_sites.get(&o.site).is_none_or(|s| s.type_name.is_none()))
        .map(|o| (o.addr, o.size))
        .collect();
    let old_globals: Vec<Vec<u8>> = state.globals.iter().map(|g| g.bytes.clone()).collect();
    let mut roots: Vec<(u64, u64)> = old_globals
        .iter()
        .map(|b| (b.as_ptr() as u64, b.len() as u64))
        .collect();
    roots.extend(
        state
            .startup_objects
            .iter()
            .filter(|o| !old_untyped.contains_key(&o.addr))
            .map(|o| (o.addr, o.size)),
    );
    let old_reach = program_reachable(&roots, &old_untyped);
    // New side: the same, before transfer touches anything.
    let new_untyped: HashMap<u64, u64> = new_startup
        .iter()
        .filter(|o| o.site == 0)
        .map(|o| (o.addr, o.size))
        .collect();
    let mut roots: Vec<(u64, u64)> = globals::all()
        .map(|g| (g.addr as u64, g.size as u64))
        .collect();
    roots.extend(
        new_startup
            .iter()
            .filter(|o| o.site != 0)
            .map(|o| (o.addr, o.size)),
    );
    let new_reach = program_reachable(&roots, &new_untyped);

    let mut old_groups: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for o in &state.startup_objects {
        if inherited.get(&o.addr) != Some(&o.size) {
            continue; // freed or reallocated since start-up
        }
        if old_untyped.contains_key(&o.addr) && !old_reach.contains(&o.addr) {
            continue; // a library's private memory
        }
        let key = old_sites.get(&o.site).map_or((0, o.size), |s| (s.key, 0));
        old_groups.entry(key).or_default().push(o.addr);
    }
    let mut new_groups: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
    for o in new_startup {
        if o.site == 0 && !new_reach.contains(&o.addr) {
            continue;
        }
        let key = if o.site == 0 {
            (0, o.size)
        } else {
            // SAFETY: non-null sites of new objects are this binary's descriptors.
            (unsafe { (*(o.site as *const Site)).key }, 0)
        };
        new_groups.entry(key).or_default().push((o.addr, o.size));
    }
    let mut pairs = HashMap::new();
    for (k, olds) in old_groups {
        let Some(news) = new_groups.get(&k) else {
            continue;
        };
        if news.len() != olds.len() {
            continue;
        }
        for (o, n) in olds.iter().zip(news) {
            pairs.insert(*o, n.0);
        }
    }
    pairs
}

/// Untyped start-up objects the program's own state points to, directly or
/// through other such objects (conservatively). Only those are paired: an
/// untyped object only a library points to (libc's environment, stdio
/// buffers) is that library's, and its new version's start-up rebuilt it.
fn program_reachable(
    roots: &[(u64, u64)],
    untyped: &HashMap<u64, u64>,
) -> std::collections::HashSet<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut work: Vec<(u64, u64)> = roots.to_vec();
    while let Some((a, len)) = work.pop() {
        let mut w = a.next_multiple_of(8);
        while w + 8 <= a + len {
            // SAFETY: an aligned word inside a live object, global or copy.
            let p = unsafe { (w as *const u64).read() };
            w += 8;
            if p < 4096 {
                continue;
            }
            if let Some(o) = heap::find(p as usize) {
                let start = o.addr as u64;
                if let Some(&sz) = untyped.get(&start) {
                    if seen.insert(start) {
                        work.push((start, sz));
                    }
                }
            }
        }
    }
    seen
}

/// A worker's start-up objects paired with the new worker's own: same
/// site, same order, as many on both sides. Each pair is recorded as a
/// move, so pointers to the old object lead to its counterpart.
pub(super) fn pair_worker_objects<'s>(
    ctx: &mut Ctx<'s>,
    sites: &SiteTable<'s>,
    old_startup: &'s [StartupObject],
    new_startup: &[StartupObject],
) -> HashMap<u64, u64> {
    let mut olds: HashMap<u64, Vec<&StartupObject>> = HashMap::new();
    for o in old_startup {
        if let Some(s) = sites.old_site(o.site) {
            olds.entry(s.key).or_default().push(o);
        }
    }
    let mut news: HashMap<u64, Vec<u64>> = HashMap::new();
    for o in new_startup.iter().filter(|o| o.site != 0) {
        // SAFETY: non-null sites of this process's objects are its descriptors.
        news.entry(unsafe { (*(o.site as *const Site)).key })
            .or_default()
            .push(o.addr);
    }
    let mut pairs: HashMap<u64, u64> = HashMap::new();
    for (k, os) in &olds {
        let Some(ns) = news.get(k).filter(|ns| ns.len() == os.len()) else {
            continue;
        };
        for (o, &n) in os.iter().zip(ns) {
            pairs.insert(o.addr, n);
            let ty = sites
                .old_site(o.site)
                .and_then(|s| s.type_name.as_deref())
                .unwrap_or("");
            let same = match (ctx.v.old_type(ty), ctx.v.new_type(ty)) {
                (Some(a), Some(b)) => ctx.v.identical(a, b, 0),
                _ => true,
            };
            ctx.moves.push(Move {
                old: o.addr,
                old_size: o.size,
                new: n,
                ty,
                same_layout: same,
                in_place: false,
            });
        }
    }
    pairs
}
