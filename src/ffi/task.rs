//! Adding, stopping and re-prioritising tasks.

use std::ffi::c_void;

use crate::engine::{Batch, GroupKey, Job, Manager, Owned, StopReport, TaskContext, TaskSpec, Uniform};

use super::manager::{btm_free_fn, btm_group, group_key, read_group};
use super::status::btm_status;
use super::{ffi_guard, manager_or_return, manager_or_return_held, write_out};

/// A task id: unique per manager, never reused, never 0.
pub type btm_task_id = u64;

/// A task function: runs on a worker thread with the task's userdata and
/// its context. Returning completes the task (with the result set through
/// `btm_context_set_result`, if any) unless it called `btm_context_fail`.
/// It must not unwind (C++ exceptions, Rust panics) out of the call: the
/// process would abort. It may end the thread (`pthread_exit`, Windows
/// `ExitThread`; CPython does so during interpreter shutdown): the task
/// then fails, its userdata is not freed, and the worker is replaced (see
/// `btm_destroy`, "Exit").
pub type btm_task_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, context: *mut TaskContext)>;

/// What a stop reached, by the state each stopped task was in. Add the
/// three for the number of tasks stopped.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct btm_stop_report {
    /// Stopped before they started (queued or blocked): they never run.
    pub before_start: u64,
    /// Stopped while running: they run to the end (keeping their thread);
    /// their result or failure is dropped. Their task can see it with
    /// `btm_context_is_stopped`.
    pub while_running: u64,
    /// Finished but not yet polled: the queued event is withdrawn.
    pub after_finish: u64,
}

impl From<StopReport> for btm_stop_report {
    fn from(r: StopReport) -> Self {
        btm_stop_report { before_start: r.before_start, while_running: r.while_running, after_finish: r.after_finish }
    }
}

/// Reads an optional id array.
///
/// # Safety
/// `ids` must be NULL or valid for `len` reads.
unsafe fn read_ids<'a>(ids: *const btm_task_id, len: usize) -> Result<&'a [u64], btm_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if ids.is_null() {
        return Err(btm_status::BTM_STATUS_INVALID_ARGUMENT);
    }
    if len > isize::MAX as usize / std::mem::size_of::<u64>() {
        return Err(btm_status::BTM_STATUS_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL and valid for `len` reads per the contract.
    Ok(unsafe { std::slice::from_raw_parts(ids, len) })
}

/// Shared body of the two add functions. `job` is dropped (its data freed)
/// on every error path.
///
/// # Safety
/// As for `btm_add_task`.
#[inline]
unsafe fn add(
    manager: *mut Manager,
    job: Job,
    priority: i32,
    group: *const btm_group,
    upstream: *const btm_task_id,
    upstream_len: usize,
    task_id_out: *mut btm_task_id,
) -> btm_status {
    let m = manager_or_return!(manager);
    if task_id_out.is_null() {
        return btm_status::BTM_STATUS_NULL_ARGUMENT;
    }
    // SAFETY: caller contract.
    let key = match unsafe { read_group(group) } {
        Ok(k) => k,
        Err(s) => return s,
    };
    // SAFETY: caller contract.
    let ups = match unsafe { read_ids(upstream, upstream_len) } {
        Ok(u) => u,
        Err(s) => return s,
    };
    match m.add(job, priority, key, ups) {
        // SAFETY: checked non-NULL.
        Ok(id) => unsafe { write_out(task_id_out, id) },
        Err(e) => e.into(),
    }
}

/// [`add`] of a task with one upstream task (a chain's link, W2a's), a
/// function of its own that calls `Manager::add_link`: a test of the
/// count inside `add` slowed the lane add (see `Manager::add_link`). The
/// checks are `add`'s.
///
/// # Safety
/// As for `btm_add_task`, with `upstream` NULL or valid for one read.
#[inline(never)]
unsafe fn add_one_upstream(
    manager: *mut Manager,
    job: Job,
    priority: i32,
    group: *const btm_group,
    upstream: *const btm_task_id,
    task_id_out: *mut btm_task_id,
) -> btm_status {
    let m = manager_or_return!(manager);
    if task_id_out.is_null() {
        return btm_status::BTM_STATUS_NULL_ARGUMENT;
    }
    // SAFETY: caller contract.
    let key = match unsafe { read_group(group) } {
        Ok(k) => k,
        Err(s) => return s,
    };
    // SAFETY: caller contract.
    let up = match unsafe { read_ids(upstream, 1) } {
        Ok(ids) => ids[0],
        Err(s) => return s,
    };
    match m.add_link(job, priority, key, up) {
        // SAFETY: checked non-NULL.
        Ok(id) => unsafe { write_out(task_id_out, id) },
        Err(e) => e.into(),
    }
}

/// Adds a task and writes its id to `task_id_out`.
///
/// - `task_fn`: required; runs on a worker thread as
///   `task_fn(userdata, context)`.
/// - `userdata` / `userdata_free`: optional. **Ownership passes to btm on
///   every call, even a failing one**: `userdata_free(userdata)` is called
///   exactly once (if both are non-NULL): on the worker right after
///   `task_fn` returns; or, for a task that never runs, on the thread that
///   stopped it, that made this call (rejected, or an upstream task
///   already failed), or, failed through an upstream task, on the thread
///   that applied that failure (usually the worker that ran the failing
///   task, right after it returned; not the thread that polls it).
/// - `priority`: higher runs first; equal priorities run in the order added.
///   (Exact for tasks queued when a worker looks for work; a worker looking
///   while another thread adds may, rarely, start a task added just after a
///   higher one it missed by nanoseconds: see the README.)
///   0 is the default; negative is fine.
/// - `group`: NULL for the default group.
/// - `upstream` / `upstream_len`: tasks that must complete first. Ids of
///   tasks no longer live are ignored; ids never issued are rejected;
///   duplicates count once. `upstream` may be NULL when `upstream_len` is 0.
///   If an upstream task already failed and its failure is not yet polled,
///   this task fails with it at once (its failed event follows the events
///   already queued).
///
/// Errors: `NULL_ARGUMENT` (manager, `task_fn`, `task_id_out`),
/// `INVALID_ARGUMENT` (`upstream` NULL with a length), `UNKNOWN_UPSTREAM`,
/// `INVALID_GROUP`, `SHUT_DOWN`, `TOO_MANY_GROUPS` (a group with no live
/// task while 2^24 groups have a slot: the default group always holds
/// one, every other group while it has live tasks). A rejected add issues
/// no id.
///
/// Threads: any, including inside a running task (use
/// `btm_context_manager`). Calls back `userdata_free` (on error, or when an
/// upstream already failed) and the notify callback when this call makes
/// the first event available (see `btm_set_notify`), after every btm lock
/// is released.
///
/// Memory: a task without upstream tasks, added while processing runs,
/// goes to a lock-free queue of its priority that workers take from
/// without btm's lock. A manager has at most eight such queues, 1 MiB
/// each (8 MiB), kept until `btm_destroy`: the add that makes one (the
/// first such task of each of the first eight priorities used) takes
/// 0.3-0.5 ms longer while the system clears the memory (2-vCPU VM, btm's
/// lock held). Once eight are made, a task of another priority is given
/// the queue, among those with no task waiting, used least recently, if no
/// worker is taking a task from the queues at that moment (a take lasts
/// well under a microsecond; the next add of that priority tries again),
/// from the host or from inside a task alike; while workers are taking
/// tasks from the queues, only a queue whose priority had no task in the
/// last 256 adds (so that priorities in use keep theirs). A queue whose tasks were
/// stopped or moved is free once the workers passed over them, or at
/// once while the workers are idle. Otherwise the task queues as tasks
/// with upstream tasks do, in the same priority order, at a higher cost per task (about twice the instructions, and
/// btm's lock; a host with 12-16 priorities at once ran 3-3.6x slower per
/// task than with 4; a backlog with a priority of its own for each task,
/// 0.3-0.8 us per task from 1,000 to 1,000,000 tasks, as ordering them is
/// a sort). `btm_add_tasks` follows the same rules task by task.
/// Beyond 16,384
/// tasks waiting in one such queue (a host adding faster than the workers
/// run), the others wait in a list that takes about 40 bytes each and is
/// given back when it empties. A task whose upstream tasks all completed
/// without a result goes to such a queue too. A task with a single
/// upstream task that is in such a queue, running, or itself waiting this
/// way (a chain) waits attached to it, in a record of 64 bytes (from
/// blocks of 256 records, given back but one once no such record is in
/// use) that also holds the dependency, so that such a chain needs no
/// other memory than its tasks' records; the worker that finishes the upstream task runs it next, with the
/// upstream result, when no task of a higher priority, or of its priority
/// and older, is queued (else it queues as tasks with upstream tasks do).
/// Either way the `priority` rule above holds.
///
/// # Safety
/// `manager` NULL or live; `group` NULL or readable; `upstream` NULL or
/// valid for `upstream_len` reads; `task_id_out` NULL or writable;
/// `task_fn` and `userdata_free` safe to call from any thread.
#[no_mangle]
pub unsafe extern "C" fn btm_add_task(
    manager: *mut Manager,
    task_fn: super::task::btm_task_fn,
    userdata: *mut c_void,
    userdata_free: btm_free_fn,
    priority: i32,
    group: *const btm_group,
    upstream: *const btm_task_id,
    upstream_len: usize,
    task_id_out: *mut btm_task_id,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let data = Owned::new(userdata, userdata_free);
        let Some(run) = task_fn else {
            drop(data);
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        };
        let job = Job { run: Some(run), data };
        // SAFETY (both): caller contract.
        if upstream_len == 1 {
            unsafe { add_one_upstream(manager, job, priority, group, upstream, task_id_out) }
        } else {
            unsafe { add(manager, job, priority, group, upstream, upstream_len, task_id_out) }
        }
    })
}

/// Adds a pass-through task: it runs no code but is scheduled like any
/// other task (waits for its upstream tasks and its priority turn) and then
/// completes at once with everything it gathered: its payload (if `payload`
/// is not NULL; the original's `task_kwargs`) first, then its upstream
/// results in the order those completed (a pass-through upstream
/// contributes all of its entries). Its completed event and its downstream
/// tasks see that list; in a dictionary view later entries win, so upstream
/// results win over the payload. With no upstream result and no payload it
/// completes with an empty result.
///
/// `payload` / `payload_free`: ownership passes to btm on every call, even a
/// failing one; freed exactly once, after the last reader (the completed
/// event and downstream tasks) is done, or when the task is stopped or
/// rejected.
///
/// Other parameters, errors and threads: as `btm_add_task`.
///
/// # Safety
/// As for `btm_add_task`.
#[no_mangle]
pub unsafe extern "C" fn btm_add_pass_through_task(
    manager: *mut Manager,
    priority: i32,
    group: *const btm_group,
    upstream: *const btm_task_id,
    upstream_len: usize,
    payload: *mut c_void,
    payload_free: btm_free_fn,
    task_id_out: *mut btm_task_id,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let data = Owned::new(payload, payload_free);
        // SAFETY: caller contract.
        unsafe { add(manager, Job { run: None, data }, priority, group, upstream, upstream_len, task_id_out) }
    })
}

/// `btm_task_desc.flags`: the task is a pass-through task (as added by
/// `btm_add_pass_through_task`): `task_fn` must be NULL and `userdata` /
/// `userdata_free` are its payload.
pub const BTM_TASK_PASS_THROUGH: u32 = 1;

/// In `btm_add_tasks`, an upstream id `BTM_IN_BATCH | j` names the task of
/// descriptor `j` of the same call (counted from 0), whose id is not known
/// before the call: chains, fan-ins and any other graph within one array.
/// `j` must be below the index of the descriptor that names it; otherwise
/// the call fails with `UNKNOWN_UPSTREAM`. No issued id has this bit, and
/// `btm_add_task` rejects an id with it as `UNKNOWN_UPSTREAM`.
pub const BTM_IN_BATCH: btm_task_id = 0x8000_0000_0000_0000;

/// One task of `btm_add_tasks`: the arguments of `btm_add_task` (or, with
/// `BTM_TASK_PASS_THROUGH`, of `btm_add_pass_through_task`). A
/// zero-initialised descriptor plus `task_fn` is a task of priority 0 in the
/// default group with no upstream.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct btm_task_desc {
    /// The task function; required unless `flags` has
    /// `BTM_TASK_PASS_THROUGH`, in which case it must be NULL.
    pub task_fn: btm_task_fn,
    /// The task's userdata (a pass-through's payload); may be NULL.
    pub userdata: *mut c_void,
    /// Frees `userdata`, exactly once, as for `btm_add_task`; may be NULL.
    pub userdata_free: btm_free_fn,
    /// The task's group, by value: all zero is the default group.
    pub group: btm_group,
    /// Tasks that must complete first, as for `btm_add_task`: tasks added
    /// before this call, or `BTM_IN_BATCH | j` for the task of descriptor
    /// `j` of the same call, which must come before this descriptor. May be
    /// NULL when `upstream_len` is 0.
    pub upstream: *const btm_task_id,
    /// Number of ids in `upstream`.
    pub upstream_len: usize,
    /// Higher runs first, as for `btm_add_task`.
    pub priority: i32,
    /// 0 or `BTM_TASK_PASS_THROUGH`; other bits are rejected.
    pub flags: u32,
}

/// Reads one descriptor's arguments other than its userdata, checking
/// them (in the order `btm_add_tasks` documents).
///
/// # Safety
/// `d.upstream` NULL or valid for `d.upstream_len` reads, as long as `'a`.
unsafe fn read_spec<'a>(d: &btm_task_desc) -> Result<TaskSpec<'a>, btm_status> {
    let runs = match (d.flags, d.task_fn) {
        (0, Some(_)) => true,
        (0, None) => return Err(btm_status::BTM_STATUS_NULL_ARGUMENT),
        (BTM_TASK_PASS_THROUGH, None) => false,
        _ => return Err(btm_status::BTM_STATUS_INVALID_ARGUMENT),
    };
    // SAFETY: a field of a readable descriptor.
    let group = unsafe { read_group(&d.group) }?;
    // SAFETY: caller contract.
    let upstream = unsafe { read_ids(d.upstream, d.upstream_len) }?;
    Ok(TaskSpec { priority: d.priority, group, upstream, runs })
}

/// A `btm_add_tasks` array as the engine's [`Batch`], read in place. It
/// owns every descriptor's userdata from its making: the engine takes the
/// jobs in order, and whatever it did not take (all of them when the call
/// fails) is freed when it drops, after the engine's lock was released.
struct Descs<'a> {
    descs: &'a [btm_task_desc],
    /// Every descriptor passed `check` (the engine is given only such an
    /// array: `spec` reads them without checking again).
    checked: bool,
    /// The engine took the jobs of `descs[..taken]`.
    taken: usize,
    /// `check` found every descriptor a task with a function and the
    /// first one's group, with no upstream task or only the one before it
    /// (see [`Batch::uniform`]).
    uniform: Option<Uniform>,
}

impl<'a> Descs<'a> {
    /// # Safety
    /// Every descriptor's `upstream` NULL or valid for `upstream_len`
    /// reads, as long as `'a`; the userdatas owned by nothing else.
    unsafe fn new(descs: &'a [btm_task_desc]) -> Descs<'a> {
        Descs { descs, checked: false, taken: 0, uniform: None }
    }

    /// The first bad descriptor's error, in array order.
    fn check(&mut self) -> Result<(), btm_status> {
        // The common batches first: every descriptor a task with a
        // function and the first one's group, field for field, with no
        // upstream task or only the one before it; then the first one's
        // checks hold for all (`bench/paths.sh`: lanebulk add 105.0 -> 80.0
        // instructions per task, against reading each descriptor as below).
        if let Some(first) = self.descs.first() {
            let mut like_first = true;
            let mut one_priority = true;
            let mut links = false;
            for (i, d) in self.descs.iter().enumerate() {
                // No upstream task, or only the one before (a chain's link).
                let upstream_ok = d.upstream_len == 0
                    || (d.upstream_len == 1
                        && i > 0
                        && !d.upstream.is_null()
                        // SAFETY: non-NULL, and valid for one read by
                        // `new`'s contract.
                        && unsafe { *d.upstream } == BTM_IN_BATCH | (i as u64 - 1));
                if !(upstream_ok && d.flags == 0 && d.task_fn.is_some() && d.group == first.group) {
                    // (Graphs find out at their first join.)
                    like_first = false;
                    break;
                }
                one_priority &= d.priority == first.priority;
                links |= d.upstream_len != 0;
            }
            // SAFETY: `new`'s contract.
            if like_first && unsafe { read_spec(first) }.is_ok() {
                self.uniform = Some(Uniform { one_priority, links });
                self.checked = true;
                return Ok(());
            }
        }
        for d in self.descs {
            // SAFETY: `new`'s contract.
            unsafe { read_spec(d) }?;
        }
        self.checked = true;
        Ok(())
    }
}

impl<'a> Batch<'a> for Descs<'a> {
    fn count(&self) -> usize {
        self.descs.len()
    }

    /// What `read_spec` reads, without its checks: `check` passed.
    #[inline(always)]
    fn spec(&self, i: usize) -> TaskSpec<'a> {
        assert!(self.checked, "the engine reads only a checked array");
        let d = &self.descs[i];
        let upstream = if d.upstream_len == 0 {
            &[]
        } else {
            // SAFETY: `new`'s contract, and `check` found `upstream`
            // non-NULL with a length that can be addressed.
            unsafe { std::slice::from_raw_parts(d.upstream, d.upstream_len) }
        };
        TaskSpec {
            priority: d.priority,
            group: group_key(&d.group).unwrap_or(GroupKey::DEFAULT),
            upstream,
            runs: d.task_fn.is_some(),
        }
    }

    fn priority(&self, i: usize) -> i32 {
        self.descs[i].priority
    }

    fn upstream_len(&self, i: usize) -> usize {
        self.descs[i].upstream_len
    }

    fn uniform(&self) -> Option<Uniform> {
        self.uniform
    }

    fn take_job(&mut self, i: usize) -> Job {
        assert_eq!(i, self.taken, "jobs are taken once each, in order");
        self.taken += 1;
        let d = &self.descs[i];
        Job { run: d.task_fn, data: Owned::new(d.userdata, d.userdata_free) }
    }
}

impl Drop for Descs<'_> {
    fn drop(&mut self) {
        for d in &self.descs[self.taken..] {
            drop(Owned::new(d.userdata, d.userdata_free));
        }
    }
}

/// Adds `count` tasks in one call (one lock section), all of them or none,
/// and writes their ids, in order, to `task_ids_out`. Cheaper per task than
/// `btm_add_task` (one boundary crossing and one lock for the whole array),
/// which matters most through P/Invoke or ctypes. A large array holds btm's
/// lock for its whole length (workers finishing tasks wait meanwhile):
/// arrays of a few hundred to a few thousand tasks are the sweet spot.
///
/// - `tasks`: `count` descriptors (see `btm_task_desc`); btm reads them
///   during the call only.
/// - Ownership of **every** descriptor's `userdata` passes to btm on every
///   call, as for `btm_add_task`: when the call fails, every userdata is
///   freed (on the calling thread, before returning), none is added and no
///   id is issued.
/// - Upstream ids must have been issued before this call, or name an
///   earlier descriptor of the same array as `BTM_IN_BATCH | j` (its index
///   `j`, counted from 0, below the naming descriptor's own): a whole graph
///   (chains, fan-ins) goes in one call, all of it or none. The ids of one
///   call are consecutive, in array order. A descriptor's `upstream` may
///   also point into `task_ids_out` (the ids of a batch before, chained):
///   every upstream id is read before the first id is written.
/// - `count` 0 adds nothing and returns OK (`tasks` and `task_ids_out` may
///   then be NULL).
///
/// Errors, checked in this order: `NULL_ARGUMENT` (manager, then
/// `task_ids_out`); `INVALID_ARGUMENT` (`tasks` NULL with a count: nothing
/// can be read, so nothing is freed); then the descriptors in array order,
/// the first bad one deciding, each checked for: `NULL_ARGUMENT`
/// (`task_fn` missing) or `INVALID_ARGUMENT` (unknown `flags` bits,
/// `task_fn` set on a pass-through), then `INVALID_GROUP` (a `kind` out of
/// range, or a non-zero `reserved`), then `INVALID_ARGUMENT` (`upstream`
/// NULL with a length); then `SHUT_DOWN`; then again the descriptors in array order, each checked for
/// `INVALID_GROUP` (a named group never interned), then `UNKNOWN_UPSTREAM`
/// (an id never issued, or a `BTM_IN_BATCH` index not below its own);
/// then `TOO_MANY_GROUPS` (the batch names more groups without a live task
/// than there are free group slots, see `btm_add_task`).
///
/// Threads: any, including inside a running task. Calls back the notify
/// callback when this call makes the first event available (see
/// `btm_set_notify`) and the `userdata_free` functions, after every btm
/// lock is released: of every
/// entry when the call fails, and of an entry whose upstream task already
/// failed (that task fails at once, as with `btm_add_task`). A `count` too
/// large to address (more than `PTRDIFF_MAX` bytes of descriptors) is
/// `INVALID_ARGUMENT` and frees nothing, as with `tasks` NULL.
///
/// # Safety
/// `manager` NULL or live; `tasks` NULL or valid for `count` reads, each
/// descriptor's `upstream` NULL or valid for `upstream_len` reads;
/// `task_ids_out` NULL or valid for `count` writes; the function pointers
/// safe to call from any thread.
#[no_mangle]
pub unsafe extern "C" fn btm_add_tasks(
    manager: *mut Manager,
    tasks: *const btm_task_desc,
    count: usize,
    task_ids_out: *mut btm_task_id,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        if count == 0 {
            let _m = manager_or_return!(manager);
            return btm_status::BTM_STATUS_OK;
        }
        if tasks.is_null() || count > isize::MAX as usize / std::mem::size_of::<btm_task_desc>() {
            // Nothing readable, so nothing to free.
            return if manager.is_null() || task_ids_out.is_null() {
                btm_status::BTM_STATUS_NULL_ARGUMENT
            } else {
                btm_status::BTM_STATUS_INVALID_ARGUMENT
            };
        }
        // SAFETY: non-NULL and valid for `count` reads per the contract;
        // the userdatas are btm's from here on: whatever the engine does not
        // take is freed when `batch` drops, on every return path below.
        let mut batch = unsafe { Descs::new(std::slice::from_raw_parts(tasks, count)) };
        let checked = batch.check();
        let m = manager_or_return!(manager);
        if task_ids_out.is_null() {
            return btm_status::BTM_STATUS_NULL_ARGUMENT;
        }
        if let Err(s) = checked {
            return s;
        }
        match m.add_batch(&mut batch) {
            Ok(ids) => {
                debug_assert_eq!(ids.end - ids.start, count as u64);
                // Written once every task was added: a descriptor's
                // upstream array may be the `task_ids_out` of this very
                // call (the ids of a batch before).
                for (k, id) in ids.enumerate() {
                    // SAFETY: non-NULL (checked above) and valid for
                    // `count` writes per the contract; `k < count`.
                    unsafe { task_ids_out.add(k).write(id) };
                }
                btm_status::BTM_STATUS_OK
            }
            Err(e) => e.into(),
        }
    })
}

/// Writes a stop report if asked for.
///
/// # Safety
/// `out` NULL or writable.
unsafe fn report(out: *mut btm_stop_report, r: StopReport) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(r.into()) };
    }
}

/// Stops a task. With `stop_upstream` / `stop_downstream` (the original's
/// defaults are both true) the stop spreads transitively to the tasks
/// upstream / downstream of every stopped task. Stopped tasks get no event,
/// ever: after this returns, no event of theirs is delivered, even one
/// already queued, and no `group finished` results from the stop. A task
/// already running keeps running to the end; its outcome is dropped.
/// Downstream tasks that are not stopped run without the stopped task's
/// result, as soon as they are otherwise ready.
///
/// `report_out` (optional) receives what was stopped, by state: zeroes
/// with `NOT_FOUND` (not an error: nothing was stopped).
///
/// Returns `OK`, or `NOT_FOUND` (not an error) when `task_id` is not a live
/// task (never issued, finished and polled, or already stopped). Errors:
/// `NULL_ARGUMENT` (manager).
///
/// Free functions of tasks that never ran run on the calling thread, after
/// btm's locks are released (they may call btm). Threads: any, including
/// inside a task.
///
/// # Safety
/// `manager` NULL or live; `report_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_stop_task(
    manager: *mut Manager,
    task_id: btm_task_id,
    stop_upstream: bool,
    stop_downstream: bool,
    report_out: *mut btm_stop_report,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return_held!(manager);
        match m.stop_task(task_id, stop_upstream, stop_downstream) {
            Ok(r) => {
                // SAFETY: caller contract.
                unsafe { report(report_out, r) };
                btm_status::BTM_STATUS_OK
            }
            Err(e) => {
                // SAFETY: caller contract.
                unsafe { report(report_out, StopReport::default()) };
                e.into()
            }
        }
    })
}

/// Stops every live task of `group` (NULL: the default group), spreading
/// upstream/downstream as `btm_stop_task` does. Cost: proportional to the
/// group's size, whatever else is queued.
///
/// Returns `OK`, or `NOT_FOUND` when the group has no live task (the
/// report, if asked for, then holds zeroes). Errors:
/// `NULL_ARGUMENT`, `INVALID_GROUP`. Free functions and threads as
/// `btm_stop_task`.
///
/// Memory: a stop that releases 65,536 tasks or more (this or
/// `btm_stop_all_tasks`) gives btm's own memory for them back to the system
/// before returning; after a smaller one btm keeps it for the next adds (at
/// most two 128 KB blocks for good; the rest goes back with a later batch
/// or once no task is left). The blocks your free functions free go back to
/// your allocator, which keeps them for reuse as usual (btm does not trim
/// the process heap).
///
/// # Safety
/// `manager` NULL or live; `group` NULL or readable; `report_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn btm_stop_task_group(
    manager: *mut Manager,
    group: *const btm_group,
    stop_upstream: bool,
    stop_downstream: bool,
    report_out: *mut btm_stop_report,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return_held!(manager);
        // SAFETY: caller contract.
        let key = match unsafe { read_group(group) } {
            Ok(k) => k,
            Err(s) => return s,
        };
        match m.stop_group(key, stop_upstream, stop_downstream) {
            Ok(r) => {
                // SAFETY: caller contract.
                unsafe { report(report_out, r) };
                btm_status::BTM_STATUS_OK
            }
            Err(e) => {
                // SAFETY: caller contract.
                unsafe { report(report_out, StopReport::default()) };
                e.into()
            }
        }
    })
}

/// Stops every live task (ids are not reused afterwards). Always `OK` for a
/// live manager, even with nothing to stop; the manager keeps working.
///
/// Errors: `NULL_ARGUMENT`. Free functions and threads as `btm_stop_task`.
///
/// # Safety
/// `manager` NULL or live; `report_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn btm_stop_all_tasks(manager: *mut Manager, report_out: *mut btm_stop_report) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return_held!(manager);
        let r = m.stop_all();
        // SAFETY: caller contract.
        unsafe { report(report_out, r) };
        btm_status::BTM_STATUS_OK
    })
}

/// Changes the priority of a task that has not started (queued or blocked);
/// it then competes with its new priority (among equal priorities, still in
/// the order added). A task waiting in one of the lock-free queues (see
/// `btm_add_task`) moves to btm's locked queue, unless the new priority is
/// its own: it keeps its place, and costs a little more to run from there.
///
/// Returns `OK`, `NOT_FOUND` (not live), `NOT_QUEUED` (running or finished).
/// Errors: `NULL_ARGUMENT`. Threads: any. Calls back only the notify callback, when this call makes the
/// first event available (see `btm_set_notify`).
///
/// # Safety
/// `manager` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn btm_set_task_priority(
    manager: *mut Manager,
    task_id: btm_task_id,
    priority: i32,
) -> btm_status {
    ffi_guard!(btm_status::BTM_STATUS_PANIC, {
        let m = manager_or_return!(manager);
        match m.set_priority(task_id, priority) {
            Ok(()) => btm_status::BTM_STATUS_OK,
            Err(e) => e.into(),
        }
    })
}
