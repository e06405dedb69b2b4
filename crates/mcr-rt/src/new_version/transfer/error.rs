//! Why a transfer fails: each variant names what the operator must look
//! at (a type, a call site, a function), and the update is rolled back.

use super::pinned;
use mcr_types::plan::PlanError;

#[derive(Debug)]
pub enum TransferError {
    Plan(PlanError),
    Alloc(u64),
    MovedReferencedFromUntyped {
        ty: String,
        from_site: String,
        /// The byte of the old object the reference names.
        at: u64,
    },
    FunctionGone(String),
    GlobalGone(String),
    StaticReferencedFromUntyped {
        from_site: String,
    },
    Hook(String),
    WorkerDangling {
        what: String,
    },
    CarvedGrows {
        ty: String,
        old_size: u64,
        new_size: u64,
        allocator: String,
        site: String,
    },
    Pinned(pinned::PinError),
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::Plan(e) => write!(f, "{e}"),
            TransferError::Alloc(n) => write!(f, "out of memory allocating {n} bytes"),
            TransferError::MovedReferencedFromUntyped { ty, from_site, at } => write!(
                f,
                "an object of `{ty}` changes layout but {from_site} points to byte {at} of it"
            ),
            TransferError::FunctionGone(n) => write!(f, "function `{n}` is referenced by the state but gone in the new version"),
            TransferError::StaticReferencedFromUntyped { from_site } => write!(
                f,
                "untyped memory allocated at {from_site} points into the old binary (MCR_STRICT_CONSERVATIVE)"
            ),
            TransferError::WorkerDangling { what } => write!(
                f,
                "a worker's {what} points to an object of its heap that is not carried (memory of a library, or a start-up object without a counterpart)"
            ),
            TransferError::GlobalGone(n) => write!(f, "global `{n}` is referenced by the state but gone in the new version"),
            TransferError::Hook(m) => f.write_str(m),
            TransferError::Pinned(e) => write!(f, "{e}"),
            TransferError::CarvedGrows { ty, old_size, new_size, allocator, site } => write!(
                f,
                "an object of `{ty}` carved by {allocator} at {site} needs {new_size} bytes in the new version but has {old_size}: objects carved by a pool or slab allocator cannot move, so `{ty}` must not grow"
            ),
        }
    }
}

impl From<pinned::PinError> for TransferError {
    fn from(e: pinned::PinError) -> Self {
        TransferError::Pinned(e)
    }
}

impl From<PlanError> for TransferError {
    fn from(e: PlanError) -> Self {
        TransferError::Plan(e)
    }
}
