//! Layer 5, the new version's side: start-up against the old start-up
//! log, then the state transfer at the main thread's first quiescent
//! point, then commit.

pub mod restore;
pub mod restore_state;
pub mod transfer;
pub mod workers;
