//! Layer 3, the program's calls the runtime stands in: the blocking calls
//! and the quiescent points threads park at (with the profile of where
//! they block), the start-up log and the kinds of resource it records and
//! replays (files, identity, inputs, shared files, held connections),
//! and forks.

pub mod blocking_calls;
pub mod children;
pub mod held_connections;
pub mod identity;
pub mod profile;
pub mod quiesce;
pub mod range_close;
pub mod shared_files;
pub mod startup_entry;
pub mod startup_files;
pub mod startup_inputs;
pub mod startup_log;
pub mod worker_fds;
