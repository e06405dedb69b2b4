//! The start-up snapshot, taken when the main thread first reaches a
//! quiescent point: every global's bytes and every live heap object. It
//! tells state the program changed after start-up (which an update carries
//! over) from state start-up rebuilds anyway, and lets the new version pair
//! its own start-up objects with the old version's.

use crate::{globals, heap};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// A heap object that existed at the end of start-up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StartupObject {
    pub addr: u64,
    pub size: u64,
    /// Address of its site descriptor (0: untyped).
    pub site: u64,
}

struct Snapshot {
    globals: HashMap<String, Vec<u8>>,
    objects: Vec<StartupObject>,
}

static SNAPSHOT: Mutex<Option<Snapshot>> = Mutex::new(None);

/// Live heap objects, optionally only those not inherited from an old version.
pub fn live_objects(only_new: bool) -> Vec<StartupObject> {
    let mut v = Vec::new();
    heap::for_each_live(|o| {
        if !only_new || !heap::is_inherited(o.addr) {
            v.push(StartupObject {
                addr: o.addr as u64,
                size: o.size as u64,
                site: o.site as u64,
            });
        }
    });
    v.sort_by_key(|o| o.addr);
    v
}

pub fn take() {
    let globals = globals::all()
        .map(|g| (g.name.to_string(), globals::bytes(&g).to_vec()))
        .collect();
    let objects = live_objects(true);
    *SNAPSHOT.lock().unwrap() = Some(Snapshot { globals, objects });
}

/// The start-up value of a global, if start-up is over.
pub fn global_value(name: &str) -> Option<Vec<u8>> {
    SNAPSHOT
        .lock()
        .unwrap()
        .as_ref()?
        .globals
        .get(name)
        .cloned()
}

/// Heap objects live at the end of start-up.
pub fn objects() -> Vec<StartupObject> {
    SNAPSHOT
        .lock()
        .unwrap()
        .as_ref()
        .map(|s| s.objects.clone())
        .unwrap_or_default()
}
