//! The running executable and the libraries mapped beside it: where they
//! are loaded, their function symbols, and a code address as
//! `function+offset`. The executable is opened before `main` at a
//! runtime-private number (see `open_own_executable`).

/// Load bias and address span of this executable, from the dynamic
/// linker's own list (its first entry is the executable).
pub fn load_span() -> (u64, u64) {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the dynamic linker passes a valid info; `data` is our array.
        unsafe {
            let out = &mut *(data as *mut [u64; 2]);
            let i = &*info;
            let mut end = 0u64;
            for k in 0..i.dlpi_phnum as usize {
                let ph = &*i.dlpi_phdr.add(k);
                if ph.p_type == libc::PT_LOAD {
                    end = end.max(ph.p_vaddr + ph.p_memsz);
                }
            }
            *out = [i.dlpi_addr, i.dlpi_addr + end];
        }
        1 // stop after the executable
    }
    let mut out = [0u64; 2];
    // SAFETY: the callback only writes into `out`.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut out as *mut _ as *mut libc::c_void) };
    (out[0], out[1])
}

/// One line of /proc/self/maps.
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    /// Empty for anonymous memory.
    path: String,
}

fn mappings() -> Vec<Mapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (a, b) = f.first()?.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(a, 16).ok()?,
                end: u64::from_str_radix(b, 16).ok()?,
                offset: u64::from_str_radix(f.get(2)?, 16).ok()?,
                path: f.get(5).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Load bias and mapped ranges (start, end, file offset) of the executable.
/// Only the executable's own span counts: a restored process also maps the
/// old binary's image (same path) elsewhere.
pub fn own_image() -> (u64, Vec<(u64, u64, u64)>) {
    let (bias, end) = load_span();
    let ranges = mappings()
        .into_iter()
        .filter(|m| m.start >= bias && m.end <= end.next_multiple_of(4096) && !m.path.is_empty())
        .map(|m| (m.start, m.end, m.offset))
        .collect();
    (bias, ranges)
}

/// Loaded shared libraries: path, start of the first mapping, end of the
/// last one (including the anonymous bss right after the file mappings).
pub fn libraries() -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    let mut last_lib: Option<usize> = None;
    for m in mappings() {
        if m.path.contains(".so") {
            let i = match out.iter().position(|x| x.0 == m.path) {
                Some(i) => {
                    out[i].2 = out[i].2.max(m.end);
                    i
                }
                None => {
                    out.push((m.path, m.start, m.end));
                    out.len() - 1
                }
            };
            last_lib = Some(i);
        } else if m.path.is_empty() && last_lib.is_some_and(|i| out[i].2 == m.start) {
            out[last_lib.unwrap()].2 = m.end;
        } else {
            last_lib = None;
        }
    }
    out
}

/// Function symbols of the running executable, computed once: an old
/// version reads them in an update's check phase, a new one before it
/// reports ready, so no update pays for it while the program is stopped.
///
/// See `computed_once` for why it takes no lock.
pub fn functions() -> &'static [(String, u64)] {
    static F: crate::base::computed_once::ComputedOnce<Vec<(String, u64)>> =
        crate::base::computed_once::ComputedOnce::new();
    F.get_or_compute(own_functions)
}

/// `function+0xoffset` for a code address of the executable.
pub fn describe_pc(pc: u64) -> String {
    functions()
        .iter()
        .filter(|(_, a)| *a <= pc)
        .max_by_key(|(_, a)| *a)
        .map_or_else(|| format!("{pc:#x}"), |(n, a)| format!("{n}+{:#x}", pc - a))
}

/// The running executable, opened before `main` at a runtime-private
/// number (-1: not opened).
static OWN_EXE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Opens the running executable for [`functions`], before the program runs.
///
/// Reading it later from the control thread would hold a low descriptor
/// for a while; a `fork` or an `open` of the program's start-up meanwhile
/// would see its numbers shifted (a new worker's epoll instance would not
/// get its old counterpart's number).
pub fn open_own_executable() {
    // SAFETY: the openat system call on a constant path (not the start-up
    // log's `open`: this file is not the program's).
    let low = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    } as i32;
    if low >= 0 {
        let high = crate::base::private_fd::raw_to_private(low);
        crate::base::private_fd::keep(high);
        OWN_EXE.store(high, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The running executable, mapped read-only: parsing its symbols touches
/// only the pages of its headers and symbol tables (reading all 27 MB of
/// memcached's took ~15 ms of a new version's start-up).
fn own_executable_map() -> Option<memmap2::Mmap> {
    let fd = OWN_EXE.load(std::sync::atomic::Ordering::SeqCst);
    if fd < 0 {
        let f = std::fs::File::open("/proc/self/exe").ok()?;
        // SAFETY: a read-only private mapping; an executable is not
        // written while it runs (the kernel refuses with ETXTBSY).
        return unsafe { memmap2::Mmap::map(&f) }.ok();
    }
    // SAFETY: as above, of the descriptor opened before main.
    unsafe { memmap2::Mmap::map(fd) }.ok()
}

/// Whether a symbol is a Rust function's (this runtime's and its
/// libraries'): legacy mangling ends in a 16-digit hash, v0 starts with
/// `_R`. C never points to them by name, and they were nine tenths of
/// memcached's symbols (1 MB of the checkpoint's state).
fn is_rust_symbol(name: &str) -> bool {
    if name.starts_with("_R") {
        return true;
    }
    let b = name.as_bytes();
    name.starts_with("_ZN")
        && b.len() > 23
        && name.ends_with('E')
        && &b[b.len() - 20..b.len() - 17] == b"17h"
        && b[b.len() - 17..b.len() - 1]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

/// Function symbols of the running executable at their run-time addresses,
/// the program's and its C libraries' (not the runtime's Rust ones).
fn own_functions() -> Vec<(String, u64)> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let Some(exe) = own_executable_map() else {
        return vec![];
    };
    let Ok(f) = object::File::parse(&*exe) else {
        return vec![];
    };
    // The dynamic linker's record, not /proc/self/maps: a new version's
    // control thread runs this during the program's start-up, and an open
    // file there would hold a low number behind its back (a worker forked
    // meanwhile inherited it, and its epoll instance took another number
    // than its old counterpart's).
    let (base, _) = load_span();
    let bias = if f.kind() == object::ObjectKind::Dynamic {
        base
    } else {
        0
    };
    f.symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.name().ok()?, s.address() + bias)))
        .filter(|(n, _)| !is_rust_symbol(n))
        .map(|(n, a)| (n.to_string(), a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_rust_symbol;

    #[test]
    fn rust_symbols_are_told_from_c_and_cxx_ones() {
        assert!(is_rust_symbol(
            "_ZN6mcr_rt10checkpoint5write17h0123456789abcdefE"
        ));
        assert!(is_rust_symbol("_RNvCs1234_6mcr_rt5write"));
        assert!(!is_rust_symbol("main"));
        assert!(!is_rust_symbol("process_command_ascii"));
        assert!(!is_rust_symbol("_ZN3foo3barEv"));
        assert!(!is_rust_symbol("_ZN3foo17h0123456789abcdeEv"));
    }
}
