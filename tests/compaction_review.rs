//! Review of the lane overflow and ready-queue compactions (`Level::
//! trim_overflow`, `Level::compact_overflow`, `ReadyQueue::compact`) in
//! combination: batches of one and several priorities (fan-ins naming the
//! batch's own tasks waiting in an overflow), fan-ins over overflow entries
//! (moved to the locked path, or kept and counted linked), continuations of
//! lane tasks, priority changes, stops of single tasks (with and without
//! their upstream and downstream tasks) and of groups, pause and start,
//! task hooks (which drain the lane), stop_all and shut down.
//!
//! One worker, held by a gate task while a seeded sequence of operations
//! runs behind it (rings full, overflows of thousands of entries, most of
//! them stopped: the compactions run many times). After each stretch of
//! operations, the counts (`stats`, `group_stats`) and the live userdata
//! must match a model; once the gate opens, every task not stopped must run
//! exactly once, in the order the model gives (the best ready task first:
//! higher priority, then lower id), and every userdata must be freed once.

mod common;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::Ordering;

use btm::engine::{Manager, NewTask, Owned, TaskHooks, IN_BATCH};
use common::*;

/// Priorities used: nine for the lane's eight levels (the gate task's 0
/// among them): the first eight used get one; the worker stays in its lane
/// loop (the gate task), so the ninth stays on the locked path.
const PRIORITIES: [i32; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 9];
/// Groups of the tasks (the gate task is in `g(1)`, alone).
const GROUPS: [u64; 3] = [10, 11, 12];

struct MTask {
    priority: i32,
    group: u64,
    /// Live upstream tasks not yet run (stops release their downstream).
    ups: BTreeSet<u64>,
}

#[derive(Default)]
struct Model {
    live: BTreeMap<u64, MTask>,
    /// The live tasks' ids, ascending.
    ids: Vec<u64>,
    /// Downstream tasks of each live task.
    down: HashMap<u64, Vec<u64>>,
    stopped: u64,
}

impl Model {
    fn insert(&mut self, id: u64, t: MTask) {
        for &u in &t.ups {
            self.down.entry(u).or_default().push(id);
        }
        assert!(self.ids.last().map_or(true, |&last| last < id));
        self.ids.push(id);
        self.live.insert(id, t);
    }

    fn remove(&mut self, id: u64) {
        assert!(self.live.remove(&id).is_some());
        let i = self.ids.binary_search(&id).unwrap();
        self.ids.remove(i);
        for d in self.down.remove(&id).unwrap_or_default() {
            if let Some(t) = self.live.get_mut(&d) {
                t.ups.remove(&id);
            }
        }
    }

    /// The order one worker runs the live tasks in.
    fn run_order(&self) -> Vec<u64> {
        let mut waiting: HashMap<u64, usize> = HashMap::new();
        let mut down: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for (&id, t) in &self.live {
            waiting.insert(id, t.ups.len());
            for &u in &t.ups {
                down.entry(u).or_default().push(id);
            }
            if t.ups.is_empty() {
                ready.push((t.priority, std::cmp::Reverse(id)));
            }
        }
        let mut order = Vec::new();
        while let Some((_, std::cmp::Reverse(id))) = ready.pop() {
            order.push(id);
            for d in down.remove(&id).unwrap_or_default() {
                let w = waiting.get_mut(&d).unwrap();
                *w -= 1;
                if *w == 0 {
                    ready.push((self.live[&d].priority, std::cmp::Reverse(d)));
                }
            }
        }
        assert_eq!(order.len(), self.live.len(), "the model has no cycle");
        order
    }
}

fn tagged(log: &Log) -> btm::engine::Job {
    let log = log.clone();
    job(move |ctx| log.push(ctx.task_id() as i64))
}

struct Round {
    m: std::sync::Arc<Manager>,
    log: Log,
    model: Model,
    rng: Rng,
    paused: bool,
    phase: u64,
    /// Pauses and starts in this round (a pause drains the lane).
    pauses: bool,
    hooks: bool,
}

impl Round {
    fn pick_live(&mut self) -> Option<u64> {
        if self.model.ids.is_empty() {
            return None;
        }
        // Mostly the newest (overflow entries), else any.
        let n = self.model.ids.len();
        let k = if self.rng.below(3) == 0 {
            self.rng.below(n as u64) as usize
        } else {
            n - 1 - (self.rng.below((n as u64).min(20_000)) as usize)
        };
        Some(self.model.ids[k])
    }

    fn priority(&mut self) -> i32 {
        // Mostly the gate's priority: its level overflows.
        if self.rng.below(10) < 6 {
            0
        } else {
            PRIORITIES[self.rng.below(PRIORITIES.len() as u64) as usize]
        }
    }

    fn group(&mut self) -> u64 {
        GROUPS[self.rng.below(GROUPS.len() as u64) as usize]
    }

    fn add(&mut self, ups: Vec<u64>) {
        let (priority, group) = (self.priority(), self.group());
        let id = self.m.add(tagged(&self.log), priority, g(group), &ups).unwrap();
        self.model.insert(id, MTask { priority, group, ups: ups.into_iter().collect() });
    }

    /// A batch: one priority or several, independent or with upstream
    /// tasks (earlier tasks of the batch, with `IN_BATCH`, and live tasks).
    fn batch(&mut self) {
        let n = if self.rng.below(8) == 0 { 1 + self.rng.below(3000) } else { 1 + self.rng.below(40) } as usize;
        let one_priority = self.rng.below(2) == 0;
        let p0 = self.priority();
        let linked = self.rng.below(2) == 0;
        let one_group = self.rng.below(2) == 0;
        let g0 = self.group();
        let mut specs: Vec<(i32, u64, Vec<u64>)> = Vec::new();
        for i in 0..n {
            let priority = if one_priority { p0 } else { self.priority() };
            let group = if one_group { g0 } else { self.group() };
            let mut ups = Vec::new();
            if linked && self.rng.below(4) == 0 {
                for _ in 0..1 + self.rng.below(3) {
                    if i > 0 && self.rng.below(3) != 0 {
                        // Often the newest ones: those in an overflow.
                        let back = self.rng.below(i.min(50) as u64) as usize;
                        ups.push(IN_BATCH | (i - 1 - back) as u64);
                    } else if let Some(u) = self.pick_live() {
                        ups.push(u);
                    }
                }
                ups.sort_unstable();
                ups.dedup();
            }
            specs.push((priority, group, ups));
        }
        let tasks: Vec<NewTask<'_>> = specs
            .iter()
            .map(|(priority, group, ups)| NewTask {
                job: tagged(&self.log),
                priority: *priority,
                group: g(*group),
                upstream: ups,
            })
            .collect();
        let ids = self.m.add_many(tasks).unwrap();
        assert_eq!(ids.len(), n);
        let first = ids[0];
        for (i, (priority, group, ups)) in specs.into_iter().enumerate() {
            let ups = ups.into_iter().map(|u| if u & IN_BATCH != 0 { first + (u & !IN_BATCH) } else { u }).collect();
            assert_eq!(ids[i], first + i as u64);
            self.model.insert(ids[i], MTask { priority, group, ups });
        }
    }

    fn stop(&mut self) {
        if let Some(id) = self.pick_live() {
            let r = self.m.stop_task(id, false, false).unwrap();
            assert_eq!((r.before_start, r.while_running, r.after_finish), (1, 0, 0), "stop of {id}");
            self.model.remove(id);
            self.model.stopped += 1;
        }
    }

    /// A stop that also reaches the task's upstream and/or downstream
    /// tasks, transitively.
    fn stop_reaching(&mut self) {
        let Some(id) = self.pick_live() else {
            return;
        };
        let (up, down) = match self.rng.below(3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        let mut reached = BTreeSet::from([id]);
        let mut stack = vec![id];
        while let Some(t) = stack.pop() {
            let mut next: Vec<u64> = Vec::new();
            if up {
                next.extend(self.model.live[&t].ups.iter().copied());
            }
            if down {
                next.extend(self.model.down.get(&t).into_iter().flatten().copied());
            }
            for n in next {
                if self.model.live.contains_key(&n) && reached.insert(n) {
                    stack.push(n);
                }
            }
        }
        let r = self.m.stop_task(id, up, down).unwrap();
        let want = (reached.len() as u64, 0, 0);
        assert_eq!((r.before_start, r.while_running, r.after_finish), want, "stop of {id} (up {up}, down {down})");
        for t in reached {
            self.model.remove(t);
            self.model.stopped += 1;
        }
    }

    fn stop_group(&mut self) {
        let group = self.group();
        let members: Vec<u64> = self.model.live.iter().filter(|(_, t)| t.group == group).map(|(&id, _)| id).collect();
        if members.is_empty() {
            assert_eq!(self.m.stop_group(g(group), false, false), Err(btm::engine::Error::NotFound));
            return;
        }
        let r = self.m.stop_group(g(group), false, false).unwrap();
        assert_eq!((r.before_start, r.while_running, r.after_finish), (members.len() as u64, 0, 0), "group {group}");
        for id in members {
            self.model.remove(id);
            self.model.stopped += 1;
        }
    }

    fn set_priority(&mut self) {
        if let Some(id) = self.pick_live() {
            // Half the time its own priority (a lane task stays in place).
            let priority = if self.rng.below(2) == 0 { self.model.live[&id].priority } else { self.priority() };
            self.m.set_priority(id, priority).unwrap();
            self.model.live.get_mut(&id).unwrap().priority = priority;
        }
    }

    /// A fan-in over every live task of priority 0 still queued (most of
    /// its level's entries: the overflow's stay there, counted linked).
    fn big_fan_in(&mut self) {
        let ups: Vec<u64> =
            self.model.live.iter().filter(|(_, t)| t.priority == 0 && t.ups.is_empty()).map(|(&id, _)| id).collect();
        if ups.len() > 1 {
            self.add(ups);
        }
    }

    /// A stop of one of the newest tasks (a sliding window: the overflow's
    /// cancelled entries pile up before its live ones).
    fn stop_newest(&mut self) {
        let n = self.model.ids.len();
        if n > 50 {
            let id = self.model.ids[n - 1 - self.rng.below(50) as usize];
            let r = self.m.stop_task(id, false, false).unwrap();
            assert_eq!((r.before_start, r.while_running, r.after_finish), (1, 0, 0), "stop of {id}");
            self.model.remove(id);
            self.model.stopped += 1;
        }
    }

    /// A priority change of one of a few tasks, back and forth (stale
    /// entries in the ready queue's levels).
    fn flip(&mut self) {
        let n = self.model.ids.len();
        if n > 0 {
            let id = self.model.ids[(self.rng.below(8) as usize).min(n - 1)];
            let priority = PRIORITIES[self.rng.below(PRIORITIES.len() as u64) as usize];
            self.m.set_priority(id, priority).unwrap();
            self.model.live.get_mut(&id).unwrap().priority = priority;
        }
    }

    fn step(&mut self, op: usize, ops: usize) {
        if op % 2048 == 0 {
            self.phase = self.rng.below(6);
        }
        let x = self.rng.below(100);
        if op == ops / 4 {
            self.big_fan_in();
        }
        if op < ops / 2 {
            // Operations that keep the lane's levels in use (nothing moves
            // an older task of a level's priority to the locked path, which
            // would send the adds of that priority there behind it).
            match x {
                0..=47 => self.add(Vec::new()),
                48..=69 => self.stop_newest(),
                70..=89 => self.stop(),
                90..=93 => self.own_priority(),
                94 => self.stop_group_rarely(),
                96 => self.lane_batch(),
                _ => self.add(Vec::new()),
            }
        } else {
            match self.phase {
                // Churn behind the newest tasks.
                0 => {
                    if x < 50 {
                        self.add(Vec::new());
                    } else if x < 95 {
                        self.stop_newest();
                    } else {
                        self.mixed(op);
                    }
                }
                // Stops anywhere.
                1 if x < 60 => self.stop(),
                // Priority changes back and forth, and stops.
                2 if x < 50 => self.flip(),
                2 if x < 75 => self.stop_newest(),
                _ => self.mixed(op),
            }
        }
        if op % 4096 == 0 {
            self.check_counts(op);
        }
    }

    fn stop_group_rarely(&mut self) {
        if self.rng.below(50) == 0 {
            self.stop_group();
        }
    }

    /// A priority change of a queued task to its own priority.
    fn own_priority(&mut self) {
        if let Some(id) = self.pick_live() {
            let priority = self.model.live[&id].priority;
            self.m.set_priority(id, priority).unwrap();
        }
    }

    /// A batch of independent tasks of the lane's priorities, one or
    /// several.
    fn lane_batch(&mut self) {
        let n = if self.rng.below(8) == 0 { 1 + self.rng.below(3000) } else { 1 + self.rng.below(40) } as usize;
        let one_priority = self.rng.below(2) == 0;
        let p0 = self.priority().min(3);
        let group = self.group();
        let specs: Vec<i32> = (0..n).map(|_| if one_priority { p0 } else { self.priority().min(3) }).collect();
        let tasks: Vec<NewTask<'_>> = specs
            .iter()
            .map(|&priority| NewTask { job: tagged(&self.log), priority, group: g(group), upstream: &[] })
            .collect();
        let ids = self.m.add_many(tasks).unwrap();
        for (id, priority) in ids.into_iter().zip(specs) {
            self.model.insert(id, MTask { priority, group, ups: BTreeSet::new() });
        }
    }

    fn mixed(&mut self, _op: usize) {
        match self.rng.below(100) {
            0..=39 => self.add(Vec::new()),
            40..=59 => self.stop(),
            60..=67 => self.set_priority(),
            68..=73 => {
                // A continuation (one upstream task) or a fan-in.
                let k = if self.rng.below(2) == 0 { 1 } else { 2 + self.rng.below(3) };
                let ups: BTreeSet<u64> = (0..k).filter_map(|_| self.pick_live()).collect();
                self.add(ups.into_iter().collect());
            }
            74..=76 => self.batch(),
            77 => self.stop_reaching(),
            78 if self.rng.below(20) == 0 => self.stop_group(),
            79 if self.rng.below(200) == 0 => self.big_fan_in(),
            80 if self.pauses && self.rng.below(50) == 0 => {
                if self.paused {
                    self.m.start_processing().unwrap();
                } else {
                    self.m.pause_processing().unwrap();
                }
                self.paused = !self.paused;
            }
            81 if self.rng.below(50) == 0 => {
                // Task hooks close the lane and drain it to the locked path
                // (its overflows' entries left cancelled in place).
                self.hooks = !self.hooks;
                self.m.set_task_hooks(self.hooks.then(|| TaskHooks {
                    on_start: Some(count_start),
                    on_end: None,
                    data: Owned::new(std::ptr::null_mut(), None),
                }));
            }
            _ => self.add(Vec::new()),
        }
    }

    fn check_counts(&self, op: usize) {
        let s = self.m.stats();
        let blocked = self.model.live.values().filter(|t| !t.ups.is_empty()).count() as u64;
        let queued = self.model.live.len() as u64 - blocked;
        assert_eq!((s.queued, s.blocked, s.running), (queued, blocked, 1), "op {op}: stats {s:?}");
        assert_eq!(s.stopped_total, self.model.stopped, "op {op}");
        for &group in &GROUPS {
            let live: Vec<&MTask> = self.model.live.values().filter(|t| t.group == group).collect();
            let blocked = live.iter().filter(|t| !t.ups.is_empty()).count() as u64;
            let counts = self.m.group_stats(g(group)).unwrap();
            assert_eq!(
                counts[..3],
                [live.len() as u64 - blocked, blocked, 0],
                "op {op}: group {group} (queued, blocked, running)"
            );
        }
        // The gate task's userdata and each live task's.
        let want = self.model.live.len() as i64 + 1;
        wait_until("the stopped tasks' userdata freed", || LIVE_USERDATA.load(Ordering::SeqCst) == want);
    }
}

fn run_round(seed: u64, ops: usize) {
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, g(1));
    let mut r = Round {
        m,
        log: Log::default(),
        model: Model::default(),
        rng: Rng(seed),
        paused: false,
        phase: 0,
        pauses: seed % 2 == 1,
        hooks: false,
    };
    // A full ring and an overflow of priority 0 first.
    for _ in 0..RING + 6_000 {
        r.add(Vec::new());
    }
    for op in 0..ops {
        r.step(op, ops);
    }
    r.check_counts(ops);
    if r.paused {
        r.m.start_processing().unwrap();
    }
    match seed % 3 {
        1 => {
            // Everything stopped: the queued tasks before they start, the
            // gate task while it runs.
            let report = r.m.stop_all();
            let want = (r.model.live.len() as u64, 1, 0);
            assert_eq!((report.before_start, report.while_running, report.after_finish), want, "seed {seed:#x}");
            assert_eq!(LIVE_USERDATA.load(Ordering::SeqCst), 1, "seed {seed:#x}: only the gate task's userdata left");
            gate.open();
            r.m.wait_idle(Some(TIMEOUT)).unwrap();
            assert_eq!(r.log.get(), Vec::<i64>::new(), "seed {seed:#x}: no stopped task ran");
            finish(r.m);
            return;
        }
        2 => {
            // Shut down with every task queued (paused, the gate task done).
            r.m.pause_processing().unwrap();
            gate.open();
            wait_until("the gate task done", || r.m.stats().running == 0);
            finish(r.m);
            assert_eq!(r.log.get(), Vec::<i64>::new(), "seed {seed:#x}: no task ran after the pause");
            return;
        }
        _ => {}
    }
    let want = r.model.run_order();
    gate.open();
    let done = finals(&collect_finals(&r.m, want.len() + 1));
    assert_eq!(done.len(), want.len() + 1, "seed {seed:#x}: each task once");
    let got: Vec<u64> = r.log.get().into_iter().map(|id| id as u64).collect();
    if got != want {
        let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "seed {seed:#x}: {} tasks ran, {} expected; first difference at {at}: ran {:?}, expected {:?}",
            got.len(),
            want.len(),
            &got[at.saturating_sub(3)..(at + 5).min(got.len())],
            &want[at.saturating_sub(3)..(at + 5).min(want.len())],
        );
    }
    let s = r.m.stats();
    assert_eq!((s.queued, s.blocked, s.running, s.stopped_total), (0, 0, 0, r.model.stopped), "seed {seed:#x}");
    finish(r.m);
}

#[test]
fn compacted_lane_overflows_and_ready_levels_keep_every_task_once_in_order() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_COMPACTION_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let base: u64 = std::env::var("BTM_COMPACTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xc0de_0001);
    for round in 0..rounds {
        run_round(base + round, 100_000);
    }
    assert_all_freed();
}

/// Two busy workers drain the rings (and come to the lock to move the
/// overflows in) while the host adds behind them and stops most of what it
/// added, changes priorities and adds fan-ins over the newest tasks: the
/// compactions run between the workers' refills. Every task not stopped
/// before it started runs exactly once; none stopped before it started
/// runs.
#[test]
fn compactions_between_busy_workers_refills_run_every_task_once() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_COMPACTION_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    for round in 0..rounds.div_ceil(2) {
        let mut rng = Rng(0xb05e_0000 + round);
        let m = manager(2, true);
        let log = Log::default();
        let spinning = |log: &Log| {
            let log = log.clone();
            job(move |ctx| {
                for _ in 0..2000 {
                    std::hint::spin_loop();
                }
                log.push(ctx.task_id() as i64)
            })
        };
        let mut ids: Vec<u64> = Vec::new();
        let mut not_run: BTreeSet<u64> = BTreeSet::new();
        let mut stopped: BTreeSet<u64> = BTreeSet::new();
        let mut paused = false;
        for op in 0..300_000u64 {
            // The first half keeps the lane's level in use (adds, stops,
            // batches of its priority: nothing sends its tasks to the
            // locked path, and the adds behind them); the second adds
            // priority changes, fan-ins, several priorities, pauses.
            let x = if op < 40_000 {
                0 // A backlog first: a full ring and an overflow.
            } else if op < 150_000 {
                // More stops than adds: the overflow's entries mostly
                // cancelled.
                match rng.below(90) {
                    x if x < 50 && rng.below(2) == 0 => 52,
                    x => x,
                }
            } else {
                rng.below(100)
            };
            let recent =
                |rng: &mut Rng, ids: &Vec<u64>| ids[ids.len() - 1 - rng.below(ids.len().min(20_000) as u64) as usize];
            match x {
                0..=49 => {
                    // (Priority 9, without a lane level, only in the second
                    // half: a locked task better than a popped lane entry
                    // sends the entry to the locked path, and the adds of
                    // its priority behind it.)
                    let p = if op < 150_000 { 0 } else { [0, 0, 0, 1, 2, 3, 9][rng.below(7) as usize] };
                    ids.push(m.add(spinning(&log), p, g(10), &[]).unwrap());
                }
                50 if rng.below(20) == 0 => {
                    let n = 1 + rng.below(1000) as usize;
                    let p = if op < 150_000 { 0 } else { [0, 1][rng.below(2) as usize] };
                    let several = op >= 150_000 && rng.below(2) == 0;
                    let tasks: Vec<NewTask<'_>> = (0..n)
                        .map(|i| NewTask {
                            job: spinning(&log),
                            priority: if several { (i % 3) as i32 } else { p },
                            group: g(11),
                            upstream: &[],
                        })
                        .collect();
                    ids.extend(m.add_many(tasks).unwrap());
                }
                52..=89 if !ids.is_empty() => {
                    let mut id = recent(&mut rng, &ids);
                    for _ in 0..8 {
                        if !stopped.contains(&id) {
                            break;
                        }
                        id = recent(&mut rng, &ids);
                    }
                    if !stopped.contains(&id) {
                        match m.stop_task(id, false, false) {
                            Ok(r) => {
                                if r.before_start == 1 {
                                    not_run.insert(id);
                                }
                                assert_eq!(r.before_start + r.while_running + r.after_finish, 1, "op {op}: {r:?}");
                            }
                            Err(e) => panic!("op {op}: stop of {id}: {e:?} (events are not polled)"),
                        }
                        stopped.insert(id);
                    }
                }
                90..=95 if !ids.is_empty() => {
                    let id = recent(&mut rng, &ids);
                    let p = [0, 0, 1, 2, 3, 9][rng.below(6) as usize];
                    match m.set_priority(id, p) {
                        Ok(()) | Err(btm::engine::Error::NotQueued) => {}
                        Err(e) => assert!(stopped.contains(&id), "op {op}: {e:?}"),
                    }
                }
                96..=97 if ids.len() > 4 => {
                    let ups: BTreeSet<u64> = (0..1 + rng.below(3))
                        .map(|_| recent(&mut rng, &ids))
                        .filter(|u| !stopped.contains(u))
                        .collect();
                    let ups: Vec<u64> = ups.into_iter().collect();
                    let p = [0, 1][rng.below(2) as usize];
                    ids.push(m.add(spinning(&log), p, g(10), &ups).unwrap());
                }
                98 if rng.below(100) == 0 => {
                    if paused {
                        m.start_processing().unwrap();
                    } else {
                        m.pause_processing().unwrap();
                    }
                    paused = !paused;
                }
                _ => {}
            }
        }
        if paused {
            m.start_processing().unwrap();
        }
        if let Err(e) = m.wait_idle(Some(TIMEOUT * 3)) {
            let ran = log.get().len();
            panic!("round {round}: not idle ({e:?}): {:?}, {ran} ran, linked {:?}", m.stats(), linked(&m));
        }
        let mut ran: Vec<u64> = log.get().into_iter().map(|id| id as u64).collect();
        ran.sort_unstable();
        let dup = ran.windows(2).find(|w| w[0] == w[1]);
        assert!(dup.is_none(), "round {round}: a task ran twice: {dup:?}");
        let want: Vec<u64> = ids.iter().copied().filter(|id| !not_run.contains(id)).collect();
        let mut want = want;
        want.sort_unstable();
        if ran != want {
            let lost: Vec<&u64> = want.iter().filter(|id| ran.binary_search(id).is_err()).take(10).collect();
            let extra: Vec<&u64> = ran.iter().filter(|id| want.binary_search(id).is_err()).take(10).collect();
            panic!(
                "round {round}: {} ran, {} expected; never ran {lost:?}, ran though stopped {extra:?}",
                ran.len(),
                want.len()
            );
        }
        let s = m.stats();
        assert_eq!((s.queued, s.blocked, s.running), (0, 0, 0), "round {round}");
        finish(m);
    }
    assert_all_freed();
}
