//! The task engine: plain Rust, no C types beyond the host's own pointers.
//!
//! One mutex guards the whole scheduling state ([`State`]); every operation
//! holds it for O(log n) or O(work done) and never calls host code while
//! holding it. Host code (task functions, free functions, hooks) always runs
//! after the lock is released, so it may call back into the manager. The
//! exception is the lane (`lane.rs`): independent tasks, which workers take, run and
//! finish without the lock (their outcomes are applied under it later).
//!
//! A task is *live* from its add until the host polls its final event or it
//! is stopped. Its record stays in the [`table::Table`] while live; events in
//! the queue only carry ids and are validated against the table when polled,
//! which is how a stop withdraws events already queued.

mod events;
mod foreign;
mod fork;
mod group;
mod ids;
mod lane;
mod pages;
mod ready;
mod signal;
mod slab;
mod table;
#[cfg(windows)]
mod win;

pub use foreign::{Failure, FreeFn, Job, Owned, ResultSet, TaskFn, Value};
pub use group::{GroupKey, GroupKind};
pub use signal::{Notify, RawSignal, TaskHookFn, TaskHooks};

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_void, CStr, CString};
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use events::{Ev, Events};
use group::{GroupRun, GroupTable};
use ids::Ids;
use lane::{AttachTo, ContRef, Lane, LevelRef, Padded, Take, WorkerLane, NO_PRIORITY};
use ready::ReadyQueue;
use signal::{EventFd, Signal};
use slab::{LinkId, Slab};
use table::Table;

/// `max_threads` of 0 means this many, as in the original.
pub const DEFAULT_MAX_THREADS: usize = 8;
/// Largest accepted `max_threads`.
pub const MAX_THREADS_LIMIT: usize = 1024;

/// In a batch ([`Manager::add_batch`], [`Manager::add_many`]), an upstream
/// id `IN_BATCH | j` names the batch's own task `j` (counted from 0), which
/// must come before the task that names it. Issued ids never reach this bit
/// (one add per id), so it names no issued task anywhere else.
pub const IN_BATCH: u64 = 1 << 63;

/// Why an engine operation did not do what was asked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The task or group is unknown or no longer live (not an error for stops).
    NotFound,
    /// An upstream id was never issued by this manager.
    UnknownUpstream,
    /// A named group that was never interned by this manager.
    InvalidGroup,
    /// The manager has been shut down.
    ShutDown,
    /// `shut_down` was already called.
    AlreadyShutDown,
    /// The wait ended before the condition held.
    TimedOut,
    /// The call would wait for the calling task itself.
    WouldDeadlock,
    /// `max_threads` is negative or absurdly large.
    InvalidThreadCount,
    /// The task exists but is not queued (running or finished).
    NotQueued,
    /// The task's group would be a new one while 2^24 groups already have
    /// live tasks.
    TooManyGroups,
}

/// One task of [`Manager::add_many`]: the arguments of [`Manager::add`].
pub struct NewTask<'a> {
    /// The task function and its data (or a pass-through's payload).
    pub job: Job,
    /// Higher runs first.
    pub priority: i32,
    /// The task's group.
    pub group: GroupKey,
    /// Tasks that must complete first: issued before the batch, or
    /// [`IN_BATCH`]` | j` for the batch's own task `j`, before this one.
    pub upstream: &'a [u64],
}

/// The tasks of one [`Manager::add_batch`] call, read where the caller
/// keeps them (for the FFI, the host's descriptor array) rather than
/// copied into a vector first. The engine reads every task's
/// [`Batch::spec`] for its checks and, once all passed, takes each task's
/// job once, in order, as it adds the task.
pub trait Batch<'a> {
    /// How many tasks.
    fn count(&self) -> usize;
    /// Task `i`'s arguments other than its job: the same each time it is
    /// asked for (the engine reads them for its checks, then again as it
    /// adds the task; a batch that changed them in between would make an
    /// add that was checked fail, which panics).
    fn spec(&self, i: usize) -> TaskSpec<'a>;
    /// Task `i`'s priority, as [`Batch::spec`] gives it.
    fn priority(&self, i: usize) -> i32 {
        self.spec(i).priority
    }
    /// How many upstream ids task `i` names, as [`Batch::spec`] gives them.
    fn upstream_len(&self, i: usize) -> usize {
        self.spec(i).upstream.len()
    }
    /// Task `i`'s job (its function and data), taken once, in order, and
    /// only after every check of the batch passed.
    fn take_job(&mut self, i: usize) -> Job;
    /// `Some` only if every task has task 0's group and runs a function,
    /// and has no upstream task or, for task `i > 0`, only the one before
    /// it (`IN_BATCH | (i - 1)`: chains), as [`Batch::spec`] gives them (a
    /// batch that read them all may know): the engine then checks task 0
    /// for all of them. `None` (the default) makes it check each task. An
    /// implementation must not answer `Some` for a batch that is not so:
    /// the engine skips the other tasks' checks, and may then put tasks in
    /// the wrong group or level, or panic (a safe trait: nothing unsound
    /// follows). The FFI's batch answers from a pass over every field.
    fn uniform(&self) -> Option<Uniform> {
        None
    }
}

/// What [`Batch::uniform`] tells of a batch whose tasks all have task 0's
/// group and run a function, each with no upstream task or only the one
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uniform {
    /// Every task also has task 0's priority.
    pub one_priority: bool,
    /// Some task names the one before it (else none has an upstream task).
    pub links: bool,
}

impl Uniform {
    /// Whether task `i`'s `upstream` is one that [`Batch::uniform`] allows.
    pub fn allows(i: usize, upstream: &[u64]) -> bool {
        match upstream {
            [] => true,
            &[u] => i > 0 && u == IN_BATCH | (i as u64 - 1),
            _ => false,
        }
    }
}

/// A task of a [`Batch`]: the arguments of [`Manager::add`] but its job.
#[derive(Clone, Copy)]
pub struct TaskSpec<'a> {
    /// Higher runs first.
    pub priority: i32,
    /// The task's group.
    pub group: GroupKey,
    /// Tasks that must complete first: issued before the batch, or
    /// [`IN_BATCH`]` | j` for the batch's own task `j`, before this one.
    pub upstream: &'a [u64],
    /// The job runs a function (false: a pass-through).
    pub runs: bool,
}

/// The lane gates of a batch's priorities (see [`State::lane_gates`]):
/// `priorities[k]`'s is `gates[k]`, for `k < len`.
struct LaneGates {
    priorities: [i32; lane::LEVELS],
    gates: [Option<(u8, LevelRef)>; lane::LEVELS],
    len: usize,
}

impl LaneGates {
    #[inline(always)]
    fn find(&self, priority: i32) -> Option<(u8, LevelRef)> {
        let k = self.priorities[..self.len].iter().position(|&p| p == priority)?;
        self.gates[k]
    }
}

/// Notes lane entry `pos` of level `level`, pushed unpublished by a batch,
/// in `State::lane_batch` (`unpublished`).
#[inline(always)]
fn note_unpublished(unpublished: &mut [Option<(u64, u64)>; lane::LEVELS], level: u8, pos: u64) {
    match &mut unpublished[level as usize] {
        Some((_, last)) => {
            debug_assert_eq!(*last + 1, pos, "a batch's entries of one level are consecutive");
            *last = pos;
        }
        range @ None => *range = Some((pos, pos)),
    }
}

/// What [`State::check_many`] found out about a batch.
struct BatchShape {
    /// Every task has the first one's priority.
    one_priority: bool,
    /// No task has an upstream task, and each runs a function.
    independent: bool,
    /// Each task runs a function and has no upstream task or, as its only
    /// one, the task before it in the batch ([`IN_BATCH`]` | (i - 1)`).
    chains: bool,
    /// Every task is in the first one's group.
    one_group: bool,
    /// A task names an upstream task with [`IN_BATCH`].
    own: bool,
}

/// A batch held in a vector: each task's arguments and its job (`None`
/// once taken; what the engine did not take drops with the vector).
impl<'a> Batch<'a> for Vec<(TaskSpec<'a>, Option<Job>)> {
    fn count(&self) -> usize {
        self.len()
    }

    fn spec(&self, i: usize) -> TaskSpec<'a> {
        self[i].0
    }

    fn take_job(&mut self, i: usize) -> Job {
        self[i].1.take().expect("a job is taken once")
    }

    fn uniform(&self) -> Option<Uniform> {
        let (t, _) = self.first()?;
        let like = |(i, (s, _)): (usize, &(TaskSpec<'_>, Option<Job>))| {
            s.runs && s.group == t.group && Uniform::allows(i, s.upstream)
        };
        self.iter().enumerate().all(like).then(|| Uniform {
            one_priority: self.iter().all(|(s, _)| s.priority == t.priority),
            links: self.iter().any(|(s, _)| !s.upstream.is_empty()),
        })
    }
}

/// Host callbacks run on worker threads, with their shared userdata.
pub struct ThreadHooks {
    /// Called on each new worker thread before it runs any task.
    pub on_start: Option<unsafe extern "C" fn(*mut c_void, u32)>,
    /// Called on each worker thread just before it exits.
    pub on_stop: Option<unsafe extern "C" fn(*mut c_void, u32)>,
    /// Userdata for both hooks, freed when the manager is dropped.
    pub data: Owned,
}

/// How a manager is created.
#[derive(Default)]
pub struct Config {
    /// Maximum worker threads; 0 means [`DEFAULT_MAX_THREADS`].
    pub max_threads: usize,
    /// Whether tasks start running as soon as they are added.
    pub start_processing: bool,
    /// Optional worker thread hooks.
    pub thread_hooks: Option<ThreadHooks>,
}

/// What a stop did, by the state each stopped task was in.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Tasks stopped before they started (queued or blocked).
    pub before_start: u64,
    /// Tasks stopped while running (they run to the end; outcome dropped).
    pub while_running: u64,
    /// Tasks that had finished but whose final event was not yet polled
    /// (the event is withdrawn).
    pub after_finish: u64,
}

impl StopReport {
    /// Number of tasks the stop reached.
    pub fn total(&self) -> u64 {
        self.before_start + self.while_running + self.after_finish
    }
}

/// Counts describing the manager (or one group) at one moment.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ready tasks waiting for a worker.
    pub queued: u64,
    /// Tasks waiting for upstream tasks.
    pub blocked: u64,
    /// Tasks running on a worker.
    pub running: u64,
    /// Events waiting to be polled: final events (completed, failed),
    /// progress events, and a `group finished` that a full poll left queued.
    /// (Per group, as [`Manager::group_stats`]'s last count: tasks whose
    /// final event is waiting.)
    pub undelivered: u64,
    /// Tasks completed since creation (events delivered or not).
    pub completed_total: u64,
    /// Tasks failed since creation (including cascades).
    pub failed_total: u64,
    /// Tasks stopped since creation.
    pub stopped_total: u64,
    /// Worker threads alive.
    pub threads: u64,
    /// Worker threads the system refused to create.
    pub spawn_failures: u64,
}

/// The kind of a polled event.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A task completed; `values` is its result.
    Completed,
    /// A task failed (itself or through an upstream).
    Failed,
    /// The last live task of a group finished.
    GroupFinished,
    /// A running task reported progress.
    Progress,
}

/// One polled event. Pointers stay valid until the next poll on the same
/// manager (or until the manager is dropped).
#[derive(Copy, Clone, Debug)]
pub struct EventView {
    /// What happened.
    pub kind: EventKind,
    /// The task (0 for group finished).
    pub task_id: u64,
    /// The task's group, or the group that finished.
    pub group: GroupKey,
    /// Name of a named group (NUL-terminated), or NULL.
    pub group_name: *const c_char,
    /// Completed: the result entries.
    pub values: *const Value,
    /// Number of entries at `values`.
    pub value_count: usize,
    /// Failed: the message; progress: the message or NULL.
    pub message: *const c_char,
    /// Failed: the details.
    pub details: *const c_char,
    /// Progress: the fraction reported.
    pub progress: f64,
}

impl EventView {
    fn new(kind: EventKind, task_id: u64, group: GroupKey, group_name: *const c_char) -> Self {
        EventView {
            kind,
            task_id,
            group,
            group_name,
            values: std::ptr::null(),
            value_count: 0,
            message: std::ptr::null(),
            details: std::ptr::null(),
            progress: 0.0,
        }
    }
}

/// The outcome of running a task.
enum Outcome {
    Completed(Option<Arc<ResultSet>>),
    Failed(Failure),
}

/// Edges and inputs of a task that has upstream or downstream tasks.
#[derive(Default)]
struct Links {
    /// Upstream tasks that were live when this task was added.
    upstream: Ids,
    /// Tasks added later that named this one as upstream (ascending ids).
    downstream: Ids,
    /// Upstream results, in completion order.
    received: Received,
    /// Upstream tasks not yet completed, while the task is queued on the
    /// locked path (`Body::Waiting`: a task that waits for any has a link
    /// record; a queued continuation's single upstream is in its `Cont`
    /// record).
    waiting: u32,
    /// The task's priority while it is `Body::Waiting` (see [`Body`]).
    priority: i32,
}

// Six words (48 bytes of fields): `waiting` and a waiting task's `priority`
// moved here from the task's own record, which lost a word on every task
// for each.
const _: () = assert!(mem::size_of::<Links>() == 48);

/// The upstream results a linked task has received, in completion order.
/// Boxed (8 bytes in the link record, which every linked task has; most
/// receive no result), allocated when the first result arrives.
#[derive(Default)]
#[allow(clippy::box_collection)] // 8 bytes, not 24: on purpose
struct Received(Option<Box<Vec<Arc<ResultSet>>>>);

impl Links {
    /// The link record of edges kept in a body (see
    /// [`Body::implicit_edges`]).
    fn implicit((up, down): (u64, u64)) -> Links {
        let one = |id| if id == 0 { Ids::Empty } else { Ids::One(id) };
        Links { upstream: one(up), downstream: one(down), ..Links::default() }
    }
}

impl Received {
    fn from_vec(v: Vec<Arc<ResultSet>>) -> Self {
        Received((!v.is_empty()).then(|| Box::new(v)))
    }

    fn is_empty(&self) -> bool {
        self.0.as_ref().map_or(true, |v| v.is_empty())
    }

    fn push(&mut self, r: Arc<ResultSet>) {
        self.0.get_or_insert_with(Box::default).push(r);
    }

    /// The results, leaving none.
    fn take(&mut self) -> Vec<Arc<ResultSet>> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

/// A task's group: the index of its slot in `State::groups`, in three
/// bytes (see [`Body`]; `GroupTable` keeps slot indices below
/// [`group::MAX_GROUP_SLOTS`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct GroupIx([u8; 3]);

impl GroupIx {
    #[inline(always)]
    fn new(index: u32) -> Self {
        debug_assert!(index < group::MAX_GROUP_SLOTS);
        let [a, b, c, _] = index.to_le_bytes();
        GroupIx([a, b, c])
    }

    #[inline(always)]
    fn get(self) -> u32 {
        let [a, b, c] = self.0;
        u32::from_le_bytes([a, b, c, 0])
    }
}

/// A task's record: what it is doing, its group, and its link record
/// (`links`: its entry in `State::links`, if it has upstream or downstream
/// tasks that its body does not keep).
///
/// Four words. `#[repr(u8)]` lays each variant out as a C struct after the
/// tag byte, and every variant starts with the same fields: `group` (three
/// bytes, right after the tag), then `links` (four bytes; for a `Pending`
/// task, which has no link record, its `priority`). The rest is a 24-byte
/// payload (a job, a lane position, a result), its 8-byte fields first.
/// The table's pages are most of what a flood of tasks costs the adding
/// thread (PERFORMANCE.md: 48 -> 40 bytes took W1 100k from 80.9 to 69.6
/// ns per task, 40 -> 32 a few percent more), hence the packing:
/// - a task's priority is kept only where it is read, for a queued task of
///   the locked path: in the record of a `Pending` one, in the link record
///   of a `Waiting` one, in the lane level of a `Lane` one and in the
///   `lane::Cont` record of a continuation;
/// - a queued task of the locked path with a link record is `Waiting`,
///   without one `Pending` (its job is in the record either way).
#[repr(u8)]
enum Body {
    /// Queued on the locked path without a link record (so ready: no
    /// upstream task to wait for, and no downstream task yet).
    Pending {
        group: GroupIx,
        priority: i32,
        job: Job,
    },
    /// As `Pending`, with a link record, which holds its priority and the
    /// count of upstream tasks it waits for.
    Waiting {
        group: GroupIx,
        links: LinkId,
        job: Job,
    },
    /// In the lane (see `lane`): queued in slot `pos` of lane level `level`
    /// (the job is there), or claimed by a worker (running, or finished
    /// with its outcome in the worker's outcome queue), which the slot tells.
    Lane {
        group: GroupIx,
        links: Option<LinkId>,
        pos: u64,
        /// Its continuation, or a task added while it was in the lane with
        /// it as an upstream task (a fan-in's, see `State::add_linked`), if
        /// it has one and no link record (see [`Body::implicit_edges`]); 0
        /// if none.
        down: u64,
        level: u8,
        /// Counted in `State::lane_linked` (claimed, or waiting in an
        /// overflow, with downstream tasks on the locked path; a queued
        /// ring entry is marked in its slot instead, see `lane::LINKED`).
        linked: bool,
    },
    /// A continuation (see `lane::Cont`): queued, attached to its only
    /// upstream task, or claimed by the worker that finished that one
    /// (running, or its outcome in the worker's queue), which the record
    /// tells.
    Cont {
        group: GroupIx,
        links: Option<LinkId>,
        rec: ContRef,
        /// As for `Lane`.
        down: u64,
        /// As for `Lane`.
        linked: bool,
    },
    Running {
        group: GroupIx,
        links: Option<LinkId>,
        worker: u32,
    },
    Completed {
        group: GroupIx,
        links: Option<LinkId>,
        result: Option<Arc<ResultSet>>,
        /// Its upstream task, while it has no link record: a chain task
        /// that completed with its continuation already claimed keeps the
        /// edge of its record here (see [`Body::implicit_edges`]); 0 if
        /// none.
        up: u64,
        /// Its downstream task, while it has no link record: the claimed
        /// continuation of such a chain task, or a task added with it as an
        /// upstream task (a fan-in's) after it completed or while it was
        /// in the lane; 0 if none.
        down: u64,
    },
    Failed {
        group: GroupIx,
        links: Option<LinkId>,
        failure: Arc<Failure>,
    },
}

impl Body {
    /// Its link record, if it has one.
    #[inline(always)]
    fn links(&self) -> Option<LinkId> {
        match *self {
            Body::Pending { .. } => None,
            Body::Waiting { links, .. } => Some(links),
            Body::Failed { links, .. }
            | Body::Lane { links, .. }
            | Body::Cont { links, .. }
            | Body::Running { links, .. }
            | Body::Completed { links, .. } => links,
        }
    }

    /// Its group's slot index.
    #[inline(always)]
    fn group(&self) -> u32 {
        self.group_ix().get()
    }

    /// Its group, to carry into the next body.
    #[inline(always)]
    fn group_ix(&self) -> GroupIx {
        match *self {
            Body::Pending { group, .. }
            | Body::Waiting { group, .. }
            | Body::Failed { group, .. }
            | Body::Lane { group, .. }
            | Body::Cont { group, .. }
            | Body::Running { group, .. }
            | Body::Completed { group, .. } => group,
        }
    }

    /// The edges of a lane task, continuation or completed task that has
    /// no link record: (its upstream task, its downstream task), 0 for
    /// none. A chain in the lane keeps its edges here (the upstream in the
    /// continuation's record, the continuation in its upstream's body)
    /// instead of two link records per task, and so does a lane or
    /// completed task whose only downstream task was added while it was in
    /// the lane or after it completed (a fan-in's upstream task,
    /// typically), or was a continuation already
    /// claimed when it completed (a chain's task applied under the lock,
    /// see `State::finish`). They move to a link record
    /// ([`Links::implicit`]) before a lane task leaves the lane (a move to
    /// the locked path, a finish under the lock) or before any of these
    /// tasks gains another edge; a stop reads them where they are.
    /// Meaningless once the task has a link record.
    fn implicit_edges(&self) -> (u64, u64) {
        match self {
            Body::Lane { down, .. } => (0, *down),
            Body::Completed { up, down, .. } => (*up, *down),
            Body::Cont { rec, down, .. } => (rec.up(), *down),
            _ => (0, 0),
        }
    }

    fn implicit_down(&self) -> u64 {
        match self {
            Body::Lane { down, .. } | Body::Cont { down, .. } | Body::Completed { down, .. } => *down,
            _ => 0,
        }
    }
}

struct Task {
    /// What it is doing, its group and its link record (see [`Body`]).
    body: Body,
}

/// The priority of task `t` and the count of upstream tasks it waits for,
/// if it is queued on the locked path (one look at its link record, if it
/// has one).
#[inline(always)]
fn pending_of(links: &Slab<Links>, t: &Task) -> Option<(i32, u32)> {
    match t.body {
        Body::Pending { priority, .. } => Some((priority, 0)),
        Body::Waiting { links: li, .. } => {
            let l = links.get(li);
            Some((l.priority, l.waiting))
        }
        _ => None,
    }
}

// The table's record (`Option<Task>`): four words.
const _: () = assert!(mem::size_of::<Option<Task>>() == 32);

impl Task {
    /// Its entry in `State::links`, if it has upstream or downstream tasks
    /// that its body does not keep.
    #[inline(always)]
    fn links(&self) -> Option<LinkId> {
        self.body.links()
    }

    /// Its group's slot index.
    #[inline(always)]
    fn group(&self) -> u32 {
        self.body.group()
    }

    /// Gives the task link record `li` (it has none yet). A `Pending` task
    /// becomes `Waiting`, its priority moving into the record.
    fn set_links(&mut self, li: LinkId, links: &mut Slab<Links>) {
        match &mut self.body {
            Body::Pending { group, priority, job } => {
                links.get_mut(li).priority = *priority;
                let group = *group;
                // A null payload without a free function owns nothing.
                let job = mem::replace(job, Job::pass_through(Owned::new(std::ptr::null_mut(), None)));
                // The old body owns nothing now: spares `Body`'s drop glue.
                mem::forget(mem::replace(&mut self.body, Body::Waiting { group, links: li, job }));
            }
            Body::Waiting { .. } => unreachable!("a waiting task has a link record"),
            Body::Lane { links, .. }
            | Body::Cont { links, .. }
            | Body::Running { links, .. }
            | Body::Completed { links, .. }
            | Body::Failed { links, .. } => {
                debug_assert!(links.is_none());
                *links = Some(li);
            }
        }
    }
}

/// A task queued on the locked path: `Pending` with its priority, or
/// `Waiting` with link record `links` (which then holds the priority).
fn pending_body(links: &mut Slab<Links>, group: GroupIx, priority: i32, li: Option<LinkId>, job: Job) -> Body {
    match li {
        None => Body::Pending { group, priority, job },
        Some(li) => {
            links.get_mut(li).priority = priority;
            Body::Waiting { group, links: li, job }
        }
    }
}

struct Progress {
    fraction: f64,
    message: Option<CString>,
}

/// Host data released after the lock is dropped.
enum Garbage {
    Result(#[allow(dead_code)] Arc<ResultSet>),
    Results(#[allow(dead_code)] Vec<Arc<ResultSet>>),
    Failure(#[allow(dead_code)] Arc<Failure>),
    Outcome(#[allow(dead_code)] Outcome),
    Text(#[allow(dead_code)] Option<CString>),
    Hooks(#[allow(dead_code)] Arc<TaskHooks>),
    /// Task-table chunks detached with their tasks (a whole-table stop):
    /// given back if there are many, else emptied and kept for reuse.
    Tasks(Vec<table::TakenChunk<Task>>),
    /// Task-table chunks a stop emptied (every slot `None`, see
    /// [`table::Table::collect_freed`]): given back if there are many, else
    /// kept for reuse.
    Emptied(Vec<table::Slots<Task>>),
    /// Emptied task-table chunks beyond the spares (`Table::take_released`):
    /// given back, whatever their number.
    Released(Vec<table::Slots<Task>>),
    /// The member list of a large group that ended.
    Members(group::IdList),
    /// An emptied event queue that had grown past [`EVENTS_KEEP`].
    Events(#[allow(dead_code)] Events),
    /// An emptied progress map that had grown past [`EVENTS_KEEP`] entries.
    Progress(#[allow(dead_code)] HashMap<u64, Progress>),
    /// Host pointers of a large stop that a worker ended inside host code
    /// left (see `After::adopt`).
    Frees(#[allow(dead_code)] pages::MappedVec<Owned>),
}

/// Entries of event-queue capacity kept once the queue is empty (16 bytes
/// each, see `events::Entry`): a burst of events that do not form runs of
/// consecutive ids (a million tasks finishing out of id order queue a
/// million entries) gives its memory back when it has been polled or
/// stopped.
const EVENTS_KEEP: usize = 4096;

/// Work to do once the state lock is released. Most operations need only
/// the flags; the vectors (and the notify call) live in a box created on
/// first use, so that an empty `After` costs a few stores to make and check.
#[derive(Default)]
struct After {
    heavy: Option<Box<Heavy>>,
    wake: u32,
    wake_all: bool,
    /// Wake host threads blocked in a wait.
    wake_host: bool,
    /// Tell spinning workers that work arrived (done by `run_after` itself,
    /// so not part of `is_empty`).
    hint: bool,
}

thread_local! {
    /// The innermost poll running host code (free functions) on this
    /// thread, or null; each mark links to the one it is nested in: a free
    /// function of manager A's poll may poll B, whose free function polls A
    /// again (a review found a single entry forgot A there).
    static POLLING: Cell<*const PollMark> = const { Cell::new(std::ptr::null()) };
}

/// Marks this thread as running host code for a poll of one manager, while
/// [`PollMark::enter`]'s guard lives. A poll of a manager marked on this
/// thread (a free function that polls, directly or through another
/// manager's poll) delivers events but releases no previous result: the
/// results it would release are the ones the outer poll is about to return
/// to its caller (a review found them freed before the outer poll
/// returned). Both polls' results are then released by the next poll. The
/// marks live in the polls' stack frames, linked innermost first (a
/// `RefCell<Vec>` cost the poll 2 instructions per event in `bench/paths.sh`).
struct PollMark {
    manager: *const Manager,
    outer: Cell<*const PollMark>,
}

/// Unlinks a [`PollMark`] when dropped.
struct PollMarkGuard<'a>(&'a PollMark);

impl PollMark {
    fn new(m: &Manager) -> PollMark {
        PollMark { manager: m, outer: Cell::new(std::ptr::null()) }
    }

    /// Links this mark in as the innermost until the guard drops.
    fn enter(&self) -> PollMarkGuard<'_> {
        self.outer.set(POLLING.with(|p| p.replace(self)));
        PollMarkGuard(self)
    }

    fn inside(m: &Manager) -> bool {
        let mut p = POLLING.with(Cell::get);
        while !p.is_null() {
            // SAFETY: a linked mark lives in the frame of a poll that is
            // still running on this thread (its guard unlinks it first).
            let mark = unsafe { &*p };
            if std::ptr::eq(mark.manager, m) {
                return true;
            }
            p = mark.outer.get();
        }
        false
    }
}

impl Drop for PollMarkGuard<'_> {
    fn drop(&mut self) {
        POLLING.with(|p| p.set(self.0.outer.get()));
    }
}

thread_local! {
    /// How many notify callbacks this thread is running (nested through
    /// the btm calls they make).
    static NOTIFYING: Cell<u32> = const { Cell::new(0) };
}

/// Counts a notify call on this thread while it lives.
struct NotifyCall;

impl NotifyCall {
    fn enter() -> NotifyCall {
        NOTIFYING.with(|n| n.set(n.get() + 1));
        NotifyCall
    }
}

impl Drop for NotifyCall {
    fn drop(&mut self) {
        NOTIFYING.with(|n| n.set(n.get() - 1));
    }
}

/// Lets go of a notify callback that its manager no longer holds (replaced,
/// removed, or released by `btm_destroy`): waits until no call of it is in
/// progress on another thread, then frees its userdata, so that when
/// `btm_set_notify` returns, the old callback is not running and its
/// userdata is freed; a host may then tear down what it posts to. A call in
/// progress holds a clone of the `Arc`, taken in the lock section that
/// decided to call it; once the manager let go of it, no section takes a
/// new one, so the count only falls. Callbacks only post a message (the
/// header's contract), so the wait is short. From inside a notify callback
/// (which may be this very one, or one whose btm call made this one's),
/// it does not wait: the callback's userdata is then freed when the last
/// call of it returns, as before. Nor on a worker thread (a task, a hook
/// or a free function run there): a notify callback that shuts the
/// manager down waits for the workers to exit, and one of them would be
/// waiting for that callback (a review's case).
fn retire_notify(mut old: Arc<Notify>) {
    if NOTIFYING.with(Cell::get) > 0 || CURRENT.with(|c| !c.get().is_null()) {
        drop(old);
        return;
    }
    loop {
        // (`try_unwrap` succeeds only as the last owner, with acquire: every
        // call's end happens before the free function.)
        match Arc::try_unwrap(old) {
            Ok(notify) => {
                drop(notify);
                return;
            }
            Err(still_called) => {
                old = still_called;
                std::thread::yield_now();
            }
        }
    }
}

/// The rarely needed part of [`After`].
#[derive(Default)]
struct Heavy {
    /// Host pointers to free, in blocks of `FREE_BLOCK` so that a large stop
    /// reuses the heap memory its removed task chunks just gave back rather
    /// than faulting in one huge fresh vector.
    frees: Vec<Vec<Owned>>,
    /// A large stop's host pointers, ahead of `frees` (see
    /// [`After::reserve_frees`]).
    frees_mapped: Option<pages::MappedVec<Owned>>,
    garbage: Vec<Garbage>,
    spawn: Vec<(u32, Arc<WorkerLane>)>,
    /// Call the host's notify callback.
    notify: Option<Arc<Notify>>,
}

const FREE_BLOCK: usize = 1024;

/// Bytes of memory waiting for an idle worker at most (16 batches of
/// task-table chunks); beyond, the polling thread gives it back itself.
const MAX_QUEUED_RELEASE_BYTES: usize = 32 << 20;

impl Garbage {
    /// Bytes of btm's own memory it gives back (for the cap on what waits
    /// for an idle worker): emptied chunks and member lists.
    fn own_bytes(&self) -> usize {
        match self {
            Garbage::Released(chunks) | Garbage::Emptied(chunks) => chunks.len() * table::Slots::<Task>::bytes(),
            Garbage::Members(members) => members.heap_bytes(),
            _ => 0,
        }
    }
}

impl After {
    fn heavy(&mut self) -> &mut Heavy {
        self.heavy.get_or_insert_with(Default::default)
    }

    /// Host data to release after the lock.
    fn garbage(&mut self, g: Garbage) {
        self.heavy().garbage.push(g);
    }

    /// btm's own memory to release after the lock, before any host data
    /// (see `pages`: no large block of btm's is freed after host free
    /// functions freed many small ones, which makes glibc consolidate
    /// them).
    fn garbage_first(&mut self, g: Garbage) {
        self.heavy().garbage.insert(0, g);
    }

    /// Threads this operation will start.
    fn spawning(&self) -> usize {
        self.heavy.as_ref().map_or(0, |h| h.spawn.len())
    }

    fn free(&mut self, owned: Owned) {
        if owned.is_null() {
            return;
        }
        let heavy = self.heavy();
        let owned = match &mut heavy.frees_mapped {
            Some(mapped) => match mapped.push(owned) {
                Ok(()) => return,
                Err(owned) => owned,
            },
            None => owned,
        };
        let frees = &mut heavy.frees;
        match frees.last_mut() {
            Some(block) if block.len() < FREE_BLOCK => block.push(owned),
            _ => {
                let mut block = Vec::with_capacity(FREE_BLOCK);
                block.push(owned);
                frees.push(block);
            }
        }
    }

    /// Prepares for about `n` host pointers to free: a large stop (of a
    /// group, or of every task) collects them in one mapping rather than
    /// in heap blocks, which
    /// it gives back in one system call after their free functions ran, and
    /// without freeing heap blocks after them (see `pages`). Only before
    /// the first [`After::free`], so that they are freed in order.
    fn reserve_frees(&mut self, n: usize) {
        if n < pages::GIVE_BACK_MIN_BUFFERS * FREE_BLOCK {
            return;
        }
        let heavy = self.heavy();
        if heavy.frees.is_empty() && heavy.frees_mapped.is_none() {
            heavy.frees_mapped = Some(pages::MappedVec::with_capacity(n));
        }
    }

    fn is_empty(&self) -> bool {
        self.heavy.is_none() && self.wake == 0 && !self.wake_all && !self.wake_host
    }

    /// Takes over the host data `h` holds to free (see `State::orphaned`).
    fn adopt(&mut self, h: Heavy) {
        let Heavy { frees, frees_mapped, garbage, spawn, notify } = h;
        debug_assert!(spawn.is_empty() && notify.is_none());
        let heavy = self.heavy();
        heavy.frees.extend(frees);
        heavy.garbage.extend(garbage);
        if let Some(mapped) = frees_mapped {
            heavy.garbage.push(Garbage::Frees(mapped));
        }
    }
}

struct WorkerSlot {
    lane: Arc<WorkerLane>,
    /// The worker left its loop for good (set in its last lock section).
    exited: bool,
    /// The locked-path task the worker runs (0: none), from `take_next`
    /// to its `finish`.
    task: u64,
    /// Counted in `State::in_lane` (from `next_job`'s `Next::Lane` to the
    /// worker's next lock section), for [`Manager::worker_ended`].
    in_lane: bool,
    /// No longer counted in `State::threads` (it is exiting).
    leaving: bool,
    /// Its thread ended inside host code (see [`WorkerExit`]): its handle
    /// is let go of once the ending thread is done, not joined (the
    /// thread's start routine never returned).
    ended: bool,
    /// Its thread is being started and `spawn_worker` has not stored its
    /// handle yet: the slot is not reused meanwhile, even if the thread
    /// already ended (its handle would be paired with the next worker's
    /// slot; a review found that race).
    handle_pending: bool,
}

impl WorkerSlot {
    fn new(lane: Arc<WorkerLane>) -> WorkerSlot {
        WorkerSlot { lane, exited: false, task: 0, in_lane: false, leaving: false, ended: false, handle_pending: true }
    }
}

struct State {
    next_id: u64,
    next_group: u64,
    tasks: Table<Task>,
    /// Memory a poll left for an idle worker to give back to the system
    /// (see [`State::release_later`]).
    /// (Only `Garbage::Released` and `Garbage::Members`.)
    idle_release: Vec<Garbage>,
    /// Idle workers leave `idle_release` alone (a test's hold, see
    /// [`Manager::hold_idle_release_for_tests`]).
    idle_release_held: bool,
    /// Dependency links of the tasks that have any (`Task::links`).
    links: Slab<Links>,
    ready: ReadyQueue,
    groups: GroupTable,
    events: Events,
    /// Events in `events` that will really be delivered.
    deliverable: usize,
    progress: HashMap<u64, Progress>,
    /// Results and failures of the last poll, kept alive until the next one.
    delivered: Vec<Garbage>,
    processing: bool,
    shut_down: bool,
    /// A shut-down timed out: the workers it left inside a task finish
    /// alone (`btm_destroy` does not wait for them).
    left_running: bool,
    /// A worker's thread ended inside host code (see [`WorkerExit`]) and
    /// no host call has started its replacement yet: the host's next add
    /// (`provision_slow` on a host thread), wait or poll (`settle_ended`)
    /// does; meanwhile `provision` starts no thread, neither on the ending
    /// thread nor on other workers. Host code that ends threads is most
    /// often an interpreter shutting down (CPython), which a new worker
    /// would call into again, and CPython crashes a thread that calls it
    /// once the interpreter is gone. (Not raised for a worker that was
    /// exiting. A wait starts one round of threads, and another only after
    /// a worker ended inside a task: see `ended_in_task`.)
    ended_unreplaced: bool,
    /// Host data to free that a worker ended inside host code left (the
    /// userdata of tasks that failed with its task, results it released):
    /// freed by the host's next add, wait or poll, or by a shut-down (see
    /// `Manager::worker_ended`, which runs no host code).
    orphaned: Vec<Heavy>,
    /// Workers whose threads ended inside a task (which failed), for
    /// `wait_until`'s rule on replacing them.
    ended_in_task: u64,
    max_threads: usize,
    /// Worker threads counted against `max_threads` (alive or starting,
    /// not retiring).
    threads: usize,
    /// Worker threads whose OS thread has not finished exiting.
    alive: usize,
    /// Threads decided on but whose handle is not stored yet.
    spawning: usize,
    spinning: usize,
    /// Workers on the lane (taking tasks without the lock): those of them
    /// looking for a task (`WorkerLane::looking`) find new lane tasks
    /// themselves, so they count as coming for `provision`. While none
    /// is, a level given to another priority is first cleared of its
    /// cancelled entries (`State::lane_level_given`).
    in_lane: usize,
    /// The spinning workers' hint was raised since the last one began.
    hint_sent: bool,
    sleeping: usize,
    /// Sleeping workers already woken (still counted in `sleeping` until
    /// they run again): an add does not wake them again. A worker that
    /// wakes takes one off (saturating: a spurious wake-up may take one
    /// meant for another sleeper, which only costs a redundant wake).
    waking: usize,
    running: usize,
    pending: usize,
    workers: Vec<WorkerSlot>,
    handles: Vec<(u32, JoinHandle<()>)>,
    /// Handles of workers that exited, taken from `handles` by
    /// [`State::reap_retired`] under the lock and joined after it (by the
    /// next `spawn_worker`, or `join_workers`), each with its lane if it
    /// ended inside host code (see [`join_or_detach`]).
    reaped: Vec<(JoinHandle<()>, Option<Arc<WorkerLane>>)>,
    completed_total: u64,
    failed_total: u64,
    stopped_total: u64,
    spawn_failures: u64,
    /// Host waiters in `wait_events` / `wait_idle`.
    host_waiters: usize,
    /// Of those, the ones in `wait_events` and in `wait_idle`: they are woken
    /// only when their condition may hold, not by every change.
    event_waiters: usize,
    idle_waiters: usize,
    signal: Signal,
    task_hooks: Option<Arc<TaskHooks>>,
    lane: Arc<Lane>,
    /// Lane entries pushed, cancelled (stopped or moved to the locked
    /// path) and applied (outcomes taken from the workers' queues), since creation.
    lane_added: u64,
    lane_cancelled: u64,
    lane_applied: u64,
    /// Continuations attached and cancelled (moved to the locked path or
    /// stopped) since creation (with the workers' `cont_claims`: those
    /// still waiting for their upstream task).
    cont_added: u64,
    cont_cancelled: u64,
    /// Lane tasks (claimed, or waiting in an overflow) and claimed
    /// continuations that gained downstream tasks on the locked path: their
    /// outcomes must be applied at once (chains must not wait for the
    /// host's poll), and their workers do not know it, so every worker
    /// applies every outcome while this is above zero. (A lane task queued
    /// in a ring is marked in its slot instead, and only its own worker
    /// takes the lock: see `lane::LINKED`.) Every way off the lane uncounts
    /// one: its outcome's apply (`finish`), a stop (`stop_in_lane`), a move
    /// to the locked path (`lane_to_locked`).
    lane_linked: usize,
    /// Last published values of `Lane::lock_finish`, `Lane::locked_top`
    /// and `Lane::locked_gen`.
    lock_finish: bool,
    /// Whether the flag's last sync wanted every outcome applied (an idle
    /// waiter, `lane_linked`), not only the first that makes an event (see
    /// `State::apply_lane_for_waiters`): when that need comes while the
    /// flag is up already, outcomes left for the poll are applied then.
    finish_all: bool,
    locked_top: i64,
    locked_gen: u64,
    locked_gen_published: u64,
    /// The largest id pushed to the ready queue: a task pushed with a
    /// smaller one may have become its front (`Lane::locked_gen`).
    ready_max_id: u64,
    /// The lane levels made so far: (priority, level), by level index.
    lane_levels: Vec<(i32, LevelRef)>,
    /// The single add's lookup of `lane_levels`: slot `priority & 7` holds
    /// the last level found for a priority of those bits.
    lane_cache: [LaneCached; 8],
    /// Levels given to another priority so far (`Lane::reassign`).
    lane_reassigned: u64,
    /// While a batch of several priorities is added, lane entries are
    /// published at its end (workers choose among the whole batch, as on
    /// the locked path); see `Manager::add_many`.
    lane_batching: bool,
    /// Per lane level, the ring positions a batch pushed unpublished
    /// (first, last): a range, as only the batch pushes while it holds the
    /// lock, and a level's later entries wait in its overflow once one did.
    lane_batch: [Option<(u64, u64)>; lane::LEVELS],
    /// The last add put its task in the lane, or attached it as a
    /// continuation, and changed nothing else (`Manager::add` then skips
    /// the end-of-section sync).
    plain_lane_add: bool,
    /// A stop's walk is releasing downstream tasks: they become ready on
    /// the locked path, not in the lane (see `State::stop_reachable`).
    stop_releasing: bool,
    /// A finish is releasing several downstream tasks: those that go to
    /// the lane are pushed unpublished (noted in `lane_batch`) and
    /// published together after the walk, the highest level first, as a
    /// batch's (see `State::publish_released`).
    releasing_several: bool,
    /// Lane tasks and continuations claimed by workers whose slot a new
    /// worker took (see `State::worker_slot`).
    retired_claims: u64,
    retired_cont_claims: u64,
}

/// A task manager (`btm_manager` in C). Shared by the host handle and every
/// worker thread: each worker holds a reference, so dropping the host's
/// `Arc` alone does not stop anything. Call [`Manager::shut_down`] first
/// (the C API's `btm_destroy` does).
pub struct Manager {
    /// On cache lines of its own: workers on the lane read the other
    /// fields without the lock while the host takes it for every add.
    state: Padded<Mutex<State>>,
    work_cv: Condvar,
    host_cv: Condvar,
    /// Set (under the lock) when work arrives while a worker spins.
    work_hint: AtomicUsize,
    /// `Signal::gate` of the state, readable without the lock.
    poll_gate: Arc<Padded<AtomicBool>>,
    hooks: Option<ThreadHooks>,
    lane: Arc<Lane>,
    /// Tells this manager's copy in a child of `fork()` (see `fork.rs`).
    fork: fork::ForkGuard,
}

/// A lane entry popped and not yet given back (see
/// [`Manager::hold_lane_entry_for_tests`]).
#[doc(hidden)]
pub struct HeldLaneEntry {
    id: u64,
    level: LevelRef,
    pos: u64,
}

impl HeldLaneEntry {
    /// The held entry's task id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

thread_local! {
    /// The manager whose worker this thread is, if any.
    static CURRENT: Cell<*const Manager> = const { Cell::new(std::ptr::null()) };
    /// The index of the worker this thread is (meaningful with `CURRENT`).
    static CURRENT_INDEX: Cell<u32> = const { Cell::new(0) };
}

thread_local! {
    /// This thread's [`WorkerExit`] guard, armed while it is a worker.
    static WORKER_EXIT: WorkerExit = const {
        WorkerExit {
            manager: Cell::new(std::ptr::null()),
            lane: Cell::new(std::ptr::null()),
            index: Cell::new(0),
        }
    };
}

/// Tells a manager that one of its worker threads ended without returning
/// from `worker_main`: host code it called (a task, a free function, a
/// hook, the notify callback) ended the thread with `pthread_exit`, which
/// CPython does to any thread that asks for the GIL while the interpreter
/// shuts down. The host call's frame has no unwind information
/// (`foreign::no_unwind`), so glibc ends the thread there without
/// unwinding btm's frames, and runs the thread-local destructors: this
/// one hands the manager what the worker left ([`Manager::worker_ended`]).
/// Armed in `worker_main` with the references its frame holds, which the
/// lost frame can no longer drop, and disarmed when it returns.
struct WorkerExit {
    manager: Cell<*const Manager>,
    lane: Cell<*const WorkerLane>,
    index: Cell<u32>,
}

impl WorkerExit {
    fn arm(&self, manager: &Arc<Manager>, lane: &Arc<WorkerLane>, index: u32) {
        self.manager.set(Arc::as_ptr(manager));
        self.lane.set(Arc::as_ptr(lane));
        self.index.set(index);
    }

    fn disarm(&self) {
        self.manager.set(std::ptr::null());
        self.lane.set(std::ptr::null());
    }
}

impl Drop for WorkerExit {
    fn drop(&mut self) {
        let (manager, lane) = (self.manager.replace(std::ptr::null()), self.lane.replace(std::ptr::null()));
        if manager.is_null() {
            return;
        }
        // SAFETY: `worker_main`'s own references (armed from its
        // arguments), which its frame, ended with the thread, never
        // dropped: taken over here, once (the guard was disarmed above).
        let (manager, lane) = unsafe { (Arc::from_raw(manager), Arc::from_raw(lane)) };
        if manager.is_fork_copy() {
            // The only thread of a child that a task of this worker forked
            // (its `exit` runs this thread's destructors): the copy's
            // state is not the child's to settle (its lock may be held by
            // a thread the child does not have). Left as it is.
            mem::forget((manager, lane));
            return;
        }
        manager.worker_ended(self.index.get(), lane);
    }
}

/// Joins a worker's thread, or, for one that ended inside host code (see
/// [`WorkerExit`]; `ended` is its lane), waits until the ending thread let
/// go of the manager and then only lets go of its handle: its start
/// routine never returned, so `join` would find no result.
fn join_or_detach(handle: JoinHandle<()>, ended: Option<&WorkerLane>) {
    match ended {
        Some(lane) => {
            // (A few instructions after its last lock section, which
            // marked it exited: no host code runs in between.)
            while !lane.ended_done() {
                std::thread::yield_now();
            }
            drop(handle);
        }
        None => {
            let _ = handle.join();
        }
    }
}

thread_local! {
    /// The notify callbacks this thread is calling (innermost last): held
    /// here rather than in the calling frame, so that a thread ended inside
    /// one (see [`WorkerExit`]) still lets go of its reference when its
    /// thread-local values are dropped (`retire_notify` waits for every
    /// call's reference).
    static NOTIFY_CALLS: std::cell::RefCell<Vec<Arc<Notify>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls the host's notify callback, its reference held in the thread's
/// [`NOTIFY_CALLS`] meanwhile.
fn call_notify(n: Arc<Notify>) {
    let _calling = NotifyCall::enter();
    let p = Arc::as_ptr(&n);
    let mut n = Some(n);
    // (Held in the frame instead once the thread's values are being
    // dropped: a notify made by `Manager::worker_ended`.)
    let held = NOTIFY_CALLS.try_with(|c| c.borrow_mut().extend(n.take())).is_ok();
    // SAFETY: kept alive by the reference held (in the list or in `n`)
    // until the call returns.
    unsafe { (*p).call() };
    // Dropped outside the list's borrow (the last reference frees the
    // callback's userdata, whose free function may call btm).
    let popped = if held { NOTIFY_CALLS.try_with(|c| c.borrow_mut().pop()).ok().flatten() } else { None };
    drop(popped);
    drop(n);
}

/// An entry of `State::lane_cache`.
#[derive(Clone, Copy, Default)]
struct LaneCached {
    priority: i32,
    level: Option<(u8, LevelRef)>,
}

#[inline(always)]
fn lane_cache_slot(priority: i32) -> usize {
    (priority as u32 & 7) as usize
}

/// Adds since its last entry after which an empty lane level may be given
/// to another priority while workers take from the lane
/// (`State::lane_level_given`): a priority used at least this often keeps
/// its level. With the workers off the lane, any empty level may go.
const BUSY_GIVE_AGE: u64 = 256;

/// Spin iterations of a worker before it yields, and yields before it sleeps.
const SPIN_ITERS: u32 = 128;
const YIELD_ITERS: u32 = 64;

impl Manager {
    /// Creates a manager; no thread starts until a task is ready to run.
    pub fn new(config: Config) -> Result<Arc<Manager>, Error> {
        let max_threads = match config.max_threads {
            0 => DEFAULT_MAX_THREADS,
            n if n > MAX_THREADS_LIMIT => return Err(Error::InvalidThreadCount),
            n => n,
        };
        let signal = Signal { armed: true, ..Signal::default() };
        let poll_gate = Arc::clone(&signal.gate);
        let lane = Arc::new(Lane::new());
        if config.start_processing {
            lane.open();
        }
        Ok(Arc::new(Manager {
            state: Padded(Mutex::new(State {
                next_id: 1,
                next_group: 1,
                tasks: Table::new(),
                idle_release: Vec::new(),
                idle_release_held: false,
                links: Slab::new(),
                ready: ReadyQueue::default(),
                groups: GroupTable::new(),
                events: Events::default(),
                deliverable: 0,
                progress: HashMap::new(),
                delivered: Vec::new(),
                processing: config.start_processing,
                shut_down: false,
                left_running: false,
                ended_unreplaced: false,
                orphaned: Vec::new(),
                ended_in_task: 0,
                max_threads,
                threads: 0,
                alive: 0,
                spawning: 0,
                spinning: 0,
                in_lane: 0,
                hint_sent: false,
                sleeping: 0,
                waking: 0,
                running: 0,
                pending: 0,
                workers: Vec::new(),
                handles: Vec::new(),
                reaped: Vec::new(),
                completed_total: 0,
                failed_total: 0,
                stopped_total: 0,
                spawn_failures: 0,
                host_waiters: 0,
                event_waiters: 0,
                idle_waiters: 0,
                signal,
                task_hooks: None,
                lane: Arc::clone(&lane),
                lane_added: 0,
                lane_cancelled: 0,
                cont_added: 0,
                cont_cancelled: 0,
                lane_applied: 0,
                lane_linked: 0,
                lock_finish: false,
                finish_all: false,
                locked_top: NO_PRIORITY,
                locked_gen: 0,
                locked_gen_published: 0,
                ready_max_id: 0,
                lane_levels: Vec::new(),
                lane_cache: [LaneCached::default(); 8],
                lane_reassigned: 0,
                lane_batching: false,
                lane_batch: [None; lane::LEVELS],
                plain_lane_add: false,
                stop_releasing: false,
                releasing_several: false,
                retired_claims: 0,
                retired_cont_claims: 0,
            })),
            work_cv: Condvar::new(),
            host_cv: Condvar::new(),
            work_hint: AtomicUsize::new(0),
            poll_gate,
            hooks: config.thread_hooks,
            lane,
            fork: fork::ForkGuard::new(),
        }))
    }

    /// True in a child process made by `fork()` after this manager was
    /// made: its workers do not exist there and its lock may be held by
    /// one of them forever, so the C boundary refuses every call
    /// (`BTM_STATUS_FORKED`) before touching anything else. Always false
    /// where the system cannot wipe a page on fork (Linux before 4.14,
    /// other systems, a sandbox refusing `MADV_WIPEONFORK`).
    #[inline(always)]
    pub fn is_fork_copy(&self) -> bool {
        self.fork.inherited()
    }

    /// True on Windows while the process is ending, from `DllMain` or a
    /// DLL's global destructors: Windows has already ended every other
    /// thread, this manager's workers among them, so nothing may wait for
    /// them (`btm_destroy` returns at once). Always false elsewhere.
    pub fn process_is_exiting() -> bool {
        #[cfg(windows)]
        return win::process_is_exiting();
        #[cfg(not(windows))]
        false
    }

    /// True when the calling thread is one of this manager's workers.
    pub fn is_current_worker(&self) -> bool {
        CURRENT.with(|c| std::ptr::eq(c.get(), self))
    }

    fn locked<R>(self: &Arc<Self>, f: impl FnOnce(&mut State, &mut After) -> R) -> R {
        let mut after = After::default();
        let r = {
            let mut st = self.state.lock();
            let r = f(&mut st, &mut after);
            st.sync_signal(&mut after);
            r
        };
        self.run_after(after);
        r
    }

    #[inline]
    fn run_after(self: &Arc<Self>, mut after: After) {
        if mem::take(&mut after.hint) {
            self.work_hint.store(1, Ordering::Relaxed);
        }
        if after.is_empty() {
            // Nothing allocated and nothing to call: skip the drop glue.
            mem::forget(after);
        } else {
            self.run_after_slow(after);
        }
    }

    #[inline(never)]
    fn run_after_slow(self: &Arc<Self>, after: After) {
        let After { heavy, wake, wake_all, wake_host, hint: _ } = after;
        let Heavy { frees, frees_mapped, garbage, spawn, notify } = heavy.map(|h| *h).unwrap_or_default();
        // Threads first: a shut down waits for threads being started, so no
        // host code (which may shut down) may run while one is pending.
        for (index, lane) in spawn {
            self.spawn_worker(index, lane);
        }
        if let Some(n) = notify {
            call_notify(n);
        }
        if wake_all {
            self.work_cv.notify_all();
        } else {
            for _ in 0..wake {
                self.work_cv.notify_one();
            }
        }
        if wake_host {
            self.host_cv.notify_all();
        }
        // Last: free functions may call back into the manager. A large
        // stop gives btm's memory back to the system as it frees it.
        for g in garbage {
            self.release(g);
        }
        // Mapped first: it was filled before any heap block.
        drop(frees_mapped);
        if frees.len() >= pages::GIVE_BACK_MIN_BUFFERS {
            pages::drop_all_returning_pages(frees.into_iter().map(Vec::into_boxed_slice).collect());
        } else {
            drop(frees);
        }
    }

    /// Frees what a lock section left to release; the caller holds no
    /// lock (a small release of chunks takes it to keep them).
    fn release(&self, g: Garbage) {
        match g {
            Garbage::Tasks(chunks) if chunks.len() >= table::GIVE_BACK_CHUNKS => {
                table::release_all(chunks.into_iter().map(|t| t.slots).collect())
            }
            Garbage::Tasks(chunks) => {
                // A small release: the chunks are kept for the next adds
                // (or given back with a later batch) rather than unmapped
                // one system call each.
                let emptied = table::empty_all(chunks);
                self.state.lock().tasks.keep_emptied(emptied);
            }
            Garbage::Emptied(chunks) if chunks.len() >= table::GIVE_BACK_CHUNKS => table::release_empty(chunks),
            Garbage::Emptied(chunks) => self.state.lock().tasks.keep_emptied(chunks),
            Garbage::Released(chunks) => table::release_empty(chunks),
            other => drop(other),
        }
    }

    /// Adds a task (or, when `job.run` is `None`, a pass-through task whose
    /// payload is `job.data`). On error the job is dropped (its data freed)
    /// on the calling thread before returning. (A task with one upstream
    /// task: [`Manager::add_link`] does the same, faster for a chain's
    /// link.)
    #[inline]
    pub fn add(self: &Arc<Self>, job: Job, priority: i32, group: GroupKey, upstream: &[u64]) -> Result<u64, Error> {
        let mut after = After::default();
        let r = {
            let mut st = self.state.lock();
            // The common add, W1's, first: it changes nothing the
            // end-of-section sync looks at.
            let job = match upstream {
                [] => match st.add_plain_lane(job, priority, group, &mut after) {
                    Ok((id, provisioned)) => {
                        drop(st);
                        if provisioned {
                            self.run_after(after);
                        } else {
                            // Untouched: nothing to do, no drop glue.
                            mem::forget(after);
                        }
                        return Ok(id);
                    }
                    Err(job) => job,
                },
                _ => job,
            };
            st.plain_lane_add = false;
            let r = st.add(job, priority, group, upstream, &mut after);
            // A task added to the lane (and nothing else) changes nothing
            // the end-of-section sync looks at (events, waiters, the locked
            // queue's front).
            if !mem::take(&mut st.plain_lane_add) {
                st.sync_signal(&mut after);
            }
            r
        };
        self.run_after(after);
        // On error the job is dropped here, after the lock.
        r.map_err(|(e, _job)| e)
    }

    /// [`Manager::add`] for a task with one upstream task, `up`: a chain's
    /// link, W2a's, waits attached to its upstream task when it can
    /// ([`State::add_plain_cont`]); else [`Manager::add`]'s general way. The
    /// C API's single add calls it for tasks with one upstream task. Out of
    /// line, and not an arm of [`Manager::add`]: there, it made W1's adds
    /// of a million tasks 5-10% slower in wall time (`bench/ab.py w1
    /// 1000000 31`), though the instructions they ran were as many.
    #[inline(never)]
    pub fn add_link(self: &Arc<Self>, job: Job, priority: i32, group: GroupKey, up: u64) -> Result<u64, Error> {
        let mut after = After::default();
        let mut st = self.state.lock();
        let job = match st.add_plain_cont(job, priority, group, up, &mut after) {
            Ok((id, changed)) => {
                if changed {
                    st.sync_signal(&mut after);
                    drop(st);
                    self.run_after(after);
                } else {
                    drop(st);
                    // Untouched: nothing to do, no drop glue.
                    mem::forget(after);
                }
                return Ok(id);
            }
            Err(job) => job,
        };
        st.plain_lane_add = false;
        let r = st.add(job, priority, group, &[up], &mut after);
        // As in `Manager::add`.
        if !mem::take(&mut st.plain_lane_add) {
            st.sync_signal(&mut after);
        }
        drop(st);
        self.run_after(after);
        r.map_err(|(e, _job)| e)
    }

    /// Adds every task of `tasks` in one lock section, or none of them, and
    /// returns their ids in order. Every check of [`Manager::add`] runs for
    /// every task before the first is added; on error nothing is added, no
    /// id is issued and every job is dropped (its data freed) on the calling
    /// thread before returning. (A vector of tasks: see
    /// [`Manager::add_batch`] for tasks read where they are.)
    pub fn add_many(self: &Arc<Self>, tasks: Vec<NewTask<'_>>) -> Result<Vec<u64>, Error> {
        let mut batch: Vec<(TaskSpec<'_>, Option<Job>)> = tasks
            .into_iter()
            .map(|t| {
                let spec = TaskSpec { priority: t.priority, group: t.group, upstream: t.upstream, runs: t.job.runs() };
                (spec, Some(t.job))
            })
            .collect();
        let r = self.add_batch(&mut batch);
        // A rejected batch's jobs drop here, after the lock.
        drop(batch);
        r.map(Vec::from_iter)
    }

    /// Adds every task of `tasks` in one lock section, or none of them, and
    /// returns their ids: consecutive, in order (ids are issued only by
    /// adds, one each, under the lock). Every check of [`Manager::add`]
    /// runs for every task before the first is added; on error nothing is
    /// added, no id is issued and no job is taken (the caller still owns
    /// them all).
    pub fn add_batch<'a>(self: &Arc<Self>, tasks: &mut impl Batch<'a>) -> Result<std::ops::Range<u64>, Error> {
        self.locked(|st, after| {
            // The lane entries of a batch of several priorities are
            // published together at its end, so that workers choose among
            // all of them by priority (not a lower one before a higher one
            // added later in the batch). A batch of one priority has no such
            // choice: each entry is published as it is added, as single adds
            // in a row would be, and workers start on the batch at once
            // (on chains added whole, W2a's workers otherwise waited for the
            // end of each call).
            let shape = st.check_many(&*tasks)?;
            st.lane_batching = !shape.one_priority;
            let first = st.next_id;
            // The common batches, W1's and W6's: independent tasks of one
            // group, straight to their lane levels.
            // And chains added whole (W2a's), to the lane and attached.
            let done = match (shape.one_group && tasks.count() > 0, shape.independent, shape.one_priority) {
                (true, true, true) => st.add_lane_run(tasks, after),
                (true, true, false) => st.add_lane_levels(tasks, after),
                (true, false, true) if shape.chains => st.add_chain_run(tasks, after),
                _ => 0,
            };
            let own = shape.own;
            // Upstream ids naming the batch's own tasks, made real ids: in
            // place for one (a chain's link), else in a vector.
            let real_id = |u: u64| if u & IN_BATCH != 0 { first + (u & !IN_BATCH) } else { u };
            let (mut one, mut many) = ([0u64], Vec::new());
            for i in done..tasks.count() {
                let t = tasks.spec(i);
                let upstream = match t.upstream {
                    &[u] if own => {
                        one[0] = real_id(u);
                        &one[..]
                    }
                    ups if own && ups.iter().any(|&u| u & IN_BATCH != 0) => {
                        many.clear();
                        many.extend(ups.iter().map(|&u| real_id(u)));
                        &many[..]
                    }
                    ups => ups,
                };
                st.plain_lane_add = false;
                match st.add_checked(tasks.take_job(i), t.priority, t.group, upstream, after) {
                    Ok(id) => debug_assert_eq!(id, first + i as u64),
                    Err(_) => unreachable!("checked under the same lock section"),
                }
                // Entries published as they are added come after the
                // locked queue's front that workers compare them with, as
                // for single adds (`Manager::add`'s sync): an add that moved
                // a task to the locked path, or made one ready, publishes
                // the new front before the next entry (found by a review:
                // published at the batch's end only, a worker ran the
                // batch's next entry before an older or higher task that
                // the batch had moved to the locked path).
                if !st.lane_batching {
                    st.sync_after_add(after, false);
                }
            }
            st.lane_batching = false;
            st.publish_lane_batch(after);
            Ok(first..st.next_id)
        })
    }

    /// A fresh group number, never returned before by this manager.
    pub fn next_group_id(&self) -> u64 {
        let mut st = self.state.lock();
        let id = st.next_group;
        st.next_group += 1;
        id
    }

    /// The group key for `name`, interned for the manager's lifetime.
    pub fn group_named(&self, name: &CStr) -> GroupKey {
        self.state.lock().groups.named(name)
    }

    /// The interned name of a named group (valid for the manager's
    /// lifetime), NULL for other groups.
    pub fn group_name(&self, key: GroupKey) -> Result<*const c_char, Error> {
        let st = self.state.lock();
        if !st.groups.is_valid(key) {
            return Err(Error::InvalidGroup);
        }
        Ok(st.groups.name_ptr(key))
    }

    /// Starts running queued tasks (idempotent).
    pub fn start_processing(self: &Arc<Self>) -> Result<(), Error> {
        self.locked(|st, after| {
            if st.shut_down {
                return Err(Error::ShutDown);
            }
            if !st.processing {
                st.processing = true;
                st.sync_lane_open();
                after.wake_all = true;
                st.provision(after);
            }
            Ok(())
        })
    }

    /// Lets running tasks finish; starts nothing new (idempotent). Lane
    /// tasks stay in the lane, closed: no worker claims one once this
    /// returns.
    pub fn pause_processing(&self) -> Result<(), Error> {
        let mut st = self.state.lock();
        if st.shut_down {
            return Err(Error::ShutDown);
        }
        st.processing = false;
        st.sync_lane_open();
        Ok(())
    }

    /// Stops a task (and, transitively, its upstream and/or downstream).
    pub fn stop_task(self: &Arc<Self>, id: u64, up: bool, down: bool) -> Result<StopReport, Error> {
        self.locked(|st, after| {
            // Finished lane tasks are stopped as finished ones, as on the
            // locked path.
            st.apply_lane(after);
            if st.tasks.get(id).is_none() {
                return Err(Error::NotFound);
            }
            Ok(st.stop(vec![id], up, down, after))
        })
    }

    /// Stops every live task of a group (and their upstream/downstream).
    pub fn stop_group(self: &Arc<Self>, group: GroupKey, up: bool, down: bool) -> Result<StopReport, Error> {
        self.locked(|st, after| {
            if !st.groups.is_valid(group) {
                return Err(Error::InvalidGroup);
            }
            let Some(index) = st.groups.find(group) else {
                return Err(Error::NotFound);
            };
            if st.groups.slot(index).live == 0 {
                return Err(Error::NotFound);
            }
            st.apply_lane(after);
            Ok(st.stop_group(index, up, down, after))
        })
    }

    /// Stops every live task.
    pub fn stop_all(self: &Arc<Self>) -> StopReport {
        self.locked(|st, after| {
            st.apply_lane(after);
            if let Some(n) = st.stop_all_queued(after) {
                return StopReport { before_start: n, ..StopReport::default() };
            }
            let roots = st.tasks.ids();
            st.stop(roots, false, false, after)
        })
    }

    /// Changes the priority of a queued or blocked task.
    pub fn set_priority(self: &Arc<Self>, id: u64, priority: i32) -> Result<(), Error> {
        self.locked(|st, after| {
            // A queued lane task asked for its level's own priority stays
            // where it is: moved, it would keep its place too, but run
            // from the locked path.
            if let Some(Task { body: Body::Lane { level, pos, .. } }) = st.tasks.get(id) {
                let (level, pos) = (usize::from(*level), *pos);
                if st.lane_levels.get(level).is_some_and(|&(p, _)| p == priority) && st.lane.is_queued(level, pos, id) {
                    return Ok(());
                }
            }
            if st.unlane(id) {
                return Err(Error::NotQueued);
            }
            st.compact_lane_overflows();
            let task = st.tasks.get_mut(id).ok_or(Error::NotFound)?;
            let (old, waiting) = match &mut task.body {
                Body::Pending { priority: p, .. } => (mem::replace(p, priority), 0),
                Body::Waiting { links: li, .. } => {
                    let l = st.links.get_mut(*li);
                    (mem::replace(&mut l.priority, priority), l.waiting)
                }
                _ => return Err(Error::NotQueued),
            };
            if old != priority && waiting == 0 {
                st.forget_ready(old, 1);
                st.ready_push(priority, id);
                st.provision(after);
            }
            Ok(())
        })
    }

    /// While `hold` is true, idle workers give back none of the memory
    /// polls leave them (it waits, up to its cap), so that tests can see
    /// the cap at work; false wakes the workers to give it back. Not for
    /// production use.
    #[doc(hidden)]
    pub fn hold_idle_release_for_tests(self: &Arc<Self>, hold: bool) {
        self.locked(|st, after| {
            st.idle_release_held = hold;
            if !hold && !st.idle_release.is_empty() {
                after.wake_all = true;
            }
        });
    }

    /// Lowers the number of groups that may have live tasks at once (2^24,
    /// the default group included; never below the number of group slots
    /// already made), so that tests can reach the limit. Not for
    /// production use.
    #[doc(hidden)]
    pub fn limit_groups_for_tests(self: &Arc<Self>, limit: u32) {
        self.locked(|st, _| st.groups.set_limit(limit));
    }

    /// Changes the maximum number of worker threads; extra threads retire
    /// once idle.
    pub fn set_max_threads(self: &Arc<Self>, max_threads: usize) -> Result<(), Error> {
        let max_threads = match max_threads {
            0 => DEFAULT_MAX_THREADS,
            n if n > MAX_THREADS_LIMIT => return Err(Error::InvalidThreadCount),
            n => n,
        };
        self.locked(|st, after| {
            if st.shut_down {
                return Err(Error::ShutDown);
            }
            st.max_threads = max_threads;
            // Workers on the lane come back to the lock (to retire).
            st.lane.checkin.fetch_add(1, Ordering::Relaxed);
            after.wake_all = true;
            st.provision(after);
            Ok(())
        })
    }

    /// Writes up to `capacity` events to `sink`, in order. Results and
    /// messages of the previous poll are released first.
    ///
    /// `sink` is called with the manager's state lock held: it must not
    /// call this manager (that would deadlock); copy what it needs and act
    /// after the poll returns. If it panics, the panic reaches the caller
    /// with the manager consistent: the event it was given counts as
    /// delivered, the later ones stay for the next poll, and groups still
    /// finish (tests/lane.rs).
    pub fn poll(self: &Arc<Self>, capacity: usize, mut sink: impl FnMut(EventView)) -> usize {
        if !self.poll_gate.load(Ordering::Acquire) {
            // Nothing to deliver, re-arm or release (as of the last lock
            // section): no lock taken, so that a host polling in a loop does
            // not slow down the workers. An event raised right now is seen
            // by the next poll, as if it had come a moment later.
            return 0;
        }
        let mut after = After::default();
        let mut written = 0;
        {
            let mut st = self.state.lock();
            let st = &mut *st;
            // (A poll from a free function that a poll of this manager runs
            // on this thread releases nothing: the results it would release
            // are the ones that poll is about to return. Both stay until
            // the next poll, see `PollMark`.)
            if !st.delivered.is_empty() && !PollMark::inside(self) {
                after.heavy().garbage = mem::take(&mut st.delivered);
            }
            if (st.ended_unreplaced || !st.orphaned.is_empty()) && !self.is_current_worker() {
                st.settle_ended(&mut after);
            }
            st.signal.armed = true;
            // Queued events first: every lock section that queues one
            // first applies the outcomes the workers left, so they are
            // older. Then the outcomes still left, delivered without being
            // queued, until one becomes a queued event (it has downstream
            // tasks or cascades), which is delivered in turn.
            loop {
                while written < capacity {
                    let Some(ev) = st.events.pop_front() else {
                        break;
                    };
                    match ev {
                        Ev::Final(id) => {
                            // Common case first: completed without a result
                            // or a link record, a record that owns nothing,
                            // forgotten in its slot (see `deliver_lane`). A
                            // task with a link record pays a second lookup.
                            let plain = st.tasks.remove_forgetting(id, |t| {
                                (t.links().is_none() && matches!(t.body, Body::Completed { result: None, .. }))
                                    .then_some(t.group())
                            });
                            if let Some(group) = plain {
                                st.deliverable -= 1;
                                st.write_final(id, group, Ok(None), capacity, &mut written, &mut sink);
                                continue;
                            }
                            let Some(task) = st.tasks.remove(id) else {
                                continue;
                            };
                            st.deliverable -= 1;
                            if let Some(li) = task.links() {
                                let mut links = st.links.remove(li);
                                if let Some(received) = links.received.0.take() {
                                    after.garbage(Garbage::Results(*received));
                                }
                            }
                            let group = task.group();
                            let end = match task.body {
                                Body::Completed { result, .. } => Ok(result),
                                Body::Failed { failure: f, .. } => Err(f),
                                Body::Pending { .. }
                                | Body::Waiting { .. }
                                | Body::Running { .. }
                                | Body::Lane { .. }
                                | Body::Cont { .. } => {
                                    unreachable!("final event of an unfinished task")
                                }
                            };
                            st.write_final(id, group, end, capacity, &mut written, &mut sink);
                        }
                        Ev::Progress(id) => {
                            let Some(p) = st.progress.remove(&id) else {
                                continue;
                            };
                            st.deliverable -= 1;
                            let Some(task) = st.tasks.get(id) else {
                                continue;
                            };
                            let key = st.groups.slot(task.group()).key;
                            let name = st.groups.name_ptr(key);
                            let mut view = EventView::new(EventKind::Progress, id, key, name);
                            view.progress = p.fraction;
                            if let Some(m) = &p.message {
                                view.message = m.as_ptr();
                            }
                            st.delivered.push(Garbage::Text(p.message));
                            sink(view);
                            written += 1;
                        }
                        Ev::GroupFinished(key) => {
                            st.deliverable -= 1;
                            let name = st.groups.name_ptr(key);
                            sink(EventView::new(EventKind::GroupFinished, 0, key, name));
                            written += 1;
                        }
                    }
                }
                if written == capacity || !st.events.is_empty() {
                    break;
                }
                written += st.deliver_lane(capacity - written, &mut sink, &mut after);
                if st.events.is_empty() {
                    break;
                }
            }
            if st.deliverable == 0 {
                st.drained(&mut after);
            }
            st.release_events(&mut after);
            if let Some(chunks) = st.tasks.take_released() {
                st.release_later(Garbage::Released(chunks), &mut after);
            }
            if st.groups.has_retired() {
                for members in st.groups.take_retired() {
                    st.release_later(Garbage::Members(members), &mut after);
                }
            }
            st.sync_signal(&mut after);
            st.update_poll_gate();
        }
        if after.heavy.is_some() {
            // Free functions run here may poll this manager again.
            let mark = PollMark::new(self);
            let _guard = mark.enter();
            self.run_after(after);
        } else {
            self.run_after(after);
        }
        written
    }

    /// Registers (or with `None` removes) the callback called when events
    /// become available. Returns once no call to the previous one is in
    /// progress, and its userdata freed (see [`retire_notify`]).
    pub fn set_notify(self: &Arc<Self>, notify: Option<Notify>) {
        let old = self.locked(|st, _| {
            let old = mem::replace(&mut st.signal.notify, notify.map(Arc::new));
            st.signal.armed = true;
            st.update_poll_gate();
            old
        });
        // (`locked` has made the section's call of the new callback, if it
        // made one: before the old one's free, as when the old one went
        // with the section's garbage.)
        if let Some(old) = old {
            retire_notify(old);
        }
    }

    /// Registers (or removes) the task start/end hooks; running tasks keep
    /// the hooks they started with.
    pub fn set_task_hooks(self: &Arc<Self>, hooks: Option<TaskHooks>) {
        self.locked(|st, after| {
            if let Some(old) = mem::replace(&mut st.task_hooks, hooks.map(Arc::new)) {
                after.garbage(Garbage::Hooks(old));
            }
            // Lane tasks start without the lock, where hooks are not read:
            // while hooks are registered the lane is closed, and the tasks
            // in it move to the locked path.
            st.sync_lane_open();
            if !st.lane.is_open() {
                st.drain_lane(after);
            }
        })
    }

    /// The descriptor that is readable exactly while undelivered events
    /// exist (Windows: the handle of an event object signalled exactly
    /// then), created on first use, closed with the manager.
    pub fn event_fd(self: &Arc<Self>) -> std::io::Result<RawSignal> {
        self.locked(|st, _| {
            if let Some(fd) = &st.signal.fd {
                return Ok(fd.raw());
            }
            let fd = EventFd::new()?;
            if st.signal.raised {
                fd.raise();
            }
            // The end of this lock section applies the outcomes the workers
            // left (`sync_lane`: `lock_finish` is now set), which raises it.
            let raw = fd.raw();
            st.signal.fd = Some(fd);
            Ok(raw)
        })
    }

    /// Number of events a poll would deliver now.
    pub fn pending_events(self: &Arc<Self>) -> usize {
        self.locked(|st, after| {
            st.apply_lane(after);
            st.deliverable
        })
    }

    /// Blocks until an event is pending or `timeout` passes.
    pub fn wait_events(self: &Arc<Self>, timeout: Option<Duration>) -> Result<(), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        if timeout != Some(Duration::ZERO) {
            // Watch the poll gate for a moment before taking the lock and
            // sleeping: events that come within microseconds (the common
            // case while workers run tasks) are then found without a sleep
            // and a wake-up, as channel receivers do.
            spin_until(HOST_SPIN_ITERS, HOST_YIELD_ITERS, || self.poll_gate.load(Ordering::Acquire));
        }
        self.wait_until(deadline, Wait::Events, |st| match (st.deliverable > 0, st.shut_down) {
            (true, _) => Some(Ok(())),
            (false, true) => Some(Err(Error::ShutDown)),
            (false, false) => None,
        })
    }

    /// Blocks until no task is queued, blocked or running.
    pub fn wait_idle(self: &Arc<Self>, timeout: Option<Duration>) -> Result<(), Error> {
        if self.is_current_worker() {
            return Err(Error::WouldDeadlock);
        }
        self.wait_until(timeout.map(|t| Instant::now() + t), Wait::Idle, |st| {
            (st.running == 0 && st.pending == 0 && st.lane_live() == 0).then_some(Ok(()))
        })
    }

    /// Waits on `host_cv` until `check` gives an answer or the deadline.
    fn wait_until(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        kind: Wait,
        check: impl Fn(&State) -> Option<Result<(), Error>>,
    ) -> Result<(), Error> {
        let mut st = self.state.lock();
        st.host_waiters += 1;
        match kind {
            Wait::Events => st.event_waiters += 1,
            Wait::Idle => st.idle_waiters += 1,
        }
        // With a waiter registered, workers take the lock after leaving an
        // outcome and apply it (see `sync_lane`, which applies those left
        // before).
        let mut after = After::default();
        st.sync_signal(&mut after);
        if !after.is_empty() {
            MutexGuard::unlocked(&mut st, || self.run_after(after));
        } else {
            mem::forget(after);
        }
        // Workers whose threads host code ended (see `ended_unreplaced`):
        // settled by host threads only, replaced once per wait and again
        // only after another worker ended inside a task, which failed (a
        // start hook that ends every thread would have the wait start
        // threads in a loop).
        let on_worker = self.is_current_worker();
        let mut replaced_at: Option<u64> = None;
        let r = loop {
            if !on_worker && !st.orphaned.is_empty() {
                // What they left to free, freed before the wait returns.
                let mut after = After::default();
                st.adopt_orphaned(&mut after);
                MutexGuard::unlocked(&mut st, || self.run_after(after));
                continue;
            }
            if let Some(r) = check(&st) {
                break r;
            }
            if !on_worker && st.ended_unreplaced && replaced_at != Some(st.ended_in_task) {
                replaced_at = Some(st.ended_in_task);
                let mut after = After::default();
                st.settle_ended(&mut after);
                st.sync_signal(&mut after);
                MutexGuard::unlocked(&mut st, || self.run_after(after));
                continue;
            }
            match deadline {
                Some(d) => {
                    if self.host_cv.wait_until(&mut st, d).timed_out() {
                        break check(&st).unwrap_or(Err(Error::TimedOut));
                    }
                }
                None => self.host_cv.wait(&mut st),
            }
        };
        st.host_waiters -= 1;
        match kind {
            Wait::Events => st.event_waiters -= 1,
            Wait::Idle => st.idle_waiters -= 1,
        }
        r
    }

    /// Counts for the whole manager.
    pub fn stats(self: &Arc<Self>) -> Stats {
        self.locked(|st, after| {
            st.apply_lane(after);
            st.stats()
        })
    }

    /// Entries the event queue can hold without growing (a diagnostic for
    /// tests: a burst of queued events must not keep its memory once polled
    /// or stopped).
    #[doc(hidden)]
    pub fn event_queue_capacity(&self) -> usize {
        self.state.lock().events.capacity()
    }

    /// The number of ids in the member list of `group` (live members and
    /// members that left since its last compaction), or `None` if the
    /// group has no slot (a group other than the default one with no live
    /// task). A diagnostic for tests: the adds that follow members leaving
    /// must compact the list.
    #[doc(hidden)]
    pub fn group_member_ids(&self, group: GroupKey) -> Option<usize> {
        let st = self.state.lock();
        st.groups.find(group).map(|i| st.groups.slot(i).members.len())
    }

    /// Lane tasks and continuations counted as linked (with downstream
    /// tasks on the locked path, their outcomes applied at once): a
    /// diagnostic for tests, since a count left above zero would keep the
    /// workers taking the lock after every outcome for good.
    #[doc(hidden)]
    pub fn lane_linked_for_tests(&self) -> usize {
        self.state.lock().lane_linked
    }

    /// Tasks put in the lane so far (added there, moved there from the
    /// locked queue, or released there by their last upstream task's
    /// finish): a diagnostic for tests.
    #[doc(hidden)]
    pub fn lane_added_for_tests(&self) -> u64 {
        self.state.lock().lane_added
    }

    /// Workers in their lane loop (taking tasks without the lock): a
    /// diagnostic for tests.
    #[doc(hidden)]
    pub fn workers_in_lane_for_tests(&self) -> usize {
        self.state.lock().in_lane
    }

    /// The lane's levels' priorities, in index order, and how
    /// many times one was given to another priority: a diagnostic for
    /// tests.
    #[doc(hidden)]
    pub fn lane_levels_for_tests(&self) -> (Vec<i32>, u64) {
        let st = self.state.lock();
        (st.lane_levels.iter().map(|&(p, _)| p).collect(), st.lane_reassigned)
    }

    /// Pops the best lane entry and leaves its slot reserved, as a worker
    /// whose take gives the entry back does until its lock section (see
    /// `Take::GiveBack`): a test's stand-in for that worker, which hands
    /// the entry back with [`Manager::give_back_for_tests`].
    #[doc(hidden)]
    pub fn hold_lane_entry_for_tests(&self) -> Option<HeldLaneEntry> {
        let _st = self.state.lock();
        self.lane.hold_best_for_tests().map(|(id, level, pos)| HeldLaneEntry { id, level, pos })
    }

    /// Gives back an entry [`Manager::hold_lane_entry_for_tests`] held,
    /// as the worker's lock section does (`State::give_back`).
    #[doc(hidden)]
    pub fn give_back_for_tests(self: &Arc<Self>, held: HeldLaneEntry) {
        self.locked(|st, after| st.give_back(held.id, held.level, held.pos, after));
    }

    /// Entries the locked ready queue holds, stale ones included (a task
    /// stopped or re-prioritised leaves its entry behind, dropped when
    /// popped): a diagnostic for tests, next to `Stats::queued`.
    #[doc(hidden)]
    pub fn ready_entries_for_tests(&self) -> usize {
        self.state.lock().ready.entries()
    }

    /// Lane ring entries marked linked (a queued lane task with a
    /// downstream task on the locked path, see `lane::LINKED`): a
    /// diagnostic for tests, next to [`Manager::lane_linked_for_tests`].
    #[doc(hidden)]
    pub fn lane_marked_for_tests(&self) -> usize {
        let _st = self.state.lock();
        self.lane.marked()
    }

    /// Task-table chunks (4,096 task records each) whose memory the manager
    /// holds: in use, kept as spares (two at most), or waiting for an idle
    /// worker to give them back (a diagnostic for tests).
    #[doc(hidden)]
    pub fn table_chunks_held(&self) -> usize {
        let st = self.state.lock();
        let waiting: usize = st
            .idle_release
            .iter()
            .map(|g| match g {
                Garbage::Released(chunks) => chunks.len(),
                _ => 0,
            })
            .sum();
        st.tasks.chunks_held() + waiting
    }

    /// Live tasks of one group by state: (queued, blocked, running, finished
    /// but not yet polled).
    pub fn group_stats(self: &Arc<Self>, group: GroupKey) -> Result<[u64; 4], Error> {
        self.locked(|st, after| {
            st.apply_lane(after);
            st.group_stats(group)
        })
    }

    /// Stops everything, then waits up to `timeout` (forever if `None`) for
    /// the worker threads to exit. On timeout returns `TimedOut` with the
    /// number of threads still running a task; they finish on their own
    /// (their task's userdata is freed when it returns) and then exit.
    pub fn shut_down(self: &Arc<Self>, timeout: Option<Duration>) -> Result<(), (Error, usize)> {
        self.locked(|st, after| {
            if st.shut_down {
                return Err((Error::AlreadyShutDown, 0));
            }
            st.shut_down = true;
            st.processing = false;
            st.sync_lane_open();
            st.apply_lane(after);
            if st.stop_all_queued(after).is_none() {
                let roots = st.tasks.ids();
                st.stop(roots, false, false, after);
            }
            st.events.clear();
            st.release_events(after);
            st.deliverable = 0;
            after.wake_all = true;
            Ok(())
        })?;
        self.join_workers(timeout)
    }

    /// Frees what the host handed over for the manager's lifetime (the
    /// task-hook and notify userdata, the results of the last poll) and,
    /// if `this` is the last reference (every worker has exited), the
    /// thread-hook userdata: while the manager is still alive, so that a
    /// free function may call it (it has been shut down: adds get
    /// `SHUT_DOWN`, stats work). Left to the last reference's drop, they
    /// ran while the manager itself was being dropped, and such a call read
    /// freed memory (a fuzzer found it in session 30). Hooks that a worker
    /// still running a task holds are freed when it lets go of them; the
    /// thread hooks, when the last worker exits. For `btm_destroy`, after
    /// [`Manager::shut_down`].
    pub fn release_host_objects(this: &mut Arc<Self>) {
        // (Not the results a poll of this manager that runs the call is
        // about to return: see `PollMark`.)
        let polling = PollMark::inside(this);
        let notify = this.locked(|st, after| {
            if !polling {
                after.heavy().garbage.append(&mut st.delivered);
            }
            if let Some(hooks) = st.task_hooks.take() {
                after.garbage(Garbage::Hooks(hooks));
            }
            st.signal.notify.take()
        });
        if let Some(notify) = notify {
            retire_notify(notify);
        }
        // The exclusive borrow ends before the free function runs (it may
        // reach the manager through its handle).
        let thread_hooks = Arc::get_mut(this).and_then(|m| m.hooks.take());
        drop(thread_hooks);
    }
}

impl State {
    fn stats(&self) -> Stats {
        let st = self;
        let lane_running = st.lane_running();
        // Continuations not yet claimed wait for their upstream task.
        let cont_claims: u64 = st.workers.iter().map(|w| w.lane.cont_claims()).sum::<u64>() + st.retired_cont_claims;
        let cont_waiting = (st.cont_added - st.cont_cancelled - cont_claims) as usize;
        // (Saturating: a snapshot taken while a worker claims must never
        // panic under the lock.)
        let lane_queued = st.lane_live().saturating_sub(lane_running + cont_waiting);
        Stats {
            queued: (st.ready.len() + lane_queued) as u64,
            blocked: (st.pending - st.ready.len() + cont_waiting) as u64,
            running: (st.running + lane_running) as u64,
            undelivered: st.deliverable as u64,
            completed_total: st.completed_total,
            failed_total: st.failed_total,
            stopped_total: st.stopped_total,
            threads: st.threads as u64,
            spawn_failures: st.spawn_failures,
        }
    }

    fn group_stats(&self, group: GroupKey) -> Result<[u64; 4], Error> {
        let st = self;
        if !st.groups.is_valid(group) {
            return Err(Error::InvalidGroup);
        }
        let mut counts = [0u64; 4];
        let Some(index) = st.groups.find(group) else {
            return Ok(counts);
        };
        for id in st.groups.slot(index).members.iter() {
            let Some(task) = st.tasks.get(id).filter(|t| t.group() == index) else {
                continue;
            };
            let i = match task.body {
                Body::Pending { .. } => 0,
                Body::Waiting { links: li, .. } => usize::from(st.links.get(li).waiting > 0),
                Body::Lane { level, pos, .. } if st.lane.is_queued(level as usize, pos, id) => 0,
                Body::Cont { ref rec, .. } if rec.is_queued() => 1,
                Body::Running { .. } | Body::Lane { .. } | Body::Cont { .. } => 2,
                Body::Completed { .. } | Body::Failed { .. } => 3,
            };
            counts[i] += 1;
        }
        Ok(counts)
    }
}

impl Manager {
    /// True once `shut_down` has been called.
    pub fn is_shut_down(&self) -> bool {
        self.state.lock().shut_down
    }

    fn join_workers(&self, timeout: Option<Duration>) -> Result<(), (Error, usize)> {
        let me = usize::from(self.is_current_worker());
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.state.lock();
        // Called on a worker: is that worker inside a task (the task, its
        // hooks, its userdata's free function), counted in `running` or
        // `lane_running`, or outside one (a free function or callback run
        // after it)? (Its own state, which this call does not change.)
        let me_busy = me == 1 && {
            let w = &st.workers[CURRENT_INDEX.with(Cell::get) as usize];
            w.task != 0 || w.lane.in_lane_task()
        };
        st.host_waiters += 1;
        let mut past_deadline = false;
        let result = loop {
            // `spawning`: a thread being started has no handle yet; wait
            // for it, or it could not be joined.
            if st.alive <= me && st.spawning == 0 {
                break Ok(());
            }
            if past_deadline {
                // Only workers inside a task are left running: the others
                // (woken from their sleep, with only `thread_stop` to run)
                // are waited for whatever the timeout, and are not counted
                // as "still running a task". With no task running at all,
                // this waits for every worker: a timeout of 0 on an idle
                // manager is `OK`, and `btm_destroy` then frees the
                // thread-hook userdata before it returns.
                let busy = (st.running + st.lane_running()).saturating_sub(usize::from(me_busy));
                if busy > 0 && st.alive - me <= busy && st.spawning == 0 {
                    st.left_running = true;
                    break Err((Error::TimedOut, st.alive - me));
                }
                self.host_cv.wait(&mut st);
                continue;
            }
            match deadline {
                Some(d) => {
                    if self.host_cv.wait_until(&mut st, d).timed_out() {
                        past_deadline = true;
                    }
                }
                None => self.host_cv.wait(&mut st),
            }
        };
        st.host_waiters -= 1;
        // Join every worker that has left its loop (it only has to drop its
        // reference to the manager and return), so that when this returns
        // no btm thread is left and the manager's memory is released by
        // whoever drops the last handle. Threads still inside a task (the
        // timeout path) are not waited for: each exits after its task
        // returns.
        let handles = mem::take(&mut st.handles);
        // (`thread::current()` only on one of this manager's workers, whose
        // handle std made at its start: on a host thread it would allocate
        // the thread's handle, which the main thread never frees, one block
        // valgrind reports as possibly lost.)
        let on_worker = self.is_current_worker();
        let (joinable, detached): (Vec<_>, Vec<_>) = handles.into_iter().partition(|(index, h)| {
            st.workers[*index as usize].exited && (!on_worker || h.thread().id() != std::thread::current().id())
        });
        // The others (still inside a task, or the calling worker) keep
        // their handle: `join_after_shut_down` may join them.
        st.handles.extend(detached);
        let joinable: Vec<_> = joinable
            .into_iter()
            .map(|(i, h)| {
                let w = &st.workers[i as usize];
                (h, w.ended.then(|| Arc::clone(&w.lane)))
            })
            .collect();
        // Host data that workers ended inside host code left (see
        // `Manager::worker_ended`): freed before this returns.
        let orphaned = mem::take(&mut st.orphaned);
        let reaped = mem::take(&mut st.reaped);
        drop(st);
        for (h, ended) in joinable.into_iter().chain(reaped) {
            join_or_detach(h, ended.as_deref());
        }
        drop(orphaned);
        result
    }

    /// For `btm_destroy` after an earlier shut-down: waits for the workers
    /// that it did not wait for (a shut-down called on a worker, from a
    /// task, hook or free function, does not wait for that worker), so
    /// that none runs host code (its task's end, `thread_stop`) after
    /// `btm_destroy` returns. Not after a shut-down that timed out: the
    /// workers it left inside a task finish alone, as documented.
    pub fn join_after_shut_down(&self) {
        if self.state.lock().left_running {
            return;
        }
        let _ = self.join_workers(None);
    }

    fn spawn_worker(self: &Arc<Self>, index: u32, lane: Arc<WorkerLane>) {
        let manager = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("btm-worker-{index}"))
            .spawn(move || worker_main(manager, index, lane));
        let mut st = self.state.lock();
        st.spawning -= 1;
        st.workers[index as usize].handle_pending = false;
        match spawned {
            Ok(handle) => st.handles.push((index, handle)),
            Err(_) => {
                st.threads -= 1;
                st.alive -= 1;
                st.spawn_failures += 1;
                // No thread: the slot is free for the next worker.
                st.workers[index as usize].exited = true;
            }
        }
        // The workers that retired before this one was provisioned: joined
        // after the lock (see `State::reap_retired`).
        let reaped = mem::take(&mut st.reaped);
        drop(st);
        // A shut down may be waiting for this handle (to join it), and
        // waiters should see a failure rather than hang.
        self.host_cv.notify_all();
        for (h, ended) in reaped {
            join_or_detach(h, ended.as_deref());
        }
    }
}

/// The failure of a task whose worker thread ended inside host code (see
/// [`WorkerExit`]).
const THREAD_ENDED: &[u8] = b"the worker thread ended inside host code";
const THREAD_ENDED_DETAILS: &[u8] = b"host code that btm's worker thread called for this task (the task \
function, a task hook or a free function) ended the thread, as pthread_exit does (CPython does so to \
a thread that calls Python during interpreter shutdown): the task did not return";

impl Manager {
    /// Settles what a worker left when host code ended its thread (see
    /// [`WorkerExit`]), on that thread as it ends: the lane task or
    /// continuation it ran, or its locked-path task, fails
    /// ([`THREAD_ENDED`]); the worker counts as exited (a shut-down stops
    /// waiting for it, its handle is let go of, not joined), and is
    /// replaced by the host's next add, wait or poll (`ended_unreplaced`). What the
    /// lost frames held is not freed: the task's userdata (freed when a
    /// task returns, and this one never did), the upstream results it was
    /// given, and the task's result if it had set one.
    #[cold]
    #[inline(never)]
    fn worker_ended(self: Arc<Self>, index: u32, wl: Arc<WorkerLane>) {
        let failure = || Outcome::Failed(Failure::new(THREAD_ENDED, THREAD_ENDED_DETAILS));
        let in_task = wl.in_lane_task();
        if in_task {
            // Its outcome, as the task's end would leave it (a
            // continuation attached to it waits for the failure on the
            // locked path, as after any failed task: let go of here,
            // without the lock).
            let id = wl.current();
            drop(wl.take_end());
            wl.push_outcome((id, failure()));
        }
        wl.set_looking(false);
        wl.gave_back();
        let mut after = After::default();
        let hooks = wl.hooks_held();
        if !hooks.is_null() {
            // SAFETY: the reference the ended task's job held (published
            // by `run_job` while it holds it), which its frame never
            // dropped: taken over once.
            after.garbage(Garbage::Hooks(unsafe { Arc::from_raw(hooks) }));
            wl.hold_hooks(std::ptr::null());
        }
        let notify = {
            let mut st = self.state.lock();
            // No thread is started from here (see `ended_unreplaced`): the
            // flag holds off `provision`'s spawns while this section
            // applies outcomes.
            let unreplaced = mem::replace(&mut st.ended_unreplaced, true);
            st.apply_lane(&mut after);
            let w = &mut st.workers[index as usize];
            let task = mem::take(&mut w.task);
            let in_lane = mem::take(&mut w.in_lane);
            let leaving = w.leaving;
            w.exited = true;
            w.ended = true;
            if in_lane {
                st.in_lane -= 1;
            }
            if task != 0 {
                st.finish(task, failure(), &mut after);
            }
            if task != 0 || in_task {
                st.ended_in_task += 1;
            }
            if !leaving {
                st.threads -= 1;
                if st.threads == 0 {
                    for release in mem::take(&mut st.idle_release) {
                        after.garbage_first(release);
                    }
                }
            }
            st.alive -= 1;
            // A replacement is asked for unless the worker was exiting. (A
            // start hook that ends every thread: each host call starts at
            // most one round of threads, see `wait_until`.)
            st.ended_unreplaced = unreplaced || !leaving;
            st.sync_signal(&mut after);
            // No host code on this thread (a review found it running after
            // `btm_destroy` returned, and host code that ended the thread
            // once may end it again mid-way): the frees go to the next
            // host call or shut-down; the notify callback, whose calls
            // `btm_destroy` waits for, is called last.
            let heavy = after.heavy.as_deref_mut().map(mem::take);
            let (notify, rest) = match heavy {
                Some(mut h) => (h.notify.take(), Some(h)),
                None => (None, None),
            };
            if let Some(h) = rest.filter(|h| !h.frees.is_empty() || h.frees_mapped.is_some() || !h.garbage.is_empty()) {
                debug_assert!(h.spawn.is_empty(), "no thread is started while a worker ends");
                st.orphaned.push(h);
            }
            if st.ended_unreplaced || !st.orphaned.is_empty() {
                // The next poll takes the lock and settles them.
                self.poll_gate.store(true, Ordering::Release);
            }
            notify
        };
        // Wake-ups the ended code may have been about to make (a notify
        // callback runs before them), and the shut-downs waiting for this
        // worker.
        self.work_cv.notify_all();
        self.host_cv.notify_all();
        self.run_after(after);
        CURRENT.with(|c| c.set(std::ptr::null()));
        // Not the manager's last reference, unless a shut-down that timed
        // out left this worker running and `btm_destroy` returned: a
        // shut-down waits for `done` below before it returns
        // (`join_or_detach`), and only then does `btm_destroy` let go of
        // the host's. (After a timed-out shut-down the manager is freed
        // here, as by any worker it left running: its thread-hook
        // userdata's free function runs on this thread.)
        drop(self);
        wl.set_ended_done();
        drop(wl);
        if let Some(n) = notify {
            call_notify(n);
        }
    }
}

/// What a host thread blocked in `wait_until` waits for.
#[derive(Copy, Clone)]
enum Wait {
    Events,
    Idle,
}

impl State {
    /// True when a blocked host thread must be woken: one whose condition may
    /// hold now (events to poll or a shut down for `wait_events`, nothing
    /// queued or running for `wait_idle`), or any other kind of waiter.
    #[inline]
    fn wake_host_needed(&self) -> bool {
        self.host_waiters > 0
            && (self.host_waiters > self.event_waiters + self.idle_waiters
                || (self.event_waiters > 0 && (self.deliverable > 0 || self.shut_down))
                || (self.idle_waiters > 0 && self.running == 0 && self.pending == 0 && self.lane_live() == 0))
    }

    /// Brings the event descriptor and the notify callback in line with
    /// whether undelivered events exist, and wakes blocked host threads whose
    /// condition may hold. Called at the end of every lock section that can
    /// change either.
    #[inline]
    fn sync_signal(&mut self, after: &mut After) {
        self.sync_lane(after);
        after.wake_host |= self.wake_host_needed();
        if (self.deliverable > 0) != self.signal.raised {
            self.sync_signal_slow(after);
        }
    }

    #[inline(never)]
    fn sync_signal_slow(&mut self, after: &mut After) {
        let want = self.deliverable > 0;
        self.signal.raised = want;
        if want && self.signal.armed {
            if let Some(n) = &self.signal.notify {
                self.signal.armed = false;
                after.heavy().notify = Some(Arc::clone(n));
            }
        }
        // Before the descriptor: a host woken by it must find the gate open.
        self.update_poll_gate();
        if let Some(fd) = &self.signal.fd {
            if want {
                fd.raise();
            } else {
                fd.clear();
            }
        }
    }

    /// The end of a poll that delivered every deliverable event: only stale
    /// entries can be left in the queue, dropped now; and the signal is
    /// lowered now, so that an event made deliverable by the section's end
    /// (`sync_lane` applies outcomes the workers left while the host waits
    /// for a notify) is a new empty-to-non-empty transition and calls the
    /// notify. Left raised, the end saw no change: a host that drained,
    /// armed by this poll, slept with an event waiting (a review found it;
    /// 6 in 10 runs of 20,000 tasks polled 32 at a time). Out of line: in
    /// the poll, it cost the delivery loop 2 instructions per event.
    #[inline(never)]
    fn drained(&mut self, after: &mut After) {
        self.events.clear();
        if self.signal.raised {
            self.sync_signal_slow(after);
        }
    }

    /// Publishes whether a poll has anything to do (see `Signal::gate`).
    /// Called wherever what it depends on changes: the signal, the notify
    /// arming, the last poll's results.
    fn update_poll_gate(&self) {
        let want = self.signal.raised
            || !self.signal.armed
            || !self.delivered.is_empty()
            || self.ended_unreplaced
            || !self.orphaned.is_empty();
        if self.signal.gate.load(Ordering::Relaxed) != want {
            self.signal.gate.store(want, Ordering::Release);
            if !want {
                // A worker may have left an outcome and seen the gate still
                // open (see `lane`, "outcome vs lock holder").
                fence(Ordering::SeqCst);
                if self.lane_has_outcomes() {
                    self.signal.gate.store(true, Ordering::Release);
                }
            }
        }
    }

    fn lane_has_outcomes(&self) -> bool {
        self.workers.iter().any(|w| w.lane.has_outcomes())
    }

    /// Publishes what workers on the lane read: the locked ready queue's
    /// best priority, and whether they must take the lock after leaving an
    /// outcome. When that flag rises, outcomes already left are applied
    /// here (see `lane`, "outcome vs lock holder").
    #[inline]
    fn sync_lane(&mut self, after: &mut After) {
        // A host waiting for events (in `wait_events`, or through the
        // descriptor or the notify callback) needs the first outcome applied
        // at once, not the ones after: once an event is deliverable it is
        // woken (or the descriptor raised, the callback called) and polls
        // them all. Idle waiters and shut-downs need each.
        let all = self.wants_every_outcome();
        let want = all
            || (self.deliverable == 0
                && (self.event_waiters > 0 || self.signal.notify.is_some() || self.signal.fd.is_some()));
        let applied = (want != self.lock_finish || all != self.finish_all) && self.sync_finish(want, all, after);
        if !applied && want && self.deliverable == 0 {
            // The flag was up already, and no event is deliverable: the
            // outcomes left for the poll when only an event was wanted (see
            // `apply_lane_for_waiters`) must not wait behind a raised flag
            // that no worker will see again.
            self.apply_left_for_waiters(after);
        }
        // After the applies above, which may make tasks ready on the locked
        // path.
        let top = self.ready.top_priority().map_or(NO_PRIORITY, i64::from);
        if top != self.locked_top || self.locked_gen != self.locked_gen_published {
            self.publish_locked_top(top);
        }
    }

    #[inline(never)]
    fn apply_left_for_waiters(&mut self, after: &mut After) {
        if self.lane_has_outcomes() {
            self.apply_lane_for_waiters(after);
        }
    }

    /// Raises or lowers `lock_finish` for what is wanted (`want`; `all`:
    /// every outcome, see `State::finish_all`), applying the outcomes left
    /// when it rises or when every outcome becomes wanted while it is up.
    /// Returns whether it applied them.
    #[inline(never)]
    fn sync_finish(&mut self, want: bool, all: bool, after: &mut After) -> bool {
        let upgrade = all && !self.finish_all;
        self.finish_all = all;
        if want != self.lock_finish {
            self.lock_finish = want;
            self.lane.lock_finish.store(want, Ordering::Relaxed);
            if want {
                // Outcomes left before a worker could see the flag are
                // applied here; later ones by the worker that left them.
                fence(Ordering::SeqCst);
                self.apply_lane_for_waiters(after);
            }
            want
        } else if upgrade {
            // The flag was up for an event only, so outcomes may have been
            // left for the poll: what is wanted now (a host waiting for
            // idleness, a chain waiting for its upstream) takes each.
            self.apply_lane(after);
            true
        } else {
            false
        }
    }

    /// True while every outcome the workers leave must be applied at once
    /// (a host waits for idleness, or a claimed lane task has downstream
    /// tasks on the locked path), not only the first that makes an event.
    #[inline(always)]
    fn wants_every_outcome(&self) -> bool {
        self.host_waiters > self.event_waiters || self.lane_linked > 0
    }

    #[inline(never)]
    fn publish_locked_top(&mut self, top: i64) {
        if top != self.locked_top {
            self.locked_top = top;
            self.lane.locked_top.store(top, Ordering::Relaxed);
        }
        if self.locked_gen != self.locked_gen_published {
            self.locked_gen_published = self.locked_gen;
            self.lane.locked_gen.store(self.locked_gen, Ordering::Relaxed);
        }
    }

    /// Applies the outcomes the workers left in their queues, in each
    /// worker's order.
    #[inline]
    fn apply_lane(&mut self, after: &mut After) {
        if self.lane_live() != 0 {
            // (Otherwise no lane task is claimed and not applied: the
            // locked path's sections pay no more than this check.)
            self.apply_lane_slow::<false>(after);
        }
    }

    /// Applies the outcomes the workers left for what `lock_finish` was
    /// raised for: all of them for an idle waiter or a claimed task with
    /// downstream tasks on the locked path; when only an event is wanted (a
    /// host waits for one, or a callback or descriptor does), those up to
    /// the first that makes one, the others left for the poll, which
    /// delivers them without queueing them.
    fn apply_lane_for_waiters(&mut self, after: &mut After) {
        if self.wants_every_outcome() {
            self.apply_lane(after);
        } else if self.lane_live() != 0 {
            self.apply_lane_slow::<true>(after);
        }
    }

    /// [`State::apply_lane`]'s loop; with `UNTIL_EVENT`, only until an
    /// event is deliverable (the outcomes left after it are newer than
    /// every queued event, which keeps the order events are delivered in).
    #[inline(never)]
    fn apply_lane_slow<const UNTIL_EVENT: bool>(&mut self, after: &mut After) {
        for i in 0..self.workers.len() {
            while let Some((id, outcome, cont_claimed)) = {
                if UNTIL_EVENT && self.deliverable > 0 {
                    return;
                }
                self.workers[i].lane.pop_outcome()
            } {
                // Common cases first, inline: what `finish` does for them,
                // without its call. A completed lane task without edges (a
                // fan-in's add applies up to a million), and a completed
                // chain task whose outcome nothing downstream waits for: a
                // lane task or continuation whose only downstream task is
                // the continuation its worker claimed (`cont_claimed`), or
                // a continuation without one (a chain's last task). A host
                // that adds chains without polling has each chain task's
                // outcome applied here, by the add that needs its
                // continuation record back. The chain task keeps its edges
                // in the completed body (see `State::complete_keeping_edges`).
                if let Outcome::Completed(result) = outcome {
                    if let Some(task) = self.tasks.get_mut(id) {
                        if let (None, &Body::Lane { linked: false, down: 0, group, .. }) = (task.links(), &task.body) {
                            // (Its own test first: sharing the chain
                            // cases' cost a fan-in's add 15 instructions
                            // per upstream task.)
                            let completed = Body::Completed { group, links: None, result, up: 0, down: 0 };
                            mem::forget(mem::replace(&mut task.body, completed)); // a lane body owns nothing
                            self.lane_applied += 1;
                            self.completed_total += 1;
                            self.push_event(Ev::Final(id));
                            continue;
                        }
                        let edges = match (task.links(), &task.body) {
                            (None, &Body::Lane { linked: false, down, .. }) if cont_claimed => Some((0, down)),
                            (None, Body::Cont { linked: false, down, rec, .. }) if *down == 0 || cont_claimed => {
                                Some((rec.up(), *down))
                            }
                            _ => None,
                        };
                        if let Some((up, down)) = edges {
                            let group = task.body.group_ix();
                            let completed = Body::Completed { group, links: None, result, up, down };
                            match mem::replace(&mut task.body, completed) {
                                Body::Cont { rec, .. } => self.lane.conts.recycle_ran(rec),
                                old => mem::forget(old), // a lane body owns nothing
                            }
                            self.lane_applied += 1;
                            self.completed_total += 1;
                            self.push_event(Ev::Final(id));
                            continue;
                        }
                    }
                    self.apply_outcome(id, Outcome::Completed(result), after);
                    continue;
                }
                self.apply_outcome(id, outcome, after);
            }
        }
    }

    #[inline]
    fn apply_outcome(&mut self, id: u64, outcome: Outcome, after: &mut After) {
        self.lane_applied += 1;
        self.running += 1;
        self.finish(id, outcome, after);
    }

    /// Writes the final event of a task of group slot `group` that has
    /// left the table (its result or failure kept alive until the next
    /// poll), then the group's event if it has no live task left. Returns
    /// false if that one did not fit and was queued in front.
    #[inline(always)]
    fn write_final(
        &mut self,
        id: u64,
        group: u32,
        end: Result<Option<Arc<ResultSet>>, Arc<Failure>>,
        capacity: usize,
        written: &mut usize,
        sink: &mut impl FnMut(EventView),
    ) -> bool {
        // The task leaves its group first (one look at the group's slot);
        // the key and its interned name outlive the slot.
        let (key, finished) = self.groups.leave_keyed(group);
        let name = self.groups.name_ptr(key);
        self.write_final_keyed(id, key, name, finished, end, capacity, written, sink)
    }

    /// [`State::write_final`] for a task that has left its group already
    /// (`finished`: the group has no live task left).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn write_final_keyed(
        &mut self,
        id: u64,
        key: GroupKey,
        name: *const c_char,
        finished: bool,
        end: Result<Option<Arc<ResultSet>>, Arc<Failure>>,
        capacity: usize,
        written: &mut usize,
        sink: &mut impl FnMut(EventView),
    ) -> bool {
        match end {
            Ok(result) => {
                let mut view = EventView::new(EventKind::Completed, id, key, name);
                if let Some(r) = result {
                    let values = r.values();
                    view.values = values.as_ptr();
                    view.value_count = values.len();
                    self.delivered.push(Garbage::Result(r));
                }
                sink(view);
            }
            Err(f) => {
                let mut view = EventView::new(EventKind::Failed, id, key, name);
                view.message = f.message.as_ptr();
                view.details = f.details.as_ptr();
                self.delivered.push(Garbage::Failure(f));
                sink(view);
            }
        }
        *written += 1;
        if !finished {
            return true;
        }
        if *written < capacity {
            let mut view = EventView::new(EventKind::GroupFinished, 0, key, name);
            view.group_name = name;
            sink(view);
            *written += 1;
            true
        } else {
            self.events.push_front(Ev::GroupFinished(key));
            self.deliverable += 1;
            false
        }
    }

    /// Delivers lane outcomes as events without queueing them (the event
    /// queue is empty), up to `capacity` events; stops at an outcome that
    /// must become a queued event (its task has downstream tasks, or it
    /// cascades), which is applied. Returns the number of events written.
    fn deliver_lane(&mut self, capacity: usize, sink: &mut impl FnMut(EventView), after: &mut After) -> usize {
        let mut written = 0;
        if self.lane_live() == 0 {
            return written;
        }
        let mut run = GroupRun::NONE;
        // A sink that panics (the Rust API's: the C API's writes to a
        // buffer) must not lose the run's leaves, or its group would never
        // finish: they are applied before the panic goes on.
        let done = panic::catch_unwind(AssertUnwindSafe(|| {
            self.deliver_lane_run(capacity, sink, after, &mut written, &mut run)
        }));
        run.end(&mut self.groups);
        if let Err(payload) = done {
            panic::resume_unwind(payload);
        }
        written
    }

    /// [`State::deliver_lane`]'s loop. Consecutive tasks of one group leave
    /// it through `run` (counted there, applied to the group's slot by
    /// [`GroupRun::end`]) while they cannot be its last live task: one
    /// look at the slot per run of outcomes rather than one per outcome.
    #[inline(always)]
    fn deliver_lane_run(
        &mut self,
        capacity: usize,
        sink: &mut impl FnMut(EventView),
        after: &mut After,
        written: &mut usize,
        run: &mut GroupRun,
    ) {
        for i in 0..self.workers.len() {
            // The worker's lane, looked up once rather than per outcome
            // (the loop's calls may start a worker, which can move the
            // vector, not the lanes).
            let lane: *const WorkerLane = Arc::as_ptr(&self.workers[i].lane);
            while *written < capacity {
                // SAFETY: each lane is behind an `Arc` that its slot in
                // `workers` holds until the state is dropped (no slot is
                // ever removed).
                let Some(word) = unsafe { &*lane }.pop_word() else {
                    break;
                };
                self.lane_applied += 1;
                if WorkerLane::is_plain_word(word) {
                    // The common end, W1's: completed without a result, no
                    // continuation claimed, a lane task without edges. Its
                    // record owns nothing and is forgotten in its slot
                    // rather than dropped (the optimizer cannot see the
                    // variant to spare `Body`'s drop glue), and no
                    // `Outcome` is made.
                    let plain = self.tasks.remove_forgetting(word, |t| {
                        (t.links().is_none() && matches!(t.body, Body::Lane { down: 0, .. })).then_some(t.group())
                    });
                    if let Some(group) = plain.or_else(|| self.take_released(word, after)) {
                        self.completed_total += 1;
                        if !self.deliver_in_run(word, group, Ok(None), capacity, written, sink, run) {
                            return;
                        }
                        continue;
                    }
                }
                // A chain's task that completed without a result (W2a's),
                // as below without making its `Outcome`.
                if let Some((id, cont_claimed)) = WorkerLane::completed_word(word) {
                    if let Some(group) = self.take_chain_task(id, &Outcome::Completed(None), cont_claimed) {
                        self.completed_total += 1;
                        if !self.deliver_in_run(id, group, Ok(None), capacity, written, sink, run) {
                            return;
                        }
                        continue;
                    }
                }
                // SAFETY: as above.
                let (id, outcome, cont_claimed) = unsafe { &*lane }.decode(word);
                // A lane task without edges (with a result or a failure,
                // here: a plain word was looked up above). A task whose
                // worker claimed its continuation has a downstream task:
                // not looked up for this case. Then a
                // chain's task (`take_chain_task`, inline: a call of its own
                // cost a chain's poll ~29 instructions), then tasks with
                // other edges, delivered alone or with their outcome
                // applied.
                let plain = if cont_claimed || WorkerLane::is_plain_word(word) {
                    None
                } else {
                    self.tasks.remove_forgetting(id, |t| {
                        (t.links().is_none() && matches!(t.body, Body::Lane { down: 0, .. })).then_some(t.group())
                    })
                };
                // (A word without a side outcome was offered to
                // `take_chain_task` above: offered again here, one lookup
                // more for such a task that it refuses, a linked one.
                // Testing for it cost the W1 poll 5 instructions.)
                let group = match plain.or_else(|| self.take_chain_task(id, &outcome, cont_claimed)) {
                    Some(group) => group,
                    None => match self.take_alone(id, &outcome, after) {
                        Some(group) => group,
                        None => {
                            // Stopped (dropped by `finish`) or with
                            // downstream tasks: `finish` may end groups.
                            run.end(&mut self.groups);
                            self.running += 1;
                            self.finish(id, outcome, after);
                            if self.events.is_empty() {
                                continue;
                            }
                            return;
                        }
                    },
                };
                let end = self.count_outcome(outcome);
                if !self.deliver_in_run(id, group, end, capacity, written, sink, run) {
                    return;
                }
            }
        }
    }

    /// Writes the final event of lane task `id` of group slot `group`, which
    /// left the table, leaving its group through `run` (see
    /// [`State::deliver_lane_run`]) unless it is the group's last live task,
    /// whose event the group's follows. Returns false if that one did not
    /// fit and was queued in front (the loop must stop).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn deliver_in_run(
        &mut self,
        id: u64,
        group: u32,
        end: Result<Option<Arc<ResultSet>>, Arc<Failure>>,
        capacity: usize,
        written: &mut usize,
        sink: &mut impl FnMut(EventView),
        run: &mut GroupRun,
    ) -> bool {
        if run.index != group || run.credit == 0 {
            run.end(&mut self.groups);
            let slot = self.groups.slot(group);
            if slot.live < 2 {
                // The group's last live task: its event follows.
                return self.write_final(id, group, end, capacity, written, sink);
            }
            let key = slot.key;
            let name = self.groups.name_ptr(key);
            *run = GroupRun { index: group, key, name, taken: 0, credit: slot.live - 1 };
        }
        run.credit -= 1;
        run.taken += 1;
        self.write_final_keyed(id, run.key, run.name, false, end, capacity, written, sink);
        true
    }

    /// Counts a lane task's outcome: the end its final event reports.
    #[inline(always)]
    fn count_outcome(&mut self, outcome: Outcome) -> Result<Option<Arc<ResultSet>>, Arc<Failure>> {
        match outcome {
            Outcome::Completed(result) => {
                self.completed_total += 1;
                Ok(result)
            }
            Outcome::Failed(f) => {
                self.failed_total += 1;
                Err(Arc::new(f))
            }
        }
    }

    /// Takes a chain's task out of the table when its outcome changes
    /// nothing downstream and needs no other record, to be delivered as an
    /// independent task would be, and returns its group: a completed
    /// continuation without downstream tasks (a chain's last task), or a
    /// completed lane task or continuation whose only downstream task is
    /// the continuation its worker claimed, as `cont_claimed` says. One
    /// lookup: the record is forgotten in its slot, and a continuation's
    /// record pointer taken out of it (its ownership moves here, and the
    /// record goes back to the arena), rather than the whole task moved
    /// out. `None` for any other task.
    #[inline(always)]
    fn take_chain_task(&mut self, id: u64, outcome: &Outcome, cont_claimed: bool) -> Option<u32> {
        let completed = matches!(outcome, Outcome::Completed(_));
        let cheap = self.tasks.remove_forgetting(id, |t| {
            if t.links().is_some() || !completed {
                return None;
            }
            match &t.body {
                Body::Cont { linked: false, down, rec, .. } if *down == 0 || cont_claimed => {
                    Some((t.group(), Some(rec.as_raw())))
                }
                Body::Lane { linked: false, .. } if cont_claimed => Some((t.group(), None)),
                _ => None,
            }
        });
        let (group, rec) = cheap?;
        if let Some(rec) = rec {
            // SAFETY: the table's reference, taken out of the forgotten
            // record above.
            self.lane.conts.recycle_ran(unsafe { lane::ContRef::from_raw(rec) });
        }
        Some(group)
    }

    /// Takes out of the table a lane task or continuation with edges whose
    /// outcome changes nothing downstream (see [`State::delivers_alone`];
    /// [`State::take_chain_task`] has taken the cheap cases), to be
    /// delivered as an independent task would be, and returns its group;
    /// `None` if its outcome must be applied. A continuation's record goes
    /// back to the arena.
    #[inline(never)]
    fn take_alone(&mut self, id: u64, outcome: &Outcome, after: &mut After) -> Option<u32> {
        if matches!(outcome, Outcome::Completed(_)) {
            if let Some(group) = self.take_released(id, after) {
                return Some(group);
            }
        }
        if !self.delivers_alone(id, outcome) {
            return None;
        }
        let task = self.tasks.remove(id).expect("checked by delivers_alone");
        if let Some(li) = task.links() {
            let mut links = self.links.remove(li);
            if !links.received.is_empty() {
                after.garbage(Garbage::Results(links.received.take()));
            }
        }
        let group = task.group();
        match task.body {
            Body::Cont { rec, .. } => self.lane.conts.recycle_ran(rec),
            // Any other body here is a lane one, which owns nothing.
            body => mem::forget(body),
        }
        Some(group)
    }

    /// Takes completed lane task `id` out of the table if it has a link
    /// record and no downstream task (one released by its upstream task's
    /// finish, `State::ready_waiting`, or added after its upstream tasks
    /// completed without results), to be delivered as an independent task
    /// would be, and returns its group: one lookup, the record forgotten in
    /// its slot (a lane body owns nothing), its link record removed.
    #[inline(never)]
    fn take_released(&mut self, id: u64, after: &mut After) -> Option<u32> {
        let links = &self.links;
        let (group, li) = self.tasks.remove_forgetting(id, |t| match t.body {
            Body::Lane { linked: false, links: Some(li), .. } if links.get(li).downstream.as_slice().is_empty() => {
                Some((t.group(), li))
            }
            _ => None,
        })?;
        self.drop_links(li, after);
        Some(group)
    }

    /// Removes link record `li` of a task that left the table, its
    /// received results released after the lock.
    #[inline(never)]
    fn drop_links(&mut self, li: LinkId, after: &mut After) {
        let mut links = self.links.remove(li);
        if !links.received.is_empty() {
            after.garbage(Garbage::Results(links.received.take()));
        }
    }

    /// True if the outcome of linked lane task `id` (a continuation, or a
    /// chain's first task) changes nothing downstream: it completed and its
    /// downstream tasks, if any, are continuations already claimed (they
    /// were given its result), and it is not counted in `lane_linked`.
    /// ([`State::take_chain_task`] decides its two cheap cases without it.)
    fn delivers_alone(&self, id: u64, outcome: &Outcome) -> bool {
        let Some(task) = self.tasks.get(id) else {
            return false;
        };
        if !matches!(task.body, Body::Lane { linked: false, .. } | Body::Cont { linked: false, .. })
            || !matches!(outcome, Outcome::Completed(_))
        {
            return false;
        }
        let claimed = |d: u64| match self.tasks.get(d) {
            Some(Task { body: Body::Cont { rec, .. }, .. }) => !rec.is_queued(),
            Some(_) => false,
            None => true,
        };
        match task.links() {
            Some(li) => self.links.get(li).downstream.iter().all(claimed),
            None => match task.body.implicit_down() {
                0 => true,
                d => claimed(d),
            },
        }
    }

    /// Workers on the lane that look for a task rather than run one. A
    /// worker found looking takes the task just pushed, or one pushed
    /// before (the fence pairs with the one in `Lane::take`, after the
    /// worker stops looking); one that stops looking later re-checks under
    /// the lock before it sleeps.
    fn lane_looking(&self) -> usize {
        if self.in_lane == 0 {
            return 0;
        }
        fence(Ordering::SeqCst);
        self.workers.iter().filter(|w| w.lane.is_looking()).count()
    }

    /// Lane tasks not yet resolved (queued, running, or with an outcome
    /// not yet applied).
    fn lane_live(&self) -> usize {
        (self.lane_added - self.lane_cancelled - self.lane_applied) as usize
    }

    /// Lane tasks claimed and not yet applied.
    fn lane_running(&self) -> usize {
        let claims: u64 = self.workers.iter().map(|w| w.lane.claims()).sum::<u64>() + self.retired_claims;
        (claims - self.lane_applied) as usize
    }

    /// Opens or closes the lane for what the state allows: it is open
    /// while processing runs, no task hooks are registered and the manager
    /// is not shut down.
    fn sync_lane_open(&mut self) {
        let want = self.processing && !self.shut_down && self.task_hooks.is_none();
        if want == self.lane.is_open() {
            return;
        }
        if want {
            self.lane.open();
        } else {
            self.lane.close(self.workers.iter().map(|w| &*w.lane));
        }
    }

    /// Moves every queued lane task to the locked ready queue (the lane
    /// must be closed).
    fn drain_lane(&mut self, after: &mut After) {
        let mut moved = Vec::new();
        self.lane.drain(|id, job| moved.push((id, job)));
        for (id, job) in moved {
            self.lane_to_locked(id, job);
        }
        self.provision(after);
    }

    /// A lane task whose entry was cancelled becomes a task of the locked
    /// path, queued at its priority.
    fn lane_to_locked(&mut self, id: u64, job: Job) {
        self.lane_cancelled += 1;
        self.settle_edges(id);
        let task = self.tasks.get_mut(id).expect("a queued lane task is live");
        let Body::Lane { group, level, links, linked, .. } = task.body else { unreachable!("a lane task") };
        if linked {
            // Its downstream tasks now wait on the locked path, whose
            // finishes are applied under the lock anyway.
            self.lane_linked -= 1;
        }
        let priority = self.lane_levels[level as usize].0;
        task.body = pending_body(&mut self.links, group, priority, links, job);
        self.pending += 1;
        self.ready_push(priority, id);
    }

    /// Notes lane entry `pos` of level `level`, pushed unpublished by a
    /// batch (see `lane_batch`).
    #[inline(always)]
    fn note_unpublished(&mut self, level: u8, pos: u64) {
        note_unpublished(&mut self.lane_batch, level, pos);
    }

    /// Publishes the lane entries of a batch, after the locked queue's best
    /// priority (a worker that sees an entry sees that priority too).
    fn publish_lane_batch(&mut self, after: &mut After) {
        if self.lane_batch.iter().all(Option::is_none) {
            return;
        }
        self.sync_lane(after);
        self.publish_unpublished();
    }

    /// Publishes the tasks a finish released to the lane unpublished (see
    /// `releasing_several`), after the locked queue's best priority (the
    /// walk may have made tasks ready there too), as a batch's.
    #[inline(never)]
    fn publish_released(&mut self) {
        if self.lane_batch.iter().all(Option::is_none) {
            return;
        }
        let top = self.ready.top_priority().map_or(NO_PRIORITY, i64::from);
        self.publish_locked_top(top);
        self.publish_unpublished();
    }

    /// The entries noted in `lane_batch`, published a level at a time.
    fn publish_unpublished(&mut self) {
        // The highest priority first, a level at a time, with `epoch`
        // bumped after each level: a worker whose take began before a
        // higher level's entries were published, and that pops a lower
        // level's entry, sees the bump and gives the entry back (see
        // `Lane::take`). In the batch's order, a worker could pop a lower
        // entry published before the batch's higher ones and run it first
        // (a test caught it in 1 of ~100 rounds on a loaded machine).
        let n = self.lane_levels.len();
        let mut levels = [(0i32, 0u8); lane::LEVELS];
        for (i, &(priority, _)) in self.lane_levels.iter().enumerate() {
            levels[i] = (priority, i as u8);
        }
        levels[..n].sort_unstable_by_key(|&(priority, _)| std::cmp::Reverse(priority));
        if self.lane.is_overflowing() {
            // Entries of the batch may wait in an overflow (their ring was
            // full): they have no publication of their own, so this bump
            // stands for theirs. A worker that pops an entry published
            // below then sees `epoch` move and the overflow's flag, set
            // before this bump, and gives the entry back (loom model 8).
            self.lane.published();
        }
        for &(_, level) in &levels[..n] {
            // A level's entries in position order.
            if let Some((first, last)) = self.lane_batch[level as usize].take() {
                for pos in first..=last {
                    self.lane.publish(level as usize, pos);
                }
                self.lane.published();
            }
        }
        // Entries that went to an overflow while its ring had room (an
        // overflow was waiting when the batch began).
        self.lane.refill();
    }

    /// A lane task a worker popped but gave back (the locked queue gained
    /// a better task meanwhile): it moves to the locked path, unless a
    /// lock holder cancelled its entry meanwhile (a stop, which freed it,
    /// or a priority change, which moved it).
    fn give_back(&mut self, id: u64, level: LevelRef, pos: u64, after: &mut After) {
        let Some(job) = level.give_back(pos, id) else {
            return;
        };
        debug_assert!(
            matches!(self.tasks.get(id), Some(Task { body: Body::Lane { .. }, .. })),
            "a queued lane entry's task is a lane task"
        );
        self.lane_to_locked(id, job);
        self.provision(after);
    }

    /// Moves up to two of the oldest locked tasks of `priority` into its
    /// lane level while they are independent tasks and newer than the
    /// level's last entry (a level is a FIFO: an older task, one whose
    /// priority was changed or that was moved out to be linked (by a fan-in
    /// over the tail of a long backlog, see `State::add_linked`), stays on
    /// the locked path, where workers compare ids; see `State::add`).
    #[inline(never)]
    fn refill_lane(&mut self, priority: i32) {
        let Some((level, level_ref)) = self.lane_level(priority) else {
            return;
        };
        for _ in 0..2 {
            let Some((p, id)) = self.ready_front() else {
                return;
            };
            if p != priority || level_ref.last_id().is_some_and(|last| last > id) {
                return;
            }
            let task = self.tasks.get_mut(id).expect("a valid ready entry");
            let group = match &task.body {
                Body::Pending { group, job, .. } if job.run.is_some() => *group,
                _ => return,
            };
            let lane = Body::Lane { group, links: None, level, pos: 0, linked: false, down: 0 };
            let Body::Pending { job, .. } = mem::replace(&mut task.body, lane) else { unreachable!("checked above") };
            let (pos, in_ring) = level_ref.push(id, job, !self.lane_batching);
            task.body = Body::Lane { group, links: None, level, pos, linked: false, down: 0 };
            if self.lane_batching && in_ring {
                self.note_unpublished(level, pos);
            }
            self.ready.pop();
            self.ready.taken(priority);
            self.pending -= 1;
            self.lane_added += 1;
        }
    }

    /// If task `id` is a queued lane task or continuation, moves it to the
    /// locked path (a continuation still waits for its upstream task there).
    /// Returns true if it is a claimed one (running or finished).
    #[inline]
    fn unlane(&mut self, id: u64) -> bool {
        match self.tasks.get(id) {
            Some(Task { body: Body::Lane { .. } | Body::Cont { .. }, .. }) => self.unlane_slow(id),
            _ => false,
        }
    }

    /// The index in `ups` from which every task of `ups` in the lane (a
    /// lane or continuation body) lies: counted from the end, there are at
    /// most `lane_live()` of them (it also counts stopped lane tasks whose
    /// outcome is not applied yet). A fan-in's add then reads the records
    /// of its upstream tasks once (in its linking loop), not twice. Also
    /// returns how many of them are lane tasks (not continuations).
    fn lane_suffix(&self, ups: &[u64]) -> (usize, usize) {
        let mut left = self.lane_live();
        let mut start = ups.len();
        let mut lane_tasks = 0;
        while left > 0 && start > 0 {
            start -= 1;
            match self.tasks.get(ups[start]) {
                Some(Task { body: Body::Lane { .. } }) => {
                    left -= 1;
                    lane_tasks += 1;
                }
                Some(Task { body: Body::Cont { .. } }) => left -= 1,
                _ => {}
            }
        }
        debug_assert!(
            !ups[..start]
                .iter()
                .any(|&u| matches!(self.tasks.get(u), Some(Task { body: Body::Lane { .. } | Body::Cont { .. } }))),
            "lane_live() counts every lane body"
        );
        (start, lane_tasks)
    }

    #[inline(never)]
    fn unlane_slow(&mut self, id: u64) -> bool {
        let job = match self.tasks.get(id) {
            Some(Task { body: Body::Lane { level, pos, .. }, .. }) => {
                let (level, pos) = (*level as usize, *pos);
                // A worker that finds the entry cancelled must not take the
                // entries after it (younger, or lower) as if it had been
                // stopped: the task waits on the locked path, and the front
                // that says so is published only at this section's end.
                // `locked_gen`, moved and published before the cancel, sends
                // that worker to the lock (see `Take::Cancelled`).
                self.locked_gen += 1;
                self.publish_locked_top(self.locked_top);
                return match self.lane.cancel(level, pos, id) {
                    Some(job) => {
                        self.lane_to_locked(id, job);
                        false
                    }
                    None => true,
                };
            }
            Some(Task { body: Body::Cont { rec, .. }, .. }) => match rec.cancel() {
                Some(job) => job,
                None => return true,
            },
            _ => return false,
        };
        self.lane_cancelled += 1;
        self.cont_cancelled += 1;
        self.settle_edges(id);
        let task = self.tasks.get_mut(id).expect("checked above");
        // `settle_edges` gave it a link record (its upstream is an edge):
        // as a pending task it waits there for that upstream task.
        let li = task.links().expect("a continuation's upstream edge is settled");
        let Body::Cont { group, ref rec, .. } = task.body else { unreachable!("checked above") };
        let l = self.links.get_mut(li);
        (l.priority, l.waiting) = (rec.priority(), 1);
        if let Body::Cont { rec, .. } = mem::replace(&mut task.body, Body::Waiting { group, links: li, job }) {
            self.lane.conts.recycle(rec);
        }
        self.pending += 1;
        false
    }

    /// Moves the edges task `id` keeps in its body to a link record (see
    /// [`Body::implicit_edges`]), before it leaves the lane. (`finish`
    /// does the same inline, on the record it already looked up.)
    fn settle_edges(&mut self, id: u64) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.links().is_none() {
            let edges = task.body.implicit_edges();
            if edges != (0, 0) {
                task.set_links(self.links.insert(Links::implicit(edges)), &mut self.links);
            }
        }
    }

    /// Moves downstream task `d` to the locked path if it is a queued
    /// continuation, before a walk over downstream tasks (a finish, a
    /// failure, a stop) applies the locked path's rules to it; a claimed
    /// one runs and is left alone.
    #[inline]
    fn unlane_cont(&mut self, d: u64) {
        if matches!(self.tasks.get(d), Some(Task { body: Body::Cont { .. }, .. })) {
            self.unlane(d);
        }
    }

    /// Adds task `id` as a continuation of `up`, its only upstream task, if
    /// `up` is a lane task or a continuation, queued or running, without
    /// downstream tasks; or, if `up` has downstream tasks, as one more of
    /// them when [`State::add_fan_out`] can. Returns the job back if it
    /// cannot.
    #[inline(always)]
    fn add_cont(&mut self, id: u64, job: Job, priority: i32, group: u32, up: u64) -> Result<(), Job> {
        // One lookup: the other fields are borrowed apart from the table.
        let Some(ut) = self.tasks.get_mut(up) else {
            return Err(job);
        };
        let has_downstream = match ut.links() {
            Some(li) => !self.links.get(li).downstream.as_slice().is_empty(),
            None => ut.body.implicit_down() != 0,
        };
        if has_downstream {
            // Not a continuation: but it can wait with the others (see
            // `State::add_fan_out`) if `up` is not finished and its
            // outcome is applied under the lock.
            let li = match &ut.body {
                Body::Waiting { links, .. } => *links,
                Body::Running { links: Some(li), .. }
                | Body::Lane { links: Some(li), linked: true, .. }
                | Body::Cont { links: Some(li), linked: true, .. } => *li,
                _ => return Err(job),
            };
            return self.add_fan_out(id, job, priority, group, up, li);
        }
        let rec = self.lane.conts.make(id, priority, job, up);
        let to = match &ut.body {
            Body::Lane { level, pos, .. } => self.lane.attach(*level as usize, *pos, up, &rec),
            Body::Cont { rec: up_rec, .. } => Lane::attach_to_cont(up_rec, &rec),
            _ => AttachTo::No,
        };
        let attached = match to {
            AttachTo::Queued => true,
            AttachTo::Running => self.workers.iter().any(|w| w.lane.attach_running(up, &rec)),
            AttachTo::No => false,
        };
        if !attached {
            return Err(self.lane.conts.unmake(rec));
        }
        // The edge: in the upstream task's link record if it has one, else
        // kept in the two bodies (see `Body::implicit_edges`).
        match (ut.links(), &mut ut.body) {
            (Some(li), _) => self.links.get_mut(li).downstream.push(id),
            (None, Body::Lane { down, .. } | Body::Cont { down, .. }) => *down = id,
            (None, _) => unreachable!("attached to a lane task or continuation"),
        }
        let body = Body::Cont { group: GroupIx::new(group), links: None, rec, linked: false, down: 0 };
        self.tasks.insert(id, Task { body });
        self.lane_added += 1;
        self.cont_added += 1;
        Ok(())
    }

    /// Adds task `id` to wait on `up`, its only upstream task, which has
    /// downstream tasks in its link record `li` and is not finished: queued
    /// or running on the locked path, or a lane task or continuation
    /// already linked (claimed, or in an overflow, and counted in
    /// `lane_linked`: its outcome is applied under the lock as soon as it
    /// is known, which releases this task). What [`State::add_linked`] does
    /// for such an upstream task, without its general loop: the edge in
    /// both link records, and a waiting body. N tasks added on one upstream
    /// task (`btm_bench q1`) take it from the second on. Called by
    /// [`State::add_cont`], whose callers treat `Ok` as its own: nothing
    /// the end-of-section sync looks at changes (the task is not ready, no
    /// event is queued). Gives the job back, with nothing changed, when
    /// the first downstream task is a continuation (which the general path
    /// moves to the locked path).
    #[inline(never)]
    fn add_fan_out(&mut self, id: u64, job: Job, priority: i32, group: u32, up: u64, li: LinkId) -> Result<(), Job> {
        let first = self.links.get(li).downstream.as_slice()[0];
        if matches!(self.tasks.get(first), Some(Task { body: Body::Cont { .. } })) {
            return Err(job);
        }
        self.links.get_mut(li).downstream.push(id);
        let own = self.links.insert(Links { upstream: Ids::One(up), waiting: 1, priority, ..Links::default() });
        self.tasks.insert(id, Task { body: Body::Waiting { group: GroupIx::new(group), links: own, job } });
        self.pending += 1;
        Ok(())
    }

    /// [`State::lane_level`] through `lane_cache` (the single add's:
    /// with four priorities in turn, `bash bench/paths.sh`'s add 258.0 ->
    /// 250.8 instructions, eight 271.6 -> 253.0).
    #[inline(always)]
    fn lane_level_cached(&mut self, priority: i32) -> Option<(u8, LevelRef)> {
        let cached = self.lane_cache[lane_cache_slot(priority)];
        match cached.level {
            Some(found) if cached.priority == priority => Some(found),
            _ => self.lane_level(priority),
        }
    }

    /// The lane level for `priority`, if it has (or can get) one. (Not
    /// inlined always since `lane_level_cached`: the single adds' counts
    /// were lower without, the others' within 2.)
    fn lane_level(&mut self, priority: i32) -> Option<(u8, LevelRef)> {
        if let Some(i) = self.lane_levels.iter().position(|(p, _)| *p == priority) {
            let r = self.lane_levels[i].1;
            self.lane_cache[lane_cache_slot(priority)] = LaneCached { priority, level: Some((i as u8, r)) };
            return Some((i as u8, r));
        }
        if self.lane_levels.len() == lane::LEVELS {
            return self.lane_level_given(priority);
        }
        self.lane_level_slow(priority)
    }

    /// A level for `priority`, which has none, once [`lane::LEVELS`] are
    /// made: an empty one given to it (see [`Lane::reassign`]) if one is
    /// and no worker is taking an entry or giving one back (which could be
    /// one of the level's present priority). Otherwise the task takes the
    /// locked path.
    #[cold]
    #[inline(never)]
    fn lane_level_given(&mut self, priority: i32) -> Option<(u8, LevelRef)> {
        let workers_off = self.in_lane == 0;
        // While workers take from the lane, only a level unused for
        // `BUSY_GIVE_AGE` adds: with more priorities in use at once than
        // levels, a level emptied by the workers a moment ago went to each
        // new add's priority in turn, and W6 at 12 and 16 priorities ran
        // 134 -> 239 and 161 -> 264 ns per task.
        let before = if workers_off { u64::MAX } else { self.next_id.saturating_sub(BUSY_GIVE_AGE) };
        let l = self.lane.empty_level(workers_off, before)?;
        if !workers_off {
            // After the level was read empty (see `WorkerLane::is_quiet`).
            fence(Ordering::SeqCst);
            if !self.workers.iter().all(|w| w.lane.is_quiet()) {
                return None;
            }
        }
        self.lane.reassign(l, priority);
        let old = &mut self.lane_cache[lane_cache_slot(self.lane_levels[l].0)];
        if old.level.is_some_and(|(i, _)| usize::from(i) == l) {
            old.level = None;
        }
        self.lane_levels[l].0 = priority;
        self.lane_reassigned += 1;
        Some((l as u8, self.lane_levels[l].1))
    }

    /// A new level for `priority`, which has none, while fewer than
    /// [`lane::LEVELS`] are made.
    #[inline(never)]
    fn lane_level_slow(&mut self, priority: i32) -> Option<(u8, LevelRef)> {
        let l = self.lane.level_of(priority)?;
        debug_assert_eq!(l, self.lane_levels.len(), "levels are made in index order");
        let r = self.lane.level_ref(l);
        self.lane_levels.push((priority, r));
        Some((l as u8, r))
    }

    /// Issues the next id to a new task of `group`, which joins it; `None`
    /// when the group would be a new one past the limit (no id used).
    #[inline(always)]
    fn issue_id(&mut self, group: GroupKey) -> Option<(u64, u32)> {
        let id = self.next_id;
        let (group_index, stale) = self.groups.join(group, id)?;
        Some((self.issued(id, group_index, stale), group_index))
    }

    /// [`State::issue_id`] for the group of slot `group_index`, which has
    /// a slot (from `GroupTable::cached_index`).
    #[inline(always)]
    fn issue_id_at(&mut self, group_index: u32) -> u64 {
        let id = self.next_id;
        let (_, stale) = self.groups.join_at(group_index, id);
        self.issued(id, group_index, stale)
    }

    /// The end of an id's issue: `id`, which just joined the group of slot
    /// `group_index`, is used.
    #[inline(always)]
    fn issued(&mut self, id: u64, group_index: u32, stale: bool) -> u64 {
        self.next_id += 1;
        if stale {
            // The new task is not in the table yet: the compaction must
            // keep it.
            self.compact_group(group_index, id);
        }
        id
    }

    /// Puts new task `id` in lane level `level` (published now unless
    /// `lane_batching`, then at the batch's end; `publish` is
    /// `!self.lane_batching`, a constant for some callers) and its record
    /// in the table.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn insert_lane(
        &mut self,
        id: u64,
        job: Job,
        group_index: u32,
        links: Option<LinkId>,
        level: u8,
        level_ref: LevelRef,
        publish: bool,
    ) {
        debug_assert_eq!(publish, !self.lane_batching);
        let (pos, in_ring) = level_ref.push(id, job, publish);
        if !publish && in_ring {
            self.note_unpublished(level, pos);
        }
        let body = Body::Lane { group: GroupIx::new(group_index), links, level, pos, linked: false, down: 0 };
        self.tasks.insert(id, Task { body });
        self.lane_added += 1;
    }

    /// The checks of [`State::add`] for a whole batch, in order, before any
    /// is added (an upstream is issued before the batch, or is an earlier
    /// task of it named with [`IN_BATCH`]); returns the batch's shape.
    fn check_many<'a>(&self, tasks: &impl Batch<'a>) -> Result<BatchShape, Error> {
        if self.shut_down {
            return Err(Error::ShutDown);
        }
        let n = tasks.count();
        if let Some(u) = tasks.uniform().filter(|_| n > 0) {
            // The loop below for a batch whose tasks all ask for the same
            // but maybe their priority and the link to the task before
            // (`bench/paths.sh`: lanebulk add 131.0 -> 113.0 instructions
            // per task; lanechainbulk add 296.7 -> 233.9).
            let t = tasks.spec(0);
            debug_assert!((0..n).all(|i| {
                let s = tasks.spec(i);
                s.group == t.group && s.runs && Uniform::allows(i, s.upstream)
            }));
            debug_assert_eq!(u.one_priority, (0..n).all(|i| tasks.priority(i) == t.priority));
            debug_assert_eq!(u.links, (0..n).any(|i| tasks.upstream_len(i) > 0));
            if !self.groups.is_valid(t.group) {
                return Err(Error::InvalidGroup);
            }
            if !self.groups.has_room(n) && !self.groups.has_room(usize::from(self.groups.find(t.group).is_none())) {
                return Err(Error::TooManyGroups);
            }
            return Ok(BatchShape {
                one_priority: u.one_priority,
                independent: !u.links,
                one_group: true,
                own: u.links,
                chains: true,
            });
        }
        let first = (n > 0).then(|| tasks.spec(0));
        let (mut one_priority, mut independent, mut one_group, mut chains) = (true, true, true, true);
        let mut own = false;
        for i in 0..n {
            let t = tasks.spec(i);
            // `check_add`'s checks, where an upstream id naming the batch's
            // own task must name one before this task.
            if !self.groups.is_valid(t.group) {
                return Err(Error::InvalidGroup);
            }
            for &u in t.upstream {
                let known = if u & IN_BATCH != 0 { u & !IN_BATCH < i as u64 } else { u != 0 && u < self.next_id };
                if !known {
                    return Err(Error::UnknownUpstream);
                }
                own |= u & IN_BATCH != 0;
            }
            one_priority &= first.is_some_and(|f| f.priority == t.priority);
            independent &= t.upstream.is_empty() && t.runs;
            chains &= t.runs && (t.upstream.is_empty() || t.upstream == [IN_BATCH | (i as u64).wrapping_sub(1)]);
            one_group &= first.is_some_and(|f| f.group == t.group);
        }
        // A batch needs a group slot for each group it names that has none,
        // so that no add of it fails (counted only near the limit).
        if !self.groups.has_room(n) {
            let new: std::collections::HashSet<GroupKey> =
                (0..n).map(|i| tasks.spec(i).group).filter(|&g| self.groups.find(g).is_none()).collect();
            if !self.groups.has_room(new.len()) {
                return Err(Error::TooManyGroups);
            }
        }
        Ok(BatchShape { one_priority, independent, one_group, own, chains })
    }

    /// The lane level for an independent task of `priority`, if it goes
    /// there (`State::add`'s gates, the lane being open): none while locked
    /// tasks of that priority wait, which come first, or when no level is
    /// free.
    #[inline(always)]
    fn lane_gate(&mut self, priority: i32) -> Option<(u8, LevelRef)> {
        if self.ready.has_priority(priority) {
            None
        } else {
            self.lane_level(priority)
        }
    }

    /// Before a new block of continuation records: the workers' outcomes,
    /// applied, give back the records of the continuations that ran. A host
    /// that adds chains without polling (W2a, and every chain added in one
    /// `btm_add_tasks` call) otherwise keeps every record until its poll:
    /// 64 bytes of fresh memory per chain task (W2a in calls of 1,000:
    /// 3,050-3,110 page faults per run -> 1,720-1,880). Returns whether it
    /// applied them (events may be queued and tasks made ready since).
    #[inline(always)]
    fn reclaim_conts(&mut self, after: &mut After) -> bool {
        let dry = self.lane.conts.is_dry();
        if dry {
            self.apply_lane(after);
        }
        dry
    }

    /// After an add in a batch whose lane entries are published as they
    /// come: the locked queue's front, unless the add was a plain lane add
    /// and `changed` is false (as `Manager::add`'s end-of-section sync).
    #[inline(always)]
    fn sync_after_add(&mut self, after: &mut After, changed: bool) {
        if !mem::take(&mut self.plain_lane_add) || changed {
            self.sync_lane(after);
        }
    }

    /// Adds a checked batch whose tasks share one priority and one group,
    /// have no upstream task and run a function, straight to their lane
    /// level: what [`State::add`] does for each of them, with its checks
    /// and its choices made once for the batch. Returns how many it added:
    /// all of them, or none when they would not go to the lane (the lane
    /// closed, locked tasks of their priority waiting, no free level).
    #[inline(never)]
    fn add_lane_run<'a>(&mut self, tasks: &mut impl Batch<'a>, after: &mut After) -> usize {
        let (n, first) = (tasks.count(), tasks.spec(0));
        if !self.lane.is_open() {
            return 0;
        }
        let Some((level, level_ref)) = self.lane_gate(first.priority) else {
            return 0;
        };
        // What `issue_id` and `insert_lane` do for each task, done for the
        // run: the first task joins its group as a single add does (which
        // compacts a member list grown stale), the others behind it at
        // once; the ring takes the tasks it has room for with one tail
        // store, and their records go into the table a chunk at a time
        // (`bench/paths.sh`: lanebulk add 204.8 -> 131.0 instructions per
        // task). Tasks past a full ring go to the overflow together (at
        // 40,000 tasks, three fifths past the ring: 132.4 -> 90.0).
        let Some((first_id, group_index)) = self.issue_id(first.group) else {
            unreachable!("checked: the batch's group has a slot");
        };
        let more = (n - 1) as u64;
        self.groups.join_more(group_index, first_id + 1, more);
        self.next_id += more;
        let (start, in_ring) = level_ref.push_run(first_id, n, |i| tasks.take_job(i));
        let group = GroupIx::new(group_index);
        self.tasks.insert_run(first_id, in_ring as u64, |i| Task {
            body: Body::Lane { group, links: None, level, pos: start + i, linked: false, down: 0 },
        });
        let rest = n - in_ring;
        if rest > 0 {
            let over_id = first_id + in_ring as u64;
            let over_pos = level_ref.push_overflow_run(over_id, rest, |i| tasks.take_job(in_ring + i));
            self.tasks.insert_run(over_id, rest as u64, |i| Task {
                body: Body::Lane { group, links: None, level, pos: over_pos + i, linked: false, down: 0 },
            });
        }
        self.lane_added += n as u64;
        // Once: what `add` provisions at each task takes effect after the
        // lock section anyway (wakes, spawns and the spinning workers' hint
        // all wait in `after`).
        self.provision(after);
        n
    }

    /// Adds a checked batch of several priorities whose tasks share one
    /// group, have no upstream task and run a function: what
    /// [`State::add`] does for each of them (while `lane_batching`: the
    /// entries are published at the batch's end), with its checks made for
    /// the batch and its lane gates once per run of one priority. A task
    /// that would not go to the lane (locked tasks of its priority waiting,
    /// no free level) takes `add_checked`'s path. Returns how many it added:
    /// all of them, or none when the lane is closed.
    #[inline(never)]
    fn add_lane_levels<'a>(&mut self, tasks: &mut impl Batch<'a>, after: &mut After) -> usize {
        debug_assert!(self.lane_batching, "several priorities are published at the batch's end");
        if !self.lane.is_open() {
            return 0;
        }
        let (n, group) = (tasks.count(), tasks.spec(0).group);
        if let Some(gates) = self.lane_gates(tasks) {
            self.add_lane_levels_all(tasks, group, &gates);
            self.provision(after);
            return n;
        }
        // The lane level of the current run's priority, if its tasks go there.
        let mut run: Option<(i32, Option<(u8, LevelRef)>)> = None;
        for i in 0..n {
            let priority = tasks.priority(i);
            let lane = match run {
                Some((p, lane)) if p == priority => lane,
                _ => {
                    let lane = self.lane_gate(priority);
                    run = Some((priority, lane));
                    lane
                }
            };
            match lane {
                Some((level, level_ref)) => {
                    let Some((id, group_index)) = self.issue_id(group) else {
                        unreachable!("checked: the batch's group has a slot");
                    };
                    self.insert_lane(id, tasks.take_job(i), group_index, None, level, level_ref, false);
                }
                None => {
                    if self.add_checked(tasks.take_job(i), priority, group, &[], after).is_err() {
                        unreachable!("checked under the same lock section");
                    }
                    // It may have moved locked tasks into the lane.
                    run = None;
                }
            }
        }
        self.provision(after);
        n
    }

    /// The lane gates of every priority of `tasks` (see
    /// [`State::lane_gate`]), if each has one: at most [`lane::LEVELS`]
    /// priorities, with no locked task of any of them waiting. Makes the
    /// levels it needs, as the batch's adds would.
    fn lane_gates<'a>(&mut self, tasks: &impl Batch<'a>) -> Option<LaneGates> {
        let mut gates = LaneGates { priorities: [0; lane::LEVELS], gates: [None; lane::LEVELS], len: 0 };
        for i in 0..tasks.count() {
            let priority = tasks.priority(i);
            if gates.find(priority).is_some() {
                continue;
            }
            if gates.len == lane::LEVELS {
                return None;
            }
            gates.priorities[gates.len] = priority;
            gates.gates[gates.len] = Some(self.lane_gate(priority)?);
            gates.len += 1;
        }
        // A later priority's gate may have been an empty level given to it
        // (`Lane::reassign`) that an earlier one had: the batch then takes
        // the way of several runs, which finds each level as it goes.
        let kept = (0..gates.len).all(|k| {
            gates.gates[k].is_some_and(|(level, _)| self.lane_levels[usize::from(level)].0 == gates.priorities[k])
        });
        kept.then_some(gates)
    }

    /// [`State::add_lane_levels`] when every task goes to the lane level
    /// of its priority (`gates`): the group joined for the batch at once,
    /// and each task put in its level unpublished as it comes
    /// (`bench/paths.sh`: lane4bulk add 273.4 -> 197.9 instructions per
    /// task, with the descriptor check of `btm_add_tasks` made once).
    #[inline(always)]
    fn add_lane_levels_all<'a>(&mut self, tasks: &mut impl Batch<'a>, group: GroupKey, gates: &LaneGates) {
        let n = tasks.count();
        let Some((first_id, group_index)) = self.issue_id(group) else {
            unreachable!("checked: the batch's group has a slot");
        };
        let more = (n - 1) as u64;
        self.groups.join_more(group_index, first_id + 1, more);
        self.next_id += more;
        for i in 0..n {
            let (level, level_ref) = gates.find(tasks.priority(i)).expect("a gate for every priority");
            self.insert_lane(first_id + i as u64, tasks.take_job(i), group_index, None, level, level_ref, false);
        }
    }

    /// Adds a checked batch of chains (see `BatchShape::chains`) of one
    /// priority and group: what [`State::add`] does for each task, with its
    /// checks made for the batch and its lane gates once. A chain's first
    /// task goes to the lane level, published at once (one priority: as
    /// single adds); each next one attaches to the task before it
    /// (`add_linked`, which takes the locked path when it cannot), the
    /// locked queue's front published after an add that changed it (as the
    /// batch loop does). Returns how many it added: all of them, or none
    /// when the first tasks would not go to the lane (the lane closed,
    /// locked tasks of their priority waiting, no free level).
    #[inline(never)]
    fn add_chain_run<'a>(&mut self, tasks: &mut impl Batch<'a>, after: &mut After) -> usize {
        debug_assert!(!self.lane_batching, "one priority: published as added");
        let (n, first) = (tasks.count(), tasks.spec(0));
        if !self.lane.is_open() {
            return 0;
        }
        let Some((level, level_ref)) = self.lane_gate(first.priority) else {
            return 0;
        };
        for i in 0..n {
            let job = tasks.take_job(i);
            let head = tasks.upstream_len(i) == 0;
            if head && !self.ready.has_priority(first.priority) {
                let Some((id, group_index)) = self.issue_id(first.group) else {
                    unreachable!("checked: the batch's group has a slot");
                };
                self.insert_lane(id, job, group_index, None, level, level_ref, true);
                continue;
            }
            if head {
                // Locked tasks of its priority wait (the batch's own links
                // may have put them there): `State::add`'s way.
                self.plain_lane_add = false;
                if self.add_checked(job, first.priority, first.group, &[], after).is_err() {
                    unreachable!("checked under the same lock section");
                }
                self.sync_after_add(after, false);
                continue;
            }
            // A link: attached to the task before it (the last id issued),
            // as `add_linked` does first, else `add_linked`'s other ways.
            let Some((id, group_index)) = self.issue_id(first.group) else {
                unreachable!("checked: the batch's group has a slot");
            };
            let applied = self.reclaim_conts(after);
            let job = match self.add_cont(id, job, first.priority, group_index, id - 1) {
                Ok(()) if !applied => continue,
                Ok(()) => None,
                Err(job) => Some(job),
            };
            self.plain_lane_add = false;
            if let Some(job) = job {
                if self.add_linked(id, job, first.priority, group_index, &[id - 1], after, false).is_err() {
                    unreachable!("checked under the same lock section");
                }
            }
            // (`add_linked` does not know of the outcomes applied above.)
            self.sync_after_add(after, applied);
        }
        self.provision(after);
        n
    }

    /// The checks of an add after the shut-down one, in order.
    #[inline(always)]
    fn check_add(&self, group: GroupKey, upstream: &[u64]) -> Result<(), Error> {
        if !self.groups.is_valid(group) {
            return Err(Error::InvalidGroup);
        }
        if upstream.iter().any(|&u| u == 0 || u >= self.next_id) {
            return Err(Error::UnknownUpstream);
        }
        Ok(())
    }

    // Inlined into both callers (`Manager::add`, `Manager::add_many`): as a
    // call of its own it costs ~50 instructions per add.
    #[inline(always)]
    fn add(
        &mut self,
        job: Job,
        priority: i32,
        group: GroupKey,
        upstream: &[u64],
        after: &mut After,
    ) -> Result<u64, (Error, Job)> {
        if self.shut_down {
            return Err((Error::ShutDown, job));
        }
        if let Err(e) = self.check_add(group, upstream) {
            return Err((e, job));
        }
        self.add_checked(job, priority, group, upstream, after)
    }

    /// The add of an independent task when it goes straight to its lane
    /// level and nothing else is to be done: processing runs, the task runs
    /// a function, its group is the one joined last (cached, so valid), its
    /// priority has a lane level, no task of that priority waits in the
    /// locked queue, and no batch is being added. What [`State::add`] does
    /// then, in the same order, without the checks that cannot fail and
    /// without its result's plumbing (`bench/paths.sh`: the lane add 283.5
    /// -> 250.5 instructions, 241.5 with the caller skipping an untouched
    /// `after`). Anything else gives the job back, before an id is issued
    /// or anything changed, for [`State::add`]. `Ok` holds the id and
    /// whether `after` may hold work.
    #[inline(always)]
    fn add_plain_lane(
        &mut self,
        job: Job,
        priority: i32,
        group: GroupKey,
        after: &mut After,
    ) -> Result<(u64, bool), Job> {
        // (A shut-down manager's lane is closed: `sync_lane_open`, in the
        // shut-down's section.)
        if job.run.is_none() || !self.lane.is_open() || self.ready.has_priority(priority) {
            return Err(job);
        }
        let Some(group_index) = self.groups.cached_index(group) else {
            return Err(job);
        };
        debug_assert!(!self.shut_down);
        debug_assert!(!self.lane_batching, "single adds come between batches");
        // (The group is checked before the level is looked up, which may
        // make one: a level made for an add that then took the general path
        // and failed there would take one of the lane's eight.)
        // (The first level made, a host's only one if it uses one
        // priority, tested first: `bench/paths.sh`'s lane add 240.5 ->
        // 237.5. In `lane_level` itself, the test cost the batch paths.)
        let found = match self.lane_levels.first() {
            Some(&(p, r)) if p == priority => Some((0, r)),
            _ => self.lane_level_cached(priority),
        };
        let Some((level, level_ref)) = found else {
            return Err(job);
        };
        let id = self.issue_id_at(group_index);
        self.insert_lane(id, job, group_index, None, level, level_ref, true);
        // `provision`'s common case tested here: then `after` is untouched
        // and the caller skips it (true: it may hold work).
        if self.workers_provided() {
            return Ok((id, false));
        }
        self.provision(after);
        Ok((id, true))
    }

    /// The add of a task whose only upstream task is `up`, a lane task or
    /// continuation it can wait attached to (a chain's link, W2a's path):
    /// what [`State::add`] does then, without the checks that cannot fail
    /// and without the general path's plumbing (`bench/paths.sh`: the
    /// chain add 377.0 -> 295.9 instructions, through `Manager::add_link`).
    /// The task runs a function, the
    /// lane is open, its group is the one joined last and `up` was issued;
    /// anything else gives the job back before an id is issued or anything
    /// changed, for [`State::add`]. When the attachment fails (the upstream
    /// task is not in the lane, has downstream tasks, or finished
    /// meanwhile), the task takes [`State::add_linked`]'s other ways with
    /// the id issued, as [`State::add`] would. `Ok` holds the id and
    /// whether the section changed what the end-of-section sync looks at
    /// (else `after` is untouched).
    #[inline(always)]
    fn add_plain_cont(
        &mut self,
        job: Job,
        priority: i32,
        group: GroupKey,
        up: u64,
        after: &mut After,
    ) -> Result<(u64, bool), Job> {
        // (Not shut down: see `add_plain_lane`.)
        if job.run.is_none() || !self.lane.is_open() || up == 0 || up >= self.next_id {
            return Err(job);
        }
        let Some(group_index) = self.groups.cached_index(group) else {
            return Err(job);
        };
        debug_assert!(!self.shut_down);
        let id = self.issue_id_at(group_index);
        let applied = self.reclaim_conts(after);
        match self.add_cont(id, job, priority, group_index, up) {
            Ok(()) => Ok((id, applied)),
            Err(job) => {
                self.plain_lane_add = false;
                if self.add_linked(id, job, priority, group_index, &[up], after, false).is_err() {
                    unreachable!("checked above, under the same lock section");
                }
                Ok((id, applied || !mem::take(&mut self.plain_lane_add)))
            }
        }
    }

    /// [`State::add`] after its checks (which the caller made: a batch's
    /// were made for all its tasks by [`State::check_many`]).
    #[inline(always)]
    fn add_checked(
        &mut self,
        job: Job,
        priority: i32,
        group: GroupKey,
        upstream: &[u64],
        after: &mut After,
    ) -> Result<u64, (Error, Job)> {
        let Some((id, group_index)) = self.issue_id(group) else {
            return Err((Error::TooManyGroups, job));
        };

        // Not while the locked queue holds tasks of this priority (tasks
        // that became ready late, were given back or had their priority
        // changed): they come first. The oldest of them move into the lane
        // as new ones come, so that the workers do not stay on the locked
        // path for good. A full level's ring does not send tasks here: they
        // wait in its overflow.
        let lane_ok = upstream.is_empty() && job.run.is_some() && self.lane.is_open();
        let mut refilled = false;
        if lane_ok && self.ready.has_priority(priority) {
            self.refill_lane(priority);
            refilled = true;
        }
        if lane_ok && (!refilled || !self.ready.has_priority(priority)) {
            if let Some((level, level_ref)) = self.lane_level(priority) {
                let publish = !self.lane_batching;
                self.insert_lane(id, job, group_index, None, level, level_ref, publish);
                self.plain_lane_add = !refilled;
                self.provision(after);
                return Ok(id);
            }
        }

        if upstream.is_empty() {
            // The locked path's independent task (paused, hooks, no level
            // for it: eight made and none could be given, a pass-through):
            // ready at once.
            self.tasks.insert(id, Task { body: Body::Pending { group: GroupIx::new(group_index), priority, job } });
            self.pending += 1;
            self.make_ready(priority, id, after);
            return Ok(id);
        }
        self.add_linked(id, job, priority, group_index, upstream, after, true)
    }

    /// The rest of [`State::add`]: a task that does not go to the lane as
    /// an independent one (out of line: the lane add is the hot path).
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn add_linked(
        &mut self,
        id: u64,
        job: Job,
        priority: i32,
        group_index: u32,
        upstream: &[u64],
        after: &mut After,
        try_attach: bool,
    ) -> Result<u64, (Error, Job)> {
        // A single upstream task in the lane: wait attached to it (unless
        // the caller just tried).
        let mut job = job;
        if try_attach && upstream.len() == 1 && job.run.is_some() && self.lane.is_open() {
            let applied = self.reclaim_conts(after);
            match self.add_cont(id, job, priority, group_index, upstream[0]) {
                Ok(()) => {
                    // Attached: nothing the end-of-section sync looks at
                    // changed, as for a lane add (unless the outcomes just
                    // applied queued events or made tasks ready).
                    self.plain_lane_add = !applied;
                    return Ok(id);
                }
                Err(j) => job = j,
            }
        }

        let mut links: Option<Links> = None;
        let mut waiting = 0u32;
        let mut failed: Option<Arc<Failure>> = None;
        if !upstream.is_empty() {
            // Duplicates count once; a single upstream, or a list already
            // ascending without duplicates, needs no copy.
            let sorted: Vec<u64>;
            let ups: &[u64] = if upstream.len() > 1 && !upstream.windows(2).all(|w| w[0] < w[1]) {
                let mut v = upstream.to_vec();
                v.sort_unstable();
                v.dedup();
                sorted = v;
                &sorted
            } else {
                upstream
            };
            // An upstream task in the lane: a lane task queued in a ring
            // stays there, its entry marked linked (see `lane::LINKED`:
            // the worker that claims it applies its outcome at once, and
            // this task's edge is kept under the lock); one claimed, or
            // (see `keep` below) waiting in an overflow, stays there
            // counted in `lane_linked`; a queued continuation, or an
            // overflow entry not kept, moves to the locked path (a
            // continuation waits there for its own upstream task).
            // Outcomes left in the workers' queues are applied after the
            // loop, so that a finished one is seen as finished. Applied
            // before the loop too when there are several: a fan-in's
            // upstream tasks have mostly finished, and one applied is then
            // a plain completed task, which the loop passes with one
            // lookup.
            if ups.len() > 1 {
                self.apply_lane(after);
            }
            let mut claimed = false;
            // Only upstream tasks still in the lane need a look; after the
            // apply above, a fan-in's are the newest few, if any.
            let in_lane = |st: &Self, u: u64| matches!(st.tasks.get(u), Some(Task { body: Body::Lane { .. }, .. }));
            let (start, lane_ups) = match ups {
                [u] => (0, usize::from(in_lane(self, *u))),
                _ => self.lane_suffix(ups),
            };
            // Lane tasks stay in the lane rather than move to the locked
            // path: a worker then takes each as any lane task (~173
            // instructions against the locked path's ~459; W2b with
            // `btm_add_tasks`, where most of a fan-in's upstream tasks are
            // still queued when it is added). A ring entry is marked
            // (below, with the edges) and costs nothing to other tasks.
            // But while any task is counted in `lane_linked`, the workers
            // take the lock after every outcome, theirs or not: so an
            // overflow entry stays only when the fan-in's lane tasks are
            // at least half of the lane's queued entries. A fan-in over
            // the tail of a long backlog moves its few from the overflow
            // to the locked path, or the whole backlog would pay (a review
            // measured 24-56 ms against 15-22 for 200,000 tasks with a
            // fan-in over the last two). (Not kept, a ring entry is marked
            // here already; the edge loop's mark then finds it marked.)
            let keep = lane_ups > 0 && lane_ups * 2 >= self.lane.queued();
            for &u in &ups[start..] {
                let stays = match self.tasks.get(u) {
                    Some(Task { body: Body::Lane { level, pos, .. }, .. }) => {
                        keep || self.lane.mark_linked(usize::from(*level), *pos, u)
                    }
                    _ => false,
                };
                if stays || self.unlane(u) {
                    claimed = true;
                    // A continuation attached to the upstream task would
                    // run at its finish, before this task: it moves to the
                    // locked path, where both become ready together.
                    let first = self.tasks.get(u).and_then(|t| match t.links() {
                        Some(li) => self.links.get(li).downstream.as_slice().first().copied(),
                        None => Some(t.body.implicit_down()).filter(|&d| d != 0),
                    });
                    if let Some(d) = first {
                        self.unlane_cont(d);
                    }
                }
            }
            if claimed {
                self.apply_lane(after);
            }
            // One growth of the link slab for a fan-in (instead of doubling
            // and copying it while the lock is held); the new task's own
            // entry is the last.
            self.links.reserve(ups.len() + 1);
            // The live upstream tasks: a vector for several, inline for one
            // (a vector of one would cost an allocation per chain task).
            let mut l_many = if ups.len() > 1 { Vec::with_capacity(ups.len()) } else { Vec::new() };
            let mut l_one = Ids::Empty;
            let mut done: Vec<(u64, Arc<ResultSet>)> = Vec::new();
            for &u in ups {
                let Some(ut) = self.tasks.get_mut(u) else {
                    continue;
                };
                match &mut ut.body {
                    Body::Pending { .. } | Body::Waiting { .. } | Body::Running { .. } => waiting += 1,
                    Body::Lane { linked, level, pos, .. } => {
                        // Its outcome must now be applied at once: marked
                        // in its ring entry, or else counted.
                        waiting += 1;
                        if !*linked && !self.lane.mark_linked(usize::from(*level), *pos, u) {
                            *linked = true;
                            self.lane_linked += 1;
                        }
                    }
                    Body::Cont { linked, .. } => {
                        // Running: its outcome must now be applied at once.
                        waiting += 1;
                        if !*linked {
                            *linked = true;
                            self.lane_linked += 1;
                        }
                    }
                    Body::Completed { result, .. } => {
                        if let Some(r) = result {
                            done.push((u, Arc::clone(r)));
                        }
                    }
                    Body::Failed { failure: f, .. } => {
                        failed.get_or_insert_with(|| Arc::clone(f));
                    }
                }
                if ups.len() > 1 {
                    l_many.push(u);
                } else {
                    l_one = Ids::One(u);
                }
                // A fan-in's upstream tasks have mostly completed: the
                // edge stays in the body of one without other edges; so it
                // does in a lane task's, queued or claimed (its finish
                // releases this task without a link record, see
                // `State::finish_with_edges`).
                if let (None, Body::Completed { down: down @ 0, .. }) = (ut.links(), &mut ut.body) {
                    *down = id;
                    continue;
                }
                if let (None, Body::Lane { down: down @ 0, .. }) = (ut.links(), &mut ut.body) {
                    *down = id;
                    continue;
                }
                let li = match ut.links() {
                    Some(li) => li,
                    None => {
                        let li = self.links.insert(Links::implicit(ut.body.implicit_edges()));
                        ut.set_links(li, &mut self.links);
                        li
                    }
                };
                self.links.get_mut(li).downstream.push(id);
            }
            // Already-completed upstream results, in completion order: the
            // order of their final events in the queue.
            if done.len() > 1 {
                let order: HashMap<u64, usize> = self.events.finals().enumerate().map(|(i, id)| (id, i)).collect();
                done.sort_by_key(|(u, _)| order.get(u).copied().unwrap_or(usize::MAX));
            }
            let received = if done.capacity() == 0 {
                // Nothing allocated: skip the out-of-line drop of an empty vector.
                mem::forget(done);
                Received::default()
            } else {
                Received::from_vec(done.into_iter().map(|(_, r)| r).collect())
            };
            let upstream = if ups.len() > 1 { Ids::from_vec(l_many) } else { l_one };
            // (Its count is set below and its priority by `pending_body`,
            // once it is known whether the task waits.)
            links = Some(Links { upstream, received, ..Links::default() });
        }

        if let Some(f) = failed {
            // An upstream failed and its failure is not yet polled: this
            // task fails with it, its event queued now, after the events of
            // lane tasks that finished before.
            self.apply_lane(after);
            after.free(job.data);
            if let Some(l) = links.as_mut() {
                if !l.received.is_empty() {
                    after.garbage(Garbage::Results(l.received.take()));
                }
            }
            let links = links.map(|l| self.links.insert(l));
            let body = Body::Failed { group: GroupIx::new(group_index), links, failure: f };
            self.tasks.insert(id, Task { body });
            self.failed_total += 1;
            self.push_event(Ev::Final(id));
            return Ok(id);
        }

        let no_results = links.as_ref().is_some_and(|l| l.received.is_empty());
        if waiting == 0 && no_results && job.run.is_some() && self.lane.is_open() && !self.ready.has_priority(priority)
        {
            // Its upstream tasks completed without results: it runs as an
            // independent task would, from the lane (where a continuation
            // can wait attached to it).
            if let Some((level, level_ref)) = self.lane_level(priority) {
                let links = links.map(|l| self.links.insert(l));
                self.insert_lane(id, job, group_index, links, level, level_ref, !self.lane_batching);
                self.provision(after);
                return Ok(id);
            }
        }

        let ready = waiting == 0;
        // A task that waits has a link record (its upstream list), which
        // holds the count.
        debug_assert!(ready || links.is_some());
        let links = links.map(|mut l| {
            l.waiting = waiting;
            self.links.insert(l)
        });
        let body = pending_body(&mut self.links, GroupIx::new(group_index), priority, links, job);
        self.tasks.insert(id, Task { body });
        self.pending += 1;
        if ready {
            self.make_ready(priority, id, after);
        }
        Ok(id)
    }

    /// Drops member ids of tasks that left the group once they outnumber
    /// the live members, keeping member lists proportional to live tasks.
    /// `joining` is the member being added (not yet in the task table).
    #[inline(never)]
    fn compact_group(&mut self, index: u32, joining: u64) {
        let tasks = &self.tasks;
        let old = self
            .groups
            .slot_mut(index)
            .members
            .retain(|id| id == joining || tasks.get(id).is_some_and(|t| t.group() == index));
        // A large old list is freed after the lock of the next poll or
        // stop, as an ended group's is.
        self.groups.retire(old);
    }

    /// Pushes to the ready queue, noting a push that may have given a
    /// level of it an older front (see `Lane::locked_gen`).
    #[inline]
    fn ready_push(&mut self, priority: i32, id: u64) {
        if id < self.ready_max_id {
            self.locked_gen += 1;
        } else {
            self.ready_max_id = id;
        }
        self.ready.push(priority, id);
    }

    /// Records that `n` queued tasks of `priority` left the ready queue
    /// without being popped (see [`ReadyQueue::forget_n`]), and compacts
    /// their level if it keeps too many such stale entries.
    fn forget_ready(&mut self, priority: i32, n: usize) {
        self.ready.forget_n(priority, n);
        if n > 0 && self.ready.is_stale(priority) {
            let (tasks, links) = (&self.tasks, &self.links);
            self.ready
                .compact(priority, |id| tasks.get(id).is_some_and(|t| pending_of(links, t) == Some((priority, 0))));
        }
    }

    /// Compacts lane level `level`'s overflow if cancelled entries are
    /// most of it (see `Level::compact_overflow`), moving the positions
    /// of its queued tasks' records with their entries (when: see
    /// [`State::compact_lane_overflows`]). Not while a batch of several
    /// priorities is being added (its records may not be in the table
    /// yet).
    fn compact_lane_overflow(&mut self, level: usize) {
        if self.lane_batching {
            return;
        }
        let (lane, tasks) = (&self.lane, &mut self.tasks);
        lane.compact_overflow(level, |id, old, new| match tasks.get_mut(id) {
            Some(Task { body: Body::Lane { pos, .. } }) if *pos == old => *pos = new,
            _ => debug_assert!(false, "a queued overflow entry's task records its position"),
        });
    }

    /// [`State::compact_lane_overflow`] for every level: at the end of
    /// each stop, and after a priority change (which may have moved an
    /// overflow entry to the locked path). Not called from the moves
    /// themselves (`State::unlane_slow`): there it cost the lane worker 6
    /// instructions per task (`bash bench/paths.sh`, 165.3 -> 171.3)
    /// through the code generation of its lock sections. A fan-in's moves
    /// are compacted by the next stop, or passed over by the workers.
    fn compact_lane_overflows(&mut self) {
        for level in 0..self.lane_levels.len() {
            self.compact_lane_overflow(level);
        }
    }

    fn make_ready(&mut self, priority: i32, id: u64, after: &mut After) {
        self.ready_push(priority, id);
        self.provision(after);
    }

    /// `provision`'s common case under load, checked first (it reads the
    /// fewest fields): every thread started and busy, and any spinning
    /// worker already told. `provision` then has nothing to do.
    #[inline(always)]
    fn workers_provided(&self) -> bool {
        self.sleeping == self.waking && self.threads >= self.max_threads && (self.spinning == 0 || self.hint_sent)
    }

    /// On a host thread's wait or poll: starts workers for those whose
    /// threads host code ended, and frees what they left (see
    /// `ended_unreplaced`, `orphaned`).
    #[cold]
    fn settle_ended(&mut self, after: &mut After) {
        self.ended_unreplaced = false;
        self.adopt_orphaned(after);
        self.provision(after);
    }

    /// Hands what workers ended inside host code left to free to `after`.
    fn adopt_orphaned(&mut self, after: &mut After) {
        for h in mem::take(&mut self.orphaned) {
            after.adopt(h);
        }
    }

    /// Makes sure ready work has a worker: wakes a sleeping one or starts a
    /// new thread.
    #[inline(always)]
    fn provision(&mut self, after: &mut After) {
        if self.workers_provided() {
            return;
        }
        if !self.processing || self.shut_down || self.ready.len() + self.lane_live() == 0 {
            return;
        }
        self.provision_slow(after);
    }

    #[inline(never)]
    fn provision_slow(&mut self, after: &mut After) {
        if (self.ended_unreplaced || !self.orphaned.is_empty()) && CURRENT.with(Cell::get).is_null() {
            // A host thread's add (see `ended_unreplaced`).
            self.ended_unreplaced = false;
            self.adopt_orphaned(after);
        }
        if self.spinning > 0 && !self.hint_sent {
            // Spinning workers poll this hint instead of the lock. Raised
            // after the lock is released (a worker seeing it under the lock
            // would block on the lock), and once per spin (a store per add
            // would pull the line away from the spinning workers).
            after.hint = true;
            self.hint_sent = true;
        }
        // Workers about to look for work: spinning, being woken, starting.
        let mut coming = self.spinning + self.lane_looking() + self.waking + after.spawning();
        // Lane tasks not yet claimed (not `lane_live`, which counts the
        // outcomes a host that has not polled yet leaves: waking a worker
        // for each add would make it churn between sleeping and waking).
        let work = self.ready.len() + self.lane.queued();
        while work > coming {
            if self.sleeping > self.waking {
                after.wake += 1;
                self.waking += 1;
            } else if self.threads < self.max_threads && !self.ended_unreplaced {
                if after.spawning() == 0 {
                    self.reap_retired();
                }
                let lane = Arc::new(WorkerLane::new());
                let index = self.worker_slot(Arc::clone(&lane));
                self.threads += 1;
                self.alive += 1;
                self.spawning += 1;
                after.heavy().spawn.push((index, lane));
            } else {
                break;
            }
            coming += 1;
        }
    }

    /// A slot for a new worker with `lane`: the slot of a worker that
    /// exited and was reaped (or never started), so that worker indexes
    /// stay below the largest thread count the host asked for and the
    /// per-worker scans do not grow with every thread ever started; else
    /// a new one. Returns its index.
    fn worker_slot(&mut self, lane: Arc<WorkerLane>) -> u32 {
        let free = (0..self.workers.len()).find(|&i| {
            self.workers[i].exited
                && !self.workers[i].handle_pending
                && !self.handles.iter().any(|(h, _)| *h as usize == i)
        });
        match free {
            Some(i) => {
                // Its counters are summed with the live workers' (against
                // `lane_applied`, `cont_added`): kept here.
                let old = &self.workers[i].lane;
                self.retired_claims += old.claims();
                self.retired_cont_claims += old.cont_claims();
                self.workers[i] = WorkerSlot::new(lane);
                i as u32
            }
            None => {
                self.workers.push(WorkerSlot::new(lane));
                (self.workers.len() - 1) as u32
            }
        }
    }

    /// Hands the threads of workers that exited (retired when
    /// `max_threads` was lowered) to the `spawn_worker` that follows, which
    /// joins them after the lock: until joined, each keeps its stack
    /// mapped, and a host that lowers and raises the count again and again
    /// would pile them up until `btm_destroy`. Their slots are free at once
    /// (a worker marked exited touches its slot no more).
    ///
    /// Not joined under the lock: on Windows a thread's exit runs the
    /// DLLs' thread-detach code under the loader lock, and a worker whose
    /// thread host code ended with `ExitThread` settles with the manager
    /// there (`Manager::worker_ended`, which takes this lock): a join under
    /// the lock deadlocked with it (tests/c/thread_exit.c under Wine).
    /// (Not in `After`: with a field for them in `Heavy`, the lane worker
    /// ran 197.3 instructions per task against 178.3, `bash
    /// bench/paths.sh`, though it never reaches this code.)
    #[cold]
    fn reap_retired(&mut self) {
        if !self.handles.iter().any(|(i, _)| self.workers[*i as usize].exited) {
            return;
        }
        let handles = mem::take(&mut self.handles);
        let (done, keep): (Vec<_>, Vec<_>) = handles.into_iter().partition(|(i, _)| self.workers[*i as usize].exited);
        self.handles = keep;
        for (i, handle) in done {
            let w = &self.workers[i as usize];
            self.reaped.push((handle, w.ended.then(|| Arc::clone(&w.lane))));
        }
    }

    /// Gives back memory a poll emptied: task-table chunks beyond the
    /// spares (a batch of 16, or what is left once the table is empty) or
    /// a large group member list go to an idle worker, which frees them
    /// outside the lock. So the polling thread (the host's UI or game
    /// loop) does not make the system calls, which took it 0.5-0.8 ms per
    /// 2 MiB batch of chunks in W1 1M, and as much for the member list of a
    /// million tasks. A worker is idle if it spins or looks for a lane task
    /// (it comes to `next_job`'s idle step within microseconds) or sleeps
    /// (it is woken). With no idle worker (none started, all busy, shut
    /// down), or past 32 MiB waiting (a worker that stays in the lane), the
    /// poll does it after its lock section.
    fn release_later(&mut self, release: Garbage, after: &mut After) {
        let coming = self.spinning > 0 || self.lane_looking() > 0;
        let waiting: usize = self.idle_release.iter().map(Garbage::own_bytes).sum();
        if self.shut_down
            || waiting + release.own_bytes() > MAX_QUEUED_RELEASE_BYTES
            || !(coming || self.sleeping > self.waking)
        {
            after.garbage_first(release);
            return;
        }
        self.idle_release.push(release);
        if !coming {
            after.wake += 1;
            self.waking += 1;
        }
    }

    fn push_event(&mut self, ev: Ev) {
        self.events.push_back(ev);
        self.deliverable += 1;
    }

    /// The locked ready queue's best valid entry, stale entries before it
    /// dropped.
    fn ready_front(&mut self) -> Option<(i32, u64)> {
        loop {
            let (priority, id) = self.ready.peek()?;
            let valid = self.tasks.get(id).is_some_and(|t| pending_of(&self.links, t) == Some((priority, 0)));
            if valid {
                return Some((priority, id));
            }
            self.ready.pop();
        }
    }

    /// Takes the next ready task for worker `index`. Pass-through tasks are
    /// completed inline; the returned task is marked running.
    fn take_next(&mut self, index: u32, after: &mut After) -> Option<RunJob> {
        loop {
            let (priority, id) = self.ready.pop()?;
            let Some(task) = self.tasks.get_mut(id) else {
                continue;
            };
            if pending_of(&self.links, task) != Some((priority, 0)) {
                continue; // stale entry
            }
            self.ready.taken(priority);
            self.pending -= 1;
            self.running += 1;
            self.workers[index as usize].task = id;
            let (group, links) = (task.body.group_ix(), task.links());
            let job = match mem::replace(&mut task.body, Body::Running { group, links, worker: index }) {
                Body::Pending { job, .. } | Body::Waiting { job, .. } => job,
                _ => unreachable!("checked above"),
            };
            let received = task.links().map(|li| self.links.get_mut(li).received.take()).unwrap_or_default();
            let task_group = task.group();
            match job.run {
                Some(run) => {
                    let hooks = match &self.task_hooks {
                        None => None,
                        Some(h) => Some(Box::new((Arc::clone(h), self.groups.slot(task_group).key))),
                    };
                    return Some(RunJob { id, run, data: job.data, received, hooks });
                }
                None => {
                    // Lane outcomes left before come first (event order).
                    self.apply_lane(after);
                    let gathered = gather(id, job.data, received).map(Arc::new);
                    self.finish(id, Outcome::Completed(gathered), after);
                    if self.lane_live() > 0 && self.lane.top().is_some() {
                        // The lane's best may come before the next locked
                        // task: the caller compares again. (A ring entry,
                        // as the caller's loop asks: entries that wait in
                        // an overflow behind a slot another worker holds
                        // cannot come first until it gives it back, and
                        // returning for them let `next_job` sleep with
                        // locked tasks queued.)
                        return None;
                    }
                }
            }
        }
    }

    /// Records the outcome of a task that was running.
    fn finish(&mut self, id: u64, outcome: Outcome, after: &mut After) {
        self.running -= 1;
        let Some(mut task) = self.tasks.get_mut(id) else {
            // Stopped while running: the outcome is dropped.
            after.garbage(Garbage::Outcome(outcome));
            return;
        };
        let mut outcome = outcome;
        if let Body::Lane { linked: true, .. } | Body::Cont { linked: true, .. } = task.body {
            self.lane_linked -= 1;
        }
        if task.links().is_none() {
            let edges = task.body.implicit_edges();
            if edges != (0, 0) {
                let Some(o) = self.finish_with_edges(id, outcome, edges, after) else {
                    return;
                };
                outcome = o;
                task = self.tasks.get_mut(id).expect("live above");
            }
        }
        if task.links().is_none() {
            // No downstream task to update: one lookup.
            if let Outcome::Completed(result) = outcome {
                let group = task.body.group_ix();
                let completed = Body::Completed { group, links: None, result, up: 0, down: 0 };
                if matches!(task.body, Body::Lane { .. } | Body::Running { .. }) {
                    // Nothing to drop: spares the call of `Body`'s drop glue
                    // in the common case (a fan-in's add applies a million),
                    // and the copy of the old body out of the record.
                    mem::forget(mem::replace(&mut task.body, completed));
                } else if let Body::Cont { rec, .. } = mem::replace(&mut task.body, completed) {
                    self.lane.conts.recycle_ran(rec);
                }
                self.completed_total += 1;
                self.push_event(Ev::Final(id));
                return;
            }
            let Outcome::Failed(failure) = outcome else { unreachable!() };
            return self.fail(id, failure, after);
        }
        let own = task.links().expect("checked above");
        match outcome {
            Outcome::Completed(result) => {
                // The record is final before the downstream walk (which only
                // looks at the downstream tasks): one lookup of this task.
                let group = task.body.group_ix();
                let completed = Body::Completed { group, links: Some(own), result: result.clone(), up: 0, down: 0 };
                if let Body::Cont { rec, .. } = mem::replace(&mut task.body, completed) {
                    self.lane.conts.recycle_ran(rec);
                }
                let downstream = mem::take(&mut self.links.get_mut(own).downstream);
                // (`Many`: two or more.)
                if matches!(downstream, Ids::Many(_)) && !self.lane_batching {
                    self.release_several(&downstream, result.as_ref(), after);
                } else {
                    self.release_each(&downstream, result.as_ref(), after);
                }
                // The taken list left an empty one: nothing to drop.
                mem::forget(mem::replace(&mut self.links.get_mut(own).downstream, downstream));
                drop(result);
                self.completed_total += 1;
                self.push_event(Ev::Final(id));
            }
            Outcome::Failed(failure) => self.fail(id, failure, after),
        }
    }

    /// `finish`'s walk of the downstream tasks of a task that completed
    /// with `result`.
    #[inline(always)]
    fn release_each(&mut self, downstream: &Ids, result: Option<&Arc<ResultSet>>, after: &mut After) {
        for d in downstream.iter() {
            let Some(dt) = self.tasks.get_mut(d) else {
                continue;
            };
            match &dt.body {
                // The common case, one lookup: a waiting task.
                Body::Waiting { links, job, .. } => {
                    let (li, runs) = (*links, job.run.is_some());
                    self.release_links(d, li, runs, result, after);
                }
                Body::Cont { .. } => {
                    // Not claimed by the worker that ran this task (see
                    // `unlane_cont`).
                    self.unlane(d);
                    self.release_downstream(d, result, after);
                }
                _ => {}
            }
        }
    }

    /// [`State::release_each`] for several downstream tasks: those released
    /// into the lane reach the workers together, published after the walk
    /// as a batch's (`releasing_several`, `publish_released`), so that a
    /// worker does not claim a lower one before a higher one is released.
    /// Out of line: in `finish` it cost the walk of a chain (one downstream
    /// task) 15 instructions per task through its registers.
    #[inline(never)]
    fn release_several(&mut self, downstream: &Ids, result: Option<&Arc<ResultSet>>, after: &mut After) {
        self.releasing_several = true;
        if result.is_none() && self.lane.is_open() && !self.lane_batching && !self.stop_releasing {
            self.release_to_lane(downstream, after);
        } else {
            self.release_each(downstream, result, after);
        }
        self.releasing_several = false;
        self.publish_released();
    }

    /// [`State::release_each`] for several downstream tasks of a task that
    /// completed without a result, while released tasks can go to the
    /// lane (see [`State::ready_waiting`], whose checks that hold for the
    /// whole walk are made once by the caller): one lookup of each task,
    /// the lane level of the last priority kept, the workers provisioned
    /// once at the end. The N tasks a finish releases at once in the
    /// original's first quadratic case (`btm_bench q1`) are pushed by one
    /// worker while the others wait for their publication.
    fn release_to_lane(&mut self, downstream: &Ids, after: &mut After) {
        let mut found: Option<(i32, Option<(u8, LevelRef)>)> = None;
        let mut pushed = false;
        for d in downstream.iter() {
            let Some(dt) = self.tasks.get_mut(d) else {
                continue;
            };
            let (li, runs) = match &dt.body {
                Body::Waiting { links, job, .. } => (*links, job.run.is_some()),
                Body::Cont { .. } => {
                    // As in `release_each`.
                    self.unlane(d);
                    self.release_downstream(d, None, after);
                    continue;
                }
                _ => continue,
            };
            let l = self.links.get_mut(li);
            l.waiting -= 1;
            if l.waiting > 0 {
                continue;
            }
            let p = l.priority;
            if !runs || !matches!(l.downstream, Ids::Empty) || !l.received.is_empty() || self.ready.has_priority(p) {
                self.make_ready(p, d, after);
                continue;
            }
            let level = match found {
                Some((q, level)) if q == p => level,
                _ => {
                    let level = self.lane_level(p);
                    found = Some((p, level));
                    level
                }
            };
            let Some((level, level_ref)) = level.filter(|(_, r)| !r.last_id().is_some_and(|last| last > d)) else {
                self.make_ready(p, d, after);
                continue;
            };
            self.lane_released(d, li, level, level_ref, false);
            pushed = true;
        }
        if pushed {
            self.provision(after);
        }
    }

    /// One upstream task of task `d` no longer holds it back (it completed,
    /// handing over `result`, or it was stopped without stopping `d`): if
    /// `d` is pending, its count in its link record goes down, and at zero
    /// it becomes ready. Anything else (gone, running, failed) is left.
    // Inlined into both walks (`#[inline]` was not taken: chains and the
    // fan-in paid ~20 instructions per task, `bash bench/paths.sh`).
    #[inline(always)]
    fn release_downstream(&mut self, d: u64, result: Option<&Arc<ResultSet>>, after: &mut After) {
        let (li, runs) = match self.tasks.get(d) {
            Some(Task { body: Body::Waiting { links, job, .. } }) => (*links, job.run.is_some()),
            // A pending downstream task has a link record (its upstream
            // list), so it is `Waiting`.
            Some(Task { body: Body::Pending { .. } }) => unreachable!("a pending downstream task has links"),
            _ => return,
        };
        self.release_links(d, li, runs, result, after);
    }

    /// [`State::release_downstream`] for waiting task `d`, whose link
    /// record is `li` (`runs`: it runs a function).
    #[inline(always)]
    fn release_links(&mut self, d: u64, li: LinkId, runs: bool, result: Option<&Arc<ResultSet>>, after: &mut After) {
        let l = self.links.get_mut(li);
        if let Some(r) = result {
            l.received.push(Arc::clone(r));
        }
        l.waiting -= 1;
        if l.waiting == 0 {
            let p = l.priority;
            // (Tested here, inline: a chain's link has a downstream task,
            // and the call cost the locked chain path 39 instructions per
            // task, `bash bench/paths.sh`.)
            if matches!(l.downstream, Ids::Empty) && l.received.is_empty() {
                self.ready_waiting(d, li, p, runs, after);
            } else {
                self.make_ready(p, d, after);
            }
        }
    }

    /// Makes waiting task `d` (link record `li`, priority `p`), whose last
    /// upstream task just finished and which received no result and has no
    /// downstream task, ready: into the lane when it can run from there,
    /// as [`State::add_linked`] puts a task whose upstream tasks completed
    /// without results (it runs a function, the lane is open and takes no
    /// batch, no locked task of its priority is queued, and its level's
    /// newest entry is older: a level runs its entries in id order); else
    /// on the locked path. So the tasks a finish releases at once (N tasks
    /// waiting on one upstream task, `btm_bench q1`) reach the workers
    /// without the lock, as independent tasks do, instead of one lock
    /// section each.
    #[inline(never)]
    fn ready_waiting(&mut self, d: u64, li: LinkId, p: i32, runs: bool, after: &mut After) {
        debug_assert!(self.links.get(li).received.is_empty() && self.links.get(li).downstream.as_slice().is_empty());
        // (Whether it runs a function first, `runs`, which the caller read
        // in the same lookup as the link record: `lane_level` may make a
        // level, one of the lane's eight, which a pass-through would not
        // use.)
        if runs && self.lane.is_open() && !self.lane_batching && !self.stop_releasing && !self.ready.has_priority(p) {
            if let Some((level, level_ref)) = self.lane_level(p) {
                if !level_ref.last_id().is_some_and(|last| last > d) {
                    self.lane_released(d, li, level, level_ref, !self.releasing_several);
                    self.provision(after);
                    return;
                }
            }
        }
        self.make_ready(p, d, after);
    }

    /// Puts waiting task `d` (link record `li`), just released, in lane
    /// level `level`: published now if `publish`, else noted for
    /// `publish_released`. The callers made the checks
    /// ([`State::ready_waiting`], [`State::release_to_lane`]).
    #[inline(always)]
    fn lane_released(&mut self, d: u64, li: LinkId, level: u8, level_ref: LevelRef, publish: bool) {
        let task = self.tasks.get_mut(d).expect("a waiting task is live");
        let group = task.body.group_ix();
        let lane = Body::Lane { group, links: Some(li), level, pos: 0, linked: false, down: 0 };
        let Body::Waiting { job, .. } = mem::replace(&mut task.body, lane) else { unreachable!("a waiting task") };
        let (pos, in_ring) = level_ref.push(d, job, publish);
        if let Body::Lane { pos: at, .. } = &mut task.body {
            *at = pos;
        }
        if !publish && in_ring {
            note_unpublished(&mut self.lane_batch, level, pos);
        }
        self.pending -= 1;
        self.lane_added += 1;
    }

    /// `finish` for a task without a link record whose body holds edges
    /// (see [`Body::implicit_edges`]): they stay there if it completed and
    /// nothing downstream needs the outcome, or its downstream task waits
    /// on the locked path (a fan-in added while this lane task was in the
    /// lane), released here (`None`: finished); else they move to a link
    /// record and the outcome is handed back for `finish`'s walk.
    #[inline(never)]
    fn finish_with_edges(
        &mut self,
        id: u64,
        outcome: Outcome,
        edges: (u64, u64),
        after: &mut After,
    ) -> Option<Outcome> {
        if let Outcome::Completed(result) = &outcome {
            // Nothing downstream needs the outcome (none, gone: stopped, or a
            // continuation the worker that ran this task claimed: it runs,
            // or ran, with the result it was handed; a claimed record never
            // goes back to queued), or a waiting task needs it: one lookup.
            let d = edges.1;
            let waits = match (d, self.tasks.get(d)) {
                (0, _) | (_, None) => None,
                (_, Some(Task { body: Body::Cont { rec, .. } })) if !rec.is_queued() => None,
                (_, Some(Task { body: Body::Waiting { links, job, .. } })) => Some((*links, job.run.is_some())),
                (_, Some(_)) => return self.finish_with_links(id, outcome, edges),
            };
            if let Some((li, runs)) = waits {
                self.release_links(d, li, runs, result.as_ref(), after);
            }
            self.complete_keeping_edges(id, outcome, edges);
            return None;
        }
        self.finish_with_links(id, outcome, edges)
    }

    /// The rest of [`State::finish_with_edges`]: the edges move to a link
    /// record, for `finish`'s walk.
    fn finish_with_links(&mut self, id: u64, outcome: Outcome, edges: (u64, u64)) -> Option<Outcome> {
        let li = self.links.insert(Links::implicit(edges));
        self.tasks.get_mut(id).expect("live: checked by finish").set_links(li, &mut self.links);
        Some(outcome)
    }

    /// `finish` for a lane task or continuation without a link record that
    /// completed while its downstream task needs nothing more from it (see
    /// [`State::finish_with_edges`]): its edges stay in the completed
    /// body rather than moving to a link record (which its delivery would
    /// remove again). `State::apply_lane_slow` does the same inline for
    /// the cases it can tell without a lookup of the downstream task (a
    /// host that adds chains without polling has every chain task's
    /// outcome applied there).
    fn complete_keeping_edges(&mut self, id: u64, outcome: Outcome, (up, down): (u64, u64)) {
        let Outcome::Completed(result) = outcome else { unreachable!("checked by the caller") };
        let task = self.tasks.get_mut(id).expect("live: checked by the caller");
        let group = task.body.group_ix();
        match mem::replace(&mut task.body, Body::Completed { group, links: None, result, up, down }) {
            Body::Cont { rec, .. } => self.lane.conts.recycle_ran(rec),
            old => drop(old),
        }
        self.completed_total += 1;
        self.push_event(Ev::Final(id));
    }

    /// Fails a task and, breadth-first, every live task downstream of it.
    fn fail(&mut self, id: u64, failure: Failure, after: &mut After) {
        let failure = Arc::new(failure);
        let task = self.tasks.get_mut(id).expect("failing task is live");
        task.body = Body::Failed { group: task.body.group_ix(), links: task.links(), failure: Arc::clone(&failure) };
        let mut queue: VecDeque<u64> =
            task.links().map(|li| self.links.get(li).downstream.iter().collect()).unwrap_or_default();
        self.failed_total += 1;
        self.push_event(Ev::Final(id));
        while let Some(d) = queue.pop_front() {
            self.unlane_cont(d);
            let Some(dt) = self.tasks.get_mut(d) else {
                continue;
            };
            let Some((_, waiting)) = pending_of(&self.links, dt) else {
                continue;
            };
            // It waits for the task that failed, at least: never in the
            // ready queue, which has nothing to forget.
            debug_assert!(waiting > 0, "a downstream task of a failing task waits for it");
            let (group, links) = (dt.body.group_ix(), dt.links());
            if let Body::Pending { job, .. } | Body::Waiting { job, .. } =
                mem::replace(&mut dt.body, Body::Failed { group, links, failure: Arc::clone(&failure) })
            {
                after.free(job.data);
            }
            if let Some(li) = dt.links() {
                let l = self.links.get_mut(li);
                if !l.received.is_empty() {
                    after.garbage(Garbage::Results(l.received.take()));
                }
                queue.extend(l.downstream.iter());
            }
            self.pending -= 1;
            self.failed_total += 1;
            self.push_event(Ev::Final(d));
        }
    }

    /// Stops `roots` and, transitively, what the flags reach.
    fn stop(&mut self, roots: Vec<u64>, up: bool, down: bool, after: &mut After) -> StopReport {
        let mut report = StopReport::default();
        let mut stack = Vec::new();
        self.tasks.collect_freed();
        // At least the roots are freed (more when the flags reach further).
        after.reserve_frees(roots.len());
        for id in roots {
            stack.push(id);
            self.stop_reachable(&mut stack, up, down, &mut report, after);
        }
        self.stop_done(after);
        report
    }

    /// An empty event queue that grew past [`EVENTS_KEEP`] entries is
    /// handed to `after`, which frees it after the lock: a burst of events
    /// does not keep its memory for the manager's life.
    #[inline]
    fn release_events(&mut self, after: &mut After) {
        if self.events.is_empty() && self.events.capacity() > EVENTS_KEEP {
            after.garbage(Garbage::Events(mem::take(&mut self.events)));
        }
        // The progress map too: a burst of progress reports (many tasks
        // reporting before the host polls) made it as large as the burst,
        // and a map never shrinks by itself.
        if self.progress.is_empty() && self.progress.capacity() > EVENTS_KEEP {
            after.garbage(Garbage::Progress(mem::take(&mut self.progress)));
        }
    }

    /// End of a stop: withdraws queued events if none is deliverable, and
    /// hands the task-table chunks the stop emptied to `after`, which frees
    /// them after the lock (giving the memory back if there are many).
    fn stop_done(&mut self, after: &mut After) {
        // Once per stop rather than per stopped task: a group stopped
        // whole leaves its overflow entries to the trim of its last one.
        self.compact_lane_overflows();
        if self.deliverable == 0 {
            self.events.clear();
            self.release_events(after);
        }
        self.release_group_lists(after);
        let emptied = self.tasks.take_freed();
        if !emptied.is_empty() {
            after.garbage_first(Garbage::Emptied(emptied));
        }
        if let Some(chunks) = self.tasks.take_released() {
            after.garbage_first(Garbage::Released(chunks));
        }
    }

    /// Hands the large member lists of groups that ended to `after`, which
    /// frees them after the lock, before any host data.
    fn release_group_lists(&mut self, after: &mut After) {
        if self.groups.has_retired() {
            for members in self.groups.take_retired() {
                after.garbage_first(Garbage::Members(members));
            }
        }
    }

    /// Stops the live tasks of group slot `index` and what the flags reach.
    fn stop_group(&mut self, index: u32, up: bool, down: bool, after: &mut After) -> StopReport {
        let mut report = StopReport::default();
        if self.groups.slot(index).live == self.tasks.len() as u64 {
            // The group holds every live task.
            if let Some(n) = self.stop_all_queued(after) {
                report.before_start = n;
                return report;
            }
        }
        let members = mem::take(&mut self.groups.slot_mut(index).members);
        let mut stack = Vec::new();
        self.tasks.collect_freed();
        after.reserve_frees(self.groups.slot(index).live as usize);
        // Fast path for the common case (a queued task with no links and no
        // progress): removed with one lookup, with the ready-queue and group
        // counters settled once per run of equal priorities.
        let mut forgets: (i32, usize) = (0, 0);
        let mut left_group = 0u64;
        let progress_empty = self.progress.is_empty();
        for id in members.iter() {
            // (A `Pending` task has no link record.)
            let simple =
                |t: &Task| matches!(t.body, Body::Pending { group, .. } if group.get() == index) && progress_empty;
            if let Some(task) = self.tasks.remove_if(id, simple) {
                let Body::Pending { job, priority, .. } = task.body else { unreachable!("checked by the predicate") };
                if forgets.0 != priority {
                    self.forget_ready(forgets.0, forgets.1);
                    forgets = (priority, 0);
                }
                forgets.1 += 1;
                left_group += 1;
                after.free(job.data);
                continue;
            }
            if self.tasks.get(id).is_some_and(|t| t.group() == index) {
                stack.push(id);
                self.stop_reachable(&mut stack, up, down, &mut report, after);
            }
        }
        if members.heap_bytes() >= group::RETIRE_BYTES {
            // Freed after the lock rather than here (see `GroupTable`).
            after.garbage_first(Garbage::Members(members));
        }
        self.forget_ready(forgets.0, forgets.1);
        report.before_start += left_group;
        self.pending -= left_group as usize;
        self.stopped_total += left_group;
        if left_group > 0 {
            self.groups.leave_n(index, left_group);
        }
        self.stop_done(after);
        report
    }

    /// Stops every live task at once if all of them are queued without
    /// links (nothing running, finished, blocked or linked, no progress):
    /// the whole table is detached, and the free functions run in id order
    /// when its chunks are dropped after the lock is released. Returns the
    /// number stopped, or `None` (nothing done) if the case does not apply.
    fn stop_all_queued(&mut self, after: &mut After) -> Option<u64> {
        // Every live task pending, and none with links: a task's link
        // record lives exactly as long as the task (removed with it when it
        // is polled or stopped), so an empty slab means no task has one.
        if self.tasks.len() == 0
            || self.tasks.len() != self.pending
            || !self.progress.is_empty()
            || !self.links.is_empty()
        {
            return None;
        }
        debug_assert!(self.tasks.all(|t| matches!(t.body, Body::Pending { .. })));
        let n = self.tasks.len();
        let chunks = self.tasks.take_all();
        self.ready.clear();
        self.groups.leave_all();
        self.release_group_lists(after);
        self.pending = 0;
        self.stopped_total += n as u64;
        after.garbage(Garbage::Tasks(chunks));
        if self.deliverable == 0 {
            self.events.clear();
            self.release_events(after);
        }
        Some(n as u64)
    }

    /// Stops every task on `stack` and, transitively, what the flags reach.
    fn stop_reachable(
        &mut self,
        stack: &mut Vec<u64>,
        up: bool,
        down: bool,
        report: &mut StopReport,
        after: &mut After,
    ) {
        while let Some(id) = stack.pop() {
            let Some(task) = self.tasks.remove(id) else {
                continue;
            };
            let pending = pending_of(&self.links, &task);
            let (links, group) = (task.links(), task.group());
            let body = task.body;
            let unfinished = matches!(
                body,
                Body::Pending { .. }
                    | Body::Waiting { .. }
                    | Body::Running { .. }
                    | Body::Lane { .. }
                    | Body::Cont { .. }
            );
            let implicit = if links.is_none() { body.implicit_edges() } else { (0, 0) };
            match body {
                Body::Cont { rec, linked, .. } => {
                    let job = rec.cancel();
                    self.cont_cancelled += u64::from(job.is_some());
                    self.stop_in_lane(id, job, linked, report, after);
                }
                Body::Lane { level, pos, linked, .. } => {
                    let job = self.lane.cancel(level as usize, pos, id);
                    self.stop_in_lane(id, job, linked, report, after);
                }
                Body::Pending { job, .. } | Body::Waiting { job, .. } => {
                    report.before_start += 1;
                    self.pending -= 1;
                    if let Some((priority, 0)) = pending {
                        self.forget_ready(priority, 1);
                    }
                    after.free(job.data);
                }
                Body::Running { worker, .. } => {
                    report.while_running += 1;
                    self.workers[worker as usize].lane.stop_id.store(id, Ordering::Relaxed);
                }
                Body::Completed { result, .. } => {
                    report.after_finish += 1;
                    self.deliverable -= 1;
                    if let Some(r) = result {
                        after.garbage(Garbage::Result(r));
                    }
                }
                Body::Failed { failure: f, .. } => {
                    report.after_finish += 1;
                    self.deliverable -= 1;
                    after.garbage(Garbage::Failure(f));
                }
            }
            if !self.progress.is_empty() {
                if let Some(p) = self.progress.remove(&id) {
                    self.deliverable -= 1;
                    after.garbage(Garbage::Text(p.message));
                }
            }
            self.stopped_total += 1;
            self.groups.leave(group);
            let mut links = match links {
                Some(li) => self.links.remove(li),
                None if implicit != (0, 0) => Links::implicit(implicit),
                None => continue,
            };
            if !links.received.is_empty() {
                after.garbage(Garbage::Results(links.received.take()));
            }
            if up {
                stack.extend(links.upstream.iter());
            }
            if down {
                stack.extend(links.downstream.iter());
            } else if unfinished {
                // Downstream tasks no longer wait for this one; they run
                // without its result, as soon as they are otherwise ready.
                // On the locked path, not in the lane: the lock is held
                // until the whole stop is done, while a worker could claim
                // a lane entry at once, and run a task that this stop's
                // walk reaches later (`stop_all`, `stop_group`, a stop
                // with `up`), though it was waiting when the stop began.
                self.stop_releasing = true;
                for d in links.downstream.iter() {
                    self.unlane_cont(d);
                    self.release_downstream(d, None, after);
                }
                self.stop_releasing = false;
            }
        }
    }

    /// The stop of a lane task or continuation: `job` if the stop cancelled
    /// its entry, else a worker claimed it (running, or its outcome waits in
    /// the worker's queue, dropped when applied as for any stopped task).
    fn stop_in_lane(&mut self, id: u64, job: Option<Job>, linked: bool, report: &mut StopReport, after: &mut After) {
        if linked {
            // Queued or claimed: either way its outcome is no longer awaited.
            self.lane_linked -= 1;
        }
        match job {
            Some(job) => {
                report.before_start += 1;
                self.lane_cancelled += 1;
                after.free(job.data);
            }
            None => {
                report.while_running += 1;
                // Every worker whose last claim was this task: one whose
                // claim failed (the task was moved meanwhile) may still
                // name it.
                for w in &self.workers {
                    w.lane.stop_if_current(id);
                }
            }
        }
    }

    fn report_progress(&mut self, id: u64, fraction: f64, message: Option<CString>, after: &mut After) -> bool {
        // Only the task itself reports: a lane task doing so is running.
        if !matches!(
            self.tasks.get(id),
            Some(Task { body: Body::Running { .. } | Body::Lane { .. } | Body::Cont { .. }, .. })
        ) {
            after.garbage(Garbage::Text(message));
            return false;
        }
        match self.progress.get_mut(&id) {
            Some(p) => {
                p.fraction = fraction;
                after.garbage(Garbage::Text(mem::replace(&mut p.message, message)));
            }
            None => {
                self.progress.insert(id, Progress { fraction, message });
                self.push_event(Ev::Progress(id));
            }
        }
        true
    }
}

/// The gathered result of a pass-through: payload first, then upstream
/// results (flattened) in completion order.
fn gather(id: u64, payload: Owned, received: Vec<Arc<ResultSet>>) -> Option<ResultSet> {
    let payload = (!payload.is_null()).then(|| Arc::new(ResultSet::single(id, payload)));
    if received.is_empty() {
        return payload.map(|p| Arc::try_unwrap(p).ok().expect("unshared"));
    }
    let mut values = Vec::new();
    let mut parts = Vec::with_capacity(received.len() + 1);
    if let Some(p) = payload {
        values.extend_from_slice(p.values());
        parts.push(p);
    }
    for r in received {
        values.extend_from_slice(r.values());
        parts.push(r);
    }
    Some(ResultSet::Gathered { values, parts })
}

/// A task taken by a worker, to run outside the lock.
struct RunJob {
    id: u64,
    run: TaskFn,
    data: Owned,
    received: Vec<Arc<ResultSet>>,
    /// Instrumentation hooks and the task's group, only when registered
    /// (boxed: the job is moved a few times per task and should stay small).
    hooks: Option<Box<(Arc<TaskHooks>, GroupKey)>>,
}

/// What a running task sees of btm. Lives on the worker's stack for the
/// duration of the task function.
pub struct TaskContext {
    manager: *const Manager,
    id: u64,
    upstream: *const Value,
    upstream_len: usize,
    result: Option<Owned>,
    failure: Option<Failure>,
    /// The worker's handle on the manager (outlives the task call).
    arc: *const Arc<Manager>,
    /// The worker's `WorkerLane::stop_id`.
    stopped: *const AtomicU64,
}

impl TaskContext {
    /// The context of task `id` about to run on the worker of `lane`, with
    /// its upstream results (`(NULL, 0)` for none).
    #[inline(always)]
    fn new(
        manager: &Arc<Manager>,
        id: u64,
        (upstream, upstream_len): (*const Value, usize),
        lane: &WorkerLane,
    ) -> Self {
        TaskContext {
            manager: Arc::as_ptr(manager),
            id,
            upstream,
            upstream_len,
            result: None,
            failure: None,
            arc: manager,
            stopped: &lane.stop_id.0,
        }
    }

    /// The running task's id.
    pub fn task_id(&self) -> u64 {
        self.id
    }

    /// The manager running the task (valid while the task runs).
    pub fn manager(&self) -> *const Manager {
        self.manager
    }

    /// Upstream results in completion order.
    pub fn upstream(&self) -> &[Value] {
        if self.upstream_len == 0 {
            return &[];
        }
        // SAFETY: points into `received` (or a flattened copy) owned by the
        // worker for the whole task call, during which `self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.upstream, self.upstream_len) }
    }

    /// Sets the task's result, replacing (and freeing) a previous one.
    pub fn set_result(&mut self, value: Owned) {
        self.result = Some(value);
    }

    /// Marks the task failed; the last call wins.
    pub fn fail(&mut self, failure: Failure) {
        self.failure = Some(failure);
    }

    /// True once the task has been stopped.
    pub fn is_stopped(&self) -> bool {
        // SAFETY: the word is owned by the worker (an `Arc` it holds) and
        // outlives the task call.
        unsafe { (*self.stopped).load(Ordering::Relaxed) == self.id }
    }

    /// Reports progress; coalesced with any undelivered progress event of
    /// this task. Returns false if the task was stopped.
    pub fn report_progress(&self, fraction: f64, message: Option<CString>) -> bool {
        // SAFETY: the worker's `Arc<Manager>`, on its stack for the whole
        // task call.
        let manager = unsafe { &*self.arc };
        manager.locked(|st, after| {
            // Lane tasks that finished before this report come before it.
            st.apply_lane(after);
            st.report_progress(self.id, fraction, message, after)
        })
    }
}

/// What a worker does next.
enum Next {
    Job(RunJob),
    /// Take lane tasks without the lock; they may go before a locked task
    /// of the same priority if their id is below `tie_below` (the id of the
    /// locked queue's best task, 0 if none has the lane's priority), while
    /// the locked queue's front is not older (`Lane::locked_gen` is `gen`).
    Lane {
        tie_below: u64,
        gen: u64,
        tie_p: i64,
    },
    Exit,
}

fn worker_main(manager: Arc<Manager>, index: u32, lane: Arc<WorkerLane>) {
    CURRENT.with(|c| c.set(Arc::as_ptr(&manager)));
    CURRENT_INDEX.with(|c| c.set(index));
    // The notify list first: thread-local values are dropped in the
    // reverse order of their first use, and the guard's drop may call the
    // notify callback (a review found the list dropped before it).
    NOTIFY_CALLS.with(|_| ());
    WORKER_EXIT.with(|g| g.arm(&manager, &lane, index));
    // Disarmed when this frame ends, returning or unwinding (an engine
    // panic drops the references the guard was armed with; a review found
    // the guard would then take them over again). `pthread_exit`'s unwind
    // never reaches it: it stops at the host call's frame.
    let _disarm = Disarm;
    if let Some(h) = &manager.hooks {
        if let Some(start) = h.on_start {
            // SAFETY: host hook with its own userdata, as registered.
            unsafe { foreign::call_thread_hook(start, h.data.data(), index) };
        }
    }
    let mut done: Option<(u64, Outcome)> = None;
    let mut in_lane_left = false;
    loop {
        let mut after = After::default();
        let next = {
            let mut st = manager.state.lock();
            if mem::take(&mut in_lane_left) {
                st.in_lane -= 1;
                st.workers[index as usize].in_lane = false;
            }
            if let Some((id, outcome)) = done.take() {
                st.workers[index as usize].task = 0;
                // Events come in the order tasks finished: lane outcomes
                // left before this task finished come first.
                st.apply_lane(&mut after);
                // Announced by `next_job`, which ends this lock section.
                st.finish(id, outcome, &mut after);
            }
            next_job(&manager, &mut st, index, &mut after)
        };
        // Whatever finishing the last task produced (events to announce,
        // threads to start, host data to free) is done before running the
        // next task; when there was no next task, `next_job` did it before
        // sleeping.
        manager.run_after(after);
        match next {
            Next::Job(job) => done = Some(run_job(&manager, job, index, &lane)),
            Next::Lane { tie_below, gen, tie_p } => {
                if manager.lane.level_count() <= lane::FEW_LEVELS {
                    lane_loop::<{ lane::FEW_LEVELS }>(&manager, &lane, index, tie_below, gen, tie_p);
                } else {
                    lane_loop::<{ lane::LEVELS }>(&manager, &lane, index, tie_below, gen, tie_p);
                }
                // Not looking once out of the lane loop, whichever way it
                // left (a check-in can end it while the worker looks):
                // `provision` counts looking workers as coming for new work.
                lane.set_looking(false);
                in_lane_left = true;
            }
            Next::Exit => break,
        }
    }
    if let Some(h) = &manager.hooks {
        if let Some(stop) = h.on_stop {
            // SAFETY: as for `on_start`.
            unsafe { foreign::call_thread_hook(stop, h.data.data(), index) };
        }
    }
    let mut st = manager.state.lock();
    st.alive -= 1;
    st.workers[index as usize].exited = true;
    manager.host_cv.notify_all();
    drop(st);
    CURRENT.with(|c| c.set(std::ptr::null()));
}

/// Disarms this thread's [`WorkerExit`] when dropped (see `worker_main`).
struct Disarm;

impl Drop for Disarm {
    fn drop(&mut self) {
        let _ = WORKER_EXIT.try_with(WorkerExit::disarm);
    }
}

/// Finds the next job for a worker, spinning briefly and then sleeping when
/// there is none. Returns `None` when the worker must exit. Every way out of
/// the lock (returning, spinning, sleeping) first syncs the signals for what
/// this lock section changed (the previous task's outcome, pass-through
/// tasks completed while taking).
fn next_job(manager: &Arc<Manager>, st: &mut MutexGuard<'_, State>, index: u32, after: &mut After) -> Next {
    let mut spun = false;
    loop {
        if st.shut_down || st.threads > st.max_threads {
            // Exiting (shut down) or retiring (max_threads lowered): stop
            // counting against `max_threads` now, so that exactly the extra
            // threads retire. Outcomes it left are applied (those of tasks
            // stopped by a shut down are dropped, their results freed).
            st.apply_lane(after);
            st.threads -= 1;
            st.workers[index as usize].leaving = true;
            if st.threads == 0 {
                // The last worker: memory left for a worker is given back
                // now.
                for release in mem::take(&mut st.idle_release) {
                    after.garbage_first(release);
                }
            }
            st.sync_signal(after);
            return Next::Exit;
        }
        if st.processing && st.lane_live() > 0 {
            if manager.lane.is_overflowing() && manager.lane.is_open() {
                // A ring emptied while entries wait behind it.
                manager.lane.refill();
            }
            if let Some((lane_priority, lane_id)) = manager.lane.top() {
                let tie_below = match st.ready_front() {
                    Some((p, id)) if p > lane_priority || (p == lane_priority && id < lane_id) => None,
                    Some((p, id)) if p == lane_priority => Some(id),
                    _ => Some(0),
                };
                if let Some(tie_below) = tie_below {
                    st.in_lane += 1;
                    st.workers[index as usize].in_lane = true;
                    st.sync_signal(after);
                    // `tie_below` bounds the ids of the locked front at
                    // this priority only: once the locked queue's best is
                    // another priority (its front stopped or taken, which
                    // moves no `locked_gen`), the worker compares under
                    // the lock again (found by a review: a stale bound let
                    // a lane entry pass an older ready task of its own
                    // priority).
                    return Next::Lane { tie_below, gen: st.locked_gen, tie_p: i64::from(lane_priority) };
                }
            }
        }
        let job = if st.processing { st.take_next(index, after) } else { None };
        st.sync_signal(after);
        if let Some(job) = job {
            return Next::Job(job);
        }
        // Again at once only for a lane entry in a ring: entries that wait
        // in an overflow behind a slot another worker still holds (an
        // entry it popped and gives back in its next lock section, see
        // `Take::GiveBack`) cannot move until that worker has the lock. A
        // worker that looped here on `Lane::has_work` (true for any
        // overflow) held the lock for good: the host and the other worker
        // blocked on it (seen once in `btm_bench w6 1000000`, session 37;
        // `tests/lane.rs`, `a_worker_does_not_hold_the_lock_while_a_give_back_blocks_the_refill`).
        // Instead it spins and sleeps without the lock, and the giving
        // worker refills the ring after its give-back.
        if st.processing && st.lane_live() > 0 && manager.lane.top().is_some() {
            continue;
        }
        if !after.is_empty() {
            // Never sleep on pending work for others (a host waiting for an
            // event, host data to free): do it unlocked, then look again.
            let pending = mem::take(after);
            MutexGuard::unlocked(st, || manager.run_after(pending));
            continue;
        }
        let release = if st.idle_release_held { None } else { st.idle_release.pop() };
        if let Some(release) = release {
            // Idle: give back memory a poll emptied (see
            // `State::release_later`), outside the lock.
            MutexGuard::unlocked(st, || manager.release(release));
            continue;
        }
        if st.processing && st.tasks.needs_spare() {
            // Idle: make the task table's next chunk now, outside the lock,
            // so that an add does not allocate and fault it in under the lock
            // (one thread at a time: the others go on to spin or sleep).
            st.tasks.making_spare();
            let slots = MutexGuard::unlocked(st, Table::new_slots);
            if let Some(unneeded) = st.tasks.give_spare(slots) {
                MutexGuard::unlocked(st, || drop(unneeded));
            }
            continue;
        }
        if st.processing && !spun {
            // Spin briefly before sleeping: a task arriving within
            // microseconds starts without a futex wake-up.
            spun = true;
            st.spinning += 1;
            st.hint_sent = false;
            manager.work_hint.store(0, Ordering::Relaxed);
            MutexGuard::unlocked(st, || spin(manager));
            st.spinning -= 1;
            continue;
        }
        spun = false;
        st.sleeping += 1;
        manager.work_cv.wait(st);
        st.sleeping -= 1;
        st.waking = st.waking.saturating_sub(1);
    }
}

/// Looks at an empty lane before a worker goes back to the lock (where it
/// spins and yields as before sleeping, see `next_job`): growing spins, 1
/// to 64 pauses, then 64 pauses a few times.
const LANE_BACKOFF_STEPS: u32 = 7 + 4;
const LANE_BACKOFF_FIRST: u32 = 0;

/// Spin iterations and yields of a host in `wait_events` before it sleeps.
const HOST_SPIN_ITERS: u32 = 64;
const HOST_YIELD_ITERS: u32 = 16;

/// Waits without the lock until `ready` holds: `spins` pause iterations,
/// then `yields` yields of the CPU (which let a thread sharing it run).
/// Returns when `ready` holds or the spin ends; callers check again under
/// the lock either way.
fn spin_until(spins: u32, yields: u32, ready: impl Fn() -> bool) {
    for _ in 0..spins {
        if ready() {
            return;
        }
        std::hint::spin_loop();
    }
    for _ in 0..yields {
        if ready() {
            return;
        }
        std::thread::yield_now();
    }
}

/// A worker's spin before it sleeps: it watches the hint an add raises.
fn spin(manager: &Manager) {
    spin_until(SPIN_ITERS, YIELD_ITERS, || manager.work_hint.load(Ordering::Relaxed) != 0);
}

/// Runs lane tasks without the lock until the lane has none for the length
/// of a spin, or the worker must come back to the lock (the lane closed,
/// the locked queue has a task that may come first, fewer threads allowed).
///
/// Out of line: inlined into the worker's main function, its registers
/// were allocated together with every lock-path step of `next_job`, and a
/// change there moved this loop's count per task.
#[inline(never)]
fn lane_loop<const N: usize>(
    manager: &Arc<Manager>,
    wl: &WorkerLane,
    index: u32,
    mut tie_below: u64,
    gen: u64,
    tie_p: i64,
) {
    let lane = &*manager.lane;
    let checkin = lane.checkin.load(Ordering::Relaxed);
    let mut seen = lane::LevelsSeen::<N>::new();
    // (A claim from an earlier visit to the lane is no reason to pause.)
    wl.forget_claimed_slot();
    loop {
        if tie_below != 0 && lane.locked_gen.load(Ordering::Relaxed) != gen {
            tie_below = 0;
        }
        wl.pause_if_newest();
        match lane.take(wl, tie_below, tie_p, &mut seen) {
            Take::Job(id, job) => {
                let run = job.run.expect("lane tasks run a function");
                let outcome = run_lane_job(manager, id, run, job.data, wl);
                match (wl.take_end(), outcome) {
                    (lane::End::Plain, None) => leave_completed(manager, wl, id),
                    (lane::End::Plain, Some(outcome)) => leave_outcome(manager, wl, id, outcome, false),
                    (lane::End::Linked, outcome) => {
                        leave_and_apply(manager, wl, id, outcome.unwrap_or(Outcome::Completed(None)))
                    }
                    (lane::End::Cont(att), outcome) => {
                        let outcome = outcome.unwrap_or(Outcome::Completed(None));
                        run_chain(manager, wl, index, (id, outcome), att, checkin)
                    }
                }
            }
            Take::GiveBack(id, level, pos) => {
                manager.locked(|st, after| st.give_back(id, level, pos, after));
                wl.gave_back();
                return;
            }
            Take::Lock => return,
            // A stopped entry, or a moved one (`locked_gen` moved before
            // its cancel): the locked queue may now come first.
            Take::Cancelled if lane.locked_gen.load(Ordering::Relaxed) != gen => return,
            Take::Cancelled => {}
            Take::Lost => wl.after_lost_pop(),
            Take::Empty => {
                // (No pause for the last claim once the lane was empty: the
                // work found after the wait goes at once.)
                wl.forget_claimed_slot();
                // Look again less and less often: each look pulls the lines
                // the host is writing.
                let mut found = false;
                for step in 0..LANE_BACKOFF_STEPS {
                    for _ in 0..1u32 << (step + LANE_BACKOFF_FIRST).min(6) {
                        std::hint::spin_loop();
                    }
                    if lane.has_work() || lane.checkin.load(Ordering::Relaxed) != checkin {
                        found = true;
                        break;
                    }
                }
                if !found {
                    // Back to the lock, where it looks once more before
                    // it sleeps.
                    wl.set_looking(false);
                    return;
                }
            }
        }
        if lane.checkin.load(Ordering::Relaxed) != checkin {
            return;
        }
    }
}

/// Runs the continuations of a chain, one after the other, as long as each
/// comes first (see `finish_with_cont`), starting with `att`, attached to
/// the task that finished with `done`.
#[inline(never)]
fn run_chain(
    manager: &Arc<Manager>,
    wl: &WorkerLane,
    index: u32,
    done: (u64, Outcome),
    att: lane::Attached,
    checkin: u64,
) {
    let mut next = finish_with_cont(manager, wl, done.0, done.1, att, checkin);
    while let Some((id, job, received)) = next.take() {
        let run = job.run.expect("continuations run a function");
        let job = RunJob { id, run, data: job.data, received, hooks: None };
        let (id, outcome) = run_job(manager, job, index, wl);
        // No wait for the next link if the host has not attached it yet:
        // a worker that waited (256 pauses until session 13) kept the host
        // and itself in lock-step on the chain's lines, and W2a was ~10%
        // slower (PERFORMANCE.md). The link then runs from the lane.
        next = match wl.take_cont() {
            None => {
                leave_outcome(manager, wl, id, outcome, false);
                None
            }
            Some(att) => finish_with_cont(manager, wl, id, outcome, att, checkin),
        };
    }
}

/// Leaves the outcome of a lane task that has a continuation attached, and
/// claims the continuation if it comes first (returned, to run next: its
/// upstream result travels with it). Otherwise the worker takes the lock
/// and applies the outcome: the continuation, still queued, moves to the
/// locked path (see `State::finish`), or was moved there or stopped
/// meanwhile (then it waits for this outcome, or nothing does).
#[inline(always)]
fn finish_with_cont(
    manager: &Arc<Manager>,
    wl: &WorkerLane,
    id: u64,
    outcome: Outcome,
    att: lane::Attached,
    checkin: u64,
) -> Option<(u64, Job, Vec<Arc<ResultSet>>)> {
    let lane = &*manager.lane;
    let (cid, priority) = (att.rec().id, att.rec().priority);
    let first = matches!(outcome, Outcome::Completed(_))
        && lane.checkin.load(Ordering::Relaxed) == checkin
        && lane.comes_first(priority, cid);
    let claim = if first { lane.claim_cont(wl, &att) } else { None };
    // Before the job runs: the table's reference is then the record's last
    // once the outcome is published, which `ContArena::recycle_ran` relies
    // on (keep it so on any new path that runs a continuation).
    drop(att);
    let Some(job) = claim else {
        // The worker applies every outcome left, its own included, whatever
        // `lock_finish` says: a lock holder that raised it for an event
        // alone may have stopped before this one, and the continuation
        // must not wait for the host's poll. (One lock section either way:
        // a worker that sees the flag takes the lock for it.)
        leave_and_apply(manager, wl, id, outcome);
        return None;
    };
    let received = match &outcome {
        Outcome::Completed(Some(r)) => vec![Arc::clone(r)],
        _ => Vec::new(),
    };
    leave_outcome(manager, wl, id, outcome, true);
    Some((cid, job, received))
}

/// Leaves a lane task's outcome in the worker's outcome queue, for whoever holds the
/// lock next, and opens the poll gate; takes the lock itself when someone
/// is waiting (see `lane`, "outcome vs lock holder"). `cont_claimed`: this
/// worker claimed the task's continuation, which it runs next.
#[inline(always)]
fn leave_outcome(manager: &Arc<Manager>, wl: &WorkerLane, id: u64, mut outcome: Outcome, cont_claimed: bool) {
    // A task stopped while it ran (the stop marked it, `stop_if_current`)
    // has its outcome dropped: its result is freed here, on the worker, as
    // the task returns, not by whichever call applies the outcome later (a
    // stats call or a wait on the host's thread). Nothing else changes:
    // no lock is taken here. (A stop that marks the task after this load
    // leaves the result to that later call, as before.)
    // (Freed after the outcome is left: a free function that ends the
    // thread, see `WorkerExit`, must not find the task neither running
    // nor finished.)
    let mut stopped = None;
    if let Outcome::Completed(result @ Some(_)) = &mut outcome {
        if wl.stop_id.0.load(Ordering::Relaxed) == id {
            stopped = result.take();
        }
    }
    if cont_claimed {
        wl.push_outcome_cont_claimed((id, outcome));
    } else {
        wl.push_outcome((id, outcome));
    }
    outcome_left(manager);
    drop(stopped);
}

/// Leaves a lane task's outcome and applies it (with every other outcome
/// left) under the lock at once, for a downstream task that must become
/// ready before a lower task is claimed, not at the host's next poll: a
/// task claimed marked linked (see `lane::LINKED`), or one whose
/// continuation `finish_with_cont` could not claim.
#[cold]
#[inline(never)]
fn leave_and_apply(manager: &Arc<Manager>, wl: &WorkerLane, id: u64, outcome: Outcome) {
    wl.push_outcome((id, outcome));
    open_poll_gate(manager);
    manager.locked(|st, after| st.apply_lane(after));
}

/// Opens the poll gate after an outcome was left (stored only when closed,
/// so that its line stays shared while the host polls).
#[inline(always)]
fn open_poll_gate(manager: &Manager) {
    if !manager.poll_gate.load(Ordering::Relaxed) {
        manager.poll_gate.store(true, Ordering::Release);
    }
}

/// [`leave_outcome`] for the common end: completed without a result, no
/// continuation claimed.
#[inline(always)]
fn leave_completed(manager: &Arc<Manager>, wl: &WorkerLane, id: u64) {
    wl.push_completed(id);
    outcome_left(manager);
}

/// After an outcome was left: opens the poll gate, and applies the
/// outcomes under the lock when someone waits for them.
#[inline(always)]
fn outcome_left(manager: &Arc<Manager>) {
    open_poll_gate(manager);
    if manager.lane.lock_finish.load(Ordering::Relaxed) {
        manager.locked(|st, after| st.apply_lane_for_waiters(after));
    }
}

/// [`run_job`] for a lane task, which has no upstream results and no hooks
/// (the lane is closed while hooks are set). `None` for the common end,
/// completed without a result (the outcome queue keeps it as the bare id),
/// which spares moving an `Outcome` about.
#[inline(always)]
fn run_lane_job(manager: &Arc<Manager>, id: u64, run: TaskFn, data: Owned, lane: &WorkerLane) -> Option<Outcome> {
    let mut ctx = TaskContext::new(manager, id, (std::ptr::null(), 0), lane);
    // SAFETY: a host task function with the userdata it was registered with
    // and a context that lives for the whole call.
    unsafe { foreign::call_task(run, data.data(), &mut ctx) };
    drop(data);
    if ctx.failure.is_none() && ctx.result.as_ref().map_or(true, Owned::is_null) {
        // A NULL result is no result (its free function is not called).
        drop(ctx.result.take());
        return None;
    }
    Some(take_outcome(&mut ctx, id))
}

/// What a task reported through its context: its failure (a result it
/// also set is freed), or its result (NULL is none).
#[inline(always)]
fn take_outcome(ctx: &mut TaskContext, id: u64) -> Outcome {
    match ctx.failure.take() {
        Some(f) => {
            drop(ctx.result.take());
            Outcome::Failed(f)
        }
        None => {
            Outcome::Completed(ctx.result.take().filter(|r| !r.is_null()).map(|r| Arc::new(ResultSet::single(id, r))))
        }
    }
}

#[inline(always)]
fn run_job(manager: &Arc<Manager>, job: RunJob, worker: u32, lane: &WorkerLane) -> (u64, Outcome) {
    let RunJob { id, run, data, received, hooks } = job;
    let flat: Vec<Value>;
    let (ptr, len) = match received.as_slice() {
        [] => (std::ptr::null(), 0),
        [one] => (one.values().as_ptr(), one.values().len()),
        many => {
            flat = many.iter().flat_map(|r| r.values().iter().copied()).collect();
            (flat.as_ptr(), flat.len())
        }
    };
    let mut ctx = TaskContext::new(manager, id, (ptr, len), lane);
    let hook = |f: Option<TaskHookFn>, h: &TaskHooks, group: GroupKey| {
        if let Some(f) = f {
            // SAFETY: host hook with the userdata it was registered with.
            unsafe { foreign::call_task_hook(f, h.data.data(), id, group.kind as u32, group.value, worker) };
        }
    };
    if let Some((h, group)) = hooks.as_deref() {
        // (The job's reference, for a thread that ends inside the task:
        // see `WorkerLane::hooks_held`.)
        lane.hold_hooks(Arc::as_ptr(h));
        hook(h.on_start, h, *group);
    }
    // SAFETY: a host task function with the userdata it was registered with
    // and a context that lives for the whole call.
    unsafe { foreign::call_task(run, data.data(), &mut ctx) };
    if let Some((h, group)) = hooks.as_deref() {
        hook(h.on_end, h, *group);
    }
    if hooks.is_some() {
        lane.hold_hooks(std::ptr::null());
    }
    drop(hooks);
    drop(data);
    if received.capacity() == 0 {
        // Nothing allocated (no upstream results): skip the drop call.
        mem::forget(received);
    } else {
        drop(received);
    }
    (id, take_outcome(&mut ctx, id))
}
