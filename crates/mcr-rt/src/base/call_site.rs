//! Which call in the program a blocking wrapper was called from: the
//! return address into the caller, found by unwinding our own frames (which
//! always carry unwind tables) up to the first frame that is not a wrapper.
//! Only computed while profiling or quiescing, never on the fast path.

use std::ffi::c_void;

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type UnwindTraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> libc::c_int;

extern "C" {
    fn _Unwind_Backtrace(f: UnwindTraceFn, arg: *mut c_void) -> libc::c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
    fn _Unwind_FindEnclosingFunction(pc: *mut c_void) -> *mut c_void;
}

const URC_NO_REASON: libc::c_int = 0;
const URC_END_OF_STACK: libc::c_int = 5;

/// Frames looked at before giving up (wrapper, its inner closures, caller).
const MAX_FRAMES: usize = 16;

struct Walk<'a> {
    wrappers: &'a [usize],
    in_wrapper: bool,
    frames: usize,
    site: usize,
}

extern "C" fn step(ctx: *mut UnwindContext, arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Walk` passed by `caller_of`, alive for the call;
    // `ctx` is the unwinder's context for this frame.
    let (w, ip) = unsafe { (&mut *(arg as *mut Walk), _Unwind_GetIP(ctx)) };
    w.frames += 1;
    if ip == 0 || w.frames > MAX_FRAMES {
        return URC_END_OF_STACK;
    }
    // SAFETY: a lookup of the function containing a return address.
    let func = unsafe { _Unwind_FindEnclosingFunction((ip - 1) as *mut c_void) } as usize;
    if func != 0 && w.wrappers.contains(&func) {
        w.in_wrapper = true;
    } else if w.in_wrapper {
        w.site = ip;
        return URC_END_OF_STACK;
    }
    URC_NO_REASON
}

/// The return address in the frame that called one of `wrappers` (the
/// addresses of the wrapper functions, the libc-named one and the
/// `__mcr_` one), or 0 if the stack does not show one.
pub fn caller_of(wrappers: &[usize]) -> usize {
    let mut w = Walk {
        wrappers,
        in_wrapper: false,
        frames: 0,
        site: 0,
    };
    // SAFETY: the callback only touches `w`, which outlives the walk.
    unsafe { _Unwind_Backtrace(step, &mut w as *mut Walk as *mut c_void) };
    w.site
}
