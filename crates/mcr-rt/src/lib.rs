//! The mcr runtime, linked into every program built with `mcr-cc`.
//! See ARCHITECTURE.md for each module's invariants.

pub mod heap;

pub mod blocking_calls;
pub mod call_site;
pub mod checkpoint;
pub mod children;
mod computed_once;
pub mod control;
mod debug_laps;
mod descriptor;
pub mod epoll_info;
pub mod globals;
pub mod held_connections;
pub mod hooks;
pub mod identity;
pub mod init;
pub mod mappings;
pub mod old_images;
pub mod private_fds;
pub mod profile;
pub mod quiesce;
pub mod report;
pub mod restore;
pub mod rlimit;
pub mod sandbox;
pub mod sections;
pub mod shared_files;
pub mod shared_memory;
pub mod snapshot;
pub mod startup_files;
pub mod startup_inputs;
pub mod startup_log;
pub mod thread_locals;
pub mod threads;
pub mod trace;
pub mod transfer;
pub mod update;
pub mod worker_fds;
