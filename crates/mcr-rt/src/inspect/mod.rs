//! Layer 6, inspection of a running program: what `mcr-ctl ps`, `heap`
//! and `trace` show.

pub mod report;
pub mod trace;
