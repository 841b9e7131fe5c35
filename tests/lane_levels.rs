//! The lane's levels over a host's life (src/engine/lane.rs, `Lane::reassign`):
//! eight levels are made for the first eight priorities used, and once all
//! are made a new priority is given a level that no task holds while no
//! worker is in its lane loop. Checked here: the tasks of every priority a
//! host moves through go to the lane (`Manager::lane_added_for_tests`), a
//! level with queued tasks keeps its priority, and priority order holds
//! across reassigned levels, single adds, batches and the locked path.
mod common;

use std::sync::Arc;

use btm::engine::{Manager, NewTask};
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
fn a_level_is_given_away_while_a_worker_runs_a_lane_task() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    // The worker is in its lane loop, running a lane task (taking no
    // entry): an empty level goes to the new priority.
    let gate = occupy_a_worker(&m, DEFAULT);
    assert!(m.workers_in_lane_for_tests() > 0);
    let lane = m.lane_added_for_tests();
    m.add(nop(), 77, DEFAULT, &[]).unwrap();
    assert_eq!(m.lane_added_for_tests(), lane + 1);
    let (levels, reassigned) = m.lane_levels_for_tests();
    assert!(levels.contains(&77));
    assert_eq!(reassigned, 1);
    gate.open();
    collect_finals(&m, 2);
    finish(m);
}

/// The manager of the running task, as an owned reference.
fn manager_of(ctx: &btm::engine::TaskContext) -> Arc<Manager> {
    // SAFETY: valid while the task runs; this takes a reference of its own.
    unsafe {
        let p = ctx.manager();
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

#[test]
fn tasks_added_from_a_lane_task_at_new_priorities_take_empty_levels_in_order() {
    let _s = serial();
    let m = manager(1, true);
    use_priorities(&m, 0..LANE_LEVELS);
    // A lane task (its worker in its lane loop, running it) adds two tasks
    // at each of four new priorities, which take empty levels, then one at
    // each of 0-3, whose levels went to others (they take the rest), then
    // one at 500, which finds none empty and takes the locked path.
    let log = Log::default();
    let l2 = log.clone();
    let added = Arc::new(std::sync::Mutex::new(None));
    let a2 = added.clone();
    m.add(
        job(move |ctx| {
            let mm = manager_of(ctx);
            let before = mm.lane_added_for_tests();
            for p in [100, 300, 200, 400] {
                for k in 0..2 {
                    mm.add(logging(&l2, i64::from(p) + k), p, DEFAULT, &[]).unwrap();
                }
            }
            // Every level now holds a task or four of the new ones: 500
            // finds none empty.
            for p in 0..4 {
                mm.add(logging(&l2, i64::from(p)), p, DEFAULT, &[]).unwrap();
            }
            mm.add(logging(&l2, 500), 500, DEFAULT, &[]).unwrap();
            *a2.lock().unwrap() = Some((mm.lane_added_for_tests() - before, mm.lane_levels_for_tests()));
        }),
        -1,
        DEFAULT,
        &[],
    )
    .unwrap();
    collect_finals(&m, 14);
    let (to_lane, (levels, reassigned)) = added.lock().unwrap().take().expect("the task ran");
    assert_eq!(to_lane, 12, "the new priorities' tasks and the old ones' went to the lane, not 500's");
    // The lane task's own -1 took priority 0's level (the workers were
    // idle); inside it, 100-400 took those of 1-4, then 0-3 those of 5-7
    // and -1's (its task running, its level empty).
    assert_eq!(reassigned, 9);
    assert!([100, 200, 300, 400].iter().all(|p| levels.contains(p)));
    assert_eq!(log.get(), vec![500, 400, 401, 300, 301, 200, 201, 100, 101, 3, 2, 1, 0]);
    finish(m);
}
