//! mcr-pass: everything mcr does to an LLVM module of one C translation
//! unit, run between clang's front end and its back end (docs/DESIGN.md
//! "Compile time"):
//!
//! - [`debuginfo`]: debug-info types -> `mcr_types` type definitions;
//! - [`wrappers`]: the unit's allocation wrappers, proven without mcr.toml;
//! - [`alloc_sites`]: allocation calls and the type each allocates;
//! - [`blocking_calls`]: calls the runtime must be able to park in;
//! - [`globals`]: globals and function statics;
//! - [`emit`]: descriptors and the type-map record, in their sections.
//!
//! The pass reads everything first and changes the module only once the
//! analysis has succeeded, so a failure leaves the module as it was.

pub mod alloc_sites;
pub mod blocking_calls;
pub mod carve_calls;
pub mod debuginfo;
pub mod emit;
pub mod globals;
mod ir;
pub mod paths;
pub mod wrappers;

pub use alloc_sites::{AllocKind, CarveKind, Carver, Carvers, Wrappers};
use inkwell::module::Module;
use ir::Ir;
use mcr_types::{AllocSite, TypeMap, Unit};
use thiserror::Error;

/// What the driver tells the pass.
#[derive(Debug, Clone, Default)]
pub struct PassConfig {
    /// User allocators (`mcr.toml` `[allocators]`) and the libc function
    /// each behaves like.
    pub wrappers: Wrappers,
    /// Pool and slab allocators, their free and release functions
    /// (`mcr.toml` `[allocators.NAME] kind = "pool" | "slab"`).
    pub carvers: Carvers,
    /// The unit's file as recorded in site keys and global names; by
    /// default the compile unit's file relative to its compile directory.
    pub unit_file: Option<String>,
    /// `mcr.toml` `[renames]`, recorded in the unit's type map.
    pub renames: std::collections::BTreeMap<String, String>,
    /// `mcr.toml` `[quiescent] functions`: the program's event loops.
    pub quiescent_functions: std::collections::BTreeSet<String>,
}

#[derive(Debug, Error)]
pub enum PassError {
    #[error("the module has no debug info (no DICompileUnit)")]
    NoDebugInfo,
    #[error("the instrumented module does not verify: {0}")]
    Verify(String),
}

/// The compile unit's source file relative to its compile directory
/// (`src/x.c`), stable when the same tree is built elsewhere.
pub fn unit_file(module: &Module) -> Option<String> {
    let ir = Ir::new(module.as_mut_ptr());
    let cu = *ir.named_md("llvm.dbg.cu").first()?;
    let f = cu.scope_file()?;
    Some(paths::relative_to(&f.file_name(), &f.file_dir()))
}

fn compile_dir(module: &Module) -> String {
    let ir = Ir::new(module.as_mut_ptr());
    ir.named_md("llvm.dbg.cu")
        .first()
        .and_then(|cu| cu.scope_file())
        .map(|f| f.file_dir())
        .unwrap_or_default()
}

/// Instruments one C translation unit in place and returns its type map.
pub fn instrument_module(module: &Module, cfg: &PassConfig) -> Result<TypeMap, PassError> {
    let ir = Ir::new(module.as_mut_ptr());
    let file = match &cfg.unit_file {
        Some(f) => f.clone(),
        None => unit_file(module).ok_or(PassError::NoDebugInfo)?,
    };
    let dir = compile_dir(module);
    let mut di = debuginfo::DiTypes::new(&ir, &dir);

    // Analysis (read-only).
    let globals = globals::collect(&ir, &mut di, &file);
    let found = wrappers::find(&ir, &cfg.wrappers);
    let sites = {
        let mut a = alloc_sites::Analyzer::new(&ir, &mut di);
        a.sites(&cfg.wrappers, &found, &cfg.carvers)
    };

    let mut map = TypeMap::new();
    map.renames = cfg.renames.clone();
    map.units.push(Unit {
        file: file.clone(),
        instrumented: true,
        reason: None,
    });
    map.types = std::mem::take(&mut di.defs);
    map.globals = globals.iter().map(|g| g.record.clone()).collect();
    map.alloc_sites = sites
        .iter()
        .map(|s| AllocSite {
            id: format!(
                "{:016x}",
                mcr_types::site_key(&file, &s.function, s.ordinal)
            ),
            file: file.clone(),
            line: s.line,
            function: s.function.clone(),
            ordinal: s.ordinal,
            allocator: s.allocator.clone(),
            ty: s.ty.clone(),
            count: s.count,
            rule: s.rule,
            reason: s.reason.clone(),
            carve: s.carve.map(|k| k.name().to_string()),
        })
        .collect();

    // Transformation.
    let mut em = emit::Emitter::new(&ir);
    for s in &sites {
        let d = em.site(s, &file);
        emit::rewrite_call(&ir, s, d);
    }
    for g in &globals {
        em.global(g);
    }
    let mut found: Vec<_> = found.into_iter().collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in found {
        if let Some(f) = ir.named_function(&name) {
            em.wrapper(f, kind);
        }
    }
    carve_calls::rewrite(&ir, &cfg.carvers);
    blocking_calls::rewrite(&ir);
    if blocking_calls::mark_declared_points(&ir, &cfg.quiescent_functions) > 0 {
        em.declared_points();
    }
    strip_alloc_tokens(&ir);
    em.typemap(&mcr_types::encode_unit(&map));
    em.finish();
    module
        .verify()
        .map_err(|e| PassError::Verify(e.to_string()))?;
    Ok(map)
}

/// For a unit the pass failed on: leaves the code as the front end made
/// it (minus the alloc-token labels, or clang's own AllocToken pass would
/// rewrite the calls) and records the unit as not instrumented.
pub fn mark_uninstrumented(module: &Module, file: &str, reason: &str) -> TypeMap {
    let ir = Ir::new(module.as_mut_ptr());
    strip_alloc_tokens(&ir);
    let mut map = TypeMap::new();
    map.units.push(Unit {
        file: file.to_string(),
        instrumented: false,
        reason: Some(reason.to_string()),
    });
    let mut em = emit::Emitter::new(&ir);
    em.typemap(&mcr_types::encode_unit(&map));
    em.finish();
    map
}

/// Removes the `sanitize_alloc_token` function attribute and the
/// `!alloc_token` call metadata the front end was asked to produce.
fn strip_alloc_tokens(ir: &Ir) {
    let kind = ir.md_kind("alloc_token");
    for f in ir.functions() {
        f.remove_enum_attr(u32::MAX, "sanitize_alloc_token");
        for i in f.instructions() {
            if i.is_call() && i.metadata(kind).is_some() {
                i.clear_metadata(kind);
            }
        }
    }
}

/// Drops debug info forced on for the analysis when the user did not ask
/// for `-g`.
pub fn strip_debug_info(module: &Module) {
    module.strip_debug_info();
}
