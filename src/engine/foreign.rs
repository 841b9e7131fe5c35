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
            unsafe { free(self.data) }
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
