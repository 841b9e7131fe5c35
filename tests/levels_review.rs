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

/// The lane's levels made per manager (`lane::LEVELS`).
const LEVELS: i32 = 8;

fn workers_off_the_lane(m: &Manager) {
    wait_until("the workers to leave their lane loop", || m.workers_in_lane_for_tests() == 0);
}

/// Runs one task of each priority in `prios` (making their levels) and
/// waits for them and for the workers to leave the lane.
fn use_priorities(m: &Arc<Manager>, prios: impl Iterator<Item = i32>) {
    let mut n = 0;
    for p in prios {
        m.add(nop(), p, DEFAULT, &[]).unwrap();
        n += 1;
    }
    collect_finals(m, n);
    workers_off_the_lane(m);
}

/// A task on the locked path that blocks the (only) worker until the gate
/// opens, outside its lane loop (added while paused).
fn occupy_off_the_lane(m: &Arc<Manager>, priority: i32) -> Gate {
    let gate = Gate::new();
    let gc = gate.clone();
    m.pause_processing().unwrap();
    m.add(job(move |_| gc.pass()), priority, DEFAULT, &[]).unwrap();
    m.start_processing().unwrap();
    gate.wait_arrivals(1);
    assert_eq!(m.workers_in_lane_for_tests(), 0);
    gate
}

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
    use_priorities(&m, 0..LEVELS);
    let gate = occupy_off_the_lane(&m, 0);
    let mut ids = Vec::new();
    for p in 0..LEVELS {
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
            m.set_task_hooks(Some(TaskHooks { on_start: None, on_end: None, data: btm::engine::Owned::new(std::ptr::null_mut(), None) }));
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
    assert_eq!(levels.len(), LEVELS as usize);
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
