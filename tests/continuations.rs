//! Continuations: a task whose only upstream task is a lane task (or
//! another continuation) waits attached to it, and the worker that finishes
//! the upstream task runs it at once when it comes first
//! (src/engine/lane.rs, `Cont`). Each test builds the case by construction
//! (an upstream task held running on its worker by a gate, or queued behind
//! one) and checks what a host sees: order, results, stops, pauses, hooks,
//! counts, failures, and that every userdata is freed once.
mod common;

use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use btm::engine::{Error, GroupKey, GroupKind, Manager, Owned, TaskHooks};
use common::*;

/// A task that passes `gate`, then logs `tag` and returns it as its result.
fn gated(gate: &Gate, log: &Log, tag: i64) -> btm::engine::Job {
    let (gate, log) = (gate.clone(), log.clone());
    job(move |ctx| {
        gate.pass();
        log.push(tag);
        ctx.set_result(value(tag));
    })
}

/// What each chained task received: (its tag, upstream values).
type Seen = Arc<Mutex<Vec<(i64, Vec<(u64, i64)>)>>>;

/// A task that logs `tag` and the upstream values it received, and returns
/// `tag`.
fn chained(log: &Log, seen: &Seen, tag: i64) -> btm::engine::Job {
    let (log, seen) = (log.clone(), seen.clone());
    job(move |ctx| {
        log.push(tag);
        seen.lock().unwrap().push((tag, upstream(ctx)));
        ctx.set_result(value(tag));
    })
}

/// A manager with one worker, held at `gate` by task `a` (tag 0, result 0).
struct Held {
    m: Arc<Manager>,
    gate: Gate,
    log: Log,
    seen: Seen,
    a: u64,
}

fn held() -> Held {
    let m = manager(1, true);
    let (gate, log, seen) = (Gate::new(), Log::default(), Seen::default());
    let a = m.add(gated(&gate, &log, 0), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    Held { m, gate, log, seen, a }
}

#[test]
fn a_chain_behind_a_running_task_runs_in_order_with_results_and_without_a_poll() {
    let _s = serial();
    for threads in [1, 2] {
        let m = manager(threads, true);
        let (gate, log) = (Gate::new(), Log::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let head = m.add(gated(&gate, &log, 0), 0, DEFAULT, &[]).unwrap();
        gate.wait_arrivals(1);
        // Attached to the running head, then each to the one before.
        let mut ids = vec![head];
        for tag in 1..=50 {
            let prev = *ids.last().unwrap();
            ids.push(m.add(chained(&log, &seen, tag), 0, DEFAULT, &[prev]).unwrap());
        }
        gate.open();
        // No poll: nothing in the chain waits for the host.
        wait_until("the chain to run", || log.get().len() == 51);
        assert_eq!(log.get(), (0..=50).collect::<Vec<i64>>(), "threads {threads}");
        for (tag, got) in seen.lock().unwrap().iter() {
            assert_eq!(got, &vec![(ids[*tag as usize - 1], tag - 1)], "task {tag} received its upstream's result");
        }
        let evs = collect_finals(&m, 51);
        assert_eq!(finals(&evs), ids, "events in finishing order");
        finish(m);
    }
}

#[test]
fn a_chain_behind_a_queued_task_runs_after_it() {
    let _s = serial();
    let m = manager(1, true);
    let (gate, log) = (Gate::new(), Log::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let blocker = m.add(gated(&gate, &log, -1), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    // Queued behind the blocker; the chain is attached to its lane entry.
    let a = m.add(chained(&log, &seen, 0), 0, DEFAULT, &[]).unwrap();
    let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
    let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap();
    assert_eq!(m.stats().blocked, 2, "the continuations wait for their upstream tasks");
    assert_eq!(m.group_stats(DEFAULT).unwrap(), [1, 2, 1, 0]);
    gate.open();
    assert_eq!(finals(&collect_finals(&m, 4)), vec![blocker, a, b, c]);
    assert_eq!(log.get(), vec![-1, 0, 1, 2]);
    assert_eq!(seen.lock().unwrap()[2], (2, vec![(b, 1)]));
    finish(m);
}

#[test]
fn a_continuation_waits_for_better_tasks_queued_meanwhile() {
    let _s = serial();
    let Held { m, gate, log, seen, a } = held();
    m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap(); // continuation of a
    m.add(logging(&log, 2), 0, DEFAULT, &[]).unwrap(); // same priority, newer: after it
    m.add(logging(&log, 3), 5, DEFAULT, &[]).unwrap(); // higher priority: before it
    gate.open();
    collect_finals(&m, 4);
    assert_eq!(log.get(), vec![0, 3, 1, 2]);
    finish(m);

    // An older task of its priority, queued before it: first.
    let m = manager(1, true);
    let (gate, log) = (Gate::new(), Log::default());
    let a = m.add(gated(&gate, &log, 0), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    m.add(chained(&log, &seen, 2), 0, DEFAULT, &[a]).unwrap();
    gate.open();
    collect_finals(&m, 3);
    assert_eq!(log.get(), vec![0, 1, 2]);
    finish(m);
}

#[test]
fn a_second_downstream_task_of_higher_priority_runs_before_the_continuation() {
    let _s = serial();
    let Held { m, gate, log, seen, a } = held();
    m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
    m.add(chained(&log, &seen, 2), 3, DEFAULT, &[a]).unwrap();
    gate.open();
    collect_finals(&m, 3);
    assert_eq!(log.get(), vec![0, 2, 1]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], (2, vec![(a, 0)]));
    assert_eq!(seen[1], (1, vec![(a, 0)]));
    drop(seen);
    finish(m);
}

#[test]
fn stopping_a_waiting_continuation_frees_it_and_lets_its_own_downstream_run() {
    let _s = serial();
    let Held { m, gate, log, seen, a } = held();
    let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
    let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap();
    let report = m.stop_task(b, false, false).unwrap();
    assert_eq!((report.before_start, report.while_running, report.after_finish), (1, 0, 0));
    gate.open();
    let evs = collect_finals(&m, 2);
    assert_eq!(finals(&evs), vec![a, c]);
    assert_eq!(log.get(), vec![0, 2]);
    assert_eq!(seen.lock().unwrap()[0], (2, vec![]), "the stopped task gave no result");
    finish(m);
}

#[test]
fn stopping_the_running_upstream_task_reaches_its_continuations_as_asked() {
    let _s = serial();
    for down in [false, true] {
        let Held { m, gate, log, seen, a } = held();
        let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
        let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap();
        let report = m.stop_task(a, false, down).unwrap();
        gate.open();
        if down {
            assert_eq!((report.before_start, report.while_running), (2, 1));
            wait_until("the stopped task to return", || log.get().len() == 1);
            assert_eq!(m.stats().queued + m.stats().blocked, 0);
        } else {
            assert_eq!((report.before_start, report.while_running), (0, 1));
            // b no longer waits: it runs without a's result, then c.
            assert_eq!(finals(&collect_finals(&m, 2)), vec![b, c]);
            assert_eq!(*seen.lock().unwrap(), vec![(1, vec![]), (2, vec![(b, 1)])]);
        }
        finish(m);
    }
}

#[test]
fn a_failed_upstream_task_fails_its_continuations() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let gc = gate.clone();
    let a = m
        .add(
            job(move |ctx| {
                gc.pass();
                ctx.fail(btm::engine::Failure::new(b"boom", b""));
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    gate.wait_arrivals(1);
    let b = m.add(nop(), 0, DEFAULT, &[a]).unwrap();
    let c = m.add(nop(), 0, DEFAULT, &[b]).unwrap();
    gate.open();
    let evs = collect_finals(&m, 3);
    let failed: Vec<u64> = evs.iter().filter(|e| matches!(e, Ev::Failed { .. })).filter_map(Ev::task).collect();
    assert_eq!(failed, vec![a, b, c]);
    finish(m);
}

#[test]
fn a_pause_holds_a_continuation_until_processing_starts_again() {
    let _s = serial();
    let Held { m, gate, log, seen, a } = held();
    let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
    m.pause_processing().unwrap();
    gate.open();
    assert_eq!(finals(&collect_finals(&m, 1)), vec![a]);
    assert_eq!(m.stats().queued, 1, "ready, not started");
    assert_eq!(log.get(), vec![0]);
    m.start_processing().unwrap();
    assert_eq!(finals(&collect_finals(&m, 1)), vec![b]);
    assert_eq!(*seen.lock().unwrap(), vec![(1, vec![(a, 0)])]);
    finish(m);
}

#[test]
fn hooks_registered_while_a_continuation_waits_see_it_start() {
    let _s = serial();
    HOOK_STARTS.store(0, Ordering::SeqCst);
    let m = manager(1, true);
    let (gate, log) = (Gate::new(), Log::default());
    let a = m.add(gated(&gate, &log, 0), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    let b = m.add(nop(), 0, DEFAULT, &[a]).unwrap();
    let c = m.add(nop(), 0, DEFAULT, &[b]).unwrap();
    m.set_task_hooks(Some(TaskHooks {
        on_start: Some(count_start),
        on_end: None,
        data: Owned::new(std::ptr::null_mut(), None),
    }));
    gate.open();
    assert_eq!(finals(&collect_finals(&m, 3)), vec![a, b, c]);
    assert_eq!(HOOK_STARTS.load(Ordering::SeqCst), 2, "both continuations started after the hooks were set");
    m.set_task_hooks(None);
    finish(m);
}

#[test]
fn a_continuation_can_change_priority_while_it_waits() {
    let _s = serial();
    let Held { m, gate, log, seen, a } = held();
    let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
    m.add(logging(&log, 2), 5, DEFAULT, &[]).unwrap();
    m.set_priority(b, 9).unwrap();
    gate.open();
    collect_finals(&m, 3);
    assert_eq!(log.get(), vec![0, 1, 2], "raised above the task it came after");
    finish(m);
}

#[test]
fn a_shut_down_frees_waiting_chains() {
    let _s = serial();
    let m = manager(2, true);
    let gate = Gate::new();
    let log = Log::default();
    let mut heads = Vec::new();
    for _ in 0..2 {
        heads.push(m.add(gated(&gate, &log, 0), 0, DEFAULT, &[]).unwrap());
    }
    gate.wait_arrivals(2);
    for &h in &heads {
        let mut prev = h;
        for _ in 0..1000 {
            prev = m.add(nop(), 0, DEFAULT, &[prev]).unwrap();
        }
    }
    assert_eq!(m.stats().blocked, 2000);
    // The shut down stops and frees every queued continuation at once,
    // then waits for the running heads, which the gate releases then.
    let closer = {
        let m = m.clone();
        std::thread::spawn(move || m.shut_down(Some(TIMEOUT)).expect("shut down in time"))
    };
    wait_until("the shut down to begin", || m.is_shut_down());
    gate.open();
    closer.join().unwrap();
    assert_eq!(log.get(), vec![0, 0], "no continuation ran");
    drop(m);
    assert_all_freed();
}

// A chain in the lane keeps its edges in the tasks' bodies, not in link
// records (`Body::implicit_edges` in src/engine/mod.rs): the next three
// tests walk them in each direction.

#[test]
fn stopping_a_waiting_continuation_with_stop_upstream_reaches_every_task_before_it() {
    let _s = serial();
    let Held { m, gate, log, seen, a } = held();
    let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
    let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap();
    let d = m.add(chained(&log, &seen, 3), 0, DEFAULT, &[c]).unwrap();
    let report = m.stop_task(c, true, false).unwrap();
    assert_eq!((report.before_start, report.while_running, report.after_finish), (2, 1, 0), "b and c, then a");
    gate.open();
    // d no longer waits: it runs alone, without c's result.
    assert_eq!(finals(&collect_finals(&m, 1)), vec![d]);
    assert_eq!(log.get(), vec![0, 3]);
    assert_eq!(*seen.lock().unwrap(), vec![(3, vec![])]);
    assert!(drain(&m).is_empty(), "no event of a stopped task");
    finish(m);
}

/// A chain a -> b -> c on [`held`]'s worker, run up to c, which holds the
/// worker at the returned gate: a and b finished (their events not
/// polled), and the worker claimed each next link as a continuation.
fn chain_held_at_c() -> (Held, u64, u64, Gate) {
    let h = held();
    let b = h.m.add(chained(&h.log, &h.seen, 1), 0, DEFAULT, &[h.a]).unwrap();
    let gate2 = Gate::new();
    let c = h.m.add(gated(&gate2, &h.log, 2), 0, DEFAULT, &[b]).unwrap();
    h.gate.open();
    gate2.wait_arrivals(1);
    assert_eq!(h.log.get(), vec![0, 1]);
    (h, b, c, gate2)
}

#[test]
fn stopping_a_running_continuation_with_stop_upstream_withdraws_its_finished_upstream_tasks() {
    let _s = serial();
    let (Held { m, log, .. }, _b, c, gate2) = chain_held_at_c();
    let report = m.stop_task(c, true, false).unwrap();
    assert_eq!(report.before_start, 0);
    assert_eq!(report.while_running + report.after_finish, 3, "{report:?}");
    gate2.open();
    wait_until("c to return", || log.get().len() == 3);
    assert!(drain(&m).is_empty(), "the stop withdrew a's and b's events, and c's result is dropped");
    finish(m);
}

#[test]
fn stopping_a_finished_chain_task_with_stop_downstream_reaches_the_running_continuation() {
    // a and b finish while their continuations are claimed: applied under
    // the lock (by the stop), they keep their edges in their completed
    // records (`State::complete_keeping_edges`), which the stop walks.
    let _s = serial();
    let (Held { m, log, a, .. }, _b, _c, gate2) = chain_held_at_c();
    let st = m.stats();
    assert_eq!((st.undelivered, st.running), (2, 1), "a and b applied, c running: {st:?}");
    let report = m.stop_task(a, false, true).unwrap();
    assert_eq!((report.after_finish, report.while_running, report.before_start), (2, 1, 0), "{report:?}");
    gate2.open();
    wait_until("c to return", || log.get().len() == 3);
    assert!(drain(&m).is_empty(), "a's and b's events withdrawn, c's result dropped");
    finish(m);
}

#[test]
fn stopping_a_finished_chain_task_with_stop_upstream_reaches_the_tasks_before_it() {
    let _s = serial();
    let (Held { m, .. }, b, c, gate2) = chain_held_at_c();
    assert_eq!(m.stats().undelivered, 2, "a and b applied with their edges kept");
    let report = m.stop_task(b, true, false).unwrap();
    assert_eq!((report.after_finish, report.while_running), (2, 0), "b and a withdrawn, c left running: {report:?}");
    gate2.open();
    let evs = collect_finals(&m, 1);
    assert_eq!(finals(&evs), vec![c], "only c completes: {evs:?}");
    finish(m);
}

#[test]
fn a_fan_in_over_a_waiting_chain_gets_its_results_and_a_stop_still_reaches_the_whole_chain() {
    let _s = serial();
    for stop in [false, true] {
        let Held { m, gate, log, seen, a } = held();
        let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
        let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap();
        let d = m.add(chained(&log, &seen, 3), 0, DEFAULT, &[c]).unwrap();
        // Several upstream tasks: the fan-in's edges need link records.
        let f = m.add(chained(&log, &seen, 4), 0, DEFAULT, &[b, d]).unwrap();
        if stop {
            // From the head, downstream: every task of the chain and the
            // fan-in, through both kinds of edges.
            let report = m.stop_task(a, false, true).unwrap();
            assert_eq!((report.before_start, report.while_running), (4, 1), "{report:?}");
            gate.open();
            wait_until("a to return", || log.get().len() == 1);
            assert!(drain(&m).is_empty());
        } else {
            gate.open();
            assert_eq!(finals(&collect_finals(&m, 5)), vec![a, b, c, d, f]);
            assert_eq!(log.get(), vec![0, 1, 2, 3, 4]);
            let seen = seen.lock().unwrap();
            assert_eq!(seen[1], (2, vec![(b, 1)]));
            assert_eq!(seen[3], (4, vec![(b, 1), (d, 3)]), "results in completion order");
        }
        finish(m);
    }
}

#[test]
fn a_second_downstream_task_of_a_waiting_continuation_keeps_both_edges_for_stops() {
    let _s = serial();
    for down_stop in [false, true] {
        let Held { m, gate, log, seen, a } = held();
        let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
        let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap();
        // b queued continuation with implicit down c: a second downstream moves b to the locked path.
        let f = m.add(chained(&log, &seen, 3), 0, DEFAULT, &[b]).unwrap();
        if down_stop {
            let r = m.stop_task(a, false, true).unwrap();
            assert_eq!((r.before_start, r.while_running), (3, 1), "{r:?}");
            gate.open();
            wait_until("a", || log.get().len() == 1);
            assert!(drain(&m).is_empty());
        } else {
            let r = m.stop_task(c, true, false).unwrap();
            assert_eq!((r.before_start, r.while_running), (2, 1), "c, b, a: {r:?}");
            gate.open();
            assert_eq!(finals(&collect_finals(&m, 1)), vec![f]);
            assert_eq!(*seen.lock().unwrap(), vec![(3, vec![])]);
        }
        finish(m);
    }
}

#[test]
fn a_priority_change_moves_a_continuation_and_stops_still_walk_both_ways() {
    let _s = serial();
    for mode in 0..3 {
        let Held { m, gate, log, seen, a } = held();
        let b = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap();
        let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap();
        let d = m.add(chained(&log, &seen, 3), 0, DEFAULT, &[c]).unwrap();
        m.set_priority(c, 0).unwrap(); // c leaves the lane: edges settle
        match mode {
            0 => {
                let r = m.stop_task(a, false, true).unwrap();
                assert_eq!((r.before_start, r.while_running), (3, 1), "{r:?}");
                gate.open();
                wait_until("a", || log.get().len() == 1);
                assert!(drain(&m).is_empty());
            }
            1 => {
                let r = m.stop_task(d, true, false).unwrap();
                assert_eq!((r.before_start, r.while_running), (3, 1), "{r:?}");
                gate.open();
                wait_until("a", || log.get().len() == 1);
                assert!(drain(&m).is_empty());
            }
            _ => {
                gate.open();
                assert_eq!(finals(&collect_finals(&m, 4)), vec![a, b, c, d]);
                let s = seen.lock().unwrap();
                assert_eq!(s[1], (2, vec![(b, 1)]));
                assert_eq!(s[2], (3, vec![(c, 2)]));
            }
        }
        finish(m);
    }
}

#[test]
fn a_queued_lane_task_with_a_chain_moved_by_a_priority_change_or_a_pause() {
    let _s = serial();
    for mode in 0..4 {
        let Held { m, gate, log, seen, a } = held();
        let q = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[]).unwrap(); // queued lane task
        let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[q]).unwrap();
        let d = m.add(chained(&log, &seen, 3), 0, DEFAULT, &[c]).unwrap();
        if mode & 1 == 1 {
            m.set_priority(q, 0).unwrap();
        } else {
            m.pause_processing().unwrap();
            m.start_processing().unwrap();
        }
        if mode >= 2 {
            let r = m.stop_task(d, true, false).unwrap();
            assert_eq!((r.before_start, r.while_running), (3, 0), "{r:?}");
            gate.open();
            assert_eq!(finals(&collect_finals(&m, 1)), vec![a]);
        } else {
            gate.open();
            assert_eq!(finals(&collect_finals(&m, 4)), vec![a, q, c, d]);
            let s = seen.lock().unwrap();
            assert_eq!(s[1], (2, vec![(q, 1)]));
            assert_eq!(s[2], (3, vec![(c, 2)]));
        }
        finish(m);
    }
}

#[test]
fn a_fan_in_over_a_claimed_continuation_with_an_attached_one() {
    let _s = serial();
    for stop in [false, true] {
        let Held { m, gate, log, seen, a } = held();
        let gate2 = Gate::new();
        let b = m.add(gated(&gate2, &log, 1), 0, DEFAULT, &[a]).unwrap();
        gate.open();
        gate2.wait_arrivals(1); // b claimed, running
        let c = m.add(chained(&log, &seen, 2), 0, DEFAULT, &[b]).unwrap(); // attached to running b
        let x = m.add(chained(&log, &seen, 9), 0, DEFAULT, &[]).unwrap();
        let f = m.add(chained(&log, &seen, 3), 0, DEFAULT, &[b, x]).unwrap();
        if stop {
            let r = m.stop_task(c, true, false).unwrap();
            // c (queued), b (running), a (finished, unpolled)
            assert_eq!(r.before_start, 1, "{r:?}");
            assert_eq!(r.while_running + r.after_finish, 2, "{r:?}");
            gate2.open();
            let evs = collect_finals(&m, 2);
            let mut got = finals(&evs);
            got.sort();
            assert_eq!(got, vec![x, f]);
        } else {
            gate2.open();
            let evs = collect_finals(&m, 5);
            let got = finals(&evs);
            assert_eq!(got.len(), 5);
            let s = seen.lock().unwrap();
            let sc = s.iter().find(|e| e.0 == 2).unwrap();
            assert_eq!(sc.1, vec![(b, 1)]);
            let sf = s.iter().find(|e| e.0 == 3).unwrap();
            assert_eq!(sf.1.len(), 2);
        }
        finish(m);
    }
}

/// A fan-in of a higher priority over a running lane task (first in its
/// upstream list) and a completed one: the continuation attached to the
/// running task moves to the locked path at the fan-in's add, so that when
/// the running task finishes, the fan-in (priority 5) runs before the
/// continuation (priority 0) instead of the worker claiming the
/// continuation at once.
#[test]
fn a_fan_in_of_a_higher_priority_runs_before_the_continuation_of_its_running_upstream() {
    let _s = serial();
    let m = manager(2, true);
    let (gate_a, gate_b, log, seen) = (Gate::new(), Gate::new(), Log::default(), Seen::default());
    let a = m.add(gated(&gate_a, &log, 0), 0, DEFAULT, &[]).unwrap();
    gate_a.wait_arrivals(1); // a runs on one worker
    let x = m.add(chained(&log, &seen, 100), 0, DEFAULT, &[]).unwrap();
    wait_until("x to run on the other worker", || log.get() == vec![100]);
    let b = m.add(gated(&gate_b, &log, 200), 0, DEFAULT, &[]).unwrap();
    gate_b.wait_arrivals(1); // the other worker is held too
    let d = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap(); // attached to running a
    let f = m.add(chained(&log, &seen, 2), 5, DEFAULT, &[a, x]).unwrap();
    gate_a.open();
    wait_until("d and f to run", || log.get().len() == 4);
    assert_eq!(log.get(), vec![100, 0, 2, 1], "the fan-in (priority 5) runs before the continuation (0)");
    gate_b.open();
    let evs = collect_finals(&m, 5);
    let mut got = finals(&evs);
    got.sort();
    assert_eq!(got, vec![a, x, b, d, f]);
    let s = seen.lock().unwrap();
    let sf = s.iter().find(|e| e.0 == 2).unwrap();
    assert_eq!(sf.1.len(), 2, "the fan-in received both results: {:?}", sf.1);
    drop(s);
    finish(m);
}

/// A host polling in a loop (no wait, so workers leave outcomes without
/// the lock) while a lane task finishes whose continuation does not come
/// first (a locked task of a higher priority is queued): the worker leaves
/// the outcome and takes the lock to apply it, and the host's poll may get
/// there first. Either way the continuation must run, with the result,
/// after the higher-priority task. Repeated, so that the poll wins the race
/// in some rounds (a poll that delivered such an outcome as if nothing
/// waited on it would leave the continuation waiting for ever).
#[test]
fn a_polling_host_never_strands_an_unclaimed_continuation() {
    let _s = serial();
    let m = manager(1, true);
    // Priorities 0-7 take the eight lane levels; 10 then queues on the
    // locked path (added while the worker is in its lane loop, running the
    // gated task, so no empty level is given to it).
    for p in 0..8 {
        m.add(job(|_| {}), p, DEFAULT, &[]).unwrap();
    }
    collect_finals(&m, 8);
    for round in 0..2000 {
        let (gate, log, seen) = (Gate::new(), Log::default(), Seen::default());
        let a = m.add(gated(&gate, &log, 0), 0, DEFAULT, &[]).unwrap();
        gate.wait_arrivals(1);
        let c = m.add(chained(&log, &seen, 1), 0, DEFAULT, &[a]).unwrap(); // attached to running a
        let h = m.add(chained(&log, &seen, 2), 10, DEFAULT, &[]).unwrap(); // locked, comes first
        gate.open();
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut finals = Vec::new();
        while finals.len() < 3 {
            assert!(std::time::Instant::now() < deadline, "round {round}: stranded; got {finals:?}");
            finals.extend(poll(&m).iter().filter_map(|e| e.task()));
        }
        finals.sort();
        assert_eq!(finals, vec![a, c, h], "round {round}");
        assert_eq!(log.get(), vec![0, 2, 1], "round {round}: the higher priority first");
        let s = seen.lock().unwrap();
        assert_eq!(s.iter().find(|e| e.0 == 1).unwrap().1, vec![(a, 0)], "round {round}: c got a's result");
    }
    finish(m);
}

#[test]
fn a_failing_chain_head_cascades_across_groups_and_a_group_stop_reaches_the_whole_chain() {
    let _s = serial();
    let m = manager(1, true);
    let gate = Gate::new();
    let gc = gate.clone();
    m.add(job(move |_| gc.pass()), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    // A failing task queued behind the held one, with a chain across groups.
    let q = m.add(failing("boom", ""), 0, g(7), &[]).unwrap();
    let c = m.add(nop(), 0, g(7), &[q]).unwrap();
    let d = m.add(nop(), 0, g(8), &[c]).unwrap();
    let e = m.add(nop(), 0, g(8), &[d]).unwrap();
    gate.open();
    let evs = collect_finals(&m, 5);
    let failed: Vec<u64> = evs.iter().filter(|e| matches!(e, Ev::Failed { .. })).filter_map(Ev::task).collect();
    assert_eq!(failed, vec![q, c, d, e]);
    finish(m);

    // A group stop from a group that holds only the middle of a chain,
    // both flags: the whole chain.
    let m = manager(1, true);
    let gate = Gate::new();
    let gc = gate.clone();
    let a = m.add(job(move |_| gc.pass()), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    let b = m.add(nop(), 0, DEFAULT, &[a]).unwrap();
    let c = m.add(nop(), 0, g(5), &[b]).unwrap();
    m.add(nop(), 0, DEFAULT, &[c]).unwrap();
    let r = m.stop_group(g(5), true, true).unwrap();
    assert_eq!((r.before_start, r.while_running), (3, 1), "{r:?}");
    gate.open();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert!(drain(&m).is_empty());
    finish(m);
}

#[test]
fn counts_taken_while_workers_claim_continuations_stay_in_range() {
    let _s = serial();
    // Workers claim continuations (two counters each) while other threads
    // take counts: a count between the two must neither panic (under the
    // lock) nor wrap. Before the fix, a debug build (`scripts/test.sh
    // rust-asan` runs one) panicked here every time; a release build's
    // window is a few instructions wide.
    let m = manager(8, true);
    let stop = Arc::new(AtomicBool::new(false));
    let takers: Vec<_> = (0..3)
        .map(|_| {
            let (m, stop) = (m.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let s = m.stats();
                    assert!(s.queued + s.blocked + s.running < 1 << 32, "a count wrapped: {s:?}");
                }
            })
        })
        .collect();
    for _ in 0..3000 {
        let mut prev = m.add(nop(), 0, DEFAULT, &[]).unwrap();
        for _ in 0..200 {
            prev = m.add(nop(), 0, DEFAULT, &[prev]).unwrap();
        }
        poll(&m);
    }
    stop.store(true, Ordering::Relaxed);
    for t in takers {
        t.join().expect("no count panicked");
    }
    drain(&m);
    finish(m);
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

unsafe extern "C" fn no_hook(_: *mut c_void, _: u64, _: u32, _: u64, _: u32) {}

#[test]
fn chains_under_random_stops_priorities_pauses_and_hooks_run_each_task_once() {
    let _s = serial();
    for seed in 1..=60u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let m = manager(1 + (xorshift(&mut s) % 3) as usize, true);
        let ran: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (mut ids, mut paused, mut hooks) = (Vec::new(), false, false);
        for _ in 0..400 {
            match xorshift(&mut s) % 100 {
                0..=54 => {
                    let (ran, kind, spin) = (ran.clone(), xorshift(&mut s) % 20, xorshift(&mut s) % 3);
                    let j = job(move |ctx| {
                        ran.lock().unwrap().push(ctx.task_id());
                        for _ in 0..spin * 2000 {
                            std::hint::spin_loop();
                        }
                        match kind {
                            0 => ctx.fail(btm::engine::Failure::new(b"x", b"y")),
                            1..=9 => ctx.set_result(value(kind as i64)),
                            _ => {}
                        }
                    });
                    // Mostly chains: the last task as the only upstream.
                    let ups: Vec<u64> = match xorshift(&mut s) % 4 {
                        0 => vec![],
                        1 | 2 => ids.last().copied().into_iter().collect(),
                        _ => ids.iter().rev().take(2).copied().collect(),
                    };
                    let priority = (xorshift(&mut s) % 3) as i32;
                    ids.push(m.add(j, priority, DEFAULT, &ups).unwrap());
                }
                55..=62 => {
                    let id = ids.get(xorshift(&mut s) as usize % ids.len().max(1)).copied().unwrap_or(1);
                    let _ = m.stop_task(id, xorshift(&mut s) % 2 == 0, xorshift(&mut s) % 2 == 0);
                }
                63..=72 => {
                    let id = ids.get(xorshift(&mut s) as usize % ids.len().max(1)).copied().unwrap_or(1);
                    let _ = m.set_priority(id, (xorshift(&mut s) % 3) as i32);
                }
                73..=75 => {
                    if paused {
                        m.start_processing().unwrap();
                    } else {
                        m.pause_processing().unwrap();
                    }
                    paused = !paused;
                }
                76..=77 => {
                    hooks = !hooks;
                    let h = TaskHooks {
                        on_start: Some(no_hook),
                        on_end: None,
                        data: Owned::new(std::ptr::null_mut(), None),
                    };
                    m.set_task_hooks(hooks.then_some(h));
                }
                78..=89 => {
                    poll(&m);
                }
                _ => {
                    m.stats();
                }
            }
        }
        if paused {
            m.start_processing().unwrap();
        }
        // Every task that was not stopped reaches its final event.
        m.wait_idle(Some(TIMEOUT)).expect("every task settles");
        drain(&m);
        let ran = ran.lock().unwrap().clone();
        assert_eq!(ran.iter().copied().collect::<HashSet<u64>>().len(), ran.len(), "seed {seed}: a task ran twice");
        finish(m);
    }
}

/// A single add with one upstream task (`Manager::add_link`, which the C
/// API's single add calls for such a task) takes a path of its own when
/// its group is the one joined last (`State::add_plain_cont`): its refusals
/// keep the general path's order (shut down, invalid group, unknown
/// upstream, too many groups) and issue no id. (From a review of that
/// path.)
#[test]
fn single_adds_with_one_upstream_task_keep_the_order_of_their_errors_and_issue_no_id_when_refused() {
    let _s = serial();
    let m = manager(1, true);
    m.limit_groups_for_tests(2); // the default group and one other
    let unknown = GroupKey { kind: GroupKind::Named, value: 77 };
    let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    // The group joined last, an upstream id never issued or 0.
    assert_eq!(m.add_link(nop(), 0, DEFAULT, a + 1), Err(Error::UnknownUpstream));
    assert_eq!(m.add_link(nop(), 0, DEFAULT, 0), Err(Error::UnknownUpstream));
    // An invalid group comes before an unknown upstream task.
    assert_eq!(m.add_link(nop(), 0, unknown, a + 5), Err(Error::InvalidGroup));
    m.add_link(nop(), 0, g(1), a).unwrap();
    // An unknown upstream task comes before too many groups.
    assert_eq!(m.add_link(nop(), 0, g(2), a + 9), Err(Error::UnknownUpstream));
    assert_eq!(m.add_link(nop(), 0, g(2), a), Err(Error::TooManyGroups));
    let c = m.add_link(nop(), 0, DEFAULT, a).unwrap();
    assert_eq!(c, a + 2, "refused adds issue no id");
    let d = m.add_link(nop(), 0, DEFAULT, c).unwrap();
    assert_eq!(d, c + 1);
    collect_finals(&m, 4);
    m.shut_down(None).unwrap();
    assert_eq!(m.add_link(nop(), 0, unknown, a + 100), Err(Error::ShutDown));
    assert_eq!(m.add_link(nop(), 0, DEFAULT, d), Err(Error::ShutDown));
}

/// Chains added one link at a time, some links failing, on two workers
/// and three groups, polled now and then: every task's final event comes
/// once, whether its link waited attached or took the general path
/// (`Manager::add_link`; from a review of `State::add_plain_cont`).
#[test]
fn chains_of_single_adds_with_failing_links_deliver_every_final_event_once() {
    let _s = serial();
    let m = manager(2, true);
    let mut all = 0;
    let mut evs = Vec::new();
    for round in 0..200u64 {
        let group = g(round % 3);
        let mut up = m.add(nop(), 0, group, &[]).unwrap();
        for k in 0..50 {
            up = m.add_link(if k % 7 == 3 { failing("x", "y") } else { nop() }, 0, group, up).unwrap();
        }
        all += 51;
        if round % 10 == 0 {
            evs.extend(poll(&m));
        }
    }
    let have = finals(&evs).len();
    evs.extend(collect_finals(&m, all - have));
    evs.extend(drain(&m));
    let f = finals(&evs);
    let mut once = f.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(once.len(), f.len(), "each final event once");
    assert_eq!(f.len(), all);
    finish(m);
}
