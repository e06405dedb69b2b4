//! The program's globals and function statics, from the `mcr_globals`
//! descriptors.

use crate::program::sections::{self, GlobalDesc, GLOBAL_CONSTANT, GLOBAL_THREAD_LOCAL};

/// A global this process can read and write.
pub struct GlobalVar {
    pub name: &'static str,
    pub type_name: &'static str,
    pub addr: usize,
    pub size: usize,
}

/// Writable, process-wide globals (thread-locals and constants excluded).
pub fn all() -> impl Iterator<Item = GlobalVar> {
    sections::globals().iter().filter_map(to_var)
}

fn to_var(d: &GlobalDesc) -> Option<GlobalVar> {
    if d.addr.is_null() || d.flags & (GLOBAL_THREAD_LOCAL | GLOBAL_CONSTANT) != 0 {
        return None;
    }
    Some(GlobalVar {
        name: sections::cstr(d.name),
        type_name: sections::cstr(d.type_name),
        addr: d.addr as usize,
        size: d.size as usize,
    })
}

/// The bytes of a global.
pub fn bytes(g: &GlobalVar) -> &'static [u8] {
    // SAFETY: the descriptor gives a live global of `size` bytes.
    unsafe { std::slice::from_raw_parts(g.addr as *const u8, g.size) }
}

/// A global's value as a checkpoint carries it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SavedGlobal {
    pub name: String,
    pub type_name: String,
    pub addr: u64,
    pub size: u64,
    /// Its bytes (hex in the state), decoded once when the state is read:
    /// the transfer looks at them in several passes.
    #[serde(with = "crate::base::hex::hex_bytes")]
    pub bytes: Vec<u8>,
    /// Equal to its value at the end of the old version's start-up.
    pub unchanged_since_startup: bool,
    /// Its value at the end of start-up, when it changed since (fields
    /// unchanged since start-up keep the new version's value).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::base::hex::hex_bytes_opt"
    )]
    pub startup_bytes: Option<Vec<u8>>,
}
