//! The allocation-site descriptor that `mcr-pass` emits, one per call site
//! (`struct mcr_site`, defined once in `mcr_types::abi`). The heap only
//! stores pointers to it and never dereferences them: after an update
//! they may point into the old binary, which is not mapped any more.

pub use mcr_types::abi::Site;
