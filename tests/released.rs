//! Tasks released together by their upstream task's finish (session 31,
//! `State::ready_waiting`): into the lane when they can run from there,
//! where workers claim them without the lock while the lock holder may
//! still be releasing (or stopping) others in the same section. Order,
//! stops, counts, overflow and fan-ins over them (the second half written
//! by a review of the change, which found the stop and publication races
//! these tests catch).
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use btm::engine::{Job, Manager};
use common::*;

#[test]
fn tasks_released_together_by_their_upstream_task_run_from_the_lane_by_priority_then_id() {
    // Session 31: a finish that releases waiting tasks puts each in the
    // lane when it can run from there (`State::ready_waiting`), instead of
    // the locked queue; the order stays the locked queue's.
    let _s = serial();
    let m = manager(1, true);
    let (root, gate) = held_lane_task(&m);
    let log = Log::default();
    for i in 0..40 {
        m.add(logging(&log, i), (i % 2) as i32, DEFAULT, &[root]).unwrap();
    }
    let before = m.lane_added_for_tests();
    gate.open();
    assert_eq!(finals(&collect_finals(&m, 41)).len(), 41);
    assert_eq!(m.lane_added_for_tests() - before, 40, "every released task went to the lane");
    let want: Vec<i64> = (0..40).filter(|i| i % 2 == 1).chain((0..40).filter(|i| i % 2 == 0)).collect();
    assert_eq!(log.get(), want, "priority 1 first, each priority in id order");
    finish(m);
}

#[test]
fn a_released_task_older_than_its_levels_newest_entry_waits_on_the_locked_path_and_still_runs_first() {
    let _s = serial();
    let m = manager(1, true);
    let (root, gate) = held_lane_task(&m);
    let log = Log::default();
    for i in 0..10 {
        m.add(logging(&log, i), 0, DEFAULT, &[root]).unwrap();
    }
    // Independent, so in the lane at once, behind the running root task.
    m.add(logging(&log, 10), 0, DEFAULT, &[]).unwrap();
    let before = m.lane_added_for_tests();
    gate.open();
    assert_eq!(finals(&collect_finals(&m, 12)).len(), 12);
    assert_eq!(m.lane_added_for_tests(), before, "a lane level runs its entries in id order: none moved there");
    assert_eq!(log.get(), (0..=10).collect::<Vec<_>>(), "the released tasks first, in id order");
    finish(m);
}

#[test]
fn released_tasks_that_receive_a_result_wait_on_the_locked_path_and_get_it() {
    let _s = serial();
    let m = manager(2, true);
    let gate = Gate::new();
    let gc = gate.clone();
    let root = m
        .add(
            job(move |ctx| {
                gc.pass();
                ctx.set_result(value(7));
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    gate.wait_arrivals(1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..20 {
        let s = seen.clone();
        m.add(job(move |ctx| s.lock().unwrap().push(upstream(ctx))), 0, DEFAULT, &[root]).unwrap();
    }
    let before = m.lane_added_for_tests();
    gate.open();
    assert_eq!(finals(&collect_finals(&m, 21)).len(), 21);
    assert_eq!(m.lane_added_for_tests(), before, "a lane task would run without its upstream results");
    assert_eq!(*seen.lock().unwrap(), vec![vec![(root, 7)]; 20]);
    finish(m);
}

/// An independent (lane) task that blocks its worker on the returned gate,
/// its id, once it does.
fn held_lane_task(m: &Arc<Manager>) -> (u64, Gate) {
    let gate = Gate::new();
    let gc = gate.clone();
    let id = m.add(job(move |_| gc.pass()), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    (id, gate)
}

fn spin_logging(log: &Log, tag: i64) -> btm::engine::Job {
    let log = log.clone();
    job(move |_| {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_micros(1) {
            std::hint::spin_loop();
        }
        log.push(tag);
    })
}

#[test]
fn released_tasks_behind_a_full_ring_wait_in_the_overflow_in_order_and_can_be_stopped_and_moved() {
    let _s = serial();
    let m = manager(1, true);
    let (root, gate) = held_lane_task(&m);
    let log = Log::default();
    let fill = RING + 100;
    for _ in 0..fill {
        m.add(spin_logging(&log, -1), 0, DEFAULT, &[]).unwrap();
    }
    let mut ds = Vec::new();
    for i in 0..50 {
        ds.push(m.add(spin_logging(&log, i), 0, DEFAULT, &[root]).unwrap());
    }
    let before = m.lane_added_for_tests();
    let s0 = m.stats();
    assert_eq!((s0.queued, s0.blocked, s0.running), (fill as u64, 50, 1));
    gate.open();
    wait_until("the release", || m.lane_added_for_tests() - before == 50);
    // Stop one released task queued in the overflow, move another up.
    let r = m.stop_task(ds[10], false, false).unwrap();
    assert_eq!((r.before_start, r.while_running, r.after_finish), (1, 0, 0), "{r:?}");
    m.set_priority(ds[20], 5).unwrap();
    let s = m.stats();
    assert!(s.queued > 1000 && s.blocked == 0, "{s:?}");
    m.wait_idle(Some(TIMEOUT)).unwrap();
    let got = log.get();
    assert_eq!(got.len(), fill + 49);
    assert!(!got.contains(&10), "the stopped task ran");
    let pos20 = got.iter().position(|&t| t == 20).unwrap();
    assert!(pos20 < fill - 100, "the task moved to priority 5 ran before the backlog: at {pos20}");
    let rest: Vec<i64> = got.iter().copied().filter(|&t| t >= 0 && t != 20).collect();
    let want: Vec<i64> = (0..50).filter(|&i| i != 10 && i != 20).collect();
    assert_eq!(rest, want, "released tasks in id order");
    let last_filler = got.iter().rposition(|&t| t == -1).unwrap();
    let first_d = got.iter().position(|&t| t >= 0 && t != 20).unwrap();
    assert!(last_filler < first_d, "a released task ran before older tasks of its level");
    let evs = drain(&m);
    assert_eq!(finals(&evs).len(), 1 + fill + 49);
    finish(m);
}

#[test]
fn released_lane_tasks_as_upstream_of_a_fan_in_and_a_continuation_stopped_and_moved() {
    let _s = serial();
    for round in 0..20 {
        let m = manager(2, true);
        let (root, gate) = held_lane_task(&m);
        let (_h1, g1) = held_lane_task(&m);
        // Queued: the worker that finishes the root takes it next and blocks.
        let g2 = Gate::new();
        let g2c = g2.clone();
        m.add(job(move |_| g2c.pass()), 5, DEFAULT, &[]).unwrap();
        let log = Log::default();
        let ds: Vec<u64> = (0..10).map(|i| m.add(logging(&log, i), 0, DEFAULT, &[root]).unwrap()).collect();
        let before = m.lane_added_for_tests();
        gate.open();
        g2.wait_arrivals(1);
        wait_until("the root's outcome applied", || m.stats().blocked == 0);
        assert_eq!(m.lane_added_for_tests() - before, 10, "round {round}");
        let st = m.stats();
        assert_eq!((st.queued, st.running, st.blocked), (10, 2, 0), "round {round}: {st:?}");
        // A fan-in over three queued released tasks, a continuation of a fourth.
        let x = m.add(logging(&log, 100), 0, DEFAULT, &[ds[1], ds[2], ds[3]]).unwrap();
        let c = m.add(logging(&log, 200), 0, DEFAULT, &[ds[4]]).unwrap();
        // A fan-in over a stopped one (no down): still runs.
        let y = m.add(logging(&log, 300), 0, DEFAULT, &[ds[6], ds[7]]).unwrap();
        let r = m.stop_task(ds[6], false, false).unwrap();
        assert_eq!(r.before_start, 1, "round {round}");
        // Stopped with down: its fan-in goes too.
        let z = m.add(logging(&log, 400), 0, DEFAULT, &[ds[8]]).unwrap();
        let r = m.stop_task(ds[8], false, true).unwrap();
        assert_eq!(r.before_start, 2, "round {round}: {r:?}");
        m.set_priority(ds[9], 7).unwrap();
        let st = m.stats();
        assert_eq!(st.queued + st.blocked, 8 + 3, "round {round}: {st:?}");
        g1.open();
        g2.open();
        let evs = collect_finals(&m, 2 + 8 + 3 + 1);
        let got = log.get();
        let at = |t: i64| {
            got.iter().position(|&v| v == t).unwrap_or_else(|| panic!("round {round}: {t} did not run: {got:?}"))
        };
        assert!(!got.contains(&6) && !got.contains(&8) && !got.contains(&400), "round {round}: {got:?}");
        assert!(at(100) > at(1) && at(100) > at(2) && at(100) > at(3), "round {round}: {got:?}");
        assert!(at(200) > at(4) && at(300) > at(7), "round {round}: {got:?}");
        let fin = finals(&evs);
        for id in [x, c, y] {
            assert!(fin.contains(&id), "round {round}");
        }
        assert!(!fin.contains(&z));
        // Results of upstream tasks reached the fan-in and the continuation.
        for e in &evs {
            if let Ev::Completed { id, values, .. } = e {
                if *id == x {
                    assert_eq!(values, &vec![(x, 100)]);
                }
            }
        }
        wait_until("nothing counted linked", || linked(&m) == (0, 0));
        finish(m);
    }
}

/// A task that blocks its worker on the returned gate, its id, once it does.
///
/// It runs on the locked path (it receives an upstream result): a lane task
/// with downstream tasks would be counted in `lane_linked`, which makes
/// every worker take the lock after each outcome, and no worker would be
/// left claiming without the lock.
fn held_locked_task(m: &Arc<Manager>, group: btm::engine::GroupKey) -> (u64, Gate) {
    let up = m.add(job(|ctx| ctx.set_result(value(1))), 0, group, &[]).unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    let gate = Gate::new();
    let gc = gate.clone();
    let id = m.add(job(move |_| gc.pass()), 0, group, &[up]).unwrap();
    gate.wait_arrivals(1);
    assert_eq!(m.lane_linked_for_tests(), 0);
    (id, gate)
}

fn counting(c: &Arc<AtomicUsize>) -> btm::engine::Job {
    let c = c.clone();
    job(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    })
}

/// Short independent tasks at priority -1 that keep the free worker in
/// its lane loop (claiming without the lock).
fn fillers(m: &Arc<Manager>, n: usize) {
    for _ in 0..n {
        m.add(
            job(|_| {
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_micros(2) {
                    std::hint::spin_loop();
                }
            }),
            -1,
            DEFAULT,
            &[],
        )
        .unwrap();
    }
    assert!(m.stats().queued > 1000, "the free worker is still busy in the lane");
}

fn rounds() -> usize {
    std::env::var("BTM_RELEASED_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

#[test]
fn stop_all_starts_no_task_that_its_own_walk_releases() {
    // stop_all walks its roots in id order: the held root first, which
    // releases its waiting downstream tasks (the stop does not reach
    // down); they are stopped a moment later, as roots of their own. Before
    // b39c0da they waited in the locked queue meanwhile; in the lane a
    // free worker can claim and run them before the walk reaches them.
    let _s = serial();
    for round in 0..rounds() {
        let m = manager(2, true);
        let (root, gate) = held_locked_task(&m, DEFAULT);
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..300 {
            m.add(counting(&ran), 0, DEFAULT, &[root]).unwrap();
        }
        fillers(&m, 20_000);
        let report = m.stop_all();
        gate.open();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "round {round}: stop_all let tasks start that were waiting when it was called ({report:?})"
        );
        finish(m);
    }
}

#[test]
fn stop_group_starts_no_member_that_its_own_walk_releases() {
    let _s = serial();
    for round in 0..rounds() {
        let m = manager(2, true);
        let (root, gate) = held_locked_task(&m, g(7));
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..300 {
            m.add(counting(&ran), 0, g(7), &[root]).unwrap();
        }
        fillers(&m, 20_000);
        let report = m.stop_group(g(7), false, false).unwrap();
        gate.open();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        assert_eq!(
            (ran.load(Ordering::SeqCst), report.while_running, report.before_start),
            (0, 1, 300),
            "round {round}: stop_group let members start that were waiting when it was called"
        );
        drain(&m);
        finish(m);
    }
}

#[test]
fn tasks_released_together_by_a_stop_start_by_priority() {
    // The held root is stopped without its downstream tasks: they are
    // released together, in one lock section, alternating priorities 1
    // and 0. One worker is free (the other holds the root): it must start
    // every priority-1 task before any priority-0 one, as it did when they
    // all went to the locked queue.
    let _s = serial();
    let mut bad_rounds = 0;
    let mut worst = 0;
    for _round in 0..rounds() {
        let m = manager(2, true);
        let (root, gate) = held_locked_task(&m, DEFAULT);
        let log = Log::default();
        for i in 0..400 {
            let log = log.clone();
            m.add(job(move |_| log.push(i % 2)), (i % 2) as i32, DEFAULT, &[root]).unwrap();
        }
        fillers(&m, 20_000);
        let before = m.lane_added_for_tests();
        m.stop_task(root, false, false).unwrap();
        let moved = m.lane_added_for_tests() - before;
        wait_until("the released tasks to run", || log.get().len() == 400);
        let got = log.get();
        if std::env::var("BTM_RELEASED_DEBUG").is_ok() {
            eprintln!("to the lane: {moved}; first starts: {:?}", &got[..20]);
        }
        // Priority-0 starts before the last priority-1 start.
        let last1 = got.iter().rposition(|&p| p == 1).unwrap();
        let early0 = got[..last1].iter().filter(|&&p| p == 0).count();
        if early0 > 0 {
            bad_rounds += 1;
            worst = worst.max(early0);
        }
        gate.open();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        drain(&m);
        finish(m);
    }
    assert_eq!(bad_rounds, 0, "priority-0 tasks started before priority-1 ones released together (worst {worst})");
}

#[test]
fn tasks_released_together_by_a_finish_start_by_priority() {
    // As above, released by the root's finish on one worker while the
    // other claims from the lane: a priority-0 task may start while at
    // most one priority-1 task (the one the other worker is claiming at
    // that moment) has not.
    let _s = serial();
    let mut bad_rounds = 0;
    let mut worst = 0;
    let n1 = 200;
    for _round in 0..rounds() {
        let m = manager(2, true);
        let (root, gate) = held_locked_task(&m, DEFAULT);
        let started1 = Arc::new(AtomicUsize::new(0));
        let behind = Arc::new(AtomicUsize::new(0));
        for i in 0..2 * n1 {
            let (s1, b) = (started1.clone(), behind.clone());
            let p = (i % 2) as i32;
            m.add(
                job(move |_| {
                    if p == 1 {
                        s1.fetch_add(1, Ordering::SeqCst);
                    } else {
                        let missing = n1 - s1.load(Ordering::SeqCst);
                        b.fetch_max(missing, Ordering::SeqCst);
                    }
                }),
                p,
                DEFAULT,
                &[root],
            )
            .unwrap();
        }
        fillers(&m, 20_000);
        gate.open();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        let missing = behind.load(Ordering::SeqCst);
        if missing > 1 {
            bad_rounds += 1;
            worst = worst.max(missing);
        }
        drain(&m);
        finish(m);
    }
    assert_eq!(
        bad_rounds, 0,
        "a priority-0 task started while priority-1 tasks released with it had not (worst: {worst} not started)"
    );
}

#[test]
fn released_pass_throughs_take_none_of_the_lanes_levels() {
    // A pass-through runs no function, so it never goes to the lane; its
    // release must not make a lane level for its priority either (a lane
    // has eight, and a level made for nothing would leave later priorities
    // on the locked path while the workers are busy).
    let _s = serial();
    let m = manager(1, true);
    let (root, gate) = held_lane_task(&m);
    for p in 10..14 {
        m.add(Job::pass_through(btm::engine::Owned::new(std::ptr::null_mut(), None)), p, DEFAULT, &[root]).unwrap();
    }
    gate.open();
    assert_eq!(finals(&collect_finals(&m, 5)).len(), 5);
    assert_eq!(m.lane_levels_for_tests(), (vec![0], 0), "only the root's priority has a level");
    // Priority 0 (the root's) and seven new ones fill the lane's levels.
    for p in 20..27 {
        let before = m.lane_added_for_tests();
        m.add(nop(), p, DEFAULT, &[]).unwrap();
        assert_eq!(m.lane_added_for_tests(), before + 1, "priority {p} got a lane level");
    }
    assert_eq!(finals(&collect_finals(&m, 7)).len(), 7);
    finish(m);
}

#[test]
fn tasks_added_on_an_upstream_task_that_has_downstream_tasks_wait_with_them() {
    // Session 32: a task added on one upstream task that already has
    // downstream tasks and is not finished joins them in one step
    // (`State::add_fan_out`), through `Manager::add` and through
    // `Manager::add_link` (the C API's single add) alike: it gets the
    // upstream task's result or fails with it, starts by priority once
    // released, and a stop while it waits withdraws it alone. The upstream
    // task runs on the lane (held while the tasks are added) or on the
    // locked path (it received a result, as in `held_locked_task`).
    let _s = serial();
    for case in 0..8 {
        let (link, fails, locked) = (case & 1 != 0, case & 2 != 0, case & 4 != 0);
        let m = manager(1, true);
        let mut ups = Vec::new();
        if locked {
            ups.push(m.add(job(|ctx| ctx.set_result(value(1))), 0, g(2), &[]).unwrap());
            m.wait_idle(Some(TIMEOUT)).unwrap();
        }
        let gate = Gate::new();
        let gc = gate.clone();
        let root = m
            .add(
                job(move |ctx| {
                    gc.pass();
                    if fails {
                        ctx.fail(btm::engine::Failure::new(b"boom", b""));
                    } else {
                        ctx.set_result(value(5));
                    }
                }),
                0,
                g(1),
                &ups,
            )
            .unwrap();
        gate.wait_arrivals(1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut ids = Vec::new();
        for i in 0..30i64 {
            let l = log.clone();
            let task = job(move |ctx| l.lock().unwrap().push((i, upstream(ctx))));
            let p = (i % 3) as i32;
            let id = if link { m.add_link(task, p, g(1), root) } else { m.add(task, p, g(1), &[root]) };
            ids.push(id.unwrap());
        }
        let stopped = m.stop_task(ids[10], false, false).unwrap();
        assert_eq!(stopped.before_start, 1, "case {case}: the waiting task is stopped alone");
        gate.open();
        let evs = collect_finals(&m, 30 + ups.len());
        let failed: Vec<u64> = evs.iter().filter(|e| matches!(e, Ev::Failed { .. })).filter_map(Ev::task).collect();
        let others: Vec<u64> = ids.iter().copied().filter(|&d| d != ids[10]).collect();
        assert!(!finals(&evs).contains(&ids[10]), "case {case}: no event for the stopped task");
        assert!(evs.iter().any(|e| matches!(e, Ev::GroupFinished { group } if *group == g(1))), "case {case}");
        if fails {
            let want: Vec<u64> = std::iter::once(root).chain(others).collect();
            assert_eq!(failed, want, "case {case}: every waiting task fails with its upstream task");
            assert!(log.lock().unwrap().is_empty(), "case {case}: none ran");
        } else {
            assert!(failed.is_empty(), "case {case}");
            let ran = log.lock().unwrap().clone();
            let order: Vec<i64> = ran.iter().map(|(i, _)| *i).collect();
            let want: Vec<i64> = (0..3).rev().flat_map(|p| (0..30).filter(move |i| i % 3 == p && *i != 10)).collect();
            assert_eq!(order, want, "case {case}: released together, they start by priority, then id");
            assert!(ran.iter().all(|(_, up)| *up == vec![(root, 5)]), "case {case}: each got the result");
        }
        finish(m);
    }
}
