//! An experiment, not part of btm: the W1 path of a lock-free task engine,
//! built as lean as it can be, to measure how far issue 6's "different
//! engine" (docs/PERFORMANCE.md, "Not met yet") could take W1.
//!
//! What it keeps of btm, per task: a record in an id-indexed chunk (the
//! host's function, userdata and free function, group, id and a state word
//! a worker claims with one compare-and-swap, as a stop would cancel it),
//! a live count per group, a ready queue per priority level (four; a
//! worker takes from the highest non-empty one, and not while paused), and
//! an event (kind, group, id) written into the host's array by a poll, with
//! the record released there and its free function called. What it leaves
//! out: arbitrary priority values, dependencies, stops, groups finishing,
//! results, hooks, the notify callback, and the FFI's checks. So it is a
//! bound, not an engine: btm could not be faster on W1 with this shape of
//! hand-off, and would be slower by what it leaves out.
//!
//! The hand-off: a record's address goes into a bounded ready queue with a
//! sequence number per slot (Dmitry Vyukov's; any thread may push, both
//! workers pop, one compare-and-swap each), and each worker publishes
//! finished ids in a ring of its own that only the host reads. No lock on
//! the path. Workers spin like btm's (128 pauses, 64 yields) before they
//! sleep; the host, when a poll finds nothing, spins 64 pauses and 16
//! yields, like `btm_wait_events`, before it sleeps. With `LANE_LOCK=1`
//! the host's add and each poll with work also take a mutex (never
//! contended: only the host takes it), to price a hybrid engine that keeps
//! its bookkeeping under a state lock and only hands tasks over lock-free.
//! With `LANE_FULL=1` (or `worker` / `host` for one side) it pays for the
//! protocols docs/ENGINE_PLAN.md adds: a worker announces each claim with a
//! sequentially consistent store before reading the pause flag and
//! publishes the id it runs; ids and group live counts are atomics.
//!
//! Usage: `lockfree_lane <w1|w6> <N>` (w6: task i has priority i % 4),
//! printing one JSON line like the programs of bench/run.py. Build:
//! `cargo build --release --manifest-path
//! bench/experiments/lockfree_lane/Cargo.toml`.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::Instant;

type TaskFn = extern "C" fn(*mut c_void);
type FreeFn = extern "C" fn(*mut c_void);

const CHUNK: usize = 1024;
const WORKERS: usize = 2;
const READY_CAP: usize = 1 << 16;
/// Big enough for every outcome of a W1 run of 1M tasks to wait for the
/// host's polls, which only begin after its adds (btm's event queue grows
/// without bound; a bounded ring that filled up would stall the workers and
/// then the host's adds).
const DONE_CAP: usize = 1 << 21;
const WORKER_SPINS: u32 = 128;
const WORKER_YIELDS: u32 = 64;
const HOST_SPINS: u32 = 64;
const HOST_YIELDS: u32 = 16;
const WARMUP: usize = 64;
const LEVELS: usize = 4;

const QUEUED: u32 = 1;
const RUNNING: u32 = 2;
const DONE: u32 = 3;

#[inline(never)]
extern "C" fn bench_task(ud: *mut c_void) {
    std::hint::black_box(ud);
}

struct Rec {
    state: AtomicU32,
    group: UnsafeCell<u32>,
    id: UnsafeCell<u64>,
    run: UnsafeCell<Option<TaskFn>>,
    data: UnsafeCell<*mut c_void>,
    free: UnsafeCell<Option<FreeFn>>,
}

impl Default for Rec {
    fn default() -> Self {
        Rec {
            state: AtomicU32::new(0),
            group: UnsafeCell::new(0),
            id: UnsafeCell::new(0),
            run: UnsafeCell::new(None),
            data: UnsafeCell::new(std::ptr::null_mut()),
            free: UnsafeCell::new(None),
        }
    }
}

#[repr(align(128))]
struct Line<T>(T);

/// Many producers (any thread may add), many consumers (the workers): a
/// bounded queue with a sequence number per slot (Dmitry Vyukov's), one
/// compare-and-swap per push and per pop.
struct ReadyRing {
    head: Line<AtomicUsize>,
    tail: Line<AtomicUsize>,
    slots: Box<[Slot]>,
}

struct Slot {
    seq: AtomicUsize,
    rec: AtomicPtr<Rec>,
}

impl ReadyRing {
    fn new() -> ReadyRing {
        ReadyRing {
            head: Line(AtomicUsize::new(0)),
            tail: Line(AtomicUsize::new(0)),
            slots: (0..READY_CAP)
                .map(|i| Slot { seq: AtomicUsize::new(i), rec: AtomicPtr::new(std::ptr::null_mut()) })
                .collect(),
        }
    }

    /// Pushes `rec`; false when full.
    #[inline]
    fn push(&self, rec: *mut Rec) -> bool {
        let mut t = self.tail.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[t % READY_CAP];
            let seq = slot.seq.load(Ordering::Acquire);
            if seq == t {
                match self.tail.0.compare_exchange_weak(t, t + 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        slot.rec.store(rec, Ordering::Relaxed);
                        slot.seq.store(t + 1, Ordering::Release);
                        return true;
                    }
                    Err(now) => t = now,
                }
            } else if seq < t {
                return false;
            } else {
                t = self.tail.0.load(Ordering::Relaxed);
            }
        }
    }

    #[inline]
    fn pop(&self) -> Option<*mut Rec> {
        let mut h = self.head.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[h % READY_CAP];
            let seq = slot.seq.load(Ordering::Acquire);
            if seq == h + 1 {
                match self.head.0.compare_exchange_weak(h, h + 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        let rec = slot.rec.load(Ordering::Relaxed);
                        slot.seq.store(h + READY_CAP, Ordering::Release);
                        return Some(rec);
                    }
                    Err(now) => h = now,
                }
            } else if seq < h + 1 {
                return None;
            } else {
                h = self.head.0.load(Ordering::Relaxed);
            }
        }
    }

    #[inline]
    fn looks_empty(&self) -> bool {
        let h = self.head.0.load(Ordering::Relaxed);
        self.slots[h % READY_CAP].seq.load(Ordering::Acquire) != h + 1
    }
}

/// Single producer (one worker), single consumer (the host).
struct DoneRing {
    head: Line<AtomicUsize>,
    tail: Line<AtomicUsize>,
    slots: Box<[UnsafeCell<u64>]>,
}

struct Shared {
    /// One ring per priority level, highest first.
    ready: Vec<ReadyRing>,
    paused: AtomicBool,
    /// `LANE_FULL=1`: pay for the protocols a real engine adds to the path
    /// (docs/ENGINE_PLAN.md): a worker announces a claim in its own line
    /// with a sequentially consistent store before it reads the pause flag
    /// (so that a pause can wait for claims in flight), publishes the id it
    /// runs (for a stop of a running task), and ids and group live counts
    /// are atomics (adds from any thread).
    #[allow(dead_code)]
    full: bool,
    /// `LANE_FULL=worker` or `host`: only that side's part of it.
    full_worker: bool,
    full_host: bool,
    claiming: Vec<Line<AtomicBool>>,
    current: Vec<Line<AtomicU64>>,
    ids: Line<AtomicU64>,
    live: Vec<Line<AtomicU64>>,
    done: Vec<DoneRing>,
    asleep: Vec<Line<AtomicBool>>,
    host_asleep: Line<AtomicBool>,
    host: Thread,
    stop: AtomicBool,
}

// SAFETY: the rings' cells are written by their one producer before the
// release store of the tail that publishes them, and read after an acquire
// load of it; records likewise (published through the ready ring, handed
// back through a done ring).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

struct Engine {
    sh: Arc<Shared>,
    /// With `LANE_LOCK=1`, the host's add and each poll take this lock, as
    /// a hybrid engine whose bookkeeping stays under a state lock (that
    /// only the host and rare operations take) would.
    lock: Option<std::sync::Mutex<()>>,
    threads: Vec<Thread>,
    joins: Vec<JoinHandle<()>>,
    // Host-only state.
    next_id: u64,
    first_chunk: u64,
    chunks: VecDeque<(Box<[Rec]>, u32)>,
    spares: Vec<Box<[Rec]>>,
    group_live: Vec<u64>,
    done_heads: Vec<usize>,
}

#[derive(Clone, Copy, Default)]
#[allow(dead_code)]
struct Event {
    kind: u32,
    group: u32,
    id: u64,
}

impl Engine {
    fn new() -> Engine {
        let sh = Arc::new(Shared {
            ready: (0..LEVELS).map(|_| ReadyRing::new()).collect(),
            paused: AtomicBool::new(false),
            full: std::env::var_os("LANE_FULL").is_some(),
            full_worker: std::env::var("LANE_FULL").map_or(false, |v| v != "host"),
            full_host: std::env::var("LANE_FULL").map_or(false, |v| v != "worker"),
            claiming: (0..WORKERS).map(|_| Line(AtomicBool::new(false))).collect(),
            current: (0..WORKERS).map(|_| Line(AtomicU64::new(0))).collect(),
            ids: Line(AtomicU64::new(0)),
            live: (0..16).map(|_| Line(AtomicU64::new(0))).collect(),
            done: (0..WORKERS)
                .map(|_| DoneRing {
                    head: Line(AtomicUsize::new(0)),
                    tail: Line(AtomicUsize::new(0)),
                    slots: (0..DONE_CAP).map(|_| UnsafeCell::new(0)).collect(),
                })
                .collect(),
            asleep: (0..WORKERS).map(|_| Line(AtomicBool::new(false))).collect(),
            host_asleep: Line(AtomicBool::new(false)),
            host: std::thread::current(),
            stop: AtomicBool::new(false),
        });
        let joins: Vec<JoinHandle<()>> = (0..WORKERS)
            .map(|w| {
                let sh = Arc::clone(&sh);
                std::thread::spawn(move || worker(&sh, w))
            })
            .collect();
        let threads = joins.iter().map(|j| j.thread().clone()).collect();
        Engine {
            sh,
            lock: std::env::var_os("LANE_LOCK").map(|_| std::sync::Mutex::new(())),
            threads,
            joins,
            next_id: 0,
            first_chunk: 0,
            chunks: VecDeque::new(),
            spares: Vec::new(),
            group_live: vec![0; 16],
            done_heads: vec![0; WORKERS],
        }
    }

    #[inline]
    fn add(&mut self, run: TaskFn, data: *mut c_void, free: Option<FreeFn>, group: u32, priority: usize) -> u64 {
        let guard = self.lock.as_ref().map(|l| l.lock().unwrap());
        let id = self.next_id;
        self.next_id += 1;
        if self.sh.full_host {
            let atomic_id = self.sh.ids.0.fetch_add(1, Ordering::Relaxed);
            debug_assert_eq!(atomic_id, id);
            self.sh.live[group as usize].0.fetch_add(1, Ordering::Relaxed);
        }
        let slot = id as usize % CHUNK;
        if slot == 0 {
            let c = self.spares.pop().unwrap_or_else(|| (0..CHUNK).map(|_| Rec::default()).collect());
            self.chunks.push_back((c, 0));
        }
        let rec: *const Rec = &self.chunks.back().unwrap().0[slot];
        // SAFETY: the record is free (its chunk is new or recycled after
        // every record in it was polled), and no worker sees it before the
        // release store of the ready tail below.
        unsafe {
            *(*rec).group.get() = group;
            *(*rec).id.get() = id;
            *(*rec).run.get() = Some(run);
            *(*rec).data.get() = data;
            *(*rec).free.get() = free;
            (*rec).state.store(QUEUED, Ordering::Relaxed);
        }
        self.group_live[group as usize] += 1;
        while !self.sh.ready[LEVELS - 1 - priority].push(rec as *mut Rec) {
            std::thread::yield_now();
        }
        drop(guard);
        // Wake one sleeping worker (Dekker: the worker sets its flag, then
        // reads the tail; the host writes the tail, then reads the flags).
        fence(Ordering::SeqCst);
        for (w, a) in self.sh.asleep.iter().enumerate() {
            if a.0.load(Ordering::Relaxed) && a.0.swap(false, Ordering::AcqRel) {
                self.threads[w].unpark();
                break;
            }
        }
        id
    }

    /// Writes up to `out.len()` events; returns how many.
    fn poll(&mut self, out: &mut [Event]) -> usize {
        if !self.has_done() {
            return 0; // a poll with nothing to do takes no lock, as btm's
        }
        let lock = self.lock.take();
        let guard = lock.as_ref().map(|l| l.lock().unwrap());
        let n = self.poll_locked(out);
        drop(guard);
        self.lock = lock;
        n
    }

    fn poll_locked(&mut self, out: &mut [Event]) -> usize {
        let mut n = 0;
        for w in 0..WORKERS {
            let ring = &self.sh.done[w];
            let t = ring.tail.0.load(Ordering::Acquire);
            let mut h = self.done_heads[w];
            while h < t && n < out.len() {
                // SAFETY: published by the worker's release store of `t`.
                let id = unsafe { *ring.slots[h % DONE_CAP].get() };
                h += 1;
                let ci = (id / CHUNK as u64 - self.first_chunk) as usize;
                let chunk = &mut self.chunks[ci];
                let rec = &chunk.0[id as usize % CHUNK];
                debug_assert_eq!(rec.state.load(Ordering::Relaxed), DONE);
                // SAFETY: the worker is done with the record (it published
                // its id after its last access).
                let (group, data, free) = unsafe { (*rec.group.get(), *rec.data.get(), *rec.free.get()) };
                if let Some(f) = free {
                    f(data);
                }
                rec.state.store(0, Ordering::Relaxed);
                chunk.1 += 1;
                self.group_live[group as usize] -= 1;
                if self.sh.full_host {
                    self.sh.live[group as usize].0.fetch_sub(1, Ordering::Relaxed);
                }
                out[n] = Event { kind: 1, group, id };
                n += 1;
            }
            self.done_heads[w] = h;
            ring.head.0.store(h, Ordering::Release);
        }
        // Recycle fully polled chunks from the front (ids complete roughly
        // in order).
        while let Some((_, done)) = self.chunks.front() {
            let fully_issued = self.next_id >= (self.first_chunk + 1) * CHUNK as u64;
            if *done as usize == CHUNK && fully_issued {
                let (c, _) = self.chunks.pop_front().unwrap();
                self.first_chunk += 1;
                if self.spares.len() < 2 {
                    self.spares.push(c);
                }
            } else {
                break;
            }
        }
        n
    }

    fn has_done(&self) -> bool {
        (0..WORKERS).any(|w| self.sh.done[w].tail.0.load(Ordering::Acquire) != self.done_heads[w])
    }

    /// Polls until `want` events were seen, sleeping when there are none.
    fn drain(&mut self, want: usize, buf: &mut [Event]) {
        let mut seen = 0;
        while seen < want {
            let n = self.poll(buf);
            seen += n;
            if n > 0 {
                continue;
            }
            if self.spin_host() {
                continue;
            }
            self.sh.host_asleep.0.store(true, Ordering::SeqCst);
            if self.has_done() {
                self.sh.host_asleep.0.store(false, Ordering::Relaxed);
                continue;
            }
            while self.sh.host_asleep.0.load(Ordering::Acquire) {
                std::thread::park();
            }
        }
    }

    fn spin_host(&self) -> bool {
        for _ in 0..HOST_SPINS {
            if self.has_done() {
                return true;
            }
            std::hint::spin_loop();
        }
        for _ in 0..HOST_YIELDS {
            if self.has_done() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::SeqCst);
        for (w, t) in self.threads.iter().enumerate() {
            self.sh.asleep[w].0.store(false, Ordering::SeqCst);
            t.unpark();
        }
        for j in self.joins.drain(..) {
            j.join().unwrap();
        }
    }
}

/// Takes the next queued record of the highest level, or `None`.
#[inline]
fn take(sh: &Shared, w: usize) -> Option<*mut Rec> {
    if sh.full_worker {
        sh.claiming[w].0.store(true, Ordering::SeqCst);
    }
    let rec = if sh.paused.load(Ordering::SeqCst) { None } else { sh.ready.iter().find_map(|r| r.pop()) };
    if sh.full_worker {
        sh.claiming[w].0.store(false, Ordering::Release);
    }
    rec
}

fn has_work(sh: &Shared) -> bool {
    sh.ready.iter().any(|r| !r.looks_empty())
}

fn worker(sh: &Shared, w: usize) {
    let done = &sh.done[w];
    let mut tail = 0usize;
    loop {
        if let Some(rec) = take(sh, w) {
            // SAFETY: published by the host's release store of the tail; the
            // compare-and-swap below makes this worker its only runner.
            let rec = unsafe { &*rec };
            if rec.state.compare_exchange(QUEUED, RUNNING, Ordering::Acquire, Ordering::Relaxed).is_err() {
                continue; // cancelled (a stop would do that)
            }
            let (run, data, id) = unsafe { ((*rec.run.get()).unwrap(), *rec.data.get(), *rec.id.get()) };
            if sh.full_worker {
                sh.current[w].0.store(id, Ordering::Relaxed);
            }
            run(data);
            rec.state.store(DONE, Ordering::Relaxed);
            while tail - done.head.0.load(Ordering::Acquire) >= DONE_CAP {
                std::thread::yield_now();
            }
            // SAFETY: this worker is the ring's only producer; the slot is
            // free (checked against the host's head above).
            unsafe { *done.slots[tail % DONE_CAP].get() = id };
            tail += 1;
            done.tail.0.store(tail, Ordering::Release);
            fence(Ordering::SeqCst);
            if sh.host_asleep.0.load(Ordering::Relaxed) && sh.host_asleep.0.swap(false, Ordering::AcqRel) {
                sh.host.unpark();
            }
            continue;
        }
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        if spin_worker(sh) {
            continue;
        }
        sh.asleep[w].0.store(true, Ordering::SeqCst);
        if has_work(sh) || sh.stop.load(Ordering::Relaxed) {
            sh.asleep[w].0.store(false, Ordering::Relaxed);
            continue;
        }
        while sh.asleep[w].0.load(Ordering::Acquire) {
            std::thread::park();
        }
    }
}

fn spin_worker(sh: &Shared) -> bool {
    let has = || has_work(sh);
    for _ in 0..WORKER_SPINS {
        if has() {
            return true;
        }
        std::hint::spin_loop();
    }
    for _ in 0..WORKER_YIELDS {
        if has() {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || (args[1] != "w1" && args[1] != "w6") {
        eprintln!("usage: lockfree_lane <w1|w6> <N>");
        std::process::exit(2);
    }
    let levels = if args[1] == "w6" { LEVELS } else { 1 };
    let n: usize = args[2].parse().expect("N");
    let f = std::hint::black_box(bench_task as TaskFn);
    let mut e = Engine::new();
    let mut buf = vec![Event::default(); 4096];
    for _ in 0..WARMUP {
        e.add(f, std::ptr::null_mut(), None, 1, 0);
    }
    e.drain(WARMUP, &mut buf);
    let t0 = Instant::now();
    for i in 0..n {
        e.add(f, std::ptr::null_mut(), None, 1, i % levels);
    }
    e.drain(n, &mut buf);
    let ns = t0.elapsed().as_nanos() as f64;
    assert_eq!(e.group_live[1], 0);
    println!(
        "{{\"peer\":\"lockfree_lane\",\"workload\":\"{}\",\"n\":{n},\"ns_per_task\":{:.1},\"ms\":{:.3}}}",
        args[1],
        ns / n as f64,
        ns / 1e6
    );
}
