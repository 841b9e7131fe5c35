//! What a running task can do through its context.
//!
//! Every function here takes the `TaskContext *` passed to the task
//! function. It is valid only during that call and only on that worker
//! thread; using it afterwards is undefined behaviour. NULL is always
//! checked.

use std::ffi::{c_char, c_void, CStr, CString};

use crate::engine::{Failure, Owned};

use super::ffi_guard;
use super::manager::btm_free_fn;
use super::status::btm_status;
use super::task::btm_task_id;
use crate::engine::{Manager, TaskContext, Value};

/// The running task's id (0 if `context` is NULL).
///
/// # Safety
/// `context` NULL or the context of the running task.
#[no_mangle]
pub unsafe extern "C" fn btm_context_task_id(context: *const TaskContext) -> btm_task_id {
    ffi_guard!(0, {
        // SAFETY: caller contract.
        unsafe { context.as_ref() }.map_or(0, |c| c.task_id())
    })
}

/// The manager running this task (NULL if `context` is NULL), to add or stop
/// tasks from inside a task. The handle is borrowed: never destroy it. It
/// stays usable until the task returns, even if the host destroys the
/// manager meanwhile (calls then return `BTM_STATUS_SHUT_DOWN`).
///
/// # Safety
/// `context` NULL or the context of the running task.
#[no_mangle]
pub unsafe extern "C" fn btm_context_manager(context: *const TaskContext) -> *mut Manager {
    ffi_guard!(std::ptr::null_mut(), {
        // SAFETY: caller contract.
        unsafe { context.as_ref() }.map_or(std::ptr::null_mut(), |c| c.manager().cast_mut())
    })
}

/// Writes the results of this task's upstream tasks, in the order those
/// tasks completed (across worker threads, the order btm saw them
/// complete, as for events: see `btm_poll_events`): `*values_out` points
/// to `*count_out` entries
/// `{task_id, data}` (NULL and 0 when there are none). A pass-through
/// upstream contributes all of its entries. Upstream tasks that were
/// stopped, or completed without a result, contribute nothing.
///
/// Lifetime: the entries and the data they point to stay valid until the
/// task function returns. btm owns them; never free them.
///
/// Errors: `NULL_ARGUMENT`. Never calls back.
///
/// # Safety
/// `context` NULL or the running task's; out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_context_upstream(
    context: *const TaskContext,
    values_out: *mut *const Value,
    count_out: *mut usize,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        // SAFETY: caller contract.
        let Some(ctx) = (unsafe { context.as_ref() }) else {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        };
        if values_out.is_null() || count_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        let v = ctx.upstream();
        // SAFETY: both checked non-NULL, writable per the contract.
        unsafe {
            values_out.write(if v.is_empty() { std::ptr::null() } else { v.as_ptr() });
            count_out.write(v.len());
        }
        btm_status::BTM_STATUS_OK
    })
}

/// Sets this task's result: `data` (owned by btm from now on, on every
/// path) freed with `data_free` exactly once, after the completed event has
/// been polled and every downstream task has run (on whichever thread lets
/// go last: the polling thread or a worker), or at once if the task fails
/// or sets another result. If the task was stopped while it ran, the
/// result is dropped: freed on the worker as the task returns (or, for a
/// stop that lands just as it returns, when btm next applies that
/// worker's outcomes: a poll, a wait, a stats call or `btm_destroy`, on
/// the thread making that call). NULL `data` means "no result".
///
/// Errors: `NULL_ARGUMENT` (`context`; `data` is still freed). Never calls
/// back (except `data_free` of a replaced result).
///
/// # Safety
/// `context` NULL or the running task's.
#[no_mangle]
pub unsafe extern "C" fn btm_context_set_result(
    context: *mut TaskContext,
    data: *mut c_void,
    data_free: btm_free_fn,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let value = Owned::new(data, data_free);
        // SAFETY: caller contract.
        let Some(ctx) = (unsafe { context.as_mut() }) else {
            drop(value);
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        };
        ctx.set_result(value);
        btm_status::BTM_STATUS_OK
    })
}

/// Copies a C string argument; NULL gives `default`.
///
/// # Safety
/// `s` NULL or NUL-terminated.
unsafe fn text(s: *const c_char, default: &str) -> Vec<u8> {
    if s.is_null() {
        default.as_bytes().to_vec()
    } else {
        // SAFETY: caller contract.
        unsafe { CStr::from_ptr(s) }.to_bytes().to_vec()
    }
}

/// Marks this task failed, with a short `message` (NULL: "task failed") and
/// `details` such as a traceback (NULL: ""); both are copied (any bytes; a
/// host reading them as UTF-8 should expect what it wrote). When the task
/// function returns, the task fails instead of completing (a result set is
/// freed), and every live task downstream of it fails with the same message
/// and details. Calling it again replaces the message.
///
/// Errors: `NULL_ARGUMENT` (`context`). Never calls back.
///
/// # Safety
/// `context` NULL or the running task's; strings NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn btm_context_fail(
    context: *mut TaskContext,
    message: *const c_char,
    details: *const c_char,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        // SAFETY: caller contract.
        let Some(ctx) = (unsafe { context.as_mut() }) else {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        };
        // SAFETY: caller contract.
        let (m, d) = unsafe { (text(message, "task failed"), text(details, "")) };
        ctx.fail(Failure::new(&m, &d));
        btm_status::BTM_STATUS_OK
    })
}

/// True once this task has been stopped (by a stop, stop-all or shut down):
/// its outcome will be dropped, so a long task may give up early. False for
/// a NULL context. Cheap (one atomic load). Never calls back.
///
/// # Safety
/// `context` NULL or the running task's.
#[no_mangle]
pub unsafe extern "C" fn btm_context_is_stopped(context: *const TaskContext) -> bool {
    ffi_guard!(false, {
        // SAFETY: caller contract.
        unsafe { context.as_ref() }.is_some_and(|c| c.is_stopped())
    })
}

/// Reports progress: `fraction` (clamped to 0.0..1.0) and an optional short
/// `message` (copied; NULL for none). The host gets a
/// `BTM_EVENT_TASK_PROGRESS` through its poll; progress events are
/// coalesced (at most one undelivered per task, latest value wins).
///
/// Returns `OK`, or `NOT_FOUND` when the task was stopped (nothing is
/// queued). Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (NaN). Takes btm's
/// lock briefly: report at UI rates, not per byte. Calls back only the
/// notify callback, on the calling thread (the worker, or a thread the task
/// handed its context to), when its progress event makes the
/// queue non-empty (see `btm_set_notify`).
///
/// # Safety
/// `context` NULL or the running task's; `message` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn btm_context_report_progress(
    context: *const TaskContext,
    fraction: f64,
    message: *const c_char,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        // SAFETY: caller contract.
        let Some(ctx) = (unsafe { context.as_ref() }) else {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        };
        if fraction.is_nan() {
            return btm_status::BTM_STATUS_INVALID_ARGUMENT;
        }
        let message = if message.is_null() {
            None
        } else {
            // SAFETY: caller contract.
            Some(CString::from(unsafe { CStr::from_ptr(message) }))
        };
        if ctx.report_progress(fraction.clamp(0.0, 1.0), message) {
            btm_status::BTM_STATUS_OK
        } else {
            btm_status::BTM_STATUS_NOT_FOUND
        }
    })
}
