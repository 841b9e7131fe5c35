//! Fan-ins over lane tasks still queued (session 28: they stay in the lane;
//! session 29: a ring entry is marked linked in its slot, an overflow entry
//! counted, when the fan-in's lane tasks are at least half of the lane's
//! queued entries): order against other lane tasks, links and pass-throughs
//! added on top, stops, shut-downs, and a randomised run against the
//! invariants (first written by a review of session 28's change).
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btm::engine::{Owned, TaskHooks};
use common::*;

/// The upstream results each task was given, by task id.
type Seen = Arc<Mutex<HashMap<u64, Vec<(u64, i64)>>>>;

/// The upstream results a task was given, once it ran.
type Got = Arc<Mutex<Option<Vec<(u64, i64)>>>>;

fn recording(got: &Got, log: &Log, tag: i64) -> btm::engine::Job {
    let got = got.clone();
    let log = log.clone();
    job(move |ctx| {
        log.push(tag);
        *got.lock().unwrap() = Some(upstream(ctx));
        ctx.set_result(value(tag));
    })
}

#[test]
fn a_fan_in_of_higher_priority_runs_before_lower_lane_tasks() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    let low: Vec<u64> = (0..3).map(|i| m.add(logging(&log, 100 + i), -1, DEFAULT, &[]).unwrap()).collect();
    let ups: Vec<u64> = (0..3).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[]).unwrap()).collect();
    let got = Arc::new(Mutex::new(None));
    let f = m.add(recording(&got, &log, 50), 5, DEFAULT, &ups).unwrap();
    let same: Vec<u64> = (0..3).map(|i| m.add(logging(&log, 10 + i), 0, DEFAULT, &[]).unwrap()).collect();
    assert_eq!(linked(&m), (0, 3), "marked in their slots, not counted");
    gate.open();
    let _ = collect_finals(&m, 1 + 3 + 3 + 1 + 3);
    assert_eq!(log.get(), vec![0, 1, 2, 50, 10, 11, 12, 100, 101, 102]);
    let _ = (low, same, f);
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}

#[test]
fn a_fan_in_of_same_priority_runs_before_newer_lane_tasks() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    let ups: Vec<u64> = (0..3).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[]).unwrap()).collect();
    let got = Arc::new(Mutex::new(None));
    m.add(recording(&got, &log, 50), 0, DEFAULT, &ups).unwrap();
    for i in 0..3 {
        m.add(logging(&log, 10 + i), 0, DEFAULT, &[]).unwrap();
    }
    gate.open();
    let _ = collect_finals(&m, 1 + 3 + 1 + 3);
    assert_eq!(log.get(), vec![0, 1, 2, 50, 10, 11, 12], "by priority, then id");
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}

#[test]
fn a_link_and_a_pass_through_onto_queued_tasks_with_a_fan_in_and_a_stopped_second_fan_in() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    let a = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    let b = m.add(logging(&log, 2), 0, DEFAULT, &[]).unwrap();
    let got = Arc::new(Mutex::new(None));
    let f = m.add(recording(&got, &log, 3), 0, DEFAULT, &[a, b]).unwrap();
    // A chain link on `a`, which now has `f` in its body.
    let c = m.add_link(logging(&log, 4), 7, DEFAULT, a).unwrap();
    // A pass-through over `b` alone.
    let p = m.add(btm::engine::Job::pass_through(value(99)), 0, DEFAULT, &[b]).unwrap();
    // A second fan-in over `a`, stopped with its upstream.
    let h = m.add(logging(&log, 5), 0, g(3), &[a]).unwrap();
    assert_eq!(linked(&m), (0, 2));
    gate.open();
    let evs = collect_finals(&m, 1 + 6);
    assert_eq!(log.get(), vec![1, 4, 2, 3, 5]);
    assert_eq!(got.lock().unwrap().clone().unwrap(), vec![(a, 1), (b, 2)]);
    let order = finals(&evs);
    let pos = |id: u64| order.iter().position(|&x| x == id).unwrap();
    assert!(pos(a) < pos(f) && pos(b) < pos(f) && pos(a) < pos(c) && pos(b) < pos(p) && pos(a) < pos(h));
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}

#[test]
fn a_stop_all_a_shut_down_and_a_group_stop_unmark_queued_linked_tasks() {
    let _s = serial();
    for mode in 0..3 {
        let m = manager(1, true);
        let gate = occupy_a_worker(&m, DEFAULT);
        let log = Log::default();
        let ups: Vec<u64> = (0..30).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[]).unwrap()).collect();
        let got = Arc::new(Mutex::new(None));
        m.add(recording(&got, &log, 50), 0, DEFAULT, &ups[..20]).unwrap();
        m.add(recording(&got, &log, 51), 0, DEFAULT, &ups[10..]).unwrap();
        assert_eq!(linked(&m), (0, 30));
        match mode {
            0 => {
                m.stop_all();
                assert_eq!(linked(&m), (0, 0));
                gate.open();
            }
            1 => {
                gate.open();
                m.shut_down(Some(TIMEOUT)).unwrap();
                assert_eq!(linked(&m), (0, 0));
            }
            _ => {
                m.pause_processing().unwrap();
                let r = m.stop_group(DEFAULT, true, true).unwrap();
                assert!(r.before_start >= 32, "{r:?}");
                assert_eq!(linked(&m), (0, 0));
                gate.open();
                m.start_processing().unwrap();
            }
        }
        if mode != 1 {
            m.shut_down(Some(TIMEOUT)).ok();
        }
        drop(m);
        assert_all_freed();
    }
}

/// Randomised: many workers, fan-ins over queued and running lane tasks,
/// chains, stops, priority changes, hooks and pauses; every fan-in that
/// runs sees the results of its upstream tasks that completed, every final
/// event of an upstream task comes before its fan-in's, the manager goes
/// idle, and the linked count returns to 0.
#[test]
fn random_fan_ins_over_queued_lane_tasks_keep_results_order_and_the_count() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_FAN_IN_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    for round in 0..rounds {
        let mut rng = Rng(0xC0FFEE + round);
        let threads = 1 + rng.below(4) as usize;
        let m = manager(threads, true);
        let seen: Seen = Arc::default();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut ids: Vec<u64> = Vec::new();
        let mut ups_of: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut stopped_any = false;
        let hold = Gate::new();
        let held = rng.below(2) == 0;
        let polls = round % 2 == 1;
        let mut evs = Vec::new();
        if held {
            let h = hold.clone();
            m.add(job(move |_| h.pass()), 100, DEFAULT, &[]).unwrap();
        }
        let ops = 400 + rng.below(400);
        for op in 0..ops {
            let prio = rng.below(3) as i32 - 1;
            let s2 = seen.clone();
            let r2 = ran.clone();
            let tag = op as i64;
            let mk = move || {
                let s2 = s2.clone();
                let r2 = r2.clone();
                job(move |ctx| {
                    let up = upstream(ctx);
                    s2.lock().unwrap().insert(ctx.task_id(), up);
                    r2.fetch_add(1, Ordering::SeqCst);
                    if tag % 3 != 0 {
                        ctx.set_result(value(tag));
                    }
                    if tag % 29 == 5 {
                        ctx.fail(btm::engine::Failure::new(b"x", b"y"));
                    }
                    if tag % 7 == 0 {
                        std::thread::yield_now();
                    }
                })
            };
            match rng.below(20) {
                0..=8 => ids.push(m.add(mk(), prio, DEFAULT, &[]).unwrap()),
                9..=11 if !ids.is_empty() => {
                    // A fan-in over the newest few (mostly queued).
                    let n = 1 + rng.below(8) as usize;
                    let from = ids.len().saturating_sub(n + rng.below(4) as usize);
                    let mut ups: Vec<u64> = ids[from..].iter().copied().filter(|_| rng.below(4) != 0).collect();
                    if ups.is_empty() {
                        ups.push(*ids.last().unwrap());
                    }
                    let id = m.add(mk(), prio + rng.below(3) as i32, DEFAULT, &ups).unwrap();
                    ups_of.insert(id, ups);
                    ids.push(id);
                }
                12..=13 if !ids.is_empty() => {
                    let up = ids[ids.len() - 1 - rng.below(ids.len().min(5) as u64) as usize];
                    let id = m.add_link(mk(), prio, DEFAULT, up).unwrap();
                    ups_of.insert(id, vec![up]);
                    ids.push(id);
                }
                14 if !ids.is_empty() => {
                    let v = ids[ids.len() - 1 - rng.below(ids.len().min(10) as u64) as usize];
                    let _ = m.set_priority(v, rng.below(5) as i32 - 2);
                }
                15 if !ids.is_empty() => {
                    let v = ids[ids.len() - 1 - rng.below(ids.len().min(10) as u64) as usize];
                    let (up, down) = (rng.below(2) == 0, rng.below(2) == 0);
                    let _ = m.stop_task(v, up, down);
                    stopped_any = true;
                }
                16 => {
                    if rng.below(4) == 0 {
                        m.set_task_hooks(Some(TaskHooks {
                            on_start: None,
                            on_end: None,
                            data: Owned::new(std::ptr::null_mut(), None),
                        }));
                        m.set_task_hooks(None);
                    }
                }
                17 => {
                    if rng.below(4) == 0 {
                        m.pause_processing().unwrap();
                        m.start_processing().unwrap();
                    }
                }
                18 if polls => {
                    evs.extend(poll(&m));
                }
                _ => ids.push(m.add(mk(), prio, DEFAULT, &[]).unwrap()),
            }
        }
        if held {
            hold.open();
        }
        m.wait_idle(Some(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("round {round}: not idle: {e:?}, stats {:?}", m.stats()));
        loop {
            let got = poll(&m);
            if got.is_empty() {
                break;
            }
            evs.extend(got);
        }
        assert_eq!(linked(&m), (0, 0), "round {round}");
        let mut pos: HashMap<u64, usize> = HashMap::new();
        let mut completed_with: HashSet<u64> = HashSet::new();
        for (i, e) in evs.iter().enumerate() {
            match e {
                Ev::Completed { id, values, .. } => {
                    pos.insert(*id, i);
                    if values.iter().any(|(t, _)| t == id) {
                        completed_with.insert(*id);
                    }
                }
                Ev::Failed { id, .. } => {
                    pos.insert(*id, i);
                }
                _ => {}
            }
        }
        let seen = seen.lock().unwrap();
        for (f, ups) in &ups_of {
            let Some(got) = seen.get(f) else { continue };
            let got_ids: HashSet<u64> = got.iter().map(|(t, _)| *t).collect();
            for (t, _) in got {
                assert!(ups.contains(t), "round {round}: {f} got a result from {t}, not an upstream of it ({ups:?})");
            }
            assert_eq!(got_ids.len(), got.len(), "round {round}: {f} got a result twice: {got:?}");
            for u in ups {
                if !polls && completed_with.contains(u) {
                    assert!(got_ids.contains(u), "round {round}: {f} missed {u}'s result: {got:?}");
                }
                if let (Some(pu), Some(pf)) = (pos.get(u), pos.get(f)) {
                    assert!(pu < pf, "round {round}: {u}'s final after its downstream {f}'s");
                }
            }
            // In completion order: the order of the upstream final events.
            let mut by_event: Vec<u64> = got.iter().map(|(t, _)| *t).filter(|t| pos.contains_key(t)).collect();
            let as_given = by_event.clone();
            by_event.sort_by_key(|t| pos[t]);
            if !stopped_any && !polls {
                assert_eq!(as_given, by_event, "round {round}: {f}'s results out of completion order");
            }
        }
        drop(seen);
        m.shut_down(Some(TIMEOUT)).unwrap();
        drop(m);
        assert_all_freed();
    }
}

#[test]
fn a_fan_in_over_the_tail_of_a_long_backlog_marks_its_few_and_counts_nothing() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    let ids: Vec<u64> = (0..100).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[]).unwrap()).collect();
    let got = Arc::new(Mutex::new(None));
    let f = m.add(recording(&got, &log, 1000), 0, DEFAULT, &ids[98..]).unwrap();
    // Counted as linked, they would keep every worker taking the lock after
    // each of the 98 outcomes before theirs (session 28 moved them to the
    // locked path for that).
    assert_eq!(linked(&m), (0, 2));
    gate.open();
    let evs = finals(&collect_finals(&m, 102));
    let mut want: Vec<i64> = (0..100).collect();
    want.push(1000);
    assert_eq!(log.get(), want, "the marked tasks keep their place; the fan-in runs last");
    assert_eq!(got.lock().unwrap().clone().unwrap(), vec![(ids[98], 98), (ids[99], 99)]);
    assert_eq!(evs.last(), Some(&f));
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}

#[test]
fn a_fan_in_over_the_tail_of_a_backlog_past_the_ring_moves_its_few_to_the_locked_path() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    for _ in 0..RING {
        m.add(job(|_| {}), 0, DEFAULT, &[]).unwrap();
    }
    let ids: Vec<u64> = (0..100).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[]).unwrap()).collect();
    let got = Arc::new(Mutex::new(None));
    let f = m.add(recording(&got, &log, 1000), 0, DEFAULT, &ids[98..]).unwrap();
    // Waiting in the level's overflow, they cannot be marked; counted, they
    // would keep every worker taking the lock after each outcome before
    // theirs.
    assert_eq!(linked(&m), (0, 0));
    gate.open();
    let evs = finals(&collect_finals(&m, 1 + RING + 101));
    let mut want: Vec<i64> = (0..100).collect();
    want.push(1000);
    assert_eq!(log.get(), want, "the moved tasks keep their place; the fan-in runs last");
    assert_eq!(got.lock().unwrap().clone().unwrap(), vec![(ids[98], 98), (ids[99], 99)]);
    assert_eq!(evs.last(), Some(&f));
    finish(m);
}

/// A task that records the upstream results it was given in `got`.
fn recording_upstream(got: &Got) -> btm::engine::Job {
    let got = got.clone();
    job(move |ctx| *got.lock().unwrap() = Some(upstream(ctx)))
}

#[test]
fn a_fan_in_added_while_its_upstream_tasks_wait_in_the_lane_leaves_them_there() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    let ups: Vec<u64> = (0..20).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[]).unwrap()).collect();
    let got = Arc::new(Mutex::new(None));
    let f = m.add(recording_upstream(&got), 0, DEFAULT, &ups).unwrap();
    // Still queued in the lane, marked linked (the worker that claims one
    // applies its outcome at once), rather than moved to the locked path.
    assert_eq!(linked(&m), (0, 20));
    gate.open();
    // No poll: the last upstream outcome must not wait for the host.
    wait_until("the fan-in to run", || got.lock().unwrap().is_some());
    let want: Vec<(u64, i64)> = ups.iter().zip(0..).map(|(&u, v)| (u, v)).collect();
    assert_eq!(got.lock().unwrap().clone().unwrap(), want, "every result, in completion order");
    assert_eq!(log.get(), (0..20).collect::<Vec<_>>());
    let evs = finals(&collect_finals(&m, 22));
    assert_eq!(evs[1..21], ups[..]);
    assert_eq!(evs[21], f);
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}

#[test]
fn linked_lane_tasks_leave_the_count_and_their_marks_when_stopped_moved_or_drained() {
    let _s = serial();
    for past_ring in [false, true] {
        let m = manager(1, true);
        let gate = occupy_a_worker(&m, DEFAULT);
        let log = Log::default();
        // Past a full ring, the four wait in the level's overflow: counted
        // rather than marked (the fan-in's lane tasks are the ring's too,
        // so that they are at least half of the lane's queued entries).
        let ring: Vec<u64> = if past_ring {
            (0..RING).map(|_| m.add(job(|_| {}), 0, DEFAULT, &[]).unwrap()).collect()
        } else {
            Vec::new()
        };
        let a = m.add(logging(&log, 1), 0, g(1), &[]).unwrap();
        let ups: Vec<u64> = (2..5).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[]).unwrap()).collect();
        let (b, c, d) = (ups[0], ups[1], ups[2]);
        let got = Arc::new(Mutex::new(None));
        let all: Vec<u64> = ring.iter().copied().chain([a, b, c, d]).collect();
        m.add(recording_upstream(&got), 0, DEFAULT, &all).unwrap();
        // (counted, marked) with `n` of the four left.
        let left = |n: usize| if past_ring { (n, if n > 0 { RING } else { 0 }) } else { (0, n) };
        assert_eq!(linked(&m), left(4));
        // A stop while queued: the fan-in runs without that result.
        assert_eq!(m.stop_group(g(1), false, false).unwrap().before_start, 1);
        assert_eq!(linked(&m), left(3));
        // A priority change moves it to the locked path, where it runs first.
        m.set_priority(d, 5).unwrap();
        assert_eq!(linked(&m), left(2));
        // A pause keeps the lane's tasks there, closed, and their count.
        m.pause_processing().unwrap();
        assert_eq!(linked(&m), left(2));
        m.start_processing().unwrap();
        // Hooks move the rest of the lane to the locked path (lane tasks
        // start without the lock, where hooks are not read).
        m.set_task_hooks(Some(TaskHooks {
            on_start: None,
            on_end: None,
            data: Owned::new(std::ptr::null_mut(), None),
        }));
        assert_eq!(linked(&m), (0, 0));
        gate.open();
        wait_until("the fan-in to run", || got.lock().unwrap().is_some());
        assert_eq!(log.get(), vec![4, 2, 3], "the moved-up task first, the stopped one never");
        assert_eq!(got.lock().unwrap().clone().unwrap(), vec![(d, 4), (b, 2), (c, 3)]);
        collect_finals(&m, 5 + ring.len());
        assert_eq!(linked(&m), (0, 0));
        finish(m);
    }
}

#[test]
fn a_continuation_of_a_queued_task_that_gains_a_fan_in_waits_with_it_by_priority() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    let x = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    let a = m.add(logging(&log, 2), 0, DEFAULT, &[]).unwrap();
    // Attached to `a` in the lane, it would run right after it.
    let c = m.add_link(logging(&log, 3), 0, DEFAULT, a).unwrap();
    let f = m.add(logging(&log, 4), 5, DEFAULT, &[x, a]).unwrap();
    // `x` marked; `a`, whose slot holds the continuation's record, counted.
    assert_eq!(linked(&m), (1, 1));
    gate.open();
    let evs = finals(&collect_finals(&m, 5));
    assert_eq!(log.get(), vec![1, 2, 4, 3], "once `a` ran, the fan-in (priority 5) before the continuation (0)");
    assert_eq!(evs[1..], [x, a, f, c]);
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}

#[test]
fn a_fan_in_of_queued_lane_tasks_fails_with_one_and_a_stopped_fan_in_leaves_the_rest_alone() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let log = Log::default();
    let a = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    let b = m.add(failing("b broke", "details"), 0, DEFAULT, &[]).unwrap();
    let f = m.add(logging(&log, 2), 0, DEFAULT, &[a, b]).unwrap();
    // A second fan-in, over another queued task and `a` (which then has two
    // downstream tasks), stopped before they run.
    let c = m.add(logging(&log, 3), 0, DEFAULT, &[]).unwrap();
    let h = m.add(logging(&log, 4), 0, g(7), &[c, a]).unwrap();
    assert_eq!(linked(&m), (0, 3));
    assert_eq!(m.stop_group(g(7), false, false).unwrap().before_start, 1);
    gate.open();
    let evs = collect_finals(&m, 5);
    assert_eq!(log.get(), vec![1, 3], "the failed fan-in and the stopped one never ran");
    let failed: Vec<(u64, String)> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Failed { id, message, .. } => Some((*id, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(b, "b broke".to_owned()), (f, "b broke".to_owned())]);
    assert!(!finals(&evs).contains(&h));
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}
