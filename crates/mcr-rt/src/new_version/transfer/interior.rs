//! Untyped heap memory naming a field, inside an object kept in place
//! (`pinned`) or poured into its new start-up counterpart (libevent's
//! lists name `&thread->notify_event` inside memcached's LIBEVENT_THREAD),
//! whose offset changes in the new layout. A library's own
//! memory (libevent's event lists) holds `&conn->event`; the program moves
//! `event` from byte 32 to byte 48 of `struct conn`. Such a word is
//! rewritten to the field's new place, as the conservative scan rewrites
//! an untyped word naming an old global or function: a 64-bit number that
//! equals exactly the address of a field of a live changed object by chance
//! is not a practical risk. `MCR_STRICT_CONSERVATIVE=1` refuses instead.
//! Words in typed memory (an integer or char buffer by type) are never
//! rewritten: those refuse, as before. A word naming byte 0 is read as the
//! object's own address, never as its first field's (a field that moves
//! away from offset 0 is not followed).

use super::context::{Ctx, Move};
use std::collections::HashMap;

impl Ctx<'_> {
    /// Where an untyped word naming `p`, inside the old extent of `m` (an
    /// object that moves to a new layout: a start-up object poured into its
    /// new counterpart), is to point now: the same field of the new copy.
    /// None when strict, or when that byte has no counterpart.
    pub(super) fn moved_field(&self, m: &Move<'_>, p: u64) -> Option<u64> {
        if !Rewrites::allowed() {
            return None;
        }
        let (ot, nt) = (self.v.old_type(m.ty)?, self.v.new_type(m.ty)?);
        let off = super::pinned::new_offset(self, ot, nt, m.old_size, p - m.old)?;
        Some(m.new + off)
    }
}

/// Words to rewrite once the pinned objects are converted: word address
/// -> the new value.
#[derive(Default)]
pub(super) struct Rewrites(HashMap<u64, u64>);

impl Rewrites {
    /// Whether such words may be rewritten at all.
    pub(super) fn allowed() -> bool {
        std::env::var_os("MCR_STRICT_CONSERVATIVE").is_none()
    }

    pub(super) fn add(&mut self, word: u64, value: u64) {
        self.0.insert(word, value);
    }

    /// Where each word is once the objects are placed: an untyped object
    /// poured into its new start-up counterpart keeps its offsets.
    pub(super) fn relocate(&mut self, ctx: &Ctx<'_>) {
        self.0 = self
            .0
            .iter()
            .map(|(&w, &v)| match ctx.move_containing(w) {
                Some(m) => (m.new + (w - m.old), v),
                None => (w, v),
            })
            .collect();
    }

    /// Whether the untyped scan of `transfer` is to leave the word at `w`
    /// alone (it is rewritten here).
    pub(super) fn covers(&self, w: u64) -> bool {
        self.0.contains_key(&w)
    }

    /// Writes every recorded word; returns how many.
    pub(super) fn apply(&self) -> u64 {
        let debug = std::env::var_os("MCR_DEBUG").is_some();
        for (&w, &v) in &self.0 {
            if debug {
                eprintln!("mcr-rt: untyped word at {w:#x} rewritten to the moved field at {v:#x}");
            }
            // SAFETY: `w` is an aligned word inside a live untyped heap
            // object of the inherited image, read there by `pinned::find`.
            unsafe { (w as *mut u64).write(v) };
        }
        self.0.len() as u64
    }
}
