//! Test harness over the engine: Rust closures as tasks, boxed `i64`
//! results, live-allocation counters proving every free function ran exactly
//! once, and events copied into owned values.
#![allow(dead_code)]

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use btm::engine::{Config, EventKind, Failure, GroupKey, Job, Manager, Owned, RawSignal, TaskContext};

/// Userdata and results allocated and not yet freed, across all tests of
/// one binary (each test checks its own delta via `Counters`).
pub static LIVE_USERDATA: AtomicI64 = AtomicI64::new(0);
pub static LIVE_RESULTS: AtomicI64 = AtomicI64::new(0);

pub type Body = Box<dyn FnOnce(&mut TaskContext) + Send>;

unsafe extern "C" fn trampoline(userdata: *mut c_void, ctx: *mut TaskContext) {
    // SAFETY: `userdata` is the `Box<Option<Body>>` made by `job`.
    let slot = unsafe { &mut *(userdata as *mut Option<Body>) };
    if let Some(f) = slot.take() {
        // SAFETY: the context is valid for the duration of the call.
        f(unsafe { &mut *ctx });
    }
}

unsafe extern "C" fn free_body(userdata: *mut c_void) {
    // SAFETY: made by `job` with Box::into_raw.
    drop(unsafe { Box::from_raw(userdata as *mut Option<Body>) });
    LIVE_USERDATA.fetch_sub(1, Ordering::SeqCst);
}

unsafe extern "C" fn free_i64(data: *mut c_void) {
    // SAFETY: made by `value` with Box::into_raw.
    drop(unsafe { Box::from_raw(data as *mut i64) });
    LIVE_RESULTS.fetch_sub(1, Ordering::SeqCst);
}

/// A job running `f`.
pub fn job(f: impl FnOnce(&mut TaskContext) + Send + 'static) -> Job {
    let body: Box<Option<Body>> = Box::new(Some(Box::new(f)));
    LIVE_USERDATA.fetch_add(1, Ordering::SeqCst);
    Job::task(trampoline, Owned::new(Box::into_raw(body).cast(), Some(free_body)))
}

/// An owned boxed `i64` (a result or payload).
pub fn value(v: i64) -> Owned {
    LIVE_RESULTS.fetch_add(1, Ordering::SeqCst);
    Owned::new(Box::into_raw(Box::new(v)).cast(), Some(free_i64))
}

/// Reads the i64 behind a value pointer.
pub fn read(data: *mut c_void) -> i64 {
    // SAFETY: every value in these tests is a boxed i64 alive while read.
    unsafe { *(data as *const i64) }
}

/// Upstream values seen by a task: (producer id, value).
pub fn upstream(ctx: &TaskContext) -> Vec<(u64, i64)> {
    ctx.upstream().iter().map(|v| (v.task_id, read(v.data))).collect()
}

#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    Completed { id: u64, group: GroupKey, values: Vec<(u64, i64)> },
    Failed { id: u64, group: GroupKey, message: String, details: String },
    GroupFinished { group: GroupKey },
    Progress { id: u64, fraction: f64, message: Option<String> },
}

impl Ev {
    pub fn task(&self) -> Option<u64> {
        match self {
            Ev::Completed { id, .. } | Ev::Failed { id, .. } | Ev::Progress { id, .. } => Some(*id),
            Ev::GroupFinished { .. } => None,
        }
    }
}

pub fn manager(max_threads: usize, start: bool) -> Arc<Manager> {
    Manager::new(Config { max_threads, start_processing: start, thread_hooks: None }).expect("manager")
}

fn cstr(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: event strings are valid until the next poll.
    (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Polls once (capacity `cap`), copying events out.
pub fn poll_n(m: &Arc<Manager>, cap: usize) -> Vec<Ev> {
    let mut out = Vec::new();
    m.poll(cap, |e| {
        out.push(match e.kind {
            EventKind::Completed => {
                let values = if e.value_count == 0 {
                    vec![]
                } else {
                    // SAFETY: valid until the next poll.
                    unsafe { std::slice::from_raw_parts(e.values, e.value_count) }
                        .iter()
                        .map(|v| (v.task_id, read(v.data)))
                        .collect()
                };
                Ev::Completed { id: e.task_id, group: e.group, values }
            }
            EventKind::Failed => Ev::Failed {
                id: e.task_id,
                group: e.group,
                message: cstr(e.message).unwrap_or_default(),
                details: cstr(e.details).unwrap_or_default(),
            },
            EventKind::GroupFinished => Ev::GroupFinished { group: e.group },
            EventKind::Progress => Ev::Progress { id: e.task_id, fraction: e.progress, message: cstr(e.message) },
        })
    });
    out
}

pub fn poll(m: &Arc<Manager>) -> Vec<Ev> {
    poll_n(m, 1024)
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Polls until `n` final events (completed/failed) arrived; returns every
/// event seen. Panics after `TIMEOUT`.
pub fn collect_finals(m: &Arc<Manager>, n: usize) -> Vec<Ev> {
    let deadline = Instant::now() + TIMEOUT;
    let mut all = Vec::new();
    let finals = |v: &Vec<Ev>| v.iter().filter(|e| matches!(e, Ev::Completed { .. } | Ev::Failed { .. })).count();
    while finals(&all) < n {
        assert!(Instant::now() < deadline, "timed out waiting for {n} final events; got {all:?}");
        let _ = m.wait_events(Some(Duration::from_millis(50)));
        all.extend(poll(m));
    }
    all
}

/// Waits until the manager has nothing queued, blocked or running, then
/// returns every remaining event.
pub fn drain(m: &Arc<Manager>) -> Vec<Ev> {
    m.wait_idle(Some(TIMEOUT)).expect("idle in time");
    let mut all = Vec::new();
    loop {
        let got = poll(m);
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// Waits until `cond` holds, panicking after `TIMEOUT`.
pub fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A gate tasks block on until the test opens it, and which records that
/// a task reached it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<(bool, usize)>, Condvar)>);

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }
    /// Called by a task: announces arrival, blocks until opened.
    pub fn pass(&self) {
        let (lock, cv) = &*self.0;
        let mut g = lock.lock().unwrap();
        g.1 += 1;
        cv.notify_all();
        while !g.0 {
            g = cv.wait(g).unwrap();
        }
    }
    pub fn arrived(&self) -> usize {
        self.0 .0.lock().unwrap().1
    }
    pub fn wait_arrivals(&self, n: usize) {
        let (lock, cv) = &*self.0;
        let deadline = Instant::now() + TIMEOUT;
        let mut g = lock.lock().unwrap();
        while g.1 < n {
            assert!(Instant::now() < deadline, "timed out waiting for {n} tasks at the gate");
            g = cv.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
        }
    }
    pub fn open(&self) {
        let (lock, cv) = &*self.0;
        lock.lock().unwrap().0 = true;
        cv.notify_all();
    }
}

/// A shared log of task runs, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<i64>>>);

impl Log {
    pub fn push(&self, v: i64) {
        self.0.lock().unwrap().push(v);
    }
    pub fn get(&self) -> Vec<i64> {
        self.0.lock().unwrap().clone()
    }
}

/// A task that logs `tag` and returns `tag` as its result.
pub fn logging(log: &Log, tag: i64) -> Job {
    let log = log.clone();
    job(move |ctx| {
        log.push(tag);
        ctx.set_result(value(tag));
    })
}

pub fn failing(message: &str, details: &str) -> Job {
    let (m, d) = (message.to_owned(), details.to_owned());
    job(move |ctx| ctx.fail(Failure::new(m.as_bytes(), d.as_bytes())))
}

pub fn nop() -> Job {
    job(|_| {})
}

pub const DEFAULT: GroupKey = GroupKey::DEFAULT;

pub fn g(n: u64) -> GroupKey {
    GroupKey::numbered(n)
}

/// Asserts every userdata and result allocated by this process's tests has
/// been freed. Only meaningful in test binaries whose tests run serially
/// (see `serial`).
pub fn assert_all_freed() {
    wait_until("every free function to run", || {
        LIVE_USERDATA.load(Ordering::SeqCst) == 0 && LIVE_RESULTS.load(Ordering::SeqCst) == 0
    });
}

/// Tests share the global counters: run them one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// True once `fd` (from `Manager::event_fd`) is readable, waiting up to
/// `ms` milliseconds (Windows: once the event object is signalled).
#[cfg(unix)]
pub fn wait_readable(fd: RawSignal, ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

/// True once `fd` (from `Manager::event_fd`) is readable, waiting up to
/// `ms` milliseconds (Windows: once the event object is signalled).
#[cfg(windows)]
pub fn wait_readable(fd: RawSignal, ms: i32) -> bool {
    #[link(name = "kernel32")]
    extern "system" {
        fn WaitForSingleObject(handle: *mut c_void, ms: u32) -> u32;
    }
    // SAFETY: a live event handle owned by the manager.
    unsafe { WaitForSingleObject(fd, ms as u32) == 0 }
}

/// Shuts the manager down, drops it and checks that every userdata and
/// result was freed.
pub fn finish(m: Arc<Manager>) {
    m.shut_down(Some(TIMEOUT)).expect("shut down in time");
    drop(m);
    assert_all_freed();
}

/// The ids of the final events (completed or failed), in order.
pub fn finals(evs: &[Ev]) -> Vec<u64> {
    evs.iter().filter(|e| matches!(e, Ev::Completed { .. } | Ev::Failed { .. })).filter_map(Ev::task).collect()
}

/// Task starts counted by [`count_start`], a task hook.
pub static HOOK_STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An `on_start` task hook that counts in [`HOOK_STARTS`].
pub unsafe extern "C" fn count_start(_: *mut c_void, _: u64, _: u32, _: u64, _: u32) {
    HOOK_STARTS.fetch_add(1, Ordering::SeqCst);
}

/// A small deterministic generator (splitmix64) for the randomised tests:
/// a seed replays its case.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough below `n` (> 0) for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Entries per lane level's ring (`lane::CAP`): tasks added behind that
/// many queued ones of their priority wait in the level's overflow.
pub const RING: usize = 16_384;

/// Lane tasks counted as linked, and ring entries marked linked (see
/// `Manager::lane_linked_for_tests`, `Manager::lane_marked_for_tests`).
pub fn linked(m: &Manager) -> (usize, usize) {
    (m.lane_linked_for_tests(), m.lane_marked_for_tests())
}

/// Adds a task (to `group`) that blocks its worker on the returned gate,
/// and waits until it does.
pub fn occupy_a_worker(m: &Arc<Manager>, group: GroupKey) -> Gate {
    let gate = Gate::new();
    let gc = gate.clone();
    m.add(job(move |_| gc.pass()), 0, group, &[]).unwrap();
    gate.wait_arrivals(1);
    gate
}

/// The running task of the window tests (`tests/moved_lane_entry.rs`,
/// `tests/priority_change.rs`): marks `started`, spins until `go`, spins
/// `delay` more, then stamps `end` from `clock`, so that the moment it
/// returns can be swept across a host's lock section.
pub fn returns_after(
    go: &Arc<AtomicBool>,
    started: &Arc<AtomicBool>,
    delay: Duration,
    clock: &Arc<AtomicU64>,
    end: &Arc<AtomicU64>,
) -> Job {
    let (g, s, c, e) = (go.clone(), started.clone(), clock.clone(), end.clone());
    job(move |_| {
        s.store(true, Ordering::SeqCst);
        while !g.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        while t.elapsed() < delay {
            std::hint::spin_loop();
        }
        e.store(c.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
    })
}

/// The lane's levels made per manager (`lane::LEVELS`).
pub const LANE_LEVELS: i32 = 8;

/// Waits until no worker is in its lane loop (they leave it a few
/// microseconds after the lane empties), when an empty lane level may be
/// given to a new priority.
pub fn workers_off_the_lane(m: &Manager) {
    wait_until("the workers to leave their lane loop", || m.workers_in_lane_for_tests() == 0);
}

/// Runs one task of each priority in `prios` (making their lane levels)
/// and waits for their finals and for the workers to leave the lane.
pub fn use_priorities(m: &Arc<Manager>, prios: impl Iterator<Item = i32>) {
    let mut n = 0;
    for p in prios {
        m.add(nop(), p, DEFAULT, &[]).unwrap();
        n += 1;
    }
    collect_finals(m, n);
    workers_off_the_lane(m);
}

/// A task on the locked path that blocks the (only) worker until the gate
/// opens: added while paused, so that the worker runs it outside its lane
/// loop and empty levels can be given away meanwhile.
pub fn occupy_off_the_lane(m: &Arc<Manager>, priority: i32) -> Gate {
    let gate = Gate::new();
    let gc = gate.clone();
    m.pause_processing().unwrap();
    let before = m.lane_added_for_tests();
    m.add(job(move |_| gc.pass()), priority, DEFAULT, &[]).unwrap();
    assert_eq!(m.lane_added_for_tests(), before, "a paused manager's add takes the locked path");
    m.start_processing().unwrap();
    gate.wait_arrivals(1);
    assert_eq!(m.workers_in_lane_for_tests(), 0);
    gate
}

/// The manager of the running task (from inside it), as an owned
/// reference.
pub fn manager_of(ctx: &TaskContext) -> Arc<Manager> {
    // SAFETY: valid while the task runs; this takes a reference of its own.
    unsafe {
        let p = ctx.manager();
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}
