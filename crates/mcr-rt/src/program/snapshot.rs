//! The start-up snapshot, taken when the main thread first reaches a
//! quiescent point: every global's bytes and every live heap object. It
//! tells state the program changed after start-up (which an update carries
//! over) from state start-up rebuilds anyway, and lets the new version pair
//! its own start-up objects with the old version's.

use crate::{heap, program::globals};
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
    /// Hash of its bytes when the snapshot was taken.
    #[serde(default)]
    pub hash: u64,
    /// Still holds exactly those bytes (filled in at checkpoint).
    #[serde(default)]
    pub unchanged: bool,
}

/// FNV-1a over 64-bit words: cheap enough to run over every start-up
/// object once at the end of start-up and once per checkpoint.
pub fn hash_bytes(addr: u64, size: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let words = size / 8;
    for i in 0..words {
        // SAFETY: inside a live object of `size` bytes.
        let w = unsafe { ((addr + i * 8) as *const u64).read_unaligned() };
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    for i in words * 8..size {
        // SAFETY: as above.
        let b = unsafe { *((addr + i) as *const u8) };
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct Snapshot {
    globals: HashMap<String, Vec<u8>>,
    objects: Vec<StartupObject>,
}

static SNAPSHOT: Mutex<Option<Snapshot>> = Mutex::new(None);

/// Live heap objects, optionally only those not inherited from an old
/// version, in the order start-up allocated them (see
/// `heap::startup_order`); objects it did not log come after, by address.
pub fn live_objects(only_new: bool) -> Vec<StartupObject> {
    let mut v = Vec::new();
    heap::for_each_live(|o| {
        if !only_new || !heap::is_inherited(o.addr) {
            v.push(StartupObject {
                addr: o.addr as u64,
                size: o.size as u64,
                site: o.site as u64,
                hash: 0,
                unchanged: false,
            });
        }
    });
    let turns = heap::startup_order::turns();
    v.sort_by_key(|o| {
        (
            turns.get(&(o.addr as usize)).copied().unwrap_or(usize::MAX),
            o.addr,
        )
    });
    v
}

pub fn take() {
    heap::startup_order::stop();
    let globals = globals::all()
        .map(|g| (g.name.to_string(), globals::bytes(&g).to_vec()))
        .collect();
    let mut objects = live_objects(true);
    for o in &mut objects {
        o.hash = hash_bytes(o.addr, o.size);
    }
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

/// Heap objects live at the end of start-up, each marked with whether it
/// still holds its start-up bytes (call with the program's threads parked).
pub fn objects() -> Vec<StartupObject> {
    let mut v = SNAPSHOT
        .lock()
        .unwrap()
        .as_ref()
        .map(|s| s.objects.clone())
        .unwrap_or_default();
    for o in &mut v {
        o.unchanged = heap::find(o.addr as usize)
            .is_some_and(|x| x.addr as u64 == o.addr && x.size as u64 == o.size)
            && hash_bytes(o.addr, o.size) == o.hash;
    }
    v
}
