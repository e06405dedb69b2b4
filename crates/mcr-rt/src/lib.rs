//! The mcr runtime, linked into every program built with `mcr-cc`.
//!
//! Layers, bottom up; a module imports only from layers below its own
//! (`tests/layers.rs` checks it). A lower layer that must tell an upper one
//! something calls a callback the upper one registered. See
//! ARCHITECTURE.md for each module's invariants.
//!
//! 0. `heap`: the typed heap, every allocation of the program.
//! 1. `base`: facts about this process and the C library under it.
//! 2. `program`: the program's own parts, as the runtime reads them.
//! 3. `interpose`: the program's calls the runtime stands in: blocking
//!    calls and quiescent points, the start-up log and its resource kinds,
//!    forks, range closes.
//! 4. `old_version`: the old version's side of an update.
//! 5. `new_version`: the new version's side: restore, transfer.
//! 6. `inspect`: heap reports, the reachability trace.
//! 7. `control` (the control channel) and `init` (the runtime's start).

pub mod base;
pub mod control;
pub mod heap;
pub mod init;
pub mod inspect;
pub mod interpose;
pub mod new_version;
pub mod old_version;
pub mod program;
