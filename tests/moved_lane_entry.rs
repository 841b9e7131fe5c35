//! A queued lane entry that a lock holder moves to the locked path (a
//! fan-in added over it, when its entry cannot be marked linked because a
//! continuation is attached; a priority change) is cancelled in its slot
//! before the locked queue's new front is published (`locked_top` and
//! `locked_gen`, at the end of the lock section). A worker taking from the
//! lane in that window finds the entry cancelled, passed over it as if it
//! had been stopped, and claimed the next entry of its level (or a lower
//! level's): a younger task of the same priority started before the moved
//! one, which was ready all along (the one-worker order hammer,
//! `hammer_priority_order_one_worker`, caught it about once in a few
//! hundred rounds).
//!
//! Here one worker runs lane task T0 while tasks H, L1, L2 of its priority
//! wait behind it, with a continuation attached to H. The host adds a
//! fan-in over T0, H, L1, L2, the continuation and 50,000 tasks completed
//! with results: its lock section moves H to the locked path first and then
//! gathers and orders the results for milliseconds, while T0 returns and
//! the worker takes its next task. T0 returns after a delay swept over the
//! section's length, so that attempts land in that window (before the fix,
//! each run failed, in 2 to 8 of 8 attempts; the test checks that some
//! attempt hit the window). H must start before L1 and L2.
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use btm::engine::NewTask;
use common::*;

#[test]
fn a_lane_task_moved_to_the_locked_path_starts_before_younger_lane_tasks_of_its_priority() {
    let _s = serial();
    let m = manager(1, true);
    // One attempt: T0 returns `delay` after the host begins the fan-in's
    // add (`None`: once the add returned). Returns how long the add took
    // and the start order of H, L1, L2.
    let attempt = |delay: Option<Duration>| {
        // Upstream tasks of the fan-in, completed with results and not
        // polled: after it moved H, its add gathers their results and
        // sorts them by the order of their events, for milliseconds.
        let n = 50_000;
        let done = m
            .add_many(
                (0..n)
                    .map(|_| NewTask {
                        job: job(|ctx| ctx.set_result(value(1))),
                        priority: 1,
                        group: DEFAULT,
                        upstream: &[],
                    })
                    .collect(),
            )
            .unwrap();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        let go = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let clock = Arc::new(AtomicU64::new(1));
        let t0_end = Arc::new(AtomicU64::new(0));
        let t0 =
            m.add(returns_after(&go, &started, delay.unwrap_or_default(), &clock, &t0_end), 0, DEFAULT, &[]).unwrap();
        wait_until("T0 started", || started.load(SeqCst));
        // A lock section with no host waiting: the flag that sends the
        // worker to the lock after each outcome, raised by the wait for
        // idleness, is lowered (the adds below, plain lane adds, do not
        // look at it).
        m.start_processing().unwrap();
        // Stopped lane entries of a lower priority, still in their ring:
        // they make the fan-in move H rather than keep it in the lane (it
        // keeps its lane tasks when they are half of the queued entries).
        for _ in 0..16 {
            let id = m.add(nop(), -1, DEFAULT, &[]).unwrap();
            m.stop_task(id, false, false).unwrap();
        }
        let starts: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let mut ids = Vec::new();
        for st in &starts {
            let (st, c) = (st.clone(), clock.clone());
            ids.push(m.add(job(move |_| st.store(c.fetch_add(1, SeqCst), SeqCst)), 0, DEFAULT, &[]).unwrap());
        }
        let h = ids[0];
        // A continuation attached to H: the fan-in cannot mark H's entry.
        let c = m.add_link(nop(), 0, DEFAULT, h).unwrap();
        // Every task in the lane last (ascending: the add copies and sorts
        // a list that is not): the add finds them without a walk of the
        // list, and moves H before it gathers the results.
        let mut ups = done;
        ups.extend([t0, h, ids[1], ids[2], c]);
        if delay.is_some() {
            go.store(true, SeqCst);
        }
        let t = Instant::now();
        m.add(nop(), 0, DEFAULT, &ups).unwrap();
        let took = t.elapsed();
        let added = clock.fetch_add(1, SeqCst);
        go.store(true, SeqCst);
        drain(&m);
        let starts: Vec<u64> = starts.iter().map(|s| s.load(SeqCst)).collect();
        // The window was hit: T0 returned during the add, and the worker
        // did not claim H before the add moved it.
        let hit = t0_end.load(SeqCst) < added && starts[0] > added;
        (took, starts, hit)
    };
    // How long the fan-in's lock section lasts (the median of three).
    let mut sections: Vec<Duration> = (0..3)
        .map(|_| {
            let (took, order, _) = attempt(None);
            assert!(order[0] < order[1] && order[1] < order[2], "H, L1, L2 in order when nothing races");
            took
        })
        .collect();
    sections.sort();
    let section = sections[1];
    // H moves at the section's start, and the results take the rest: T0
    // returns at 10% to 80% of it (again if no attempt hit the window, on
    // a machine busy enough to stretch the section's start).
    let attempts = 8u32;
    let mut bad = Vec::new();
    let mut hits = 0;
    for _ in 0..10 {
        for k in 0..attempts {
            let delay = section * (10 + 70 * k / (attempts - 1)) / 100;
            let (_, s, hit) = attempt(Some(delay));
            hits += usize::from(hit);
            if s[0] > s[1] || s[0] > s[2] {
                bad.push((delay, s));
            }
        }
        if hits > 0 {
            break;
        }
    }
    eprintln!("{hits} attempts hit the window");
    assert!(
        bad.is_empty(),
        "H (moved to the locked path while the worker took) started after younger lane tasks of its priority \
         in {} of {attempts} attempts (section {section:?}): (T0's delay, start order of H, L1, L2) {bad:?}",
        bad.len()
    );
    assert!(hits > 0, "no attempt hit the window (T0 returned during the add, H not claimed before it)");
}
