//! Allocation sites in both versions: an old object names its old site
//! (by the old binary's descriptor address); the new version knows sites
//! by their key, which both versions compute the same way from the C
//! source. What a site means here is worked out once per site.

use crate::heap::Site;
use crate::old_version::checkpoint::{SavedSite, State};
use crate::program::sections;
use mcr_types::plan::Versions;
use mcr_types::TypeDef;
use std::collections::HashMap;

/// The old sites by their old descriptor address, and this binary's by key.
pub(super) struct SiteTable<'s> {
    pub(super) old: HashMap<u64, &'s SavedSite>,
    pub(super) new: HashMap<u64, &'static Site>,
}

/// What an old object's site means in this version.
#[derive(Clone, Copy)]
pub(super) struct SiteMeaning<'s> {
    /// The old site (`None`: the object came from uninstrumented code).
    pub(super) old: Option<&'s SavedSite>,
    /// The same site in this binary (null: none, the object stays untyped).
    pub(super) new: *const Site,
    /// Its type's name, the same in both versions.
    pub(super) ty: Option<&'s str>,
    pub(super) old_type: Option<&'s TypeDef>,
    pub(super) new_type: Option<&'s TypeDef>,
}

impl<'s> SiteMeaning<'s> {
    /// The type's name and both layouts, when both versions know it.
    pub(super) fn typed(&self) -> Option<(&'s str, &'s TypeDef, &'s TypeDef)> {
        Some((self.ty?, self.old_type?, self.new_type?))
    }
}

impl<'s> SiteTable<'s> {
    pub(super) fn of(state: &'s State) -> SiteTable<'s> {
        SiteTable {
            old: state.sites.iter().map(|s| (s.addr, s)).collect(),
            new: sections::sites().iter().map(|s| (s.key, s)).collect(),
        }
    }

    /// The old site an object allocated at `site` (old descriptor address) names.
    pub(super) fn old_site(&self, site: u64) -> Option<&'s SavedSite> {
        self.old.get(&site).copied()
    }

    /// This binary's descriptor for an old site, null if it has none.
    pub(super) fn new_site(&self, old: Option<&SavedSite>) -> *const Site {
        old.and_then(|s| self.new.get(&s.key))
            .map_or(std::ptr::null(), |s| *s as *const Site)
    }

    pub(super) fn meaning(&self, site: u64, v: &Versions<'s>) -> SiteMeaning<'s> {
        let old = self.old_site(site);
        let ty = old.and_then(|s| s.type_name.as_deref());
        SiteMeaning {
            old,
            new: self.new_site(old),
            ty,
            old_type: ty.and_then(|t| v.old_type(t)),
            new_type: ty.and_then(|t| v.new_type(t)),
        }
    }
}

/// An old site as `file:line` of the C source, for messages.
pub(super) fn site_text(s: Option<&SavedSite>, state: &State) -> String {
    let Some(s) = s else {
        return "(uninstrumented code)".into();
    };
    let id = format!("{:016x}", s.key);
    state
        .typemap
        .alloc_sites
        .iter()
        .find(|x| x.id == id)
        .map(|x| format!("{}:{}", x.file, x.line))
        .unwrap_or(id)
}
