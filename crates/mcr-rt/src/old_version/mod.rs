//! Layer 4, the old version's side of a live update: refuse what cannot
//! be done, quiesce, checkpoint, start the new version, commit or roll
//! back.

pub mod checkpoint;
pub mod committed;
pub mod update;
pub mod workers;
