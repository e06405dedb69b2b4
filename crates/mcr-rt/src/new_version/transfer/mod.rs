//! Mutable tracing and state transfer, run in the new version at its main
//! thread's first quiescent point with every other thread parked.
//!
//! The old heap is already here, at its old addresses (heap image). An old
//! object whose type kept its layout, or whose type is unknown, stays where
//! it is; one whose type changed is re-allocated in the new layout and every
//! precise pointer to it is rewritten. Pointers into the old binary (globals,
//! functions) are rewritten through names. A changed object that a hidden
//! reference (untyped memory, an integer, a char buffer, a union) holds
//! keeps its address and is converted in place when it fits (`pinned`);
//! otherwise the update is refused.
//!
//! [`run`] (the master, or a program without workers) and [`run_worker`]
//! (a forked worker, its state carried by value) are the same pipeline of
//! phases, one file each:
//!
//! | phase | file | does |
//! |---|---|---|
//! | context | `context.rs`, `sites.rs` | both type maps, where old globals, thread-locals, functions and libraries went; what each old allocation site means here |
//! | start-up pairs | `startup_pairs.rs` | old start-up objects paired with the new start-up's |
//! | pins | `pinned.rs`, `interior.rs` | changed objects a hidden reference holds, converted in place; untyped words naming a field that moves |
//! | place | `place.rs`, `carved.rs`, `worker.rs` | every object kept, poured into its pair, moved or pinned |
//! | untyped | `untyped.rs` | the conservative scan of untyped memory |
//! | roots | `roots.rs`, `global_values.rs` | globals (field by field since start-up) and thread-locals |
//! | pointers | `pointers.rs` | precise pointers of every typed value rewritten |
//! | user hooks | `user_hooks.rs` | `MCR_TRANSFORM` hooks, then the old copies freed |
//! | kernel refs | `kernel_refs.rs` | epoll registrations' `data` words |

use crate::base::debug_laps::DebugLaps;
use crate::old_version::checkpoint::State;
use crate::program::snapshot::StartupObject;
use crate::{heap, program::hooks, program::sections, program::thread_locals};
use mcr_types::protocol::UpdateReport;
use std::collections::HashMap;

mod carved;
mod context;
mod error;
mod global_values;
mod interior;
mod kernel_refs;
mod pinned;
mod place;
mod pointers;
mod roots;
mod sites;
mod startup_pairs;
mod untyped;
mod user_hooks;
mod worker;

pub use error::TransferError;

/// Maps the old binary's image (and the earlier ones it had mapped)
/// read-only at their old addresses, so string literals and constant
/// tables that old state points to stay readable (`old_images`).
pub fn map_old_image(state: &State) {
    crate::program::old_images::map(
        state.old_pid,
        &state.old_exe,
        &state.image,
        &state.earlier_images,
    );
}

/// Transfers the old version's state into this process. `status` tells the
/// old version which user hook runs (a crash in it is then named).
pub fn run(
    state: &State,
    new_startup: &[StartupObject],
    status: &dyn Fn(&str),
) -> Result<UpdateReport, TransferError> {
    let laps = DebugLaps::start("transfer");
    let mut report = UpdateReport::default();

    // Context: both versions' types, sites, roots and hooks.
    let new_map = sections::typemap();
    let hooks = hooks::all().map_err(TransferError::Hook)?;
    let decls: Vec<_> = hooks.iter().map(|h| h.decl.clone()).collect();
    let sites = sites::SiteTable::of(state);
    // Each new thread receives its counterpart's thread-locals; every
    // instance is a global of its own to pointers.
    let tls = thread_locals::pair(&state.threads);
    let tls_views = context::TlsViews::of(state, &tls);
    let mut ctx = context::build(state, new_map, &decls, &tls_views);
    // Before anything touches the old heap: which unchanged pointers of
    // the globals lead only to start-up state nobody changed.
    let mut pristine = global_values::Pristine::prepare(state, &ctx);
    let mut planner = hooks::Planner::new(&ctx.v, hooks);
    laps.lap("context");

    // Start-up pairs: never a block that holds carved objects (it keeps
    // its address).
    let inherited = place::inherited_objects();
    let sizes: HashMap<u64, u64> = inherited
        .iter()
        .map(|o| (o.addr as u64, o.size as u64))
        .collect();
    let mut pairs = startup_pairs::pair_startup_objects(state, &sites.old, &sizes, new_startup);
    let carved_parents = carved::parents(state);
    pairs.retain(|old, _| !carved_parents.contains(old));
    laps.lap("start-up objects paired");

    // Pins: changed objects that hidden references hold stay where they are.
    let (pins, mut interior_words) =
        pinned::find(state, &ctx, &inherited, &pairs, &carved_parents, &sites.old)?;
    laps.lap("hidden references scanned");

    // Place: keep, pour, move or pin every object; carved ones in place.
    let new_sizes: HashMap<u64, u64> = new_startup.iter().map(|o| (o.addr, o.size)).collect();
    let unchanged_startup = place::unchanged_startup(state);
    let decisions = place::Decisions {
        pairs: &pairs,
        new_sizes: &new_sizes,
        unchanged_startup: &unchanged_startup,
        pins: &pins,
        pristine: &pristine,
    };
    let mut placed = place::run(
        &mut ctx,
        &mut planner,
        &sites,
        &inherited,
        &decisions,
        &mut report,
    )?;
    let carved_objects = carved::place(state, &mut ctx, &sites, &mut placed, &mut report)?;
    ctx.seal_moves();
    laps.lap("objects placed");

    // Untyped words naming a field that moves in a kept object (`interior`).
    interior_words.relocate(&ctx);
    untyped::run(&ctx, state, &placed.untyped, &interior_words, &mut report)?;
    report.conservative_rewrites += interior_words.apply();
    laps.lap("untyped scanned");

    roots::run(
        &mut ctx,
        &mut planner,
        state,
        &tls,
        &mut pristine,
        &mut report,
    )?;
    laps.lap("globals transferred");

    let rewritten = pointers::rewrite_typed(&mut ctx, &placed.typed)?;
    if std::env::var_os("MCR_DEBUG").is_some() {
        eprintln!(
            "mcr-rt: {} typed objects, {rewritten} pointers rewritten, {} moved",
            placed.typed.len(),
            ctx.moves.len()
        );
    }
    laps.lap("pointers rewritten");

    report.hook_calls = user_hooks::run(&ctx, &mut planner, carved_objects, status)?;
    laps.lap("hooks run, old copies freed");

    report.kernel_pointers = kernel_refs::rewrite_epoll_registrations(&ctx)?;
    heap::clear_inherited();
    laps.lap("done");
    Ok(report)
}

/// A worker's state into this process, a new worker its new master forked
/// (see `children` and `worker.rs`): the same phases, with the old
/// worker's objects arriving by value. `cookies` are its epoll
/// registrations' `data` words, translated for the caller to re-register.
pub(crate) fn run_worker(
    state: &State,
    w: &crate::interpose::children::ChildState,
    new_startup: &[StartupObject],
    cookies: &mut [u64],
) -> Result<UpdateReport, TransferError> {
    let mut report = UpdateReport::default();

    // Context: no user hooks and no thread-locals in workers.
    let tls = context::TlsViews::default();
    let mut ctx = context::build(state, sections::typemap(), &[], &tls);
    let sites = sites::SiteTable::of(state);

    let pairs =
        startup_pairs::pair_worker_objects(&mut ctx, &sites, &w.startup_objects, new_startup);
    report.objects_paired = pairs.len() as u64;

    let placed = worker::place_carried(&mut ctx, &sites, w, &pairs, &mut report)?;
    ctx.seal_moves();
    worker::check_dangling(&mut ctx, state, w, &placed.typed)?;

    pointers::rewrite_typed(&mut ctx, &placed.typed)?;
    untyped::rewrite_carried(&ctx, &placed.untyped, &mut report)?;
    worker::carry_globals(&ctx, state, w, &mut report)?;
    kernel_refs::translate_cookies(&ctx, cookies)?;
    Ok(report)
}
