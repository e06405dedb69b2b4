//! mcr-cc: a drop-in replacement for clang-22 that instruments C
//! translation units for live update (see docs/DESIGN.md "Compile time").
//!
//! Everything that is not compiling C (preprocessing, dependency-only
//! runs, assembly, C++, queries) is handed to clang-22 unchanged, so
//! `CC=mcr-cc ./configure` reaches the same conclusions as clang-22.

mod args;
mod compile;
mod config;
mod hooks;
mod runtime;
mod typemap;

use anyhow::{Context, Result};
use args::{Class, Cmd, Item, Lang, Mode};
use compile::{clang, run, ClangFailed, Unit};
use mcr_pass::PassConfig;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match real_main(argv) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if let Some(ClangFailed(code)) = e.downcast_ref::<ClangFailed>() {
                std::process::exit(*code);
            }
            eprintln!("mcr-cc: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn real_main(argv: Vec<String>) -> Result<i32> {
    if argv.first().map(|s| s.as_str()) == Some("--print-typemap") {
        let Some(bin) = argv.get(1) else {
            anyhow::bail!("usage: mcr-cc --print-typemap BINARY")
        };
        let map = typemap::read(Path::new(bin))?;
        print!("{}", map.to_toml().context("serializing the type map")?);
        return Ok(0);
    }
    let cmd = Cmd::parse(&argv);
    let c_inputs = cmd.c_inputs();
    if is_build_system_probe(&c_inputs) && std::env::var_os("MCR_INSTRUMENT_PROBES").is_none() {
        // A configure/meson probe asks what clang-22 would do; clang-22
        // answers it, so the conclusions are the same by construction and
        // the probe does not pay for instrumentation and the runtime link.
        return exec_clang(&without_ours(&argv));
    }
    match cmd.mode {
        Mode::PassThrough | Mode::Preprocess => exec_clang(&without_ours(&argv)),
        Mode::Link if c_inputs.is_empty() => {
            let mut a = without_ours(&argv);
            let tmp = tempdir()?;
            if cmd.links_executable() {
                a.extend(hook_objects(&cmd, tmp.path())?);
                a.extend(runtime::link_args()?);
            }
            let status = Command::new(clang())
                .args(&a)
                .status()
                .context("running clang-22")?;
            if status.success() {
                emit_linked_typemap(&cmd)?;
            }
            Ok(status.code().unwrap_or(1))
        }
        Mode::Compile | Mode::Assemble if c_inputs.is_empty() => exec_clang(&without_ours(&argv)),
        Mode::Compile | Mode::Assemble => compile_only(&cmd),
        Mode::Link => compile_and_link(&cmd),
    }
}

/// Test programs that build systems compile to learn about the compiler:
/// autoconf's `conftest.c`, meson's `testfile.c` under `meson-private/`.
fn is_build_system_probe(c_inputs: &[&str]) -> bool {
    !c_inputs.is_empty()
        && c_inputs.iter().all(|p| {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            name == "conftest.c" || (name == "testfile.c" && p.contains("meson-private"))
        })
}

/// The user's words minus mcr-cc's own options.
fn without_ours(argv: &[String]) -> Vec<String> {
    argv.iter()
        .filter(|a| !(a.as_str() == "--emit-typemap" || a.starts_with("--emit-typemap=")))
        .cloned()
        .collect()
}

fn exec_clang(args: &[String]) -> Result<i32> {
    let err = Command::new(clang()).args(args).exec();
    Err(err).context("running clang-22")
}

fn tempdir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("mcr-cc.")
        .tempdir()
        .context("creating a temporary directory")
}

fn pass_config() -> Result<PassConfig> {
    Ok(pass_config_of(config::load()?))
}

fn pass_config_of(project: config::Project) -> PassConfig {
    PassConfig {
        wrappers: project.wrappers,
        carvers: project.carvers,
        unit_file: None,
        renames: project.renames,
        quiescent_functions: project.quiescent_functions,
    }
}

/// The objects of the update hooks the project names (mcr.toml `[hooks]`,
/// `MCR_HOOKS`), compiled into `tmp` for an executable's link.
fn hook_objects(cmd: &Cmd, tmp: &Path) -> Result<Vec<String>> {
    let project = config::load()?;
    let mut h = hooks::sources(&project)?;
    let out = cmd.output.as_deref().unwrap_or("a.out");
    h.keep_for(out);
    if h.files.is_empty() {
        return Ok(Vec::new());
    }
    let mut cfg = pass_config_of(project);
    cfg.renames.extend(h.renames);
    hooks::compile(&h.files, &cfg, tmp)
}

fn stem(p: &str) -> String {
    Path::new(p)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("a")
        .to_string()
}

/// Dependency file clang would write for `-MD` without `-MF`: the output
/// with its extension replaced by `.d`, or `<stem>.d` in the cwd.
fn default_dep_file(output: Option<&str>, src: &str) -> String {
    match output {
        Some(o) => Path::new(o)
            .with_extension("d")
            .to_string_lossy()
            .into_owned(),
        None => format!("{}.d", stem(src)),
    }
}

/// `-c` / `-S` with at least one C input.
fn compile_only(cmd: &Cmd) -> Result<i32> {
    let c_inputs = cmd.c_inputs();
    let n_inputs = cmd.inputs().count();
    if cmd.output.is_some() && n_inputs > 1 {
        // clang's own error ("cannot specify -o when generating multiple output files").
        return exec_clang(&without_ours(&cmd_words(cmd)));
    }
    let assemble = cmd.mode == Mode::Assemble;
    let ext = match (assemble, cmd.emit_llvm) {
        (true, true) => "ll",
        (true, false) => "s",
        (false, true) => "bc",
        (false, false) => "o",
    };
    let cfg = pass_config()?;
    let tmp = tempdir()?;
    // Other inputs (assembly, C++) go to clang as they are, together.
    let others: Vec<&str> = cmd
        .inputs()
        .filter(|(_, l)| **l == Lang::Other)
        .map(|(p, _)| p)
        .collect();
    if !others.is_empty() {
        let mut c = Command::new(clang());
        c.args(words_without_inputs(cmd, &c_inputs));
        run(&mut c)?;
    }
    for (src, lang) in cmd.inputs().filter(|(_, l)| **l != Lang::Other) {
        let out = cmd
            .output
            .clone()
            .unwrap_or_else(|| format!("{}.{ext}", stem(src)));
        // clang names the -o file, else `<stem>.o` (also with -S).
        let dep_target = cmd
            .output
            .clone()
            .unwrap_or_else(|| format!("{}.o", stem(src)));
        let dep_file =
            (cmd.has_md && !cmd.has_mf).then(|| default_dep_file(cmd.output.as_deref(), src));
        let unit = Unit {
            src,
            lang,
            out: PathBuf::from(&out),
            stage: if assemble { "-S" } else { "-c" },
            dep_target,
            dep_file,
            quiet_unused: false,
        };
        let map = compile::compile_unit(cmd, &unit, &cfg, tmp.path())?;
        if let Some(p) = &cmd.emit_typemap {
            let path = p.clone().unwrap_or_else(|| format!("{out}.typemap.toml"));
            typemap::write_toml(&map, Path::new(&path))?;
        }
    }
    Ok(0)
}

/// Compile-and-link in one call: each C source to a temporary object,
/// then one clang link with the objects in the sources' places.
fn compile_and_link(cmd: &Cmd) -> Result<i32> {
    let cfg = pass_config()?;
    let tmp = tempdir()?;
    let mut link: Vec<String> = Vec::new();
    for (k, it) in cmd.items.iter().enumerate() {
        match it {
            Item::Input {
                path,
                lang: lang @ (Lang::C | Lang::PreprocessedC),
                ..
            } => {
                let obj = tmp.path().join(format!("{}-{k}.o", stem(path)));
                // As clang: with -o, `<output>.d` naming the output (each
                // source overwrites it); else `<stem>.d` naming `<stem>.o`.
                let dep_file = (cmd.has_md && !cmd.has_mf)
                    .then(|| default_dep_file(cmd.output.as_deref(), path));
                let unit = Unit {
                    src: path,
                    lang,
                    out: obj.clone(),
                    stage: "-c",
                    dep_target: cmd
                        .output
                        .clone()
                        .unwrap_or_else(|| format!("{}.o", stem(path))),
                    dep_file,
                    quiet_unused: true,
                };
                compile::compile_unit(cmd, &unit, &cfg, tmp.path())?;
                link.push(obj.to_string_lossy().into_owned());
            }
            Item::Input {
                path, explicit_x, ..
            } => match explicit_x {
                Some(x) => link.extend([
                    "-x".into(),
                    x.clone(),
                    path.clone(),
                    "-x".into(),
                    "none".into(),
                ]),
                None => link.push(path.clone()),
            },
            Item::Opt {
                class: Class::Lang, ..
            } => {}
            Item::Opt {
                class: Class::Deps, ..
            } => {}
            Item::Opt { words, .. } => link.extend(words.iter().cloned()),
        }
    }
    if cmd.links_executable() {
        link.extend(hook_objects(cmd, tmp.path())?);
        link.extend(runtime::link_args()?);
    }
    link.push("-Qunused-arguments".into());
    let mut c = Command::new(clang());
    c.args(&link);
    run(&mut c)?;
    emit_linked_typemap(cmd)?;
    Ok(0)
}

/// `--emit-typemap` after a link: the map embedded in the output.
fn emit_linked_typemap(cmd: &Cmd) -> Result<()> {
    let Some(p) = &cmd.emit_typemap else {
        return Ok(());
    };
    let out = cmd.output.clone().unwrap_or_else(|| "a.out".into());
    let map = typemap::read(Path::new(&out))?;
    let path = p.clone().unwrap_or_else(|| format!("{out}.typemap.toml"));
    typemap::write_toml(&map, Path::new(&path))
}

/// The command's words again (response files expanded).
fn cmd_words(cmd: &Cmd) -> Vec<String> {
    let mut v = Vec::new();
    for it in &cmd.items {
        match it {
            Item::Opt { words, .. } => v.extend(words.iter().cloned()),
            Item::Input { path, .. } => v.push(path.clone()),
        }
    }
    v
}

/// The command minus the given inputs (and -x options, re-added per input).
fn words_without_inputs(cmd: &Cmd, skip: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for it in &cmd.items {
        match it {
            Item::Opt {
                class: Class::Lang, ..
            } => {}
            Item::Opt { words, .. } => v.extend(words.iter().cloned()),
            Item::Input {
                path, explicit_x, ..
            } => {
                if skip.contains(&path.as_str()) {
                    continue;
                }
                match explicit_x {
                    Some(x) => v.extend([
                        "-x".into(),
                        x.clone(),
                        path.clone(),
                        "-x".into(),
                        "none".into(),
                    ]),
                    None => v.push(path.clone()),
                }
            }
        }
    }
    v
}
