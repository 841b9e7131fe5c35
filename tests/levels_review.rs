//! Review of the lane's level reassignment (commit 01c8e62,
//! `Lane::empty_level`, `Lane::reassign`, `State::lane_level_slow`): a
//! level is given to a new priority only when no task holds it and no
//! worker is in its lane loop. These tests try to break it: levels left
//! holding only cancelled entries (stops, priority changes, a hook's
//! drain), priority order and FIFO across reassignments mixed with
//! give-backs, stops, priority changes, batches, released tasks,
//! continuations and overflows, and the 4 -> 8 level switch of a worker
//! in its lane loop.
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btm::engine::{Manager, NewTask, TaskHooks};
use common::*;

/// True if a task of `priority` (which has no level) added now goes to the
/// lane; the task runs either way and is waited for.
fn new_priority_gets_a_level(m: &Arc<Manager>, priority: i32) -> bool {
    let before = m.lane_added_for_tests();
    m.add(nop(), priority, DEFAULT, &[]).unwrap();
    let lane = m.lane_added_for_tests() == before + 1;
    collect_finals(m, 1);
    workers_off_the_lane(m);
    lane
}

/// How the eight levels' queued tasks are taken out of the lane while the
/// worker is away from it (their entries stay in the rings, cancelled).
#[derive(Clone, Copy, Debug)]
enum Out {
    Stop,
    SetPriority,
    HookDrain,
}

fn levels_emptied_by(out: Out) {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    let gate = occupy_off_the_lane(&m, 0);
    let mut ids = Vec::new();
    for p in 0..LANE_LEVELS {
        ids.push(m.add(nop(), p, DEFAULT, &[]).unwrap());
    }
    let mut finals = 1;
    match out {
        Out::Stop => {
            for &id in &ids {
                assert_eq!(m.stop_task(id, false, false).unwrap().before_start, 1);
            }
        }
        Out::SetPriority => {
            for &id in &ids {
                m.set_priority(id, -1000).unwrap();
            }
            finals += ids.len();
        }
        Out::HookDrain => {
            m.set_task_hooks(Some(TaskHooks {
                on_start: None,
                on_end: None,
                data: btm::engine::Owned::new(std::ptr::null_mut(), None),
            }));
            m.set_task_hooks(None);
            finals += ids.len();
        }
    }
    gate.open();
    collect_finals(&m, finals);
    m.wait_idle(Some(TIMEOUT)).unwrap();
    workers_off_the_lane(&m);
    // Nothing is queued in any level, no worker is in its lane loop: a new
    // priority should be given one of the eight (the commit's claim: "a
    // host moving through more priorities over time than the lane has
    // levels" keeps each new one on the lane).
    let (levels, _) = m.lane_levels_for_tests();
    assert_eq!(levels.len(), LANE_LEVELS as usize);
    for p in 100..104 {
        assert!(
            new_priority_gets_a_level(&m, p),
            "{out:?}: priority {p} took the locked path although no level holds a task (levels {:?})",
            m.lane_levels_for_tests()
        );
    }
    finish(m);
}

#[test]
fn levels_whose_tasks_were_stopped_are_given_to_new_priorities() {
    levels_emptied_by(Out::Stop);
}

#[test]
fn levels_whose_tasks_changed_priority_are_given_to_new_priorities() {
    levels_emptied_by(Out::SetPriority);
}

#[test]
fn levels_drained_for_task_hooks_are_given_to_new_priorities() {
    levels_emptied_by(Out::HookDrain);
}

/// A worker in its lane loop made for four levels (`lane_loop::<4>`) when
/// a fifth level is made leaves for the loop made for eight, and the new
/// level's task runs in priority order. Catches a worker kept in the
/// four-level loop (it finds more levels than it holds at every take and
/// goes back to the lock: the lane tasks never run) and a `see_levels`
/// that reads more levels than its copy holds.
#[test]
fn a_worker_in_its_four_level_loop_takes_a_fifth_levels_task_in_order() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..4);
    assert_eq!(m.lane_levels_for_tests().0.len(), 4);
    // The worker runs a lane task of priority 0: in its four-level loop.
    let gate = occupy_a_worker(&m, DEFAULT);
    assert_eq!(m.workers_in_lane_for_tests(), 1);
    let log = Log::default();
    for p in 1..4 {
        m.add(logging(&log, i64::from(p)), p, DEFAULT, &[]).unwrap();
    }
    // Fewer than eight made: a level is made for each new priority even
    // while the worker is in its lane loop; the highest and the lowest.
    let lane = m.lane_added_for_tests();
    m.add(logging(&log, 50), 50, DEFAULT, &[]).unwrap();
    m.add(logging(&log, -50), -50, DEFAULT, &[]).unwrap();
    assert_eq!(m.lane_added_for_tests(), lane + 2, "both went to new levels");
    assert_eq!(m.lane_levels_for_tests(), (vec![0, 1, 2, 3, 50, -50], 0));
    gate.open();
    collect_finals(&m, 6);
    assert_eq!(log.get(), vec![50, 3, 2, 1, -50]);
    finish(m);
}

/// The run order of one worker given every task's priority, upstream
/// tasks and id: the ready task with the highest priority, then the lowest
/// id, runs next; its finish releases the tasks waiting for it alone.
struct Sim {
    /// id -> (priority, upstream ids not yet finished or stopped)
    tasks: HashMap<u64, (i32, Vec<u64>)>,
}

impl Sim {
    fn order(mut self) -> Vec<u64> {
        let mut out = Vec::new();
        while !self.tasks.is_empty() {
            let next = self
                .tasks
                .iter()
                .filter(|(_, (_, ups))| ups.is_empty())
                .map(|(&id, &(p, _))| (std::cmp::Reverse(p), id))
                .min()
                .expect("a ready task")
                .1;
            self.remove(next);
            out.push(next);
        }
        out
    }

    /// Task `id` finished or was stopped (without flags): the tasks it held
    /// back no longer wait for it.
    fn remove(&mut self, id: u64) {
        self.tasks.remove(&id);
        for (_, ups) in self.tasks.values_mut() {
            ups.retain(|&u| u != id);
        }
    }
}

/// A task that logs its own id.
fn logging_id(log: &Log) -> btm::engine::Job {
    let log = log.clone();
    job(move |ctx| log.push(ctx.task_id() as i64))
}

/// One worker, held off the lane while the host adds tasks of sixteen
/// priorities (more than the lane's levels, so that levels are given away
/// and back again as they empty) as single adds, batches of several
/// priorities, continuations (`add_link`), downstream tasks and fan-ins,
/// and stops them, changes their priorities, pauses and resumes, and sets
/// and removes task hooks (which drain the lane); then the worker runs them
/// all. Its run order must be the simulated one: highest priority first,
/// then lowest id, among the tasks ready. Rounds follow each other, so
/// every round starts with levels the last one used.
#[test]
fn one_worker_runs_tasks_in_order_across_reassigned_levels() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_LEVELS_REVIEW_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let m = manager(1, true);
    let prio = |rng: &mut Rng| [-9, -3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 20, 33, 100][rng.below(16) as usize];
    for round in 0..rounds {
        let mut rng = Rng(0x5eed_0000 + round);
        let log = Log::default();
        let gate = occupy_off_the_lane(&m, 0);
        let mut sim = Sim { tasks: HashMap::new() };
        let mut live: Vec<u64> = Vec::new();
        let ops = 20 + rng.below(120);
        for _ in 0..ops {
            match rng.below(100) {
                0..=29 => {
                    let p = prio(&mut rng);
                    let id = m.add(logging_id(&log), p, DEFAULT, &[]).unwrap();
                    sim.tasks.insert(id, (p, vec![]));
                    live.push(id);
                }
                30..=44 => {
                    let n = 1 + rng.below(12) as usize;
                    let ps: Vec<i32> = (0..n).map(|_| prio(&mut rng)).collect();
                    let batch = ps.iter().map(|&p| NewTask {
                        job: logging_id(&log),
                        priority: p,
                        group: DEFAULT,
                        upstream: &[],
                    });
                    let ids = m.add_many(batch.collect()).unwrap();
                    for (id, p) in ids.into_iter().zip(ps) {
                        sim.tasks.insert(id, (p, vec![]));
                        live.push(id);
                    }
                }
                45..=59 if !live.is_empty() => {
                    // A continuation or a downstream task of a live task.
                    let up = live[rng.below(live.len() as u64) as usize];
                    let p = prio(&mut rng);
                    let id = if rng.below(2) == 0 {
                        m.add_link(logging_id(&log), p, DEFAULT, up).unwrap()
                    } else {
                        m.add(logging_id(&log), p, DEFAULT, &[up]).unwrap()
                    };
                    sim.tasks.insert(id, (p, vec![up]));
                    live.push(id);
                }
                60..=64 if live.len() >= 2 => {
                    let a = live[rng.below(live.len() as u64) as usize];
                    let b = live[rng.below(live.len() as u64) as usize];
                    let p = prio(&mut rng);
                    let ups = if a == b { vec![a] } else { vec![a, b] };
                    let id = m.add(logging_id(&log), p, DEFAULT, &ups).unwrap();
                    sim.tasks.insert(id, (p, ups));
                    live.push(id);
                }
                65..=77 if !live.is_empty() => {
                    let i = rng.below(live.len() as u64) as usize;
                    let id = live.swap_remove(i);
                    let r = m.stop_task(id, false, false).unwrap();
                    assert_eq!(r.before_start, 1, "round {round}: task {id} was queued or waiting");
                    sim.remove(id);
                }
                78..=91 if !live.is_empty() => {
                    let id = live[rng.below(live.len() as u64) as usize];
                    let p = prio(&mut rng);
                    m.set_priority(id, p).unwrap();
                    sim.tasks.get_mut(&id).unwrap().0 = p;
                }
                92..=95 => {
                    m.pause_processing().unwrap();
                    m.start_processing().unwrap();
                }
                96..=97 => {
                    m.set_task_hooks(Some(TaskHooks {
                        on_start: None,
                        on_end: None,
                        data: btm::engine::Owned::new(std::ptr::null_mut(), None),
                    }));
                    m.set_task_hooks(None);
                }
                _ => {}
            }
        }
        let want = sim.order();
        gate.open();
        collect_finals(&m, want.len() + 1);
        m.wait_idle(Some(TIMEOUT)).unwrap();
        let got: Vec<u64> = log.get().into_iter().map(|v| v as u64).collect();
        assert_eq!(got, want, "round {round}: run order (levels {:?})", m.lane_levels_for_tests());
        workers_off_the_lane(&m);
    }
    eprintln!("levels {:?}, lane tasks {}", m.lane_levels_for_tests(), m.lane_added_for_tests());
    assert!(m.lane_levels_for_tests().1 > 0, "levels were given away");
    finish(m);
}

/// A level with an overflow (more tasks queued in it than its ring holds),
/// stops and priority changes in that overflow (compacted once cancels
/// are most of it) to priorities that take the other levels, then, once
/// it emptied, the same level given to another priority while the records
/// of its old tasks name positions past its ring: every task runs once, in
/// priority order and FIFO within a priority.
#[test]
fn an_overflowing_level_emptied_and_given_away_keeps_order() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    for phase in 0..2i32 {
        let log = Log::default();
        let gate = occupy_off_the_lane(&m, 0);
        let mut prio: HashMap<u64, i32> = HashMap::new();
        let base = 1000 * (phase + 1);
        // Priority `base` has no level: it takes an empty one, and its
        // tasks fill the ring and wait in the overflow behind it.
        let n = RING + 12_000;
        let batch: Vec<NewTask> =
            (0..n).map(|_| NewTask { job: logging_id(&log), priority: base, group: DEFAULT, upstream: &[] }).collect();
        let ids = m.add_many(batch).unwrap();
        assert!(m.lane_levels_for_tests().0.contains(&base));
        for &id in &ids {
            prio.insert(id, base);
        }
        // Stop 9,000 of the overflow's tasks (its compaction moves the
        // others' positions), and move some of the rest, and of the ring,
        // to new priorities (each given one of the empty levels).
        let mut rng = Rng(77 + phase as u64);
        for k in 0..9_000 {
            let id = ids[RING + 2 + k];
            m.stop_task(id, false, false).unwrap();
            prio.remove(&id);
        }
        for _ in 0..300 {
            let id = ids[rng.below(n as u64) as usize];
            if let Some(p) = prio.get_mut(&id) {
                let np = base + 1 + rng.below(12) as i32;
                m.set_priority(id, np).unwrap();
                *p = np;
            }
        }
        // New single adds of old and new priorities.
        for _ in 0..200 {
            let p = [0, 3, 7, base, base + 5, base + 20][rng.below(6) as usize];
            let id = m.add(logging_id(&log), p, DEFAULT, &[]).unwrap();
            prio.insert(id, p);
        }
        let mut want: Vec<(std::cmp::Reverse<i32>, u64)> =
            prio.iter().map(|(&id, &p)| (std::cmp::Reverse(p), id)).collect();
        want.sort();
        let want: Vec<u64> = want.into_iter().map(|(_, id)| id).collect();
        gate.open();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        let got: Vec<u64> = log.get().into_iter().map(|v| v as u64).collect();
        assert_eq!(got.len(), want.len(), "phase {phase}: every live task ran once");
        let first_bad = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(first_bad.is_none(), "phase {phase}: run order differs at {first_bad:?}");
        drain(&m);
        workers_off_the_lane(&m);
    }
    finish(m);
}

/// Host threads adding in bursts (so that the workers leave their lane
/// loops between them and levels are given away while other hosts add),
/// with single adds, batches of several priorities, continuations and
/// downstream tasks of priorities rotating through more than the lane's
/// levels, stops, priority changes, pause/resume and `set_max_threads`
/// changes (workers retiring while others are in the lane). Every task
/// not stopped before it started runs exactly once; one stopped before it
/// started never runs; every userdata is freed once (`finish`).
#[test]
fn concurrent_hosts_rotating_priorities_run_each_task_once() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_LEVELS_REVIEW_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    for round in 0..rounds {
        let m = manager(2, true);
        let runs: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let never: Arc<Mutex<Vec<u64>>> = Arc::default();
        let stopped_any: Arc<Mutex<Vec<u64>>> = Arc::default();
        let added = Arc::new(AtomicU64::new(0));
        let counting = |runs: &Arc<Mutex<HashMap<u64, u32>>>| {
            let runs = runs.clone();
            job(move |ctx| *runs.lock().unwrap().entry(ctx.task_id()).or_default() += 1)
        };
        let hosts: Vec<_> = (0..2u64)
            .map(|h| {
                let (m, runs, never, stopped_any, added) =
                    (m.clone(), runs.clone(), never.clone(), stopped_any.clone(), added.clone());
                std::thread::spawn(move || {
                    let mut rng = Rng(round * 31 + h * 7 + 1);
                    let mut mine: Vec<u64> = Vec::new();
                    for burst in 0..60u64 {
                        // Priorities rotate: each burst uses a window of
                        // five out of forty.
                        let prio = |rng: &mut Rng| ((burst + rng.below(5)) % 40) as i32 * 3 - 20;
                        for _ in 0..rng.below(40) {
                            match rng.below(100) {
                                0..=39 => {
                                    let p = prio(&mut rng);
                                    mine.push(m.add(counting(&runs), p, DEFAULT, &[]).unwrap());
                                }
                                40..=54 => {
                                    let n = 1 + rng.below(10) as usize;
                                    let batch = (0..n)
                                        .map(|_| NewTask {
                                            job: counting(&runs),
                                            priority: prio(&mut rng),
                                            group: DEFAULT,
                                            upstream: &[],
                                        })
                                        .collect();
                                    mine.extend(m.add_many(batch).unwrap());
                                }
                                55..=69 if !mine.is_empty() => {
                                    let up = mine[rng.below(mine.len() as u64) as usize];
                                    let p = prio(&mut rng);
                                    let id = if rng.below(2) == 0 {
                                        m.add_link(counting(&runs), p, DEFAULT, up).unwrap()
                                    } else {
                                        m.add(counting(&runs), p, DEFAULT, &[up]).unwrap()
                                    };
                                    mine.push(id);
                                }
                                70..=79 if !mine.is_empty() => {
                                    let id = mine[mine.len() - 1 - rng.below(mine.len().min(8) as u64) as usize];
                                    if let Ok(r) = m.stop_task(id, false, false) {
                                        if r.before_start == 1 {
                                            never.lock().unwrap().push(id);
                                        }
                                        stopped_any.lock().unwrap().push(id);
                                    }
                                }
                                80..=91 if !mine.is_empty() => {
                                    let id = mine[mine.len() - 1 - rng.below(mine.len().min(8) as u64) as usize];
                                    let _ = m.set_priority(id, prio(&mut rng));
                                }
                                92..=94 => {
                                    m.pause_processing().unwrap();
                                    std::thread::yield_now();
                                    m.start_processing().unwrap();
                                }
                                95..=97 => m.set_max_threads(1 + rng.below(3) as usize).unwrap(),
                                _ => std::thread::sleep(Duration::from_micros(rng.below(300))),
                            }
                        }
                        // Let the workers run dry and leave the lane.
                        std::thread::sleep(Duration::from_micros(200 + rng.below(800)));
                    }
                    added.fetch_add(mine.len() as u64, SeqCst);
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in hosts {
            all.extend(h.join().unwrap());
        }
        m.set_max_threads(2).unwrap();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        drain(&m);
        let runs = runs.lock().unwrap();
        let never = never.lock().unwrap();
        let stopped = stopped_any.lock().unwrap();
        for &id in &all {
            let r = runs.get(&id).copied().unwrap_or(0);
            if never.contains(&id) {
                assert_eq!(r, 0, "round {round}: task {id} stopped before it started ran");
            } else if stopped.contains(&id) {
                assert!(r <= 1, "round {round}: task {id} ran {r} times");
            } else {
                assert_eq!(r, 1, "round {round}: task {id} ran {r} times");
            }
        }
        assert_eq!(added.load(SeqCst) as usize, all.len());
        eprintln!("round {round}: {} tasks, levels {:?}", all.len(), m.lane_levels_for_tests());
        finish(m);
    }
}
