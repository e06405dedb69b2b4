//! The per-translation-unit pipeline (docs/DESIGN.md "Compile time"):
//! clang's front end with debug info and allocation tokens forced on ->
//! mcr-pass in this process -> clang's back end with the user's flags.

use crate::args::{Class, Cmd, Lang};
use anyhow::{Context as _, Result};
use inkwell::context::Context;
use inkwell::module::Module;
use mcr_pass::PassConfig;
use mcr_types::TypeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Exit status of a failed clang run, reported as ours.
#[derive(Debug)]
pub struct ClangFailed(pub i32);

impl std::fmt::Display for ClangFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "clang exited with status {}", self.0)
    }
}
impl std::error::Error for ClangFailed {}

pub fn clang() -> String {
    std::env::var("MCR_CLANG").unwrap_or_else(|_| "clang-22".into())
}

pub fn run(cmd: &mut Command) -> Result<()> {
    if std::env::var_os("MCR_VERBOSE").is_some() {
        eprintln!("mcr-cc: {:?}", cmd);
    }
    let st = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !st.success() {
        return Err(ClangFailed(st.code().unwrap_or(1)).into());
    }
    Ok(())
}

/// What one translation unit is turned into.
pub struct Unit<'a> {
    pub src: &'a str,
    pub lang: &'a Lang,
    /// Final output of the back end (`.o`, `.s`, `.ll`, `.bc`).
    pub out: PathBuf,
    /// `-c` (object), `-S` (assembly) for the back end.
    pub stage: &'static str,
    /// The object file name the user sees (dependency-file target).
    pub dep_target: String,
    /// Dependency file, when -MD/-MMD was given without -MF.
    pub dep_file: Option<String>,
    /// Whether unused-argument warnings of the front end are to be
    /// silenced (compile-and-link: clang itself would not warn).
    pub quiet_unused: bool,
}

/// Compiles one C unit through the pipeline; returns its type map.
pub fn compile_unit(cmd: &Cmd, u: &Unit, cfg: &PassConfig, tmp: &Path) -> Result<TypeMap> {
    let stem = Path::new(u.src)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("unit")
        .to_string();
    let fe_out = tmp.join(format!("{stem}.fe.bc"));
    let be_in = tmp.join(format!("{stem}.mcr.bc"));

    // 1. Front end: the user's flags minus stage/output/link ones; deps
    //    generated here, naming the real source and object.
    let mut fe = Command::new(clang());
    fe.args(cmd.opts(&[Class::Common, Class::Preproc, Class::Deps]));
    if cmd.has_md {
        if let Some(df) = &u.dep_file {
            fe.args(["-MF", df]);
        }
        if !cmd.has_mt {
            fe.args(["-MQ", &u.dep_target]);
        }
    }
    if u.quiet_unused {
        fe.arg("-Qunused-arguments");
    }
    if let Some(dir) = crate::runtime::include_dir() {
        fe.arg("-idirafter").arg(dir);
    }
    if cmd.coverage {
        // The front end names the gcov files after its own output (our
        // temporary): name them after the real object, as clang would.
        let obj = std::path::absolute(&u.out).unwrap_or_else(|_| u.out.clone());
        fe.args([
            "-Xclang",
            &format!(
                "-coverage-notes-file={}",
                obj.with_extension("gcno").display()
            ),
        ]);
        fe.args([
            "-Xclang",
            &format!(
                "-coverage-data-file={}",
                obj.with_extension("gcda").display()
            ),
        ]);
    }
    fe.args([
        "-g",
        "-fsanitize=alloc-token",
        "-fsanitize-alloc-token-extended",
        "-Xclang",
        "-disable-llvm-passes",
    ]);
    fe.args([
        "-emit-llvm",
        "-c",
        "-x",
        if *u.lang == Lang::PreprocessedC {
            "cpp-output"
        } else {
            "c"
        },
        u.src,
    ]);
    fe.arg("-o").arg(&fe_out);
    run(&mut fe)?;

    // 2. The pass, in this process.
    // gcov needs the debug locations, so coverage builds keep them.
    let map = instrument(&fe_out, &be_in, cmd.debug || cmd.coverage, cfg, u.src)?;

    // 3. Back end with the user's code-generation flags.
    let mut be = Command::new(clang());
    be.args(cmd.opts(&[Class::Common]));
    be.args(["-Qunused-arguments", u.stage]);
    be.arg(&be_in).arg("-o").arg(&u.out);
    run(&mut be)?;
    Ok(map)
}

fn instrument(
    fe_out: &Path,
    be_in: &Path,
    keep_debug: bool,
    cfg: &PassConfig,
    src: &str,
) -> Result<TypeMap> {
    let ctx = Context::create();
    let load = || {
        Module::parse_bitcode_from_path(fe_out, &ctx)
            .map_err(|e| anyhow::anyhow!("{}: reading front-end bitcode: {}", src, e))
    };
    let module = load()?;
    let file = mcr_pass::unit_file(&module).unwrap_or_else(|| src.to_string());
    // A panic in the pass is reported as our warning, not as a backtrace.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Test hook: exercises the fallback without a unit that breaks the pass.
        if std::env::var_os("MCR_TEST_FAIL_PASS").is_some() {
            panic!("MCR_TEST_FAIL_PASS is set");
        }
        mcr_pass::instrument_module(&module, cfg)
    }));
    std::panic::set_hook(hook);
    let failure = match attempt {
        Ok(Ok(map)) => {
            finish(&module, keep_debug, be_in)?;
            return Ok(map);
        }
        Ok(Err(e)) => e.to_string(),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            format!("internal error: {msg}")
        }
    };
    if std::env::var("MCR_STRICT").is_ok_and(|v| v == "1") {
        anyhow::bail!("{src}: not instrumented: {failure}");
    }
    eprintln!("mcr-cc: warning: {src}: not instrumented: {failure}");
    drop(module);
    let module = load()?;
    let map = mcr_pass::mark_uninstrumented(&module, &file, &failure);
    finish(&module, keep_debug, be_in)?;
    Ok(map)
}

fn finish(module: &Module, keep_debug: bool, be_in: &Path) -> Result<()> {
    if !keep_debug {
        mcr_pass::strip_debug_info(module);
    }
    if !module.write_bitcode_to_path(be_in) {
        anyhow::bail!("writing {}", be_in.display());
    }
    Ok(())
}
