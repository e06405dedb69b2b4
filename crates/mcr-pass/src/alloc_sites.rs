//! Finding allocation calls and inferring the C type each one allocates.
//!
//! Evidence, strongest first (see docs/DESIGN.md "Compile time"):
//! 1. clang's `!alloc_token !{!"<name>", i1 <has pointers>}`, built by the
//!    front end from a `sizeof` inside the size argument;
//! 2. where the result goes: the debug type of the receiving variable
//!    (`#dbg_declare` of the alloca it is stored to), of the struct field
//!    or global it is stored into, the enclosing function's return type,
//!    the callee's parameter type when passed on, the source element type
//!    of GEPs done on it.
//!
//! The two are reconciled by structure (the receiving pointer may be a
//! prefix of the object, the token may name a part of it) and then
//! checked against the size argument: it must be `k * sizeof(T)`, or
//! `sizeof(T)` plus a flexible tail, or wholly unknown. Anything else
//! leaves the site untyped (`Rule::Conflict`), because the runtime treats
//! a typed object's bytes as exactly `T`s: a wrong type is worse than none.

use crate::debuginfo::{ops, DiTypes};
use crate::ir::{Ir, Md, Ty, Val};
use inkwell::llvm_sys::LLVMOpcode;
use mcr_types::Rule;
use std::collections::{HashMap, HashSet};

/// The libc allocators the runtime has typed entry points for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocKind {
    Malloc,
    Calloc,
    Realloc,
    ReallocArray,
    Strdup,
    Strndup,
    PosixMemalign,
    AlignedAlloc,
    Memalign,
    Valloc,
}

impl AllocKind {
    pub fn from_name(n: &str) -> Option<AllocKind> {
        use AllocKind::*;
        Some(match n {
            "malloc" => Malloc,
            "calloc" => Calloc,
            "realloc" => Realloc,
            "reallocarray" => ReallocArray,
            "strdup" => Strdup,
            "strndup" => Strndup,
            "posix_memalign" => PosixMemalign,
            "aligned_alloc" => AlignedAlloc,
            "memalign" => Memalign,
            "valloc" => Valloc,
            _ => return None,
        })
    }

    /// The runtime's typed entry point (ABI.md).
    pub fn entry(self) -> &'static str {
        use AllocKind::*;
        match self {
            Malloc => "__mcr_malloc",
            Calloc => "__mcr_calloc",
            Realloc => "__mcr_realloc",
            ReallocArray => "__mcr_reallocarray",
            Strdup => "__mcr_strdup",
            Strndup => "__mcr_strndup",
            PosixMemalign => "__mcr_posix_memalign",
            AlignedAlloc => "__mcr_aligned_alloc",
            Memalign => "__mcr_memalign",
            Valloc => "__mcr_valloc",
        }
    }

    /// Parameter shapes of the libc function: `p` pointer, `i` integer.
    /// A call that does not match (a configure probe declaring `char
    /// malloc();`) is left alone.
    pub fn params(self) -> &'static str {
        use AllocKind::*;
        match self {
            Malloc | Valloc => "i",
            Calloc | AlignedAlloc | Memalign => "ii",
            Realloc | Strndup => "pi",
            ReallocArray => "pii",
            Strdup => "p",
            PosixMemalign => "pii",
        }
    }

    /// Return shape: `p` pointer, `i` int.
    pub fn returns(self) -> char {
        if self == AllocKind::PosixMemalign {
            'i'
        } else {
            'p'
        }
    }

    /// Arguments whose product is the allocation size.
    pub fn size_args(self) -> &'static [u32] {
        use AllocKind::*;
        match self {
            Malloc | Valloc => &[0],
            Calloc => &[0, 1],
            Realloc | AlignedAlloc | Memalign => &[1],
            ReallocArray => &[1, 2],
            PosixMemalign => &[2],
            Strdup | Strndup => &[],
        }
    }
}

/// libc functions declared `__attribute_malloc__` that return objects
/// which are not plain allocations of the pointee type.
const NOT_ALLOCATORS: &[&str] = &[
    "fopen",
    "fopen64",
    "fdopen",
    "freopen",
    "freopen64",
    "fmemopen",
    "fopencookie",
    "popen",
    "tmpfile",
    "tmpfile64",
    "open_memstream",
    "open_wmemstream",
    "opendir",
    "fdopendir",
    "iconv_open",
    "newlocale",
    "duplocale",
];

/// How a site's call is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Replaced by the typed runtime entry point.
    Typed(AllocKind),
    /// A user allocator: kept, result passed to `__mcr_retag`.
    Retag,
    /// A pool or slab allocator: kept, result and size (argument
    /// `size_arg`) passed to `__mcr_carve`.
    Carve { size_arg: u32 },
    /// A function of another unit with a libc allocator's prototype: kept,
    /// result passed to `__mcr_retag_wrapped`, which retypes it only if
    /// that unit proved the callee a wrapper of this kind (`wrappers.rs`).
    RetagIfWrapper(AllocKind),
}

/// How a user allocator hands out memory it owns (mcr.toml
/// `[allocators.NAME] kind = ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CarveKind {
    /// Objects live until their pool is destroyed or reset (nginx's
    /// `ngx_palloc`, APR pools): they die with the heap block holding them.
    Pool,
    /// Objects are freed one by one through a declared free function
    /// (memcached's `slabs_alloc`/`slabs_free`).
    Slab,
}

impl CarveKind {
    pub fn name(self) -> &'static str {
        match self {
            CarveKind::Pool => "pool",
            CarveKind::Slab => "slab",
        }
    }
}

/// A pool or slab allocator: its kind and which argument is the size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carver {
    pub kind: CarveKind,
    pub size_arg: u32,
}

/// The pool and slab allocators of mcr.toml, their free functions (the
/// object's address is argument `ptr_arg`) and pool release functions
/// (`ngx_reset_pool`: every object carved from the heap block the argument
/// points into dies).
#[derive(Clone, Debug, Default)]
pub struct Carvers {
    pub allocators: HashMap<String, Carver>,
    /// Free function -> index of the pointer argument.
    pub frees: HashMap<String, u32>,
    /// Release function -> index of the pool argument.
    pub releases: HashMap<String, u32>,
}

/// One allocation call site and what was inferred about it.
#[derive(Debug, Clone)]
pub struct Site {
    pub call: Val,
    pub function: String,
    pub ordinal: u32,
    pub line: u32,
    pub allocator: String,
    pub rewrite: Rewrite,
    pub ty: Option<String>,
    pub elem_size: u64,
    pub count: Option<u64>,
    pub rule: Rule,
    pub reason: Option<String>,
    /// Set for calls of a pool or slab allocator.
    pub carve: Option<CarveKind>,
}

/// What an allocator call looks like, decided from its callee.
struct Callee {
    name: String,
    rewrite: Rewrite,
    /// Size arguments (product), `None` when unknown.
    size_args: Option<Vec<u32>>,
    chars: bool,
    /// Argument through which the object is returned (posix_memalign).
    out_arg: Option<u32>,
    carve: Option<CarveKind>,
    /// A site only if the call's evidence types it: a wrapper the pass
    /// proved, or a candidate (`RetagIfWrapper`). An untyped call of one
    /// would only move the object from the wrapper's site to the caller's.
    typed_only: bool,
}

/// Wrappers named in `mcr.toml` and the libc allocator each behaves like.
pub type Wrappers = HashMap<String, AllocKind>;

fn shape_matches(call: Val, kind: AllocKind) -> bool {
    let fty = call.called_fn_type();
    let params = fty.param_types();
    let want = kind.params();
    if params.len() != want.len() || call.num_args() as usize != want.len() {
        return false;
    }
    let ret_ok = match kind.returns() {
        'p' => fty.return_type().is_pointer(),
        _ => fty.return_type().is_integer(),
    };
    ret_ok
        && params.iter().zip(want.chars()).all(|(t, c)| match c {
            'p' => t.is_pointer(),
            _ => t.is_integer() && t.int_width() == 64,
        })
}

fn classify(
    call: Val,
    wrappers: &Wrappers,
    proven: &Wrappers,
    carvers: &Carvers,
) -> Option<Callee> {
    let f = call.called_value()?;
    if !f.is_function() {
        return None;
    }
    let name = f.name();
    if name.starts_with("__mcr_") || name.starts_with("llvm.") {
        return None;
    }
    if let Some(c) = carvers.allocators.get(&name) {
        // The size must be a 64-bit integer argument (size_t) and the
        // result a pointer; anything else is another function of that name.
        let fty = call.called_fn_type();
        let size_ok = call
            .operand(c.size_arg)
            .filter(|_| c.size_arg < call.num_args())
            .is_some_and(|v| v.type_of().is_integer() && v.type_of().int_width() == 64);
        if !fty.return_type().is_pointer() || !size_ok {
            return None;
        }
        return Some(Callee {
            name,
            rewrite: Rewrite::Carve {
                size_arg: c.size_arg,
            },
            size_args: Some(vec![c.size_arg]),
            chars: false,
            out_arg: None,
            carve: Some(c.kind),
            typed_only: false,
        });
    }
    let declared = wrappers.get(&name).map(|&k| (k, false));
    if let Some((kind, typed_only)) = declared.or_else(|| proven.get(&name).map(|&k| (k, true))) {
        let fty = call.called_fn_type();
        if !fty.return_type().is_pointer() && kind.returns() == 'p' {
            return None;
        }
        let n = call.num_args();
        let sa: Vec<u32> = kind.size_args().to_vec();
        if sa.iter().any(|&i| i >= n) {
            return None;
        }
        return Some(Callee {
            name,
            rewrite: Rewrite::Retag,
            size_args: Some(sa),
            chars: matches!(kind, AllocKind::Strdup | AllocKind::Strndup),
            out_arg: (kind == AllocKind::PosixMemalign).then_some(0),
            carve: None,
            typed_only,
        });
    }
    if let Some(kind) = AllocKind::from_name(&name) {
        if !f.is_declaration() || !shape_matches(call, kind) {
            return None;
        }
        return Some(Callee {
            name,
            rewrite: Rewrite::Typed(kind),
            size_args: Some(kind.size_args().to_vec()),
            chars: matches!(kind, AllocKind::Strdup | AllocKind::Strndup),
            out_arg: (kind == AllocKind::PosixMemalign).then_some(0),
            carve: None,
            typed_only: false,
        });
    }
    if !call.called_fn_type().return_type().is_pointer() {
        return None;
    }
    // __attribute__((alloc_size(i[, j]))): LLVM packs (elem << 32 | num),
    // with num = 0xffffffff when absent.
    if let Some(packed) = f.enum_attr(u32::MAX, "allocsize") {
        let a = (packed >> 32) as u32;
        let b = (packed & 0xffff_ffff) as u32;
        let mut sa = vec![a];
        if b != u32::MAX {
            sa.push(b);
        }
        if sa.iter().all(|&i| i < call.num_args()) {
            return Some(Callee {
                name,
                rewrite: Rewrite::Retag,
                size_args: Some(sa),
                chars: false,
                out_arg: None,
                carve: None,
                typed_only: false,
            });
        }
    }
    if f.enum_attr(0, "noalias").is_some()
        && f.is_declaration()
        && !NOT_ALLOCATORS.contains(&name.as_str())
    {
        return Some(Callee {
            name,
            rewrite: Rewrite::Retag,
            size_args: None,
            chars: false,
            out_arg: None,
            carve: None,
            typed_only: false,
        });
    }
    // Another unit's function with a libc allocator's prototype may be a
    // wrapper that unit proves (`wrappers.rs`): typed from the evidence
    // here, retyped at run time only if it is.
    if f.is_declaration() && !NOT_ALLOCATORS.contains(&name.as_str()) {
        if let Some(kind) = [AllocKind::Malloc, AllocKind::Calloc, AllocKind::Realloc]
            .into_iter()
            .find(|&k| shape_matches(call, k))
        {
            return Some(Callee {
                name,
                rewrite: Rewrite::RetagIfWrapper(kind),
                size_args: Some(kind.size_args().to_vec()),
                chars: false,
                out_arg: None,
                carve: None,
                typed_only: true,
            });
        }
    }
    None
}

/// A size expression summarised as `c + (unknown multiple of g)`;
/// `g == 0` means the size is the constant `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeForm {
    pub c: i128,
    pub g: i128,
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl SizeForm {
    pub const OPAQUE: SizeForm = SizeForm { c: 0, g: 1 };
    pub fn konst(c: i128) -> Self {
        SizeForm { c, g: 0 }
    }
    fn plus(self, o: Self) -> Self {
        SizeForm {
            c: self.c.saturating_add(o.c),
            g: gcd(self.g, o.g),
        }
    }
    fn minus(self, o: Self) -> Self {
        SizeForm {
            c: self.c.saturating_sub(o.c),
            g: gcd(self.g, o.g),
        }
    }
    pub fn times(self, o: Self) -> Self {
        let g = gcd(
            gcd(self.c.saturating_mul(o.g), o.c.saturating_mul(self.g)),
            self.g.saturating_mul(o.g),
        );
        SizeForm {
            c: self.c.saturating_mul(o.c),
            g,
        }
    }
    /// Either value (phi, select, several stores to one variable).
    fn join(self, o: Self) -> Self {
        SizeForm {
            c: self.c,
            g: gcd(gcd(self.g, o.g), self.c.saturating_sub(o.c)),
        }
    }
}

/// How a size fits a type of `t` bytes (with an optional flexible tail
/// starting at byte `fo`).
#[derive(Debug, PartialEq, Eq)]
pub enum Fit {
    /// `count` elements of T (None: unknown count).
    Elements(Option<u64>),
    /// One T plus a flexible tail.
    WithTail,
    /// Nothing known about the size.
    Unknown,
    Mismatch(String),
}

/// Checks a size against `sizeof(T) == t`, flexible tail at `flex`.
pub fn fit(size: SizeForm, t: u64, flex: Option<u64>) -> Fit {
    let t = t as i128;
    if let Some(fo) = flex {
        // Arrays of a struct with a flexible member do not exist in C.
        if size.c >= fo as i128 && (size.g != 0 || size.c > 0) {
            return Fit::WithTail;
        }
    } else if size.g == 0 {
        if size.c > 0 && size.c % t == 0 {
            return Fit::Elements(Some((size.c / t) as u64));
        }
    } else if size.c % t == 0 && size.g % t == 0 {
        return Fit::Elements(None);
    }
    if size == SizeForm::OPAQUE {
        return Fit::Unknown;
    }
    let shown = match size.g {
        0 => format!("{}", size.c),
        g => format!("{} + k*{}", size.c, g),
    };
    Fit::Mismatch(format!("size {shown} is not a multiple of sizeof = {t}"))
}

/// One piece of receiver-side evidence.
#[derive(Clone, Debug)]
struct Ev {
    ty: String,
    rule: Rule,
}

fn rule_rank(r: Rule) -> u8 {
    match r {
        Rule::ReceiverVariable => 0,
        Rule::StoredField => 1,
        Rule::StoredGlobal => 2,
        Rule::ReturnType => 3,
        Rule::ArgumentType => 4,
        Rule::GepElement => 5,
        _ => 6,
    }
}

/// Per-function facts: which alloca each `#dbg_declare` describes.
struct FnFacts {
    declares: HashMap<Val, Md>,
}

pub struct Analyzer<'a, 'b> {
    ir: &'a Ir,
    pub di: &'b mut DiTypes<'a>,
    token_kind: u32,
    facts: FnFacts,
    /// `size_form` of each (value, depth) already summarised: a size
    /// built by many `len += ...` into one local would otherwise be walked
    /// once per path, exponentially (nginx's header filter: 280 s for one
    /// unit).
    size_forms: std::cell::RefCell<HashMap<(Val, u32), SizeForm>>,
}

impl<'a, 'b> Analyzer<'a, 'b> {
    pub fn new(ir: &'a Ir, di: &'b mut DiTypes<'a>) -> Self {
        let token_kind = ir.md_kind("alloc_token");
        Analyzer {
            ir,
            di,
            token_kind,
            size_forms: Default::default(),
            facts: FnFacts {
                declares: HashMap::new(),
            },
        }
    }

    /// Names every variable type of `f` (so the type map and the lookups
    /// below see them) and records its `#dbg_declare`s.
    fn load_function(&mut self, f: Val) {
        self.facts.declares.clear();
        if let Some(sp) = f.subprogram() {
            let t = sp.node_op(self.ir, ops::SP_TYPE);
            if let Some(t) = t {
                self.di.name(Some(t));
            }
        }
        for i in f.instructions() {
            for (v, var, is_declare) in i.dbg_records() {
                let t = var.node_op(self.ir, ops::VAR_TYPE);
                self.di.name(t);
                if let (Some(v), true) = (v, is_declare) {
                    self.facts.declares.insert(v, var);
                }
            }
        }
    }

    /// All allocation sites of the module, in function and instruction order.
    /// `proven`: the unit's wrappers `wrappers.rs` found (not in `wrappers`).
    pub fn sites(
        &mut self,
        wrappers: &Wrappers,
        proven: &Wrappers,
        carvers: &Carvers,
    ) -> Vec<Site> {
        let mut out = Vec::new();
        let defined: Vec<Val> = self
            .ir
            .functions()
            .into_iter()
            .filter(|f| !f.is_declaration() && !f.name().starts_with("__mcr_"))
            .collect();
        // Name every type of the unit first: a site's evidence may name a
        // type first seen in a later function.
        for &f in &defined {
            self.load_function(f);
        }
        for f in defined {
            self.load_function(f);
            let fname = f
                .subprogram()
                .and_then(|sp| sp.str_op(self.ir, ops::SP_NAME))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| f.name());
            let mut ordinal = 0u32;
            for i in f.instructions() {
                if !i.is_call() {
                    continue;
                }
                let Some(callee) = classify(i, wrappers, proven, carvers) else {
                    continue;
                };
                let mut site = Site {
                    call: i,
                    function: fname.clone(),
                    ordinal,
                    line: i.line(),
                    allocator: callee.name.clone(),
                    rewrite: callee.rewrite,
                    ty: None,
                    elem_size: 0,
                    count: None,
                    rule: Rule::NoEvidence,
                    reason: None,
                    carve: callee.carve,
                };
                self.infer(f, &callee, &mut site);
                if callee.typed_only && site.ty.is_none() {
                    continue;
                }
                ordinal += 1;
                out.push(site);
            }
        }
        out
    }

    fn infer(&mut self, f: Val, callee: &Callee, site: &mut Site) {
        let call = site.call;
        if callee.chars {
            self.di.ensure_char();
            site.ty = Some("char".into());
            site.elem_size = 1;
            site.rule = Rule::CharData;
            return;
        }
        // 1. The front end's token.
        let mut token_note = None;
        let token = call.metadata(self.token_kind).and_then(|v| {
            let md = v.as_md();
            let name = md.operands(self.ir).first().and_then(|o| match o {
                crate::ir::MdOp::Str(s) => Some(s.string(self.ir)),
                _ => None,
            })?;
            let r = self.di.resolve_token(&name);
            if r.is_none() {
                token_note = Some(format!("token `{name}` has no debug type here"));
            }
            // The front end falls back to the receiving pointer's type when
            // the size has no sizeof; a char buffer may hold anything.
            if r.as_deref().is_some_and(|t| self.di.is_char_name(t)) {
                token_note = Some(format!("token `{name}` is a byte buffer"));
                return None;
            }
            r
        });
        // 2. Where the pointer goes.
        let mut evs = Vec::new();
        let mut seen = HashSet::new();
        match callee.out_arg {
            Some(a) => {
                if let Some(p) = call.operand(a) {
                    if let Some((t, rule)) = self.object_type(p, 0) {
                        self.push_pointee(t, rule, &mut evs);
                    }
                }
            }
            None => self.uses_evidence(f, call, &mut evs, 0, &mut seen),
        }
        evs.sort_by_key(|e| rule_rank(e.rule));
        if std::env::var_os("MCR_DEBUG_SITES").is_some() {
            eprintln!(
                "mcr-pass: {}:{} token {:?} evidence {:?}",
                site.function, site.line, token, evs
            );
        }
        // Evidence must agree (up to prefix relations); keep the largest.
        let mut ev: Option<Ev> = None;
        for e in evs {
            match &ev {
                None => ev = Some(e),
                Some(cur) if cur.ty == e.ty || self.di.is_prefix(&e.ty, &cur.ty) => {}
                Some(cur) if self.di.is_prefix(&cur.ty, &e.ty) => {
                    ev = Some(Ev {
                        ty: e.ty,
                        rule: cur.rule,
                    })
                }
                Some(cur) => {
                    site.rule = Rule::Conflict;
                    site.reason = Some(format!(
                        "{} says `{}`, {} says `{}`",
                        rule_label(cur.rule),
                        cur.ty,
                        rule_label(e.rule),
                        e.ty
                    ));
                    return;
                }
            }
        }
        let (ty, rule) = match (token, ev) {
            (Some(t), Some(e)) => {
                if t == e.ty || self.di.is_prefix(&e.ty, &t) {
                    (t, Rule::AllocToken)
                } else if let Some(p) = self.void_pointer_of(&t, &e.ty) {
                    // `calloc(n, sizeof(void *))` into an `item **`: an
                    // array of pointers either way; `void *` claims less
                    // (each target object carries its own type anyway).
                    let rule = if p == t { Rule::AllocToken } else { e.rule };
                    (p, rule)
                } else if self.same_integer_layout(&t, &e.ty) {
                    // `calloc(n, sizeof(int))` into an `unsigned *`: the
                    // declared type says how the bits are read.
                    (e.ty, e.rule)
                } else if self.is_part_of(&t, &e.ty) {
                    (e.ty, e.rule)
                } else {
                    site.rule = Rule::Conflict;
                    site.reason = Some(format!(
                        "sizeof says `{t}`, {} says `{}`",
                        rule_label(e.rule),
                        e.ty
                    ));
                    return;
                }
            }
            (Some(t), None) => (t, Rule::AllocToken),
            (None, Some(e)) => (e.ty, e.rule),
            (None, None) => {
                site.rule = Rule::NoEvidence;
                site.reason = Some(
                    token_note
                        .unwrap_or_else(|| "no sizeof in the size and no typed receiver".into()),
                );
                return;
            }
        };
        let Some(t) = self.di.def(&ty).map(|d| (d.size, d.kind)) else {
            site.rule = Rule::NoEvidence;
            site.reason = Some(format!("`{ty}` has no definition in this unit"));
            return;
        };
        if t.0 == 0 || t.1 == mcr_types::TypeKind::Function {
            site.rule = Rule::NoEvidence;
            site.reason = Some(format!("`{ty}` has no size"));
            return;
        }
        // 3. The size.
        let fit = match &callee.size_args {
            None => Fit::Unknown,
            Some(args) => {
                let mut form = SizeForm::konst(1);
                for &a in args {
                    let v = call.operand(a).expect("size argument exists");
                    form = form.times(self.size_form(v, 0));
                }
                fit(form, t.0, self.di.flexible_tail(&ty).map(|x| x.0))
            }
        };
        match fit {
            Fit::Mismatch(why) => {
                site.rule = Rule::Conflict;
                site.reason = Some(format!("`{ty}`: {why}"));
            }
            other => {
                site.count = match other {
                    Fit::Elements(c) => c,
                    Fit::WithTail => Some(1),
                    _ => None,
                };
                if other == Fit::Unknown {
                    site.reason = Some("size not known at compile time".into());
                }
                site.ty = Some(ty);
                site.elem_size = t.0;
                site.rule = rule;
            }
        }
    }

    /// Of two pointer types one of which is `void *`: that one.
    fn void_pointer_of(&self, a: &str, b: &str) -> Option<String> {
        let is_ptr = |n: &str| {
            self.di
                .def(n)
                .is_some_and(|d| d.kind == mcr_types::TypeKind::Pointer)
        };
        if !is_ptr(a) || !is_ptr(b) {
            return None;
        }
        [a, b]
            .into_iter()
            .find(|n| *n == "void *")
            .map(String::from)
    }

    /// Two integer scalars of one size (`int` / `unsigned int`).
    fn same_integer_layout(&self, a: &str, b: &str) -> bool {
        use mcr_types::Encoding::{Signed, Unsigned};
        match (self.di.def(a), self.di.def(b)) {
            (Some(x), Some(y)) => {
                x.kind == mcr_types::TypeKind::Scalar
                    && y.kind == mcr_types::TypeKind::Scalar
                    && x.size == y.size
                    && matches!(x.encoding, Some(Signed | Unsigned))
                    && matches!(y.encoding, Some(Signed | Unsigned))
            }
            _ => false,
        }
    }

    /// `part` names a member (at any depth) or the flexible element of `whole`.
    fn is_part_of(&self, part: &str, whole: &str) -> bool {
        let mut stack = vec![whole.to_string()];
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            let Some(d) = self.di.def(&n) else { continue };
            for f in &d.fields {
                let c = self.di.canonical(&f.ty).unwrap_or(f.ty.clone());
                if c == part {
                    return true;
                }
                if let Some(a) = self.di.def(&c) {
                    if a.kind == mcr_types::TypeKind::Array {
                        if let Some(e) = a.target.as_deref().and_then(|t| self.di.canonical(t)) {
                            if e == part {
                                return true;
                            }
                            stack.push(e);
                        }
                    } else {
                        stack.push(c);
                    }
                }
            }
        }
        false
    }

    /// Adds the pointee of pointer type `t` as evidence unless generic.
    fn push_pointee(&mut self, t: Option<Md>, rule: Rule, evs: &mut Vec<Ev>) -> bool {
        match self.di.pointee(t) {
            Some(p) if !self.di.is_generic(p) => {
                let ty = self.di.name(p);
                evs.push(Ev { ty, rule });
                true
            }
            _ => false,
        }
    }

    /// Evidence from where `v` (a pointer to the new object) flows.
    fn uses_evidence(
        &mut self,
        f: Val,
        v: Val,
        evs: &mut Vec<Ev>,
        depth: u32,
        seen: &mut HashSet<Val>,
    ) {
        if depth > 3 || !seen.insert(v) {
            return;
        }
        for u in v.users() {
            match u.opcode() {
                Some(LLVMOpcode::LLVMStore) => {
                    if u.operand(0) != Some(v) {
                        continue;
                    }
                    let Some(dest) = u.operand(1) else { continue };
                    if let Some((t, rule)) = self.object_type(dest, 0) {
                        self.push_pointee(t, rule, evs);
                    }
                    // A variable (typed, `void *`, or a temporary) that
                    // holds nothing else: follow its loads (what they are
                    // cast to, stored into, passed to, returned as).
                    if dest.opcode() == Some(LLVMOpcode::LLVMAlloca) && only_value_stored(dest, v) {
                        for l in dest.users() {
                            if l.opcode() == Some(LLVMOpcode::LLVMLoad) {
                                self.uses_evidence(f, l, evs, depth + 1, seen);
                            }
                        }
                    }
                }
                Some(LLVMOpcode::LLVMRet) => {
                    let t = self.sp_types(f).first().copied().flatten();
                    self.push_pointee(t, Rule::ReturnType, evs);
                }
                Some(LLVMOpcode::LLVMCall) => {
                    let Some(callee) = u.called_value() else {
                        continue;
                    };
                    if !callee.is_function() || callee.is_declaration() {
                        continue;
                    }
                    let types = self.sp_types(callee);
                    for i in 0..u.num_args() {
                        if u.operand(i) == Some(v) {
                            let t = types.get(i as usize + 1).copied().flatten();
                            self.push_pointee(t, Rule::ArgumentType, evs);
                        }
                    }
                }
                Some(LLVMOpcode::LLVMGetElementPtr) => {
                    if u.operand(0) != Some(v) {
                        continue;
                    }
                    if let Some(name) = self.llvm_struct_to_di(u.gep_source_type()) {
                        evs.push(Ev {
                            ty: name,
                            rule: Rule::GepElement,
                        });
                    }
                }
                Some(
                    LLVMOpcode::LLVMBitCast
                    | LLVMOpcode::LLVMAddrSpaceCast
                    | LLVMOpcode::LLVMPHI
                    | LLVMOpcode::LLVMSelect,
                ) => self.uses_evidence(f, u, evs, depth + 1, seen),
                _ => {}
            }
        }
    }

    /// The DI types of a function's signature: return type first.
    fn sp_types(&self, f: Val) -> Vec<Option<Md>> {
        let Some(sp) = f.subprogram() else {
            return vec![];
        };
        let Some(st) = sp.node_op(self.ir, ops::SP_TYPE) else {
            return vec![];
        };
        let Some(types) = st.node_op(self.ir, ops::SUBROUTINE_TYPES) else {
            return vec![];
        };
        types
            .operands(self.ir)
            .into_iter()
            .map(|o| match o {
                crate::ir::MdOp::Node(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// `%struct.X` / `%union.X` -> the DI type of the same name and size.
    fn llvm_struct_to_di(&mut self, t: Ty) -> Option<String> {
        let n = t.struct_name()?;
        let cands = if let Some(x) = n.strip_prefix("struct.") {
            vec![format!("struct {x}"), x.to_string()]
        } else if let Some(x) = n.strip_prefix("union.") {
            vec![format!("union {x}"), x.to_string()]
        } else {
            return None;
        };
        let size = self.ir.abi_size(t);
        for c in cands {
            if let Some(d) = self.di.def(&c) {
                if matches!(
                    d.kind,
                    mcr_types::TypeKind::Struct | mcr_types::TypeKind::Union
                ) && d.size == size
                {
                    return Some(d.name.clone());
                }
            }
        }
        None
    }

    /// The DI type of the object `p` points to, and the rule that says so.
    fn object_type(&mut self, p: Val, depth: u32) -> Option<(Option<Md>, Rule)> {
        if depth > 8 {
            return None;
        }
        let ir = self.ir;
        if p.is_global_var() {
            let var = *ir.global_di_vars(p).first()?;
            return Some((var.node_op(ir, ops::VAR_TYPE), Rule::StoredGlobal));
        }
        if p.is_argument() {
            let f = p.param_parent();
            let idx = f.params().iter().position(|x| *x == p)?;
            let t = self.sp_types(f).get(idx + 1).copied().flatten();
            return Some((self.di.pointee(t)?, Rule::ArgumentType));
        }
        match p.opcode()? {
            LLVMOpcode::LLVMAlloca => {
                let var = self.facts.declares.get(&p)?;
                Some((var.node_op(ir, ops::VAR_TYPE), Rule::ReceiverVariable))
            }
            LLVMOpcode::LLVMLoad => {
                let (t, rule) = self.object_type(p.operand(0)?, depth + 1)?;
                let r = if rule == Rule::ReceiverVariable {
                    Rule::ReceiverVariable
                } else {
                    Rule::StoredField
                };
                Some((self.di.pointee(t)?, r))
            }
            LLVMOpcode::LLVMBitCast | LLVMOpcode::LLVMAddrSpaceCast => {
                self.object_type(p.operand(0)?, depth + 1)
            }
            LLVMOpcode::LLVMGetElementPtr => {
                let (base_t, _) = self.object_type(p.operand(0)?, depth + 1)?;
                let (off, want) = self.gep_offset(p)?;
                let bsize = self
                    .di
                    .strip(base_t)
                    .map(|m| m.size_bits() / 8)
                    .unwrap_or(0);
                let off = if bsize > 0 && off >= bsize {
                    off % bsize
                } else {
                    off
                };
                let t = self.di.sub_object(base_t, off, want)?;
                Some((t, Rule::StoredField))
            }
            LLVMOpcode::LLVMCall => {
                let callee = p.called_value()?;
                if !callee.is_function() {
                    return None;
                }
                let t = self.sp_types(callee).first().copied().flatten();
                Some((self.di.pointee(t)?, Rule::ReturnType))
            }
            _ => None,
        }
    }

    /// Byte offset of a GEP from its base (modulo unknown array steps) and
    /// the size of what it points at.
    fn gep_offset(&self, gep: Val) -> Option<(u64, u64)> {
        let ir = self.ir;
        let src = gep.gep_source_type();
        if !ir.is_sized(src) {
            return None;
        }
        let n = gep.num_operands();
        let mut off: i128 = 0;
        if let Some(c) = gep.operand(1).and_then(|v| v.const_int()) {
            off += c as i128 * ir.abi_size(src) as i128;
        }
        let mut cur = src;
        for i in 2..n {
            let idx = gep.operand(i)?;
            use inkwell::llvm_sys::LLVMTypeKind::*;
            match cur.kind() {
                LLVMStructTypeKind => {
                    let k = idx.const_int()? as u32;
                    off += ir.struct_offset(cur, k) as i128;
                    cur = *cur.struct_elements().get(k as usize)?;
                }
                LLVMArrayTypeKind | LLVMVectorTypeKind => {
                    let e = cur.element();
                    if let Some(k) = idx.const_int() {
                        off += k as i128 * ir.abi_size(e) as i128;
                    }
                    cur = e;
                }
                _ => return None,
            }
        }
        if off < 0 {
            return None;
        }
        Some((off as u64, ir.abi_size(cur)))
    }

    /// The size argument summarised (constants folded, variables followed
    /// through their stores).
    fn size_form(&self, v: Val, depth: u32) -> SizeForm {
        if let Some(c) = v.const_int() {
            return SizeForm::konst(c as i128);
        }
        if depth > 12 {
            return SizeForm::OPAQUE;
        }
        if let Some(&f) = self.size_forms.borrow().get(&(v, depth)) {
            return f;
        }
        let f = self.size_form_uncached(v, depth);
        self.size_forms.borrow_mut().insert((v, depth), f);
        f
    }

    fn size_form_uncached(&self, v: Val, depth: u32) -> SizeForm {
        let op = |i| {
            v.operand(i)
                .map(|x| self.size_form(x, depth + 1))
                .unwrap_or(SizeForm::OPAQUE)
        };
        match v.opcode() {
            Some(LLVMOpcode::LLVMAdd) => op(0).plus(op(1)),
            Some(LLVMOpcode::LLVMSub) => op(0).minus(op(1)),
            Some(LLVMOpcode::LLVMMul) => op(0).times(op(1)),
            Some(LLVMOpcode::LLVMShl) => match v.operand(1).and_then(|x| x.const_int()) {
                Some(k) if (0..64).contains(&k) => op(0).times(SizeForm::konst(1i128 << k)),
                _ => SizeForm::OPAQUE,
            },
            Some(LLVMOpcode::LLVMZExt | LLVMOpcode::LLVMSExt | LLVMOpcode::LLVMTrunc) => op(0),
            Some(LLVMOpcode::LLVMSelect) => op(1).join(op(2)),
            Some(LLVMOpcode::LLVMPHI) => {
                let n = v.num_operands();
                let mut acc: Option<SizeForm> = None;
                for i in 0..n {
                    let f = op(i);
                    acc = Some(acc.map_or(f, |a| a.join(f)));
                }
                acc.unwrap_or(SizeForm::OPAQUE)
            }
            Some(LLVMOpcode::LLVMLoad) => {
                let Some(a) = v.operand(0) else {
                    return SizeForm::OPAQUE;
                };
                if a.opcode() != Some(LLVMOpcode::LLVMAlloca) {
                    return SizeForm::OPAQUE;
                }
                // A local size variable: every value stored into it, as long
                // as its address does not escape.
                let mut acc: Option<SizeForm> = None;
                for u in a.users() {
                    match u.opcode() {
                        Some(LLVMOpcode::LLVMLoad) => {}
                        Some(LLVMOpcode::LLVMCall) if is_lifetime_marker(u) => {}
                        Some(LLVMOpcode::LLVMStore)
                            if u.operand(1) == Some(a) && u.operand(0) != Some(a) =>
                        {
                            let f = u
                                .operand(0)
                                .map(|x| self.size_form(x, depth + 1))
                                .unwrap_or(SizeForm::OPAQUE);
                            acc = Some(acc.map_or(f, |x| x.join(f)));
                        }
                        _ => return SizeForm::OPAQUE,
                    }
                }
                acc.unwrap_or(SizeForm::OPAQUE)
            }
            _ => SizeForm::OPAQUE,
        }
    }
}

/// Every store into the alloca stores `v` or a constant (`NULL`): its
/// loads then see `v` or nothing, so what they flow into is evidence
/// about `v`. (The analysis is flow-insensitive; a variable reused for
/// several objects says nothing.)
fn only_value_stored(a: Val, v: Val) -> bool {
    a.users().iter().all(|u| {
        u.opcode() != Some(LLVMOpcode::LLVMStore)
            || u.operand(1) != Some(a)
            || u.operand(0).is_some_and(|x| x == v || x.is_constant())
    })
}

/// `llvm.lifetime.start/end` (emitted by the front end at -O1 and up)
/// do not let an alloca's address escape.
fn is_lifetime_marker(call: Val) -> bool {
    call.called_value()
        .is_some_and(|f| f.is_function() && f.name().starts_with("llvm.lifetime."))
}

fn rule_label(r: Rule) -> &'static str {
    match r {
        Rule::ReceiverVariable => "the receiving variable",
        Rule::StoredField => "the field it is stored into",
        Rule::StoredGlobal => "the global it is stored into",
        Rule::ReturnType => "the return type",
        Rule::ArgumentType => "the parameter it is passed to",
        Rule::GepElement => "a GEP on it",
        _ => "evidence",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_forms_fit() {
        let k = SizeForm::konst;
        let n = SizeForm::OPAQUE;
        assert_eq!(fit(k(48), 16, None), Fit::Elements(Some(3)));
        assert!(matches!(fit(k(40), 16, None), Fit::Mismatch(_)));
        assert_eq!(fit(n.times(k(16)), 16, None), Fit::Elements(None));
        assert_eq!(fit(n, 16, None), Fit::Unknown);
        // sizeof(hdr) + len, no flexible member: header with payload.
        assert!(matches!(fit(k(16).plus(n), 16, None), Fit::Mismatch(_)));
        // sizeof(blob) + n * sizeof(item), flexible member at 4.
        assert_eq!(fit(k(4).plus(n.times(k(8))), 4, Some(4)), Fit::WithTail);
        assert_eq!(fit(k(104), 4, Some(4)), Fit::WithTail);
        // A variable holding 16 or 32.
        assert_eq!(fit(k(16).join(k(32)), 16, None), Fit::Elements(None));
        // n * 2 * 8 with t = 16.
        assert_eq!(
            fit(n.times(k(2)).times(k(8)), 16, None),
            Fit::Elements(None)
        );
    }
}
