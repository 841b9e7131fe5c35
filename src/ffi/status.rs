//! Status codes and version reporting.

use std::ffi::c_char;

use crate::engine::Error;

use super::ffi_guard;

/// Result of every fallible btm function. 0 is success; the numbers are part
/// of the ABI and are never reused or renumbered. `btm_status_str` describes
/// each one.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum btm_status {
    /// Success.
    BTM_STATUS_OK = 0,
    /// No live task or group matches (stops: an unknown, finished, already
    /// stopped or already polled task). Not an error: nothing was done.
    BTM_STATUS_NOT_FOUND = 1,
    /// A required pointer argument (handle, out-parameter, function) is NULL.
    BTM_STATUS_NULL_ARGUMENT = 2,
    /// An argument is out of range (e.g. an array pointer NULL with a
    /// non-zero length, a NaN progress fraction).
    BTM_STATUS_INVALID_ARGUMENT = 3,
    /// An upstream task id was never issued by this manager.
    BTM_STATUS_UNKNOWN_UPSTREAM = 4,
    /// A group name is not valid UTF-8.
    BTM_STATUS_INVALID_UTF8 = 5,
    /// `max_threads` is negative or larger than `BTM_MAX_THREADS_LIMIT`.
    BTM_STATUS_INVALID_THREAD_COUNT = 6,
    /// The manager has been shut down; nothing new is accepted.
    BTM_STATUS_SHUT_DOWN = 7,
    /// `btm_shut_down` was already called on this manager.
    BTM_STATUS_ALREADY_SHUT_DOWN = 8,
    /// A wait ended before its condition held (shut down: some worker
    /// threads were still running a task and were left to finish alone).
    BTM_STATUS_TIMED_OUT = 9,
    /// The call was made on one of this manager's worker threads (inside
    /// one of its tasks, or a hook, free function or callback it runs
    /// there) and would wait for that worker itself; it returned at once
    /// instead.
    BTM_STATUS_WOULD_DEADLOCK = 10,
    /// `btm_poll_events` was given a capacity of 0.
    BTM_STATUS_ZERO_CAPACITY = 11,
    /// `btm_config.struct_size` is too small or ends inside a field, the
    /// config has non-zero bytes this library does not know, or its
    /// `start_processing` byte is neither 0 nor 1.
    BTM_STATUS_INVALID_CONFIG = 12,
    /// A `btm_group` has an unknown kind or a non-zero `reserved`, or
    /// names a group name that was never interned by this manager with
    /// `btm_group_named`.
    BTM_STATUS_INVALID_GROUP = 13,
    /// The task is live but no longer queued (running or finished), so its
    /// priority can no longer change.
    BTM_STATUS_NOT_QUEUED = 14,
    /// A bug inside btm was caught at the boundary; the manager may be in an
    /// inconsistent state.
    BTM_STATUS_PANIC = 15,
    /// The task's group has no live task while all 16,777,216 group slots
    /// are taken (the default group always holds one, every other group
    /// while it has live tasks). Nothing was added.
    BTM_STATUS_TOO_MANY_GROUPS = 16,
    /// This process is a child made by `fork()` after the manager was
    /// created: the manager's worker threads do not exist here, so it
    /// accepts nothing (see `btm_create`). Make a new manager in the child.
    BTM_STATUS_FORKED = 17,
    /// The call does not exist on this platform: `btm_get_event_fd` on
    /// Windows, `btm_get_event_handle` elsewhere. Nothing was changed.
    BTM_STATUS_UNSUPPORTED = 18,
}

impl From<Error> for btm_status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => btm_status::BTM_STATUS_NOT_FOUND,
            Error::UnknownUpstream => btm_status::BTM_STATUS_UNKNOWN_UPSTREAM,
            Error::InvalidGroup => btm_status::BTM_STATUS_INVALID_GROUP,
            Error::ShutDown => btm_status::BTM_STATUS_SHUT_DOWN,
            Error::AlreadyShutDown => btm_status::BTM_STATUS_ALREADY_SHUT_DOWN,
            Error::TimedOut => btm_status::BTM_STATUS_TIMED_OUT,
            Error::WouldDeadlock => btm_status::BTM_STATUS_WOULD_DEADLOCK,
            Error::InvalidThreadCount => btm_status::BTM_STATUS_INVALID_THREAD_COUNT,
            Error::NotQueued => btm_status::BTM_STATUS_NOT_QUEUED,
            Error::TooManyGroups => btm_status::BTM_STATUS_TOO_MANY_GROUPS,
        }
    }
}

fn describe(status: u32) -> &'static [u8] {
    match status {
        0 => b"ok\0",
        1 => b"no live task or group matches\0",
        2 => b"a required pointer argument is NULL\0",
        3 => b"an argument is out of range\0",
        4 => b"an upstream task id was never issued by this manager\0",
        5 => b"a group name is not valid UTF-8\0",
        6 => b"max_threads is negative or too large\0",
        7 => b"the manager has been shut down\0",
        8 => b"the manager was already shut down\0",
        9 => b"timed out\0",
        10 => b"called from inside a task, the wait would deadlock\0",
        11 => b"event buffer capacity is zero\0",
        12 => b"invalid btm_config (struct_size or unknown fields)\0",
        13 => b"invalid group (unknown kind or name never interned)\0",
        14 => b"the task is no longer queued\0",
        15 => b"internal error (panic caught inside btm)\0",
        16 => b"too many groups with live tasks\0",
        17 => b"the manager was created in the parent of this forked process\0",
        18 => b"not available on this platform\0",
        _ => b"unknown status code\0",
    }
}

/// Returns a static, NUL-terminated English description of a status code
/// (also for codes this version does not know: "unknown status code").
///
/// Ownership: the string is static; never free it. Threads: any. Never
/// calls back into the host.
#[no_mangle]
pub extern "C" fn btm_status_str(status: u32) -> *const c_char {
    ffi_guard!(std::ptr::null(), { describe(status).as_ptr().cast() })
}

/// Returns the version of the loaded library as a static NUL-terminated
/// string "MAJOR.MINOR.PATCH" (compare with the `BTM_VERSION` macro of the
/// header you compiled against).
///
/// Ownership: static; never free it. Threads: any. Never calls back.
#[no_mangle]
pub extern "C" fn btm_version() -> *const c_char {
    ffi_guard!(std::ptr::null(), { concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast() })
}
