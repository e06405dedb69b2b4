//! Globals: "kept from the new start-up unless the old program changed it
//! since its own start-up", field by field, pointer fields included.
//!
//! A leaf of a global (a scalar, a string, a pointer, an array of pointers,
//! a union) that still holds its value from the end of the old start-up is
//! start-up state, and the new version's start-up rebuilt it: the new value
//! wins (a changed default, a new allow-list, the new `ngx_modules[]`). A
//! leaf the old program changed since keeps the old value (an admin
//! command's choice), its pointers rewritten to the new addresses.
//!
//! A pointer is not all of its state, though: an unchanged pointer to a
//! table start-up built may lead to entries the program added at run time
//! (the header unchanged, its buckets not). So an unchanged pointer leaf
//! takes the new value only when everything it leads to is start-up state
//! nobody changed: static data (the old binary's image: string literals,
//! constant tables, functions, other globals, which follow their own rule;
//! a shared library's data), or heap objects that existed at the end of the
//! old start-up and still hold exactly those bytes (the snapshot's hash),
//! and so on transitively through every word of them that points into the
//! old heap. Anything else it leads to (an object allocated or changed
//! since start-up, memory we cannot place) makes the run-time state win:
//! the old value, rewritten, as for a changed pointer. Unions are judged
//! the same way, word by word; a word that points nowhere known is taken
//! for an integer there.
//!
//! The old heap is read as the old process left it, so the decisions are
//! all made (`Pristine::prepare`) before the transfer pours, moves or
//! rewrites any object.

use super::context::Ctx;
use super::TransferError;
use crate::heap;
use crate::old_version::checkpoint::{SavedGlobal, State};
use mcr_types::plan::UnchangedRef;
use std::collections::{HashMap, HashSet};

/// Words scanned in all walks together before giving up: a start-up
/// object graph bigger than this (256 MiB) is taken as changed, and the
/// old values win (what an update did before this rule).
const WALK_BUDGET_WORDS: u64 = 32 << 20;

/// Which old pointer values lead only to start-up state nobody changed.
pub(super) struct Pristine {
    heap: (u64, u64),
    /// Shared anonymous mappings the new version took over (see
    /// `shared_memory`): carried, so a pointer into one keeps its value.
    shared: Vec<crate::program::shared_memory::SharedMapping>,
    /// Old start-up objects: address -> (size, unchanged since start-up).
    startup: HashMap<u64, (u64, bool)>,
    /// Start-up objects whose whole reachable graph is unchanged.
    clean: HashSet<u64>,
    /// Start-up objects from which a changed or unknown object is reached.
    dirty: HashSet<u64>,
    /// Answers per pointer value; after `prepare`, the only answers.
    decided: HashMap<u64, bool>,
    /// Start-up objects a global leaf that kept its new value led to.
    kept_roots: Vec<u64>,
    /// Those and every heap object they lead to: their new-version
    /// counterparts keep what the new start-up put in them.
    kept: HashSet<u64>,
    frozen: bool,
    budget: u64,
    debug: bool,
}

impl Pristine {
    fn new(state: &State) -> Pristine {
        Pristine {
            heap: (state.heap.base, state.heap.base + state.heap.len),
            shared: state.shared_mappings.clone(),
            startup: state
                .startup_objects
                .iter()
                .map(|o| (o.addr, (o.size, o.unchanged)))
                .collect(),
            clean: HashSet::new(),
            dirty: HashSet::new(),
            decided: HashMap::new(),
            kept_roots: Vec::new(),
            kept: HashSet::new(),
            frozen: false,
            budget: WALK_BUDGET_WORDS,
            debug: std::env::var_os("MCR_DEBUG").is_some(),
        }
    }

    /// Decides every unchanged pointer leaf of the old globals while the old
    /// heap is as the old process left it: a dry run of the conversion into
    /// scratch memory. Later questions get these answers, and "old value"
    /// for any other (none are expected).
    pub(super) fn prepare(state: &State, ctx: &Ctx) -> Pristine {
        let mut p = Pristine::new(state);
        for g in &state.globals {
            let Some(&(_, nty)) = ctx.new_globals.get(g.name.as_str()) else {
                continue;
            };
            let (Some(ot), Some(nt)) = (ctx.v.old_type(&g.type_name), ctx.v.new_type(nty)) else {
                continue;
            };
            if !ctx.v.holds_refs(ot) {
                continue;
            }
            let Some(startup) = startup_bytes(g) else {
                continue;
            };
            let old = &g.bytes;
            let mut scratch = vec![0u8; nt.size as usize];
            // Errors surface in the real conversion.
            let _ = ctx.v.convert_changed(
                ot,
                nt,
                old,
                &startup,
                &mut scratch,
                &g.name,
                &mut Vec::new(),
                &mut |u| p.decide(u),
            );
        }
        p.frozen = true;
        // The graphs behind the leaves that keep their new value: all clean.
        let mut work = std::mem::take(&mut p.kept_roots);
        while let Some(a) = work.pop() {
            if !p.kept.insert(a) {
                continue;
            }
            let size = p.startup.get(&a).map_or(0, |s| s.0);
            for w in (a.next_multiple_of(8)..(a + size).saturating_sub(7)).step_by(8) {
                // SAFETY: an aligned word inside a live inherited object,
                // not yet touched by the transfer.
                let v = unsafe { (w as *const u64).read() };
                if v >= p.heap.0 && v < p.heap.1 {
                    if let Some((b, _, _)) = p.startup_object(v) {
                        work.push(b);
                    }
                }
            }
        }
        p
    }

    /// Is the old start-up object at `addr` part of a graph that a global
    /// left behind for the new start-up's (a leaf that kept its new value
    /// leads to it)? Its counterpart then keeps the new start-up's
    /// contents too: the new global points to the new graph, and a table
    /// nobody changed is the new version's table.
    pub(super) fn keeps_new(&self, addr: u64) -> bool {
        self.kept.contains(&addr)
    }

    /// `true`: the leaf keeps the new start-up's value.
    fn decide(&mut self, u: &UnchangedRef) -> bool {
        let precise = u.target.is_some();
        let mut keep_new = true;
        let mut roots = Vec::new();
        for w in u.old.chunks_exact(8) {
            let v = u64::from_le_bytes(w.try_into().unwrap());
            if v == 0 || (!precise && v < 4096) {
                continue;
            }
            let ok = match self.decided.get(&v) {
                Some(&b) => b,
                None if self.frozen => false,
                None => {
                    let b = self.leads_to_startup_state(v, precise);
                    self.decided.insert(v, b);
                    b
                }
            };
            if !ok {
                keep_new = false;
                break;
            }
            if v >= self.heap.0 && v < self.heap.1 {
                roots.extend(self.startup_object(v).map(|o| o.0));
            }
        }
        if keep_new && !self.frozen {
            self.kept_roots.extend(roots);
        }
        if self.debug && self.frozen {
            eprintln!(
                "mcr-rt: global {}: unchanged since start-up, {}",
                u.path,
                if keep_new {
                    "leads only to start-up state nobody changed: new start-up value"
                } else {
                    "leads to state changed since start-up: old value"
                }
            );
        }
        keep_new
    }

    /// The start-up object holding `p`, if `p` points into one of the old
    /// heap's start-up objects (inherited here, same address and size).
    fn startup_object(&self, p: u64) -> Option<(u64, u64, bool)> {
        let o = old_heap_object(p)?;
        let &(size, unchanged) = self.startup.get(&(o.addr as u64))?;
        (size == o.size as u64).then_some((o.addr as u64, size, unchanged))
    }

    /// Does the old pointer value `p` lead only to start-up state nobody
    /// changed? `precise`: a typed pointer; else a union's word (such a
    /// word is an integer). Outside the heap, static data and the shared
    /// mappings, nothing of the old process is carried (its stack, where
    /// nginx's `ngx_os_environ` points, private mappings, libc's own
    /// memory): the old value would dangle, the new start-up's is the
    /// same start-up code's answer.
    fn leads_to_startup_state(&mut self, p: u64, precise: bool) -> bool {
        if p >= self.heap.0 && p < self.heap.1 {
            return match self.startup_object(p) {
                Some((a, _, _)) => self.graph_unchanged(a),
                None => false,
            };
        }
        !precise || !crate::program::shared_memory::contains(&self.shared, p)
    }

    /// With MCR_DEBUG: which object made the graph from `root` run-time state.
    fn why_dirty(&self, root: u64, at: u64, why: &str) {
        if self.debug {
            let o = heap::find(at as usize).map(|o| (o.addr, o.size));
            eprintln!("mcr-rt:   graph from {root:#x}: {at:#x} ({why}; in object {o:x?})");
        }
    }

    /// Is the start-up object at `root`, and every old heap object its words
    /// point to (transitively), an unchanged start-up object?
    fn graph_unchanged(&mut self, root: u64) -> bool {
        if self.clean.contains(&root) {
            return true;
        }
        if self.dirty.contains(&root) {
            return false;
        }
        let mut seen = HashSet::from([root]);
        let mut work = vec![root];
        let mut ok = true;
        'walk: while let Some(a) = work.pop() {
            if self.clean.contains(&a) {
                continue;
            }
            let Some(&(size, unchanged)) = self.startup.get(&a) else {
                self.why_dirty(root, a, "not a start-up object");
                ok = false;
                break;
            };
            if !unchanged || self.dirty.contains(&a) || self.budget < size / 8 {
                self.why_dirty(
                    root,
                    a,
                    if unchanged {
                        "dirty"
                    } else {
                        "changed since start-up"
                    },
                );
                ok = false;
                break;
            }
            self.budget -= size / 8;
            for w in (a.next_multiple_of(8)..(a + size).saturating_sub(7)).step_by(8) {
                // SAFETY: an aligned word inside a live inherited object,
                // not yet touched by the transfer.
                let v = unsafe { (w as *const u64).read() };
                if v < self.heap.0 || v >= self.heap.1 {
                    continue;
                }
                match self.startup_object(v) {
                    Some((b, _, true)) => {
                        if seen.insert(b) {
                            work.push(b);
                        }
                    }
                    // Memory the old program had freed: a stale pointer it
                    // never follows (nginx's cycle keeps the address of the
                    // temporary pool start-up destroyed), not state.
                    None if old_heap_object(v).is_none() => {}
                    other => {
                        self.why_dirty(
                            root,
                            v,
                            match other {
                                Some(_) => "a start-up object changed since",
                                None => "not a start-up object",
                            },
                        );
                        ok = false;
                        break 'walk;
                    }
                }
            }
        }
        if ok {
            self.clean.extend(seen);
        } else {
            self.dirty.insert(root);
        }
        ok
    }
}

/// The object live in the old heap that `p` points into, or one past the
/// end of (a pool block's `end` is that block's). In the new version every
/// such object is inherited; a slot the old heap had free is still free or
/// a new start-up object's.
fn old_heap_object(p: u64) -> Option<heap::Object> {
    let inherited = |o: &heap::Object| heap::is_inherited(o.addr);
    heap::find(p as usize).filter(inherited).or_else(|| {
        heap::find(p.checked_sub(1)? as usize)
            .filter(|o| inherited(o) && (o.addr + o.size) as u64 == p)
    })
}

/// A global's value at the end of the old start-up, if known.
fn startup_bytes(g: &SavedGlobal) -> Option<Vec<u8>> {
    if g.unchanged_since_startup {
        return Some(g.bytes.clone());
    }
    g.startup_bytes.clone()
}

/// Globals: each leaf keeps the new start-up's value unless the old program
/// changed it since its start-up (or, for a pointer, what it leads to).
/// Returns the globals whose every pointer still must be rewritten
/// (wholly old values): (address, new type, name).
pub(super) fn transfer(
    ctx: &mut Ctx,
    planner: &mut crate::program::hooks::Planner,
    state: &State,
    pristine: &mut Pristine,
    report: &mut mcr_types::protocol::UpdateReport,
) -> Result<Vec<(u64, String, String)>, TransferError> {
    let debug = std::env::var_os("MCR_DEBUG").is_some();
    let mut fix_whole = Vec::new();
    for g in &state.globals {
        let Some(&(na, nty)) = ctx.new_globals.get(g.name.as_str()) else {
            continue;
        };
        let types = (ctx.v.old_type(&g.type_name), ctx.v.new_type(nty));
        let (Some(ot), Some(nt), Some(startup)) = (types.0, types.1, startup_bytes(g)) else {
            // No type, or no start-up value to compare with: old wins.
            // SAFETY: the new global is as long as its descriptor says.
            unsafe { ctx.pour(planner, g, na, nty) }?;
            report.globals += 1;
            fix_whole.push((na, nty.to_string(), g.name.clone()));
            continue;
        };
        let has_refs = ctx.v.holds_refs(ot);
        let slots = ctx.slots_of(nty);
        if g.unchanged_since_startup && !has_refs {
            if debug {
                eprintln!("mcr-rt: global {} kept from the new start-up", g.name);
            }
            continue;
        }
        let old = &g.bytes;
        // SAFETY: the new global is `nt.size` bytes long per its descriptor.
        let dst = unsafe { std::slice::from_raw_parts_mut(na as *mut u8, nt.size as usize) };
        let mut refs = Vec::new();
        ctx.v
            .convert_changed(ot, nt, old, &startup, dst, &g.name, &mut refs, &mut |u| {
                pristine.decide(u)
            })?;
        planner.collect_copy(&ctx.v, ot, nt, old, na, 1)?;
        report.globals += 1;
        let mut n = 0;
        for r in &refs {
            for w in (r.at..r.at + r.len.saturating_sub(7)).step_by(8) {
                // SAFETY: a word inside the pointer or union leaf just
                // converted, inside the new global.
                let p = unsafe { (w as *const u64).read_unaligned() };
                if r.target.is_none() && p < 4096 {
                    continue;
                }
                if let Some(q) = ctx.translate(p, r.target.as_deref().unwrap_or(""))? {
                    // SAFETY: as above.
                    unsafe { (w as *mut u64).write_unaligned(q) };
                    n += 1;
                }
            }
        }
        // Integers that hold the address of an object that moved.
        if !ctx.moves.is_empty() {
            ctx.check_hidden_references(na, nt.size, nt.size.max(1), &slots, nty)?;
        }
        if debug {
            eprintln!(
                "mcr-rt: global {} ({nty}) at {na:#x}: field by field since start-up, {n} pointers rewritten",
                g.name
            );
        }
    }
    Ok(fix_whole)
}
