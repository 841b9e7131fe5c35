//! The C boundary: thin, checked, panic-proof wrappers over [`crate::engine`].
//!
//! Rules every export follows:
//! - its body sits inside [`ffi_guard!`], so a Rust panic becomes
//!   `BTM_STATUS_PANIC` (or the documented fallback) instead of unwinding
//!   into the host;
//! - only raw pointers and plain integers cross the boundary; every pointer
//!   is checked for NULL and every enum read from C is a `u32` converted with
//!   a fallback;
//! - out-parameters are written only on success.

pub mod context;
pub mod event;
pub mod manager;
pub mod status;
pub mod task;

use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::engine::Manager;
use status::btm_status;

/// Runs `$body` (a block evaluating to the return value), turning a panic
/// into `$fallback`. The macro sits inside the function body, so cbindgen
/// sees plain signatures.
macro_rules! ffi_guard {
    ($fallback:expr, $body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => $fallback,
        }
    }};
}
pub(crate) use ffi_guard;

/// Borrows the manager behind the handle `$ptr`, or returns
/// `BTM_STATUS_NULL_ARGUMENT` from the enclosing export. Every export that
/// uses it documents the handle contract (NULL or live) in its `# Safety`.
macro_rules! manager_or_return {
    ($ptr:expr) => {
        // SAFETY: the enclosing export's contract: the handle is NULL or a
        // live handle (checked for NULL by `manager_ref`).
        match unsafe { $crate::ffi::manager_ref($ptr) } {
            Ok(m) => m,
            Err(s) => return s,
        }
    };
}
pub(crate) use manager_or_return;

/// As [`manager_or_return!`], but holds a reference to the manager for the
/// rest of the enclosing export: for the exports that run host free
/// functions on the calling thread and then go on using the manager. Such
/// a free function may destroy the host's handle (btm.h: any function may
/// be called from a free function); with only a borrow, that dropped the
/// last reference and the export went on with a freed manager.
macro_rules! manager_or_return_held {
    ($ptr:expr) => {{
        let m = $crate::ffi::manager_or_return!($ptr);
        $crate::ffi::Held::new(m)
    }};
}
pub(crate) use manager_or_return_held;

/// The manager as [`manager_or_return_held!`] holds it: with a reference
/// of its own, except on one of the manager's worker threads, whose own
/// reference keeps the manager alive for the call. There a reference held
/// in the call's frame would never be dropped if host code the call runs
/// (a free function) ended the thread (see `engine::WorkerExit`): the
/// manager would never be freed, nor its thread-hook userdata (a review
/// found it with `btm_stop_task` called from a task).
pub(crate) struct Held(ManuallyDrop<Arc<Manager>>, bool);

impl Held {
    pub(crate) fn new(m: ManuallyDrop<Arc<Manager>>) -> Held {
        if m.is_current_worker() {
            Held(m, false)
        } else {
            Held(ManuallyDrop::new(Arc::clone(&m)), true)
        }
    }
}

impl std::ops::Deref for Held {
    type Target = Arc<Manager>;
    fn deref(&self) -> &Arc<Manager> {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.1 {
            // SAFETY: the reference `new` cloned, dropped once.
            unsafe { ManuallyDrop::drop(&mut self.0) }
        }
    }
}

/// Borrows the manager behind a handle without touching its reference count.
///
/// # Safety
/// `ptr` must be NULL or a handle from `btm_create` not yet destroyed (or
/// a handle from `btm_context_manager` inside a running task).
pub(crate) unsafe fn manager_ref(ptr: *const Manager) -> Result<ManuallyDrop<Arc<Manager>>, btm_status> {
    if ptr.is_null() {
        return Err(btm_status::BTM_STATUS_NULL_ARGUMENT);
    }
    // SAFETY: per the contract above, `ptr` points to a live manager (in a
    // child of `fork()`, to the child's copy of one, which is only read).
    if unsafe { &*ptr }.is_fork_copy() {
        return Err(forked());
    }
    // SAFETY: per the contract above, `ptr` came from `Arc::into_raw` and the
    // reference it stands for is alive; ManuallyDrop leaves the count alone.
    Ok(ManuallyDrop::new(unsafe { Arc::from_raw(ptr) }))
}

/// `BTM_STATUS_FORKED`, out of the callers' hot paths.
#[cold]
#[inline(never)]
fn forked() -> btm_status {
    btm_status::BTM_STATUS_FORKED
}

/// Writes `value` to an out-parameter, or fails with `NULL_ARGUMENT`.
///
/// # Safety
/// `out` must be NULL or valid for writing a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) -> btm_status {
    if out.is_null() {
        return btm_status::BTM_STATUS_NULL_ARGUMENT;
    }
    // SAFETY: non-NULL and valid for writes per the contract.
    unsafe { out.write(value) };
    btm_status::BTM_STATUS_OK
}

/// Turns a `Result<(), btm_status>` into a status.
pub(crate) fn status_of(r: Result<(), btm_status>) -> btm_status {
    match r {
        Ok(()) => btm_status::BTM_STATUS_OK,
        Err(s) => s,
    }
}
