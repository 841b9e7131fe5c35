//! Creating, configuring, pausing, shutting down and destroying a manager;
//! groups; statistics.

use std::ffi::{c_char, c_void, CStr};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{
    Config, GroupKey, GroupKind, Manager, Owned, TaskHooks, ThreadHooks, DEFAULT_MAX_THREADS, MAX_THREADS_LIMIT,
};

use super::status::btm_status;
use super::{ffi_guard, manager_or_return, manager_or_return_held, status_of, write_out};

/// A host free function: releases `data`. btm calls it exactly once per
/// pointer it was given, never with NULL.
pub type btm_free_fn = Option<unsafe extern "C" fn(data: *mut c_void)>;

/// A worker thread hook: called on the worker thread with the hook userdata
/// and the worker's index (0, 1, 2...; the thread is named `btm-worker-N`).
pub type btm_thread_hook_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, worker_index: u32)>;

/// Number of worker threads a `max_threads` of 0 stands for (as in the
/// original).
pub const BTM_DEFAULT_MAX_THREADS: u32 = 8;
/// Largest accepted `max_threads`.
pub const BTM_MAX_THREADS_LIMIT: u32 = 1024;
const _: () = assert!(BTM_DEFAULT_MAX_THREADS as usize == DEFAULT_MAX_THREADS);
const _: () = assert!(BTM_MAX_THREADS_LIMIT as usize == MAX_THREADS_LIMIT);
/// Timeout value meaning "wait as long as it takes".
pub const BTM_WAIT_FOREVER: u32 = u32::MAX;

/// How to create a manager. Always initialise it with
/// `btm_config_init_size(&config, sizeof config)` (which sets `struct_size`
/// and every default), then change fields.
///
/// ABI evolution: new fields are only ever appended. The library reads
/// `struct_size` bytes: an older caller's shorter struct gets defaults for
/// the fields it lacks; a newer caller's longer struct is accepted if the
/// bytes this library does not know are all zero. (`btm_config_init`
/// writes this library's whole struct: with a newer library, more than an
/// older caller's struct holds.)
///
/// C# / P/Invoke: `start_processing` is a 1-byte C `bool`
/// (`[MarshalAs(UnmanagedType.U1)]`).
#[repr(C)]
#[derive(Copy, Clone)]
pub struct btm_config {
    /// `sizeof(btm_config)` as compiled by the caller.
    pub struct_size: u32,
    /// Maximum number of worker threads, created lazily. 0 means 8 (as in
    /// the original); negative or above `BTM_MAX_THREADS_LIMIT` is
    /// rejected with `BTM_STATUS_INVALID_THREAD_COUNT`. Default 0.
    pub max_threads: i32,
    /// If false (the default, as in the original), tasks queue until
    /// `btm_start_processing`.
    pub start_processing: bool,
    /// Optional: called on each worker thread before it runs any task (to
    /// attach it to a runtime: GIL state, JNI env, profiler). Default NULL.
    pub thread_start: btm_thread_hook_fn,
    /// Optional: called on each worker thread just before it exits.
    pub thread_stop: btm_thread_hook_fn,
    /// Userdata passed to both thread hooks.
    pub thread_hook_userdata: *mut c_void,
    /// Optional: frees `thread_hook_userdata` once, after the last worker
    /// exited: in `btm_destroy` (while the manager still exists, shut down:
    /// the free function may call it), or, if a timed-out shut-down left a
    /// worker running a task, when that worker exits. Called even if
    /// `btm_create` fails.
    pub thread_hook_free: btm_free_fn,
}

const CONFIG_MIN_SIZE: usize = std::mem::offset_of!(btm_config, start_processing) + 1;

/// The defaults (`btm_config_init`, and `btm_config_init_size` for the
/// part of the caller's struct this library knows).
fn default_config() -> btm_config {
    btm_config {
        struct_size: std::mem::size_of::<btm_config>() as u32,
        max_threads: 0,
        start_processing: false,
        thread_start: None,
        thread_stop: None,
        thread_hook_userdata: std::ptr::null_mut(),
        thread_hook_free: None,
    }
}

/// Fills `config` with the defaults and sets `struct_size`, writing
/// `sizeof(btm_config)` bytes as this library knows it: a caller built
/// against an older header (a shorter struct) must use
/// `btm_config_init_size` instead, and so should new code, so that it
/// keeps working with later versions of the library.
///
/// Returns `BTM_STATUS_NULL_ARGUMENT` if `config` is NULL. Threads: any.
/// Never calls back.
///
/// # Safety
/// `config` must be NULL or point to writable memory for this library's
/// `btm_config`.
#[no_mangle]
pub unsafe extern "C" fn btm_config_init(config: *mut btm_config) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        // SAFETY: caller contract.
        unsafe { write_out(config, default_config()) }
    })
}

/// Fills the caller's config of `struct_size` bytes (`sizeof` of the
/// `btm_config` it was compiled with) with the defaults and sets its
/// `struct_size`; writes exactly `struct_size` bytes, so that a caller
/// built against an older or newer header gets a config `btm_create`
/// accepts (bytes of fields this library does not know are set to 0).
///
/// Errors: `NULL_ARGUMENT` (`config`), `INVALID_ARGUMENT` (`struct_size`
/// too small to hold `start_processing`, or above `UINT32_MAX`; nothing is
/// written). Threads: any. Never calls back.
///
/// # Safety
/// `config` must be NULL or point to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn btm_config_init_size(config: *mut btm_config, struct_size: usize) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        if config.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        if struct_size < CONFIG_MIN_SIZE || struct_size > u32::MAX as usize {
            return btm_status::BTM_STATUS_INVALID_ARGUMENT;
        }
        // The defaults this library knows, the rest of the caller's struct
        // zeroed (fields it does not know), then the caller's size.
        let defaults = default_config();
        let known = struct_size.min(std::mem::size_of::<btm_config>());
        // SAFETY: `struct_size` writable bytes per the contract, of which
        // the first `known` get the defaults' bytes (a plain byte copy);
        // the first four hold the size (`CONFIG_MIN_SIZE` is larger).
        unsafe {
            config.cast::<u8>().write_bytes(0, struct_size);
            std::ptr::copy_nonoverlapping((&raw const defaults).cast::<u8>(), config.cast::<u8>(), known);
            config.cast::<u32>().write_unaligned(struct_size as u32);
        }
        btm_status::BTM_STATUS_OK
    })
}

/// Reads a caller's config of `struct_size` bytes over the defaults.
///
/// # Safety
/// `config` must be valid for reading `struct_size` bytes.
///
/// Returns what could be read (so that the hook userdata it names can be
/// freed even when the config is rejected) and whether it is valid.
unsafe fn read_config(config: *const btm_config) -> (btm_config, Result<(), btm_status>) {
    let mut out = default_config();
    if config.is_null() {
        return (out, Ok(()));
    }
    // SAFETY: every config starts with its u32 size.
    let size = unsafe { config.cast::<u32>().read_unaligned() } as usize;
    let ours = std::mem::size_of::<btm_config>();
    if size < CONFIG_MIN_SIZE {
        // Too short to hold even the first fields (nor any hook).
        return (out, Err(btm_status::BTM_STATUS_INVALID_CONFIG));
    }
    let bytes = config.cast::<u8>();
    let mut valid = true;
    if size > ours {
        // SAFETY: the caller says the struct is `size` bytes long.
        let extra = unsafe { std::slice::from_raw_parts(bytes.add(ours), size - ours) };
        valid &= extra.iter().all(|&b| b == 0);
    }
    let mut n = size.min(ours);
    // A size that ends inside a field (not the size of any older struct:
    // fields are only appended) is rejected, and that field is not read:
    // half a pointer over the default NULL is a torn hook or free function
    // that btm would call.
    let whole = [
        std::mem::offset_of!(btm_config, thread_start),
        std::mem::offset_of!(btm_config, thread_stop),
        std::mem::offset_of!(btm_config, thread_hook_userdata),
        std::mem::offset_of!(btm_config, thread_hook_free),
        ours,
    ];
    if n > whole[0] {
        let end = whole.into_iter().rev().find(|&end| end <= n).unwrap_or(whole[0]);
        valid &= end == n;
        n = end;
    }
    // Copy everything but the `bool`, which is read as a byte: a value
    // other than 0 or 1 must be rejected, not stored in a Rust `bool`.
    let flag_at = std::mem::offset_of!(btm_config, start_processing);
    let dst = (&mut out as *mut btm_config).cast::<u8>();
    // SAFETY: both regions are at least `n` bytes (`n > flag_at` since
    // `n >= CONFIG_MIN_SIZE`); the bytes copied are integers, pointers and
    // padding of a repr(C) struct whose pointer fields accept any value.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes, dst, flag_at);
        std::ptr::copy_nonoverlapping(bytes.add(flag_at + 1), dst.add(flag_at + 1), n - flag_at - 1);
    }
    // SAFETY: within `n` bytes.
    let flag = unsafe { bytes.add(flag_at).read() };
    valid &= flag <= 1;
    out.start_processing = flag == 1;
    (out, if valid { Ok(()) } else { Err(btm_status::BTM_STATUS_INVALID_CONFIG) })
}

/// Creates a manager and writes its handle to `manager_out`.
///
/// `config` may be NULL for the defaults (8 threads at most, paused). No
/// thread starts until a task is ready to run with processing on.
///
/// Errors: `NULL_ARGUMENT` (`manager_out` NULL), `INVALID_CONFIG`,
/// `INVALID_THREAD_COUNT`. On every error `thread_hook_free` (if any) has
/// been called on `thread_hook_userdata`, as everywhere in btm: ownership
/// passes on every call. (A config whose `struct_size` is too small to
/// contain the hook fields, or ends inside one of them, has no hook to
/// free: a field `struct_size` cuts is never read.)
///
/// Ownership: the handle belongs to the caller until `btm_destroy`.
/// Threads: any. Never calls back (except `thread_hook_free` on error).
///
/// Fork: a child process made by `fork()` after this call has a copy of
/// the manager but none of its worker threads (a Python `multiprocessing`
/// worker, for one). There every function given the copied handle (and
/// otherwise valid arguments: a NULL or invalid argument is reported
/// first) returns
/// `BTM_STATUS_FORKED` at once, touching nothing else (the copy's lock may
/// be held forever by a thread that no longer exists); an add so refused
/// frees its userdata as any rejected add does, and `btm_destroy` of the
/// copy does nothing: no free function runs for the parent's tasks (they
/// are the parent's to run and free) and the copy's memory stays until the
/// child exits. Create a new manager in the child if it needs one. Needs
/// Linux 4.14 or later (`MADV_WIPEONFORK`); elsewhere a copy is not
/// detected and must not be used. A child made by `fork()` from inside a
/// task, free function, hook or notify callback that btm runs must only
/// call `exec` or `_exit` (the POSIX rule for a child of a threaded
/// process).
///
/// # Safety
/// `config` must be NULL or point to a config of `config->struct_size`
/// bytes; `manager_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_create(config: *const btm_config, manager_out: *mut *mut Manager) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        // SAFETY: caller contract.
        let (cfg, valid) = unsafe { read_config(config) };
        let hook_data = Owned::new(cfg.thread_hook_userdata, cfg.thread_hook_free);
        if let Err(s) = valid {
            return s;
        }
        if manager_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        if cfg.max_threads < 0 || cfg.max_threads as u32 > BTM_MAX_THREADS_LIMIT {
            return btm_status::BTM_STATUS_INVALID_THREAD_COUNT;
        }
        let thread_hooks = if cfg.thread_start.is_some() || cfg.thread_stop.is_some() || !hook_data.is_null() {
            Some(ThreadHooks { on_start: cfg.thread_start, on_stop: cfg.thread_stop, data: hook_data })
        } else {
            None
        };
        let config =
            Config { max_threads: cfg.max_threads as usize, start_processing: cfg.start_processing, thread_hooks };
        match Manager::new(config) {
            Ok(m) => {
                // SAFETY: checked non-NULL above.
                unsafe { manager_out.write(Arc::into_raw(m).cast_mut()) };
                btm_status::BTM_STATUS_OK
            }
            Err(e) => e.into(),
        }
    })
}

/// Shuts the manager down (if not done yet, waiting as long as running tasks
/// take) and releases the handle. NULL is a no-op, and so is the copy of a
/// handle in a child process made by `fork()` (see `btm_create`).
///
/// Everything still queued is stopped (free functions run on the calling
/// thread); results of the last poll are freed, and so are the notify,
/// task-hook and thread-hook userdata (the last only if no worker is still
/// running a task), all while the manager still exists: a free function
/// may call it (it is shut down: adds get `SHUT_DOWN`). If `btm_shut_down`
/// timed out earlier, the threads it left running are not waited for
/// again: each frees its task's userdata when the task returns, then
/// exits. A worker that an earlier `btm_shut_down` returning `OK` did not
/// wait for (it was called from that worker: a task, hook or free
/// function) is waited for, as long as its task takes.
///
/// Called from inside one of this manager's tasks (or a task hook or free
/// function on one of its workers), it shuts down without waiting for the
/// calling worker, and the memory is released when that task returns.
/// Called from a free function that another btm call runs on the calling
/// thread (a stop's, a replaced notify or hook userdata's), that call
/// finishes normally and the memory is released when it returns. The handle must not be used after this call (handles
/// obtained with `btm_context_manager` stay usable until their task returns,
/// and then only report `BTM_STATUS_SHUT_DOWN`).
///
/// Exit: destroy (or shut down) every manager before the process ends
/// while its workers still have host code to run, so that queued tasks
/// are stopped and their userdata freed. Windows: called as the process
/// ends, from `DllMain` or the destructor of a global in a DLL (a C++
/// `btm::Manager` kept in a plugin's global), where Windows has already
/// ended every other thread, this call returns at once and frees nothing
/// (no free function runs; the process's end reclaims the memory).
/// `btm_shut_down` there, or either call from `DllMain` at `FreeLibrary`
/// (a worker's end needs the loader lock the caller holds), never returns:
/// shut down from the plugin's own unload entry point. A worker thread
/// ended by `pthread_exit` (Windows: `ExitThread`) inside a task, hook,
/// free function or notify callback (CPython 3.8 to 3.13 end that way
/// any foreign thread that asks for the GIL during interpreter shutdown:
/// a Python host's manager kept in a global) does not take the process
/// with it (Linux x86_64 and aarch64, Windows): the task it
/// ran fails ("the worker thread ended inside host code"), shut-downs and
/// this call do not wait for that thread, the host's next add, wait or
/// poll starts a replacement, and what the thread held (the task's
/// userdata, which is freed when a task returns) is not freed. Python hosts:
/// destroy in a `finally`, a context manager or an `atexit` handler (see
/// examples/python).
///
/// # Safety
/// `manager` must be NULL or a live handle from `btm_create`, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn btm_destroy(manager: *mut Manager) {
    ffi_guard!((), {
        if manager.is_null() {
            return;
        }
        // SAFETY: the contract: a live handle (or, in a child of `fork()`,
        // the copy of one, which is only read).
        if unsafe { &*manager }.is_fork_copy() {
            // A child's copy: see `btm_create` ("Fork").
            return;
        }
        if Manager::process_is_exiting() {
            // Windows, from `DllMain` or a DLL's global destructors as the
            // process ends: its workers are already gone (see "Exit").
            return;
        }
        // SAFETY: takes back the reference `btm_create` gave out.
        let mut m = unsafe { Arc::from_raw(manager.cast_const()) };
        if m.shut_down(None).is_err() {
            // Shut down before (`ALREADY_SHUT_DOWN`): wait for the workers
            // that shut-down did not wait for.
            m.join_after_shut_down();
        }
        Manager::release_host_objects(&mut m);
        drop(m);
    })
}

/// Starts (or resumes) running queued tasks. Idempotent.
///
/// Errors: `NULL_ARGUMENT`, `SHUT_DOWN`. Threads: any, including inside a
/// task. May start worker threads (which call `thread_start`); never calls
/// other host code.
///
/// # Safety
/// `manager` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn btm_start_processing(manager: *mut Manager) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        status_of(m.start_processing().map_err(Into::into))
    })
}

/// Pauses: running tasks finish and report; nothing new starts until
/// `btm_start_processing`. Idempotent.
///
/// Errors: `NULL_ARGUMENT`, `SHUT_DOWN`. Threads: any. Never calls back.
///
/// # Safety
/// `manager` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn btm_pause_processing(manager: *mut Manager) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        status_of(m.pause_processing().map_err(Into::into))
    })
}

/// Shuts the manager down: stops every task (no event is ever delivered
/// again, not even for running tasks), rejects new tasks with
/// `BTM_STATUS_SHUT_DOWN`, and waits up to `timeout_ms` milliseconds
/// (`BTM_WAIT_FOREVER` for no limit) for the worker threads to exit.
///
/// Returns `OK` when every worker has exited (called from one of the
/// manager's own workers: every other one, see below): no other btm thread
/// will call host code again. Returns `TIMED_OUT` when some workers are
/// still inside a task that has not returned; their number is written to
/// `still_running_out` (optional, may be NULL; written 0 on `OK`). Those threads are left to
/// finish alone: when the task returns, its userdata is freed on that
/// thread, `thread_stop` runs, and the thread exits; nothing is freed under
/// the task's feet. Workers not inside a task (idle, on their way out,
/// with only `thread_stop` left to run) are waited for whatever the
/// timeout: a timeout of 0 with no task running returns `OK`. A second
/// call returns `ALREADY_SHUT_DOWN`.
///
/// Free functions of stopped tasks run on the calling thread. Called from
/// inside a task of this manager (or from a task hook or a free function
/// running on one of its workers) it does not wait for that worker, and
/// `OK` then means every other worker has exited: the calling worker goes
/// on with what it was doing (a hook's task still runs, its userdata is
/// freed when it returns), then exits. Threads: any.
///
/// # Safety
/// `manager` must be NULL or a live handle; `still_running_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn btm_shut_down(
    manager: *mut Manager,
    timeout_ms: u32,
    still_running_out: *mut usize,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return_held!(manager);
        let (status, left) = match m.shut_down(timeout(timeout_ms)) {
            Ok(()) => (btm_status::BTM_STATUS_OK, 0),
            Err((e, left)) => (e.into(), left),
        };
        if !still_running_out.is_null() && status != btm_status::BTM_STATUS_ALREADY_SHUT_DOWN {
            // SAFETY: non-NULL, writable per the contract.
            unsafe { still_running_out.write(left) };
        }
        status
    })
}

pub(crate) fn timeout(ms: u32) -> Option<Duration> {
    (ms != BTM_WAIT_FOREVER).then(|| Duration::from_millis(u64::from(ms)))
}

/// Kinds of `btm_group`.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum btm_group_kind {
    /// The default group: tasks added without a group. `value` is ignored.
    BTM_GROUP_KIND_DEFAULT = 0,
    /// A numbered group: any 64-bit `value` the host picks, or one from
    /// `btm_next_group_id`.
    BTM_GROUP_KIND_NUMBERED = 1,
    /// A named group from `btm_group_named`; `value` identifies the name
    /// within its manager. Never equal to a numbered group.
    BTM_GROUP_KIND_NAMED = 2,
}

/// A task group. Build numbered groups directly
/// (`{BTM_GROUP_KIND_NUMBERED, 0, 42}`), named ones with `btm_group_named`.
/// Passing a NULL `const btm_group *` means the default group.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct btm_group {
    /// One of `btm_group_kind`.
    pub kind: u32,
    /// Reserved: must be 0 (any other value is `INVALID_GROUP`, so that a
    /// later version can give it a meaning).
    pub reserved: u32,
    /// The number (numbered) or name id (named).
    pub value: u64,
}

impl From<GroupKey> for btm_group {
    fn from(k: GroupKey) -> Self {
        let kind = match k.kind {
            GroupKind::Default => btm_group_kind::BTM_GROUP_KIND_DEFAULT,
            GroupKind::Numbered => btm_group_kind::BTM_GROUP_KIND_NUMBERED,
            GroupKind::Named => btm_group_kind::BTM_GROUP_KIND_NAMED,
        };
        btm_group { kind: kind as u32, reserved: 0, value: k.value }
    }
}

/// Reads an optional group pointer (NULL: the default group).
///
/// # Safety
/// `group` must be NULL or readable.
pub(crate) unsafe fn read_group(group: *const btm_group) -> Result<GroupKey, btm_status> {
    if group.is_null() {
        return Ok(GroupKey::DEFAULT);
    }
    // SAFETY: non-NULL and readable per the contract.
    group_key(unsafe { &*group }).ok_or(btm_status::BTM_STATUS_INVALID_GROUP)
}

/// The group a `btm_group` names; `None` for a kind out of range or a
/// non-zero `reserved`.
#[inline(always)]
pub(crate) fn group_key(g: &btm_group) -> Option<GroupKey> {
    if g.reserved != 0 {
        return None;
    }
    match g.kind {
        0 => Some(GroupKey::DEFAULT),
        1 => Some(GroupKey::numbered(g.value)),
        2 => Some(GroupKey { kind: GroupKind::Named, value: g.value }),
        _ => None,
    }
}

/// Writes a numbered group whose number this manager has never returned
/// before (1, 2, 3...). As in the original, numbers the host picked itself
/// are not checked.
///
/// Errors: `NULL_ARGUMENT`. Threads: any. Never calls back.
///
/// # Safety
/// `manager` NULL or live; `group_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_next_group_id(manager: *mut Manager, group_out: *mut btm_group) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if group_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        let g = GroupKey::numbered(m.next_group_id());
        // SAFETY: checked non-NULL.
        unsafe { write_out(group_out, g.into()) }
    })
}

/// Writes the named group for `name` (a NUL-terminated UTF-8 string, copied;
/// the same name always gives the same group; "" is a valid name). Named
/// groups never collide with numbered ones. Names are kept for the manager's
/// lifetime: events point at them.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_UTF8`. Threads: any. Never calls back.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or a NUL-terminated string;
/// `group_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_group_named(
    manager: *mut Manager,
    name: *const c_char,
    group_out: *mut btm_group,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if name.is_null() || group_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        // SAFETY: non-NULL, NUL-terminated per the contract.
        let name = unsafe { CStr::from_ptr(name) };
        if name.to_str().is_err() {
            return btm_status::BTM_STATUS_INVALID_UTF8;
        }
        let g = m.group_named(name);
        // SAFETY: checked non-NULL.
        unsafe { write_out(group_out, g.into()) }
    })
}

/// Writes the name of a named group (NUL-terminated UTF-8, valid until
/// `btm_destroy`; never free it), or NULL for the default group and
/// numbered groups. Useful in task hooks, which receive only a group's kind
/// and value.
///
/// Errors: `NULL_ARGUMENT` (manager, `group`, `name_out`), `INVALID_GROUP`
/// (unknown kind, or a name id this manager never issued). Threads: any.
/// Never calls back.
///
/// # Safety
/// `manager` NULL or live; `group` NULL or readable; `name_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn btm_group_name(
    manager: *mut Manager,
    group: *const btm_group,
    name_out: *mut *const c_char,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if group.is_null() || name_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        // SAFETY: caller contract.
        let key = match unsafe { read_group(group) } {
            Ok(k) => k,
            Err(s) => return s,
        };
        match m.group_name(key) {
            // SAFETY: checked non-NULL.
            Ok(name) => unsafe { write_out(name_out, name) },
            Err(e) => e.into(),
        }
    })
}

/// Changes the maximum number of worker threads at run time (0 means 8).
/// More threads start as work needs them; extra threads finish their
/// current task and exit once idle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_THREAD_COUNT`, `SHUT_DOWN`. Threads:
/// any. May start threads (calling `thread_start` on them).
///
/// # Safety
/// `manager` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn btm_set_max_threads(manager: *mut Manager, max_threads: i32) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if max_threads < 0 || max_threads as u32 > BTM_MAX_THREADS_LIMIT {
            return btm_status::BTM_STATUS_INVALID_THREAD_COUNT;
        }
        status_of(m.set_max_threads(max_threads as usize).map_err(Into::into))
    })
}

/// A snapshot of a manager's counters.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct btm_stats {
    /// Ready tasks waiting for a worker (or for `btm_start_processing`).
    pub queued: u64,
    /// Tasks waiting for upstream tasks.
    pub blocked: u64,
    /// Tasks on a worker right now (including stopped ones still running).
    pub running: u64,
    /// Events waiting in the queue (completed, failed, progress, and a
    /// `group finished` that a poll filled to its capacity left queued). A
    /// group's `group finished` event is decided when the host polls the
    /// event of the group's last task, so a poll can deliver one more event
    /// per group than counted here.
    pub undelivered: u64,
    /// Tasks completed since creation.
    pub completed_total: u64,
    /// Tasks failed since creation (including cascaded failures).
    pub failed_total: u64,
    /// Tasks stopped since creation. A task stopped after it finished (its
    /// event withdrawn) also counts in `completed_total` or `failed_total`;
    /// what always balances is: tasks added = final events delivered +
    /// `stopped_total` + tasks still live.
    pub stopped_total: u64,
    /// Worker threads alive.
    pub threads: u64,
    /// Worker threads the system refused to create (btm goes on with the
    /// threads it has and retries when more work arrives).
    pub spawn_failures: u64,
}

/// Writes a snapshot of the manager's counters to `stats_out`.
///
/// Errors: `NULL_ARGUMENT`. Threads: any. Calls back only the notify callback, when this call makes the
/// first event available (see `btm_set_notify`).
///
/// # Safety
/// `manager` NULL or live; `stats_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_get_stats(manager: *mut Manager, stats_out: *mut btm_stats) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        let s = m.stats();
        let out = btm_stats {
            queued: s.queued,
            blocked: s.blocked,
            running: s.running,
            undelivered: s.undelivered,
            completed_total: s.completed_total,
            failed_total: s.failed_total,
            stopped_total: s.stopped_total,
            threads: s.threads,
            spawn_failures: s.spawn_failures,
        };
        // SAFETY: caller contract.
        unsafe { write_out(stats_out, out) }
    })
}

/// Live tasks of one group, by state.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct btm_group_stats {
    /// Ready and waiting for a worker.
    pub queued: u64,
    /// Waiting for upstream tasks.
    pub blocked: u64,
    /// On a worker.
    pub running: u64,
    /// Finished, final event not yet polled.
    pub undelivered: u64,
}

/// Writes the counts of one group's live tasks (all zero for a group with
/// no live task). `group` NULL means the default group.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_GROUP`. Threads: any. Calls back only the notify callback, when this call makes the
/// first event available (see `btm_set_notify`).
/// Cost: proportional to the group's size.
///
/// # Safety
/// `manager` NULL or live; `group` NULL or readable; `stats_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn btm_get_group_stats(
    manager: *mut Manager,
    group: *const btm_group,
    stats_out: *mut btm_group_stats,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        if stats_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        // SAFETY: caller contract.
        let key = match unsafe { read_group(group) } {
            Ok(k) => k,
            Err(s) => return s,
        };
        match m.group_stats(key) {
            Ok([queued, blocked, running, undelivered]) => {
                // SAFETY: checked non-NULL.
                unsafe { write_out(stats_out, btm_group_stats { queued, blocked, running, undelivered }) }
            }
            Err(e) => e.into(),
        }
    })
}

/// An instrumentation hook: `(userdata, task_id, group_kind, group_value,
/// worker_index)`, `group_kind`/`group_value` as in `btm_group`.
pub type btm_task_hook_fn = Option<
    unsafe extern "C" fn(userdata: *mut c_void, task_id: u64, group_kind: u32, group_value: u64, worker_index: u32),
>;

/// Registers instrumentation hooks (replacing previous ones; both NULL
/// removes them): `on_start` runs on the worker just before a task function,
/// `on_end` just after it returns (pass-through tasks run no function and
/// are not reported). Meant for profilers (Tracy zones, Chrome trace
/// events, Unreal Insights). With no hooks registered, btm does no work for
/// them at all.
///
/// `userdata` / `userdata_free`: owned by btm on every call; freed when the
/// hooks are replaced and no task that started with them is still running,
/// or by `btm_destroy` (after the shut-down, while the manager still
/// exists: the free function may call it; a task that a timed-out shut-down
/// left running keeps them until it returns). Tasks already running keep
/// the hooks they started with.
///
/// Errors: `NULL_ARGUMENT` (manager). Threads: any. The hooks run on worker
/// threads, outside btm's locks, and may call btm.
///
/// # Safety
/// `manager` NULL or live; hooks and `userdata_free` callable from any
/// thread.
#[no_mangle]
pub unsafe extern "C" fn btm_set_task_hooks(
    manager: *mut Manager,
    on_start: btm_task_hook_fn,
    on_end: btm_task_hook_fn,
    userdata: *mut c_void,
    userdata_free: btm_free_fn,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let data = Owned::new(userdata, userdata_free);
        let m = manager_or_return_held!(manager);
        let hooks = (on_start.is_some() || on_end.is_some()).then(|| TaskHooks { on_start, on_end, data });
        m.set_task_hooks(hooks);
        btm_status::BTM_STATUS_OK
    })
}
