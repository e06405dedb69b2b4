//! Rewriting the pointers of values already in their new layout: precise
//! slots through the type map, unions conservatively, and the words of a
//! typed value that are not pointers by type checked for hidden
//! references to moved objects. Also the in-place conversion of an object
//! that cannot move (carved, or pinned by a hidden reference).

use super::context::{Ctx, Move, Slots};
use super::TransferError;
use mcr_types::TypeDef;

impl<'a> Ctx<'a> {
    /// Words of a typed value that are not pointers by type (integers, char
    /// arrays) but hold the address of an object that moved: one whose
    /// layout did not change is followed (as in untyped memory); one whose
    /// layout changed cannot be, and the update is refused. Objects such
    /// words hold were pinned beforehand (`pinned`), so this only fires
    /// for those that could not be (start-up objects paired elsewhere).
    pub(super) fn check_hidden_references(
        &self,
        addr: u64,
        len: u64,
        size: u64,
        slots: &Slots,
        ty: &str,
    ) -> Result<(), TransferError> {
        let mut w = addr.next_multiple_of(8);
        while w + 8 <= addr + len {
            // SAFETY: an aligned word inside a live typed value.
            let p = unsafe { (w as *const u64).read() };
            let here = w;
            w += 8;
            let Some(m) = self.move_containing(p) else {
                continue;
            };
            let off = (here - addr) % size;
            if slots.precise.iter().any(|(o, _)| *o == off)
                || slots.unions.iter().any(|&(o, l)| off >= o && off < o + l)
            {
                continue;
            }
            if self.keeps_address(m, p) {
                continue;
            }
            if !m.same_layout {
                return Err(TransferError::MovedReferencedFromUntyped {
                    ty: m.ty.to_string(),
                    from_site: format!("a non-pointer field of `{ty}`"),
                    at: p - m.old,
                });
            }
            // SAFETY: as above.
            unsafe { (here as *mut u64).write(m.new + (p - m.old)) };
        }
        Ok(())
    }

    /// Converts the object at `addr` (`size` bytes: `count` old `ot`
    /// elements, then a tail kept as it is) to `count` new `nt` elements
    /// where it is, and records it as a [`Move`] to its own address (an
    /// object that cannot move: carved, or held by a hidden reference).
    /// Returns the old bytes.
    ///
    /// # Safety
    /// `[addr, addr + room)` must be live memory of this object, no other
    /// thread may use it, and the new size must fit in `room`.
    pub(super) unsafe fn convert_in_place(
        &mut self,
        addr: u64,
        size: u64,
        room: u64,
        tn: &'a str,
        (ot, nt): (&TypeDef, &TypeDef),
        count: u64,
    ) -> Result<Vec<u8>, TransferError> {
        let (os, ns) = (ot.size as usize, nt.size as usize);
        let (from, to) = (count as usize * os, count as usize * ns);
        let new_size = to + (size as usize - from);
        // SAFETY: per the caller's contract.
        let bytes = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, room as usize) };
        let old = bytes[..size as usize].to_vec();
        bytes[..new_size.max(size as usize)].fill(0);
        self.v
            .convert_elements(ot, nt, &old, bytes, count as usize, tn)?;
        bytes[to..new_size].copy_from_slice(&old[from..]);
        self.moves.push(Move {
            old: addr,
            old_size: size,
            new: addr,
            ty: tn,
            same_layout: false,
            in_place: true,
        });
        Ok(old)
    }

    /// Rewrites the pointers of `count` values of new type `ty` at `addr`.
    pub(super) fn fix_pointers(
        &mut self,
        addr: u64,
        ty: &str,
        count: u64,
    ) -> Result<u64, TransferError> {
        let slots = self.slots_of(ty);
        let size = self.v.new_type(ty).map(|t| t.size).unwrap_or(0).max(1);
        if !self.moves.is_empty() {
            self.check_hidden_references(addr, size * count, size, &slots, ty)?;
        }
        if slots.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        for e in 0..count {
            for &(off, len) in &slots.unions {
                let start = addr + e * size + off;
                for w in (start.next_multiple_of(8)..start + len.saturating_sub(7)).step_by(8) {
                    // SAFETY: an aligned word inside a union of a live value.
                    let p = unsafe { (w as *const u64).read() };
                    if p >= 4096 {
                        if let Some(q) = self.translate(p, "")? {
                            // SAFETY: as above.
                            unsafe { (w as *mut u64).write(q) };
                            n += 1;
                        }
                    }
                }
            }
            for (off, target) in &slots.precise {
                let at = (addr + e * size + off) as *mut u64;
                // SAFETY: `at` is a pointer field inside a live object or
                // global of type `ty`, per the type map.
                let p = unsafe { at.read_unaligned() };
                if let Some(q) = self.translate(p, target)? {
                    // SAFETY: as above.
                    unsafe { at.write_unaligned(q) };
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// Rewrites the old pointers of every typed value placing left.
pub(super) fn rewrite_typed(
    ctx: &mut Ctx,
    typed: &[super::place::TypedValue],
) -> Result<u64, TransferError> {
    let mut rewritten = 0;
    for t in typed {
        rewritten += ctx.fix_pointers(t.addr, t.ty, t.count)?;
    }
    Ok(rewritten)
}
