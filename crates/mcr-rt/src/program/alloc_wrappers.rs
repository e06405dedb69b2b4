//! Allocation wrappers `mcr-pass` proved (section `mcr_wrappers`): a call
//! of another unit's function with a libc allocator's prototype is typed
//! by the evidence at the call, and retypes its result only if the callee
//! really is such a wrapper.

use crate::heap::{__mcr_retag, Site};
use libc::c_void;

/// A call of another unit's function with a libc allocator's prototype,
/// typed by the evidence at the call: the object is retyped only if the
/// callee is an allocation wrapper of `kind` its own unit proved (section
/// `mcr_wrappers`); any other function's result is left alone.
#[no_mangle]
pub extern "C" fn __mcr_retag_wrapped(
    p: *mut c_void,
    site: *const Site,
    callee: *const c_void,
    kind: u32,
) -> *mut c_void {
    if !p.is_null()
        && crate::program::sections::wrappers()
            .iter()
            .any(|w| w.function == callee as usize && w.kind == kind)
    {
        __mcr_retag(p, site);
    }
    p
}
