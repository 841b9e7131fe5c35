//! Adversarial concurrency hammer (engine review): several host threads mix
//! single adds and `add_many` batches at eleven priorities (more than the
//! lane's eight levels) and, one task in ten, a spread of 2,000, fan-outs, fan-ins, chains and pass-throughs, stops
//! with every flag, group stops, `set_priority`, pause/resume, failures and
//! `set_max_threads` against busy workers, while one thread polls. Each task
//! is tracked individually (its free function, runs, start/end stamps of
//! one SeqCst clock, the upstream values it saw, its final events).
//!
//! Tasks are in three worlds so that the stops cannot reach everything:
//! - safe: never stopped (no stop reaches them: no victim is upstream of a
//!   safe task, and stops that walk upstream start only in the pure world);
//!   each gets exactly one final event, failing iff a live upstream failed
//!   (or itself); groups of safe tasks are held open by a latch task until
//!   all members are added, so each finishes exactly once.
//! - pure victims: only pure upstream tasks; stopped with any flags.
//! - mixed victims: safe or mixed upstream tasks; stopped with `up = false`.
//!
//! Environment: `BTM_HAMMER_ROUNDS` (default 4), `BTM_HAMMER_OPS` (per host
//! thread per round, default 1500), `BTM_HAMMER_SEED`, `BTM_HAMMER_MODE`
//! (`all`, or one of `plain`, `stopall`, `shutdown`).
mod common;

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btm::engine::{
    Config, Error, EventKind, Failure, GroupKey, Job, Manager, NewTask, Notify, Owned, StopReport, TaskContext,
    TaskHooks, IN_BATCH,
};

static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);
unsafe extern "C" fn hook(_: *mut c_void, _: u64, _: u32, _: u64, _: u32) {
    HOOK_CALLS.fetch_add(1, SeqCst);
}
unsafe extern "C" fn notify(_: *mut c_void) {
    HOOK_CALLS.fetch_add(1, SeqCst);
}
use common::Rng;

static CLOCK: AtomicU64 = AtomicU64::new(1);
fn stamp() -> u64 {
    CLOCK.fetch_add(1, SeqCst)
}

const PRIOS: [i32; 11] = [-5, 0, 1, 2, 3, 4, 5, 6, 7, 9, 100];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum World {
    Safe,
    Pure,
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Run,
    Pass,
    Latch,
}

struct Info {
    world: World,
    kind: Kind,
    fails: bool,
    spin_ns: u64,
    group: GroupKey,
    latch: Option<Arc<AtomicBool>>,
    id: AtomicU64,
    /// Upstream ids (resolved), set after the add returned.
    ups: Mutex<Vec<u64>>,
    add_start: AtomicU64,
    add_end: AtomicU64,
    runs: AtomicU32,
    ran_as: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
    freed: AtomicU32,
    /// The userdata was freed on a worker thread.
    freed_on_worker: AtomicBool,
    payload_freed: AtomicU32,
    result_freed: AtomicU32,
    seen: Mutex<Vec<u64>>,
    /// Priority changes that returned Ok: (start, end, priority).
    prio_changes: Mutex<Vec<(u64, u64, i32)>>,
    prio: i32,
    batch: AtomicBool,
}

static PAUSES: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

impl Info {
    fn new(world: World, kind: Kind, fails: bool, prio: i32, group: GroupKey, rng: &mut Rng) -> Arc<Info> {
        Arc::new(Info {
            world,
            kind,
            fails,
            spin_ns: [0, 200, 1000, 3000, 20000][rng.below(5) as usize],
            group,
            latch: None,
            id: AtomicU64::new(0),
            ups: Mutex::new(Vec::new()),
            add_start: AtomicU64::new(0),
            add_end: AtomicU64::new(0),
            runs: AtomicU32::new(0),
            ran_as: AtomicU64::new(0),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            freed: AtomicU32::new(0),
            freed_on_worker: AtomicBool::new(false),
            payload_freed: AtomicU32::new(0),
            result_freed: AtomicU32::new(0),
            seen: Mutex::new(Vec::new()),
            prio_changes: Mutex::new(Vec::new()),
            prio,
            batch: AtomicBool::new(false),
        })
    }
}

#[repr(C)]
struct Boxed {
    v: i64,
    info: Arc<Info>,
    payload: bool,
}

unsafe extern "C" fn free_boxed(p: *mut c_void) {
    let b = unsafe { Box::from_raw(p as *mut Boxed) };
    if b.payload {
        b.info.payload_freed.fetch_add(1, SeqCst);
    } else {
        b.info.result_freed.fetch_add(1, SeqCst);
    }
}

fn boxed(v: i64, info: &Arc<Info>, payload: bool) -> Owned {
    let p = Box::into_raw(Box::new(Boxed { v, info: info.clone(), payload }));
    Owned::new(p.cast(), Some(free_boxed))
}

struct Ud {
    info: Arc<Info>,
}

unsafe extern "C" fn free_ud(p: *mut c_void) {
    let b = unsafe { Box::from_raw(p as *mut Ud) };
    if std::thread::current().name().is_some_and(|n| n.starts_with("btm-worker")) {
        b.info.freed_on_worker.store(true, SeqCst);
    }
    b.info.freed.fetch_add(1, SeqCst);
}

unsafe extern "C" fn run_task(p: *mut c_void, ctx: *mut TaskContext) {
    let ud = unsafe { &*(p as *const Ud) };
    let ctx = unsafe { &mut *ctx };
    let info = &ud.info;
    info.start.store(stamp(), SeqCst);
    info.runs.fetch_add(1, SeqCst);
    info.ran_as.store(ctx.task_id(), SeqCst);
    {
        let mut seen = info.seen.lock().unwrap();
        for v in ctx.upstream() {
            seen.push(v.task_id);
            let b = unsafe { &*(v.data as *const Boxed) };
            if !b.payload && b.v as u64 != v.task_id {
                seen.push(u64::MAX); // a value that does not name its producer
            }
        }
    }
    if let Some(l) = &info.latch {
        let t = Instant::now();
        while !l.load(SeqCst) {
            if t.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    } else if info.spin_ns > 0 {
        let t = Instant::now();
        while t.elapsed() < Duration::from_nanos(info.spin_ns) {
            std::hint::spin_loop();
        }
    }
    if info.fails {
        ctx.fail(Failure::new(format!("fail {}", ctx.task_id()).as_bytes(), b"d"));
    } else {
        ctx.set_result(boxed(ctx.task_id() as i64, info, false));
    }
    info.end.store(stamp(), SeqCst);
}

fn make_job(info: &Arc<Info>) -> Job {
    match info.kind {
        Kind::Pass => Job::pass_through(boxed(0, info, true)),
        _ => Job::task(run_task, Owned::new(Box::into_raw(Box::new(Ud { info: info.clone() })).cast(), Some(free_ud))),
    }
}

#[derive(Clone, Copy, Debug)]
enum StopKind {
    Task(u64, bool, bool),
    Group(GroupKey, bool, bool),
    All,
    ShutDown,
}

#[derive(Clone, Copy, Debug)]
struct StopRec {
    kind: StopKind,
    start: u64,
    end: u64,
    result: Result<StopReport, Error>,
}

#[derive(Clone, Debug)]
struct EvRec {
    kind: EventKind,
    id: u64,
    group: GroupKey,
    // Read only through `Debug`, in the failure reports.
    #[allow(dead_code)]
    values: Vec<u64>,
    #[allow(dead_code)]
    message: String,
    poll_start: u64,
    poll_end: u64,
}

#[derive(Default)]
struct Shared {
    tasks: Mutex<HashMap<u64, Arc<Info>>>,
    /// Infos whose add failed (must still be freed exactly once).
    rejected: Mutex<Vec<Arc<Info>>>,
    stops: Mutex<Vec<StopRec>>,
    events: Mutex<Vec<EvRec>>,
    /// Safe groups: key -> member ids (and whether the latch was released).
    safe_groups: Mutex<HashMap<GroupKey, Vec<u64>>>,
    latches: Mutex<Vec<Arc<AtomicBool>>>,
    done_hosts: AtomicUsize,
    shut: AtomicBool,
    shut_claimed: AtomicBool,
    ops: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    StopAll,
    ShutDown,
}

fn env(name: &str, d: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn dump_and_abort(m: &Arc<Manager>, what: &str) -> ! {
    eprintln!("HANG: {what}; stats {:?} pending {}", m.stats(), m.pending_events());
    let pid = std::process::id();
    let out = std::process::Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
        .output();
    if let Ok(o) = out {
        let path = format!("/tmp/hammer-hang-{pid}.txt");
        let _ = std::fs::write(&path, &o.stdout);
        eprintln!("thread dump in {path}");
    }
    std::process::abort();
}

struct Host {
    idx: u64,
    rng: Rng,
    m: Arc<Manager>,
    sh: Arc<Shared>,
    mode: Mode,
    recent_safe: Vec<u64>,
    recent_pure: Vec<u64>,
    recent_mixed: Vec<u64>,
    pure_groups: Vec<GroupKey>,
    mixed_groups: Vec<GroupKey>,
    cur_group: Option<(GroupKey, Arc<AtomicBool>, usize)>,
    group_seq: u64,
    /// One worker, priority order checked: no latches, no thread changes.
    order: bool,
}

impl Host {
    fn prio(&mut self) -> i32 {
        if self.rng.below(50) == 0 {
            return [i32::MIN, i32::MAX][self.rng.below(2) as usize];
        }
        if self.rng.below(10) == 0 {
            // A spread of rarely repeated priorities: the locked queue's
            // levels beyond its best one (a B-tree since session 36).
            return self.rng.below(2000) as i32 - 1000;
        }
        PRIOS[self.rng.below(PRIOS.len() as u64) as usize]
    }

    fn pick(list: &[u64], rng: &mut Rng, n: usize) -> Vec<u64> {
        let mut v = Vec::new();
        if list.is_empty() {
            return v;
        }
        for _ in 0..n {
            let k = list.len() as u64;
            // Mostly recent, sometimes old: fan-outs on popular ones.
            let i = if rng.below(3) == 0 { rng.below(k.min(4)) } else { rng.below(k) };
            v.push(list[(k - 1 - i) as usize]);
        }
        v
    }

    fn remember(&mut self, world: World, id: u64) {
        let l = match world {
            World::Safe => &mut self.recent_safe,
            World::Pure => &mut self.recent_pure,
            World::Mixed => &mut self.recent_mixed,
        };
        l.push(id);
        if l.len() > 64 {
            l.drain(..32);
        }
    }

    /// The current safe group (opening one with its latch when needed).
    fn safe_group(&mut self) -> Option<GroupKey> {
        if self.order {
            let key = GroupKey::numbered(self.idx << 40);
            self.sh.safe_groups.lock().unwrap().entry(key).or_default();
            return Some(key);
        }
        if self.cur_group.is_none() {
            self.group_seq += 1;
            let key = GroupKey::numbered((self.idx << 40) | self.group_seq);
            let flag = Arc::new(AtomicBool::new(false));
            let mut info = Info::new(World::Safe, Kind::Latch, false, self.prio(), key, &mut self.rng);
            Arc::get_mut(&mut info).unwrap().latch = Some(flag.clone());
            let id = self.add_one(&info, &[])?;
            self.sh.latches.lock().unwrap().push(flag.clone());
            self.sh.safe_groups.lock().unwrap().insert(key, vec![id]);
            self.cur_group = Some((key, flag, 2 + self.rng.below(40) as usize));
        }
        Some(self.cur_group.as_ref().unwrap().0)
    }

    fn close_group_maybe(&mut self) {
        if let Some((_, flag, left)) = &mut self.cur_group {
            *left = left.saturating_sub(1);
            if *left == 0 {
                flag.store(true, SeqCst);
                self.cur_group = None;
            }
        }
    }

    fn add_one(&mut self, info: &Arc<Info>, ups: &[u64]) -> Option<u64> {
        let job = make_job(info);
        info.add_start.store(stamp(), SeqCst);
        let r = self.m.add(job, info.prio, info.group, ups);
        let end = stamp();
        info.add_end.store(end, SeqCst);
        match r {
            Ok(id) => {
                info.id.store(id, SeqCst);
                *info.ups.lock().unwrap() = ups.to_vec();
                self.sh.tasks.lock().unwrap().insert(id, info.clone());
                Some(id)
            }
            Err(e) => {
                assert!(self.mode == Mode::ShutDown && e == Error::ShutDown, "add failed: {e:?} (ups {ups:?})");
                self.sh.rejected.lock().unwrap().push(info.clone());
                None
            }
        }
    }

    fn world(&mut self) -> World {
        match self.rng.below(10) {
            0..=4 => World::Safe,
            5..=7 => World::Mixed,
            _ => World::Pure,
        }
    }

    fn ups_for(&mut self, world: World, n: usize) -> Vec<u64> {
        let mut ups = Vec::new();
        for _ in 0..n {
            let from = match world {
                World::Safe => 0,
                World::Pure => 2,
                World::Mixed => self.rng.below(2),
            };
            let list = match from {
                0 => &self.recent_safe,
                1 => &self.recent_mixed,
                _ => &self.recent_pure,
            };
            ups.extend(Self::pick(list, &mut self.rng, 1));
        }
        ups
    }

    fn victim_group(&mut self, world: World) -> GroupKey {
        let l = if world == World::Pure { &mut self.pure_groups } else { &mut self.mixed_groups };
        if l.is_empty() || self.rng.below(20) == 0 {
            self.group_seq += 1;
            let tag = if world == World::Pure { 1u64 << 38 } else { 1u64 << 39 };
            l.push(GroupKey::numbered((self.idx << 40) | tag | self.group_seq));
            if l.len() > 6 {
                l.remove(0);
            }
        }
        let k = l.len() as u64;
        l[self.rng.below(k) as usize]
    }

    fn new_info(&mut self, world: World) -> Option<Arc<Info>> {
        let kind = if self.rng.below(8) == 0 { Kind::Pass } else { Kind::Run };
        let fails = kind == Kind::Run && self.rng.below(60) == 0;
        let group = match world {
            World::Safe => self.safe_group()?,
            w => self.victim_group(w),
        };
        let p = self.prio();
        Some(Info::new(world, kind, fails, p, group, &mut self.rng))
    }

    fn op_add(&mut self) {
        let world = self.world();
        let n = match self.rng.below(10) {
            0..=3 => 0,
            4..=6 => 1,
            7..=8 => 2,
            _ => 3,
        };
        let ups = self.ups_for(world, n);
        let Some(info) = self.new_info(world) else { return };
        if let Some(id) = self.add_one(&info, &ups) {
            self.remember(world, id);
            if world == World::Safe {
                self.sh.safe_groups.lock().unwrap().get_mut(&info.group).unwrap().push(id);
                self.close_group_maybe();
            }
        }
    }

    fn op_fanout(&mut self) {
        // Many tasks on one upstream task, at several priorities.
        let world = if self.rng.below(2) == 0 { World::Safe } else { World::Mixed };
        let ups = self.ups_for(world, 1);
        for _ in 0..(5 + self.rng.below(30)) {
            let Some(info) = self.new_info(world) else { return };
            if let Some(id) = self.add_one(&info, &ups) {
                if world == World::Safe {
                    self.sh.safe_groups.lock().unwrap().get_mut(&info.group).unwrap().push(id);
                }
                if self.rng.below(4) == 0 {
                    self.remember(world, id);
                }
            }
        }
        if world == World::Safe {
            self.close_group_maybe();
        }
    }

    fn op_batch(&mut self) {
        let world = self.world();
        let n = 1 + self.rng.below(40) as usize;
        let one_prio = self.rng.below(3) == 0;
        let p0 = self.prio();
        let shape = self.rng.below(4); // 0 independent, 1 chain, 2 random graph, 3 fan-out on one
        let mut infos = Vec::new();
        let mut upss: Vec<Vec<u64>> = Vec::new();
        let root_ups = self.ups_for(world, 1);
        for j in 0..n {
            let Some(mut info) = self.new_info(world) else { return };
            if one_prio {
                Arc::get_mut(&mut info).unwrap().prio = p0;
            }
            if shape == 0 && info.kind == Kind::Pass && self.rng.below(2) == 0 {
                Arc::get_mut(&mut info).unwrap().kind = Kind::Run;
            }
            let ups: Vec<u64> = match shape {
                0 => vec![],
                1 => {
                    if j == 0 {
                        vec![]
                    } else {
                        vec![IN_BATCH | (j as u64 - 1)]
                    }
                }
                2 => {
                    let mut u = Vec::new();
                    for _ in 0..self.rng.below(3) {
                        if j > 0 && self.rng.below(2) == 0 {
                            u.push(IN_BATCH | self.rng.below(j as u64));
                        } else {
                            u.extend(self.ups_for(world, 1));
                        }
                    }
                    u
                }
                _ => root_ups.clone(),
            };
            infos.push(info);
            upss.push(ups);
        }
        let tasks: Vec<NewTask<'_>> = infos
            .iter()
            .zip(&upss)
            .map(|(i, u)| NewTask { job: make_job(i), priority: i.prio, group: i.group, upstream: u })
            .collect();
        let s = stamp();
        for i in &infos {
            i.add_start.store(s, SeqCst);
            i.batch.store(true, SeqCst);
        }
        let r = self.m.add_many(tasks);
        let e = stamp();
        match r {
            Ok(ids) => {
                let mut t = self.sh.tasks.lock().unwrap();
                for ((i, u), &id) in infos.iter().zip(&upss).zip(&ids) {
                    i.add_end.store(e, SeqCst);
                    i.id.store(id, SeqCst);
                    *i.ups.lock().unwrap() =
                        u.iter().map(|&x| if x & IN_BATCH != 0 { ids[(x & !IN_BATCH) as usize] } else { x }).collect();
                    t.insert(id, i.clone());
                }
                drop(t);
                for (i, &id) in infos.iter().zip(&ids) {
                    if world == World::Safe {
                        self.sh.safe_groups.lock().unwrap().get_mut(&i.group).unwrap().push(id);
                    }
                    if self.rng.below(3) == 0 {
                        self.remember(world, id);
                    }
                }
                if world == World::Safe {
                    self.close_group_maybe();
                }
            }
            Err(err) => {
                assert!(self.mode == Mode::ShutDown && err == Error::ShutDown, "batch failed: {err:?}");
                self.sh.rejected.lock().unwrap().extend(infos);
            }
        }
    }

    fn op_stop(&mut self) {
        let pure = self.rng.below(2) == 0;
        let (list, groups) =
            if pure { (&self.recent_pure, &self.pure_groups) } else { (&self.recent_mixed, &self.mixed_groups) };
        let up = pure && self.rng.below(2) == 0;
        let down = self.rng.below(2) == 0;
        let kind = if self.rng.below(4) == 0 {
            if groups.is_empty() {
                return;
            }
            StopKind::Group(groups[self.rng.below(groups.len() as u64) as usize], up, down)
        } else {
            let v = Self::pick(list, &mut self.rng, 1);
            let Some(&id) = v.first() else { return };
            StopKind::Task(id, up, down)
        };
        let start = stamp();
        let result = match kind {
            StopKind::Task(id, up, down) => self.m.stop_task(id, up, down),
            StopKind::Group(g, up, down) => self.m.stop_group(g, up, down),
            _ => unreachable!(),
        };
        let end = stamp();
        if let Err(e) = result {
            assert!(e == Error::NotFound || (self.mode == Mode::ShutDown && e == Error::ShutDown), "{e:?}");
        }
        self.sh.stops.lock().unwrap().push(StopRec { kind, start, end, result });
    }

    fn op_prio(&mut self) {
        let all: Vec<u64> =
            self.recent_safe.iter().chain(&self.recent_mixed).chain(&self.recent_pure).copied().collect();
        let v = Self::pick(&all, &mut self.rng, 1);
        let Some(&id) = v.first() else { return };
        let p = self.prio();
        let s = stamp();
        let r = self.m.set_priority(id, p);
        let e = stamp();
        if r.is_ok() {
            if let Some(i) = self.sh.tasks.lock().unwrap().get(&id) {
                i.prio_changes.lock().unwrap().push((s, e, p));
            }
        }
    }

    fn run(mut self, ops: u64) {
        for _ in 0..ops {
            if self.sh.shut.load(SeqCst) && self.rng.below(4) != 0 {
                // Keep adding a little after a shut down: rejected, freed.
            }
            let r = self.rng.below(1000);
            match r {
                0..=399 => self.op_add(),
                400..=469 => self.op_fanout(),
                470..=599 => self.op_batch(),
                600..=759 => self.op_stop(),
                760..=859 => self.op_prio(),
                860..=889 => {
                    let ps = stamp();
                    let _ = self.m.pause_processing();
                    std::thread::sleep(Duration::from_micros(self.rng.below(200)));
                    let _ = self.m.start_processing();
                    PAUSES.lock().unwrap().push((ps, stamp()));
                }
                890..=909 if !self.order => {
                    let _ = self.m.set_max_threads(1 + self.rng.below(4) as usize);
                }
                924..=933 => {
                    // Hooks close the lane; removing them opens it again.
                    let on = self.rng.below(2) == 0;
                    self.m.set_task_hooks(on.then(|| TaskHooks {
                        on_start: Some(hook),
                        on_end: Some(hook),
                        data: Owned::new(std::ptr::null_mut(), None),
                    }));
                }
                934..=938 => {
                    let on = self.rng.below(2) == 0;
                    self.m
                        .set_notify(on.then(|| Notify { func: notify, data: Owned::new(std::ptr::null_mut(), None) }));
                }
                910..=919 => {
                    let s = self.m.stats();
                    assert!(s.threads <= 1024);
                }
                920..=922 if self.mode == Mode::StopAll => {
                    let start = stamp();
                    let rep = self.m.stop_all();
                    let end = stamp();
                    self.sh.stops.lock().unwrap().push(StopRec { kind: StopKind::All, start, end, result: Ok(rep) });
                }
                923 if self.mode == Mode::ShutDown && !self.sh.shut_claimed.swap(true, SeqCst) => {
                    for l in self.sh.latches.lock().unwrap().iter() {
                        l.store(true, SeqCst);
                    }
                    let start = stamp();
                    let short = self.rng.below(2) == 0;
                    let t = if short { Duration::from_micros(self.rng.below(50)) } else { Duration::from_secs(10) };
                    let r = self.m.shut_down(Some(t));
                    let end = stamp();
                    self.sh.shut.store(true, SeqCst);
                    assert!(r.is_ok() || (short && matches!(r, Err((Error::TimedOut, _)))), "shut down: {r:?}");
                    self.sh.stops.lock().unwrap().push(StopRec {
                        kind: StopKind::ShutDown,
                        start,
                        end,
                        result: Ok(StopReport::default()),
                    });
                }
                _ => {
                    std::thread::sleep(Duration::from_micros(self.rng.below(30)));
                }
            }
            self.sh.ops.fetch_add(1, SeqCst);
        }
        if let Some((_, flag, _)) = self.cur_group.take() {
            flag.store(true, SeqCst);
        }
        self.sh.done_hosts.fetch_add(1, SeqCst);
    }
}

fn poller(m: Arc<Manager>, sh: Arc<Shared>, hosts: usize, seed: u64) {
    let mut rng = Rng(seed);
    let caps = [1usize, 2, 3, 7, 64, 1024];
    loop {
        let done = sh.done_hosts.load(SeqCst) == hosts;
        let _ = m.wait_events(Some(Duration::from_millis(2)));
        let cap = caps[rng.below(caps.len() as u64) as usize];
        let ps = stamp();
        let mut got = Vec::new();
        m.poll(cap, |e| {
            let values = if e.value_count == 0 {
                vec![]
            } else {
                unsafe { std::slice::from_raw_parts(e.values, e.value_count) }.iter().map(|v| v.task_id).collect()
            };
            let message = if e.message.is_null() {
                String::new()
            } else {
                unsafe { std::ffi::CStr::from_ptr(e.message) }.to_string_lossy().into_owned()
            };
            got.push((e.kind, e.task_id, e.group, values, message));
        });
        let pe = stamp();
        let n = got.len();
        let mut evs = sh.events.lock().unwrap();
        for (kind, id, group, values, message) in got {
            evs.push(EvRec { kind, id, group, values, message, poll_start: ps, poll_end: pe });
        }
        drop(evs);
        if done && n == 0 {
            return;
        }
    }
}

fn round(round: u64, seed: u64, mode: Mode, ops: u64, order: bool) {
    let workers = if order { 1 } else { [1usize, 2, 3, 4][(round % 4) as usize] };
    let m = Manager::new(Config { max_threads: workers, start_processing: true, thread_hooks: None }).unwrap();
    let sh = Arc::new(Shared::default());
    let hosts = 3usize;
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let m = m.clone();
        let sh = sh.clone();
        let finished = finished.clone();
        std::thread::spawn(move || {
            let mut last = (0, Instant::now());
            while !finished.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let o = sh.ops.load(SeqCst) + sh.events.lock().unwrap().len() as u64;
                if o != last.0 {
                    last = (o, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(60) {
                    dump_and_abort(&m, &format!("round {round} seed {seed}: no progress for 60 s"));
                }
            }
        })
    };
    let p = {
        let (m, sh) = (m.clone(), sh.clone());
        std::thread::spawn(move || poller(m, sh, hosts, seed ^ 0xabc))
    };
    let hs: Vec<_> = (0..hosts)
        .map(|i| {
            let h = Host {
                idx: i as u64 + 1,
                rng: Rng(seed.wrapping_mul(31).wrapping_add(i as u64 * 7919)),
                m: m.clone(),
                sh: sh.clone(),
                mode,
                recent_safe: vec![],
                recent_pure: vec![],
                recent_mixed: vec![],
                pure_groups: vec![],
                mixed_groups: vec![],
                cur_group: None,
                group_seq: 0,
                order,
            };
            std::thread::spawn(move || h.run(ops))
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    for l in sh.latches.lock().unwrap().iter() {
        l.store(true, SeqCst);
    }
    let shut = sh.shut.load(SeqCst);
    if !shut {
        m.start_processing().unwrap();
        if m.wait_idle(Some(Duration::from_secs(60))).is_err() {
            dump_and_abort(&m, &format!("round {round} seed {seed}: wait_idle timed out"));
        }
    }
    p.join().unwrap();
    // Drain what is left.
    loop {
        let ps = stamp();
        let mut got = Vec::new();
        m.poll(1024, |e| got.push((e.kind, e.task_id, e.group)));
        let _ = &got;
        let pe = stamp();
        if got.is_empty() {
            break;
        }
        let mut evs = sh.events.lock().unwrap();
        for (kind, id, group) in got {
            evs.push(EvRec { kind, id, group, values: vec![], message: String::new(), poll_start: ps, poll_end: pe });
        }
    }
    let stats = m.stats();
    let sd = if shut { Ok(()) } else { m.shut_down(Some(Duration::from_secs(30))) };
    if sd.is_err() {
        dump_and_abort(&m, &format!("round {round} seed {seed}: shut_down {sd:?}"));
    }
    drop(m);
    finished.store(true, SeqCst);
    watchdog.join().unwrap();
    check(round, seed, mode, &sh, stats, shut, order);
}

/// True if some task upstream of `id` (transitively) fails itself: `id`
/// may have failed through it (its userdata then freed where the failure
/// was applied, a worker) and been stopped after.
fn has_failing_ancestor(tasks: &HashMap<u64, Arc<Info>>, id: u64) -> bool {
    let mut stack = tasks[&id].ups.lock().unwrap().clone();
    let mut seen = HashSet::new();
    while let Some(u) = stack.pop() {
        if !seen.insert(u) {
            continue;
        }
        if let Some(ui) = tasks.get(&u) {
            if ui.fails {
                return true;
            }
            stack.extend(ui.ups.lock().unwrap().iter().copied());
        }
    }
    false
}

fn check(round: u64, seed: u64, mode: Mode, sh: &Shared, stats: btm::engine::Stats, shut: bool, order: bool) {
    let ctx = format!("round {round} seed {seed} mode {mode:?}");
    let mut errors: Vec<String> = Vec::new();
    let tasks = sh.tasks.lock().unwrap();
    let events = sh.events.lock().unwrap();
    let stops = sh.stops.lock().unwrap();
    // Frees are done once the manager is dropped; give stragglers a moment.
    let t = Instant::now();
    loop {
        let pending = tasks.values().chain(sh.rejected.lock().unwrap().iter()).any(|i| {
            i.freed.load(SeqCst) == 0 && i.kind != Kind::Pass
                || (i.kind == Kind::Pass && i.payload_freed.load(SeqCst) == 0)
        });
        if !pending || t.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in sh.rejected.lock().unwrap().iter() {
        let f = if i.kind == Kind::Pass { i.payload_freed.load(SeqCst) } else { i.freed.load(SeqCst) };
        if f != 1 || i.runs.load(SeqCst) != 0 {
            errors.push(format!("rejected add: freed {f} times, ran {}", i.runs.load(SeqCst)));
        }
    }
    // The last stop_all / shut down: tasks added before it may be stopped.
    let last_all_end =
        stops.iter().filter(|s| matches!(s.kind, StopKind::All | StopKind::ShutDown)).map(|s| s.end).max().unwrap_or(0);
    let shut_end =
        stops.iter().filter(|s| matches!(s.kind, StopKind::ShutDown)).map(|s| s.end).max().unwrap_or(u64::MAX);
    let maybe_stopped_by_all = |i: &Info| {
        stops.iter().any(|s| matches!(s.kind, StopKind::All | StopKind::ShutDown) && i.add_start.load(SeqCst) < s.end)
    };
    // Final events per task; delivery poll.
    let mut finals: HashMap<u64, Vec<&EvRec>> = HashMap::new();
    let mut n_finals = 0u64;
    for e in events.iter() {
        if matches!(e.kind, EventKind::Completed | EventKind::Failed) {
            finals.entry(e.id).or_default().push(e);
            n_finals += 1;
            if !tasks.contains_key(&e.id) {
                errors.push(format!("event for unknown task {}", e.id));
            }
            if e.poll_start > shut_end {
                errors.push(format!("event of {} delivered by a poll after shut down", e.id));
            }
        }
    }
    for (&id, evs) in &finals {
        if evs.len() > 1 {
            errors.push(format!("task {id}: {} final events", evs.len()));
        }
        if let Some(i) = tasks.get(&id) {
            if evs[0].group != i.group {
                errors.push(format!("task {id}: event group {:?} != {:?}", evs[0].group, i.group));
            }
        }
    }
    // Per task.
    let mut failed_set: HashSet<u64> = HashSet::new();
    for (&id, evs) in &finals {
        if evs[0].kind == EventKind::Failed {
            failed_set.insert(id);
        }
    }
    let delivered_start = |id: u64| finals.get(&id).map(|v| v[0].poll_start).unwrap_or(u64::MAX);
    for (&id, i) in tasks.iter() {
        let runs = i.runs.load(SeqCst);
        if runs > 1 {
            errors.push(format!("task {id} ran {runs} times"));
        }
        if runs == 1 && i.ran_as.load(SeqCst) != id {
            errors.push(format!("task {id} ran as {}", i.ran_as.load(SeqCst)));
        }
        let f = if i.kind == Kind::Pass { i.payload_freed.load(SeqCst) } else { i.freed.load(SeqCst) };
        if f != 1 {
            errors.push(format!("task {id} ({:?}, {:?}) freed {f} times, ran {runs}", i.kind, i.world));
        }
        if i.kind != Kind::Pass && runs == 1 && !i.fails && i.result_freed.load(SeqCst) != 1 {
            errors.push(format!("task {id}: result freed {} times", i.result_freed.load(SeqCst)));
        }
        if i.kind == Kind::Run
            && runs == 0
            && !finals.contains_key(&id)
            && i.freed_on_worker.load(SeqCst)
            && !has_failing_ancestor(&tasks, id)
        {
            errors.push(format!(
                "task {id} stopped before it ran: its userdata was freed on a worker, not on the stopping thread"
            ));
        }
        if i.kind == Kind::Pass && runs != 0 {
            errors.push(format!("pass-through {id} ran"));
        }
        let stoppable = i.world != World::Safe || maybe_stopped_by_all(i);
        let nfin = finals.get(&id).map_or(0, |v| v.len());
        if !stoppable && nfin != 1 {
            errors.push(format!(
                "safe task {id} ({:?} prio {} group {:?} ups {:?}) has {nfin} final events; runs {runs} start {} end {} add {}..{}",
                i.kind,
                i.prio,
                i.group,
                i.ups.lock().unwrap(),
                i.start.load(SeqCst),
                i.end.load(SeqCst),
                i.add_start.load(SeqCst),
                i.add_end.load(SeqCst)
            ));
        }
        // Upstream checks for a task that ran.
        let ups = i.ups.lock().unwrap().clone();
        if runs == 1 {
            let st = i.start.load(SeqCst);
            let add_end = i.add_end.load(SeqCst);
            // Flatten pass-throughs: every runnable reached must have ended
            // before this task started (or have been stopped).
            let mut stack: Vec<(u64, u64)> = ups.iter().map(|&u| (u, add_end)).collect();
            let mut visited = HashSet::new();
            while let Some((u, dep_add_end)) = stack.pop() {
                if !visited.insert(u) {
                    continue;
                }
                let Some(ui) = tasks.get(&u) else { continue };
                let live_at_add = dep_add_end < delivered_start(u);
                let u_stoppable = ui.world != World::Safe || maybe_stopped_by_all(ui);
                if u_stoppable {
                    continue;
                }
                if failed_set.contains(&u) {
                    if live_at_add && !i.fails {
                        errors.push(format!("task {id} ran although its upstream {u} failed while live at the add"));
                    }
                    continue;
                }
                if ui.kind == Kind::Pass {
                    let ua = ui.add_end.load(SeqCst);
                    for &uu in ui.ups.lock().unwrap().iter() {
                        stack.push((uu, ua));
                    }
                } else {
                    let ue = ui.end.load(SeqCst);
                    if ue == 0 || ue > st {
                        errors.push(format!(
                            "task {id} (prio {}) started at {st} before its upstream {u} ended (end {ue}, start {})",
                            i.prio,
                            ui.start.load(SeqCst)
                        ));
                    }
                }
            }
            // Values seen: only producers reachable through pass-throughs.
            let seen = i.seen.lock().unwrap().clone();
            let mut reach = HashSet::new();
            let mut st2: Vec<u64> = ups.clone();
            while let Some(u) = st2.pop() {
                if !reach.insert(u) {
                    continue;
                }
                if let Some(ui) = tasks.get(&u) {
                    if ui.kind == Kind::Pass {
                        st2.extend(ui.ups.lock().unwrap().iter().copied());
                    }
                }
            }
            for s in &seen {
                if !reach.contains(s) {
                    errors.push(format!("task {id} saw a value of {s}, not an upstream task (ups {ups:?})"));
                }
            }
            // Safe direct runnable upstream tasks live at the add and
            // completed: their value must be seen.
            for &u in &ups {
                if let Some(ui) = tasks.get(&u) {
                    if ui.kind == Kind::Run
                        && ui.world == World::Safe
                        && !maybe_stopped_by_all(ui)
                        && !maybe_stopped_by_all(i)
                        && !failed_set.contains(&u)
                        && add_end < delivered_start(u)
                        && !seen.contains(&u)
                    {
                        errors.push(format!("task {id} did not see the value of its upstream {u} (seen {seen:?})"));
                    }
                }
            }
        }
        // Safe, not stoppable: fails iff it fails itself or a live upstream failed.
        if !stoppable && nfin == 1 {
            let failed = failed_set.contains(&id);
            let add_end = i.add_end.load(SeqCst);
            let mut must_fail = i.fails && runs == 1;
            for &u in &ups {
                if failed_set.contains(&u) && add_end < delivered_start(u) {
                    must_fail = true;
                }
            }
            if must_fail && !failed {
                errors.push(format!("task {id} should have failed (ups {ups:?})"));
            }
            if failed && runs == 1 && !i.fails {
                errors.push(format!("task {id} ran, did not fail, and got a failed event"));
            }
        }
    }
    // A task's final event after its upstream tasks' (those live at its add).
    let mut pos_of: HashMap<u64, usize> = HashMap::new();
    for (k, e) in events.iter().enumerate() {
        if matches!(e.kind, EventKind::Completed | EventKind::Failed) {
            pos_of.entry(e.id).or_insert(k);
        }
    }
    for (&id, i) in tasks.iter() {
        let Some(&pd) = pos_of.get(&id) else { continue };
        if events[pd].kind != EventKind::Completed {
            continue; // a failure through one upstream task comes before the others end
        }
        let add_end = i.add_end.load(SeqCst);
        for &u in i.ups.lock().unwrap().iter() {
            if let Some(&pu) = pos_of.get(&u) {
                if add_end < events[pu].poll_start && pu > pd {
                    errors.push(format!("task {id}'s final event (at {pd}) came before its upstream {u}'s (at {pu})"));
                }
            }
        }
    }
    // Direct stops of single tasks with no flags: exact reports.
    for s in stops.iter() {
        if let (StopKind::Task(id, false, false), Ok(rep)) = (s.kind, s.result) {
            let i = &tasks[&id];
            if rep.total() != 1 {
                errors.push(format!("stop of {id} without flags reported {rep:?}"));
            }
            if rep.before_start == 1 && i.runs.load(SeqCst) != 0 {
                errors.push(format!(
                    "task {id} stopped before its start (stop {}..{}) ran at {}",
                    s.start,
                    s.end,
                    i.start.load(SeqCst)
                ));
            }
            if rep.while_running == 1 && i.kind == Kind::Run && i.runs.load(SeqCst) != 1 {
                errors.push(format!("task {id} stopped while running never ran"));
            }
        }
        if let (StopKind::Task(id, _, _), Ok(_)) = (s.kind, s.result) {
            if let Some(evs) = finals.get(&id) {
                if evs[0].poll_start > s.end {
                    errors.push(format!("task {id} delivered by a poll that started after its stop returned"));
                }
            }
        }
        if let (StopKind::Group(g, _, _), Ok(_)) = (s.kind, s.result) {
            for e in events.iter() {
                if e.group == g && e.poll_start > s.end && matches!(e.kind, EventKind::Completed | EventKind::Failed) {
                    if let Some(i) = tasks.get(&e.id) {
                        if i.add_end.load(SeqCst) < s.start {
                            errors.push(format!("task {} of group {g:?} delivered after the group's stop", e.id));
                        }
                    }
                }
            }
        }
    }
    // Group finished: right after a final event of the group; safe groups exactly once, after all members.
    for (k, e) in events.iter().enumerate() {
        if e.kind == EventKind::GroupFinished {
            let prev = if k > 0 { events.get(k - 1) } else { None };
            let ok =
                prev.is_some_and(|p| matches!(p.kind, EventKind::Completed | EventKind::Failed) && p.group == e.group);
            if !ok {
                errors.push(format!("group finished {:?} at {k} not right after a final event of the group", e.group));
            }
        }
    }
    if order {
        check_order(&tasks, &events, &failed_set, &mut errors);
    }
    if last_all_end == 0 && !order {
        let groups = sh.safe_groups.lock().unwrap();
        for (g, members) in groups.iter() {
            let gf: Vec<usize> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.kind == EventKind::GroupFinished && e.group == *g)
                .map(|(k, _)| k)
                .collect();
            if gf.len() != 1 {
                errors.push(format!("safe group {g:?} ({} members) finished {} times", members.len(), gf.len()));
                continue;
            }
            for &mid in members {
                let pos = events
                    .iter()
                    .position(|e| e.id == mid && matches!(e.kind, EventKind::Completed | EventKind::Failed));
                if pos.map_or(true, |p| p > gf[0]) {
                    errors
                        .push(format!("group {g:?}: member {mid} final at {pos:?} after group finished at {}", gf[0]));
                }
            }
        }
    }
    // Counters.
    if !shut {
        let stopped: u64 = stops.iter().filter_map(|s| s.result.ok()).map(|r| r.total()).sum();
        let after_finish: u64 = stops.iter().filter_map(|s| s.result.ok()).map(|r| r.after_finish).sum();
        let added = tasks.len() as u64;
        if stats.queued + stats.blocked + stats.running + stats.undelivered != 0 {
            errors.push(format!("not quiescent after drain: {stats:?}"));
        }
        if added != n_finals + stats.stopped_total {
            errors.push(format!("added {added} != finals {n_finals} + stopped {} ({stats:?})", stats.stopped_total));
        }
        if stopped != stats.stopped_total {
            errors.push(format!("stop reports sum {stopped} != stopped_total {}", stats.stopped_total));
        }
        if stats.completed_total + stats.failed_total != n_finals + after_finish {
            errors.push(format!("completed+failed != finals {n_finals} + after_finish {after_finish}: {stats:?}"));
        }
    }
    let nstop = stops.iter().filter(|s| s.result.is_ok()).count();
    eprintln!(
        "{ctx}: {} tasks, {} events, {} finals, {} stops ok, stats {:?}",
        tasks.len(),
        events.len(),
        n_finals,
        nstop,
        stats
    );
    if !errors.is_empty() {
        errors.truncate(30);
        panic!("{ctx}: {} errors:\n{}", errors.len(), errors.join("\n"));
    }
}

#[test]
fn hammer_mixed_operations() {
    let rounds = env("BTM_HAMMER_ROUNDS", 4);
    let ops = env("BTM_HAMMER_OPS", 1500);
    let seed0 = env("BTM_HAMMER_SEED", 1);
    let mode = std::env::var("BTM_HAMMER_MODE").unwrap_or_else(|_| "all".into());
    for r in 0..rounds {
        let m = match mode.as_str() {
            "plain" => Mode::Plain,
            "stopall" => Mode::StopAll,
            "shutdown" => Mode::ShutDown,
            _ => [Mode::Plain, Mode::StopAll, Mode::Plain, Mode::ShutDown][(r % 4) as usize],
        };
        round(r, seed0.wrapping_add(r * 1_000_003), m, ops, false);
    }
}

/// One worker: among tasks ready when the worker looked for work (their
/// add returned, and their upstream tasks ended, before the previous task's
/// function returned), a higher priority starts first.
#[test]
fn hammer_priority_order_one_worker() {
    let rounds = env("BTM_HAMMER_ORDER_ROUNDS", 4);
    let ops = env("BTM_HAMMER_OPS", 1500);
    let seed0 = env("BTM_HAMMER_SEED", 1);
    for r in 0..rounds {
        round(r, seed0.wrapping_add(r * 7_000_001), Mode::Plain, ops, true);
    }
}

fn check_order(tasks: &HashMap<u64, Arc<Info>>, events: &[EvRec], failed: &HashSet<u64>, errors: &mut Vec<String>) {
    let mut poll_end: HashMap<u64, u64> = HashMap::new();
    for e in events {
        if matches!(e.kind, EventKind::Completed | EventKind::Failed) {
            poll_end.insert(e.id, e.poll_end);
        }
    }
    let mut ran: Vec<(u64, u64)> =
        tasks.iter().filter(|(_, i)| i.runs.load(SeqCst) == 1).map(|(&id, i)| (i.start.load(SeqCst), id)).collect();
    ran.sort();
    // Effective priority at `t`, or None if a change was in flight around
    // [t, until].
    let prio_at = |i: &Info, t: u64, until: u64| -> Option<i32> {
        let mut p = i.prio;
        let mut last_end = 0;
        for &(s, e, np) in i.prio_changes.lock().unwrap().iter() {
            if e < t {
                if e > last_end {
                    last_end = e;
                    p = np;
                }
            } else if s < until {
                return None;
            }
        }
        Some(p)
    };
    // Candidates H: safe Run tasks whose upstream tasks are safe Run tasks.
    let ready_at = |i: &Info| -> Option<u64> {
        if i.world != World::Safe || i.kind != Kind::Run || i.runs.load(SeqCst) != 1 {
            return None;
        }
        let mut r = i.add_end.load(SeqCst);
        for u in i.ups.lock().unwrap().iter() {
            let ui = tasks.get(u)?;
            if poll_end.get(u).is_some_and(|&pe| pe < i.add_start.load(SeqCst)) {
                continue; // not live at the add: no dependency
            }
            if ui.world != World::Safe || ui.kind != Kind::Run || failed.contains(u) {
                return None;
            }
            r = r.max(ui.end.load(SeqCst));
        }
        Some(r)
    };
    let cands: Vec<(u64, u64, &Arc<Info>)> =
        tasks.iter().filter_map(|(&id, i)| ready_at(i).map(|r| (r, id, i))).collect();
    let mut bad = 0;
    let mut pairs = 0u64;
    let mut lower = 0u64;
    for w in ran.windows(2) {
        let (_, prev) = w[0];
        let (l_start, l) = w[1];
        let li = &tasks[&l];
        let t = tasks[&prev].end.load(SeqCst);
        let Some(lp) = prio_at(li, t, l_start) else { continue };
        for &(r, h, hi) in &cands {
            if r < t && hi.start.load(SeqCst) > l_start {
                let Some(hp) = prio_at(hi, t, l_start) else { continue };
                pairs += 1;
                if hp < lp {
                    lower += 1;
                }
                if hp > lp || (hp == lp && h < l) {
                    bad += 1;
                    if bad <= 10 {
                        let lo = hi.add_start.load(SeqCst).min(li.add_start.load(SeqCst));
                        let pauses: Vec<(u64, u64)> =
                            PAUSES.lock().unwrap().iter().copied().filter(|&(a, b)| b >= lo && a <= l_start).collect();
                        errors.push(format!(
                            "task {l} (prio {lp}, ups {:?}, add {}..{}, batch {}, prio changes {:?}) started at {l_start} before task {h} (prio {hp}, ups {:?}, add {}..{}, batch {}, prio changes {:?}, ready {r}) which was ready when the worker looked (previous task {prev} ended at {t}, started {}); pauses around: {pauses:?}",
                            li.ups.lock().unwrap(), li.add_start.load(SeqCst), li.add_end.load(SeqCst), li.batch.load(SeqCst), li.prio_changes.lock().unwrap(),
                            hi.ups.lock().unwrap(), hi.add_start.load(SeqCst), hi.add_end.load(SeqCst), hi.batch.load(SeqCst), hi.prio_changes.lock().unwrap(),
                            tasks[&prev].start.load(SeqCst)
                        ));
                    }
                }
            }
        }
    }
    eprintln!(
        "order: {} starts, {pairs} (started, waiting-ready) pairs compared, {lower} with the waiting one lower",
        ran.len()
    );
    if bad > 0 {
        errors.push(format!("{bad} priority inversions in {} task starts", ran.len()));
    }
}
