//! Draining events on the host's thread, and waiting for them.

use std::ffi::{c_char, c_void};

use crate::engine::{EventKind, Manager, Notify, Owned, Value};

use super::manager::{btm_free_fn, btm_group, timeout};
use super::status::btm_status;
use super::task::btm_task_id;
use super::{ffi_guard, manager_or_return, manager_or_return_held, write_out};

/// Kinds of `btm_event`. Later versions may add kinds: skip events whose
/// kind you do not know.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum btm_event_kind {
    /// A task completed: `task_id`, `group`, `results`/`result_count`.
    BTM_EVENT_TASK_COMPLETED = 1,
    /// A task failed (itself, or because an upstream task failed):
    /// `task_id`, `group`, `message`, `details`.
    BTM_EVENT_TASK_FAILED = 2,
    /// The last live task of `group` ended by completing or failing; this
    /// event comes right after that task's event. Never caused by a stop.
    BTM_EVENT_GROUP_FINISHED = 3,
    /// A running task reported progress: `task_id`, `group`, `progress`,
    /// `message` (may be NULL). At most one is queued per task (the latest
    /// value wins, at the place of the first report not yet polled: it may
    /// come before events that happened between the two reports); none is
    /// delivered after the task's final event or stop.
    BTM_EVENT_TASK_PROGRESS = 4,
}

/// An event, written by `btm_poll_events`.
///
/// Lifetime of the pointers inside (`group_name`, `results` and the data
/// they point to, `message`, `details`): valid until the next call of
/// `btm_poll_events` on the same manager (from any thread; a poll made from
/// a free function that a poll runs releases nothing), or `btm_destroy`. btm owns them; never free them. Copy what you need to
/// keep. `group_name` alone stays valid until `btm_destroy`.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct btm_event {
    /// One of `btm_event_kind`.
    pub kind: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// The task; 0 for `BTM_EVENT_GROUP_FINISHED`.
    pub task_id: btm_task_id,
    /// The task's group, or the group that finished.
    pub group: btm_group,
    /// For a named group, its name (NUL-terminated UTF-8); otherwise NULL.
    pub group_name: *const c_char,
    /// Completed: the result entries, or NULL when `result_count` is 0. A
    /// task's own result is one entry `{task_id, data}`; a pass-through
    /// result is its payload then its gathered upstream entries.
    pub results: *const Value,
    /// Number of entries at `results`.
    pub result_count: usize,
    /// Failed: the message (never NULL). Progress: the message, or NULL.
    /// Otherwise NULL.
    pub message: *const c_char,
    /// Failed: the details / traceback (never NULL, may be ""). Otherwise
    /// NULL.
    pub details: *const c_char,
    /// Progress: the fraction reported (0.0 to 1.0). Otherwise 0.
    pub progress: f64,
}

/// Drains up to `capacity` pending events into `events`, in the order the
/// state changes happened, and writes how many to `count_out` (0 when
/// nothing is pending). Never blocks. (Across worker threads, the order btm
/// sees them in: each worker's tasks in the order they finished, a task's
/// final event after its upstream tasks'; two independent tasks or chain
/// links that finished on different workers since the last poll come
/// worker by worker, whichever finished first. See the README.)
///
/// Polling a task's final event (completed or failed) ends the task's life:
/// from then on, stops do not find it and new tasks naming it as upstream do
/// not wait for it. Polling also releases the results and messages of the
/// previous poll (their free functions run on this thread), so pointers in
/// events stay valid exactly until the next poll. A poll called from one of
/// those free functions (or any free function a poll runs), on the same
/// manager, directly or through a poll of another manager, delivers events
/// but releases nothing: the results it would release are the ones the
/// running poll is about to return. Both polls' results then stay valid
/// until the next poll. A poll with nothing to do
/// (no event to deliver, no previous result to release, no notify callback
/// to re-arm) returns `OK` with a count of 0 without taking btm's lock, so
/// polling every frame or in a loop costs the workers nothing.
///
/// Memory: events waiting to be polled take 16 bytes each in btm's queue
/// (a fan-in added over a million finished tasks queues a million). A poll
/// or a stop that empties a queue grown past 4,096 entries gives that
/// memory back (after btm's lock is released). A task that ran without
/// btm's lock (see `btm_add_task`, "Memory") waits for the poll in its
/// worker's queue instead: 8 bytes, plus 32 for a failure or a result, in
/// blocks of 32 KB (8 KB for failures and results), each freed once the
/// poll has delivered its last event. The task records polls free (blocks
/// of 4,096 records, 128 KB; btm keeps two for the next adds) and the
/// member list of a large group that ended are given back to the system
/// by an idle btm worker (2 MB of records at a time), so that the polling
/// thread does not make those system calls; when no worker is idle, or
/// 32 MB already wait for one, the poll does it, after btm's lock is
/// released.
///
/// A stop withdraws events that are still queued, not events a poll
/// already copied into your buffer: if handling one event of a batch stops
/// another task whose event comes later in the same batch, skip that event
/// yourself (or poll with a capacity of 1 while handlers stop tasks).
///
/// Errors: `NULL_ARGUMENT` (manager, `events`, `count_out`),
/// `ZERO_CAPACITY`. Threads: any, but polls of one manager must not overlap
/// in time with the use of a previous poll's pointers; hosts normally poll
/// from one thread. Calls back the free functions of the previous poll's
/// results and, when outcomes the workers left become events as the poll
/// ends, the notify callback (see `btm_set_notify`), after btm's locks are
/// released.
///
/// # Safety
/// `manager` NULL or live; `events` NULL or writable for `capacity` events;
/// `count_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_poll_events(
    manager: *mut Manager,
    events: *mut btm_event,
    capacity: usize,
    count_out: *mut usize,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if events.is_null() || count_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        if capacity == 0 {
            return btm_status::BTM_STATUS_ZERO_CAPACITY;
        }
        let mut i = 0usize;
        let n = m.poll(capacity, |e| {
            let kind = match e.kind {
                EventKind::Completed => btm_event_kind::BTM_EVENT_TASK_COMPLETED,
                EventKind::Failed => btm_event_kind::BTM_EVENT_TASK_FAILED,
                EventKind::GroupFinished => btm_event_kind::BTM_EVENT_GROUP_FINISHED,
                EventKind::Progress => btm_event_kind::BTM_EVENT_TASK_PROGRESS,
            };
            let out = btm_event {
                kind: kind as u32,
                reserved: 0,
                task_id: e.task_id,
                group: e.group.into(),
                group_name: e.group_name,
                results: if e.value_count == 0 { std::ptr::null() } else { e.values },
                result_count: e.value_count,
                message: e.message,
                details: e.details,
                progress: e.progress,
            };
            // SAFETY: the engine writes at most `capacity` events and the
            // caller gave room for `capacity`.
            unsafe { events.add(i).write(out) };
            i += 1;
        });
        // SAFETY: checked non-NULL.
        unsafe { count_out.write(n) };
        btm_status::BTM_STATUS_OK
    })
}

/// Blocks until at least one event is pending (returns `OK` at once if one
/// is) or `timeout_ms` milliseconds pass (`TIMED_OUT`; `BTM_WAIT_FOREVER`
/// waits without limit). Returns `SHUT_DOWN` if the manager is shut down
/// (no event will come).
///
/// Before it sleeps, the caller watches for an event for a few
/// microseconds (a short spin, then a few yields of its CPU), as channel
/// receivers do: an event that comes that soon is found without a sleep
/// and a wake-up. A `timeout_ms` of 0 never spins.
///
/// Errors: `NULL_ARGUMENT`. Threads: any; from inside a task it simply
/// waits (the task's own outcome is never awaited). Calls back only the
/// notify callback, when this call makes the first event available (see
/// `btm_set_notify`).
///
/// # Safety
/// `manager` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn btm_wait_events(manager: *mut Manager, timeout_ms: u32) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        // Held: a waiter woken by the shut-down inside `btm_destroy`
        // (`SHUT_DOWN`, the way to end a wait without limit) returns on a
        // live manager, not on one that call is freeing.
        let m = manager_or_return_held!(manager);
        match m.wait_events(timeout(timeout_ms)) {
            Ok(()) => btm_status::BTM_STATUS_OK,
            Err(e) => e.into(),
        }
    })
}

/// Blocks until no task is queued, blocked or running (events may still be
/// pending: poll them), or `timeout_ms` passes (`TIMED_OUT`). Free functions
/// a worker runs after its last task (userdata of tasks failed by a cascade,
/// outcomes of stopped tasks) may still be running when it returns. While
/// processing is paused, queued tasks never run, so this waits for the
/// running ones and then times out unless nothing is queued.
///
/// Errors: `NULL_ARGUMENT`; `WOULD_DEADLOCK` when called on one of this
/// manager's worker threads: from inside one of its tasks (that task is
/// running, so the manager cannot become idle while it waits), or from a
/// thread or task hook, free function or notify callback it runs there. Threads: any. Calls back only the notify
/// callback, when this call makes the first event available (see
/// `btm_set_notify`).
///
/// # Safety
/// `manager` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn btm_wait_idle(manager: *mut Manager, timeout_ms: u32) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        // Held, as in `btm_wait_events`.
        let m = manager_or_return_held!(manager);
        match m.wait_idle(timeout(timeout_ms)) {
            Ok(()) => btm_status::BTM_STATUS_OK,
            Err(e) => e.into(),
        }
    })
}

/// A notify callback: `notify(userdata)`.
pub type btm_notify_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// Registers the host's wake-up callback (replacing any previous one; NULL
/// `notify` removes it). btm calls `notify(userdata)` when the event queue
/// goes from empty to non-empty, at most once until the host polls again:
/// after a call, the next one comes only after a `btm_poll_events` and a
/// new empty-to-non-empty transition. Drain until a poll returns fewer
/// events than its capacity, or you may wait for a call that never comes.
///
/// The callback runs outside btm's locks, on a worker thread or on the
/// thread of the btm call that made the first event available: any call
/// that takes btm's lock may (an add whose task fails at once, a poll as it
/// ends, a wait, a stats call, a priority change, a progress report, this
/// call itself), when it turns outcomes the workers left into events, so a
/// host thread may be called back before such a call returns. It should
/// only post a message to the host's loop (Qt `QMetaObject::invokeMethod`,
/// Win32 `PostMessage`, Unity's main-thread queue): it must not poll from
/// that thread, and it must not block. (On Windows, the call made for a
/// worker whose thread host code ended with `ExitThread` runs during that
/// thread's exit, under the loader lock: there, loading a library or
/// waiting for a thread to start or end would deadlock.)
///
/// `userdata` / `userdata_free`: owned by btm on every call (freed at once
/// on error); freed when replaced, or by `btm_destroy` (after the
/// shut-down, while the manager still exists: the free function may call
/// it). If events are already pending when you register, no call may come
/// for them: poll once. (Tasks that finished in the workers'
/// queues before this call may instead make it call the callback at once,
/// on this thread.)
///
/// When this call (or `btm_destroy`) returns, the callback it replaced is
/// not running on any thread and will not be called again, and its
/// userdata has been freed: the host may then tear down what the callback
/// posts to. To get there it waits for a call of the old callback in
/// progress on another thread to return (callbacks must not block; do not
/// make this call holding a lock the callback takes). Made from inside a
/// notify callback (it could be waiting for itself) or on a worker
/// thread (a task, a hook, a free function run there), it does not wait:
/// the old userdata is then freed as the calls in progress return.
///
/// Errors: `NULL_ARGUMENT` (manager). Threads: any.
///
/// # Safety
/// `manager` NULL or live; `notify` and `userdata_free` callable from any
/// thread.
#[no_mangle]
pub unsafe extern "C" fn btm_set_notify(
    manager: *mut Manager,
    notify: btm_notify_fn,
    userdata: *mut c_void,
    userdata_free: btm_free_fn,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let data = Owned::new(userdata, userdata_free);
        let m = manager_or_return_held!(manager);
        m.set_notify(notify.map(|func| Notify { func, data }));
        btm_status::BTM_STATUS_OK
    })
}

/// Writes a file descriptor that is readable exactly while undelivered
/// events exist (Linux: an eventfd; other Unix systems: the read end of a
/// pipe). Add it to `poll`/`epoll`, libuv `uv_poll_t`, GLib
/// `g_unix_fd_add`, Qt `QSocketNotifier`; when it is readable, call
/// `btm_poll_events` until it returns fewer events than its capacity.
/// Never read from it or close it: polling clears it, `btm_destroy` closes
/// it (as it releases the manager: later if the manager outlives the call,
/// see `btm_destroy`, or while a `btm_wait_events` it woke on another
/// thread is still returning). The same descriptor is returned on every
/// call; creating it costs nothing until first asked.
///
/// Windows has no such descriptor: there this returns `UNSUPPORTED` (after
/// the argument checks) and `btm_get_event_handle` gives an event object
/// instead.
///
/// Errors: `NULL_ARGUMENT`; `INVALID_ARGUMENT` if the system refused to
/// create the descriptor (out of descriptors); `UNSUPPORTED` on Windows.
/// Threads: any.
///
/// # Safety
/// `manager` NULL or live; `fd_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_get_event_fd(manager: *mut Manager, fd_out: *mut i32) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if fd_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        #[cfg(unix)]
        return match m.event_fd() {
            // SAFETY: checked non-NULL.
            Ok(fd) => unsafe { write_out(fd_out, fd) },
            Err(_) => btm_status::BTM_STATUS_INVALID_ARGUMENT,
        };
        #[cfg(not(unix))]
        {
            let _ = m;
            btm_status::BTM_STATUS_UNSUPPORTED
        }
    })
}

/// Windows: writes the `HANDLE` of a manual-reset event object that is
/// signalled exactly while undelivered events exist. Wait on it with
/// `WaitForSingleObject`, `WaitForMultipleObjects` or
/// `MsgWaitForMultipleObjects` (a message loop); when it is signalled, call
/// `btm_poll_events` until it returns fewer events than its capacity. It
/// stays signalled until that poll: a wait registered with
/// `RegisterWaitForSingleObject` (.NET: `ThreadPool.RegisterWaitForSingleObject`)
/// must use `WT_EXECUTEONLYONCE` (`executeOnlyOnce: true`) and be registered
/// again after the poll, or its callback runs again and again meanwhile.
/// Never reset, set or close it: polling resets it, `btm_destroy` closes it
/// (as it releases the manager, as for `btm_get_event_fd`), so end every
/// wait on it and unregister every registered wait (`UnregisterWaitEx`)
/// before `btm_destroy`. The same handle is returned on every call;
/// creating it costs nothing until first asked. It is not inherited by
/// child processes.
///
/// Other systems have no event objects: there this returns `UNSUPPORTED`
/// (after the argument checks); use `btm_get_event_fd`.
///
/// Errors: `NULL_ARGUMENT`; `INVALID_ARGUMENT` if the system refused to
/// create the event; `UNSUPPORTED` on systems other than Windows. Threads:
/// any.
///
/// # Safety
/// `manager` NULL or live; `handle_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_get_event_handle(manager: *mut Manager, handle_out: *mut *mut c_void) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if handle_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        #[cfg(windows)]
        return match m.event_fd() {
            // SAFETY: checked non-NULL.
            Ok(handle) => unsafe { write_out(handle_out, handle) },
            Err(_) => btm_status::BTM_STATUS_INVALID_ARGUMENT,
        };
        #[cfg(not(windows))]
        {
            let _ = m;
            btm_status::BTM_STATUS_UNSUPPORTED
        }
    })
}
