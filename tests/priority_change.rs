//! Priority changes (`Manager::set_priority`, `btm_set_task_priority`) in
//! each state a task can be in, the order the task then runs in, and races
//! with the workers, the host's polls, stops and fan-ins.
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btm::engine::{Error, Job, NewTask, Owned};
use common::*;

/// Per task run, in order: its tag and the upstream results it received.
type Received = Arc<Mutex<Vec<(i64, Vec<(u64, i64)>)>>>;

/// A pass-through task without payload.
fn pass() -> Job {
    Job::pass_through(Owned::new(std::ptr::null_mut(), None))
}

/// A task that records its tag and the upstream results it received (in
/// `got`, in the order tasks run) and completes with its tag as result.
fn tagged(got: &Received, tag: i64) -> Job {
    let got = got.clone();
    job(move |ctx| {
        got.lock().unwrap().push((tag, upstream(ctx)));
        ctx.set_result(value(tag));
    })
}

/// Adds a lane task that waits at a gate, then completes with result 9;
/// returns once it runs (holding the only worker).
fn running_with_result_9(m: &Arc<btm::engine::Manager>) -> (Gate, u64) {
    let gate = Gate::new();
    let gc = gate.clone();
    let r = m
        .add(
            job(move |ctx| {
                gc.pass();
                ctx.set_result(value(9));
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    gate.wait_arrivals(1);
    (gate, r)
}

/// The status of a priority change in every state a task can be in, and
/// the order the changed tasks then run in (one worker).
#[test]
fn a_priority_change_in_each_state_returns_its_status_and_reorders() {
    let _s = serial();
    let m = manager(1, true);
    let log = Log::default();
    // Finished, not polled: no longer queued.
    let f = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(m.set_priority(f, 3), Err(Error::NotQueued), "finished, not polled");
    assert_eq!(finals(&drain(&m)), vec![f]);
    assert_eq!(m.set_priority(f, 3), Err(Error::NotFound), "finished and polled");
    // Running (a lane task).
    let gate = Gate::new();
    let gc = gate.clone();
    let r = m.add(job(move |_| gc.pass()), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    assert_eq!(m.set_priority(r, 3), Err(Error::NotQueued), "running");
    // Queued in a lane level's ring.
    let a = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    // A continuation attached to it.
    let c = m.add_link(logging(&log, 2), 0, DEFAULT, a).unwrap();
    // On the locked path, waiting for its upstream tasks.
    let w = m.add(logging(&log, 3), 0, DEFAULT, &[r, a]).unwrap();
    // A pass-through.
    let p = m.add(pass(), 0, DEFAULT, &[]).unwrap();
    // Queued in a level's ring and, past it, in its overflow.
    let o: Vec<u64> = (0..RING as i64 + 4).map(|i| m.add(logging(&log, 100 + i), 2, DEFAULT, &[]).unwrap()).collect();
    // Stopped; never issued; id 0.
    let s = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    m.stop_task(s, false, false).unwrap();
    assert_eq!(m.set_priority(s, 1), Err(Error::NotFound), "stopped");
    assert_eq!(m.set_priority(1 << 40, 1), Err(Error::NotFound), "never issued");
    assert_eq!(m.set_priority(0, 1), Err(Error::NotFound), "id 0");

    let counts = |m: &Arc<btm::engine::Manager>| {
        let st = m.stats();
        (st.queued, st.blocked, st.running)
    };
    // Queued: A, the pass-through, the ring and overflow; blocked: the
    // continuation and W; running: R.
    let want_counts = (RING as u64 + 6, 2, 1);
    assert_eq!(counts(&m), want_counts);
    let last = *o.last().unwrap();
    assert_eq!(m.set_priority(last, 7), Ok(()), "in an overflow");
    assert_eq!(m.set_priority(a, 5), Ok(()), "in a ring");
    assert_eq!(m.set_priority(a, 5), Ok(()), "the same priority again");
    assert_eq!(m.set_priority(c, 6), Ok(()), "a continuation");
    assert_eq!(m.set_priority(c, 6), Ok(()), "a continuation moved, the same priority again");
    assert_eq!(m.set_priority(w, 4), Ok(()), "waiting for upstream tasks");
    assert_eq!(m.set_priority(p, 3), Ok(()), "a pass-through");
    // The ring's first entry, changed to its own priority: it stays in
    // the lane (the locked queue gains no entry) and runs first among its
    // priority.
    let entries = m.ready_entries_for_tests();
    assert_eq!(m.set_priority(o[0], 2), Ok(()), "the same priority");
    assert_eq!(m.ready_entries_for_tests(), entries, "a lane task changed to its own priority stays in the lane");
    // So does an overflow entry in the middle, ahead of the entries that
    // overflowed after it and behind the ring's.
    assert_eq!(m.set_priority(o[RING + 1], 2), Ok(()), "the same priority, in an overflow");
    assert_eq!(m.ready_entries_for_tests(), entries, "an overflow entry changed to its own priority stays");
    assert_eq!(counts(&m), want_counts, "the changes moved tasks, but none started or ended");
    gate.open();
    let evs = drain(&m);
    // 7: the overflow's last; 5: A; then its continuation (6) once A is
    // done; then W (4) once R and A are; the pass-through (3); then the
    // rest of priority 2 in the order added.
    let mut want = vec![100 + RING as i64 + 3, 1, 2, 3];
    want.extend(100..100 + RING as i64 + 3);
    assert_eq!(log.get(), want);
    let mut want_finals = vec![r, last, a, c, w, p];
    want_finals.extend(&o[..o.len() - 1]);
    assert_eq!(finals(&evs), want_finals);
    for id in [r, a, c, w, p, last] {
        assert_eq!(m.set_priority(id, 1), Err(Error::NotFound), "polled");
    }

    // While paused: a change reorders queued tasks, before any starts.
    m.pause_processing().unwrap();
    let x = m.add(logging(&log, 10), 0, DEFAULT, &[]).unwrap();
    let y = m.add(logging(&log, 11), 0, DEFAULT, &[]).unwrap();
    let z = m.add(logging(&log, 12), 0, DEFAULT, &[x]).unwrap();
    let lo = m.add(logging(&log, 13), 0, DEFAULT, &[]).unwrap();
    let hi = m.add(logging(&log, 14), 0, DEFAULT, &[]).unwrap();
    assert_eq!(m.set_priority(y, 1), Ok(()));
    assert_eq!(m.set_priority(z, 2), Ok(()));
    assert_eq!(m.set_priority(x, -1), Ok(()));
    assert_eq!(m.set_priority(lo, i32::MIN), Ok(()));
    assert_eq!(m.set_priority(hi, i32::MAX), Ok(()));
    let before = log.get().len();
    m.start_processing().unwrap();
    assert_eq!(finals(&drain(&m)), vec![hi, y, x, z, lo]);
    assert_eq!(log.get()[before..], [14, 11, 10, 12, 13]);

    // After shut down: no task is live.
    let q = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    m.shut_down(Some(TIMEOUT)).unwrap();
    assert_eq!(m.set_priority(q, 1), Err(Error::NotFound), "after shut down");
    drop(m);
    assert_all_freed();
}

/// A re-prioritised task competes with its new priority against lane and
/// locked tasks, and among equal priorities by id (the order added), with
/// one and with two workers (the second held by a task throughout).
#[test]
fn a_changed_task_runs_in_its_new_priority_order_against_lane_and_locked_tasks() {
    let _s = serial();
    for workers in [1, 2] {
        let m = manager(workers, true);
        let other = (workers == 2).then(|| occupy_a_worker(&m, DEFAULT));
        let gate = occupy_a_worker(&m, DEFAULT);
        let log = Log::default();
        // Lane tasks of priorities 0 and 1, and locked ones (a pass-through
        // upstream makes a task wait on the locked path; it completes at
        // once when the gate opens, before any other).
        let up = m.add(pass(), 9, DEFAULT, &[]).unwrap();
        let mut ids = Vec::new();
        for (i, (prio, locked)) in
            [(0, false), (1, false), (0, true), (1, true), (0, false), (1, false), (0, true), (1, true)]
                .into_iter()
                .enumerate()
        {
            let upstream: &[u64] = if locked { &[up] } else { &[] };
            ids.push(m.add(logging(&log, i as i64), prio, DEFAULT, upstream).unwrap());
        }
        // 0: lane 0 -> 1 (oldest of priority 1); 5: lane 1 -> 0; 6: locked
        // 0 -> 1; 3: locked 1 -> 0 -> 1 (back); 4: lane 0 -> 0 (moved).
        m.set_priority(ids[0], 1).unwrap();
        m.set_priority(ids[5], 0).unwrap();
        m.set_priority(ids[6], 1).unwrap();
        m.set_priority(ids[3], 0).unwrap();
        m.set_priority(ids[3], 1).unwrap();
        m.set_priority(ids[4], 0).unwrap();
        gate.open();
        // (The other worker stays held: wait for the final events of the
        // gate's task, the pass-through and the eight.)
        collect_finals(&m, 10);
        // Priority 1: 0, 1, 3, 6, 7; priority 0: 2, 4, 5.
        assert_eq!(log.get(), vec![0, 1, 3, 6, 7, 2, 4, 5], "{workers} worker(s)");
        if let Some(o) = other {
            o.open();
        }
        finish(m);
    }
}

/// A queued lane entry that a priority change moves to the locked path
/// (`State::unlane_slow`) is cancelled in its slot before the locked
/// queue's new front is published at the end of the change's lock section.
/// A worker taking from the lane in that window must not pass over it: a
/// task raised was ready all along at a priority above its lane
/// neighbours', and is older than them.
///
/// One worker runs lane task T0 while tasks H, L1, L2 of priority 0 wait
/// behind it. T0 returns a delay after the host begins the change of H's
/// priority (to 1), swept over the change's length, so that
/// attempts land in the window (the test checks that some attempt's T0
/// returned during the change with H not claimed before it). H must start
/// before L1 and L2.
#[test]
fn a_lane_task_moved_by_a_priority_change_starts_before_younger_lane_tasks_of_its_priority() {
    let _s = serial();
    let m = manager(1, true);
    // One attempt: T0 returns `delay` after the host begins the change
    // (`None`: once it returned). Returns how long the change took, the
    // start order of H, L1, L2, and whether the window was hit.
    let attempt = |to: i32, delay: Option<Duration>| {
        let go = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let clock = Arc::new(AtomicU64::new(1));
        let t0_end = Arc::new(AtomicU64::new(0));
        m.add(returns_after(&go, &started, delay.unwrap_or_default(), &clock, &t0_end), 0, DEFAULT, &[]).unwrap();
        wait_until("T0 started", || started.load(SeqCst));
        // A lock section with no host waiting (the flag the wait for T0's
        // start left is lowered).
        m.start_processing().unwrap();
        let starts: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let ids: Vec<u64> = starts
            .iter()
            .map(|st| {
                let (st, c) = (st.clone(), clock.clone());
                m.add(job(move |_| st.store(c.fetch_add(1, SeqCst), SeqCst)), 0, DEFAULT, &[]).unwrap()
            })
            .collect();
        if delay.is_some() {
            go.store(true, SeqCst);
        }
        let begun = clock.fetch_add(1, SeqCst);
        let t = Instant::now();
        let moved = m.set_priority(ids[0], to);
        let took = t.elapsed();
        let changed = clock.fetch_add(1, SeqCst);
        go.store(true, SeqCst);
        drain(&m);
        let starts: Vec<u64> = starts.iter().map(|s| s.load(SeqCst)).collect();
        let end = t0_end.load(SeqCst);
        // The window was hit: T0 returned during the change, which moved
        // H (not claimed before it), and H started after the change.
        let hit = moved.is_ok() && begun < end && end < changed && starts[0] > changed;
        (took, starts, hit)
    };
    // (To a higher priority: a lane task changed to its own priority
    // stays in the lane, and a lower one may rightly start after L1, L2.)
    for to in [1] {
        let mut sections: Vec<Duration> = (0..5)
            .map(|_| {
                let (took, order, _) = attempt(to, None);
                assert!(order[0] < order[1] && order[1] < order[2], "H, L1, L2 in order when nothing races");
                took
            })
            .collect();
        sections.sort();
        // The shortest: a busy machine stretches some measurements.
        let section = sections[0].max(Duration::from_nanos(200));
        // T0 returns at 0% to 300% of the change's length after the host
        // lets it go (the host reaches the lock after T0 sees the go); on
        // a busy machine, where that takes longer, rounds sweep up to 10
        // and 30 times it too.
        let attempts = 64u32;
        let mut bad = Vec::new();
        let mut hits = 0;
        for round in 0..60u32 {
            let span = [3, 10, 30][round as usize % 3];
            for k in 0..attempts {
                let delay = section * (100 * span * k / (attempts - 1)) / 100;
                let (_, s, hit) = attempt(to, Some(delay));
                hits += usize::from(hit);
                if s[0] > s[1] || s[0] > s[2] {
                    bad.push((delay, s));
                }
            }
            if hits >= 40 {
                break;
            }
        }
        eprintln!("to priority {to}: {hits} attempts hit the window (section {section:?})");
        assert!(
            bad.is_empty(),
            "H (moved to the locked path by a change to priority {to} while the worker took) started after \
             younger lane tasks of priority 0 in {} attempts (section {section:?}): (T0's delay, start order of \
             H, L1, L2) {bad:?}",
            bad.len()
        );
        assert!(hits > 0, "no attempt hit the window (T0 returned during the change, H not claimed before it)");
    }
    finish(m);
}

/// Continuations and upstream tasks moved to the locked path by a priority
/// change still hand their results on: a continuation moved while its
/// upstream task is queued or running, an upstream task moved away from
/// its continuation, a chain's middle link moved, a fan-in's upstream
/// task moved.
#[test]
fn tasks_moved_by_a_priority_change_still_receive_their_upstream_results() {
    let _s = serial();
    let m = manager(1, true);
    // Per task tag: the upstream results it received, in the order run.
    let got: Received = Arc::default();
    let task = |tag: i64| tagged(&got, tag);
    let (gate, r) = running_with_result_9(&m);
    // Attached to the running task.
    let c0 = m.add_link(task(10), 0, DEFAULT, r).unwrap();
    let u1 = m.add(task(1), 0, DEFAULT, &[]).unwrap();
    let c1 = m.add_link(task(11), 0, DEFAULT, u1).unwrap();
    let u2 = m.add(task(2), 0, DEFAULT, &[]).unwrap();
    m.add_link(task(12), 0, DEFAULT, u2).unwrap();
    let u3 = m.add(task(3), 0, DEFAULT, &[]).unwrap();
    let c3 = m.add_link(task(13), 0, DEFAULT, u3).unwrap();
    m.add_link(task(23), 0, DEFAULT, c3).unwrap();
    let u4 = m.add(task(4), 0, DEFAULT, &[]).unwrap();
    let u5 = m.add(task(5), 0, DEFAULT, &[]).unwrap();
    m.add(task(45), 0, DEFAULT, &[u4, u5]).unwrap();
    m.set_priority(c0, 1).unwrap();
    m.set_priority(c1, 3).unwrap();
    m.set_priority(u2, 4).unwrap();
    m.set_priority(c3, 2).unwrap();
    m.set_priority(u5, 5).unwrap();
    gate.open();
    let evs = drain(&m);
    assert_eq!(finals(&evs).len(), 12);
    assert!(evs.iter().all(|e| !matches!(e, Ev::Failed { .. })));
    let got = got.lock().unwrap().clone();
    let received: HashMap<i64, Vec<(u64, i64)>> = got.iter().cloned().collect();
    assert_eq!(received[&10], vec![(r, 9)], "C0, moved while attached to a running task");
    assert_eq!(received[&11], vec![(u1, 1)], "C1, moved while attached to a queued task");
    assert_eq!(received[&12], vec![(u2, 2)], "C2, whose upstream task moved");
    assert_eq!(received[&13], vec![(u3, 3)], "C3, a chain's middle link, moved");
    assert_eq!(received[&23], vec![(c3, 13)], "C3's continuation");
    // U5 (priority 5 now) completed first.
    assert_eq!(received[&45], vec![(u5, 5), (u4, 4)], "a fan-in whose upstream task moved");
    // By priority, then id, each once its upstream tasks are done: U5 (5),
    // U2 (4), C0 (1); then the 0s by id, each raised continuation as soon
    // as its upstream task is done: U1, C1 (3), C2, U3, C3 (2), C3b, U4, F.
    let order: Vec<i64> = got.iter().map(|(t, _)| *t).collect();
    assert_eq!(order, vec![5, 2, 10, 1, 11, 12, 3, 13, 23, 4, 45]);
    finish(m);
}

/// A continuation moved by a priority change (or left behind by its
/// upstream task's move) and released by a stop of its upstream task
/// without its downstream tasks runs without that result; stopped with
/// them, it never runs and gets no event. A change from inside a task
/// works as from the host.
#[test]
fn moved_continuations_released_or_reached_by_a_stop_of_their_upstream_task() {
    let _s = serial();
    let m = manager(1, true);
    let got: Received = Arc::default();
    let task = |tag: i64| tagged(&got, tag);
    let (gate, r) = running_with_result_9(&m);
    // C0: attached to the running task, moved; its upstream stopped while
    // running.
    let c0 = m.add_link(task(10), 0, DEFAULT, r).unwrap();
    m.set_priority(c0, 1).unwrap();
    // C1: attached to a queued task, moved; its upstream stopped.
    let u1 = m.add(task(1), 0, DEFAULT, &[]).unwrap();
    let c1 = m.add_link(task(11), 0, DEFAULT, u1).unwrap();
    m.set_priority(c1, 2).unwrap();
    // C2: its upstream moved, then stopped.
    let u2 = m.add(task(2), 0, DEFAULT, &[]).unwrap();
    let c2 = m.add_link(task(12), 0, DEFAULT, u2).unwrap();
    m.set_priority(u2, 3).unwrap();
    // C3: moved, and stopped with its upstream (downstream tasks too).
    let u3 = m.add(task(3), 0, DEFAULT, &[]).unwrap();
    let c3 = m.add_link(task(13), 0, DEFAULT, u3).unwrap();
    m.set_priority(c3, 4).unwrap();
    // C4: its upstream moved, then both stopped.
    let u4 = m.add(task(4), 0, DEFAULT, &[]).unwrap();
    let c4 = m.add_link(task(14), 0, DEFAULT, u4).unwrap();
    m.set_priority(u4, 5).unwrap();
    // T: changes the priority of its own (NOT_QUEUED) and of a queued task
    // (V, raised to run next).
    let t_status: Arc<Mutex<Vec<Result<(), Error>>>> = Arc::default();
    let (mc, ts) = (m.clone(), t_status.clone());
    let v_id = Arc::new(AtomicU64::new(0));
    let vc = v_id.clone();
    let t = m
        .add(
            job(move |ctx| {
                let mut s = ts.lock().unwrap();
                s.push(mc.set_priority(ctx.task_id(), 8));
                s.push(mc.set_priority(vc.load(SeqCst), 6));
            }),
            7,
            DEFAULT,
            &[],
        )
        .unwrap();
    let w = m.add(task(20), 0, DEFAULT, &[]).unwrap();
    let v = m.add(task(21), 0, DEFAULT, &[]).unwrap();
    v_id.store(v, SeqCst);
    assert_eq!(m.stop_task(r, false, false).unwrap().while_running, 1);
    assert_eq!(m.stop_task(u1, false, false).unwrap().before_start, 1);
    assert_eq!(m.stop_task(u2, false, false).unwrap().before_start, 1);
    assert_eq!(m.stop_task(u3, false, true).unwrap().before_start, 2);
    assert_eq!(m.stop_task(u4, false, true).unwrap().before_start, 2);
    for id in [r, u1, u2, u3, c3, u4, c4] {
        assert_eq!(m.set_priority(id, 1), Err(Error::NotFound), "stopped");
    }
    gate.open();
    let evs = drain(&m);
    // T (7); V (6, raised by T); C1 (2); C0 (1); then the 0s: C2, W.
    assert_eq!(finals(&evs), vec![t, v, c1, c0, c2, w]);
    assert_eq!(*t_status.lock().unwrap(), vec![Err(Error::NotQueued), Ok(())]);
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![(21, vec![]), (11, vec![]), (10, vec![]), (12, vec![]), (20, vec![])],
        "each released continuation ran once, without its stopped upstream task's result"
    );
    finish(m);
}

/// A lane task that a fan-in marked (a ring entry) or counted (an
/// overflow entry, `lane_linked`) and that a priority change then moves to
/// the locked path leaves neither mark nor count behind (a count left
/// would keep every worker taking the lock after each outcome), and the
/// fan-in still waits for it and receives its result.
#[test]
fn a_linked_lane_task_moved_by_a_priority_change_leaves_no_mark_or_count() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let got: Arc<Mutex<Vec<(i64, usize)>>> = Arc::default();
    let task = |tag: i64| {
        let got = got.clone();
        job(move |ctx| {
            got.lock().unwrap().push((tag, upstream(ctx).len()));
            ctx.set_result(value(tag));
        })
    };
    // Two ring entries, marked by a fan-in over both.
    let u1 = m.add(task(1), 0, DEFAULT, &[]).unwrap();
    let u2 = m.add(task(2), 0, DEFAULT, &[]).unwrap();
    m.add(task(3), 0, DEFAULT, &[u1, u2]).unwrap();
    assert_eq!(linked(&m), (0, 2), "two ring entries marked");
    m.set_priority(u1, 1).unwrap();
    assert_eq!(linked(&m), (0, 1), "the moved one's mark is gone");
    // A ring and an overflow of priority 2, all named by a fan-in (more
    // than half of the lane's queued entries: they stay, the overflow's
    // counted).
    let o: Vec<u64> = (0..RING as i64 + 2).map(|i| m.add(task(100 + i), 2, DEFAULT, &[]).unwrap()).collect();
    m.add(task(4), 2, DEFAULT, &o).unwrap();
    let (counted, marked) = linked(&m);
    assert_eq!((counted, marked), (2, RING + 1), "the overflow's two counted, the ring's marked");
    // Changed to its own priority, a lane task stays, marked.
    m.set_priority(o[1], 2).unwrap();
    m.set_priority(o[RING + 1], 2).unwrap();
    assert_eq!(linked(&m), (2, RING + 1), "changes to their own priority move nothing");
    m.set_priority(o[RING + 1], 3).unwrap();
    m.set_priority(o[RING], 5).unwrap();
    m.set_priority(o[0], 3).unwrap();
    assert_eq!(linked(&m), (0, RING), "the moved ones' counts and mark are gone");
    gate.open();
    let evs = drain(&m);
    assert_eq!(finals(&evs).len(), RING + 7, "the gate's task, U1, U2, the ring and overflow, the fan-ins");
    let got = got.lock().unwrap().clone();
    let fan_ins: Vec<(i64, usize)> = got.iter().copied().filter(|(t, _)| (3..=4).contains(t)).collect();
    assert_eq!(fan_ins, vec![(4, RING + 2), (3, 2)], "each fan-in received every result, after its upstream tasks");
    assert_eq!(linked(&m), (0, 0));
    finish(m);
}

/// Changes of a queued task's priority leave its old entry in the locked
/// ready queue (removed lazily, when popped). Changed back and forth while
/// it waits (a host that re-prioritises what is on screen as the user
/// scrolls, while the workers are busy), one task must not make the queue
/// grow with every change: its memory would grow without bound for a fixed
/// number of tasks (8 bytes a change), and the next worker to take from it
/// would pop every stale entry under btm's lock.
#[test]
fn changing_a_queued_task_back_and_forth_keeps_the_ready_queue_bounded_by_its_tasks() {
    let _s = serial();
    let m = manager(1, false);
    let log = Log::default();
    let a = m.add(logging(&log, 1), 0, DEFAULT, &[]).unwrap();
    let x = m.add(logging(&log, 2), 0, DEFAULT, &[]).unwrap();
    let b = m.add(logging(&log, 3), 1, DEFAULT, &[]).unwrap();
    let c = m.add(logging(&log, 4), 0, DEFAULT, &[]).unwrap();
    let changes = 1_000_000;
    for i in 0..changes {
        m.set_priority(x, i & 1).unwrap();
    }
    assert_eq!(m.stats().queued, 4);
    let entries = m.ready_entries_for_tests();
    assert!(
        entries <= 2 * 4 + 4096,
        "{changes} changes of one of 4 queued tasks left {entries} entries in the ready queue"
    );
    // X ends at priority 1, added before B: X, B, then A and C.
    m.start_processing().unwrap();
    assert_eq!(finals(&drain(&m)), vec![x, b, a, c]);
    assert_eq!(log.get(), vec![2, 3, 1, 4]);
    assert_eq!(m.ready_entries_for_tests(), 0);
    finish(m);
}

/// Priority changes from a second thread while the host adds (lane tasks,
/// chains, fan-ins, pass-throughs, priorities beyond the lane's levels)
/// and polls, and a third thread stops tasks: every task runs at most
/// once, after its upstream tasks; every unstopped task has exactly one
/// final event, every stopped one none; every userdata is freed once.
#[test]
fn priority_changes_racing_workers_polls_stops_and_fan_ins_keep_every_task_once() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_PRIO_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    for round in 0..rounds {
        for workers in [1, 2] {
            race_round(round * 2 + workers as u64, workers);
        }
    }
}

/// Per task: times it ran; the clock's values at its start and its end;
/// the upstream tasks whose results it received.
type Runs = Arc<Mutex<HashMap<u64, Run>>>;

#[derive(Clone, Debug, Default)]
struct Run {
    times: u32,
    start: u64,
    end: u64,
    received: Vec<u64>,
}

/// A task that records its run in `runs`.
fn recording(runs: &Runs, clock: &Arc<AtomicU64>) -> Job {
    let (r, c) = (runs.clone(), clock.clone());
    job(move |ctx| {
        let id = ctx.task_id();
        let start = c.fetch_add(1, SeqCst);
        let received =
            upstream(ctx).into_iter().map(|(u, v)| (u as i64 == v).then_some(u).expect("its result")).collect();
        ctx.set_result(value(id as i64));
        let end = c.fetch_add(1, SeqCst);
        let mut g = r.lock().unwrap();
        let e = g.entry(id).or_default();
        *e = Run { times: e.times + 1, start, end, received };
    })
}

fn race_round(seed: u64, workers: usize) {
    let m = manager(workers, true);
    let n = 20_000u64;
    let issued = Arc::new(AtomicU64::new(0));
    let done_adding = Arc::new(AtomicBool::new(false));
    let runs: Runs = Arc::default();
    let clock = Arc::new(AtomicU64::new(1));
    // Upstream tasks of each task.
    // Upstream tasks of each task, and those of them whose final event
    // the host had not polled at its add (live then, or stopped).
    let mut ups: HashMap<u64, (Vec<u64>, Vec<u64>)> = HashMap::new();
    let mut polled: HashSet<u64> = HashSet::new();
    let live =
        |polled: &HashSet<u64>, u: &[u64]| (u.to_vec(), u.iter().copied().filter(|x| !polled.contains(x)).collect());
    let changer = {
        let (m, issued, done) = (m.clone(), issued.clone(), done_adding.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x5eed);
            let mut changes = [0u64; 3];
            while !done.load(SeqCst) {
                let top = issued.load(SeqCst);
                if top == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                // Mostly recent tasks (likely queued), some many times.
                let id = top - rng.below(top.min(64));
                let p = rng.below(11) as i32 - 5;
                for _ in 0..1 + rng.below(3) {
                    let i = match m.set_priority(id, p) {
                        Ok(()) => 0,
                        Err(Error::NotQueued) => 1,
                        Err(Error::NotFound) => 2,
                        Err(e) => panic!("set_priority({id}, {p}): {e:?}"),
                    };
                    changes[i] += 1;
                }
            }
            changes
        })
    };
    let stopper = {
        let (m, issued, done) = (m.clone(), issued.clone(), done_adding.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x570b);
            let mut stopped = Vec::new();
            while !done.load(SeqCst) {
                let top = issued.load(SeqCst);
                if top == 0 || rng.below(4) != 0 {
                    std::thread::yield_now();
                    continue;
                }
                if rng.below(16) == 0 {
                    // A pause: queued lane tasks move to the locked path.
                    m.pause_processing().unwrap();
                    std::thread::yield_now();
                    m.start_processing().unwrap();
                }
                let id = top - rng.below(top.min(32));
                if m.stop_task(id, false, false).is_ok() {
                    stopped.push(id);
                }
            }
            stopped
        })
    };
    let mut rng = Rng(seed);
    let mut events = Vec::new();
    let mut recent: Vec<u64> = Vec::new();
    for i in 0..n {
        let p = rng.below(11) as i32 - 5;
        let kind = rng.below(8);
        let id = match kind {
            0 | 1 if !recent.is_empty() => {
                let up = recent[rng.below(recent.len() as u64) as usize];
                let id = m.add_link(recording(&runs, &clock), p, DEFAULT, up).unwrap();
                ups.insert(id, live(&polled, &[up]));
                id
            }
            2 if recent.len() >= 2 => {
                let a = recent[rng.below(recent.len() as u64) as usize];
                let b = recent[rng.below(recent.len() as u64) as usize];
                let id = m.add(recording(&runs, &clock), p, DEFAULT, &[a, b]).unwrap();
                ups.insert(id, live(&polled, &[a, b]));
                id
            }
            3 if i % 16 == 3 => m.add(pass(), p, DEFAULT, &[]).unwrap(),
            _ => m.add(recording(&runs, &clock), p, DEFAULT, &[]).unwrap(),
        };
        issued.store(id, SeqCst);
        recent.push(id);
        if recent.len() > 16 {
            recent.remove(0);
        }
        if i % 97 == 0 {
            let got = poll(&m);
            polled.extend(finals(&got));
            events.extend(got);
        }
        if i % 1024 == 0 {
            // A batch of several priorities, some naming recent tasks.
            let batch: Vec<_> = (0..8)
                .map(|k| {
                    let up = if k % 3 == 0 { &recent[recent.len() - 1..] } else { &[][..] };
                    NewTask { job: recording(&runs, &clock), priority: k % 4 - 1, group: DEFAULT, upstream: up }
                })
                .collect();
            let ups_of: Vec<Vec<u64>> = batch.iter().map(|t| t.upstream.to_vec()).collect();
            let ids = m.add_many(batch).unwrap();
            for (id, u) in ids.iter().zip(ups_of) {
                ups.insert(*id, live(&polled, &u));
            }
            issued.store(*ids.last().unwrap(), SeqCst);
        }
    }
    done_adding.store(true, SeqCst);
    let changes = changer.join().unwrap();
    let stopped: HashSet<u64> = stopper.join().unwrap().into_iter().collect();
    events.extend(drain(&m));
    let runs = runs.lock().unwrap().clone();
    let mut finals_of: HashMap<u64, usize> = HashMap::new();
    for id in finals(&events) {
        *finals_of.entry(id).or_default() += 1;
    }
    assert!(events.iter().all(|e| !matches!(e, Ev::Failed { .. })), "no task fails: {events:?}");
    let last = issued.load(SeqCst);
    for id in 1..=last {
        let want = usize::from(!stopped.contains(&id));
        let got = finals_of.get(&id).copied().unwrap_or(0);
        assert_eq!(got, want, "seed {seed}: task {id} (stopped: {}) has {got} final events", want == 0);
    }
    for (id, run) in &runs {
        assert_eq!(run.times, 1, "seed {seed}: task {id} ran {} times", run.times);
        let (all, live) = ups.get(id).cloned().unwrap_or_default();
        let mut received = run.received.clone();
        received.sort();
        received.dedup();
        assert_eq!(received.len(), run.received.len(), "seed {seed}: task {id} received a result twice: {run:?}");
        assert!(
            received.iter().all(|u| all.contains(u)),
            "seed {seed}: task {id} received a result of a task not upstream of it: {run:?}, upstream {all:?}"
        );
        for up in live {
            // An upstream task that ran (not a pass-through) and was not
            // stopped ended before this one began, and handed its result.
            if let (Some(u), false) = (runs.get(&up), stopped.contains(&up)) {
                assert!(u.end < run.start, "seed {seed}: task {id} ran before its upstream task {up} ended");
                assert!(
                    received.contains(&up),
                    "seed {seed}: task {id} did not receive the result of its upstream task {up}: {run:?}"
                );
            }
        }
    }
    eprintln!(
        "seed {seed}, {workers} worker(s): changes (ok, not queued, not found) {changes:?}, {} stopped",
        stopped.len()
    );
    finish(m);
}
