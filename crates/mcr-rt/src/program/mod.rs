//! Layer 2, the program's own parts as the runtime reads them: the
//! sections `mcr-pass` emitted, its globals, thread-locals, threads,
//! anonymous and shared mappings, the images of earlier binaries, the
//! user's hooks, and the start-up snapshot.

pub mod alloc_wrappers;
pub mod args;
pub mod globals;
pub mod hooks;
pub mod mappings;
pub mod old_images;
pub mod sections;
pub mod shared_memory;
pub mod snapshot;
pub mod thread_locals;
pub mod threads;
