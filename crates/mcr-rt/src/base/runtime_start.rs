//! The runtime's start, reachable from every layer. A program may call
//! into the runtime (create a thread) from a constructor of its own that
//! runs before the runtime's constructor; the entry points that can come
//! first make sure the runtime has started. The start itself is the top
//! layer's (`init`): it is found by the linker under `mcr_rt_start`, a
//! callback resolved at link time, so that no layer imports the top.

extern "C" {
    /// Defined by `init`: idempotent.
    fn mcr_rt_start();
}

/// Starts the runtime if it has not started yet.
pub fn ensure_started() {
    // SAFETY: `mcr_rt_start` is `init`'s idempotent start, a plain Rust
    // function exported under a C name; it takes nothing and returns nothing.
    unsafe { mcr_rt_start() }
}
