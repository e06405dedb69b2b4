//! The checkpoint: everything the new version needs from the old one, taken
//! while every program thread is parked. The heap travels as a memfd image
//! mapped copy-on-write at the same addresses (see `heap`); the rest (globals,
//! start-up log, symbol tables, the old type map) as JSON in a second memfd.

use crate::{globals, heap, sections, startup_log};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Serialize, Deserialize)]
pub struct SavedGlobal {
    pub name: String,
    pub type_name: String,
    pub addr: u64,
    pub size: u64,
    /// Its bytes (hex in the state), decoded once when the state is read:
    /// the transfer looks at them in several passes.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
    /// Equal to its value at the end of the old version's start-up.
    pub unchanged_since_startup: bool,
    /// Its value at the end of start-up, when it changed since (fields
    /// unchanged since start-up keep the new version's value).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "hex_bytes_opt"
    )]
    pub startup_bytes: Option<Vec<u8>>,
}

/// Bytes as a hex string in the state's JSON.
pub(crate) mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(b))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let h: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        Ok(super::from_hex(&h))
    }
}

/// Optional bytes as a hex string in the state's JSON.
mod hex_bytes_opt {
    pub fn serialize<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => super::hex_bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let h: Option<std::borrow::Cow<'de, str>> = serde::Deserialize::deserialize(d)?;
        Ok(h.map(|h| super::from_hex(&h)))
    }
}

/// The thread-local variables of one program thread.
#[derive(Serialize, Deserialize)]
pub struct SavedThread {
    pub key: crate::thread_locals::ThreadKey,
    /// As globals; `addr` is the variable's address in that thread.
    pub vars: Vec<SavedGlobal>,
}

#[derive(Serialize, Deserialize)]
pub struct SavedSite {
    pub addr: u64,
    pub key: u64,
    pub type_name: Option<String>,
    pub elem_size: u64,
}

#[derive(Serialize, Deserialize)]
pub struct State {
    pub old_pid: u32,
    pub old_exe: String,
    pub typemap: mcr_types::TypeMap,
    pub sites: Vec<SavedSite>,
    pub globals: Vec<SavedGlobal>,
    pub startup_log: Vec<startup_log::Entry>,
    /// What the main thread's start-up got from random devices, the clocks
    /// and the host name: see `startup_inputs`.
    #[serde(default)]
    pub startup_inputs: Vec<crate::startup_inputs::Input>,
    pub heap: heap::ImageInfo,
    /// Function symbols of the old binary at their run-time addresses.
    pub functions: Vec<(String, u64)>,
    /// Address ranges of the old binary's image.
    pub image: Vec<(u64, u64, u64)>,
    /// Heap objects live at the end of the old version's start-up.
    pub startup_objects: Vec<crate::snapshot::StartupObject>,
    /// Shared libraries: (path, lowest address, end of their last mapping).
    pub libraries: Vec<(String, u64, u64)>,
    /// Thread-local variables of every program thread: their TLS blocks
    /// are not in the heap image.
    #[serde(default)]
    pub threads: Vec<SavedThread>,
    /// Objects carved by pool and slab allocators: (address, size, site
    /// descriptor address), by address.
    #[serde(default)]
    pub carved: Vec<(u64, u64, u64)>,
    /// Images of earlier versions this process keeps mapped (old state
    /// may point to their constants): see `old_images`.
    #[serde(default)]
    pub earlier_images: Vec<crate::old_images::SavedImage>,
    /// Shared anonymous mappings handed over: see `shared_memory`.
    #[serde(default)]
    pub shared_mappings: Vec<crate::shared_memory::SharedMapping>,
    /// Descriptors parked threads wait on in a data call that are not
    /// start-up resources (client connections): see `held_connections`.
    #[serde(default)]
    pub held: Vec<crate::held_connections::Held>,
}

pub fn to_hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize]);
        s.push(H[(x & 15) as usize]);
    }
    String::from_utf8(s).unwrap()
}

pub fn from_hex(s: &str) -> Vec<u8> {
    let v = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| v(p[0]) << 4 | v(p[1]))
        .collect()
}

pub fn memfd(name: &str) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: memfd_create with a valid name.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(crate::control::to_private_fd(unsafe {
        OwnedFd::from_raw_fd(fd)
    }))
}

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
    static F: crate::computed_once::ComputedOnce<Vec<(String, u64)>> =
        crate::computed_once::ComputedOnce::new();
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
        let high = crate::control::raw_to_private(low);
        crate::private_fds::keep(high);
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

/// Every global's bytes, with what start-up left in it.
pub fn saved_globals() -> Vec<SavedGlobal> {
    globals::all()
        .map(|g| {
            let b = globals::bytes(&g);
            let at_startup = crate::snapshot::global_value(g.name);
            let unchanged = at_startup.as_deref() == Some(b);
            SavedGlobal {
                name: g.name.into(),
                type_name: g.type_name.into(),
                addr: g.addr as u64,
                size: g.size as u64,
                bytes: b.to_vec(),
                unchanged_since_startup: unchanged,
                startup_bytes: at_startup.filter(|_| !unchanged),
            }
        })
        .collect()
}

/// What a checkpoint needs that can be made while the program still
/// serves: the heap image's memfd with its pages allocated and mapped (see
/// [`heap::prepare_image`]), and this version's decoded type map.
pub struct Prepared {
    heap_fd: OwnedFd,
    heap_map: Option<heap::PreparedImage>,
    typemap: mcr_types::TypeMap,
}

impl Prepared {
    /// The image's pages are prepared if possible; not fatal otherwise:
    /// the checkpoint then allocates as it writes.
    pub fn new(typemap: mcr_types::TypeMap) -> std::io::Result<Self> {
        let heap_fd = memfd("mcr-heap")?;
        let heap_map = heap::prepare_image(heap_fd.as_raw_fd()).ok();
        Ok(Self {
            heap_fd,
            heap_map,
            typemap,
        })
    }
}

/// Writes the checkpoint; returns the heap image's fd, the
/// state's fd, and the image's mapping, to drop once the new version is
/// started (unmapping 70 MB takes ~5 ms).
pub fn write(prepared: Prepared) -> std::io::Result<(OwnedFd, OwnedFd, heap::PreparedImage)> {
    let Prepared {
        heap_fd,
        heap_map,
        typemap,
    } = prepared;
    let laps = crate::debug_laps::DebugLaps::start("checkpoint");
    let (info, mapping) = heap::write_image(heap_fd.as_raw_fd(), heap_map)?;
    laps.lap("heap image");
    let sites = sections::sites()
        .iter()
        .map(|s| SavedSite {
            addr: s as *const _ as u64,
            key: s.key,
            type_name: (!s.type_name.is_null()).then(|| sections::cstr(s.type_name).to_string()),
            elem_size: s.elem_size,
        })
        .collect();
    laps.lap("sites");
    let globals = saved_globals();
    laps.lap("globals");
    let threads = crate::thread_locals::per_thread()
        .into_iter()
        .map(|(t, vars)| SavedThread {
            key: crate::thread_locals::key_of(t),
            vars: vars
                .iter()
                .map(|i| {
                    // SAFETY: the TLS of a live program thread, which is
                    // parked and cannot exit while the checkpoint is taken.
                    let b = unsafe { std::slice::from_raw_parts(i.addr as *const u8, i.var.size) };
                    SavedGlobal {
                        name: i.var.name.into(),
                        type_name: i.var.type_name.into(),
                        addr: i.addr as u64,
                        size: i.var.size as u64,
                        bytes: b.to_vec(),
                        unchanged_since_startup: false,
                        startup_bytes: None,
                    }
                })
                .collect(),
        })
        .collect();
    let (_, image) = own_image();
    let state = State {
        // SAFETY: getpid has no preconditions.
        old_pid: unsafe { libc::getpid() } as u32,
        old_exe: std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        typemap,
        sites,
        globals,
        startup_log: startup_log::entries(),
        startup_inputs: crate::startup_inputs::entries(),
        heap: info,
        functions: functions().to_vec(),
        image,
        startup_objects: crate::snapshot::objects(),
        libraries: libraries(),
        threads,
        carved: heap::carved::all()
            .iter()
            .map(|c| (c.addr as u64, c.size as u64, c.site as u64))
            .collect(),
        earlier_images: crate::old_images::saved(),
        shared_mappings: crate::shared_memory::open_for_handover()
            .map_err(std::io::Error::other)?,
        held: crate::held_connections::held(),
    };
    laps.lap("state");
    let state_fd = memfd("mcr-state")?;
    let mut f = std::fs::File::from(state_fd.try_clone()?);
    let v = serde_json::to_vec(&state).map_err(std::io::Error::other)?;
    laps.lap(&format!("json {} bytes", v.len()));
    f.write_all(&v)?;
    laps.lap("written");
    Ok((heap_fd, state_fd, mapping))
}

/// Reads the state back in the new process.
pub fn read(fd: i32) -> std::io::Result<State> {
    // SAFETY: the fd was handed to us by the old version for this purpose.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.rewind()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    serde_json::from_slice(&buf).map_err(std::io::Error::other)
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
