//! User hooks of the new version (`mcr.h`: `MCR_TRANSFORM`,
//! `MCR_AFTER_TRANSFER`), run in the new process during the transfer, on
//! the main thread at its first quiescent point, every other thread parked.
//!
//! A transform hook is called once per value of its type found in the old
//! state (heap objects, globals, array elements, nested fields), after the
//! automatic rules filled the new value and every pointer of the new state
//! was rewritten, and before the old copies of moved objects are freed (so
//! what `old` points to is still readable). Afterwards every pointer field
//! of each value a hook wrote is checked; a pointer that points nowhere
//! valid fails the update (rollback). A hook that crashes kills the new
//! process: before each hook the old version is told which one runs, so
//! its rollback message names it.

use crate::heap;
use mcr_types::hooks::{HookDecl, HookKind, FN_OFFSET};
use mcr_types::plan::{pointer_slots, PlanError, Versions};
use mcr_types::{TypeDef, TypeKind};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

/// One hook of this binary and the address of its function.
#[derive(Clone)]
pub struct Hook {
    pub decl: HookDecl,
    pub func: usize,
}

/// This binary's hooks, in section order.
pub fn all() -> Result<Vec<Hook>, String> {
    let bytes = crate::program::sections::hook_bytes();
    let decls = mcr_types::hooks::decode(bytes).map_err(|e| e.to_string())?;
    Ok(decls
        .into_iter()
        .map(|decl| {
            // SAFETY: the function pointer of a record inside the loaded,
            // relocated section (its offset comes from the decoder).
            let func = unsafe {
                (bytes.as_ptr().add(decl.offset + FN_OFFSET) as *const usize).read_unaligned()
            };
            Hook { decl, func }
        })
        .collect())
}

thread_local! {
    /// Old pointer -> new pointer, while hooks run (`mcr_new_address`).
    static TRANSLATE: Cell<Option<*const (dyn Fn(u64) -> u64 + 'static)>> = const { Cell::new(None) };
}

/// The new address of what an old pointer points to; the pointer itself
/// outside hooks.
#[no_mangle]
pub extern "C" fn mcr_new_address(old: *const libc::c_void) -> *mut libc::c_void {
    let p = old as u64;
    match TRANSLATE.with(|t| t.get()) {
        // SAFETY: set only while `run_transforms` holds the closure alive.
        Some(f) => unsafe { (*f)(p) as *mut libc::c_void },
        None => old as *mut libc::c_void,
    }
}

/// A call to make: hook index, old value, new value.
pub struct Job {
    hook: usize,
    old: u64,
    new: u64,
}

/// Finds the values hooks must be called on, inside values being
/// transferred.
pub struct Planner {
    hooks: Vec<Hook>,
    /// New type name -> hook index (transform hooks).
    by_type: HashMap<String, usize>,
    contains: RefCell<HashMap<String, bool>>,
    pub jobs: Vec<Job>,
    /// Old bytes of values transferred in place or from a buffer that does
    /// not outlive the transfer (globals): kept until the hooks ran.
    copies: Vec<Box<[u128]>>,
}

impl Planner {
    pub fn new(v: &Versions, hooks: Vec<Hook>) -> Self {
        let by_type = hooks
            .iter()
            .enumerate()
            .filter(|(_, h)| h.decl.kind == HookKind::Transform)
            .map(|(i, h)| {
                let name = v
                    .new_type(&h.decl.new_type)
                    .map_or(h.decl.new_type.clone(), |t| t.name.clone());
                (name, i)
            })
            .collect();
        Planner {
            hooks,
            by_type,
            contains: RefCell::new(HashMap::new()),
            jobs: Vec::new(),
            copies: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Does a value of new type `t` hold a value some hook converts?
    pub fn contains_hooked(&self, v: &Versions, t: &TypeDef) -> bool {
        if self.by_type.is_empty() {
            return false;
        }
        if let Some(&b) = self.contains.borrow().get(&t.name) {
            return b;
        }
        self.contains.borrow_mut().insert(t.name.clone(), false);
        let b = self.by_type.contains_key(&t.name)
            || match t.kind {
                TypeKind::Struct => t.fields.iter().any(|f| {
                    f.bit_size.is_none()
                        && v.new_type(&f.ty)
                            .is_some_and(|ft| self.contains_hooked(v, ft))
                }),
                TypeKind::Array => t
                    .target
                    .as_deref()
                    .and_then(|e| v.new_type(e))
                    .is_some_and(|et| self.contains_hooked(v, et)),
                _ => false,
            };
        self.contains.borrow_mut().insert(t.name.clone(), b);
        b
    }

    /// Records the hook calls for `count` values of old type `ot` at `old`
    /// converted to new type `nt` at `new`. `old` must stay readable until
    /// the hooks ran.
    pub fn collect(
        &mut self,
        v: &Versions,
        ot: &TypeDef,
        nt: &TypeDef,
        old: u64,
        new: u64,
        count: u64,
    ) -> Result<(), PlanError> {
        if !self.contains_hooked(v, nt) {
            return Ok(());
        }
        for e in 0..count {
            self.collect_one(v, ot, nt, old + e * ot.size, new + e * nt.size, 0)?;
        }
        Ok(())
    }

    /// As `collect`, for old bytes that will not stay readable: they are
    /// copied first (aligned for the hook's loads).
    pub fn collect_copy(
        &mut self,
        v: &Versions,
        ot: &TypeDef,
        nt: &TypeDef,
        old: &[u8],
        new: u64,
        count: u64,
    ) -> Result<(), PlanError> {
        if !self.contains_hooked(v, nt) {
            return Ok(());
        }
        let mut copy = vec![0u128; old.len().div_ceil(16)].into_boxed_slice();
        // SAFETY: `copy` holds at least `old.len()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(old.as_ptr(), copy.as_mut_ptr() as *mut u8, old.len())
        };
        let at = copy.as_ptr() as u64;
        self.copies.push(copy);
        self.collect(v, ot, nt, at, new, count)
    }

    /// Nested values first, then the value itself (post-order): a hook
    /// sees values inside its own already converted.
    fn collect_one(
        &mut self,
        v: &Versions,
        ot: &TypeDef,
        nt: &TypeDef,
        old: u64,
        new: u64,
        depth: u32,
    ) -> Result<(), PlanError> {
        if depth > 16 || !self.contains_hooked(v, nt) {
            return Ok(());
        }
        match (ot.kind, nt.kind) {
            (TypeKind::Struct, TypeKind::Struct) => {
                for f in ot.fields.iter().filter(|f| f.bit_size.is_none()) {
                    let Some(nf) = v.new_field_for(nt, &ot.name, &f.name) else {
                        continue;
                    };
                    if let (Some(ft), Some(nft)) = (v.old_type(&f.ty), v.new_type(&nf.ty)) {
                        if ft.kind == nft.kind {
                            self.collect_one(
                                v,
                                ft,
                                nft,
                                old + f.offset,
                                new + nf.offset,
                                depth + 1,
                            )?;
                        }
                    }
                }
            }
            (TypeKind::Array, TypeKind::Array) => {
                let (Some(oe), Some(ne)) = (
                    ot.target.as_deref().and_then(|t| v.old_type(t)),
                    nt.target.as_deref().and_then(|t| v.new_type(t)),
                ) else {
                    return Ok(());
                };
                let n = ot.count.unwrap_or(0).min(nt.count.unwrap_or(0));
                for i in 0..n {
                    self.collect_one(v, oe, ne, old + i * oe.size, new + i * ne.size, depth + 1)?;
                }
            }
            _ => {}
        }
        if let Some(&hook) = self.by_type.get(&nt.name) {
            if v.hook_for(&ot.name)?.is_some() {
                self.jobs.push(Job { hook, old, new });
            }
        }
        Ok(())
    }
}

/// Where a pointer may point after a hook.
pub struct Validity<'c> {
    /// Old copies of moved objects (freed at the end of the transfer).
    pub is_old_copy: &'c dyn Fn(u64) -> bool,
}

/// Readable mappings of this process: (start, end, executable).
fn mappings() -> Vec<(u64, u64, bool)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (range, perms) = (w.next()?, w.next()?);
            let (a, b) = range.split_once('-')?;
            let p = perms.as_bytes();
            (p.first() == Some(&b'r')).then_some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
                p.get(2) == Some(&b'x'),
            ))
        })
        .collect()
}

/// The field path of byte `off` inside a value of new type `t`.
fn field_at(v: &Versions, t: &TypeDef, off: u64, depth: u32) -> String {
    if depth > 16 {
        return String::new();
    }
    match t.kind {
        TypeKind::Struct => {
            for f in &t.fields {
                if let Some(ft) = v.new_type(&f.ty) {
                    if off >= f.offset && off < f.offset + ft.size.max(1) {
                        return format!(
                            ".{}{}",
                            f.name,
                            field_at(v, ft, off - f.offset, depth + 1)
                        );
                    }
                }
            }
            String::new()
        }
        TypeKind::Array => match t.target.as_deref().and_then(|e| v.new_type(e)) {
            Some(et) if et.size > 0 => format!(
                "[{}]{}",
                off / et.size,
                field_at(v, et, off % et.size, depth + 1)
            ),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// Why pointer `p` (declared to point to `target`) is not valid, if it is not.
fn invalid(
    v: &Versions,
    p: u64,
    target: &str,
    maps: &[(u64, u64, bool)],
    freed: &HashSet<u64>,
    ok: &Validity,
) -> Option<&'static str> {
    if p == 0 {
        return None;
    }
    let (base, len) = heap::region();
    if p.wrapping_sub(base as u64) < len as u64 {
        let Some(o) = heap::find(p as usize) else {
            return Some("inside no live heap object");
        };
        if freed.contains(&(o.addr as u64)) {
            return Some("into memory a hook freed");
        }
        if (ok.is_old_copy)(p) {
            return Some(
                "into the old copy of an object that moved (translate it with mcr_new_address)",
            );
        }
        return None;
    }
    let func = v
        .new_type(target)
        .is_some_and(|t| t.kind == TypeKind::Function);
    match maps.iter().find(|m| p >= m.0 && p < m.1) {
        None => Some("to no mapped memory"),
        Some(m) if func && !m.2 => Some("to no code (a function pointer into data)"),
        Some(_) => None,
    }
}

/// Calls every transform hook job, telling the old version before each
/// hook function starts (`status`), then checks the pointers of every
/// value a hook wrote. Returns the number of calls.
pub fn run_transforms(
    planner: &mut Planner,
    v: &Versions,
    translate: &dyn Fn(u64) -> u64,
    ok: &Validity,
    status: &dyn Fn(&str),
) -> Result<u64, String> {
    if planner.jobs.is_empty() {
        return Ok(0);
    }
    let mut order: Vec<usize> = (0..planner.jobs.len()).collect();
    // Grouped by hook, in the order found inside each group.
    order.sort_by_key(|&i| planner.jobs[i].hook);
    // SAFETY: only the lifetime is erased; the pointer is cleared below,
    // before `translate` goes out of scope.
    let erased: *const (dyn Fn(u64) -> u64 + 'static) = unsafe {
        std::mem::transmute::<*const (dyn Fn(u64) -> u64 + '_), *const (dyn Fn(u64) -> u64 + 'static)>(
            translate,
        )
    };
    TRANSLATE.with(|t| t.set(Some(erased)));
    crate::heap::defer_frees(true);
    let mut current = usize::MAX;
    for &i in &order {
        let job = &planner.jobs[i];
        let h = &planner.hooks[job.hook];
        if job.hook != current {
            if current != usize::MAX {
                status("hook-done");
            }
            current = job.hook;
            status(&format!(
                "hook transform hook `{}` (for `{}`)",
                h.decl.function, h.decl.new_type
            ));
        }
        // SAFETY: the record's function has this type: MCR_TRANSFORM
        // checked it at compile time; `new` is a live value of the new
        // type, `old` a readable value of the declared old layout (checked
        // equal to the old version's before the update started).
        unsafe {
            let f: extern "C" fn(*mut libc::c_void, *const libc::c_void) =
                std::mem::transmute(h.func);
            f(job.new as *mut libc::c_void, job.old as *const libc::c_void);
        }
    }
    status("hook-done");
    crate::heap::defer_frees(false);
    TRANSLATE.with(|t| t.set(None));

    let freed: HashSet<u64> = crate::heap::deferred_frees()
        .iter()
        .map(|&p| p as u64)
        .collect();
    let maps = mappings();
    for job in &planner.jobs {
        let h = &planner.hooks[job.hook];
        let Some(nt) = v.new_type(&h.decl.new_type) else {
            continue;
        };
        let mut slots = Vec::new();
        let look = |n: &str| v.new_type(n).cloned();
        pointer_slots(&look, nt, 0, &mut slots, 0);
        for (off, target) in slots {
            // SAFETY: a pointer field of a live value of the new type.
            let p = unsafe { ((job.new + off) as *const u64).read_unaligned() };
            if let Some(why) = invalid(v, p, &target, &maps, &freed, ok) {
                return Err(format!(
                    "transform hook `{}` left `{}{}` (value at {:#x}) pointing {why}: {p:#x}",
                    h.decl.function,
                    nt.name,
                    field_at(v, nt, off, 0),
                    job.new
                ));
            }
        }
    }
    Ok(planner.jobs.len() as u64)
}

/// Runs every `MCR_AFTER_TRANSFER` hook, once each.
pub fn run_after_transfer(hooks: &[Hook], status: &dyn Fn(&str)) -> u64 {
    let mut n = 0;
    for h in hooks
        .iter()
        .filter(|h| h.decl.kind == HookKind::AfterTransfer)
    {
        status(&format!("hook after-transfer hook `{}`", h.decl.function));
        // SAFETY: MCR_AFTER_TRANSFER checked `void fn(void)` at compile time.
        unsafe {
            let f: extern "C" fn() = std::mem::transmute(h.func);
            f();
        }
        status("hook-done");
        n += 1;
    }
    n
}
