//! Every point of SEMANTICS.md, driven through the engine API.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use btm::engine::{Error, GroupKey, Job, Manager, NewTask, StopReport};
use common::*;

fn ids_of(events: &[Ev]) -> Vec<u64> {
    events.iter().filter_map(|e| e.task()).collect()
}

// 1. Ordering -------------------------------------------------------------

#[test]
fn higher_priority_first_fifo_among_equals_default_is_zero() {
    let _s = serial();
    let m = manager(1, false);
    let log = Log::default();
    for (tag, prio) in [(1, 0), (2, 5), (3, 0), (4, -3), (5, 5), (6, 0)] {
        m.add(logging(&log, tag), prio, DEFAULT, &[]).unwrap();
    }
    m.start_processing().unwrap();
    collect_finals(&m, 6);
    assert_eq!(log.get(), vec![2, 5, 1, 3, 6, 4]);
    finish(m);
}

#[test]
fn blocked_task_is_skipped_and_high_priority_downstream_jumps_the_queue() {
    let _s = serial();
    let m = manager(1, false);
    let log = Log::default();
    let up = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    m.add(logging(&log, 2), 10, DEFAULT, &[up]).unwrap(); // blocked, high priority
    for tag in 3..=5 {
        m.add(logging(&log, tag), 0, DEFAULT, &[]).unwrap();
    }
    m.start_processing().unwrap();
    collect_finals(&m, 5);
    // 1 runs first (2 is blocked), then 2 jumps ahead of 3, 4, 5.
    assert_eq!(log.get(), vec![1, 2, 3, 4, 5]);
    finish(m);
}

#[test]
fn a_task_that_becomes_ready_competes_in_add_order_among_equals() {
    let _s = serial();
    let m = manager(1, false);
    let log = Log::default();
    let up = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    m.add(logging(&log, 2), -1, DEFAULT, &[up]).unwrap();
    m.add(logging(&log, 3), -1, DEFAULT, &[]).unwrap();
    m.start_processing().unwrap();
    collect_finals(&m, 3);
    assert_eq!(log.get(), vec![1, 2, 3], "task 2 was added before 3, so once ready it runs first");
    finish(m);
}

// 2. Processing starts paused ----------------------------------------------

#[test]
fn paused_by_default_start_and_pause_are_idempotent() {
    let _s = serial();
    let m = manager(2, false);
    let log = Log::default();
    m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    assert_eq!(m.wait_events(Some(Duration::from_millis(100))), Err(Error::TimedOut));
    assert!(log.get().is_empty());
    assert_eq!(m.stats().threads, 0, "threads are created lazily");
    m.start_processing().unwrap();
    m.start_processing().unwrap();
    collect_finals(&m, 1);

    let gate = Gate::new();
    let g2 = gate.clone();
    m.add(job(move |_| g2.pass()), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    m.pause_processing().unwrap();
    m.pause_processing().unwrap();
    m.add(logging(&log, 2), 0, DEFAULT, &[]).unwrap();
    gate.open();
    // The running task finishes and reports; the new one does not start.
    collect_finals(&m, 1);
    assert_eq!(m.wait_events(Some(Duration::from_millis(100))), Err(Error::TimedOut));
    assert_eq!(log.get(), vec![1]);
    m.start_processing().unwrap();
    collect_finals(&m, 1);
    assert_eq!(log.get(), vec![1, 2]);
    finish(m);
}

#[test]
fn task_added_to_an_idle_running_pool_starts_at_once() {
    let _s = serial();
    let m = manager(0, true);
    let log = Log::default();
    m.add(logging(&log, 7), 0, DEFAULT, &[]).unwrap();
    let ev = collect_finals(&m, 1);
    assert!(matches!(&ev[0], Ev::Completed { values, .. } if values[0].1 == 7));
    finish(m);
}

// 3. Worker threads ---------------------------------------------------------

#[test]
fn threads_are_lazy_and_capped_zero_means_eight() {
    let _s = serial();
    let m = manager(0, true);
    let gate = Gate::new();
    for _ in 0..12 {
        let g2 = gate.clone();
        m.add(job(move |_| g2.pass()), 0, DEFAULT, &[]).unwrap();
    }
    gate.wait_arrivals(8);
    let s = m.stats();
    assert_eq!(s.threads, 8);
    assert_eq!(s.running, 8);
    assert_eq!(s.queued, 4);
    gate.open();
    collect_finals(&m, 12);
    assert!(Manager::new(btm::engine::Config { max_threads: 5000, ..Default::default() }).is_err());
    finish(m);
}

// 4. Upstream results ---------------------------------------------------------

#[test]
fn downstream_sees_upstream_results_in_completion_order() {
    let _s = serial();
    let m = manager(2, true);
    let (ga, gb) = (Gate::new(), Gate::new());
    let (ga2, gb2) = (ga.clone(), gb.clone());
    let a = m
        .add(
            job(move |ctx| {
                ga2.pass();
                ctx.set_result(value(10))
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    let b = m
        .add(
            job(move |ctx| {
                gb2.pass();
                ctx.set_result(value(20))
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(vec![]));
    let s2 = seen.clone();
    let c = m.add(job(move |ctx| *s2.lock().unwrap() = upstream(ctx)), 0, DEFAULT, &[a, b]).unwrap();
    gb.wait_arrivals(1);
    gb.open(); // b completes first
    collect_finals(&m, 1);
    ga.open();
    let ev = collect_finals(&m, 2);
    assert_eq!(ids_of(&ev).last(), Some(&c));
    assert_eq!(*seen.lock().unwrap(), vec![(b, 20), (a, 10)]);
    finish(m);
}

#[test]
fn chain_runs_without_host_polls_between_links() {
    let _s = serial();
    let m = manager(2, true);
    let mut prev = m.add(job(|ctx| ctx.set_result(value(1))), 0, DEFAULT, &[]).unwrap();
    for _ in 0..50 {
        prev = m
            .add(
                job(|ctx| {
                    let v = upstream(ctx)[0].1;
                    ctx.set_result(value(v + 1))
                }),
                0,
                DEFAULT,
                &[prev],
            )
            .unwrap();
    }
    m.wait_idle(Some(TIMEOUT)).unwrap(); // no poll happened; the chain still ran to the end
    let ev = poll(&m);
    let last = ev.iter().find(|e| e.task() == Some(prev)).unwrap();
    assert!(matches!(last, Ev::Completed { values, .. } if values[0].1 == 51));
    finish(m);
}

// 5. Upstream ids are checked against live tasks only -----------------------

#[test]
fn upstream_completed_but_unpolled_still_delivers_its_result() {
    let _s = serial();
    let m = manager(1, true);
    let a = m.add(job(|ctx| ctx.set_result(value(5))), 0, DEFAULT, &[]).unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap(); // a completed, not polled: still live
    let seen = Arc::new(std::sync::Mutex::new(vec![]));
    let s2 = seen.clone();
    m.add(job(move |ctx| *s2.lock().unwrap() = upstream(ctx)), 0, DEFAULT, &[a]).unwrap();
    collect_finals(&m, 2);
    assert_eq!(*seen.lock().unwrap(), vec![(a, 5)]);
    // Now a is polled: no longer live, a new downstream neither waits nor sees it.
    let seen2 = Arc::new(std::sync::Mutex::new(vec![(0, 0)]));
    let s3 = seen2.clone();
    m.add(job(move |ctx| *s3.lock().unwrap() = upstream(ctx)), 0, DEFAULT, &[a]).unwrap();
    collect_finals(&m, 1);
    assert!(seen2.lock().unwrap().is_empty());
    finish(m);
}

#[test]
fn downstream_of_failed_but_unpolled_task_fails_at_add_after_queued_events() {
    let _s = serial();
    let m = manager(1, true);
    let a = m.add(failing("boom", "trace"), 0, g(1), &[]).unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    let log = Log::default();
    let b = m.add(logging(&log, 2), 0, g(2), &[a]).unwrap();
    let ev = collect_finals(&m, 2);
    assert_eq!(
        ev,
        vec![
            Ev::Failed { id: a, group: g(1), message: "boom".into(), details: "trace".into() },
            Ev::GroupFinished { group: g(1) },
            Ev::Failed { id: b, group: g(2), message: "boom".into(), details: "trace".into() },
            Ev::GroupFinished { group: g(2) },
        ]
    );
    assert!(log.get().is_empty(), "b never ran");
    finish(m);
}

#[test]
fn stops_follow_edges_to_downstream_tasks_added_after_their_upstream_completed() {
    // A completed task whose only downstream task came after it keeps the
    // edge in its record (src/engine/mod.rs, `Body::implicit_edges`); a
    // second downstream task moves both to a link record. Stops must see
    // both kinds, in both directions.
    let _s = serial();
    for from_upstream in [true, false] {
        let m = manager(1, true);
        let ups: Vec<u64> =
            (0..3).map(|i| m.add(job(move |ctx| ctx.set_result(value(i))), 0, DEFAULT, &[]).unwrap()).collect();
        m.wait_idle(Some(TIMEOUT)).unwrap(); // completed, none polled: all live
        m.pause_processing().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(vec![]));
        let s2 = seen.clone();
        let f = m.add(job(move |ctx| *s2.lock().unwrap() = upstream(ctx)), 0, DEFAULT, &ups).unwrap();
        let g = m.add(nop(), 0, DEFAULT, &[ups[1]]).unwrap(); // ups[1]'s second downstream task
        let (report, left) = if from_upstream {
            // Downstream from ups[0] (edge in its record) and from ups[1]
            // (edges in a link record).
            let r0 = m.stop_task(ups[0], false, true).unwrap();
            assert_eq!((r0.before_start, r0.after_finish), (1, 1), "ups[0] and f");
            (m.stop_task(ups[1], false, true).unwrap(), vec![ups[2]])
        } else {
            // Upstream from f: its three finished upstream tasks' events are
            // withdrawn; g (down = false) still runs.
            (m.stop_task(f, true, false).unwrap(), vec![g])
        };
        if from_upstream {
            assert_eq!((report.before_start, report.after_finish), (1, 1), "g and ups[1]");
        } else {
            assert_eq!((report.before_start, report.after_finish), (1, 3), "f and its upstream tasks");
        }
        m.start_processing().unwrap();
        assert_eq!(ids_of(&drain(&m)), left, "from upstream: {from_upstream}");
        assert!(seen.lock().unwrap().is_empty(), "f never ran");
        finish(m);
    }
}

#[test]
fn a_fan_in_over_completed_tasks_receives_their_results_in_completion_order() {
    let _s = serial();
    let m = manager(1, true);
    let ups: Vec<u64> =
        (0..50).map(|i| m.add(job(move |ctx| ctx.set_result(value(i))), 0, DEFAULT, &[]).unwrap()).collect();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(vec![]));
    let s2 = seen.clone();
    // Named in reverse: completion order, not the list's, decides.
    let rev: Vec<u64> = ups.iter().rev().copied().collect();
    let f = m.add(job(move |ctx| *s2.lock().unwrap() = upstream(ctx)), 0, DEFAULT, &rev).unwrap();
    let evs = collect_finals(&m, 51);
    assert_eq!(*ids_of(&evs).last().unwrap(), f);
    let want: Vec<(u64, i64)> = ups.iter().zip(0..).map(|(&u, i)| (u, i)).collect();
    assert_eq!(*seen.lock().unwrap(), want);
    finish(m);
}

#[test]
fn upstream_id_never_issued_is_rejected_and_consumes_no_id() {
    let _s = serial();
    let m = manager(1, false);
    let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    assert_eq!(m.add(nop(), 0, DEFAULT, &[a + 1]), Err(Error::UnknownUpstream));
    assert_eq!(m.add(nop(), 0, DEFAULT, &[0]), Err(Error::UnknownUpstream));
    let b = m.add(nop(), 0, DEFAULT, &[a, a]).unwrap(); // duplicates count once
    assert_eq!(b, a + 1, "rejected adds issue no id");
    m.start_processing().unwrap();
    collect_finals(&m, 2);
    finish(m);
}

// 6. Pass-through -------------------------------------------------------------

#[test]
fn pass_through_gathers_payload_then_upstream_results_and_passes_them_on() {
    let _s = serial();
    let m = manager(1, false);
    let a = m.add(job(|ctx| ctx.set_result(value(1))), 0, DEFAULT, &[]).unwrap();
    let b = m.add(job(|ctx| ctx.set_result(value(2))), 0, DEFAULT, &[]).unwrap();
    let p = m.add(Job::pass_through(value(100)), 0, DEFAULT, &[a, b]).unwrap();
    let q = m.add(Job::pass_through(value(200)), 0, DEFAULT, &[p]).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(vec![]));
    let s2 = seen.clone();
    let d = m.add(job(move |ctx| *s2.lock().unwrap() = upstream(ctx)), 0, DEFAULT, &[q]).unwrap();
    let empty = m.add(Job::pass_through(btm::engine::Owned::new(std::ptr::null_mut(), None)), 0, DEFAULT, &[]).unwrap();
    m.start_processing().unwrap();
    let ev = collect_finals(&m, 6);
    let find = |id| ev.iter().find(|e| e.task() == Some(id)).unwrap().clone();
    assert_eq!(find(p), Ev::Completed { id: p, group: DEFAULT, values: vec![(p, 100), (a, 1), (b, 2)] });
    assert_eq!(find(q), Ev::Completed { id: q, group: DEFAULT, values: vec![(q, 200), (p, 100), (a, 1), (b, 2)] });
    assert_eq!(*seen.lock().unwrap(), vec![(q, 200), (p, 100), (a, 1), (b, 2)]);
    assert_eq!(find(d), Ev::Completed { id: d, group: DEFAULT, values: vec![] });
    assert_eq!(find(empty), Ev::Completed { id: empty, group: DEFAULT, values: vec![] });
    finish(m);
}

#[test]
fn pass_through_waits_for_its_priority_turn() {
    let _s = serial();
    let m = manager(1, false);
    let log = Log::default();
    m.add(logging(&log, 1), 5, DEFAULT, &[]).unwrap();
    let p = m.add(Job::pass_through(value(0)), 0, DEFAULT, &[]).unwrap();
    m.add(logging(&log, 2), 1, DEFAULT, &[]).unwrap();
    m.start_processing().unwrap();
    let ev = collect_finals(&m, 3);
    assert_eq!(ids_of(&ev).iter().position(|&i| i == p), Some(2));
    finish(m);
}

// 7. Failure cascades ------------------------------------------------------------

#[test]
fn failure_cascades_breadth_first_ascending_with_the_same_message() {
    let _s = serial();
    let m = manager(1, false);
    let ok = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    let f = m.add(failing("disk full", "at line 3"), 0, DEFAULT, &[]).unwrap();
    let c1 = m.add(nop(), 0, DEFAULT, &[f, ok]).unwrap();
    let c2 = m.add(nop(), 0, DEFAULT, &[f]).unwrap();
    let gc1 = m.add(nop(), 0, DEFAULT, &[c2]).unwrap();
    let gc2 = m.add(nop(), 0, DEFAULT, &[c1]).unwrap();
    let unrelated = m.add(nop(), -1, DEFAULT, &[ok]).unwrap();
    m.start_processing().unwrap();
    let ev = collect_finals(&m, 7);
    let failed: Vec<u64> = ev
        .iter()
        .filter_map(|e| match e {
            Ev::Failed { id, message, details, .. } => {
                assert_eq!((message.as_str(), details.as_str()), ("disk full", "at line 3"));
                Some(*id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![f, c1, c2, gc2, gc1], "BFS from f, siblings ascending");
    assert!(ev.iter().any(|e| matches!(e, Ev::Completed { id, .. } if *id == unrelated)));
    finish(m);
}

// 8 & 9. Groups ----------------------------------------------------------------

#[test]
fn named_and_numbered_groups_never_collide_and_next_group_id_is_fresh() {
    let _s = serial();
    let m = manager(1, true);
    let named = m.group_named(c"thumbnails");
    assert_eq!(named, m.group_named(c"thumbnails"));
    assert_ne!(named, GroupKey::numbered(named.value));
    let n1 = m.next_group_id();
    let n2 = m.next_group_id();
    assert_ne!(n1, n2);
    m.add(nop(), 0, named, &[]).unwrap();
    m.add(nop(), 0, g(named.value), &[]).unwrap();
    let ev = collect_finals(&m, 2);
    let finished: Vec<GroupKey> =
        ev.iter().filter_map(|e| if let Ev::GroupFinished { group } = e { Some(*group) } else { None }).collect();
    assert_eq!(finished.len(), 2);
    assert!(finished.contains(&named) && finished.contains(&g(named.value)));
    finish(m);
}

#[test]
fn group_finishes_right_after_its_last_final_event_and_again_when_refilled() {
    let _s = serial();
    let m = manager(1, false);
    let a = m.add(nop(), 0, g(1), &[]).unwrap();
    let b = m.add(nop(), 0, g(1), &[]).unwrap();
    let d = m.add(nop(), -1, DEFAULT, &[]).unwrap();
    m.start_processing().unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    // Poll one event at a time: group finished still comes right after b.
    let mut ev = vec![];
    for _ in 0..5 {
        ev.extend(poll_n(&m, 1));
    }
    assert_eq!(
        ev,
        vec![
            Ev::Completed { id: a, group: g(1), values: vec![] },
            Ev::Completed { id: b, group: g(1), values: vec![] },
            Ev::GroupFinished { group: g(1) },
            Ev::Completed { id: d, group: DEFAULT, values: vec![] },
            Ev::GroupFinished { group: DEFAULT },
        ]
    );
    let c = m.add(nop(), 0, g(1), &[]).unwrap();
    let ev = collect_finals(&m, 1);
    assert_eq!(ev, vec![Ev::Completed { id: c, group: g(1), values: vec![] }, Ev::GroupFinished { group: g(1) }]);
    finish(m);
}

#[test]
fn group_not_finished_when_a_task_was_added_before_the_last_completion_was_polled() {
    let _s = serial();
    let m = manager(1, true);
    let a = m.add(nop(), 0, g(3), &[]).unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    m.pause_processing().unwrap();
    let b = m.add(nop(), 0, g(3), &[]).unwrap();
    assert_eq!(poll(&m), vec![Ev::Completed { id: a, group: g(3), values: vec![] }]);
    m.start_processing().unwrap();
    let ev = collect_finals(&m, 1);
    assert_eq!(ev, vec![Ev::Completed { id: b, group: g(3), values: vec![] }, Ev::GroupFinished { group: g(3) }]);
    finish(m);
}

#[test]
fn cascade_finishes_each_group_once_right_after_the_failure_that_emptied_it() {
    let _s = serial();
    let m = manager(1, false);
    let f = m.add(failing("x", ""), 0, g(1), &[]).unwrap();
    let c1 = m.add(nop(), 0, g(2), &[f]).unwrap();
    let c2 = m.add(nop(), 0, g(1), &[f]).unwrap();
    let c3 = m.add(nop(), 0, g(2), &[f]).unwrap();
    m.start_processing().unwrap();
    let ev = collect_finals(&m, 4);
    let fail = |id, group| Ev::Failed { id, group, message: "x".into(), details: "".into() };
    assert_eq!(
        ev,
        vec![
            fail(f, g(1)),
            fail(c1, g(2)),
            fail(c2, g(1)),
            Ev::GroupFinished { group: g(1) },
            fail(c3, g(2)),
            Ev::GroupFinished { group: g(2) },
        ]
    );
    finish(m);
}

#[test]
fn group_finished_never_comes_from_a_stop() {
    let _s = serial();
    let m = manager(1, false);
    let a = m.add(nop(), 0, g(1), &[]).unwrap();
    m.add(nop(), 0, g(1), &[]).unwrap();
    m.start_processing().unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(poll_n(&m, 1), vec![Ev::Completed { id: a, group: g(1), values: vec![] }]);
    // The group's last task finished but is unpolled: stopping it withdraws
    // its event and the group does not finish.
    m.stop_group(g(1), true, true).unwrap();
    assert_eq!(poll(&m), vec![]);
    finish(m);
}

/// One no-op task per entry, in numbered group `n`.
fn batch_in_groups(groups: &[u64]) -> Vec<NewTask<'static>> {
    groups.iter().map(|&n| NewTask { job: nop(), priority: 0, group: g(n), upstream: &[] }).collect()
}

/// A task's record keeps its group's slot in three bytes: at most 2^24
/// groups have live tasks at once. Past that, an add to a new group is
/// refused with `TooManyGroups` (no id used, its job freed once), a batch
/// with one is refused whole, and a group whose tasks have all ended gives
/// its slot back. The limit is lowered here to reach it.
#[test]
fn a_new_group_past_the_group_limit_is_refused_until_a_group_ends() {
    let _s = serial();
    let m = manager(1, false);
    m.limit_groups_for_tests(3); // the default group and two more
    let first = m.add(nop(), 0, g(1), &[]).unwrap();
    m.add(nop(), 0, g(2), &[]).unwrap();
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    m.add(nop(), 0, g(1), &[]).unwrap();
    assert_eq!(m.add(nop(), 0, g(3), &[]), Err(Error::TooManyGroups));
    assert_eq!(m.add_many(batch_in_groups(&[1, 2, 4])), Err(Error::TooManyGroups));
    let ids = m.add_many(batch_in_groups(&[2, 1])).unwrap();
    assert_eq!(ids, vec![first + 4, first + 5], "refused adds use no id");
    assert_eq!(m.stats().queued, 6, "a refused batch adds nothing");
    // Every task ends: groups 1 and 2 give their slots back.
    m.start_processing().unwrap();
    let mut evs = collect_finals(&m, 6);
    evs.extend(drain(&m));
    for n in [1, 2] {
        assert!(evs.contains(&Ev::GroupFinished { group: g(n) }), "group {n} finished: {evs:?}");
    }
    m.add(nop(), 0, g(3), &[]).unwrap();
    m.add(nop(), 0, g(4), &[]).unwrap();
    assert_eq!(m.add(nop(), 0, g(5), &[]), Err(Error::TooManyGroups));
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    collect_finals(&m, 3);
    finish(m);
}

/// A batch naming one new group twice needs one free slot, as two single
/// adds would.
#[test]
fn a_batch_naming_one_new_group_twice_needs_one_group_slot() {
    let _s = serial();
    let m = manager(1, false);
    m.limit_groups_for_tests(3);
    m.add(nop(), 0, g(1), &[]).unwrap();
    assert_eq!(m.add_many(batch_in_groups(&[5, 6])), Err(Error::TooManyGroups));
    assert_eq!(m.add_many(batch_in_groups(&[5, 1, 5])).map(|ids| ids.len()), Ok(3));
    m.start_processing().unwrap();
    collect_finals(&m, 4);
    finish(m);
}

/// More than 2^16 groups with live tasks: a task keeps its group's slot
/// index in three bytes, and the third one counts.
#[test]
fn groups_past_two_bytes_of_slot_index_keep_their_tasks() {
    let _s = serial();
    let m = manager(1, false);
    let n = 70_000u64;
    let ids: Vec<u64> = (1..=n).map(|k| m.add(nop(), 0, g(k), &[]).unwrap()).collect();
    assert_eq!(m.group_stats(g(n)).unwrap(), [1, 0, 0, 0]);
    m.start_processing().unwrap();
    let evs = collect_finals(&m, n as usize);
    let completed: Vec<(u64, GroupKey)> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Completed { id, group, .. } => Some((*id, *group)),
            _ => None,
        })
        .collect();
    let want: Vec<(u64, GroupKey)> = ids.iter().zip(1..=n).map(|(&id, k)| (id, g(k))).collect();
    assert_eq!(completed, want);
    finish(m);
}

// 10. Stops ------------------------------------------------------------------------

#[test]
fn stop_flags_spread_transitively() {
    let _s = serial();
    for (up, down) in [(false, false), (true, false), (false, true), (true, true)] {
        let m = manager(1, false);
        // a -> b -> c, and x -> b
        let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
        let x = m.add(nop(), 0, DEFAULT, &[]).unwrap();
        let b = m.add(nop(), 0, DEFAULT, &[a, x]).unwrap();
        let c = m.add(nop(), 0, DEFAULT, &[b]).unwrap();
        let r = m.stop_task(b, up, down).unwrap();
        m.start_processing().unwrap();
        let ev = drain(&m);
        let mut ran: Vec<u64> = ids_of(&ev);
        ran.sort();
        let mut expect = vec![];
        if !up {
            expect.extend([a, x]);
        }
        if !down {
            expect.push(c);
        }
        expect.sort();
        assert_eq!(ran, expect, "up={up} down={down}");
        assert_eq!(r.before_start, 1 + if up { 2 } else { 0 } + if down { 1 } else { 0 });
        finish(m);
    }
}

#[test]
fn stopped_running_task_keeps_running_and_its_outcome_is_dropped() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    let saw_stop = Arc::new(AtomicUsize::new(0));
    let s2 = saw_stop.clone();
    let t = m
        .add(
            job(move |ctx| {
                g2.pass();
                if ctx.is_stopped() {
                    s2.store(1, Ordering::SeqCst);
                }
                ctx.set_result(value(1));
            }),
            0,
            g(1),
            &[],
        )
        .unwrap();
    let log = Log::default();
    let down = m.add(logging(&log, 2), 0, DEFAULT, &[t]).unwrap();
    gate.wait_arrivals(1);
    let r = m.stop_task(t, false, false).unwrap();
    assert_eq!(r, StopReport { before_start: 0, while_running: 1, after_finish: 0 });
    gate.open();
    let ev = collect_finals(&m, 1);
    assert_eq!(ids_of(&ev), vec![down], "only the downstream reports; it ran without the result");
    assert_eq!(saw_stop.load(Ordering::SeqCst), 1);
    assert_eq!(m.stop_task(t, true, true), Err(Error::NotFound));
    finish(m);
}

/// A stop of a group takes its whole member list: every live member is
/// stopped (a running one keeps running, its outcome dropped), so the group
/// has no live task left and no member list is needed for it. Checked: the
/// stop reports every member and the manager holds none of them queued or
/// blocked; the group has no live task left (a second stop finds nothing);
/// a task added later is the only one a new stop finds; and the group
/// finishes again, right after its next task, which it would not if a
/// member had been left live without a list (the group's live count would
/// not reach zero).
#[test]
fn a_group_stopped_while_a_task_runs_is_empty_and_works_as_new() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    let running = m.add(job(move |_| g2.pass()), 5, g(4), &[]).unwrap();
    gate.wait_arrivals(1);
    m.add(nop(), 0, g(4), &[]).unwrap(); // queued
    m.add(nop(), 0, g(4), &[running]).unwrap(); // blocked
    assert_eq!(m.group_stats(g(4)).unwrap(), [1, 1, 1, 0], "queued, blocked, running");
    let r = m.stop_group(g(4), false, false).unwrap();
    assert_eq!(r, StopReport { before_start: 2, while_running: 1, after_finish: 0 });
    let st = m.stats();
    assert_eq!((st.queued, st.blocked, st.stopped_total), (0, 0, 3), "every member stopped");
    assert_eq!(m.stop_group(g(4), false, false), Err(Error::NotFound), "no live task left in the group");
    // A task added to the group while the stopped one still runs: the only
    // member a second stop finds.
    m.add(nop(), 0, g(4), &[running]).unwrap();
    assert_eq!(m.group_stats(g(4)).unwrap()[0], 1, "the new task is queued (its upstream task was stopped)");
    let r = m.stop_group(g(4), false, false).unwrap();
    assert_eq!(r, StopReport { before_start: 1, while_running: 0, after_finish: 0 });
    gate.open();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(poll(&m), vec![], "stopped tasks report nothing, and a stop finishes no group");
    let last = m.add(nop(), 0, g(4), &[]).unwrap();
    let ev = collect_finals(&m, 1);
    assert_eq!(ev, vec![Ev::Completed { id: last, group: g(4), values: vec![] }, Ev::GroupFinished { group: g(4) }]);
    finish(m);
}

#[test]
fn stop_withdraws_an_already_queued_event() {
    let _s = serial();
    let m = manager(1, true);
    let a = m.add(job(|ctx| ctx.set_result(value(1))), 0, DEFAULT, &[]).unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(m.stats().undelivered, 1);
    let r = m.stop_task(a, true, true).unwrap();
    assert_eq!(r.after_finish, 1);
    assert_eq!(m.stats().undelivered, 0);
    assert_eq!(poll(&m), vec![]);
    finish(m);
}

#[test]
fn stop_of_unknown_or_finished_ids_and_groups_is_not_found() {
    let _s = serial();
    let m = manager(1, true);
    assert_eq!(m.stop_task(999, true, true), Err(Error::NotFound));
    assert_eq!(m.stop_group(g(77), true, true), Err(Error::NotFound));
    let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    collect_finals(&m, 1);
    assert_eq!(m.stop_task(a, true, true), Err(Error::NotFound));
    assert_eq!(m.stop_all().total(), 0);
    finish(m);
}

#[test]
fn stop_unblocks_downstream_at_once() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    let a = m.add(job(move |_| g2.pass()), 0, DEFAULT, &[]).unwrap();
    let blocker = m.add(nop(), 0, DEFAULT, &[a]).unwrap();
    let log = Log::default();
    let d = m.add(logging(&log, 1), 0, DEFAULT, &[blocker]).unwrap();
    gate.wait_arrivals(1);
    m.stop_task(blocker, false, false).unwrap();
    gate.open();
    let ev = collect_finals(&m, 2);
    assert_eq!(ids_of(&ev), vec![a, d]);
    finish(m);
}

// 11. Shut down -----------------------------------------------------------------------

#[test]
fn shut_down_stops_everything_emits_nothing_and_rejects_adds() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    m.add(
        job(move |ctx| {
            g2.pass();
            ctx.set_result(value(1))
        }),
        0,
        DEFAULT,
        &[],
    )
    .unwrap();
    for _ in 0..10 {
        m.add(job(|ctx| ctx.set_result(value(2))), 0, DEFAULT, &[]).unwrap();
    }
    gate.wait_arrivals(1);
    let m2 = m.clone();
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        gate.open();
        drop(m2);
    });
    m.shut_down(Some(TIMEOUT)).unwrap();
    opener.join().unwrap();
    assert_eq!(poll(&m), vec![]);
    assert_eq!(m.add(nop(), 0, DEFAULT, &[]), Err(Error::ShutDown));
    assert_eq!(m.shut_down(None), Err((Error::AlreadyShutDown, 0)));
    assert_eq!(m.start_processing(), Err(Error::ShutDown));
    drop(m);
    assert_all_freed();
}

#[test]
fn shut_down_times_out_on_a_task_that_does_not_return_and_frees_nothing_under_it() {
    let _s = serial();
    let m = manager(2, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    m.add(job(move |_| g2.pass()), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    assert_eq!(m.shut_down(Some(Duration::from_millis(50))), Err((Error::TimedOut, 1)));
    assert_eq!(common::LIVE_USERDATA.load(Ordering::SeqCst), 1, "the stuck task's userdata is still in use");
    gate.open();
    drop(m);
    assert_all_freed();
}

// 12. Ids -------------------------------------------------------------------------------

#[test]
fn ids_are_never_reused_even_after_stop_all() {
    let _s = serial();
    let m = manager(1, false);
    let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    let b = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    assert_eq!(m.stop_all().before_start, 2);
    let c = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    assert!(a < b && b < c);
    finish(m);
}

/// A stop that takes every live task at once (all queued, no links) must look
/// exactly like stopping them one by one: report, frees, groups, ids, and the
/// manager keeps working afterwards.
#[test]
fn stopping_everything_queued_at_once_frees_all_and_leaves_a_working_manager() {
    let _s = serial();
    let m = manager(2, false);
    let log = Log::default();
    let ids: Vec<u64> = (0..3000).map(|i| m.add(logging(&log, i), (i % 3) as i32, g(5), &[]).unwrap()).collect();
    assert_eq!(live_userdata(), 3000);
    let r = m.stop_group(g(5), true, true).unwrap();
    assert_eq!((r.before_start, r.while_running, r.after_finish), (3000, 0, 0));
    assert_eq!(live_userdata(), 0, "every userdata freed by the time the stop returns");
    assert_eq!(m.stop_group(g(5), true, true), Err(Error::NotFound), "the group is gone");
    assert_eq!(m.stop_task(ids[10], true, true), Err(Error::NotFound));
    let s = m.stats();
    assert_eq!((s.queued, s.blocked, s.stopped_total), (0, 0, 3000));
    // Mixed groups, then stop_all takes the same path.
    for i in 0..100 {
        m.add(nop(), 0, if i % 2 == 0 { g(1) } else { DEFAULT }, &[]).unwrap();
    }
    assert_eq!(m.stop_all().before_start, 100);
    assert_eq!(m.stop_group(g(1), false, false), Err(Error::NotFound));
    // Ids go on; the manager still runs tasks and finishes groups.
    let next = m.add(logging(&log, 7), 0, g(5), &[]).unwrap();
    assert!(next > ids[2999] + 100);
    m.start_processing().unwrap();
    let evs = drain_until_group_finished(&m);
    assert_eq!(log.get(), vec![7], "stopped tasks never ran");
    assert!(evs.iter().any(|e| e.task() == Some(next)));
    finish(m);
}

fn live_userdata() -> i64 {
    LIVE_USERDATA.load(Ordering::SeqCst)
}

fn drain_until_group_finished(m: &Arc<Manager>) -> Vec<Ev> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut all = Vec::new();
    while !all.iter().any(|e| matches!(e, Ev::GroupFinished { .. })) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for the group to finish");
        all.extend(poll(m));
        std::thread::sleep(Duration::from_millis(1));
    }
    all
}

// Re-entrancy, progress, priorities ---------------------------------------------------

#[test]
fn tasks_can_add_stop_and_pause_from_inside() {
    let _s = serial();
    let m = manager(2, true);
    let log = Log::default();
    let l2 = log.clone();
    let victim = m.add(nop(), -10, DEFAULT, &[]).unwrap();
    m.pause_processing().unwrap();
    m.start_processing().unwrap();
    let parent = m
        .add(
            job(move |ctx| {
                // SAFETY: valid while the task runs.
                let mm = unsafe { &*ctx.manager() };
                let mm = unsafe {
                    Arc::increment_strong_count(mm);
                    Arc::from_raw(mm)
                };
                mm.add(logging(&l2, 42), 0, DEFAULT, &[]).unwrap();
                let _ = mm.stop_task(victim, false, false);
                assert_eq!(mm.wait_idle(Some(Duration::from_secs(1))), Err(Error::WouldDeadlock));
            }),
            100,
            DEFAULT,
            &[],
        )
        .unwrap();
    let ev = drain(&m);
    assert!(ids_of(&ev).contains(&parent));
    assert_eq!(log.get(), vec![42]);
    finish(m);
}

#[test]
fn progress_is_coalesced_and_never_follows_the_final_event() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    let t = m
        .add(
            job(move |ctx| {
                for i in 1..=100 {
                    assert!(ctx
                        .report_progress(f64::from(i) / 100.0, Some(std::ffi::CString::new(format!("{i}")).unwrap())));
                }
                g2.pass();
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    gate.wait_arrivals(1);
    assert_eq!(poll(&m), vec![Ev::Progress { id: t, fraction: 1.0, message: Some("100".into()) }]);
    gate.open();
    let ev = collect_finals(&m, 1);
    assert_eq!(ids_of(&ev), vec![t]);
    assert!(matches!(ev[0], Ev::Completed { .. }));
    finish(m);
}

#[test]
fn set_priority_reorders_queued_tasks() {
    let _s = serial();
    let m = manager(1, false);
    let log = Log::default();
    let a = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    let b = m.add(logging(&log, 2), 0, DEFAULT, &[]).unwrap();
    let c = m.add(logging(&log, 3), 0, DEFAULT, &[]).unwrap();
    m.set_priority(c, 5).unwrap();
    m.set_priority(a, -1).unwrap();
    m.set_priority(b, 3).unwrap();
    m.set_priority(b, 0).unwrap();
    m.set_priority(b, 3).unwrap();
    assert_eq!(m.set_priority(999, 1), Err(Error::NotFound));
    m.start_processing().unwrap();
    collect_finals(&m, 3);
    assert_eq!(log.get(), vec![3, 2, 1]);
    assert_eq!(m.set_priority(a, 1), Err(Error::NotFound));
    finish(m);
}

// The original's quadratic cases, at a size where quadratic would not finish.

#[test]
fn many_tasks_waiting_on_one_upstream_and_stopping_a_group_behind_many() {
    let _s = serial();
    let m = manager(2, false);
    let root = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    for _ in 0..50_000 {
        m.add(nop(), 0, g(1), &[root]).unwrap();
    }
    for _ in 0..200_000 {
        m.add(nop(), 0, g(2), &[]).unwrap();
    }
    let small = m.add(nop(), 0, g(3), &[]).unwrap();
    assert_eq!(m.stop_group(g(3), false, false).unwrap().before_start, 1);
    assert_eq!(m.stop_task(small, true, true), Err(Error::NotFound));
    m.start_processing().unwrap();
    collect_finals(&m, 250_001);
    finish(m);
}

#[test]
fn concurrent_adds_from_several_host_threads() {
    let _s = serial();
    let m = manager(2, true);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || (0..5000).map(|_| m.add(nop(), 0, DEFAULT, &[]).unwrap()).collect::<Vec<_>>())
        })
        .collect();
    let mut ids: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20_000);
    collect_finals(&m, 20_000);
    finish(m);
}

// Stops large enough to give btm's memory back (at least 64 table chunks of
// 1024 tasks): every userdata is freed once, in id order, on the stopping
// thread, and the records of tasks that stay queued are untouched.

static FREED_TAGS: std::sync::Mutex<Vec<i64>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn free_tagged(data: *mut std::ffi::c_void) {
    // SAFETY: made by `tagged` with Box::into_raw.
    let tag = unsafe { Box::from_raw(data as *mut i64) };
    FREED_TAGS.lock().unwrap().push(*tag);
}

unsafe extern "C" fn run_nothing(_: *mut std::ffi::c_void, _: *mut btm::engine::TaskContext) {}

fn tagged(tag: i64) -> Job {
    Job::task(run_nothing, btm::engine::Owned::new(Box::into_raw(Box::new(tag)).cast(), Some(free_tagged)))
}

fn take_freed_tags() -> Vec<i64> {
    std::mem::take(&mut *FREED_TAGS.lock().unwrap())
}

/// Tags 0..n were freed, each once, in that order (and nothing else).
fn assert_freed_once_in_order(n: i64) {
    let freed = take_freed_tags();
    let first_wrong = freed.iter().zip(0..).position(|(&f, want)| f != want);
    assert!(
        freed.len() == n as usize && first_wrong.is_none(),
        "{} of {n} userdata freed; first out of order at index {first_wrong:?}",
        freed.len()
    );
}

#[test]
fn large_stops_free_every_userdata_once_in_id_order_and_leave_the_rest_intact() {
    let _s = serial();
    const N: i64 = 70 * 1024;
    // One worker, so that the kept tasks run (and log) in id order.
    let m = manager(1, false);
    take_freed_tags();

    // The group holds every live task: the whole table is released at once.
    for tag in 0..N {
        m.add(tagged(tag), 0, g(1), &[]).unwrap();
    }
    assert_eq!(m.stop_group(g(1), false, false).unwrap().before_start, N as u64);
    assert_freed_once_in_order(N);

    // Another group keeps tasks queued before, among and after the stopped
    // ones: the stop takes the general path and empties most chunks.
    let log = Log::default();
    let mut kept = Vec::new();
    kept.push(m.add(logging(&log, -1), 0, g(3), &[]).unwrap());
    for tag in 0..N {
        m.add(tagged(tag), 0, g(2), &[]).unwrap();
        if tag % 20_000 == 0 {
            kept.push(m.add(logging(&log, tag), 0, g(3), &[]).unwrap());
        }
    }
    kept.push(m.add(logging(&log, N), 0, g(3), &[]).unwrap());
    assert_eq!(m.stop_group(g(2), false, false).unwrap().before_start, N as u64);
    assert_freed_once_in_order(N);

    // A stop that reaches beyond its group (downstream tasks of another
    // group) frees more userdata than the group held when it began: the
    // ones past that count still follow in order.
    let mut tag = 0;
    for i in 0..N {
        let up = m.add(tagged(tag), 0, g(4), &[]).unwrap();
        tag += 1;
        if i % 10_000 == 0 || i == N - 1 {
            m.add(tagged(tag), 0, g(5), &[up]).unwrap();
            tag += 1;
        }
    }
    assert_eq!(m.stop_group(g(4), false, true).unwrap().before_start, tag as u64);
    assert_freed_once_in_order(tag);

    // The kept tasks run with their data intact, and the table takes new
    // tasks after the release.
    m.start_processing().unwrap();
    let mut finals = ids_of(&collect_finals(&m, kept.len()));
    finals.sort_unstable();
    assert_eq!(finals, kept);
    let mut expected: Vec<i64> = vec![-1, 0, 20_000, 40_000, 60_000, N];
    assert_eq!(log.get(), expected);
    for tag in 0..3000 {
        m.add(logging(&log, N + 1 + tag), 0, DEFAULT, &[]).unwrap();
    }
    collect_finals(&m, 3000);
    expected.extend((0..3000).map(|t| N + 1 + t));
    assert_eq!(log.get(), expected);
    take_freed_tags();

    // Stopping every task when some have links (the general path of a stop
    // of all tasks, not the whole-table release) frees each userdata once,
    // in id order.
    m.pause_processing().unwrap();
    let first = m.add(tagged(0), 0, g(6), &[]).unwrap();
    for tag in 1..N {
        let ups: &[u64] = if tag % 10_000 == 0 { &[first] } else { &[] };
        m.add(tagged(tag), 0, g(6), ups).unwrap();
    }
    assert_eq!(m.stop_all().before_start, N as u64);
    assert_freed_once_in_order(N);
    finish(m);
}

// README "Semantics" 5 and 10 (liveness for stops and upstream ids) and
// `Stats::undelivered`, as a review of session 31 found the docs stated
// them wrongly (the engine was right).

/// A finished but unpolled task is live: its stop succeeds and withdraws
/// its event (the README said "finished ids give NOT_FOUND").
#[test]
fn stop_of_a_finished_unpolled_task_succeeds_and_of_a_polled_one_is_not_found() {
    let _s = serial();
    let m = manager(1, true);
    let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    let b = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(m.stop_task(a, false, false).map(|r| r.after_finish), Ok(1));
    assert_eq!(finals(&poll(&m)), vec![b]);
    assert_eq!(m.stop_task(b, false, false), Err(Error::NotFound));
    finish(m);
}

/// A task stopped while running is no longer live: a task naming it as
/// upstream neither waits for it nor receives its result.
#[test]
fn a_stopped_running_task_does_not_block_a_new_downstream() {
    let _s = serial();
    let m = manager(2, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    let a = m
        .add(
            job(move |ctx| {
                g2.pass();
                ctx.set_result(value(3))
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    gate.wait_arrivals(1);
    m.stop_task(a, false, false).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![(0, 0)]));
    let s2 = seen.clone();
    let d = m.add(job(move |ctx| *s2.lock().unwrap() = upstream(ctx)), 0, DEFAULT, &[a]).unwrap();
    let ev = collect_finals(&m, 1); // while a still runs
    gate.open();
    assert_eq!(finals(&ev), vec![d]);
    assert!(seen.lock().unwrap().is_empty());
    finish(m);
}

/// `Stats::undelivered` counts events waiting, not only final events.
#[test]
fn undelivered_counts_progress_and_a_left_group_finished() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let g2 = gate.clone();
    m.add(
        job(move |ctx| {
            ctx.report_progress(0.5, None);
            g2.pass();
        }),
        0,
        g(1),
        &[],
    )
    .unwrap();
    gate.wait_arrivals(1);
    assert_eq!(m.stats().undelivered, 1, "a progress event alone");
    gate.open();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(poll_n(&m, 1).len(), 1); // the progress event
    assert_eq!(poll_n(&m, 1).len(), 1); // the completion; group finished left queued
    assert_eq!(m.stats().undelivered, 1, "the group finished left by a full poll");
    assert_eq!(poll(&m), vec![Ev::GroupFinished { group: g(1) }]);
    assert_eq!(m.stats().undelivered, 0);
    finish(m);
}
