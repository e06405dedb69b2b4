//! The mcr runtime, linked into every program built with `mcr-cc`.
//!
//! Layers, bottom up; a module imports only from layers below its own
//! (`tests/layers.rs` checks it). A lower layer that must tell an upper one
//! something calls a callback the upper one registered. See
//! ARCHITECTURE.md for each module's invariants.

/// 1. Facts about this process and the C library under it.
pub mod base;
/// 7. The control channel, and the runtime's start.
pub mod control;
/// 0. The typed heap: every allocation of the program.
pub mod heap;
pub mod init;
/// 6. Inspection: heap reports, the reachability trace.
pub mod inspect;
/// 3. The program's calls the runtime stands in: blocking calls and
///    quiescent points, the start-up log and its resource kinds, forks.
pub mod interpose;
/// 5. The new version's side: restore, transfer.
pub mod new_version;
/// 4. The old version's side of an update: checkpoint, update.
pub mod old_version;
/// 2. The program's own parts, as the runtime reads them.
pub mod program;
