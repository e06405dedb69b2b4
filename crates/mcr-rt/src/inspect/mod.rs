//! Layer 6, inspection of a running program: what `mcr-ctl ps`, `heap`
//! and `trace` show.

pub mod report;
mod scan_plan;
pub mod trace;
mod trace_roots;
