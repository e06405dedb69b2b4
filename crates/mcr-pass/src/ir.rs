//! The LLVM C-API boundary: thin, safe wrappers over the raw `llvm-sys`
//! calls the pass needs and inkwell does not wrap (debug-info operands,
//! debug records, use lists, attributes by kind).
//!
//! Every `unsafe` block of the crate lives here. The invariant that makes
//! them sound is the same everywhere: a [`Val`], [`Md`] or [`Ty`] is only
//! ever built from a non-null handle that LLVM gave us for the module being
//! instrumented, and that module (and its context) outlives the pass run,
//! which borrows it for the whole of `instrument_module`.

use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::debuginfo::*;
use inkwell::llvm_sys::prelude::*;
use inkwell::llvm_sys::target::*;
use inkwell::llvm_sys::{LLVMDbgRecordKind, LLVMOpcode, LLVMTypeKind};
use std::ffi::{c_char, CStr};

/// A value (instruction, constant, global, argument) of the module.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Val(pub LLVMValueRef);

/// A metadata node of the module (debug info mostly).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Md(pub LLVMMetadataRef);

/// An IR type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ty(pub LLVMTypeRef);

/// The module and context handles every wrapper needs.
#[derive(Clone, Copy)]
pub struct Ir {
    pub m: LLVMModuleRef,
    pub ctx: LLVMContextRef,
    td: LLVMTargetDataRef,
}

fn opt_val(v: LLVMValueRef) -> Option<Val> {
    (!v.is_null()).then_some(Val(v))
}

fn opt_md(m: LLVMMetadataRef) -> Option<Md> {
    (!m.is_null()).then_some(Md(m))
}

/// Copies an LLVM-owned (ptr, len) string.
fn lossy(p: *const c_char, len: usize) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: LLVM returned `p` valid for `len` bytes, owned by the module.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

impl Ir {
    pub fn new(m: LLVMModuleRef) -> Ir {
        // SAFETY: `m` is a live module; its context and data layout live as long.
        let (ctx, td) = unsafe { (LLVMGetModuleContext(m), LLVMGetModuleDataLayout(m)) };
        Ir { m, ctx, td }
    }

    pub fn functions(&self) -> Vec<Val> {
        let mut out = Vec::new();
        // SAFETY: walking the module's function list with LLVM's own iterators.
        unsafe {
            let mut f = LLVMGetFirstFunction(self.m);
            while !f.is_null() {
                out.push(Val(f));
                f = LLVMGetNextFunction(f);
            }
        }
        out
    }

    pub fn globals(&self) -> Vec<Val> {
        let mut out = Vec::new();
        // SAFETY: walking the module's global list with LLVM's own iterators.
        unsafe {
            let mut g = LLVMGetFirstGlobal(self.m);
            while !g.is_null() {
                out.push(Val(g));
                g = LLVMGetNextGlobal(g);
            }
        }
        out
    }

    pub fn md_kind(&self, name: &str) -> u32 {
        // SAFETY: name pointer and length describe a live Rust string.
        unsafe {
            LLVMGetMDKindIDInContext(self.ctx, name.as_ptr() as *const c_char, name.len() as u32)
        }
    }

    pub fn enum_attr_kind(name: &str) -> u32 {
        // SAFETY: name pointer and length describe a live Rust string.
        unsafe { LLVMGetEnumAttributeKindForName(name.as_ptr() as *const c_char, name.len()) }
    }

    /// Operands of a named metadata (`!llvm.dbg.cu`), as metadata.
    pub fn named_md(&self, name: &str) -> Vec<Md> {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: `c` is NUL-terminated; the buffer is sized by LLVM's own count.
        unsafe {
            let n = LLVMGetNamedMetadataNumOperands(self.m, c.as_ptr());
            let mut buf = vec![std::ptr::null_mut(); n as usize];
            LLVMGetNamedMetadataOperands(self.m, c.as_ptr(), buf.as_mut_ptr());
            buf.into_iter()
                .filter(|v| !v.is_null())
                .map(|v| Md(LLVMValueAsMetadata(v)))
                .collect()
        }
    }

    pub fn abi_size(&self, t: Ty) -> u64 {
        // SAFETY: sized type of this module, module data layout.
        unsafe { LLVMABISizeOfType(self.td, t.0) }
    }

    pub fn is_sized(&self, t: Ty) -> bool {
        // SAFETY: plain query on a live type.
        unsafe { LLVMTypeIsSized(t.0) != 0 }
    }

    pub fn struct_offset(&self, t: Ty, idx: u32) -> u64 {
        // SAFETY: `t` is a struct type and `idx` was checked against its count.
        unsafe { LLVMOffsetOfElement(self.td, t.0, idx) }
    }

    pub fn ptr_ty(&self) -> Ty {
        // SAFETY: context is live.
        Ty(unsafe { LLVMPointerTypeInContext(self.ctx, 0) })
    }
    pub fn i64_ty(&self) -> Ty {
        // SAFETY: context is live.
        Ty(unsafe { LLVMInt64TypeInContext(self.ctx) })
    }
    pub fn i32_ty(&self) -> Ty {
        // SAFETY: context is live.
        Ty(unsafe { LLVMInt32TypeInContext(self.ctx) })
    }
    pub fn i8_ty(&self) -> Ty {
        // SAFETY: context is live.
        Ty(unsafe { LLVMInt8TypeInContext(self.ctx) })
    }
    pub fn void_ty(&self) -> Ty {
        // SAFETY: context is live.
        Ty(unsafe { LLVMVoidTypeInContext(self.ctx) })
    }
    pub fn fn_ty(&self, ret: Ty, params: &[Ty]) -> Ty {
        let mut p: Vec<LLVMTypeRef> = params.iter().map(|t| t.0).collect();
        // SAFETY: the parameter buffer lives across the call.
        Ty(unsafe { LLVMFunctionType(ret.0, p.as_mut_ptr(), p.len() as u32, 0) })
    }
    pub fn struct_ty(&self, elems: &[Ty]) -> Ty {
        let mut p: Vec<LLVMTypeRef> = elems.iter().map(|t| t.0).collect();
        // SAFETY: the element buffer lives across the call.
        Ty(unsafe { LLVMStructTypeInContext(self.ctx, p.as_mut_ptr(), p.len() as u32, 0) })
    }

    pub fn const_int(&self, t: Ty, v: u64) -> Val {
        // SAFETY: `t` is an integer type of this context.
        Val(unsafe { LLVMConstInt(t.0, v, 0) })
    }
    pub fn const_null(&self, t: Ty) -> Val {
        // SAFETY: `t` is a type of this context.
        Val(unsafe { LLVMConstNull(t.0) })
    }
    pub fn const_struct(&self, vals: &[Val]) -> Val {
        let mut p: Vec<LLVMValueRef> = vals.iter().map(|v| v.0).collect();
        // SAFETY: the value buffer lives across the call; all are constants.
        Val(unsafe { LLVMConstStructInContext(self.ctx, p.as_mut_ptr(), p.len() as u32, 0) })
    }
    pub fn const_array(&self, elem: Ty, vals: &[Val]) -> Val {
        let mut p: Vec<LLVMValueRef> = vals.iter().map(|v| v.0).collect();
        // SAFETY: the value buffer lives across the call; all are constants of `elem`.
        Val(unsafe { LLVMConstArray2(elem.0, p.as_mut_ptr(), p.len() as u64) })
    }
    /// A byte array constant holding exactly `bytes` (no terminator added).
    pub fn const_bytes(&self, bytes: &[u8]) -> Val {
        // SAFETY: pointer and length describe a live slice; LLVM copies it.
        Val(unsafe {
            LLVMConstStringInContext2(self.ctx, bytes.as_ptr() as *const c_char, bytes.len(), 1)
        })
    }

    /// Adds a global of type `t` with initializer `init`.
    pub fn add_global(&self, t: Ty, name: &str, init: Val) -> Val {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: `c` is NUL-terminated; `init` is a constant of type `t`.
        unsafe {
            let g = LLVMAddGlobal(self.m, t.0, c.as_ptr());
            LLVMSetInitializer(g, init.0);
            Val(g)
        }
    }

    pub fn named_global(&self, name: &str) -> Option<Val> {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: `c` is NUL-terminated.
        opt_val(unsafe { LLVMGetNamedGlobal(self.m, c.as_ptr()) })
    }

    pub fn named_function(&self, name: &str) -> Option<Val> {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: `c` is NUL-terminated.
        opt_val(unsafe { LLVMGetNamedFunction(self.m, c.as_ptr()) })
    }

    /// The function `name`, declared with type `t` if the module lacks it.
    pub fn get_or_declare(&self, name: &str, t: Ty) -> Val {
        if let Some(f) = self.named_function(name) {
            return f;
        }
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: `c` is NUL-terminated; `t` is a function type.
        Val(unsafe { LLVMAddFunction(self.m, c.as_ptr(), t.0) })
    }

    pub fn add_fn_attr(&self, f: Val, index: u32, kind_name: &str, value: u64) {
        let kind = Self::enum_attr_kind(kind_name);
        if kind == 0 {
            return;
        }
        // SAFETY: `f` is a function; the attribute is created in its context.
        unsafe {
            let a = LLVMCreateEnumAttribute(self.ctx, kind, value);
            LLVMAddAttributeAtIndex(f.0, index, a);
        }
    }

    /// Inserts `call fnty callee(args)` before `before` (or at the end of
    /// the block of `after_of` when given) carrying `loc` as debug location.
    pub fn build_call(
        &self,
        fnty: Ty,
        callee: Val,
        args: &[Val],
        before: Val,
        loc: Option<Md>,
    ) -> Val {
        let mut a: Vec<LLVMValueRef> = args.iter().map(|v| v.0).collect();
        // SAFETY: builder is created and disposed here; `before` is an
        // instruction in a function body; args match `fnty` (checked by callers).
        unsafe {
            let b = LLVMCreateBuilderInContext(self.ctx);
            LLVMPositionBuilderBefore(b, before.0);
            let call = LLVMBuildCall2(
                b,
                fnty.0,
                callee.0,
                a.as_mut_ptr(),
                a.len() as u32,
                c"".as_ptr(),
            );
            LLVMDisposeBuilder(b);
            if let Some(l) = loc {
                LLVMInstructionSetDebugLoc(call, l.0);
            }
            Val(call)
        }
    }

    /// Defines `ptr name() { return llvm.threadlocal.address(g); }`, with
    /// internal linkage: the address of the thread-local `g` in the calling
    /// thread, whatever TLS model the back end picks (local-exec in a PIE or
    /// a static executable, initial-exec or a `__tls_get_addr` call
    /// otherwise).
    pub fn define_tls_accessor(&self, name: &str, g: Val) -> Val {
        let p = self.ptr_ty();
        let fty = self.fn_ty(p, &[]);
        let c = std::ffi::CString::new(name).unwrap();
        let iname = "llvm.threadlocal.address";
        // SAFETY: `g` is a thread-local global of this module; the function,
        // its block and the builder are created and used here; the intrinsic
        // is overloaded on the pointer type, given as its one parameter type.
        unsafe {
            let f = LLVMAddFunction(self.m, c.as_ptr(), fty.0);
            LLVMSetLinkage(f, inkwell::llvm_sys::LLVMLinkage::LLVMInternalLinkage);
            let id = LLVMLookupIntrinsicID(iname.as_ptr() as *const c_char, iname.len());
            let mut over = [p.0];
            let intr = LLVMGetIntrinsicDeclaration(self.m, id, over.as_mut_ptr(), 1);
            let ity = LLVMIntrinsicGetType(self.ctx, id, over.as_mut_ptr(), 1);
            let bb = LLVMAppendBasicBlockInContext(self.ctx, f, c"entry".as_ptr());
            let b = LLVMCreateBuilderInContext(self.ctx);
            LLVMPositionBuilderAtEnd(b, bb);
            let mut args = [g.0];
            let call = LLVMBuildCall2(b, ity, intr, args.as_mut_ptr(), 1, c"".as_ptr());
            LLVMBuildRet(b, call);
            LLVMDisposeBuilder(b);
            let f = Val(f);
            self.add_fn_attr(f, u32::MAX, "nounwind", 0);
            self.add_fn_attr(f, u32::MAX, "noinline", 0);
            f
        }
    }

    /// `!dbg` attachment of a global variable: its DIGlobalVariable(s).
    pub fn global_di_vars(&self, g: Val) -> Vec<Md> {
        let dbg = self.md_kind("dbg");
        let mut out = Vec::new();
        // SAFETY: `g` is a global object; entries are freed with LLVM's disposer.
        unsafe {
            let mut n = 0usize;
            let entries = LLVMGlobalCopyAllMetadata(g.0, &mut n);
            if entries.is_null() {
                return out;
            }
            for i in 0..n {
                if LLVMValueMetadataEntriesGetKind(entries, i as u32) == dbg {
                    let gve = LLVMValueMetadataEntriesGetMetadata(entries, i as u32);
                    if !gve.is_null() {
                        let var = LLVMDIGlobalVariableExpressionGetVariable(gve);
                        if !var.is_null() {
                            out.push(Md(var));
                        }
                    }
                }
            }
            LLVMDisposeValueMetadataEntries(entries);
        }
        out
    }

    /// Replaces the appending array `name` (`llvm.used`,
    /// `llvm.compiler.used`) with its old members plus `add`.
    pub fn append_used(&self, name: &str, add: &[Val]) {
        if add.is_empty() {
            return;
        }
        let ptr = self.ptr_ty();
        let mut members: Vec<Val> = Vec::new();
        if let Some(old) = self.named_global(name) {
            if let Some(init) = old.initializer() {
                for i in 0..init.num_operands() {
                    if let Some(v) = init.operand(i) {
                        members.push(v);
                    }
                }
            }
            // SAFETY: the old array global is only referenced by name; it is
            // replaced by the new one created below.
            unsafe { LLVMDeleteGlobal(old.0) };
        }
        members.extend_from_slice(add);
        // SAFETY: array type of `ptr` with the exact member count.
        let arr_ty = Ty(unsafe { LLVMArrayType2(ptr.0, members.len() as u64) });
        let init = self.const_array(ptr, &members);
        let g = self.add_global(arr_ty, name, init);
        // SAFETY: `g` is the global just created.
        unsafe {
            LLVMSetLinkage(g.0, inkwell::llvm_sys::LLVMLinkage::LLVMAppendingLinkage);
            LLVMSetSection(g.0, c"llvm.metadata".as_ptr());
        }
    }
}

/// A copy of the module with a pass pipeline run on it (`"mem2reg"`): for
/// analyses that want SSA form without touching the module being
/// instrumented. Disposed when dropped.
pub struct ModuleCopy {
    m: LLVMModuleRef,
}

impl ModuleCopy {
    /// `None` if the pipeline does not parse or fails.
    pub fn new(ir: &Ir, passes: &str) -> Option<ModuleCopy> {
        let passes = std::ffi::CString::new(passes).ok()?;
        // SAFETY: cloning a live module gives a new module we own (disposed
        // in Drop); the pipeline runs on that copy only. A null target
        // machine is allowed: these passes need none.
        unsafe {
            let copy = ModuleCopy {
                m: LLVMCloneModule(ir.m),
            };
            // At -O0 every function is `optnone`, which passes skip.
            for f in copy.ir().functions() {
                f.remove_enum_attr(u32::MAX, "optnone");
            }
            let opts = inkwell::llvm_sys::transforms::pass_builder::LLVMCreatePassBuilderOptions();
            let err = inkwell::llvm_sys::transforms::pass_builder::LLVMRunPasses(
                copy.m,
                passes.as_ptr(),
                std::ptr::null_mut(),
                opts,
            );
            inkwell::llvm_sys::transforms::pass_builder::LLVMDisposePassBuilderOptions(opts);
            if !err.is_null() {
                inkwell::llvm_sys::error::LLVMConsumeError(err);
                return None;
            }
            Some(copy)
        }
    }

    pub fn ir(&self) -> Ir {
        Ir::new(self.m)
    }
}

impl Drop for ModuleCopy {
    fn drop(&mut self) {
        // SAFETY: the module was cloned by `new` and nothing refers to it
        // once the copy is dropped (its `Ir`s do not outlive the analysis).
        unsafe { LLVMDisposeModule(self.m) }
    }
}

impl Val {
    pub fn name(self) -> String {
        let mut len = 0usize;
        // SAFETY: returns a pointer into the value's name, valid for `len`.
        let p = unsafe { LLVMGetValueName2(self.0, &mut len) };
        lossy(p, len)
    }
    pub fn opcode(self) -> Option<LLVMOpcode> {
        // SAFETY: only instructions have an opcode; checked first.
        unsafe { (!LLVMIsAInstruction(self.0).is_null()).then(|| LLVMGetInstructionOpcode(self.0)) }
    }
    pub fn is_call(self) -> bool {
        // SAFETY: RTTI query on a live value.
        unsafe { !LLVMIsACallInst(self.0).is_null() }
    }
    pub fn is_function(self) -> bool {
        // SAFETY: RTTI query on a live value.
        unsafe { !LLVMIsAFunction(self.0).is_null() }
    }
    pub fn is_global_var(self) -> bool {
        // SAFETY: RTTI query on a live value.
        unsafe { !LLVMIsAGlobalVariable(self.0).is_null() }
    }
    pub fn is_constant(self) -> bool {
        // SAFETY: RTTI query on a live value.
        unsafe { !LLVMIsAConstant(self.0).is_null() }
    }
    pub fn is_argument(self) -> bool {
        // SAFETY: RTTI query on a live value.
        unsafe { !LLVMIsAArgument(self.0).is_null() }
    }
    pub fn const_int(self) -> Option<i64> {
        // SAFETY: RTTI query first, then the ConstantInt accessor.
        unsafe { (!LLVMIsAConstantInt(self.0).is_null()).then(|| LLVMConstIntGetSExtValue(self.0)) }
    }
    pub fn num_operands(self) -> u32 {
        // SAFETY: users have operands; other values report 0 via the RTTI check.
        unsafe {
            if LLVMIsAUser(self.0).is_null() {
                0
            } else {
                LLVMGetNumOperands(self.0) as u32
            }
        }
    }
    pub fn operand(self, i: u32) -> Option<Val> {
        if i >= self.num_operands() {
            return None;
        }
        // SAFETY: index checked against the operand count.
        opt_val(unsafe { LLVMGetOperand(self.0, i) })
    }
    pub fn set_operand(self, i: u32, v: Val) {
        assert!(i < self.num_operands());
        // SAFETY: index checked; type compatibility is the caller's (ptr for callees).
        unsafe { LLVMSetOperand(self.0, i, v.0) }
    }
    /// Users of this value, in use-list order.
    pub fn users(self) -> Vec<Val> {
        let mut out = Vec::new();
        // SAFETY: walking the value's use list.
        unsafe {
            let mut u = LLVMGetFirstUse(self.0);
            while !u.is_null() {
                out.push(Val(LLVMGetUser(u)));
                u = LLVMGetNextUse(u);
            }
        }
        out
    }
    pub fn type_of(self) -> Ty {
        // SAFETY: every value has a type.
        Ty(unsafe { LLVMTypeOf(self.0) })
    }

    // ---- functions ----
    pub fn is_declaration(self) -> bool {
        // SAFETY: `self` is a global value (callers check).
        unsafe { LLVMIsDeclaration(self.0) != 0 }
    }
    pub fn linkage(self) -> inkwell::llvm_sys::LLVMLinkage {
        // SAFETY: `self` is a global value.
        unsafe { LLVMGetLinkage(self.0) }
    }
    pub fn global_value_type(self) -> Ty {
        // SAFETY: `self` is a global value.
        Ty(unsafe { LLVMGlobalGetValueType(self.0) })
    }
    pub fn params(self) -> Vec<Val> {
        // SAFETY: `self` is a function; index bounded by its parameter count.
        unsafe {
            (0..LLVMCountParams(self.0))
                .map(|i| Val(LLVMGetParam(self.0, i)))
                .collect()
        }
    }
    pub fn param_parent(self) -> Val {
        // SAFETY: `self` is an argument.
        Val(unsafe { LLVMGetParamParent(self.0) })
    }
    pub fn subprogram(self) -> Option<Md> {
        // SAFETY: `self` is a function.
        opt_md(unsafe { LLVMGetSubprogram(self.0) })
    }
    pub fn instructions(self) -> Vec<Val> {
        let mut out = Vec::new();
        // SAFETY: walking the function's blocks and instructions.
        unsafe {
            let mut bb = LLVMGetFirstBasicBlock(self.0);
            while !bb.is_null() {
                let mut i = LLVMGetFirstInstruction(bb);
                while !i.is_null() {
                    out.push(Val(i));
                    i = LLVMGetNextInstruction(i);
                }
                bb = LLVMGetNextBasicBlock(bb);
            }
        }
        out
    }
    pub fn enum_attr(self, index: u32, kind_name: &str) -> Option<u64> {
        let kind = Ir::enum_attr_kind(kind_name);
        if kind == 0 {
            return None;
        }
        // SAFETY: `self` is a function; the attribute handle is read at once.
        unsafe {
            let a = LLVMGetEnumAttributeAtIndex(self.0, index, kind);
            (!a.is_null()).then(|| LLVMGetEnumAttributeValue(a))
        }
    }
    pub fn remove_enum_attr(self, index: u32, kind_name: &str) {
        let kind = Ir::enum_attr_kind(kind_name);
        if kind != 0 {
            // SAFETY: `self` is a function; removing an absent attribute is a no-op.
            unsafe { LLVMRemoveEnumAttributeAtIndex(self.0, index, kind) }
        }
    }

    // ---- instructions ----
    pub fn parent_function(self) -> Val {
        // SAFETY: `self` is an instruction inside a block of a function.
        Val(unsafe { LLVMGetBasicBlockParent(LLVMGetInstructionParent(self.0)) })
    }
    pub fn next_instruction(self) -> Option<Val> {
        // SAFETY: `self` is an instruction.
        opt_val(unsafe { LLVMGetNextInstruction(self.0) })
    }
    /// Callee operand of a call (last operand).
    pub fn called_value(self) -> Option<Val> {
        // SAFETY: `self` is a call instruction (checked).
        self.is_call()
            .then(|| Val(unsafe { LLVMGetCalledValue(self.0) }))
    }
    pub fn called_fn_type(self) -> Ty {
        // SAFETY: `self` is a call instruction.
        Ty(unsafe { LLVMGetCalledFunctionType(self.0) })
    }
    /// The incoming values of a phi node (empty for anything else).
    pub fn phi_incoming(self) -> Vec<Val> {
        // SAFETY: RTTI check first; indices bounded by the incoming count.
        unsafe {
            if LLVMIsAPHINode(self.0).is_null() {
                return vec![];
            }
            (0..LLVMCountIncoming(self.0))
                .map(|i| Val(LLVMGetIncomingValue(self.0, i)))
                .collect()
        }
    }
    pub fn is_null_constant(self) -> bool {
        // SAFETY: RTTI check on a live value.
        unsafe { !LLVMIsAConstantPointerNull(self.0).is_null() }
    }
    pub fn num_args(self) -> u32 {
        // SAFETY: `self` is a call instruction.
        unsafe { LLVMGetNumArgOperands(self.0) }
    }
    pub fn gep_source_type(self) -> Ty {
        // SAFETY: `self` is a GEP instruction (callers check the opcode).
        Ty(unsafe { LLVMGetGEPSourceElementType(self.0) })
    }
    pub fn allocated_type(self) -> Ty {
        // SAFETY: `self` is an alloca (callers check the opcode).
        Ty(unsafe { LLVMGetAllocatedType(self.0) })
    }
    pub fn metadata(self, kind: u32) -> Option<Val> {
        // SAFETY: `self` is an instruction.
        opt_val(unsafe { LLVMGetMetadata(self.0, kind) })
    }
    pub fn clear_metadata(self, kind: u32) {
        // SAFETY: setting a null node removes the attachment.
        unsafe { LLVMSetMetadata(self.0, kind, std::ptr::null_mut()) }
    }
    pub fn debug_loc(self) -> Option<Md> {
        // SAFETY: `self` is an instruction.
        opt_md(unsafe { LLVMInstructionGetDebugLoc(self.0) })
    }
    pub fn line(self) -> u32 {
        // SAFETY: the location is a DILocation when present.
        self.debug_loc()
            .map(|l| unsafe { LLVMDILocationGetLine(l.0) })
            .unwrap_or(0)
    }
    /// (value, variable) of each `#dbg_declare`/`#dbg_value` record attached
    /// before this instruction.
    pub fn dbg_records(self) -> Vec<(Option<Val>, Md, bool)> {
        let mut out = Vec::new();
        // SAFETY: walking the instruction's record list; variable records
        // are the only kinds whose value/variable accessors we call.
        unsafe {
            let mut r = LLVMGetFirstDbgRecord(self.0);
            while !r.is_null() {
                let kind = LLVMDbgRecordGetKind(r);
                let is_declare = kind == LLVMDbgRecordKind::LLVMDbgRecordDeclare;
                if is_declare || kind == LLVMDbgRecordKind::LLVMDbgRecordValue {
                    let var = LLVMDbgVariableRecordGetVariable(r);
                    if !var.is_null() {
                        let v = LLVMDbgVariableRecordGetValue(r, 0);
                        out.push((opt_val(v), Md(var), is_declare));
                    }
                }
                r = LLVMGetNextDbgRecord(r);
            }
        }
        out
    }
    /// The metadata wrapped by a `MetadataAsValue` (e.g. from [`Val::metadata`]).
    pub fn as_md(self) -> Md {
        // SAFETY: `self` wraps metadata (callers pass metadata values only).
        Md(unsafe { LLVMValueAsMetadata(self.0) })
    }
    pub fn replace_all_uses_with(self, new: Val) {
        // SAFETY: both values have the same type (callers build it so).
        unsafe { LLVMReplaceAllUsesWith(self.0, new.0) }
    }
    pub fn erase(self) {
        // SAFETY: the instruction has no remaining uses (RAUW first).
        unsafe { LLVMInstructionEraseFromParent(self.0) }
    }

    // ---- globals ----
    pub fn initializer(self) -> Option<Val> {
        // SAFETY: `self` is a global variable.
        opt_val(unsafe { LLVMGetInitializer(self.0) })
    }
    pub fn is_thread_local(self) -> bool {
        // SAFETY: `self` is a global variable.
        unsafe { LLVMIsThreadLocal(self.0) != 0 }
    }
    pub fn is_global_constant(self) -> bool {
        // SAFETY: `self` is a global variable.
        unsafe { LLVMIsGlobalConstant(self.0) != 0 }
    }
    pub fn set_section(self, s: &str) {
        let c = std::ffi::CString::new(s).unwrap();
        // SAFETY: `self` is a global object; `c` is NUL-terminated.
        unsafe { LLVMSetSection(self.0, c.as_ptr()) }
    }
    pub fn set_alignment(self, a: u32) {
        // SAFETY: `self` is a global object.
        unsafe { LLVMSetAlignment(self.0, a) }
    }
    pub fn set_linkage(self, l: inkwell::llvm_sys::LLVMLinkage) {
        // SAFETY: `self` is a global value.
        unsafe { LLVMSetLinkage(self.0, l) }
    }
    pub fn set_constant(self, c: bool) {
        // SAFETY: `self` is a global variable.
        unsafe { LLVMSetGlobalConstant(self.0, c as i32) }
    }
    pub fn set_unnamed_addr(self) {
        // SAFETY: `self` is a global value.
        unsafe {
            LLVMSetUnnamedAddress(
                self.0,
                inkwell::llvm_sys::LLVMUnnamedAddr::LLVMGlobalUnnamedAddr,
            )
        }
    }
}

impl Ty {
    pub fn kind(self) -> LLVMTypeKind {
        // SAFETY: live type.
        unsafe { LLVMGetTypeKind(self.0) }
    }
    pub fn is_pointer(self) -> bool {
        self.kind() == LLVMTypeKind::LLVMPointerTypeKind
    }
    pub fn is_integer(self) -> bool {
        self.kind() == LLVMTypeKind::LLVMIntegerTypeKind
    }
    pub fn struct_name(self) -> Option<String> {
        if self.kind() != LLVMTypeKind::LLVMStructTypeKind {
            return None;
        }
        // SAFETY: struct type; literal structs return NULL.
        let p = unsafe { LLVMGetStructName(self.0) };
        if p.is_null() {
            return None;
        }
        // SAFETY: NUL-terminated name owned by the type.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
    pub fn struct_elements(self) -> Vec<Ty> {
        // SAFETY: struct type; indices bounded by the element count.
        unsafe {
            (0..LLVMCountStructElementTypes(self.0))
                .map(|i| Ty(LLVMStructGetTypeAtIndex(self.0, i)))
                .collect()
        }
    }
    /// Element type of an array or vector type.
    pub fn element(self) -> Ty {
        // SAFETY: sequential type (callers check the kind).
        Ty(unsafe { LLVMGetElementType(self.0) })
    }
    pub fn return_type(self) -> Ty {
        // SAFETY: function type.
        Ty(unsafe { LLVMGetReturnType(self.0) })
    }
    pub fn param_types(self) -> Vec<Ty> {
        // SAFETY: function type; buffer sized by its parameter count.
        unsafe {
            let n = LLVMCountParamTypes(self.0) as usize;
            let mut buf = vec![std::ptr::null_mut(); n];
            LLVMGetParamTypes(self.0, buf.as_mut_ptr());
            buf.into_iter().map(Ty).collect()
        }
    }
    pub fn int_width(self) -> u32 {
        // SAFETY: integer type (callers check).
        unsafe { LLVMGetIntTypeWidth(self.0) }
    }
}

/// One operand of a metadata node, as LLVM hands it out.
#[derive(Clone, Copy, Debug)]
pub enum MdOp {
    Null,
    Node(Md),
    Str(Md),
    Int(i64),
    Other,
}

impl Md {
    fn as_value(self, ir: &Ir) -> LLVMValueRef {
        // SAFETY: wrapping live metadata of this context.
        unsafe { LLVMMetadataAsValue(ir.ctx, self.0) }
    }
    pub fn operands(self, ir: &Ir) -> Vec<MdOp> {
        let v = self.as_value(ir);
        // SAFETY: `v` wraps an MDNode (callers only pass nodes: DI nodes, tuples);
        // the buffer is sized by LLVM's count.
        unsafe {
            if LLVMIsAMDNode(v).is_null() {
                return Vec::new();
            }
            let n = LLVMGetMDNodeNumOperands(v) as usize;
            let mut buf = vec![std::ptr::null_mut(); n];
            LLVMGetMDNodeOperands(v, buf.as_mut_ptr());
            buf.into_iter()
                .map(|o| {
                    if o.is_null() {
                        MdOp::Null
                    } else if !LLVMIsAConstantInt(o).is_null() {
                        MdOp::Int(LLVMConstIntGetSExtValue(o))
                    } else if !LLVMIsAMDString(o).is_null() {
                        MdOp::Str(Md(LLVMValueAsMetadata(o)))
                    } else if !LLVMIsAMDNode(o).is_null() {
                        MdOp::Node(Md(LLVMValueAsMetadata(o)))
                    } else {
                        MdOp::Other
                    }
                })
                .collect()
        }
    }
    /// Operand `i` when it is a node.
    pub fn node_op(self, ir: &Ir, i: usize) -> Option<Md> {
        match self.operands(ir).get(i) {
            Some(MdOp::Node(m)) => Some(*m),
            _ => None,
        }
    }
    /// Operand `i` when it is a string.
    pub fn str_op(self, ir: &Ir, i: usize) -> Option<String> {
        match self.operands(ir).get(i) {
            Some(MdOp::Str(m)) => Some(m.string(ir)),
            _ => None,
        }
    }
    pub fn string(self, ir: &Ir) -> String {
        let v = self.as_value(ir);
        let mut len = 0u32;
        // SAFETY: `v` wraps an MDString (callers check); pointer valid for len.
        let p = unsafe { LLVMGetMDString(v, &mut len) };
        lossy(p, len as usize)
    }
    pub fn is_node(self, ir: &Ir) -> bool {
        // SAFETY: RTTI query on the wrapped metadata.
        unsafe { !LLVMIsAMDNode(self.as_value(ir)).is_null() }
    }
    pub fn kind(self) -> inkwell::llvm_sys::debuginfo::LLVMMetadataKind {
        // SAFETY: live metadata.
        unsafe { LLVMGetMetadataKind(self.0) }
    }
    /// DWARF tag of a DINode.
    pub fn tag(self) -> u16 {
        // SAFETY: callers only pass DINodes (checked with `is_di_type` or by position).
        unsafe { LLVMGetDINodeTag(self.0) }
    }
    pub fn is_di_type(self) -> bool {
        use inkwell::llvm_sys::debuginfo::LLVMMetadataKind::*;
        matches!(
            self.kind(),
            LLVMDIBasicTypeMetadataKind
                | LLVMDIDerivedTypeMetadataKind
                | LLVMDICompositeTypeMetadataKind
                | LLVMDISubroutineTypeMetadataKind
                | LLVMDIStringTypeMetadataKind
        )
    }
    pub fn type_name(self) -> String {
        let mut len = 0usize;
        // SAFETY: `self` is a DIType.
        let p = unsafe { LLVMDITypeGetName(self.0, &mut len) };
        lossy(p, len)
    }
    pub fn size_bits(self) -> u64 {
        // SAFETY: `self` is a DIType.
        unsafe { LLVMDITypeGetSizeInBits(self.0) }
    }
    pub fn offset_bits(self) -> u64 {
        // SAFETY: `self` is a DIType.
        unsafe { LLVMDITypeGetOffsetInBits(self.0) }
    }
    pub fn flags(self) -> i32 {
        // SAFETY: `self` is a DIType.
        unsafe { LLVMDITypeGetFlags(self.0) }
    }
    pub fn type_line(self) -> u32 {
        // SAFETY: `self` is a DIType.
        unsafe { LLVMDITypeGetLine(self.0) }
    }
    /// File of a DIScope (types, subprograms, compile units).
    pub fn scope_file(self) -> Option<Md> {
        // SAFETY: `self` is a DIScope.
        opt_md(unsafe { LLVMDIScopeGetFile(self.0) })
    }
    pub fn file_name(self) -> String {
        let mut len = 0u32;
        // SAFETY: `self` is a DIFile.
        let p = unsafe { LLVMDIFileGetFilename(self.0, &mut len) };
        lossy(p, len as usize)
    }
    pub fn file_dir(self) -> String {
        let mut len = 0u32;
        // SAFETY: `self` is a DIFile.
        let p = unsafe { LLVMDIFileGetDirectory(self.0, &mut len) };
        lossy(p, len as usize)
    }
    pub fn variable_line(self) -> u32 {
        // SAFETY: `self` is a DIVariable.
        unsafe { LLVMDIVariableGetLine(self.0) }
    }
    /// Textual form (`!DIEnumerator(name: "A", value: 1)`), for the few
    /// fields the C API has no getter for.
    pub fn print(self, ir: &Ir) -> String {
        // SAFETY: printing a live value; the message is freed with LLVM's disposer.
        unsafe {
            let p = LLVMPrintValueToString(self.as_value(ir));
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            LLVMDisposeMessage(p);
            s
        }
    }
}
