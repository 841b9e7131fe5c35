//! The lane: the lock-free path of independent tasks between the host's add
//! and a worker (see docs/ENGINE_PLAN.md, "the hybrid").
//!
//! A task added with no upstream task, while processing runs and no task
//! hooks are registered, is pushed (under the state lock, so there is one
//! producer at a time) into the lane level of its priority: a bounded queue
//! whose slot holds the task's job and a state word. Workers pop and claim
//! entries without the lock and leave each outcome in a queue of their own,
//! which whoever holds the state lock next applies (`State::apply_lane`).
//!
//! Protocols (each checked by a loom model in `tests/loom_lane.rs`):
//! - **Claim vs stop**: a worker that popped a slot claims it with a
//!   compare-and-swap `QUEUED -> RUNNING`; a stop (under the lock, which
//!   keeps `slot.id` stable: only the producer writes it) cancels with
//!   `QUEUED -> CANCELLED`. Whoever wins owns the job.
//! - **Linked entries**: a fan-in added while one of its upstream tasks
//!   waits queued in a ring marks that entry (`QUEUED -> LINKED`, a
//!   compare-and-swap against the claim and the cancel, as an attachment
//!   is). The worker that claims a marked entry learns it from the word it
//!   replaced, and applies the task's outcome under the lock at once, so
//!   that the fan-in becomes ready before a lower task is claimed; no
//!   other worker's outcome waits for the lock because of it. An entry
//!   claimed before the mark, or waiting in an overflow, cannot be marked:
//!   the lock holder counts it instead (`State::lane_linked`), and while
//!   any is counted every worker applies every outcome under the lock.
//! - **Moved entries**: a lock holder that moves a queued entry to the
//!   locked path (`State::unlane_slow`: a fan-in over it that cannot mark
//!   it, a priority change) bumps and publishes `locked_gen` before it
//!   cancels the entry; a worker that finds an entry cancelled and sees
//!   `locked_gen` moved since its lock section takes the lock before it
//!   claims anything else, as the locked queue's new front (which may
//!   come before the entries behind the moved one) is published only at
//!   the lock holder's section's end. A stop's cancels move nothing.
//! - **Close vs claims**: a worker announces a claim in its own `claiming`
//!   flag, fences, and only then reads `open`; `close` clears `open`,
//!   fences and waits until no claim is announced. After `close` no entry
//!   is claimed until the lane opens again.
//! - **Outcome vs lock holder**: a worker pushes its outcome, fences, and
//!   then opens the poll gate and reads `lock_finish`; the lock holder
//!   closes the gate or raises `lock_finish`, fences, and looks at the
//!   outcome queues. Either the worker sees the flag or the lock holder
//!   the outcome.
//! - **Outcome queues** are unbounded (segments): the worker links a new
//!   segment before it publishes the first outcome in it.
//! - **Overflow**: a level's ring is bounded; when it is full, adds wait in
//!   the level's overflow (only the lock holder touches it), in order, and
//!   move into the ring as it makes room: some at each add, up to 1,024
//!   when a worker finds the ring empty (it comes to the lock for that
//!   rather than take from a lower level). Workers see the overflow
//!   through a flag, cleared after the entries that left it were
//!   published in the ring, and read it before the ring, so that an entry
//!   on its way from one to the other is seen in one of them.
//!
//! - **Continuations** (a task whose only upstream task is a lane task,
//!   see [`Cont`]): the host attaches the downstream task's record to its
//!   upstream's state word (`QUEUED -> record`, a compare-and-swap against
//!   the claim and the cancel), or, once the upstream is claimed, to the
//!   claiming worker's `cont` word (`running(id) -> record`, against the
//!   worker's swap when the upstream finishes). The worker that finishes
//!   the upstream takes the record and claims it (`QUEUED -> RUNNING`, as
//!   a slot) when it is the best task to run next, else leaves it queued
//!   for the lock holder, which moves it to the locked path when it
//!   applies the upstream's outcome. Records are counted (the table's
//!   reference and the attachment's), so that neither side frees one the
//!   other still reads.
//!
//! Order (the locked path's rules, kept): a worker takes the best level
//! with an entry, unless the locked ready queue (tasks with upstream tasks,
//! pass-through tasks, tasks added while hooks are registered or a level
//! was given back or changed priority, priorities that found no level: all
//! eight made, none empty, or a worker in its lane loop) has a
//! better task: its best
//! priority is published in `locked_top`, and at equal priority the worker
//! compares ids under the lock, which gives it a bound (`tie_below`) valid
//! until `locked_gen` changes. A task that became better while the worker
//! popped (seen after the pop) makes it give the entry back to the locked
//! path. A batch of several priorities publishes its entries together at
//! its end, the highest level first, bumping `epoch` after each level, so
//! that workers choose among the whole batch (a worker that pops a lower
//! entry after a higher level's publication sees the bump and gives the
//! entry back, unless the entry was published in an epoch before the one
//! its take began in: see `Slot::epoch`); a batch of one priority publishes each entry as it is
//! added, after the locked queue's front its earlier tasks changed, as
//! single adds do.
//! Events keep the order tasks finished in: every lock section that queues
//! an event first applies the outcomes the workers left.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::mem::{self, MaybeUninit};
use std::ops::Deref;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::foreign::Job;
use super::pages;
use super::Outcome;

/// Lane levels (priorities with a lane) per manager, made on first use;
/// once all are made, an empty one is given to a priority that has none
/// while no worker is taking an entry (`Lane::reassign`). Eight since
/// session 35 (four before): a host using five to eight priorities at once
/// ran the others on the locked path, W6 at 8 priorities 4.6-7x slower per
/// task than at 4 (`btm_bench w6` with `BTM_BENCH_W6_LEVELS=8`: medians
/// 215.7 -> 49.9 ns per task).
pub(crate) const LEVELS: usize = 8;
/// The level order word (`Lane::order`): the count in its low
/// `ORDER_SHIFT` bits, then each level's index in `ORDER_BITS` bits.
const ORDER_SHIFT: usize = 4;
const ORDER_BITS: usize = 3;
const ORDER_COUNT: u32 = (1 << ORDER_SHIFT) - 1;
const ORDER_INDEX: u32 = (1 << ORDER_BITS) - 1;
const _: () = assert!(LEVELS <= ORDER_COUNT as usize && LEVELS <= 1 << ORDER_BITS);
const _: () = assert!(ORDER_SHIFT + ORDER_BITS * LEVELS <= 32);
/// Entries per level's ring (1 MiB). When the ring is full (a host that
/// adds faster than the workers run, for a millisecond at 60 ns an add),
/// further entries wait in the level's overflow, in order, and move into
/// the ring as it makes room. The mapping is touched when the level is
/// made, so that adds do not take its page faults.
const CAP: u64 = 1 << 14;
/// How many slots ahead of the one it writes an add asks for a slot's line
/// (see `pages::prefetch_write`).
const PREFETCH_AHEAD: u64 = 8;
/// Overflow entries an add moves into the ring (a worker that finds the
/// ring empty moves more, see `REFILL_PER_SECTION`).
const REFILL_PER_ADD: usize = 64;
/// Overflow entries a worker that found a ring empty moves into it per lock
/// section (an add waiting for the lock waits for at most this many).
const REFILL_PER_SECTION: usize = 1024;
/// Overflow capacity kept once the overflow is empty again.
const OVERFLOW_KEEP: usize = 4096;
/// The ring's `CAP` slots and one more after them, never written (zeroed:
/// free), which [`WorkerLane::pause_if_newest`] reads after the last.
const SLOTS_BYTES: usize = (CAP as usize + 1) * std::mem::size_of::<Slot>();

// Zero is a free slot's state (zeroed memory is a valid empty level). A
// state word above `LINKED` is a queued entry with a continuation
// attached: the address of its `Cont` record.
const CANCELLED: u64 = 0;
const QUEUED: u64 = 1;
const RUNNING: u64 = 2;
/// Queued, with a downstream task on the locked path (a slot's word only,
/// never a continuation's; see "Linked entries" above). Odd, as `QUEUED`
/// is, so that the claiming worker's word, `(id << 2) | s`, tells it.
const LINKED: u64 = 3;

/// True for a state word of an unclaimed, uncancelled entry.
#[inline(always)]
fn is_queued_word(s: u64) -> bool {
    s == QUEUED || s > RUNNING
}

/// Moves a state word from queued (with or without a continuation) to
/// `to`; returns the word it replaced, or the word that made it fail
/// (`RUNNING` or `CANCELLED`).
#[inline(always)]
fn leave_queued(state: &AtomicU64, to: u64) -> Result<u64, u64> {
    // Most entries have nothing attached: one compare-and-swap.
    let mut s = match state.compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire) {
        Ok(s) => return Ok(s),
        Err(s) => s,
    };
    loop {
        if !is_queued_word(s) {
            return Err(s);
        }
        match state.compare_exchange_weak(s, to, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(s),
            Err(now) => s = now,
        }
    }
}

/// Drops the continuation attached in state word `s`, if any (the caller
/// took the word over).
#[inline(always)]
fn drop_attached(s: u64) {
    if s > LINKED {
        // SAFETY: an attached record holds a reference for the attachment,
        // which the caller's compare-and-swap made its own.
        unsafe { Cont::release(s as *mut Cont) };
    }
}

/// A continuation: a task whose only upstream task was a lane task (or a
/// continuation) when it was added. It waits attached to its upstream (see
/// the module doc) rather than in the locked path, and the worker that
/// finishes the upstream runs it at once when it comes first.
pub(crate) struct Cont {
    /// `QUEUED`, `RUNNING`, `CANCELLED` or an attached record, as a slot's.
    state: AtomicU64,
    /// Two at first: the table's and the attachment's.
    refs: AtomicU32,
    pub(crate) priority: i32,
    pub(crate) id: u64,
    /// Its upstream task (the task table keeps no link record for the
    /// edge while the continuation is in the lane; see `State::add_cont`).
    /// Written before the record is shared, never changed.
    up: u64,
    job: UnsafeCell<MaybeUninit<Job>>,
    /// The arena the record belongs to, which takes it back when the last
    /// reference goes.
    home: *const ContArena,
}

// SAFETY: the job is written before the record is shared and taken by
// exactly one owner (claim or cancel, decided by a compare-and-swap).
unsafe impl Sync for Cont {}
// SAFETY: as above.
unsafe impl Send for Cont {}

impl Cont {
    /// Drops one reference; the last gives the record back to its arena
    /// (dropping its job, if still queued, and the reference it holds on an
    /// attached record, in a loop rather than recursively: chains may be
    /// long).
    ///
    /// # Safety
    /// `p` is a live record and the caller owns one of its references.
    unsafe fn release(mut p: *mut Cont) {
        loop {
            // SAFETY: the caller's contract (then: the reference the
            // released record held).
            let rec = unsafe { &*p };
            if rec.refs.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            fence(Ordering::Acquire);
            // The last reference: nobody else reads the record.
            let s = rec.state.load(Ordering::Relaxed);
            if is_queued_word(s) {
                // SAFETY: unclaimed and uncancelled: the job is still here.
                drop(unsafe { (*rec.job.get()).assume_init_read() });
            }
            // SAFETY: an arena outlives its records (see `ContArena`).
            unsafe { &*rec.home }.orphan(p);
            if s <= LINKED {
                return;
            }
            p = s as *mut Cont;
        }
    }
}

/// The task table's reference to a continuation's record.
pub(crate) struct ContRef(std::ptr::NonNull<Cont>);

// SAFETY: the record is `Sync`; the reference is counted.
unsafe impl Send for ContRef {}
// SAFETY: as above.
unsafe impl Sync for ContRef {}

impl ContRef {
    fn rec(&self) -> &Cont {
        // SAFETY: the table's reference keeps the record alive.
        unsafe { self.0.as_ref() }
    }

    /// The continuation's priority (the task table keeps none for it).
    pub(crate) fn priority(&self) -> i32 {
        self.rec().priority
    }

    /// Cancels the record if it is queued, under the state lock; returns
    /// its job.
    pub(crate) fn cancel(&self) -> Option<Job> {
        let s = leave_queued(&self.rec().state, CANCELLED).ok()?;
        drop_attached(s);
        // SAFETY: the compare-and-swap made this call the job's only owner.
        Some(unsafe { (*self.rec().job.get()).assume_init_read() })
    }

    /// The continuation's upstream task.
    pub(crate) fn up(&self) -> u64 {
        self.rec().up
    }

    /// True while the record is queued (not claimed, not cancelled).
    pub(crate) fn is_queued(&self) -> bool {
        is_queued_word(self.rec().state.load(Ordering::Acquire))
    }

    /// The reference as a raw pointer, which keeps it (see
    /// [`ContRef::from_raw`]).
    #[inline(always)]
    pub(crate) fn as_raw(&self) -> std::ptr::NonNull<Cont> {
        self.0
    }

    /// The reference whose pointer [`ContRef::as_raw`] gave.
    ///
    /// # Safety
    /// The `ContRef` it came from was forgotten, not dropped: this takes
    /// over its reference, once.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(p: std::ptr::NonNull<Cont>) -> ContRef {
        ContRef(p)
    }

    /// The record's address, as a state word or a worker's word holds it.
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

impl Drop for ContRef {
    fn drop(&mut self) {
        // SAFETY: the table's reference, dropped once.
        unsafe { Cont::release(self.0.as_ptr()) };
    }
}

/// Where continuation records come from: blocks of records that the lane
/// owns (so that records outlive every reference, the lane's slots
/// included), a free list for the lock holder, and a lock-free stack of
/// records whose last reference a worker dropped (linked through their
/// state words), which the lock holder takes back when its list runs dry.
/// One `malloc` per block instead of per record: W2a adds 100,000
/// continuations before its first poll, and glibc takes each from the top
/// of the heap (~200 instructions).
pub(crate) struct ContArena {
    orphans: Padded<AtomicPtr<Cont>>,
    /// The lock holder's part.
    owner: UnsafeCell<ArenaOwner>,
}

#[derive(Default)]
struct ArenaOwner {
    free: Vec<std::ptr::NonNull<Cont>>,
    blocks: Vec<Box<[MaybeUninit<Cont>]>>,
    /// Records handed out and not yet back in `free`.
    live: usize,
}

// SAFETY: `owner` is touched under the state lock only; `orphans` is a
// lock-free stack; records are `Sync`.
unsafe impl Sync for ContArena {}
// SAFETY: as above.
unsafe impl Send for ContArena {}

// The size `btm_add_task`'s documentation gives.
const _: () = assert!(mem::size_of::<Cont>() == 64);

/// Records per block.
const CONT_BLOCK: usize = 256;

impl ContArena {
    fn new() -> ContArena {
        ContArena { orphans: Padded(AtomicPtr::new(std::ptr::null_mut())), owner: UnsafeCell::default() }
    }

    /// Takes record `p` back (its last reference went; any thread).
    fn orphan(&self, p: *mut Cont) {
        let mut head = self.orphans.load(Ordering::Relaxed);
        loop {
            // SAFETY: the record is unreferenced: its state word is free to
            // link the stack.
            unsafe { (*p).state.store(head as u64, Ordering::Relaxed) };
            match self.orphans.compare_exchange_weak(head, p, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// The lock holder's part.
    ///
    /// # Safety
    /// The caller holds the state lock.
    #[allow(clippy::mut_from_ref)]
    unsafe fn owner(&self) -> &mut ArenaOwner {
        // SAFETY: the caller's contract.
        unsafe { &mut *self.owner.get() }
    }

    /// A queued record for task `id` with both references (the table's,
    /// returned, and the attachment's, for [`Lane::attach`]); the caller
    /// holds the state lock.
    #[inline(always)]
    pub(crate) fn make(&self, id: u64, priority: i32, job: Job, up: u64) -> ContRef {
        // SAFETY: the caller holds the state lock.
        let o = unsafe { self.owner() };
        if o.free.is_empty() {
            self.refill(o);
        }
        let p = o.free.pop().expect("refilled above");
        o.live += 1;
        // SAFETY: a free record is referenced by nothing: written whole
        // before it is shared.
        unsafe {
            p.as_ptr().write(Cont {
                state: AtomicU64::new(QUEUED),
                refs: AtomicU32::new(2),
                priority,
                id,
                up,
                job: UnsafeCell::new(MaybeUninit::new(job)),
                home: self,
            })
        };
        ContRef(p)
    }

    /// The next [`ContArena::make`] would allocate a block: no record is
    /// free, none orphaned. The caller holds the state lock.
    #[inline(always)]
    pub(crate) fn is_dry(&self) -> bool {
        // SAFETY: the caller holds the state lock.
        unsafe { self.owner() }.free.is_empty() && self.orphans.load(Ordering::Relaxed).is_null()
    }

    /// The free list is empty: the orphans, else a new block.
    #[cold]
    #[inline(never)]
    fn refill(&self, o: &mut ArenaOwner) {
        self.take_orphans(o);
        if o.free.is_empty() {
            let mut block: Box<[MaybeUninit<Cont>]> = (0..CONT_BLOCK).map(|_| MaybeUninit::uninit()).collect();
            o.free.extend(records_of(&mut block));
            o.blocks.push(block);
        }
    }

    fn take_orphans(&self, o: &mut ArenaOwner) {
        let mut p = self.orphans.swap(std::ptr::null_mut(), Ordering::Acquire);
        while let Some(rec) = std::ptr::NonNull::new(p) {
            // SAFETY: pushed by `orphan`, unreferenced; linked through the
            // state word.
            p = unsafe { rec.as_ref() }.state.load(Ordering::Relaxed) as *mut Cont;
            o.free.push(rec);
            o.live -= 1;
        }
    }

    /// Drops the table's reference to a record, taking the record straight
    /// back when that was the last reference; the caller holds the state
    /// lock. Once no record is out, the blocks are given back (but one).
    #[inline(always)]
    pub(crate) fn recycle(&self, r: ContRef) {
        let rec = r.rec();
        if rec.refs.load(Ordering::Acquire) != 1 || !matches!(rec.state.load(Ordering::Relaxed), RUNNING | CANCELLED) {
            return; // dropped: `Cont::release`
        }
        self.take_back(r);
    }

    /// Puts record `r`, whose last reference is the caller's, in the free
    /// list; once no record is out, the blocks are given back (but one).
    /// The caller holds the state lock.
    #[inline(always)]
    fn take_back(&self, r: ContRef) {
        // SAFETY: the caller holds the state lock.
        let o = unsafe { self.owner() };
        o.put_back(r);
        if o.live == 0 && o.blocks.len() > 1 {
            self.shrink(o);
        }
    }

    /// No record is out: gives the blocks back (but one), once the orphans
    /// are taken back too.
    #[cold]
    fn shrink(&self, o: &mut ArenaOwner) {
        self.take_orphans(o);
        if o.live == 0 {
            o.free.clear();
            o.blocks.truncate(1);
            let ArenaOwner { free, blocks, .. } = o;
            free.extend(records_of(&mut blocks[0]));
        }
    }

    /// Takes the record of a continuation whose own outcome the caller
    /// applies straight back, under the state lock, without reading it:
    /// the worker that ran the continuation dropped the attachment's
    /// reference before it ran it, and published the outcome after that,
    /// so the table's reference is the last one. The record's line stays
    /// in that worker's cache: reading it here (as [`ContArena::recycle`]
    /// does) cost the poll of a chain task a cache miss.
    ///
    /// The invariant has one source: a continuation's job runs only after
    /// `claim_cont`, and `finish_with_cont` (src/engine/mod.rs) drops the
    /// `Attached` right after the claim, before the job runs. A path that
    /// ran a continuation while still holding its attachment would make
    /// this a use after free (the later `fetch_sub` landing on a record
    /// `make` rebuilt); debug builds check the reference count here.
    #[inline(always)]
    pub(crate) fn recycle_ran(&self, r: ContRef) {
        debug_assert_eq!(r.rec().refs.load(Ordering::Acquire), 1, "the attachment's reference was dropped");
        debug_assert_eq!(r.rec().state.load(Ordering::Relaxed), RUNNING, "claimed");
        self.take_back(r);
    }

    /// Takes back a record that was never attached (both references still
    /// here) with its job; the caller holds the state lock.
    pub(crate) fn unmake(&self, r: ContRef) -> Job {
        // SAFETY: never shared: this is the only pointer to the record;
        // queued, so the job is here, read once.
        let job = unsafe { (*r.rec().job.get()).assume_init_read() };
        // SAFETY: the caller holds the state lock.
        unsafe { self.owner() }.put_back(r);
        job
    }
}

impl ArenaOwner {
    /// Takes back a record through its last reference (no job left in it).
    fn put_back(&mut self, r: ContRef) {
        self.free.push(r.0);
        mem::forget(r);
        self.live -= 1;
    }
}

/// The records of a block, in the order `make` hands them out (popped from
/// the free list's end).
fn records_of(block: &mut [MaybeUninit<Cont>]) -> impl Iterator<Item = std::ptr::NonNull<Cont>> + '_ {
    block.iter_mut().rev().map(|c| std::ptr::NonNull::from(c).cast::<Cont>())
}

/// A continuation taken by the worker that finished its upstream task: the
/// attachment's reference.
pub(crate) struct Attached(std::ptr::NonNull<Cont>);

/// What a worker's word said at the end of a lane task it claimed from a
/// slot (see [`WorkerLane::take_end`]).
pub(crate) enum End {
    /// Nothing attached, not linked: the outcome waits for the next lock
    /// holder.
    Plain,
    /// Claimed marked (see [`LINKED`]): its outcome must be applied at once.
    Linked,
    /// A continuation attached.
    Cont(Attached),
}

impl Attached {
    /// The record a worker's `cont` word holds, if it holds an address
    /// (not 0 and not a running word, whose low bits are set): the caller
    /// swapped the word out, so its attachment reference is the caller's.
    #[inline(always)]
    fn from_word(w: u64) -> Option<Attached> {
        // SAFETY: an address is an attached record whose attachment
        // reference the word held; the swap made it this worker's.
        (w > RUNNING && w & 3 == 0).then(|| Attached(unsafe { std::ptr::NonNull::new_unchecked(w as *mut Cont) }))
    }

    pub(crate) fn rec(&self) -> &Cont {
        // SAFETY: the attachment's reference keeps the record alive.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: the attachment's reference, dropped once.
        unsafe { Cont::release(self.0.as_ptr()) };
    }
}

/// Where [`Lane::attach`] attached a continuation.
pub(crate) enum AttachTo {
    /// To the queued upstream's state word.
    Queued,
    /// Nowhere: the upstream is claimed (attach to its worker's `cont`
    /// word, see [`WorkerLane::attach_running`]).
    Running,
    /// Nowhere: the upstream left the lane (cancelled), or waits in an
    /// overflow.
    No,
}

/// Attaches `cont` to a queued entry's state word (one without a
/// continuation: the caller attaches at most one per upstream task).
fn attach_word(state: &AtomicU64, cont: &ContRef) -> AttachTo {
    match state.compare_exchange(QUEUED, cont.addr(), Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => AttachTo::Queued,
        Err(RUNNING) => AttachTo::Running,
        Err(_) => AttachTo::No,
    }
}

/// A worker's `cont` word while it runs lane task `id` with nothing
/// attached (ids stay below 2^62). Zero: no lane task; an address: an
/// attached record, owned by the word.
#[inline(always)]
fn running_word(id: u64) -> u64 {
    (id << 2) | 1
}

/// Pauses a worker waits after a lane task that was its level's newest
/// entry (see [`WorkerLane::pause_if_newest`]): ~0.5 us on the AMD EPYC VM
/// it was tuned on (~35 ns a pause), ~0.15 us on an Intel Xeon VM (9.6 ns;
/// 0, 56 and 200 there did not close W6's gap, PERFORMANCE.md, session 37).
const NEWEST_PAUSES: u32 = 16;

/// The pause of [`WorkerLane::pause_if_newest`], out of the lane loop.
#[cold]
#[inline(never)]
fn pause_after_newest() {
    for _ in 0..NEWEST_PAUSES {
        std::hint::spin_loop();
    }
}

/// How long a worker waits after a take that lost its entry to another
/// worker's pop (`Take::Lost`), when it lost one within its last
/// [`LOST_POPS_CLOSE`] claims too (see [`WorkerLane::after_lost_pop`]).
///
/// Two workers taking short tasks from one level pass the level's head
/// between their cores at every take, and each lost compare-and-swap pulls
/// it back once more. On the Intel VM of session 38 (a cache line's round
/// trip between the vCPUs ~150 ns), two workers draining a backlog of empty
/// tasks took 190-215 ns per task where one alone took 57 (`btm_bench
/// backlog 10000`). With the loser out of the way for about a microsecond,
/// the winner takes the next entries with the head in its cache: 184 -> 83
/// ns per task; `btm_add_tasks`' W1 at 10k 129 -> 66, W6 at 1M 136 -> 97,
/// W1 at 1M 59 -> 51 (PERFORMANCE.md, session 38).
const LOST_POP_BACKOFF: std::time::Duration = std::time::Duration::from_micros(1);

/// Claims within which a second lost pop makes a worker back off (see
/// [`LOST_POP_BACKOFF`]). Backing off at every lost pop cost two workers
/// taking ~250 ns tasks 6-11% (`btm_bench backlog 10000` with
/// `BTM_BENCH_SPIN=300`: 240 -> 255-262 ns per task): they lose a pop now
/// and then, and a microsecond out is several tasks. With the window, 243
/// -> 246; within 2 claims the empty tasks' case stayed bimodal, within 8
/// the 250 ns one lost 4%.
const LOST_POPS_CLOSE: u64 = 4;

/// The wait of [`LOST_POP_BACKOFF`], out of the lane loop. Timed rather
/// than counted in pauses, whose cost differs fourfold between CPUs (10 ns
/// on the Intel VM of session 37, ~35 on the AMD EPYC VMs before).
#[cold]
#[inline(never)]
fn back_off_after_lost_pop() {
    let start = std::time::Instant::now();
    loop {
        for _ in 0..8 {
            std::hint::spin_loop();
        }
        if start.elapsed() >= LOST_POP_BACKOFF {
            return;
        }
    }
}

/// No task in the locked ready queue (see [`Lane::locked_top`]).
pub(crate) const NO_PRIORITY: i64 = i64::MIN;

/// Keeps a value on its own cache lines (two, for adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One line per slot: the host writing the next slot does not take the
/// line of the one a worker is claiming.
#[repr(align(64))]
struct Slot {
    /// Vyukov's sequence number, stored minus the slot's index so that a
    /// zeroed slot is a free one (the level's memory is touched on use).
    seq: AtomicU64,
    id: AtomicU64,
    state: AtomicU64,
    job: UnsafeCell<MaybeUninit<Job>>,
    /// The lane's `epoch` when the entry was published by a batch's end or
    /// moved from the overflow by [`Lane::refill`], else [`NO_EPOCH`]
    /// (written with the entry, before its sequence number): a worker that
    /// pops it and sees `epoch` moved since its take began need not look
    /// for a better entry published meanwhile if the entry is older than
    /// the epoch its take began in (see `Lane::take`).
    epoch: AtomicU64,
}

/// [`Slot::epoch`] of an entry published by an add (the conservative
/// value: the worker looks for a better entry).
const NO_EPOCH: u64 = u64::MAX;

impl Slot {
    /// True if the slot after `claimed` (a slot whose entry was claimed and
    /// released) is still free in the lap of that entry: its stored number
    /// is even (free or released) and below the claimed slot's, which its
    /// release moved to the next lap's base (a released next slot has
    /// reached the same base; a free one is a lap behind). (A slot's stored
    /// number, its sequence number minus its index, is a lap's base, a
    /// multiple of `CAP`, plus 0 while free, 1 while published, `CAP` once
    /// released.)
    ///
    /// # Safety
    /// `claimed` and the slot after it lie in one live level mapping.
    #[inline(always)]
    unsafe fn free_after(claimed: *const Slot) -> bool {
        // SAFETY: the caller's contract.
        let (this, next) = unsafe { (&*claimed, &*claimed.add(1)) };
        let n = next.seq.load(Ordering::Relaxed);
        n & 1 == 0 && n < this.seq.load(Ordering::Relaxed) & !1
    }

    /// The sequence number of this slot, at ring position `pos`.
    #[inline(always)]
    fn seq(&self, pos: u64) -> u64 {
        self.seq.load(Ordering::Acquire).wrapping_add(pos % CAP)
    }

    #[inline(always)]
    fn set_seq(&self, pos: u64, seq: u64) {
        self.seq.store(seq.wrapping_sub(pos % CAP), Ordering::Release);
    }

    /// Writes this slot, the free one at ring position `pos`, without
    /// advancing the level's tail (the caller stores it, past the slots it
    /// filled): a queued entry, or for `None` a cancelled one (an overflow
    /// entry cancelled before it moved), which workers pop and skip;
    /// published unless `publish` is false (see [`Level::publish`]), with
    /// `epoch` (see [`Slot::epoch`]).
    #[inline(always)]
    fn fill(&self, pos: u64, id: u64, job: Option<Job>, publish: bool, epoch: u64) {
        self.id.store(id, Ordering::Relaxed);
        self.epoch.store(epoch, Ordering::Relaxed);
        match job {
            Some(job) => {
                self.state.store(QUEUED, Ordering::Relaxed);
                // SAFETY: the slot is free (its sequence number says so)
                // and only the producer, which holds the state lock, writes
                // it now.
                unsafe { (*self.job.get()).write(job) };
            }
            None => self.state.store(CANCELLED, Ordering::Relaxed),
        }
        if publish {
            self.set_seq(pos, pos + 1);
        }
    }
}

/// One priority's queue at a time (see [`Lane::reassign`]): a bounded ring (single producer under the state
/// lock, many consumers) and, behind it, an overflow that only the lock
/// holder touches.
///
/// Positions number the entries in order. Those below `tail` are in the
/// ring; `tail .. tail + overflow.len()` wait in the overflow (`None` for
/// one cancelled there), and move into the ring at their position.
pub(crate) struct Level {
    /// Its priority: set when it is made, and changed only by
    /// [`Lane::reassign`] (under the state lock, with the level empty and
    /// no worker taking an entry or giving one back); workers read it
    /// relaxed, and a take that spans a change sees `epoch` move.
    priority: AtomicI32,
    head: Padded<AtomicU64>,
    tail: Padded<AtomicU64>,
    /// `CAP` slots in a zeroed mapping of their own (`pages::map`): its
    /// pages are touched as entries use them.
    slots: std::ptr::NonNull<Slot>,
    /// What only the producer (the lock holder) touches, on lines of its
    /// own: workers read `slots` and `priority` at every take.
    producer: Padded<UnsafeCell<Producer>>,
    /// True while entries wait in the overflow, for workers (which find
    /// an empty ring with a waiting overflow and come to the lock to move
    /// it). Stored only when it changes, so that its line stays in the
    /// workers' caches while the host adds behind a full ring.
    ///
    /// An entry moves from the overflow into the ring before the flag
    /// clears (release), so a worker that reads the flag (acquire) and then
    /// the ring sees a waiting entry in one or the other; read the other
    /// way round, the ring could be seen before the move and the flag
    /// after it (loom model 8, `tests/loom_lane.rs`).
    overflowing: Padded<AtomicBool>,
}

#[derive(Default)]
struct Producer {
    /// Entries waiting for room in the ring: task ids with their jobs
    /// (`None` once cancelled).
    overflow: VecDeque<(u64, Option<Job>)>,
    /// Overflow entries cancelled since [`Level::compact_overflow`] last
    /// looked (some may have moved into the ring since): it looks again
    /// once they could be half of the overflow.
    cancels: usize,
    /// The first position of the level's current priority (see
    /// [`Lane::reassign`]): 0 unless it was reassigned.
    since: u64,
}

/// Cancelled overflow entries at least before [`Level::compact_overflow`]
/// looks for them (a smaller overflow is moved through the ring soon).
const COMPACT_MIN: usize = 4096;

// SAFETY: a slot's job is written by the producer before the release of its
// sequence number and taken by exactly one owner (the claim or the cancel,
// decided by a compare-and-swap); `Job` is `Send`.
unsafe impl Sync for Level {}
// SAFETY: as above.
unsafe impl Send for Level {}

impl Level {
    /// Its priority (see the field).
    #[inline(always)]
    pub(crate) fn priority(&self) -> i32 {
        self.priority.load(Ordering::Relaxed)
    }

    fn new(priority: i32) -> Box<Level> {
        // Zeroed memory is an array of free slots (sequence numbers stored
        // relative to the index, state `CANCELLED`, uninitialised jobs).
        let slots = pages::map_populated(SLOTS_BYTES, std::mem::align_of::<Slot>()).cast::<Slot>();
        Box::new(Level {
            priority: AtomicI32::new(priority),
            head: Padded::default(),
            tail: Padded::default(),
            slots,
            producer: Padded::default(),
            overflowing: Padded::default(),
        })
    }

    /// The producer's part; the caller holds the state lock (every access
    /// does).
    #[allow(clippy::mut_from_ref)]
    unsafe fn producer(&self) -> &mut Producer {
        // SAFETY: the caller's contract: one lock holder at a time.
        unsafe { &mut *self.producer.get() }
    }

    /// The overflow; the caller holds the state lock.
    #[allow(clippy::mut_from_ref)]
    unsafe fn overflow(&self) -> &mut VecDeque<(u64, Option<Job>)> {
        // SAFETY: the caller's contract.
        unsafe { &mut self.producer().overflow }
    }

    /// True if entries wait in the overflow (any thread; read it before
    /// the ring, see `overflowing`).
    fn is_overflowing(&self) -> bool {
        self.overflowing.load(Ordering::Acquire)
    }

    /// Publishes whether entries wait in the overflow, after the entries
    /// that left it were published in the ring; the caller holds the state
    /// lock.
    fn set_overflowing(&self, overflowing: bool) {
        if self.overflowing.load(Ordering::Relaxed) != overflowing {
            self.overflowing.store(overflowing, Ordering::Release);
        }
    }

    #[inline]
    fn slot(&self, pos: u64) -> &Slot {
        // SAFETY: the index is below `CAP`; the mapping lives as long as
        // the level.
        unsafe { &*self.slot_ptr(pos) }
    }

    /// The address of [`Level::slot`], with the whole mapping's provenance
    /// (so that the slot after it may be read through it).
    #[inline(always)]
    fn slot_ptr(&self, pos: u64) -> *mut Slot {
        // SAFETY: the index is below `CAP`, inside the mapping.
        unsafe { self.slots.as_ptr().add((pos % CAP) as usize) }
    }

    /// True if the oldest entry is published (maybe a cancelled one). Reads
    /// the head and its slot, not the tail, which the host writes at every
    /// add.
    fn has_entries(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        self.seq(head) == head + 1
    }

    fn seq(&self, pos: u64) -> u64 {
        self.slot(pos).seq(pos)
    }

    fn set_seq(&self, pos: u64, seq: u64) {
        self.slot(pos).set_seq(pos, seq);
    }

    /// Pushes a task; the caller holds the state lock. Returns its
    /// position and whether it went into the ring (else it waits in the
    /// overflow, behind the entries already there). Unless `publish`, no
    /// worker sees a ring entry before [`Level::publish`]; an overflow
    /// entry is published when it moves into the ring.
    #[inline(always)]
    fn push(&self, id: u64, job: Job, publish: bool) -> (u64, bool) {
        let pos = self.tail.load(Ordering::Relaxed);
        // A full ring first (SAFETY, all blocks: the caller holds the
        // state lock).
        if self.seq(pos) != pos {
            return unsafe { self.push_behind(pos, id, job) };
        }
        if !unsafe { self.overflow() }.is_empty() {
            return unsafe { self.push_slow(id, job, publish) };
        }
        self.write_slot(pos, id, job, publish);
        // The line was last written by the worker that claimed that slot a
        // lap earlier: fetched at the add, the host's next lock operation
        // would wait for it.
        pages::prefetch_write(self.slot(pos + PREFETCH_AHEAD));
        (pos, true)
    }

    /// Pushes tasks `first_id .. first_id + n` (task `first_id + i` with
    /// job `job(i)`), published, into the ring while it has room and the
    /// overflow is empty: as [`Level::push`] for each, the tail stored
    /// once; the caller holds the state lock. An overflow waiting first
    /// moves into the ring (up to `max(REFILL_PER_ADD, 2 * n)` entries);
    /// if some of it still waits, nothing goes in and this returns
    /// `(tail, 0)`. Returns the first one's position and how many went in
    /// (the caller pushes the others, behind the overflow, together with
    /// [`Level::push_overflow_run`]).
    #[inline(always)]
    fn push_run(&self, first_id: u64, n: usize, mut job: impl FnMut(usize) -> Job) -> (u64, usize) {
        // SAFETY (all blocks): the caller holds the state lock.
        if !unsafe { self.overflow() }.is_empty() {
            // As `push_slow` does for a single push: the overflow moves
            // into the room the workers made, and the run goes behind it.
            let tail = self.tail.load(Ordering::Relaxed);
            if self.seq(tail) == tail {
                // (Published entries only: this path publishes each.)
                // Twice as many as the batch adds, so that the host keeps
                // the ring filled from the overflow as it adds behind it
                // and the workers need not come to the lock for it: the
                // batch's tasks past the ring then go to the overflow
                // together (`Level::push_overflow_run`). Moving only
                // `REFILL_PER_ADD` here made W1's bulk run 48.1 ns per
                // task against 35.4 (`bench/ab.py`, 41 rounds).
                unsafe { self.refill(REFILL_PER_ADD.max(2 * n), NO_EPOCH) };
            }
            if !unsafe { self.overflow() }.is_empty() {
                return (self.tail.load(Ordering::Relaxed), 0);
            }
        }
        let start = self.tail.load(Ordering::Relaxed);
        let mut pos = start;
        let mut i = 0;
        // Read once (the compiler reloads a field of a `Level` after each
        // atomic store, and the CPU's answer after each prefetch).
        let slots = self.slots;
        let prefetch = pages::write_prefetcher();
        while i < n {
            // SAFETY: as in `Level::slot`.
            let slot = unsafe { &*slots.as_ptr().add((pos % CAP) as usize) };
            if slot.seq(pos) != pos {
                break;
            }
            slot.fill(pos, first_id + i as u64, Some(job(i)), true, NO_EPOCH);
            // As in `push`.
            prefetch(slots.as_ptr().wrapping_add(((pos + PREFETCH_AHEAD) % CAP) as usize));
            pos += 1;
            i += 1;
        }
        // Only the lock holder reads the tail (as in `refill`).
        if i > 0 {
            self.tail.store(pos, Ordering::Release);
        }
        (start, i)
    }

    /// Pushes tasks `first_id .. first_id + n` (task `first_id + i` with
    /// job `job(i)`) into the overflow, behind the entries there, when
    /// [`Level::push_run`] left them (the ring full, or an overflow it
    /// could not move): as [`Level::push`] for each, except that none of
    /// them tries the ring (the next batch's `push_run` moves them); the
    /// caller holds the state lock. Returns the first one's position.
    #[inline(never)]
    fn push_overflow_run(&self, first_id: u64, n: usize, mut job: impl FnMut(usize) -> Job) -> u64 {
        // SAFETY: the caller holds the state lock.
        let overflow = unsafe { self.overflow() };
        let pos = self.tail.load(Ordering::Relaxed) + overflow.len() as u64;
        // (One `extend` of an iterator of known length: the deque writes
        // into its free space without a capacity and wrap-around check per
        // entry, as a `push_back` loop made.)
        overflow.extend((0..n).map(|i| (first_id + i as u64, Some(job(i)))));
        self.set_overflowing(true);
        pos
    }

    /// A push behind an overflow while the ring has room at its tail (what
    /// [`Level::push`] sends here): the overflow moves in first (when
    /// `publish`), then the entry goes into the ring if all of it moved,
    /// else behind what is left.
    ///
    /// # Safety
    /// The caller holds the state lock.
    #[inline(never)]
    unsafe fn push_slow(&self, id: u64, job: Job, publish: bool) -> (u64, bool) {
        if publish {
            // SAFETY: the caller's contract; `publish`: no entry is
            // pushed unpublished.
            unsafe { self.refill(REFILL_PER_ADD, NO_EPOCH) };
        }
        // SAFETY (both blocks): the caller's contract.
        let overflow = unsafe { self.overflow() };
        let pos = self.tail.load(Ordering::Relaxed);
        if overflow.is_empty() && self.seq(pos) == pos {
            self.write_slot(pos, id, job, publish);
            return (pos, true);
        }
        unsafe { self.push_behind(pos, id, job) }
    }

    /// A push that waits in the overflow (the ring's tail at `tail`),
    /// behind the entries there or as its first: from [`Level::push`] when
    /// the ring is full (a function of its own, small, for the adds that
    /// find it so while the workers run behind the host), and from
    /// [`Level::push_slow`] when the overflow did not move in whole.
    ///
    /// # Safety
    /// The caller holds the state lock.
    #[inline(never)]
    unsafe fn push_behind(&self, tail: u64, id: u64, job: Job) -> (u64, bool) {
        // SAFETY: the caller's contract.
        let overflow = unsafe { self.overflow() };
        let pos = tail + overflow.len() as u64;
        overflow.push_back((id, Some(job)));
        self.set_overflowing(true);
        (pos, false)
    }

    /// The id of the last entry pushed since the level got its priority;
    /// the caller holds the state lock.
    fn last_id(&self) -> Option<u64> {
        // SAFETY: the caller's contract.
        if let Some((id, _)) = unsafe { self.overflow() }.back() {
            return Some(*id);
        }
        let tail = self.tail.load(Ordering::Relaxed);
        // SAFETY: as above.
        (tail > unsafe { self.producer() }.since).then(|| self.slot(tail - 1).id.load(Ordering::Relaxed))
    }

    /// Writes a queued entry into the free ring slot at `pos` (the tail)
    /// and advances the tail.
    #[inline(always)]
    fn write_slot(&self, pos: u64, id: u64, job: Job, publish: bool) {
        self.slot(pos).fill(pos, id, Some(job), publish, NO_EPOCH);
        self.tail.store(pos + 1, Ordering::Release);
    }

    /// Moves up to `max` overflow entries into the ring, as it has room,
    /// published with `epoch` (see [`Slot::epoch`]). Returns how many
    /// moved.
    ///
    /// # Safety
    /// The caller holds the state lock, and no entry was pushed
    /// unpublished (a batch published at its end is not being added).
    unsafe fn refill(&self, max: usize, epoch: u64) -> usize {
        // SAFETY: the caller's contract.
        let overflow = unsafe { self.overflow() };
        let start = self.tail.load(Ordering::Relaxed);
        // Read once (as in `push_run`: the compiler reloads a field of a
        // `Level` after each atomic store).
        let slots = self.slots;
        // SAFETY: as in `Level::slot`.
        let slot = |pos: u64| unsafe { &*slots.as_ptr().add((pos % CAP) as usize) };
        // Each entry's job taken out where it is, leaving `None` (the
        // drain after the loop then only checks each entry's tag): a
        // `pop_front` per entry, each with its own wrap-around and length
        // update, and the slots' address reloaded after each store, cost
        // the worker ~25 instructions more per entry moved
        // (PERFORMANCE.md, session 24).
        let want = max.min(overflow.len());
        let mut pos = start;
        let (a, b) = overflow.as_mut_slices();
        let in_a = want.min(a.len());
        let mut fill = |entries: &mut [(u64, Option<Job>)]| {
            for e in entries {
                let slot = slot(pos);
                if slot.seq(pos) != pos {
                    return false;
                }
                slot.fill(pos, e.0, e.1.take(), true, epoch);
                pos += 1;
            }
            true
        };
        // The second slice only once the first moved whole: entries must
        // enter the ring in order (and the drain below removes a prefix).
        if fill(&mut a[..in_a]) {
            fill(&mut b[..want - in_a]);
        }
        if pos == start {
            return 0;
        }
        overflow.drain(..(pos - start) as usize);
        // Only the lock holder reads the tail: it is stored once, past
        // the slots filled (each published by its own sequence number).
        self.tail.store(pos, Ordering::Release);
        if overflow.is_empty() && overflow.capacity() > OVERFLOW_KEEP {
            *overflow = VecDeque::new();
        }
        self.set_overflowing(!overflow.is_empty());
        (pos - start) as usize
    }

    /// Publishes the entry pushed unpublished at `pos`, as published at
    /// `epoch` (see [`Slot::epoch`]).
    fn publish(&self, pos: u64, epoch: u64) {
        let slot = self.slot(pos);
        slot.epoch.store(epoch, Ordering::Relaxed);
        slot.set_seq(pos, pos + 1);
    }

    /// Pops the oldest entry's position (the slot stays reserved until
    /// [`Level::release`]), trying again when another pop came first: for
    /// the lock holder and the tests (a worker's take backs off instead,
    /// see [`Level::pop_first`]).
    fn pop(&self) -> Option<u64> {
        loop {
            if let Ok(popped) = self.pop_first() {
                return popped;
            }
        }
    }

    /// Pops the oldest entry's position, as a worker's take does: `Err(())`
    /// if another worker popped the entry it found first (the head moved
    /// before its compare-and-swap), for the worker to back off before it
    /// looks again (see [`Take::Lost`]).
    #[inline(always)]
    fn pop_first(&self) -> Result<Option<u64>, ()> {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let seq = self.seq(pos);
            if seq == pos + 1 {
                #[cfg(test)]
                tests::before_head_cas();
                // (Strong: a spurious failure is no other worker's pop.)
                return match self.head.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => Ok(Some(pos)),
                    Err(_) => Err(()),
                };
            } else if seq <= pos {
                return Ok(None);
            } else {
                pos = self.head.load(Ordering::Relaxed);
            }
        }
    }

    fn release(&self, pos: u64) {
        self.set_seq(pos, pos + CAP);
    }

    /// Pops and releases the cancelled entries that begin the ring (tasks
    /// stopped, moved to the locked path, or drained while queued), as
    /// the workers' takes would (`Take::Cancelled`): a level holding only
    /// such entries is empty then. Workers pass over them only from their
    /// lane loop, which they enter only while a lane task is live: left
    /// there, they kept the level from being given to a new priority
    /// (`Lane::empty_level`) for good.
    ///
    /// # Safety
    /// The caller holds the state lock and no worker is in its lane loop
    /// (nothing else pops).
    unsafe fn skip_cancelled(&self) {
        loop {
            let head = self.head.load(Ordering::Relaxed);
            // A published entry (not a free slot, nor one a batch pushed
            // unpublished), unclaimed and cancelled.
            if self.seq(head) != head + 1 || is_queued_word(self.slot(head).state.load(Ordering::Acquire)) {
                return;
            }
            self.head.store(head + 1, Ordering::Relaxed);
            self.release(head);
        }
    }

    /// Drops the cancelled entries that end the overflow (no later entry
    /// keeps their positions: the next push takes the first of them), so
    /// that tasks added and stopped while every worker is busy (the ring
    /// full, the overflow never moving) do not pile up there, 40 bytes
    /// each, until the workers come back to pass over them.
    ///
    /// # Safety
    /// The caller holds the state lock.
    unsafe fn trim_overflow(&self) {
        // SAFETY: the caller's contract.
        let overflow = unsafe { self.overflow() };
        while matches!(overflow.back(), Some((_, None))) {
            overflow.pop_back();
        }
        if overflow.is_empty() {
            if overflow.capacity() > OVERFLOW_KEEP {
                *overflow = VecDeque::new();
            }
            self.set_overflowing(false);
        } else if overflow.capacity() > OVERFLOW_KEEP && overflow.len() * 4 < overflow.capacity() {
            overflow.shrink_to(overflow.len() * 2);
        }
    }

    /// Drops the overflow's cancelled entries once they are most of it,
    /// so that a host that stops older tasks while keeping newer ones
    /// queued behind busy workers does not keep an entry for each: the
    /// live entries move up (keeping their order) to the positions their
    /// new index gives, and `moved(id, old, new)` is called for each whose
    /// position changed, for the caller to update its task record.
    /// Amortised O(1) per cancel: it looks only after as many cancels as
    /// half the overflow.
    ///
    /// # Safety
    /// The caller holds the state lock and is not adding a batch (every
    /// overflow entry's task record holds its position).
    unsafe fn compact_overflow(&self, mut moved: impl FnMut(u64, u64, u64)) {
        // SAFETY: the caller's contract.
        let producer = unsafe { self.producer() };
        if producer.cancels < COMPACT_MIN || producer.cancels * 2 < producer.overflow.len() {
            return;
        }
        producer.cancels = 0;
        let overflow = &mut producer.overflow;
        let dead = overflow.iter().filter(|e| e.1.is_none()).count();
        if dead * 2 < overflow.len() {
            return;
        }
        let tail = self.tail.load(Ordering::Relaxed);
        let mut kept = 0u64;
        for (i, (id, job)) in overflow.iter().enumerate() {
            if job.is_some() {
                if kept != i as u64 {
                    moved(*id, tail + i as u64, tail + kept);
                }
                kept += 1;
            }
        }
        overflow.retain(|e| e.1.is_some());
        if overflow.is_empty() {
            *overflow = VecDeque::new();
        } else if overflow.capacity() > OVERFLOW_KEEP && overflow.len() * 4 < overflow.capacity() {
            overflow.shrink_to(overflow.len() * 2);
        }
        self.set_overflowing(!overflow.is_empty());
    }

    /// The overflow entry at `pos`, if `pos` is in the overflow.
    ///
    /// # Safety
    /// The caller holds the state lock.
    #[allow(clippy::mut_from_ref)]
    unsafe fn overflow_entry(&self, pos: u64) -> Option<&mut (u64, Option<Job>)> {
        let tail = self.tail.load(Ordering::Relaxed);
        let i = usize::try_from(pos.checked_sub(tail)?).ok()?;
        // SAFETY: the caller's contract.
        unsafe { self.overflow() }.get_mut(i)
    }

    /// Cancels the entry at `pos` if it still holds task `id`, unclaimed;
    /// the caller holds the state lock. Returns its job.
    fn cancel(&self, pos: u64, id: u64) -> Option<Job> {
        // SAFETY: the caller holds the state lock (this function's
        // contract, as for every producer-side call).
        if let Some((eid, job)) = unsafe { self.overflow_entry(pos) } {
            if *eid != id {
                return None;
            }
            let job = job.take();
            // SAFETY: the caller holds the state lock.
            unsafe {
                self.producer().cancels += 1;
                self.trim_overflow();
            }
            return job;
        }
        let slot = self.slot(pos);
        if slot.id.load(Ordering::Relaxed) != id {
            return None;
        }
        let s = leave_queued(&slot.state, CANCELLED).ok()?;
        drop_attached(s);
        // SAFETY: the compare-and-swap made this call the job's only owner.
        Some(unsafe { (*slot.job.get()).assume_init_read() })
    }

    /// True if the entry at `pos` still holds task `id`, unclaimed; the
    /// caller holds the state lock.
    fn is_queued(&self, pos: u64, id: u64) -> bool {
        // SAFETY: the caller holds the state lock (this function's contract).
        if let Some((eid, job)) = unsafe { self.overflow_entry(pos) } {
            return *eid == id && job.is_some();
        }
        let slot = self.slot(pos);
        slot.id.load(Ordering::Relaxed) == id && is_queued_word(slot.state.load(Ordering::Acquire))
    }

    /// The ring slot at `pos` if it still holds task `id` (not an overflow
    /// entry, not reused); the caller holds the state lock.
    #[inline(always)]
    fn ring_slot_of(&self, pos: u64, id: u64) -> Option<&Slot> {
        // SAFETY: the caller holds the state lock.
        if unsafe { self.overflow_entry(pos) }.is_some() {
            return None;
        }
        let slot = self.slot(pos);
        (slot.id.load(Ordering::Relaxed) == id).then_some(slot)
    }

    /// Attaches `cont` to the ring entry at `pos` if it still holds task
    /// `id`, queued; the caller holds the state lock.
    fn attach(&self, pos: u64, id: u64, cont: &ContRef) -> AttachTo {
        self.ring_slot_of(pos, id).map_or(AttachTo::No, |slot| attach_word(&slot.state, cont))
    }

    /// Marks the ring entry at `pos` linked if it still holds task `id`,
    /// queued with nothing attached; true if it is marked (now or by an
    /// earlier fan-in, so a second call answers the same). The caller holds
    /// the state lock.
    fn mark_linked(&self, pos: u64, id: u64) -> bool {
        self.ring_slot_of(pos, id).is_some_and(|slot| {
            matches!(
                slot.state.compare_exchange(QUEUED, LINKED, Ordering::AcqRel, Ordering::Acquire),
                Ok(_) | Err(LINKED)
            )
        })
    }

    /// Ring entries marked linked (a diagnostic for tests; the caller
    /// holds the state lock).
    fn marked(&self) -> usize {
        let (head, tail) = (self.head.load(Ordering::Acquire), self.tail.load(Ordering::Relaxed));
        (head..tail).filter(|&pos| self.slot(pos).state.load(Ordering::Acquire) == LINKED).count()
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        // Entries nobody claimed or cancelled (a manager dropped without a
        // shut down): their jobs are freed here.
        let (head, tail) = (*self.head.0.get_mut(), *self.tail.0.get_mut());
        for pos in head..tail {
            let slot = self.slot(pos);
            let s = slot.state.load(Ordering::Relaxed);
            if is_queued_word(s) {
                // SAFETY: unclaimed and uncancelled: the job is still here.
                drop(unsafe { (*slot.job.get()).assume_init_read() });
                drop_attached(s);
            }
        }
        // SAFETY: mapped by `Level::new` with these arguments; no slot is
        // used any more.
        unsafe { pages::unmap((self.slots.as_ptr() as usize, SLOTS_BYTES), std::mem::align_of::<Slot>()) };
    }
}

/// Entries per segment of a worker's outcome queue: one word each (the
/// task's id and flags), 32 KB per segment.
const SEGMENT: usize = 4096;
/// Entries per segment of a worker's side queue (outcomes other than a
/// completion without a result, 32 bytes each).
const SIDE_SEGMENT: usize = 256;

struct Segment<T, const N: usize> {
    next: AtomicPtr<Segment<T, N>>,
    slots: [UnsafeCell<MaybeUninit<T>>; N],
}

impl<T, const N: usize> Segment<T, N> {
    fn new() -> *mut Segment<T, N> {
        let layout = std::alloc::Layout::new::<Segment<T, N>>();
        // SAFETY: a non-zero-sized layout.
        let p = unsafe { std::alloc::alloc(layout) }.cast::<Segment<T, N>>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: allocated above; the slots may stay uninitialised.
        unsafe { std::ptr::addr_of_mut!((*p).next).write(AtomicPtr::new(std::ptr::null_mut())) };
        p
    }
}

/// The consumer's end of a segment queue.
#[derive(Default)]
struct Popped {
    count: AtomicU64,
    /// The producer's count as last read (entries below it are published).
    seen: UnsafeCell<u64>,
}

/// An unbounded queue of segments, single producer (a worker), single
/// consumer (whoever holds the state lock). Unbounded so that a worker
/// never waits for the host to poll, nor takes the lock to make room (what
/// it holds is what the locked path would keep as finished records and
/// events anyway).
struct SegQueue<T, const N: usize> {
    /// Entries pushed and popped so far.
    pushed: Padded<AtomicU64>,
    popped: Padded<Popped>,
    /// The producer's segment and the consumer's (each touched by its side
    /// only; the consumer follows `next` to the producer's).
    tail: UnsafeCell<*mut Segment<T, N>>,
    head: UnsafeCell<*mut Segment<T, N>>,
}

impl<T, const N: usize> SegQueue<T, N> {
    fn new() -> Self {
        let s = Segment::new();
        SegQueue {
            pushed: Padded::default(),
            popped: Padded::default(),
            tail: UnsafeCell::new(s),
            head: UnsafeCell::new(s),
        }
    }

    /// Producer side.
    #[inline(always)]
    fn push(&self, v: T) {
        let n = self.pushed.load(Ordering::Relaxed);
        let i = (n % N as u64) as usize;
        // SAFETY: `tail` is the producer's own; a full segment is followed
        // by a new one, linked before the first entry in it is published.
        unsafe {
            let seg = if i == 0 { self.tail_segment(n) } else { *self.tail.get() };
            (*(*seg).slots[i].get()).write(v);
        }
        self.pushed.store(n + 1, Ordering::Release);
    }

    /// Consumer side (the caller holds the state lock).
    #[inline(always)]
    fn pop(&self) -> Option<T> {
        let n = self.popped.count.load(Ordering::Relaxed);
        // SAFETY: `seen` is the consumer's own (the caller holds the lock).
        let seen = unsafe { &mut *self.popped.seen.get() };
        if n == *seen {
            // Read the producer's count (its line) once per run of
            // entries, not once per entry.
            *seen = self.pushed.load(Ordering::Acquire);
            if n == *seen {
                return None;
            }
        }
        let i = (n % N as u64) as usize;
        // SAFETY: entry `n` was published (acquire above); the consumer's
        // segment is freed once the producer moved on from it (it linked
        // the next one before publishing entry `n`).
        let v = unsafe {
            let seg = if i == 0 { self.head_segment(n) } else { *self.head.get() };
            (*(*seg).slots[i].get()).assume_init_read()
        };
        self.popped.count.store(n + 1, Ordering::Release);
        Some(v)
    }

    fn is_empty(&self) -> bool {
        self.popped.count.load(Ordering::Relaxed) == self.pushed.load(Ordering::Acquire)
    }

    /// The producer's segment for entry `n`, the first of a segment: past
    /// the first segment, a new one linked behind the full one. Out of
    /// line, so that the other entries' push tests one index.
    ///
    /// # Safety
    /// Producer side only, for the entry about to be pushed.
    #[cold]
    #[inline(never)]
    unsafe fn tail_segment(&self, n: u64) -> *mut Segment<T, N> {
        // SAFETY: `tail` is the producer's own.
        unsafe {
            let seg = *self.tail.get();
            if n == 0 {
                return seg;
            }
            let next = Segment::new();
            (*seg).next.store(next, Ordering::Release);
            *self.tail.get() = next;
            next
        }
    }

    /// The consumer's segment for entry `n`, the first of a segment: past
    /// the first segment, the next one (the one before is freed: the
    /// producer linked the next one before publishing entry `n`).
    ///
    /// # Safety
    /// Consumer side only, for a published entry `n`.
    #[cold]
    #[inline(never)]
    unsafe fn head_segment(&self, n: u64) -> *mut Segment<T, N> {
        // SAFETY: `head` is the consumer's own; see above.
        unsafe {
            let seg = *self.head.get();
            if n == 0 {
                return seg;
            }
            let next = (*seg).next.load(Ordering::Acquire);
            drop(Box::from_raw(seg));
            *self.head.get() = next;
            next
        }
    }
}

impl<T, const N: usize> Drop for SegQueue<T, N> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
        // SAFETY: every entry was popped: the consumer's segment is the
        // producer's, the last one.
        drop(unsafe { Box::from_raw(*self.head.get()) });
    }
}

// SAFETY: single producer / single consumer, as documented on `SegQueue`;
// the entries are `Send`.
unsafe impl<T: Send, const N: usize> Sync for SegQueue<T, N> {}
// SAFETY: as above.
unsafe impl<T: Send, const N: usize> Send for SegQueue<T, N> {}

/// Set in an outcome queue entry by
/// [`WorkerLane::push_outcome_cont_claimed`] (task ids stay below 2^62).
const CONT_CLAIMED: u64 = 1 << 63;
/// Set in an outcome queue entry whose outcome waits in the side queue
/// (any outcome but a completion without a result).
const SIDE: u64 = 1 << 62;

/// A worker's outcomes, in the order it left them. Most are completions
/// without a result: such an outcome is one word in the queue, the task's
/// id (8 bytes of fresh memory per task in W1, against 40 for an id with
/// an `Outcome` beside it). Any other outcome waits in the side queue, and
/// its word says so.
struct Outcomes {
    words: SegQueue<u64, SEGMENT>,
    side: SegQueue<Outcome, SIDE_SEGMENT>,
}

impl Outcomes {
    fn new() -> Outcomes {
        Outcomes { words: SegQueue::new(), side: SegQueue::new() }
    }

    /// Producer side: `id` with its flags (`CONT_CLAIMED`).
    #[inline(always)]
    fn push(&self, id: u64, o: Outcome) {
        match o {
            Outcome::Completed(None) => self.words.push(id),
            o => {
                // The side entry is published before the word that
                // points the consumer to it.
                self.side.push(o);
                self.words.push(id | SIDE);
            }
        }
    }

    /// Consumer side (the caller holds the state lock): the next entry's
    /// word (the task's id with its flags), to be given to
    /// [`Outcomes::outcome_of`] before the next pop if it has the `SIDE`
    /// flag.
    #[inline(always)]
    fn pop_word(&self) -> Option<u64> {
        self.words.pop()
    }

    /// The outcome of word `w` (from [`Outcomes::pop_word`]): taken from
    /// the side queue if `w` has the `SIDE` flag.
    #[inline(always)]
    fn outcome_of(&self, w: u64) -> Outcome {
        if w & SIDE == 0 {
            return Outcome::Completed(None);
        }
        self.side.pop().expect("a side outcome is published before its word")
    }

    fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// A level, as the state keeps it for its adds: valid while the lane lives
/// (levels are freed with the lane, which the state holds).
#[derive(Copy, Clone)]
pub(crate) struct LevelRef(std::ptr::NonNull<Level>);

// SAFETY: a shared reference to a `Sync` level, used under the state lock.
unsafe impl Send for LevelRef {}
// SAFETY: as above.
unsafe impl Sync for LevelRef {}

impl LevelRef {
    /// The id of the last entry pushed since the level got its current
    /// priority, if any; the caller holds the state lock (which every push
    /// takes).
    pub(crate) fn last_id(self) -> Option<u64> {
        // SAFETY: levels live as long as the lane (see the type's doc);
        // the caller holds the state lock.
        unsafe { self.0.as_ref() }.last_id()
    }

    /// See [`Level::push`]; the caller holds the state lock.
    #[inline(always)]
    pub(crate) fn push(self, id: u64, job: Job, publish: bool) -> (u64, bool) {
        // SAFETY: levels live as long as the lane (see the type's doc).
        unsafe { self.0.as_ref() }.push(id, job, publish)
    }

    /// See [`Level::push_overflow_run`]; the caller holds the state lock.
    pub(crate) fn push_overflow_run(self, first_id: u64, n: usize, job: impl FnMut(usize) -> Job) -> u64 {
        // SAFETY: levels live as long as the lane (see the type's doc).
        unsafe { self.0.as_ref() }.push_overflow_run(first_id, n, job)
    }

    /// Cancels the entry at `pos` that a worker popped and gives back
    /// ([`Take::GiveBack`]) if it still holds task `id`, queued, and frees
    /// its slot; the caller (that worker) holds the state lock. Returns its
    /// job, or `None` if a lock holder cancelled it meanwhile.
    pub(crate) fn give_back(self, pos: u64, id: u64) -> Option<Job> {
        // SAFETY: levels live as long as the lane (see the type's doc).
        let level = unsafe { self.0.as_ref() };
        let job = level.cancel(pos, id);
        level.release(pos);
        job
    }

    /// See [`Level::push_run`]; the caller holds the state lock.
    #[inline(always)]
    pub(crate) fn push_run(self, first_id: u64, n: usize, job: impl FnMut(usize) -> Job) -> (u64, usize) {
        // SAFETY: levels live as long as the lane (see the type's doc).
        unsafe { self.0.as_ref() }.push_run(first_id, n, job)
    }
}

/// A worker's part of the lane, shared with the state (under the lock).
pub(crate) struct WorkerLane {
    claiming: Padded<AtomicBool>,
    /// The id of the last lane task this worker claimed (stored before the
    /// claim, so a stop that sees the claim finds it here).
    current: AtomicU64,
    /// The id of a task of this worker that was stopped (both paths):
    /// `TaskContext::is_stopped` compares it with its own id.
    pub(crate) stop_id: Padded<AtomicU64>,
    /// Lane tasks claimed so far (written by the worker only).
    claims: AtomicU64,
    /// What is attached to the lane task this worker runs (see
    /// `running_word`), set before each claim.
    cont: AtomicU64,
    /// Continuations claimed so far (written by the worker only).
    cont_claims: AtomicU64,
    /// On the lane and not running a task (cleared before each claim).
    looking: AtomicBool,
    /// The slot this worker last claimed from (written by the worker only;
    /// see [`WorkerLane::pause_if_newest`]).
    claimed_slot: AtomicPtr<Slot>,
    /// One more than `claims` at the worker's last lost pop (0: none yet),
    /// see [`WorkerLane::after_lost_pop`]; only the worker touches it.
    lost_at: AtomicU64,
    outcomes: Outcomes,
    /// A popped entry is on its way back to the locked path
    /// (`Take::GiveBack`): set before the take's claim ends, cleared after
    /// the lock section that moved it (see [`WorkerLane::is_quiet`]).
    giving_back: AtomicBool,
    /// The worker's thread, ended inside host code, let go of its manager
    /// (the last step of `Manager::worker_ended`).
    ended_done: AtomicBool,
    /// The task hooks the worker's running job holds a reference to (null:
    /// none), so that a thread ended inside the task lets go of it (see
    /// `Manager::worker_ended`). Only the worker writes it.
    hooks_held: AtomicPtr<crate::engine::TaskHooks>,
}

impl WorkerLane {
    pub(crate) fn new() -> WorkerLane {
        WorkerLane {
            claiming: Padded::default(),
            current: AtomicU64::new(0),
            stop_id: Padded::default(),
            claims: AtomicU64::new(0),
            cont: AtomicU64::new(0),
            cont_claims: AtomicU64::new(0),
            looking: AtomicBool::new(false),
            claimed_slot: AtomicPtr::new(std::ptr::null_mut()),
            lost_at: AtomicU64::new(0),
            outcomes: Outcomes::new(),
            giving_back: AtomicBool::new(false),
            ended_done: AtomicBool::new(false),
            hooks_held: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// See the field `hooks_held` (the worker's own thread only).
    pub(crate) fn hold_hooks(&self, hooks: *const crate::engine::TaskHooks) {
        self.hooks_held.store(hooks.cast_mut(), Ordering::Relaxed);
    }

    /// See the field `hooks_held`.
    pub(crate) fn hooks_held(&self) -> *const crate::engine::TaskHooks {
        self.hooks_held.load(Ordering::Relaxed)
    }

    /// See [`WorkerLane::ended_done`]'s field.
    pub(crate) fn set_ended_done(&self) {
        self.ended_done.store(true, Ordering::Release);
    }

    /// True once the thread, ended inside host code, let go of its
    /// manager.
    pub(crate) fn ended_done(&self) -> bool {
        self.ended_done.load(Ordering::Acquire)
    }

    /// True if the worker is in no take and holds no popped entry on its
    /// way back to the locked path: what a lock holder needs before it
    /// gives an empty level to another priority while the worker is in
    /// its lane loop (`Lane::reassign`). The caller read the level empty
    /// (its head at its tail) and then fenced: a worker that popped the
    /// level's last entry had announced its claim before its own fence and
    /// that pop, so this sees the claim, or else the give-back flag stored
    /// before the claim's release.
    pub(crate) fn is_quiet(&self) -> bool {
        !self.claiming.load(Ordering::Acquire) && !self.giving_back.load(Ordering::Relaxed)
    }

    /// The give-back of `Take::GiveBack` is done (its lock section ended).
    pub(crate) fn gave_back(&self) {
        self.giving_back.store(false, Ordering::Relaxed);
    }

    /// True while the worker is on the lane without a task.
    pub(crate) fn is_looking(&self) -> bool {
        self.looking.load(Ordering::Relaxed)
    }

    /// Marks the worker as looking for a lane task (or not).
    pub(crate) fn set_looking(&self, looking: bool) {
        self.looking.store(looking, Ordering::Relaxed);
    }

    /// Before a worker looks at the lane again after a task it claimed
    /// from a slot: pauses a moment (16 pauses, ~0.5 us here) if the slot
    /// after it is still free in the claimed entry's lap, that is if the
    /// task was its level's newest entry and still is. Not if that entry
    /// was published, nor if it was published and taken already (by
    /// another worker: two workers draining a backlog take alternate
    /// slots, and the first form of this check, which paused whenever the
    /// next slot held no published entry, paused each on most tasks:
    /// `btm_bench backlog` with ~300 ns tasks took 258 ns per task against
    /// 197 now; a review found it in session 30). A worker that looks at once would read the slot the host
    /// writes next, and workers that keep taking each entry as it is
    /// published pull every slot line from the host just before the host
    /// writes it (W6's workers do so on the levels they keep empty, and
    /// the host's adds slowed to match). With the pause, interleaved rounds
    /// against the build before: W6 / W1 1.29 -> 1.08 at 100k and 1.27 ->
    /// 1.12 at 1M, W1, W2a and W4 unchanged (PERFORMANCE.md, session 29).
    /// The check before the take, inlined, with the pause out of line:
    /// after the task, or out of line, it cost the worker 14-17
    /// instructions per task instead of 10 (registers live across calls).
    #[inline(always)]
    pub(crate) fn pause_if_newest(&self) {
        if self.claimed_newest() {
            pause_after_newest();
        }
    }

    /// True if the slot after this worker's last claim is still free in
    /// that claim's lap (what [`WorkerLane::pause_if_newest`] pauses for).
    #[inline(always)]
    fn claimed_newest(&self) -> bool {
        let claimed = self.claimed_slot.load(Ordering::Relaxed);
        // SAFETY: a slot of a level's mapping (the pointer derived from the
        // mapping's, not from a reference to the one slot), which lives as
        // long as the lane, and the slot after it in the same mapping (the
        // ring's last is followed by one never written: a free slot, so the
        // worker pauses there once a lap); a stale pointer only reads
        // sequence numbers.
        !claimed.is_null() && unsafe { Slot::free_after(claimed) }
    }

    /// Ends [`WorkerLane::pause_if_newest`]'s watch of the last claim.
    pub(crate) fn forget_claimed_slot(&self) {
        self.claimed_slot.store(std::ptr::null_mut(), Ordering::Relaxed);
    }

    /// What a worker does when its take lost the entry it found to another
    /// worker's pop (`Take::Lost`): if it lost one within its last
    /// [`LOST_POPS_CLOSE`] claims as well (claims, not time: a loss long
    /// ago with fewer claims since counts too), the workers are taking
    /// entries faster than the level's head moves between their cores,
    /// and it backs off ([`LOST_POP_BACKOFF`]); otherwise it looks again
    /// at once. It counts as looking meanwhile (see
    /// [`WorkerLane::is_looking`]), as after a take that found nothing:
    /// it is on the lane without a task (the next take clears it).
    #[cold]
    #[inline(never)]
    pub(crate) fn after_lost_pop(&self) {
        self.looking.store(true, Ordering::Relaxed);
        if self.lost_again() {
            back_off_after_lost_pop();
        }
    }

    /// Records a lost pop; true if the worker lost another within its last
    /// [`LOST_POPS_CLOSE`] claims.
    fn lost_again(&self) -> bool {
        let c = self.claims.load(Ordering::Relaxed) + 1;
        let last = self.lost_at.load(Ordering::Relaxed);
        self.lost_at.store(c, Ordering::Relaxed);
        last != 0 && c - last < LOST_POPS_CLOSE
    }

    /// Lane tasks this worker claimed so far.
    pub(crate) fn claims(&self) -> u64 {
        self.claims.load(Ordering::Acquire)
    }

    /// Continuations this worker claimed so far.
    pub(crate) fn cont_claims(&self) -> u64 {
        self.cont_claims.load(Ordering::Relaxed)
    }

    /// Asks the worker to stop task `id` if it is running it (or last
    /// tried to claim it: a stop id that is not the running task's is
    /// harmless).
    pub(crate) fn stop_if_current(&self, id: u64) {
        if self.current.load(Ordering::Relaxed) == id {
            self.stop_id.store(id, Ordering::Relaxed);
        }
    }

    /// Attaches `cont` to lane task `id` if this worker runs it and has
    /// not finished it; the caller holds the state lock.
    pub(crate) fn attach_running(&self, id: u64, cont: &ContRef) -> bool {
        self.cont.compare_exchange(running_word(id), cont.addr(), Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// The continuation attached to the lane task this worker just
    /// finished, if any; afterwards nothing can be attached to it.
    #[inline(always)]
    pub(crate) fn take_cont(&self) -> Option<Attached> {
        Attached::from_word(self.cont.swap(0, Ordering::AcqRel))
    }

    /// [`WorkerLane::take_cont`] at the end of a task claimed from a slot,
    /// which may also have been marked linked (see [`LINKED`]).
    #[inline(always)]
    pub(crate) fn take_end(&self) -> End {
        let w = self.cont.swap(0, Ordering::AcqRel);
        if let Some(att) = Attached::from_word(w) {
            return End::Cont(att);
        }
        if w & 2 != 0 {
            End::Linked
        } else {
            End::Plain
        }
    }

    /// True from the claim of a lane task or continuation until its end
    /// (`take_end`, `take_cont`): read by the worker itself, whether it is
    /// inside a lane task.
    pub(crate) fn in_lane_task(&self) -> bool {
        self.cont.load(Ordering::Relaxed) != 0
    }

    /// The lane task or continuation this worker claimed last (the one it
    /// runs while [`WorkerLane::in_lane_task`]).
    pub(crate) fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// Marks lane task `id` as this worker's, before its claim (for a
    /// stop that sees the claim).
    #[inline(always)]
    fn claiming_task(&self, id: u64) {
        self.current.store(id, Ordering::Relaxed);
    }

    /// After the claim of lane task `id` that replaced state word `s`: the
    /// worker's `cont` word says it runs `id`, or holds the continuation
    /// attached to the queued entry. Set only once the claim succeeded, so
    /// that no other worker's word names `id` (a host that sees the claim
    /// before this store finds no word to attach to, and takes the locked
    /// path).
    #[inline(always)]
    fn claimed(&self, id: u64, s: u64) {
        // (`s` is `QUEUED`, `LINKED` or an address: `(id << 2) | s` is
        // `running_word(id)` for the first, and tells the second.)
        debug_assert!(s == QUEUED || s == LINKED || s & 3 == 0);
        self.cont.store(if s > LINKED { s } else { (id << 2) | s }, Ordering::Relaxed);
        // `claims` last, with release: `State::stats` reads it first (with
        // acquire), so that it never counts a claimed continuation as both
        // running and waiting.
        self.claims.store(self.claims.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// The next outcome left by this worker: the task's id, its outcome,
    /// and whether this worker claimed the task's continuation at its
    /// finish (see [`WorkerLane::push_outcome_cont_claimed`]). The caller
    /// holds the state lock.
    #[inline(always)]
    pub(crate) fn pop_outcome(&self) -> Option<(u64, Outcome, bool)> {
        self.pop_word().map(|w| self.decode(w))
    }

    /// [`WorkerLane::pop_outcome`] in two steps, for the poll's common
    /// case: the next entry's word, which is the task's id alone when the
    /// task completed without a result and its worker claimed nothing
    /// after it; any other word must go through [`WorkerLane::decode`]
    /// before the next pop. The caller holds the state lock.
    #[inline(always)]
    pub(crate) fn pop_word(&self) -> Option<u64> {
        self.outcomes.pop_word()
    }

    /// True if `word` (from [`WorkerLane::pop_word`]) is a task's id alone.
    #[inline(always)]
    pub(crate) fn is_plain_word(word: u64) -> bool {
        word & (SIDE | CONT_CLAIMED) == 0
    }

    /// For a `word` (from [`WorkerLane::pop_word`]) of a task that
    /// completed without a result: its id, and whether its worker claimed
    /// its continuation (what [`WorkerLane::decode`] returns, without
    /// making the `Outcome`); `None` for any other outcome.
    #[inline(always)]
    pub(crate) fn completed_word(word: u64) -> Option<(u64, bool)> {
        (word & SIDE == 0).then_some((word & !CONT_CLAIMED, word & CONT_CLAIMED != 0))
    }

    /// What [`WorkerLane::pop_outcome`] returns for the entry whose word
    /// [`WorkerLane::pop_word`] returned (its side outcome taken, if any).
    #[inline(always)]
    pub(crate) fn decode(&self, word: u64) -> (u64, Outcome, bool) {
        (word & !(SIDE | CONT_CLAIMED), self.outcomes.outcome_of(word), word & CONT_CLAIMED != 0)
    }

    pub(crate) fn has_outcomes(&self) -> bool {
        !self.outcomes.is_empty()
    }

    /// Leaves an outcome for the lock holder, then fences (see the module
    /// doc).
    #[inline(always)]
    pub(crate) fn push_outcome(&self, (id, o): (u64, Outcome)) {
        debug_assert!(id & (CONT_CLAIMED | SIDE) == 0, "ids stay below 2^62");
        self.outcomes.push(id, o);
        fence(Ordering::SeqCst);
    }

    /// [`WorkerLane::push_outcome`] for a task that completed without a
    /// result (the common end).
    #[inline(always)]
    pub(crate) fn push_completed(&self, id: u64) {
        debug_assert!(id & (CONT_CLAIMED | SIDE) == 0, "ids stay below 2^62");
        self.outcomes.words.push(id);
        fence(Ordering::SeqCst);
    }

    /// [`WorkerLane::push_outcome`] for a task whose continuation this
    /// worker claimed at its finish (it runs next, with this outcome's
    /// result): the lock holder then knows, without reading the
    /// continuation's record, that nothing downstream waits for this
    /// outcome while the task has no link record (its only downstream
    /// task is that continuation).
    #[inline(always)]
    pub(crate) fn push_outcome_cont_claimed(&self, (id, o): (u64, Outcome)) {
        debug_assert!(id & (CONT_CLAIMED | SIDE) == 0, "ids stay below 2^62");
        self.outcomes.push(id | CONT_CLAIMED, o);
        fence(Ordering::SeqCst);
    }
}

/// The lane's levels in descending priority, as a worker last read them
/// (its own copy, kept across its takes): [`Lane::take`] decodes the
/// level order word only when it changed (a level was made or given to
/// another priority, see [`Lane::reassign`]; a change that keeps the
/// levels' order keeps the word, and the copy stays right: it holds the
/// levels, whose priorities each take reads), instead of once per level
/// per take. Used only
/// with the lane that filled it (`lane_loop` keeps one per call).
///
/// Room for `N` levels: `lane_loop` is made for [`FEW_LEVELS`] and for
/// [`LEVELS`], and a worker whose take finds more levels than its copy
/// holds goes back to the lock (`Take::Lock`), from where it enters the
/// loop made for them. With room for all eight in every loop, the take's
/// loop compiled to 7-12 more instructions per task (`btm_paths 10000`:
/// the lane worker 165.3 -> 172.3, four levels' 199.9 -> 211.4).
pub(crate) struct LevelsSeen<const N: usize> {
    /// The order word the levels were read for (`u32::MAX`, which no order
    /// word is, before the first take).
    order: u32,
    n: usize,
    levels: [*const Level; N],
}

/// The levels of the lane loop most hosts use (see [`LevelsSeen`]).
pub(crate) const FEW_LEVELS: usize = 4;

impl<const N: usize> LevelsSeen<N> {
    pub(crate) fn new() -> Self {
        LevelsSeen { order: u32::MAX, n: 0, levels: [std::ptr::null(); N] }
    }
}

/// What a worker's look at the lane found.
pub(crate) enum Take {
    /// A claimed task: its id and job.
    Job(u64, Job),
    /// A task popped while the locked ready queue gained a better one: the
    /// worker moves it to the locked path under the lock
    /// ([`LevelRef::give_back`]), unless a lock holder cancelled its entry
    /// first. Its id, its level and its position.
    GiveBack(u64, LevelRef, u64),
    /// An entry found cancelled by a lock holder: stopped, or moved to the
    /// locked path (`State::unlane_slow`), where it may come before the
    /// entries after it. A mover bumps and publishes `locked_gen` before
    /// its cancel, which the worker's compare-and-swap or load acquired:
    /// if `locked_gen` moved since the worker's lock section, the worker
    /// compares under the lock (the locked queue's new front is published
    /// only at the mover's section's end); else (a stop) it takes again.
    Cancelled,
    /// Another worker popped the entry this take found first (nothing was
    /// popped): the worker looks again from the best level, at once or,
    /// if it lost another pop within its last [`LOST_POPS_CLOSE`]
    /// claims, after [`LOST_POP_BACKOFF`] ([`WorkerLane::after_lost_pop`]).
    Lost,
    /// No entry.
    Empty,
    /// The lane is closed, or the locked ready queue has a task that may
    /// come first: the worker must take the state lock.
    Lock,
}

/// The levels and flags shared by the host and the workers.
pub(crate) struct Lane {
    levels: [AtomicPtr<Level>; LEVELS],
    /// Count (low `ORDER_SHIFT` bits) and level indexes in descending
    /// priority (`ORDER_BITS` bits each from there).
    order: AtomicU32,
    /// Workers may claim (processing runs, no hooks, not shut down).
    open: Padded<AtomicBool>,
    /// The priority of the locked ready queue's best task, or
    /// [`NO_PRIORITY`]: a worker leaves the lane for the lock when it is
    /// at least the lane's best.
    pub(crate) locked_top: Padded<AtomicI64>,
    /// Workers must take the state lock after leaving an outcome: a host
    /// waits for events (in `wait_events`, or has a notify callback or
    /// descriptor) and none is deliverable yet, a host waits for idleness
    /// or a shut-down, or a running lane task gained downstream tasks (see
    /// `State::sync_lane`).
    pub(crate) lock_finish: Padded<AtomicBool>,
    /// Bumped when workers in their lane loop must come back to the lock
    /// (fewer threads allowed).
    pub(crate) checkin: AtomicU64,
    /// Bumped (under the lock) when a task may have become the front of a
    /// level of the locked ready queue though an older one was queued: a
    /// worker's `tie_below` holds until then.
    pub(crate) locked_gen: AtomicU64,
    /// Bumped after a batch's entries are published and when a level is
    /// created: a worker whose take spans a change compares its entry with
    /// the better levels (the batch is chosen from as a whole).
    epoch: Padded<AtomicU64>,
    /// Continuation records (freed after the levels, whose slots may hold
    /// attachments).
    pub(crate) conts: ContArena,
}

impl Lane {
    pub(crate) fn new() -> Lane {
        Lane {
            levels: Default::default(),
            order: AtomicU32::new(0),
            open: Padded::default(),
            locked_top: Padded(AtomicI64::new(NO_PRIORITY)),
            lock_finish: Padded::default(),
            checkin: AtomicU64::new(0),
            locked_gen: AtomicU64::new(0),
            epoch: Padded::default(),
            conts: ContArena::new(),
        }
    }

    fn level(&self, i: usize) -> Option<&Level> {
        let p = self.levels[i].load(Ordering::Acquire);
        // SAFETY: levels are created once and freed with the lane.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    fn ordered(&self) -> impl Iterator<Item = &Level> + '_ {
        self.ordered_as(self.order.load(Ordering::Acquire))
    }

    /// [`Lane::ordered`] for order word `order`, read with acquire.
    #[inline(always)]
    fn ordered_as(&self, order: u32) -> impl Iterator<Item = &Level> + '_ {
        let n = (order & ORDER_COUNT) as usize;
        (0..n).map(move |k| {
            let p =
                self.levels[((order >> (ORDER_SHIFT + ORDER_BITS * k)) & ORDER_INDEX) as usize].load(Ordering::Relaxed);
            // SAFETY: a level listed in `order` was stored before the
            // release of the order word that lists it, which this thread
            // read with acquire: `p` is that level, freed with the lane.
            unsafe { &*p }
        })
    }

    /// The level index of `priority`, created if a level is free; the
    /// caller holds the state lock.
    pub(crate) fn level_of(&self, priority: i32) -> Option<usize> {
        // Levels are created in index order: indexes below the count exist.
        let n = self.level_count();
        if let Some(i) = (0..n).find(|&i| self.level(i).is_some_and(|l| l.priority() == priority)) {
            return Some(i);
        }
        if n == LEVELS {
            return None;
        }
        self.levels[n].store(Box::into_raw(Level::new(priority)), Ordering::Release);
        self.sort_levels(n + 1);
        Some(n)
    }

    /// Publishes the order of the first `n` levels (all made) by
    /// priority, and bumps `epoch` (a worker whose take spans the change
    /// compares its entry with the better levels, as for a batch).
    fn sort_levels(&self, n: usize) {
        let mut idx = [0usize; LEVELS];
        for (k, slot) in idx.iter_mut().enumerate().take(n) {
            *slot = k;
        }
        idx[..n].sort_by_key(|&i| std::cmp::Reverse(self.level(i).map_or(i32::MIN, Level::priority)));
        let mut word = n as u32;
        for (k, &i) in idx[..n].iter().enumerate() {
            word |= (i as u32) << (ORDER_SHIFT + ORDER_BITS * k);
        }
        self.order.store(word, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// A made level that no task holds (nothing queued in its ring or its
    /// overflow), the one whose last entry is the oldest, if one is; the
    /// caller holds the state lock. With `workers_off` (no worker in its
    /// lane loop: nothing else pops), the cancelled entries that begin a
    /// ring are passed over first (`Level::skip_cancelled`); else a level
    /// with such entries is not empty until the workers pop them, and the
    /// caller then checks that no worker is taking an entry or giving one
    /// back ([`WorkerLane::is_quiet`]) before it gives the level away.
    /// None unless that level's last entry has an id below
    /// `pushed_before` (ids grow with adds: how long ago it was used).
    pub(crate) fn empty_level(&self, workers_off: bool, pushed_before: u64) -> Option<usize> {
        let n = self.level_count();
        (0..n)
            .filter_map(|i| self.level(i).map(|l| (i, l)))
            // SAFETY (both blocks): the caller's contract.
            .filter(|(_, l)| {
                if workers_off {
                    unsafe { l.skip_cancelled() };
                }
                l.head.load(Ordering::Relaxed) == l.tail.load(Ordering::Relaxed) && unsafe { l.overflow() }.is_empty()
            })
            .map(|(i, l)| (i, l.last_id()))
            .min_by_key(|&(_, last)| last)
            .filter(|&(_, last)| last.map_or(true, |id| id < pushed_before))
            .map(|(i, _)| i)
    }

    /// Gives empty level `i` (see [`Lane::empty_level`], whose contract
    /// the caller keeps) to `priority`, which has none: a host that used
    /// more priorities over time than the lane has levels keeps its
    /// current ones on the lane. Positions go on from the level's tail
    /// (a task record that still names an old one finds another id in
    /// its slot, as after a lap of the ring). A worker in its lane loop
    /// reads the new order at its next take; a take that began before
    /// reads `epoch` moved after a pop, and then compares the entry with
    /// the level's new priority and the levels now above it
    /// (`Lane::take_announced`).
    pub(crate) fn reassign(&self, i: usize, priority: i32) {
        let level = self.level(i).expect("a made level");
        level.priority.store(priority, Ordering::Relaxed);
        // SAFETY: the caller's contract (the state lock).
        let producer = unsafe { level.producer() };
        producer.cancels = 0;
        producer.since = level.tail.load(Ordering::Relaxed);
        self.sort_levels(self.level_count());
    }

    /// Level `i`, created by [`Lane::level_of`].
    pub(crate) fn level_ref(&self, i: usize) -> LevelRef {
        LevelRef(std::ptr::NonNull::from(self.level(i).expect("created by level_of")))
    }

    /// Lets workers see an entry pushed unpublished.
    pub(crate) fn publish(&self, i: usize, pos: u64) {
        // (The lock holder's read: only lock holders move `epoch`.)
        self.level(i).expect("created by level_of").publish(pos, self.epoch.load(Ordering::Relaxed));
    }

    /// Ends the publication of a batch (see `epoch`).
    pub(crate) fn published(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// See [`Level::cancel`].
    pub(crate) fn cancel(&self, i: usize, pos: u64, id: u64) -> Option<Job> {
        self.level(i)?.cancel(pos, id)
    }

    /// See [`Level::compact_overflow`]; the caller holds the state lock
    /// and is not adding a batch.
    pub(crate) fn compact_overflow(&self, i: usize, moved: impl FnMut(u64, u64, u64)) {
        if let Some(level) = self.level(i) {
            // SAFETY: the caller's contract.
            unsafe { level.compact_overflow(moved) };
        }
    }

    /// Attaches `cont` to the lane entry of task `id` (level `i`, position
    /// `pos`); the caller holds the state lock.
    pub(crate) fn attach(&self, i: usize, pos: u64, id: u64, cont: &ContRef) -> AttachTo {
        self.level(i).map_or(AttachTo::No, |l| l.attach(pos, id, cont))
    }

    /// See [`Level::mark_linked`] (level `i`).
    pub(crate) fn mark_linked(&self, i: usize, pos: u64, id: u64) -> bool {
        self.level(i).is_some_and(|l| l.mark_linked(pos, id))
    }

    /// Ring entries marked linked, every level (a diagnostic for tests;
    /// the caller holds the state lock).
    pub(crate) fn marked(&self) -> usize {
        self.ordered().map(Level::marked).sum()
    }

    /// Attaches `cont` to the queued continuation `up`; the caller holds
    /// the state lock.
    pub(crate) fn attach_to_cont(up: &ContRef, cont: &ContRef) -> AttachTo {
        attach_word(&up.rec().state, cont)
    }

    /// True if a task of `priority` and `id` that just became ready comes
    /// before every lane entry and every locked task (a locked task of its
    /// priority is compared under the lock: it does not), so that the
    /// worker that made it ready may run it at once.
    pub(crate) fn comes_first(&self, priority: i32, id: u64) -> bool {
        if i64::from(priority) <= self.locked_top.load(Ordering::Relaxed) {
            return false;
        }
        // The levels in order, as `ordered` gives them, with each index
        // shifted out as it goes: it saved the chain's worker 4 instructions
        // per task (255.0 -> 251.0, `btm_paths 10000 lanechain`); the same
        // change in `ordered_as` cost the lane worker 4 (163.3 -> 167.3), so
        // it is made here only.
        let order = self.order.load(Ordering::Acquire);
        let mut indexes = order >> ORDER_SHIFT;
        for _ in 0..(order & ORDER_COUNT) {
            let level = self.levels[(indexes & ORDER_INDEX) as usize].load(Ordering::Relaxed);
            indexes >>= ORDER_BITS;
            // SAFETY: as in `ordered_as`.
            let level = unsafe { &*level };
            // (Read once: two atomic loads are not merged.)
            let level_priority = level.priority();
            // Passed over, not the walk's end: a lock holder may give an
            // empty level to another priority while a chain's worker is
            // here (`State::lane_level_given`, which waits for no worker
            // outside a claim), storing its priority before the order
            // word. A level read lowered in the order read before ended
            // the walk at its old place, and the levels after it there,
            // above `priority` and holding older entries, went unread: the
            // continuation ran ahead of them (`tests/busy_review.rs`).
            if level_priority < priority {
                continue;
            }
            if level.is_overflowing() {
                // Its next entries wait behind an empty ring (see `take`).
                return false;
            }
            if level.has_entries() {
                if level_priority > priority {
                    return false;
                }
                let head = level.head.load(Ordering::Acquire);
                if level.slot(head).id.load(Ordering::Relaxed) < id {
                    return false;
                }
            }
        }
        true
    }

    /// Claims continuation `att` for worker `w`: `None` if it was
    /// cancelled, or the lane is closed (no claim then, as for entries).
    pub(crate) fn claim_cont(&self, w: &WorkerLane, att: &Attached) -> Option<Job> {
        w.claiming.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let r = if self.open.load(Ordering::Relaxed) {
            let rec = att.rec();
            w.claiming_task(rec.id);
            match leave_queued(&rec.state, RUNNING) {
                Ok(s) => {
                    w.cont_claims.store(w.cont_claims.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    w.claimed(rec.id, s);
                    // SAFETY: the compare-and-swap made this worker the
                    // job's only owner.
                    Some(unsafe { (*rec.job.get()).assume_init_read() })
                }
                Err(_) => None,
            }
        } else {
            None
        };
        w.claiming.store(false, Ordering::Release);
        r
    }

    /// See [`Level::is_queued`].
    pub(crate) fn is_queued(&self, i: usize, pos: u64, id: u64) -> bool {
        self.level(i).is_some_and(|l| l.is_queued(pos, id))
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Lets workers claim again; the caller holds the state lock.
    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Stops workers from claiming and waits for claims in flight; the
    /// caller holds the state lock. Afterwards every entry between a
    /// level's head and tail is unclaimed.
    pub(crate) fn close<'a>(&self, workers: impl Iterator<Item = &'a WorkerLane>) {
        if !self.open.swap(false, Ordering::SeqCst) {
            return;
        }
        fence(Ordering::SeqCst);
        for w in workers {
            let mut spins = 0u32;
            while w.claiming.load(Ordering::Acquire) {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Cancels every unclaimed entry of a closed lane and hands over
    /// `(id, job)` for each, in each level's order; the caller holds the
    /// state lock. The overflows, all cancelled then, are dropped (no
    /// entry after them holds a position): left as cancelled entries,
    /// which nothing counted, they stayed until workers came back to them,
    /// and each drain behind busy workers added its backlog to them.
    pub(crate) fn drain(&self, mut sink: impl FnMut(u64, Job)) {
        debug_assert!(!self.is_open());
        for level in self.ordered() {
            let (head, tail) = (level.head.load(Ordering::Acquire), level.tail.load(Ordering::Relaxed));
            for pos in head..tail {
                let slot = level.slot(pos);
                let id = slot.id.load(Ordering::Relaxed);
                if let Some(job) = level.cancel(pos, id) {
                    sink(id, job);
                }
            }
            // SAFETY: the caller holds the state lock.
            for (id, job) in unsafe { level.overflow() }.iter_mut() {
                if let Some(job) = job.take() {
                    sink(*id, job);
                }
            }
            // SAFETY: the caller holds the state lock.
            unsafe { level.trim_overflow() };
        }
    }

    /// Moves overflow entries into the rings that have room, every level;
    /// the caller holds the state lock and has pushed no entry unpublished
    /// (no batch published at its end is being added). Returns true if any
    /// moved.
    pub(crate) fn refill(&self) -> bool {
        let mut moved = 0;
        for level in self.ordered().filter(|l| l.is_overflowing()) {
            // SAFETY: the caller's contract.
            moved += unsafe { level.refill(REFILL_PER_SECTION, self.epoch.load(Ordering::Relaxed)) };
        }
        if moved > 0 {
            self.epoch.fetch_add(1, Ordering::Release);
        }
        moved > 0
    }

    /// True if some level has entries in its overflow (a hint).
    pub(crate) fn is_overflowing(&self) -> bool {
        self.ordered().any(Level::is_overflowing)
    }

    /// The best level with an entry, as `(priority, id of its oldest
    /// entry)`; the id is a hint (the entry may be cancelled).
    pub(crate) fn top(&self) -> Option<(i32, u64)> {
        if !self.is_open() {
            return None;
        }
        self.ordered().find(|l| l.has_entries()).map(|l| {
            let pos = l.head.load(Ordering::Acquire);
            (l.priority(), l.slot(pos).id.load(Ordering::Relaxed))
        })
    }

    /// Pops the best level's oldest entry and leaves its slot reserved
    /// (see `Manager::hold_lane_entry_for_tests`); the caller holds the
    /// state lock. Its id, its level and its position.
    pub(crate) fn hold_best_for_tests(&self) -> Option<(u64, LevelRef, u64)> {
        let level = self.ordered().find(|l| l.has_entries())?;
        let pos = level.pop()?;
        let id = level.slot(pos).id.load(Ordering::Relaxed);
        Some((id, LevelRef(std::ptr::NonNull::from(level)), pos))
    }

    /// Entries pushed and not yet popped, over every level, overflows
    /// included (some may be cancelled); the caller holds the state lock.
    /// Reads the heads the workers write, so only for slow paths.
    pub(crate) fn queued(&self) -> usize {
        self.ordered()
            .map(|l| {
                let tail = l.tail.load(Ordering::Relaxed);
                // SAFETY: the caller's contract.
                let overflow = unsafe { l.overflow() }.len() as u64;
                (tail - l.head.load(Ordering::Relaxed).min(tail) + overflow) as usize
            })
            .sum()
    }

    /// True if a worker could find an entry, or an overflow to move into
    /// an empty ring (for spinning).
    pub(crate) fn has_work(&self) -> bool {
        self.is_open() && self.ordered().any(|l| l.is_overflowing() || l.has_entries())
    }

    /// Claims the best task for worker `w`, unless the locked queue has one
    /// of a higher priority, or of the same priority and an id not above
    /// `tie_below` (0: any id; the worker then compares ids under the lock).
    /// The worker stops looking (see [`WorkerLane::is_looking`]) before it
    /// claims, and looks again if it found nothing (or, from
    /// [`WorkerLane::after_lost_pop`], if it lost its entry to another
    /// worker).
    pub(crate) fn take<const N: usize>(
        &self,
        w: &WorkerLane,
        tie_below: u64,
        tie_p: i64,
        seen: &mut LevelsSeen<N>,
    ) -> Take {
        w.looking.store(false, Ordering::Relaxed);
        w.claiming.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let taken = self.take_announced(w, tie_below, tie_p, seen);
        w.claiming.store(false, Ordering::Release);
        if matches!(taken, Take::Empty) {
            w.looking.store(true, Ordering::Relaxed);
        }
        taken
    }

    /// Reads the level order word `order` into `seen`; false (`seen`
    /// unchanged) if it has more levels than `seen` holds.
    #[cold]
    #[inline(never)]
    fn see_levels<const N: usize>(&self, order: u32, seen: &mut LevelsSeen<N>) -> bool {
        if (order & ORDER_COUNT) as usize > N {
            return false;
        }
        seen.n = 0;
        for level in self.ordered_as(order) {
            seen.levels[seen.n] = level;
            seen.n += 1;
        }
        seen.order = order;
        true
    }

    /// Levels made so far (read relaxed: a worker uses it to choose its
    /// lane loop, whose takes read the order word with acquire).
    pub(crate) fn level_count(&self) -> usize {
        (self.order.load(Ordering::Relaxed) & ORDER_COUNT) as usize
    }

    fn take_announced<const N: usize>(
        &self,
        w: &WorkerLane,
        tie_below: u64,
        tie_p: i64,
        seen: &mut LevelsSeen<N>,
    ) -> Take {
        if !self.open.load(Ordering::Relaxed) {
            return Take::Lock;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let locked = self.locked_top.load(Ordering::Relaxed);
        let tie_below = if locked == tie_p { tie_below } else { 0 };
        let order = self.order.load(Ordering::Acquire);
        if order != seen.order && !self.see_levels(order, seen) {
            // More levels than `seen` holds: the worker enters the lane
            // loop made for them from the lock.
            return Take::Lock;
        }
        for &level in &seen.levels[..seen.n] {
            // SAFETY: read from this lane's order word (with acquire, as in
            // `Lane::ordered`) by `see_levels`; a level is never freed or
            // replaced while its lane lives, and `seen` is only used with
            // the lane that filled it.
            let level = unsafe { &*level };
            let p = i64::from(level.priority());
            // (Read once: with no locked task, no level defers to the lock.)
            if locked != NO_PRIORITY && (p < locked || (p == locked && tie_below == 0)) {
                return Take::Lock;
            }
            // Read before the ring (see `Level::overflowing`).
            let overflowing = level.is_overflowing();
            // One entry at most: a cancelled one is reported
            // (`Take::Cancelled`), not passed over here.
            let Ok(popped) = level.pop_first() else {
                return Take::Lost;
            };
            if let Some(pos) = popped {
                let slot = level.slot(pos);
                let id = slot.id.load(Ordering::Relaxed);
                // The pop synchronised with the push, which came after any
                // locked task added before it; and if a batch was published
                // or a level created since this take looked, a better lane
                // entry of the same batch may have been published with it.
                let locked = self.locked_top.load(Ordering::Relaxed);
                // A level given to another priority since this take read
                // `p` (`Lane::reassign`, which moves `epoch`) holds an entry
                // of the new one, pushed after (the pop made the priority
                // visible): `p` is stale, and the entry goes back to the
                // lock, which compares it with the rest (a rare race, and
                // the comparison here stays on the level's old priority
                // only in this branch: re-reading `p` for `defer` cost the
                // lane worker 6 instructions per task).
                let better = self.epoch.load(Ordering::Acquire) != epoch
                    && (i64::from(level.priority()) != p
                        || self
                            .ordered()
                            .take_while(|l| l.priority() > level.priority())
                            .any(|l| l.is_overflowing() || l.has_entries()));
                let defer = p < locked || (p == locked && (id >= tie_below || locked != tie_p));
                // But an entry published before the epoch this take began
                // in (its own below `epoch`: `epoch` moves only after what
                // the lock holder published) was queued when the take
                // found the levels above it empty: the take stands as of
                // then, as it does when `epoch` did not move (loom model
                // 7). Without this, every take of an old entry during a
                // batch's publication gave it back, and a backlog of
                // several priorities (W6 added in arrays) moved to the
                // locked path. (Tested after `better`: the other order
                // cost the lane worker 2-7 instructions per task through
                // its registers, and so did the expression clippy prefers,
                // `defer || (better && ..)`: 194.3 against 200.3.)
                #[allow(clippy::nonminimal_bool)]
                let give_back = (better || defer) && (defer || slot.epoch.load(Ordering::Relaxed) >= epoch);
                if give_back {
                    if !is_queued_word(slot.state.load(Ordering::Acquire)) {
                        // Cancelled by a lock holder (stopped, or moved
                        // to the locked path): nothing to give back.
                        level.release(pos);
                        return Take::Cancelled;
                    }
                    // The entry stays queued in its slot (and the slot
                    // unreleased) until the worker's lock section moves it
                    // (`State::give_back`): until then a lock holder sees
                    // a queued task, which a stop cancels (before its
                    // start, freed by the stopping thread) and a priority
                    // change moves, not a running one.
                    // (Announced before the claim's end, see
                    // `WorkerLane::is_quiet`.)
                    w.giving_back.store(true, Ordering::Relaxed);
                    return Take::GiveBack(id, LevelRef(std::ptr::NonNull::from(level)), pos);
                }
                w.claiming_task(id);
                let claimed = leave_queued(&slot.state, RUNNING);
                // SAFETY: the compare-and-swap made this worker the job's
                // only owner.
                let job = claimed.is_ok().then(|| unsafe { (*slot.job.get()).assume_init_read() });
                level.release(pos);
                if let (Ok(s), Some(job)) = (claimed, job) {
                    w.claimed(id, s);
                    w.claimed_slot.store(level.slot_ptr(pos), Ordering::Relaxed);
                    return Take::Job(id, job);
                }
                // Cancelled by a lock holder: stopped, or moved to the
                // locked path, where it may come before the entries after
                // it (see `Take::Cancelled`).
                return Take::Cancelled;
            }
            if overflowing {
                // Its ring is empty and its next entries wait in the
                // overflow (or did when the worker looked at the ring): the
                // worker moves them under the lock (before it takes any
                // lower level's). Entries that overflowed since it looked
                // came after this take.
                return Take::Lock;
            }
        }
        Take::Empty
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        for l in &self.levels {
            let p = l.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: created by `Box::into_raw` in `level_of`, freed once.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Owned, TaskContext};

    unsafe extern "C" fn noop(_: *mut std::ffi::c_void, _: *mut TaskContext) {}

    fn job() -> Job {
        Job::task(noop, Owned::new(std::ptr::null_mut(), None))
    }

    fn owner(a: &ContArena) -> (usize, usize, usize) {
        // SAFETY: single-threaded test: nobody else touches the arena.
        let o = unsafe { a.owner() };
        (o.live, o.blocks.len(), o.free.len())
    }

    /// A record as a worker leaves it: claimed, its attachment reference
    /// dropped.
    fn run(r: &ContRef) {
        r.rec().state.store(RUNNING, Ordering::Relaxed);
        // SAFETY: the attachment's reference, dropped once.
        unsafe { Cont::release(r.0.as_ptr()) };
    }

    /// A job whose data pointer is `id`, to check which entry a slot got.
    fn job_of(id: u64) -> Job {
        Job::task(noop, Owned::new(id as usize as *mut std::ffi::c_void, None))
    }

    /// Pops up to `n` entries of `level` as a worker would (the claim of a
    /// queued one included), appending `(id, queued)` to `seen`, and checks
    /// that each queued job is the one added with its id.
    fn take(level: &Level, n: usize, seen: &mut Vec<(u64, bool)>) {
        for _ in 0..n {
            let Some(pos) = level.pop() else { return };
            let slot = level.slot(pos);
            let id = slot.id.load(Ordering::Relaxed);
            let queued = leave_queued(&slot.state, RUNNING).is_ok();
            if queued {
                // SAFETY: the compare-and-swap made this the job's owner.
                let job = unsafe { (*slot.job.get()).assume_init_read() };
                assert_eq!(job.data.data() as usize as u64, id, "the job of entry {id}");
            }
            level.release(pos);
            seen.push((id, queued));
        }
    }

    /// What `WorkerLane::pause_if_newest` decides for `w` now.
    fn would_pause(w: &WorkerLane) -> bool {
        w.claimed_newest()
    }

    thread_local! {
        /// Runs once, on this thread, between a take's read of a level's
        /// head and its compare-and-swap (see `Level::pop_first`).
        static BEFORE_HEAD_CAS: std::cell::RefCell<Option<Box<dyn FnOnce()>>> = const { std::cell::RefCell::new(None) };
    }

    pub(super) fn before_head_cas() {
        if let Some(f) = BEFORE_HEAD_CAS.with(|h| h.borrow_mut().take()) {
            f();
        }
    }

    /// A lane with one level (priority 0, index 0), and that level.
    fn lane_of_one_level() -> (Lane, LevelRef) {
        let lane = Lane::new();
        let i = lane.level_of(0).unwrap();
        let level = lane.level_ref(i);
        (lane, level)
    }

    #[test]
    fn a_take_that_loses_its_entry_to_another_pop_takes_nothing_and_the_next_take_the_next_entry() {
        let (lane, level) = lane_of_one_level();
        lane.open();
        let w = WorkerLane::new();
        let mut seen = LevelsSeen::<LEVELS>::new();
        for id in 1..=3 {
            level.push(id, job_of(id), true);
        }
        // Another worker pops and claims entry 1 between this take's read
        // of the head and its compare-and-swap.
        let other = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let (by_other, other_level) = (std::rc::Rc::clone(&other), level);
        // SAFETY: the level lives as long as `lane`, which outlives the hook
        // (it runs inside the take below).
        let other_take = move || take(unsafe { other_level.0.as_ref() }, 1, &mut by_other.borrow_mut());
        BEFORE_HEAD_CAS.with(|h| *h.borrow_mut() = Some(Box::new(other_take)));
        assert!(matches!(lane.take(&w, 0, NO_PRIORITY, &mut seen), Take::Lost));
        assert_eq!(*other.borrow(), [(1, true)], "the other worker's pop");
        // The lost take claimed nothing and counts as no claim.
        assert_eq!(w.claims(), 0);
        // What the worker does next: it looks again (a first loss: at once),
        // counted as looking meanwhile.
        w.after_lost_pop();
        assert!(w.is_looking());
        for want in 2..=3 {
            let Take::Job(id, job) = lane.take(&w, 0, NO_PRIORITY, &mut seen) else { panic!("entry {want}") };
            assert_eq!((id, job.data.data() as usize as u64), (want, want));
            assert!(!w.is_looking(), "a take that claims stops looking");
        }
        assert!(matches!(lane.take(&w, 0, NO_PRIORITY, &mut seen), Take::Empty));
        assert_eq!(w.claims(), 2);
    }

    #[test]
    fn a_worker_backs_off_only_when_it_loses_pops_close_together() {
        let w = WorkerLane::new();
        // The first lost pop: looks again at once.
        assert!(!w.lost_again());
        // Another with no claim between: backs off.
        assert!(w.lost_again());
        // One claim between: still close.
        w.claimed(1, QUEUED);
        assert!(w.lost_again());
        // `LOST_POPS_CLOSE` claims between: far apart, at once again.
        for id in 2..2 + LOST_POPS_CLOSE {
            w.claimed(id, QUEUED);
        }
        assert!(!w.lost_again());
        // One short of it: close.
        for id in 10..10 + LOST_POPS_CLOSE - 1 {
            w.claimed(id, QUEUED);
        }
        assert!(w.lost_again());
    }

    #[test]
    fn a_worker_pauses_after_its_levels_newest_entry_only() {
        let (lane, level) = lane_of_one_level();
        lane.open();
        let w = WorkerLane::new();
        let mut seen = LevelsSeen::<LEVELS>::new();
        for id in 1..=3 {
            level.push(id, job(), true);
        }
        for taken in 1..=3 {
            let Take::Job(_, job) = lane.take(&w, 0, NO_PRIORITY, &mut seen) else { panic!("an entry") };
            drop(job);
            assert_eq!(would_pause(&w), taken == 3, "after entry {taken} of 3");
        }
        // The host publishes the next one: the look goes on at once.
        level.push(4, job(), true);
        assert!(!would_pause(&w));
        let Take::Job(..) = lane.take(&w, 0, NO_PRIORITY, &mut seen) else { panic!("entry 4") };
        assert!(would_pause(&w));
    }

    #[test]
    fn one_worker_behind_a_full_ring_pauses_once_a_lap_at_the_spare_slot() {
        let (lane, level) = lane_of_one_level();
        lane.open();
        let w = WorkerLane::new();
        let mut seen = LevelsSeen::<LEVELS>::new();
        let (mut next, mut paused_at) = (1u64, Vec::new());
        // The host keeps the ring full; one worker takes 3 laps.
        for taken in 0..3 * CAP {
            while level.push(next, job(), true).1 {
                next += 1;
            }
            next += 1; // (the one that went to the overflow stays there)
            let Take::Job(_, job) = lane.take(&w, 0, NO_PRIORITY, &mut seen) else { panic!("a full ring") };
            drop(job);
            if would_pause(&w) {
                paused_at.push(taken);
            }
        }
        // SAFETY: the spare slot of the level's mapping.
        let spare = unsafe { &*lane.level(0).unwrap().slots.as_ptr().add(CAP as usize) };
        assert_eq!(spare.seq.load(Ordering::Relaxed), 0, "the spare is never written");
        assert_eq!(paused_at, vec![CAP - 1, 2 * CAP - 1, 3 * CAP - 1], "once a lap, at the ring's last slot");
        unsafe { lane.level(0).unwrap().overflow() }.clear();
    }

    #[test]
    fn two_workers_draining_a_backlog_do_not_pause() {
        let (lane, level) = lane_of_one_level();
        for id in 1..=1000 {
            level.push(id, job(), true);
        }
        lane.open();
        let (a, b) = (WorkerLane::new(), WorkerLane::new());
        let (mut sa, mut sb) = (LevelsSeen::<LEVELS>::new(), LevelsSeen::<LEVELS>::new());
        let mut paused = 0;
        // Two workers on one level, each taking its next entry while the
        // other runs its task (their claims alternate, so the slot after
        // each claim was taken by the other): hundreds of entries stay
        // published ahead of both the whole time.
        for round in 0..400 {
            for (w, seen) in [(&a, &mut sa), (&b, &mut sb)] {
                if round > 0 && would_pause(w) {
                    paused += 1;
                }
                let Take::Job(_, job) = lane.take(w, 0, NO_PRIORITY, seen) else { panic!("a backlog") };
                drop(job);
            }
        }
        assert_eq!(paused, 0, "pauses in 798 looks made with at least 200 entries published ahead");
    }

    #[test]
    fn overflow_entries_move_into_the_ring_in_order_across_the_deques_wrap_around() {
        let level = Level::new(0);
        let mut next = 1;
        // The ring filled, then single pushes and runs behind it, in the
        // overflow.
        for _ in 0..CAP + 100 {
            level.push(next, job_of(next), true);
            next += 1;
        }
        let first = next;
        let pos = level.push_overflow_run(first, 300, |i| job_of(first + i as u64));
        assert_eq!(pos, first - 1, "the run's first position is its first id's");
        next += 300;
        let mut seen = Vec::new();
        let mut cancelled = Vec::new();
        let mut round = 0u64;
        // Workers take a varying number, the lock holder moves a varying
        // number (as often more than the room as less, sometimes none),
        // cancels an overflow entry now and then, and pushes more behind:
        // the deque's entries wrap past the end of its buffer (its two
        // slices), and the room runs out in either slice.
        while level.is_overflowing() || round < 200 {
            round += 1;
            take(&level, (round as usize * 37) % 101, &mut seen);
            // SAFETY (both blocks): this thread is the only lock holder.
            let tail = unsafe {
                let tail = level.tail.load(Ordering::Relaxed);
                if let Some(e) = level.overflow_entry(tail + round % 50) {
                    if e.1.take().is_some() {
                        cancelled.push(e.0);
                    }
                }
                tail
            };
            // Every entry taken was released at once: the free slots past
            // the tail are the ring's room.
            let room = (CAP - (tail - seen.len() as u64)) as usize;
            let max = (round as usize * 53) % 173;
            let waiting = unsafe { level.overflow() }.len();
            let moved = unsafe { level.refill(max, NO_EPOCH) };
            assert_eq!(moved, max.min(waiting).min(room), "round {round}: as many as asked, waiting and fitting");
            if round < 200 {
                let first = next;
                let n = (round as usize * 29) % 97;
                level.push_overflow_run(first, n, |i| job_of(first + i as u64));
                next += n as u64;
            }
        }
        take(&level, usize::MAX, &mut seen);
        let ids: Vec<u64> = seen.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, (1..next).collect::<Vec<_>>(), "every entry once, in order");
        let skipped: Vec<u64> = seen.iter().filter(|&&(_, queued)| !queued).map(|&(id, _)| id).collect();
        cancelled.sort_unstable();
        assert!(!cancelled.is_empty());
        assert_eq!(skipped, cancelled, "the entries cancelled in the overflow, and only those, come out cancelled");
    }

    #[test]
    fn outcomes_keep_their_order_and_flags_through_both_queues() {
        use crate::engine::foreign::{Failure, ResultSet};
        use std::sync::Arc;
        let result = Arc::new(ResultSet::single(0, Owned::new(std::ptr::null_mut(), None)));
        let q = Outcomes::new();
        // More than a segment of words and of side outcomes, interleaved.
        let n = 2 * SEGMENT as u64 + 5;
        for id in 1..=n {
            let o = match id % 3 {
                0 => Outcome::Completed(None),
                1 => Outcome::Completed(Some(Arc::clone(&result))),
                _ => Outcome::Failed(Failure::new(format!("f{id}").as_bytes(), b"")),
            };
            q.push(if id % 5 == 0 { id | CONT_CLAIMED } else { id }, o);
        }
        for id in 1..=n {
            let w = q.pop_word().expect("an outcome per push");
            let o = q.outcome_of(w);
            assert_eq!(w & !SIDE, if id % 5 == 0 { id | CONT_CLAIMED } else { id });
            match (id % 3, o) {
                (0, Outcome::Completed(None)) => {}
                (1, Outcome::Completed(Some(r))) => assert!(Arc::ptr_eq(&r, &result)),
                (2, Outcome::Failed(f)) => assert_eq!(f.message.to_bytes(), format!("f{id}").as_bytes()),
                (k, _) => panic!("outcome {id} (kind {k}) came back as another kind"),
            }
        }
        assert!(q.pop_word().is_none() && q.is_empty());
        // Outcomes never popped are dropped with the queue.
        q.push(1, Outcome::Completed(Some(Arc::clone(&result))));
        q.push(2, Outcome::Completed(None));
        assert_eq!(Arc::strong_count(&result), 2);
        drop(q);
        assert_eq!(Arc::strong_count(&result), 1, "the queued result was dropped with the queue");
    }

    #[test]
    fn continuation_records_come_back_and_blocks_are_given_back() {
        let a = ContArena::new();
        let recs: Vec<ContRef> = (0..300).map(|i| a.make(i, 0, job(), 0)).collect();
        assert_eq!(owner(&a), (300, 2, 2 * CONT_BLOCK - 300));
        for r in &recs {
            run(r);
        }
        let mut recs = recs.into_iter();
        for r in recs.by_ref().take(299) {
            a.recycle(r);
        }
        assert_eq!(owner(&a).0, 1, "one record still out");
        a.recycle(recs.next().unwrap());
        assert_eq!(owner(&a), (0, 1, CONT_BLOCK), "none out: one block kept");
    }

    #[test]
    fn records_of_continuations_that_ran_come_back_straight() {
        let a = ContArena::new();
        let recs: Vec<ContRef> = (0..300).map(|i| a.make(i, 0, job(), 0)).collect();
        for r in &recs {
            run(r);
        }
        let mut recs = recs.into_iter();
        for r in recs.by_ref().take(299) {
            a.recycle_ran(r);
        }
        assert_eq!(owner(&a), (1, 2, 2 * CONT_BLOCK - 1), "back in the free list, one still out");
        a.recycle_ran(recs.next().unwrap());
        assert_eq!(owner(&a), (0, 1, CONT_BLOCK), "none out: one block kept");
        let again = a.make(7, 3, job(), 0);
        assert!(again.is_queued() && again.rec().id == 7, "a record taken back is made whole again");
        drop(again.cancel());
        drop(again);
    }

    #[test]
    fn records_whose_last_reference_a_worker_dropped_are_reused() {
        let a = ContArena::new();
        let recs: Vec<ContRef> = (0..CONT_BLOCK as u64).map(|i| a.make(i, 0, job(), 0)).collect();
        for r in recs {
            // The table's reference first (a stop), then the worker's.
            r.rec().state.store(CANCELLED, Ordering::Relaxed);
            let p = r.0.as_ptr();
            drop(r);
            // SAFETY: the attachment's reference, dropped once.
            unsafe { Cont::release(p) };
        }
        assert_eq!(owner(&a), (CONT_BLOCK, 1, 0), "all orphaned, none taken back yet");
        let again = a.make(7, 3, job(), 0);
        assert_eq!(owner(&a), (1, 1, CONT_BLOCK - 1), "the orphans were taken back, no new block");
        assert!(again.is_queued() && again.rec().id == 7 && again.rec().priority == 3);
        drop(again.cancel());
        drop(again);
    }
}
