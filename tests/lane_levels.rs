//! The lane's levels over a host's life (src/engine/lane.rs, `Lane::reassign`):
//! eight levels are made for the first eight priorities used, and once all
//! are made a new priority is given a level that no task holds while no
//! worker is in its lane loop. Checked here: the tasks of every priority a
//! host moves through go to the lane (`Manager::lane_added_for_tests`), a
//! level with queued tasks keeps its priority, and priority order holds
//! across reassigned levels, single adds, batches and the locked path.
mod common;

use std::sync::Arc;

use btm::engine::NewTask;
use common::*;

#[test]
fn a_host_moving_through_many_priorities_keeps_each_on_the_lane() {
    let _s = serial();
    let m = manager(1, true);
    // A priority per phase, as a host that ranks each new batch above the
    // last one: 40 priorities, never more than one at a time.
    for phase in 0..40 {
        let before = m.lane_added_for_tests();
        for _ in 0..3 {
            m.add(nop(), phase * 10, DEFAULT, &[]).unwrap();
        }
        assert_eq!(m.lane_added_for_tests(), before + 3, "phase {phase}: its tasks went to the lane");
        assert!(m.lane_levels_for_tests().0.contains(&(phase * 10)), "phase {phase}: its priority has a level");
        collect_finals(&m, 3);
        workers_off_the_lane(&m);
    }
    let (levels, reassigned) = m.lane_levels_for_tests();
    assert_eq!(levels.len(), LANE_LEVELS as usize);
    assert_eq!(reassigned, 40 - LANE_LEVELS as u64, "each phase past the eighth took an empty level");
    finish(m);
}

#[test]
fn a_level_with_queued_tasks_keeps_its_priority() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    let log = Log::default();
    let gate = occupy_off_the_lane(&m, 0);
    // Every level gets a queued task again, then a new priority finds
    // none empty and takes the locked path.
    for p in 0..LANE_LEVELS {
        m.add(logging(&log, i64::from(p)), p, DEFAULT, &[]).unwrap();
    }
    let lane = m.lane_added_for_tests();
    m.add(logging(&log, 50), 50, DEFAULT, &[]).unwrap();
    assert_eq!(m.lane_added_for_tests(), lane, "no empty level: the locked path");
    assert_eq!(m.lane_levels_for_tests(), ((0..LANE_LEVELS).collect(), 0));
    gate.open();
    collect_finals(&m, LANE_LEVELS as usize + 2);
    let want: Vec<i64> = std::iter::once(50).chain((0..i64::from(LANE_LEVELS)).rev()).collect();
    assert_eq!(log.get(), want);
    finish(m);
}

#[test]
fn reassigned_levels_and_the_locked_path_keep_priority_order() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    let log = Log::default();
    let gate = occupy_off_the_lane(&m, 0);
    // Priorities 8-15 take the eight empty levels; 0-3, used before, then
    // find none and take the locked path; 12 again finds its new level.
    let mut want = Vec::new();
    let mut added = [0i64; 2 * LANE_LEVELS as usize];
    for _ in 0..4 {
        for p in (LANE_LEVELS..2 * LANE_LEVELS).chain(0..4).chain([12]) {
            // Priority * 100 + its tasks added before.
            let tag = i64::from(p) * 100 + added[p as usize];
            added[p as usize] += 1;
            m.add(logging(&log, tag), p, DEFAULT, &[]).unwrap();
            want.push(tag);
        }
    }
    let (levels, reassigned) = m.lane_levels_for_tests();
    assert_eq!(reassigned, LANE_LEVELS as u64);
    let mut sorted = levels.clone();
    sorted.sort();
    assert_eq!(sorted, (LANE_LEVELS..2 * LANE_LEVELS).collect::<Vec<_>>());
    gate.open();
    collect_finals(&m, want.len() + 1);
    // Higher priority first; within a priority, the order added.
    want.sort_by_key(|&t| (std::cmp::Reverse(t / 100), t % 100));
    assert_eq!(log.get(), want);
    finish(m);
}

#[test]
fn a_batch_whose_new_priority_takes_a_level_of_its_own_priorities_keeps_order() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    let log = Log::default();
    let gate = occupy_off_the_lane(&m, 0);
    // Seven of the batch's priorities have a level; the eighth, 100, is
    // given the empty level used least recently: priority 0's, which the
    // batch needs too.
    let prios = [0, 1, 2, 3, 4, 5, 6, 100];
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for k in 0..3 {
        for &p in &prios {
            let tag = i64::from(p) * 10 + k;
            batch.push(NewTask { job: logging(&log, tag), priority: p, group: DEFAULT, upstream: &[] });
            want.push(tag);
        }
    }
    let lane = m.lane_added_for_tests();
    m.add_many(batch).unwrap();
    assert_eq!(m.lane_added_for_tests(), lane + want.len() as u64, "every task of the batch went to the lane");
    gate.open();
    collect_finals(&m, want.len() + 1);
    want.sort_by_key(|&t| (std::cmp::Reverse(t / 10), t % 10));
    assert_eq!(log.get(), want);
    finish(m);
}

#[test]
fn a_level_unused_for_a_while_is_given_away_while_a_worker_runs_a_lane_task() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    // The worker is in its lane loop, running a lane task (taking no
    // entry), and every level was used in the last few adds: a new
    // priority takes the locked path (levels emptied by busy workers a
    // moment ago are not handed round).
    let gate = occupy_a_worker(&m, DEFAULT);
    let lane = m.lane_added_for_tests();
    m.add(nop(), 77, DEFAULT, &[]).unwrap();
    assert_eq!(m.lane_added_for_tests(), lane, "every level used in the last adds: the locked path");
    assert_eq!(m.lane_levels_for_tests(), ((0..LANE_LEVELS).collect(), 0));
    gate.open();
    collect_finals(&m, 2);
    // Priority 0 alone for 300 adds: the other levels went unused, and one
    // goes to a new priority while the worker runs a lane task.
    use_priorities(&m, std::iter::repeat(0).take(300));
    let gate = occupy_a_worker(&m, DEFAULT);
    assert!(m.workers_in_lane_for_tests() > 0);
    let lane = m.lane_added_for_tests();
    m.add(nop(), 78, DEFAULT, &[]).unwrap();
    assert_eq!(m.lane_added_for_tests(), lane + 1);
    let (levels, reassigned) = m.lane_levels_for_tests();
    assert!(levels.contains(&78));
    assert_eq!(reassigned, 1);
    gate.open();
    collect_finals(&m, 2);
    finish(m);
}

#[test]
fn tasks_added_from_a_lane_task_at_new_priorities_take_unused_levels_in_order() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    use_priorities(&m, std::iter::repeat(7).take(300));
    // A lane task of priority 7 (its worker in its lane loop, running it)
    // adds two tasks at each of seven new priorities, which take the
    // levels of 0-6 (unused for 300 adds), then one at 800, which finds
    // no unused empty level (7's was used a moment ago) and takes the
    // locked path.
    let log = Log::default();
    let l2 = log.clone();
    let added = Arc::new(std::sync::Mutex::new(None));
    let a2 = added.clone();
    m.add(
        job(move |ctx| {
            let mm = manager_of(ctx);
            let before = mm.lane_added_for_tests();
            for p in [100, 300, 200, 400, 700, 500, 600] {
                for k in 0..2 {
                    mm.add(logging(&l2, i64::from(p) + k), p, DEFAULT, &[]).unwrap();
                }
            }
            mm.add(logging(&l2, 800), 800, DEFAULT, &[]).unwrap();
            *a2.lock().unwrap() = Some((mm.lane_added_for_tests() - before, mm.lane_levels_for_tests()));
        }),
        7,
        DEFAULT,
        &[],
    )
    .unwrap();
    collect_finals(&m, 16);
    let (to_lane, (levels, reassigned)) = added.lock().unwrap().take().expect("the task ran");
    assert_eq!(to_lane, 14, "the new priorities' tasks went to the lane, 800's to the locked path");
    assert_eq!(reassigned, 7);
    assert!((1..=7).all(|k| levels.contains(&(k * 100))));
    let want: Vec<i64> = std::iter::once(800).chain((1..=7).rev().flat_map(|k| [k * 100, k * 100 + 1])).collect();
    assert_eq!(log.get(), want);
    finish(m);
}
