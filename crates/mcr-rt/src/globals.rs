//! The program's globals and function statics, from the `mcr_globals`
//! descriptors, and their snapshot at the end of start-up (to tell state
//! the program changed afterwards from state start-up rebuilds anyway).

use crate::sections::{self, GlobalDesc, GLOBAL_CONSTANT, GLOBAL_THREAD_LOCAL};
use std::collections::HashMap;
use std::sync::Mutex;

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

static SNAPSHOT: Mutex<Option<HashMap<String, Vec<u8>>>> = Mutex::new(None);

/// Copies every global once, when the main thread first reaches a
/// quiescent point.
pub fn take_startup_snapshot() {
    let snap = all().map(|g| (g.name.to_string(), bytes(&g).to_vec())).collect();
    *SNAPSHOT.lock().unwrap() = Some(snap);
}

/// The start-up value of a global, if start-up is over.
pub fn startup_value(name: &str) -> Option<Vec<u8>> {
    SNAPSHOT.lock().unwrap().as_ref()?.get(name).cloned()
}
