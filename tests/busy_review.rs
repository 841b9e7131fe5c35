//! Review of commit b004748 ("an empty level is given to a new priority
//! also while workers are in their lane loop"): `State::lane_level_given`
//! now reassigns an empty level while workers are in `lane_loop`, provided
//! none is claiming (`Lane::take`) or giving an entry back. Code that reads
//! the levels outside a claim, and that until then never ran concurrently
//! with a reassignment, is what these tests look at.
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use btm::engine::{Manager, NewTask};
use common::*;

/// Runs a task of each of `prios`, in order, until each went to the lane
/// (so each has a level, and the levels' newest entries are in this
/// order), and waits for them.
fn prime(m: &Arc<Manager>, prios: &[i32]) {
    for _ in 0..100 {
        let before = m.lane_added_for_tests();
        for &p in prios {
            m.add(nop(), p, DEFAULT, &[]).unwrap();
        }
        let to_lane = m.lane_added_for_tests() - before;
        collect_finals(m, prios.len());
        let levels = m.lane_levels_for_tests().0;
        if to_lane == prios.len() as u64 && prios.iter().all(|p| levels.contains(p)) {
            return;
        }
    }
    panic!("could not give {prios:?} a level each: {:?}", m.lane_levels_for_tests());
}

/// `Lane::comes_first` (a worker that finished a lane task with a
/// continuation attached: may it run the continuation at once?) reads the
/// level order word, then each level's priority, and stops at the first
/// level below the continuation's priority. A level given to a lower
/// priority between those two reads (`Lane::reassign` stores the priority,
/// then the order word) ends the walk at that level's OLD place: the levels
/// after it in the old order, which may hold older entries of a higher
/// priority than the continuation's, are not looked at, and the
/// continuation runs ahead of them. Before b004748 no level was reassigned
/// while a worker was in its lane loop, which `comes_first` runs in.
///
/// Levels (priorities, descending): 24..20 (empty), 10 (empty, the oldest
/// newest entry: the one given away), 6, 5. The single worker runs T
/// (priority 5) with continuation C (priority 5) attached; T adds B
/// (priority 6) itself, so B is queued before T ends (in the worker's own
/// past), and B must run before C. As T returns, the host adds a task of a
/// new priority below 5, which takes level 10. C must still find B queued
/// and leave itself to the lock; with the race it runs first. T's return is
/// swept over a range of delays after B's add, against the host's add.
#[test]
fn a_continuation_does_not_run_ahead_of_a_queued_higher_task_while_a_level_is_given_away() {
    let _s = serial();
    let m = manager(1, true);
    let levels: [i32; 8] = [10, 6, 24, 23, 22, 21, 20, 5];
    let rounds: u64 = std::env::var("BTM_BUSY_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let violations = Arc::new(AtomicU64::new(0));
    let mut reassigned_in_window = 0u64;
    let mut round = 0u64;
    while round < rounds && Instant::now() < deadline {
        // 10 first: its level has the oldest newest entry, and is the one
        // an add of a new priority takes while 24..20 and 5 are empty too.
        prime(&m, &levels[..7]);
        // Every level but 6's then unused for 256 adds, as a level must be
        // to be given away while a worker is in its lane loop
        // (`BUSY_GIVE_AGE`, added after this review).
        let batch = (0..256).map(|_| NewTask { job: nop(), priority: 6, group: DEFAULT, upstream: &[] }).collect();
        m.add_many(batch).unwrap();
        collect_finals(&m, 256);
        let (go, started, b_added, b_done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let delay = (round * 37) % 1500;
        let t = {
            let (go, started, b_added, b_done) = (go.clone(), started.clone(), b_added.clone(), b_done.clone());
            m.add(
                job(move |ctx| {
                    started.store(true, SeqCst);
                    while !go.load(SeqCst) {
                        std::hint::spin_loop();
                    }
                    let mm = manager_of(ctx);
                    let bd = b_done.clone();
                    mm.add(job(move |_| bd.store(true, SeqCst)), 6, DEFAULT, &[]).unwrap();
                    b_added.store(true, SeqCst);
                    for i in 0..delay {
                        std::hint::black_box(i);
                    }
                }),
                5,
                DEFAULT,
                &[],
            )
            .unwrap()
        };
        wait_until("T to start", || started.load(SeqCst));
        {
            let (b_done, violations) = (b_done.clone(), violations.clone());
            m.add(
                job(move |_| {
                    if !b_done.load(SeqCst) {
                        violations.fetch_add(1, SeqCst);
                    }
                }),
                5,
                DEFAULT,
                &[t],
            )
            .unwrap();
        }
        let reassigned = m.lane_levels_for_tests().1;
        go.store(true, SeqCst);
        while !b_added.load(SeqCst) {
            std::hint::spin_loop();
        }
        // A new priority below 5: it takes level 10 (the worker is not
        // claiming while it decides on C).
        m.add(nop(), -1 - round as i32, DEFAULT, &[]).unwrap();
        if m.lane_levels_for_tests().1 > reassigned {
            reassigned_in_window += 1;
        }
        collect_finals(&m, 4);
        round += 1;
        if violations.load(SeqCst) > 0 {
            break;
        }
    }
    assert!(reassigned_in_window > 0, "no level was given away while T ended ({round} rounds)");
    assert_eq!(
        violations.load(SeqCst),
        0,
        "continuation C ran before B (priority 6 > 5, queued by T before T ended) in {} of {round} rounds \
         ({reassigned_in_window} with a level given away as T ended)",
        violations.load(SeqCst)
    );
    finish(m);
}
