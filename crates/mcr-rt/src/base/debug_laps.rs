//! Step timings of an update's phases, printed to stderr with
//! `MCR_DEBUG=1`: how the checkpoint's and the transfer's milliseconds were
//! found and are checked again.

use std::time::Instant;

pub struct DebugLaps {
    what: &'static str,
    t0: Instant,
    on: bool,
}

impl DebugLaps {
    /// Timings of `what` ("checkpoint", "transfer"), from now.
    pub fn start(what: &'static str) -> Self {
        Self {
            what,
            t0: Instant::now(),
            on: std::env::var_os("MCR_DEBUG").is_some(),
        }
    }

    /// Prints that `step` is done, with the time since the start.
    pub fn lap(&self, step: &str) {
        if self.on {
            eprintln!(
                "mcr-rt: {}: {step} at {:.2} ms",
                self.what,
                self.t0.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
