//! Layer 1, the base: facts about this process and the C library under
//! it, with no knowledge of updates beyond the link a new version keeps to
//! the old one. Imports only `heap` and `mcr-types`.

pub mod call_site;
pub mod computed_once;
pub mod control_bound;
pub mod debug_laps;
pub mod descriptor;
pub mod epoll_info;
pub mod fault;
pub mod hex;
pub mod libc_calls;
pub mod own_binary;
pub mod private_fd;
pub mod rlimit;
pub mod runtime_start;
pub mod sandbox;
pub mod static_name;
pub mod update_link;
