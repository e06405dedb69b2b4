//! The checkpoint: everything the new version needs from the old one, taken
//! while every program thread is parked. The heap travels as a memfd image
//! mapped copy-on-write at the same addresses (see `heap`); the rest (globals,
//! start-up log, symbol tables, the old type map) as JSON in a second memfd.

use crate::base::own_binary::{functions, libraries, own_image};
pub use crate::program::globals::SavedGlobal;
pub use crate::program::thread_locals::SavedThread;
use crate::{heap, interpose::startup_log, program::globals, program::sections};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
    pub startup_inputs: Vec<crate::interpose::startup_inputs::Input>,
    pub heap: heap::ImageInfo,
    /// Function symbols of the old binary at their run-time addresses.
    pub functions: Vec<(String, u64)>,
    /// Address ranges of the old binary's image.
    pub image: Vec<(u64, u64, u64)>,
    /// Heap objects live at the end of the old version's start-up.
    pub startup_objects: Vec<crate::program::snapshot::StartupObject>,
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
    pub earlier_images: Vec<crate::program::old_images::SavedImage>,
    /// Shared anonymous mappings handed over: see `shared_memory`.
    #[serde(default)]
    pub shared_mappings: Vec<crate::program::shared_memory::SharedMapping>,
    /// Descriptors parked threads wait on in a data call that are not
    /// start-up resources (client connections): see `held_connections`.
    #[serde(default)]
    pub held: Vec<crate::interpose::held_connections::Held>,
}

pub fn memfd(name: &str) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: memfd_create with a valid name.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(crate::base::private_fd::to_private_fd(unsafe {
        OwnedFd::from_raw_fd(fd)
    }))
}

/// Every global's bytes, with what start-up left in it.
pub fn saved_globals() -> Vec<SavedGlobal> {
    globals::all()
        .map(|g| {
            let b = globals::bytes(&g);
            let at_startup = crate::program::snapshot::global_value(g.name);
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
    let laps = crate::base::debug_laps::DebugLaps::start("checkpoint");
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
    let threads = crate::program::thread_locals::per_thread()
        .into_iter()
        .map(|(t, vars)| SavedThread {
            key: crate::program::thread_locals::key_of(t),
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
        startup_inputs: crate::interpose::startup_inputs::entries(),
        heap: info,
        functions: functions().to_vec(),
        image,
        startup_objects: crate::program::snapshot::objects(),
        libraries: libraries(),
        threads,
        carved: heap::carved::all()
            .iter()
            .map(|c| (c.addr as u64, c.size as u64, c.site as u64))
            .collect(),
        earlier_images: crate::program::old_images::saved(),
        shared_mappings: crate::program::shared_memory::open_for_handover()
            .map_err(std::io::Error::other)?,
        held: crate::interpose::held_connections::held(),
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
