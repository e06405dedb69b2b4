//! Reading a gcc/clang command line: which words are inputs, which are
//! options (and which of those each pipeline step needs), and what the
//! invocation is asked to do.

use std::path::Path;

/// What an option is for, so each step gets only what concerns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Front end only (preprocessor: -D -I -include ...).
    Preproc,
    /// Dependency-file generation (-MD -MF -MT ...): front end only.
    Deps,
    /// Link step only (-l -L -Wl, -shared ...).
    Link,
    /// `-x LANG`.
    Lang,
    /// `-o FILE`.
    Output,
    /// `-c`, `-S`, `-E`.
    Stage,
    /// Everything else: every step.
    Common,
}

/// Source languages the driver distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lang {
    /// A C translation unit (`.c`, `-x c`): instrumented.
    C,
    /// Preprocessed C (`.i`, `-x cpp-output`): instrumented.
    PreprocessedC,
    /// Anything else: handed to clang untouched.
    Other,
}

#[derive(Debug, Clone)]
pub enum Item {
    /// An option and its separate argument, if any.
    Opt { words: Vec<String>, class: Class },
    Input {
        path: String,
        lang: Lang,
        explicit_x: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Preprocess,
    Assemble,
    Compile,
    Link,
    /// Queries (`--version`, `-print-*`), dependency-only runs, syntax
    /// checks, no inputs: clang answers.
    PassThrough,
}

#[derive(Debug, Clone)]
pub struct Cmd {
    pub items: Vec<Item>,
    pub mode: Mode,
    pub output: Option<String>,
    /// `--emit-typemap[=PATH]`.
    pub emit_typemap: Option<Option<String>>,
    pub debug: bool,
    /// gcov instrumentation (`--coverage`, `-fprofile-arcs`, `-ftest-coverage`).
    pub coverage: bool,
    pub shared: bool,
    pub relocatable: bool,
    pub emit_llvm: bool,
    pub has_md: bool,
    pub has_mf: bool,
    pub has_mt: bool,
}

/// Options whose value is the next word.
const SEPARATE: &[(&str, Class)] = &[
    ("-o", Class::Output),
    ("-x", Class::Lang),
    ("-D", Class::Preproc),
    ("-U", Class::Preproc),
    ("-I", Class::Preproc),
    ("-include", Class::Preproc),
    ("-imacros", Class::Preproc),
    ("-isystem", Class::Preproc),
    ("-iquote", Class::Preproc),
    ("-idirafter", Class::Preproc),
    ("-iprefix", Class::Preproc),
    ("-iwithprefix", Class::Preproc),
    ("-iwithprefixbefore", Class::Preproc),
    ("-isysroot", Class::Preproc),
    ("-include-pch", Class::Preproc),
    ("-iframework", Class::Preproc),
    ("-Xpreprocessor", Class::Preproc),
    ("-MF", Class::Deps),
    ("-MT", Class::Deps),
    ("-MQ", Class::Deps),
    ("-MJ", Class::Deps),
    ("-dependency-file", Class::Deps),
    ("-L", Class::Link),
    ("-l", Class::Link),
    ("-Xlinker", Class::Link),
    ("-T", Class::Link),
    ("-u", Class::Link),
    ("-z", Class::Link),
    ("-e", Class::Link),
    ("-Xclang", Class::Common),
    ("-Xassembler", Class::Common),
    ("-mllvm", Class::Common),
    ("-arch", Class::Common),
    ("-target", Class::Common),
    ("--target", Class::Common),
    ("-aux-info", Class::Common),
    ("--param", Class::Common),
    ("-Xanalyzer", Class::Common),
    ("-gcc-toolchain", Class::Common),
    ("--sysroot", Class::Common),
    ("-B", Class::Common),
    ("-dumpdir", Class::Common),
    ("-dumpbase", Class::Common),
    ("-serialize-diagnostics", Class::Common),
    ("-working-directory", Class::Common),
    ("-Xopenmp-target", Class::Common),
    ("-imultilib", Class::Preproc),
    ("-cxx-isystem", Class::Preproc),
];

/// Joined-value prefixes by class (`-DFOO`, `-I.`, `-lm`, `-Wl,...`).
const JOINED: &[(&str, Class)] = &[
    ("-D", Class::Preproc),
    ("-U", Class::Preproc),
    ("-I", Class::Preproc),
    ("-isystem", Class::Preproc),
    ("-iquote", Class::Preproc),
    ("-idirafter", Class::Preproc),
    ("-include", Class::Preproc),
    ("-imacros", Class::Preproc),
    ("-isysroot", Class::Preproc),
    ("--sysroot", Class::Common),
    ("-MF", Class::Deps),
    ("-MT", Class::Deps),
    ("-MQ", Class::Deps),
    ("-Wp,", Class::Preproc),
    ("-L", Class::Link),
    ("-l", Class::Link),
    ("-Wl,", Class::Link),
    ("-T", Class::Link),
    ("-o", Class::Output),
    ("-x", Class::Lang),
];

const PREPROC_FLAGS: &[&str] = &[
    "-nostdinc",
    "-nostdlibinc",
    "-nobuiltininc",
    "-undef",
    "-P",
    "-C",
    "-CC",
    "-H",
    "-trigraphs",
];
const DEPS_FLAGS: &[&str] = &["-MD", "-MMD", "-MP", "-MG", "-MV"];
const LINK_FLAGS: &[&str] = &[
    "-shared",
    "-static",
    "-static-libgcc",
    "-rdynamic",
    "-pie",
    "-no-pie",
    "-nostdlib",
    "-nostartfiles",
    "-nodefaultlibs",
    "-s",
    "-r",
    "-static-pie",
    "-shared-libgcc",
    "-Bstatic",
    "-Bdynamic",
    "-Bsymbolic",
];

fn lang_of(path: &str, x: Option<&str>) -> Lang {
    match x {
        Some("c") => return Lang::C,
        Some("cpp-output") => return Lang::PreprocessedC,
        Some("none") | None => {}
        Some(_) => return Lang::Other,
    }
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("c") => Lang::C,
        Some("i") => Lang::PreprocessedC,
        _ => Lang::Other,
    }
}

/// Expands `@file` response files (gcc quoting: '…', "…", backslash).
pub fn expand_response_files(args: &[String], depth: u32) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        if let Some(f) = a.strip_prefix('@') {
            if depth < 16 {
                if let Ok(text) = std::fs::read_to_string(f) {
                    out.extend(expand_response_files(&split_response(&text), depth + 1));
                    continue;
                }
            }
        }
        out.push(a.clone());
    }
    out
}

fn split_response(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    have = true;
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                have = true;
            }
            (None, c) if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            (None, c) => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

impl Cmd {
    pub fn parse(raw: &[String]) -> Cmd {
        let args = expand_response_files(raw, 0);
        let mut items = Vec::new();
        let mut x: Option<String> = None;
        let mut cmd = Cmd {
            items: Vec::new(),
            mode: Mode::Link,
            output: None,
            emit_typemap: None,
            debug: false,
            coverage: false,
            shared: false,
            relocatable: false,
            emit_llvm: false,
            has_md: false,
            has_mf: false,
            has_mt: false,
        };
        let (mut e, mut s, mut c, mut passthrough) = (false, false, false, false);
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            i += 1;
            if a == "--emit-typemap" {
                cmd.emit_typemap = Some(None);
                continue;
            }
            if let Some(p) = a.strip_prefix("--emit-typemap=") {
                cmd.emit_typemap = Some(Some(p.to_string()));
                continue;
            }
            if !a.starts_with('-') || a == "-" {
                let lang = if a == "-" {
                    Lang::Other
                } else {
                    lang_of(a, x.as_deref())
                };
                items.push(Item::Input {
                    path: a.clone(),
                    lang,
                    explicit_x: x.clone(),
                });
                continue;
            }
            if let Some(&(_, class)) = SEPARATE.iter().find(|(n, _)| n == a) {
                let mut words = vec![a.clone()];
                if i < args.len() {
                    words.push(args[i].clone());
                    i += 1;
                }
                match class {
                    Class::Output => cmd.output = words.get(1).cloned(),
                    Class::Lang => x = words.get(1).cloned().filter(|l| l != "none"),
                    _ => {}
                }
                if matches!(a.as_str(), "-MF" | "-dependency-file") {
                    cmd.has_mf = true;
                }
                if matches!(a.as_str(), "-MT" | "-MQ") {
                    cmd.has_mt = true;
                }
                if a == "-Xlinker" && words.get(1).is_some_and(|w| w == "-shared") {
                    cmd.shared = true;
                }
                items.push(Item::Opt { words, class });
                continue;
            }
            let class = if let Some(&(p, class)) = JOINED
                .iter()
                .find(|(p, _)| a.starts_with(p) && a.len() > p.len())
            {
                match class {
                    Class::Output => cmd.output = Some(a[p.len()..].to_string()),
                    Class::Lang => x = Some(a[p.len()..].to_string()).filter(|l| l != "none"),
                    Class::Deps if p == "-MF" => cmd.has_mf = true,
                    Class::Deps => cmd.has_mt = true,
                    _ => {}
                }
                class
            } else if PREPROC_FLAGS.contains(&a.as_str()) {
                Class::Preproc
            } else if DEPS_FLAGS.contains(&a.as_str()) {
                if matches!(a.as_str(), "-MD" | "-MMD") {
                    cmd.has_md = true;
                }
                Class::Deps
            } else if LINK_FLAGS.contains(&a.as_str()) {
                match a.as_str() {
                    "-shared" => cmd.shared = true,
                    "-r" => cmd.relocatable = true,
                    _ => {}
                }
                Class::Link
            } else {
                match a.as_str() {
                    "-E" => {
                        e = true;
                        Class::Stage
                    }
                    "-S" => {
                        s = true;
                        Class::Stage
                    }
                    "-c" => {
                        c = true;
                        Class::Stage
                    }
                    "-M" | "-MM" | "-fsyntax-only" | "-###" | "--version" | "-dumpversion"
                    | "-dumpmachine" | "--help" | "-help" | "-fdriver-only" => {
                        passthrough = true;
                        Class::Common
                    }
                    "-emit-llvm" => {
                        cmd.emit_llvm = true;
                        Class::Common
                    }
                    _ if a.starts_with("-print-")
                        || a.starts_with("--print-")
                        || a.starts_with("-dump") =>
                    {
                        passthrough = true;
                        Class::Common
                    }
                    "--coverage" | "-coverage" | "-fprofile-arcs" | "-ftest-coverage" => {
                        cmd.coverage = true;
                        Class::Common
                    }
                    _ if a.starts_with("-g") => {
                        cmd.debug = !(a == "-g0" || a.starts_with("-gno-") || a == "-gsplit-dwarf");
                        Class::Common
                    }
                    _ => Class::Common,
                }
            };
            items.push(Item::Opt {
                words: vec![a.clone()],
                class,
            });
        }
        let has_inputs = items.iter().any(|it| matches!(it, Item::Input { .. }));
        cmd.mode = if passthrough || !has_inputs {
            Mode::PassThrough
        } else if e {
            Mode::Preprocess
        } else if s {
            Mode::Assemble
        } else if c {
            Mode::Compile
        } else {
            Mode::Link
        };
        cmd.items = items;
        cmd
    }

    pub fn inputs(&self) -> impl Iterator<Item = (&str, &Lang)> {
        self.items.iter().filter_map(|it| match it {
            Item::Input { path, lang, .. } => Some((path.as_str(), lang)),
            _ => None,
        })
    }

    pub fn c_inputs(&self) -> Vec<&str> {
        self.inputs()
            .filter(|(_, l)| **l != Lang::Other)
            .map(|(p, _)| p)
            .collect()
    }

    /// Option words of the given classes, in order.
    pub fn opts(&self, keep: &[Class]) -> Vec<String> {
        let mut out = Vec::new();
        for it in &self.items {
            if let Item::Opt { words, class } = it {
                if keep.contains(class) {
                    out.extend(words.iter().cloned());
                }
            }
        }
        out
    }

    /// Whether the final step links an executable (the runtime goes in).
    pub fn links_executable(&self) -> bool {
        self.mode == Mode::Link && !self.shared && !self.relocatable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Cmd {
        Cmd::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn modes_and_inputs() {
        let c = p("-O2 -I inc -DX=1 -c a.c -o a.o -MD");
        assert_eq!(c.mode, Mode::Compile);
        assert_eq!(c.c_inputs(), vec!["a.c"]);
        assert_eq!(c.output.as_deref(), Some("a.o"));
        assert!(c.has_md && !c.has_mf);
        assert_eq!(c.opts(&[Class::Common]), vec!["-O2"]);
        assert_eq!(p("--version").mode, Mode::PassThrough);
        assert_eq!(p("-E a.c").mode, Mode::Preprocess);
        assert_eq!(p("-M a.c").mode, Mode::PassThrough);
        let l = p("a.c b.o -lm -o prog --emit-typemap");
        assert_eq!(l.mode, Mode::Link);
        assert!(l.links_executable());
        assert_eq!(l.emit_typemap, Some(None));
        assert!(!p("-shared -fPIC a.c -o x.so").links_executable());
        let x = p("-x c foo.txt -x none b.s");
        assert_eq!(x.c_inputs(), vec!["foo.txt"]);
        assert!(!p("-c a.c").debug && p("-g -c a.c").debug && !p("-g -g0 -c a.c").debug);
    }

    #[test]
    fn response_file_quoting() {
        assert_eq!(
            split_response("-DA='x y' \"-I a b\" c\\ d\n"),
            vec!["-DA=x y", "-I a b", "c d"]
        );
    }
}
