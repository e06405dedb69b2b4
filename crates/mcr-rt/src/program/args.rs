//! The program's arguments as it was started, captured by the runtime's
//! constructor before `main` could rewrite them (nginx and others
//! overwrite argv for their process titles, and /proc/self/cmdline shows
//! that title afterwards). An update starts the new version with them.

use std::ffi::OsString;
use std::sync::OnceLock;

static ARGS: OnceLock<Vec<OsString>> = OnceLock::new();

/// Records the arguments (once; later calls are ignored).
pub fn capture(args: Vec<OsString>) {
    let _ = ARGS.set(args);
}

/// The arguments the program was started with, its name first (None: not
/// captured, e.g. the runtime linked into a test binary).
pub fn original_args() -> Option<&'static [OsString]> {
    ARGS.get().map(Vec::as_slice)
}
