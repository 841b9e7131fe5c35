//! Host-owned data: pointers handed to btm together with the function that
//! frees them. Each wrapper calls its free function exactly once, when it is
//! dropped, so "freed exactly once, whatever happens" is Rust ownership.
//!
//! These are the only engine types that hold raw host pointers; the host
//! promised, by handing them to a thread pool, that they may be used and
//! freed from any thread.

use std::ffi::{c_void, CString};

use super::TaskContext;

/// A host free function. Never called with NULL.
pub type FreeFn = unsafe extern "C" fn(data: *mut c_void);

/// A host task function: runs on a worker thread with its userdata and a
/// context valid only for the duration of the call.
pub type TaskFn = unsafe extern "C" fn(userdata: *mut c_void, context: *mut TaskContext);

/// Calls into host code (a task, free function, hook or callback) through
/// a frame without unwind information, so that a thread the host code
/// ends with `pthread_exit` ends there, not inside btm's frames.
///
/// `pthread_exit` (which CPython calls in any foreign thread that asks for
/// the GIL during interpreter shutdown) unwinds the thread's stack with a
/// forced unwind. Unwinding into btm's Rust frames aborted the process
/// ("FATAL: exception not rethrown"): they are `extern "C"` frames that
/// must not unwind. A frame the unwinder finds no unwind information for
/// ends the unwind instead, and glibc then jumps straight to the end of
/// the thread (`unwind_stop` in nptl: "we assume there are only C frames
/// without unwind data in between"), skipping btm's frames: what they held
/// is lost, and a worker's thread-exit guard (`WorkerExit` in the engine)
/// tells the manager the worker is gone. A C++ exception thrown out of host
/// code meets the same frame and terminates the process, as it did.
///
/// The frame is a few instructions of assembly (no CFI directives, so no
/// unwind entry) on Linux x86_64 and aarch64; elsewhere host code is called
/// directly (and `pthread_exit` in it aborts, as before). The lane worker's
/// path grew by about one instruction per task with it (`bash
/// bench/paths.sh`: 175.2 -> 176.3).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod no_unwind {
    // Three routines, for host functions of one, two and five arguments:
    // each takes the host function after its arguments, so that they are
    // already in the registers the host function reads them from, and
    // only makes a frame (which keeps the stack aligned) and calls it.
    #[cfg(target_arch = "x86_64")]
    std::arch::global_asm!(
        ".text",
        ".p2align 4",
        ".globl btm_call_host_1",
        ".hidden btm_call_host_1",
        ".type btm_call_host_1,@function",
        "btm_call_host_1:",
        "push rbp",
        "call rsi",
        "pop rbp",
        "ret",
        ".size btm_call_host_1, .-btm_call_host_1",
        ".p2align 4",
        ".globl btm_call_host_2",
        ".hidden btm_call_host_2",
        ".type btm_call_host_2,@function",
        "btm_call_host_2:",
        "push rbp",
        "call rdx",
        "pop rbp",
        "ret",
        ".size btm_call_host_2, .-btm_call_host_2",
        ".p2align 4",
        ".globl btm_call_host_5",
        ".hidden btm_call_host_5",
        ".type btm_call_host_5,@function",
        "btm_call_host_5:",
        "push rbp",
        "call r9",
        "pop rbp",
        "ret",
        ".size btm_call_host_5, .-btm_call_host_5",
    );

    #[cfg(target_arch = "aarch64")]
    std::arch::global_asm!(
        ".text",
        ".p2align 4",
        ".globl btm_call_host_1",
        ".hidden btm_call_host_1",
        ".type btm_call_host_1,%function",
        "btm_call_host_1:",
        "stp x29, x30, [sp, #-16]!",
        "mov x29, sp",
        "blr x1",
        "ldp x29, x30, [sp], #16",
        "ret",
        ".size btm_call_host_1, .-btm_call_host_1",
        ".p2align 4",
        ".globl btm_call_host_2",
        ".hidden btm_call_host_2",
        ".type btm_call_host_2,%function",
        "btm_call_host_2:",
        "stp x29, x30, [sp, #-16]!",
        "mov x29, sp",
        "blr x2",
        "ldp x29, x30, [sp], #16",
        "ret",
        ".size btm_call_host_2, .-btm_call_host_2",
        ".p2align 4",
        ".globl btm_call_host_5",
        ".hidden btm_call_host_5",
        ".type btm_call_host_5,%function",
        "btm_call_host_5:",
        "stp x29, x30, [sp, #-16]!",
        "mov x29, sp",
        "blr x5",
        "ldp x29, x30, [sp], #16",
        "ret",
        ".size btm_call_host_5, .-btm_call_host_5",
    );

    // (Internal: kept out of btm.h by cbindgen.toml's `exclude`.)
    extern "C" {
        /// Calls `f(a)`.
        pub(super) fn btm_call_host_1(a: usize, f: *const ());
        /// Calls `f(a, b)`.
        pub(super) fn btm_call_host_2(a: usize, b: usize, f: *const ());
        /// Calls `f(a, b, c, d, e)`.
        pub(super) fn btm_call_host_5(a: usize, b: usize, c: usize, d: usize, e: usize, f: *const ());
    }
}

/// Calls a host task function (see [`no_unwind`]).
///
/// # Safety
/// As calling `run(data, context)`.
#[inline(always)]
pub(crate) unsafe fn call_task(run: TaskFn, data: *mut c_void, context: *mut TaskContext) {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: the caller's contract; the frame only passes the arguments on.
    unsafe {
        no_unwind::btm_call_host_2(data as usize, context as usize, run as *const ())
    };
    #[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
    // SAFETY: the caller's contract.
    unsafe {
        run(data, context)
    };
}

/// Calls a host function that takes one pointer: a free function or the
/// notify callback (see [`no_unwind`]). Out of line: `Owned`'s drop, which
/// calls it, is inlined in many places, the hot adds among them.
///
/// # Safety
/// As calling `f(data)`.
#[inline(never)]
pub(crate) unsafe fn call_free(f: FreeFn, data: *mut c_void) {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: the caller's contract; the frame only passes the arguments on.
    unsafe {
        no_unwind::btm_call_host_1(data as usize, f as *const ())
    };
    #[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
    // SAFETY: the caller's contract.
    unsafe {
        f(data)
    };
}

/// Calls a thread hook, `f(data, worker_index)` (see [`no_unwind`]).
///
/// # Safety
/// As calling `f(data, index)`.
pub(crate) unsafe fn call_thread_hook(f: unsafe extern "C" fn(*mut c_void, u32), data: *mut c_void, index: u32) {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: the caller's contract; the frame only passes the arguments on.
    unsafe {
        no_unwind::btm_call_host_2(data as usize, index as usize, f as *const ())
    };
    #[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
    // SAFETY: the caller's contract.
    unsafe {
        f(data, index)
    };
}

/// Calls a task hook, `f(data, id, kind, value, worker)` (see
/// [`no_unwind`]).
///
/// # Safety
/// As calling `f` with these arguments.
pub(crate) unsafe fn call_task_hook(
    f: unsafe extern "C" fn(*mut c_void, u64, u32, u64, u32),
    data: *mut c_void,
    id: u64,
    kind: u32,
    value: u64,
    worker: u32,
) {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: the caller's contract; the frame only passes the arguments on
    // (every one fits a register of its own).
    unsafe {
        no_unwind::btm_call_host_5(
            data as usize,
            id as usize,
            kind as usize,
            value as usize,
            worker as usize,
            f as *const (),
        )
    };
    #[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
    // SAFETY: the caller's contract.
    unsafe {
        f(data, id, kind, value, worker)
    };
}

/// A pointer owned by btm until it is dropped, which calls `free` once.
pub struct Owned {
    data: *mut c_void,
    free: Option<FreeFn>,
}

// SAFETY: the host hands these pointers to a multi-threaded task manager
// whose documented contract is that data and free functions may be used and
// called from any thread.
unsafe impl Send for Owned {}
// SAFETY: as above; btm itself never dereferences `data`.
unsafe impl Sync for Owned {}

impl Owned {
    /// Takes ownership of `data`, to be released with `free` (if any).
    pub fn new(data: *mut c_void, free: Option<FreeFn>) -> Self {
        Owned { data, free }
    }

    /// The raw pointer (still owned).
    pub fn data(&self) -> *mut c_void {
        self.data
    }

    /// True when there is no pointer (nothing to free, nothing to deliver).
    pub fn is_null(&self) -> bool {
        self.data.is_null()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let (Some(free), false) = (self.free.take(), self.data.is_null()) {
            // SAFETY: the host gave us `data` with `free` as its release
            // function; `take()` makes this the only call.
            unsafe { call_free(free, self.data) }
        }
    }
}

/// What a queued task will do: a host function with its userdata, or, for a
/// pass-through task, nothing (the userdata is then the payload).
pub struct Job {
    pub(crate) run: Option<TaskFn>,
    pub(crate) data: Owned,
}

impl Job {
    /// A task that calls `run(data, context)` on a worker.
    pub fn task(run: TaskFn, data: Owned) -> Self {
        Job { run: Some(run), data }
    }

    /// A pass-through task whose payload is `payload`.
    pub fn pass_through(payload: Owned) -> Self {
        Job { run: None, data: payload }
    }

    /// True for a task that runs a function (false: a pass-through).
    pub fn runs(&self) -> bool {
        self.run.is_some()
    }
}

/// One entry of a result as the host sees it: the id of the task that
/// produced it and its data.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The task that produced the value (for a pass-through payload, the
    /// pass-through task itself).
    pub task_id: u64,
    /// The value; owned by btm, valid as documented for the event or context
    /// that exposes it.
    pub data: *mut c_void,
}

/// A completed task's result, shared by its downstream tasks and the host's
/// event; freed when the last of them lets go.
pub enum ResultSet {
    /// A task's own result (or a pass-through's payload).
    Single {
        /// The value as exposed to the host.
        value: Value,
        /// Ownership of `value.data`.
        owned: Owned,
    },
    /// Everything a pass-through gathered: its payload first, then its
    /// upstream results in completion order (so in a dictionary view, later
    /// entries win, as upstream results win over the payload).
    Gathered {
        /// Every entry, flattened.
        values: Vec<Value>,
        /// The result sets the entries point into, kept alive with them.
        parts: Vec<std::sync::Arc<ResultSet>>,
    },
}

// SAFETY: see `Owned`; `Value` only carries the pointer.
unsafe impl Send for ResultSet {}
// SAFETY: see `Owned`.
unsafe impl Sync for ResultSet {}

impl ResultSet {
    /// A single value produced by task `task_id`.
    pub fn single(task_id: u64, owned: Owned) -> Self {
        ResultSet::Single { value: Value { task_id, data: owned.data() }, owned }
    }

    /// The values, contiguous.
    pub fn values(&self) -> &[Value] {
        match self {
            ResultSet::Single { value, .. } => std::slice::from_ref(value),
            ResultSet::Gathered { values, .. } => values,
        }
    }
}

/// A task failure, shared by every task of a failure cascade.
pub struct Failure {
    pub(crate) message: CString,
    pub(crate) details: CString,
}

impl Failure {
    /// Builds a failure; interior NUL bytes are cut off there.
    pub fn new(message: &[u8], details: &[u8]) -> Self {
        fn cut(bytes: &[u8]) -> CString {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            CString::new(&bytes[..end]).expect("no interior NUL")
        }
        Failure { message: cut(message), details: cut(details) }
    }

    /// The short message.
    pub fn message(&self) -> &std::ffi::CStr {
        &self.message
    }

    /// The details (traceback counterpart).
    pub fn details(&self) -> &std::ffi::CStr {
        &self.details
    }
}
