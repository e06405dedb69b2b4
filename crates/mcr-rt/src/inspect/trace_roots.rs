//! Where the trace's roots are, besides the program's globals: thread
//! stacks (from a blocked thread's stack pointer; its registers are not
//! scanned, see trace.rs "Roots"), static TLS blocks and
//! thread descriptors found in glibc's thread lists the way debuggers find
//! them, and the writable data of shared libraries. Memory that can vanish
//! under the walk is read with `process_vm_readv`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes below a blocked thread's stack pointer that still belong to its
/// frame (the x86-64 System V red zone).
pub(super) const RED_ZONE: usize = 128;
/// Static TLS and thread descriptor sizes when glibc does not say.
pub(super) const FALLBACK_TLS: usize = 4096;
pub(super) const FALLBACK_TCB: usize = 2304;

/// The main thread's thread pointer (glibc's `pthread_self()`, which is the
/// thread pointer on x86-64), recorded by an ELF constructor: its static
/// TLS block lies right below it, not on its stack.
pub(super) static MAIN_TP: AtomicUsize = AtomicUsize::new(0);

#[used]
#[link_section = ".init_array"]
static RECORD_MAIN_TP: extern "C" fn() = record_main_tp;

extern "C" fn record_main_tp() {
    // SAFETY: pthread_self has no preconditions; constructors run on the
    // main thread.
    MAIN_TP.store(unsafe { libc::pthread_self() } as usize, Ordering::Relaxed);
}

/// Copies `[a, a + 8*out.len())` of this process into `out`; returns the
/// bytes copied (a prefix; 0 if the start is unmapped).
pub(super) fn read_self(a: u64, out: &mut [u64]) -> usize {
    let local = libc::iovec {
        iov_base: out.as_mut_ptr() as *mut libc::c_void,
        iov_len: out.len() * 8,
    };
    let remote = libc::iovec {
        iov_base: a as *mut libc::c_void,
        iov_len: out.len() * 8,
    };
    // SAFETY: reading our own address space into a buffer we own; the
    // kernel reports unmapped source pages as an error instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n.max(0) as usize
}

/// The stack pointer of a thread blocked in a system call, from
/// `/proc/self/task/TID/syscall` ("NR ARGS... SP PC"); `None` if it runs.
pub(super) fn blocked_sp(tid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() < 3 || f[0] == "running" {
        return None;
    }
    u64::from_str_radix(f[f.len() - 2].trim_start_matches("0x"), 16).ok()
}

pub(super) fn dlsym(name: &std::ffi::CStr) -> usize {
    // SAFETY: looking up a symbol by a constant name.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
}

/// One word of this process, read without risk of faulting.
pub(super) fn peek(a: usize) -> Option<usize> {
    let mut w = [0u64; 1];
    (read_self(a as u64, &mut w) == 8).then_some(w[0] as usize)
}

/// glibc's thread descriptors, found the way debuggers find them (the
/// `_thread_db_*` layout descriptions libc exports for libthread_db).
#[derive(Default)]
pub(super) struct GlibcThreads {
    /// Static TLS bytes below a thread pointer, descriptor bytes above it.
    pub(super) tls_below: usize,
    pub(super) tcb: usize,
    /// Offset of the dtv pointer in a descriptor.
    pub(super) dtv_off: usize,
    /// Descriptors (= thread pointers) of live threads, every one of them:
    /// program threads, the main thread, runtime threads.
    pub(super) live: Vec<usize>,
    /// Descriptors of exited threads whose stacks glibc keeps for reuse
    /// (in a forked child: every thread of the parent but the forking one).
    pub(super) cached: Vec<usize>,
    /// Offsets of the start routine and of the kernel thread id.
    pub(super) start_off: usize,
    pub(super) tid_off: usize,
}

/// A glibc `list_t` of thread descriptors starting at `head`; `None` if a
/// node does not look like a descriptor (`tcb` and `self` point to itself).
pub(super) fn descriptor_list(head: usize, list_off: usize) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let mut node = peek(head)?;
    while node != head {
        let d = node.wrapping_sub(list_off);
        if peek(d)? != d || peek(d + 16)? != d || out.len() > 1 << 16 {
            return None;
        }
        out.push(d);
        node = peek(node)?;
    }
    Some(out)
}

pub(super) fn glibc_threads() -> Option<GlibcThreads> {
    let (info, tcb, list, dtvp, used, user, rtld, start, tid) = (
        dlsym(c"_dl_get_tls_static_info"),
        dlsym(c"_thread_db_sizeof_pthread"),
        dlsym(c"_thread_db_pthread_list"),
        dlsym(c"_thread_db_pthread_dtvp"),
        dlsym(c"_thread_db_rtld_global__dl_stack_used"),
        dlsym(c"_thread_db_rtld_global__dl_stack_user"),
        dlsym(c"_rtld_global"),
        dlsym(c"_thread_db_pthread_start_routine"),
        dlsym(c"_thread_db_pthread_tid"),
    );
    if [info, tcb, list, dtvp, used, user, rtld, start, tid].contains(&0) {
        return None;
    }
    type F = unsafe extern "C" fn(*mut usize, *mut usize);
    let (mut size, mut align) = (0usize, 0usize);
    // SAFETY: glibc's `void _dl_get_tls_static_info(size_t *, size_t *)`;
    // the `_thread_db_*` symbols are constant `uint32_t` arrays (a size, or
    // {bits, count, offset} of a field).
    let (tcb, list_off, dtv_off, used_off, user_off, start_off, tid_off) = unsafe {
        std::mem::transmute::<usize, F>(info)(&mut size, &mut align);
        let field = |p: usize| (p as *const u32).add(2).read() as usize;
        (
            (tcb as *const u32).read() as usize,
            field(list),
            field(dtvp),
            field(used),
            field(user),
            field(start),
            field(tid),
        )
    };
    // On x86-64 the static size counts the descriptor (TLS_TCB_AT_TP).
    if size <= tcb || tcb == 0 {
        return None;
    }
    let mut g = GlibcThreads {
        tls_below: size - tcb,
        tcb,
        dtv_off,
        start_off,
        tid_off,
        ..Default::default()
    };
    g.live = descriptor_list(rtld + used_off, list_off)?;
    g.live.extend(descriptor_list(rtld + user_off, list_off)?);
    // The stack cache is the list right after the user stacks in
    // `struct rtld_global` (glibc 2.34 and later); kept only if it checks.
    if user_off == used_off + 16 {
        g.cached = descriptor_list(rtld + user_off + 16, list_off).unwrap_or_default();
    }
    Some(g)
}

/// The stack block of the thread whose descriptor is `d`.
pub(super) fn stack_of(d: usize) -> Option<(usize, usize)> {
    // SAFETY: `d` is a live thread's descriptor, i.e. its pthread_t; the
    // attribute object is initialised by pthread_getattr_np and destroyed.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(d as libc::pthread_t, &mut attr) != 0 {
            return None;
        }
        let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
        let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (r == 0 && size > 0).then(|| (addr as usize, addr as usize + size))
    }
}

/// Writable PT_LOAD segments of every loaded shared object (not the
/// executable, the first entry), from the dynamic linker's list.
pub(super) fn library_data_ranges() -> Vec<(u64, u64)> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the dynamic linker passes a valid info; `data` is our state.
        unsafe {
            let (out, seen) = &mut *(data as *mut (Vec<(u64, u64)>, bool));
            let first = !*seen;
            *seen = true;
            if first {
                return 0; // the executable: its globals are described
            }
            let i = &*info;
            for k in 0..i.dlpi_phnum as usize {
                let ph = &*i.dlpi_phdr.add(k);
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 {
                    let a = i.dlpi_addr + ph.p_vaddr;
                    out.push((a, a + ph.p_memsz));
                }
            }
        }
        0
    }
    let mut st: (Vec<(u64, u64)>, bool) = (Vec::new(), false);
    // SAFETY: the callback only writes into `st`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut st as *mut _ as *mut libc::c_void) };
    st.0
}
