//! Memory that a burst makes btm allocate is given back once the burst is
//! over, rather than kept for the manager's life.

mod common;

use common::*;

/// Tasks that ran and whose outcomes the manager applied as queued events
/// (a stats call applies the workers' outcomes, as a fan-in's add does).
fn queue_events(m: &std::sync::Arc<btm::engine::Manager>, group: u64, n: u64) {
    for _ in 0..n {
        m.add(nop(), 0, g(group), &[]).unwrap();
    }
    wait_until("every task finished and queued as an event", || m.stats().undelivered == n);
}

/// As `queue_events`, with every final event an entry of the event queue
/// of its own: the queue keeps a run of consecutive ids as one entry, so
/// the tasks are added paused, alternately at priorities 1 and 0, and run
/// all the even ids first, then all the odd ones.
fn queue_separate_events(m: &std::sync::Arc<btm::engine::Manager>, group: u64, n: u64) {
    m.pause_processing().unwrap();
    for i in 0..n {
        m.add(nop(), (i % 2 == 0) as i32, g(group), &[]).unwrap();
    }
    m.start_processing().unwrap();
    wait_until("every task finished and queued as an event", || m.stats().undelivered == n);
}

#[test]
fn a_polled_burst_of_events_gives_the_event_queue_back() {
    let _s = serial();
    let m = manager(2, true);
    let n = 50_000;
    queue_separate_events(&m, 1, n);
    assert!(m.event_queue_capacity() >= n as usize, "the events were queued: {}", m.event_queue_capacity());
    let evs = collect_finals(&m, n as usize);
    assert_eq!(finals(&evs).len(), n as usize);
    assert!(m.event_queue_capacity() <= 4096, "kept {} entries", m.event_queue_capacity());
    finish(m);
    assert_all_freed();
}

#[test]
fn a_stopped_burst_of_events_gives_the_event_queue_back() {
    let _s = serial();
    let m = manager(2, true);
    let n = 50_000;
    queue_separate_events(&m, 7, n);
    assert!(m.event_queue_capacity() >= n as usize);
    m.stop_group(g(7), false, false).unwrap();
    assert!(m.event_queue_capacity() <= 4096, "kept {} entries", m.event_queue_capacity());
    assert!(poll(&m).iter().all(|e| e.task().is_none()), "the stopped tasks' events were withdrawn");
    finish(m);
    assert_all_freed();
}

#[test]
fn final_events_of_consecutive_ids_share_queue_entries() {
    let _s = serial();
    // One worker runs the burst in id order: every final event queued
    // continues the run of the one before.
    let m = manager(1, true);
    let n = 50_000;
    queue_events(&m, 1, n);
    assert!(m.event_queue_capacity() < 64, "{} entries for one run of ids", m.event_queue_capacity());
    let evs = collect_finals(&m, n as usize);
    let ids = finals(&evs);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "delivered in id order");
    assert_eq!(ids.len(), n as usize);
    finish(m);
    assert_all_freed();
}

#[test]
fn a_small_queue_keeps_its_capacity() {
    let _s = serial();
    let m = manager(2, true);
    queue_separate_events(&m, 1, 1000);
    let cap = m.event_queue_capacity();
    assert!(cap >= 1000);
    collect_finals(&m, 1000);
    assert_eq!(m.event_queue_capacity(), cap, "a queue within the kept size is reused");
    finish(m);
    assert_all_freed();
}

#[test]
fn a_polled_burst_of_tasks_gives_the_task_table_back() {
    let _s = serial();
    let m = manager(2, true);
    // 49 chunks of 4,096 records: three batches of 16 given back while
    // the burst is polled, the rest once the table is empty.
    let n = 200_000;
    for _ in 0..n {
        m.add(nop(), 0, g(1), &[]).unwrap();
    }
    let held = m.table_chunks_held();
    assert!(held >= 48, "the burst's records fill {held} chunks");
    let evs = collect_finals(&m, n);
    assert_eq!(finals(&evs).len(), n);
    // Idle workers unmap what the polls emptied; the table keeps its
    // current chunk (not all of its ids issued yet) and two spares.
    wait_until("the task table's chunks given back", || m.table_chunks_held() <= 3);
    finish(m);
}

/// A burst of `n` tasks that finished, then both workers held in a task
/// each (group 2) while the burst is polled.
fn poll_burst_while_workers_are_busy(n: usize) -> (std::sync::Arc<btm::engine::Manager>, Gate) {
    let m = manager(2, true);
    queue_events(&m, 1, n as u64);
    let gate = Gate::new();
    for _ in 0..2 {
        let gate = gate.clone();
        m.add(job(move |_| gate.pass()), 0, g(2), &[]).unwrap();
    }
    gate.wait_arrivals(2);
    let mut got = 0;
    while got < n {
        got += finals(&poll_n(&m, 4096)).len();
    }
    (m, gate)
}

#[test]
fn memory_a_poll_frees_while_every_worker_is_busy_is_given_back_by_the_poll() {
    let _s = serial();
    let (m, gate) = poll_burst_while_workers_are_busy(200_000);
    // No worker is idle: the polls gave the chunks back themselves. Left:
    // the chunk holding the two running tasks, two spares, and fewer than
    // a batch (16) of emptied chunks, given back once the table is empty.
    let held = m.table_chunks_held();
    assert!(held <= 18, "{held} chunks still held after the polls");
    gate.open();
    collect_finals(&m, 2);
    wait_until("the rest given back once the table is empty", || m.table_chunks_held() <= 3);
    finish(m);
}

#[test]
fn a_shut_down_right_after_a_burst_was_polled_frees_everything() {
    let _s = serial();
    let (m, gate) = poll_burst_while_workers_are_busy(200_000);
    gate.open();
    m.shut_down(Some(TIMEOUT)).expect("shut down in time");
    drop(m);
    assert_all_freed();
}

#[test]
fn a_large_group_ends_with_its_event_after_its_last_task_and_can_be_reused() {
    let _s = serial();
    let m = manager(2, true);
    // 100,000 members: a 400 KB member list, freed off the polling thread.
    let n = 100_000;
    for _ in 0..n {
        m.add(nop(), 0, g(9), &[]).unwrap();
    }
    let mut evs = Vec::new();
    while !evs.iter().any(|e: &Ev| matches!(e, Ev::GroupFinished { .. })) {
        evs.extend(poll_n(&m, 4096));
    }
    assert_eq!(finals(&evs).len(), n);
    assert!(matches!(evs.last(), Some(Ev::GroupFinished { .. })), "the group's event comes after its last task's");
    m.add(nop(), 0, g(9), &[]).unwrap();
    let evs = collect_finals(&m, 1);
    assert_eq!(finals(&evs).len(), 1);
    assert!(evs.iter().any(|e| matches!(e, Ev::GroupFinished { .. })), "the group finishes again");
    finish(m);
}

#[test]
fn memory_waiting_for_an_idle_worker_is_capped_and_the_poll_gives_back_the_rest() {
    let _s = serial();
    let m = manager(2, true);
    // Idle workers leave what the polls hand them: it waits, up to the cap
    // (32 MiB: 256 chunks of 128 KiB), and the polls give back the rest.
    m.hold_idle_release_for_tests(true);
    // 318 chunks of records (40 MiB), more than the cap.
    let n = 1_300_000;
    queue_events(&m, 1, n);
    let evs = collect_finals(&m, n as usize);
    assert_eq!(finals(&evs).len(), n as usize);
    let held = m.table_chunks_held();
    // The current chunk and two spares, and what waits for a worker.
    assert!(held >= 3 + 128, "only {held} chunks held: the memory did not wait for an idle worker");
    assert!(held <= 3 + 256, "{held} chunks held: more than the cap waits for an idle worker");
    m.hold_idle_release_for_tests(false);
    wait_until("the waiting chunks given back by a worker", || m.table_chunks_held() <= 3);
    finish(m);
    assert_all_freed();
}

#[test]
fn the_adds_that_follow_members_leaving_compact_the_groups_member_list() {
    // A group's member list keeps the ids of members that left until an
    // add finds more than twice the live members plus 64 in it; a stop of
    // the group walks the list, so it must not keep a burst long gone.
    // Independent tasks of one group added one after the other take the
    // lane's own add path (session 21), which must compact as the general
    // one does; checked for the default group and a numbered one.
    let _s = serial();
    let m = manager(2, true);
    for group in [DEFAULT, g(7)] {
        let n = 10_000;
        let gate = Gate::new();
        let gc = gate.clone();
        // One member stays live throughout (group 7 would end with its
        // last member, and its list with it).
        let held = m.add(job(move |_| gc.pass()), 0, group, &[]).unwrap();
        gate.wait_arrivals(1);
        for _ in 0..n {
            m.add(nop(), 0, group, &[]).unwrap();
        }
        let evs = collect_finals(&m, n);
        assert_eq!(finals(&evs).len(), n);
        assert!(m.group_member_ids(group).unwrap() > n, "the members that left are still listed");
        let next = m.add(nop(), 0, group, &[]).unwrap();
        let listed = m.group_member_ids(group).unwrap();
        assert!(listed <= 2 + 64, "{listed} ids listed for 2 or 3 live members of {group:?}");
        gate.open();
        let mut done = finals(&collect_finals(&m, 2));
        done.sort_unstable();
        assert_eq!(done, vec![held, next]);
    }
    finish(m);
}

#[test]
fn a_batch_that_follows_members_leaving_compacts_the_groups_member_list() {
    // As the test above, for a batch of one priority and one group, which
    // joins its group in one run (`GroupTable::join_more`): its first task
    // compacts the list, and each of its tasks is listed once.
    let _s = serial();
    let m = manager(2, true);
    let group = g(9);
    let n = 10_000;
    let gate = Gate::new();
    let gc = gate.clone();
    let held = m.add(job(move |_| gc.pass()), 0, group, &[]).unwrap();
    gate.wait_arrivals(1);
    let tasks = |k: usize| -> Vec<btm::engine::NewTask<'static>> {
        (0..k).map(|_| btm::engine::NewTask { job: nop(), priority: 0, group, upstream: &[] }).collect()
    };
    assert_eq!(m.add_many(tasks(n)).unwrap().len(), n);
    assert_eq!(finals(&collect_finals(&m, n)).len(), n);
    assert_eq!(m.group_member_ids(group), Some(n + 1), "the members that left are still listed");
    let k = 1_000;
    let mut ids = m.add_many(tasks(k)).unwrap();
    assert_eq!(m.group_member_ids(group), Some(k + 1), "only the held task and the batch listed");
    gate.open();
    let mut done = finals(&collect_finals(&m, k + 1));
    done.sort_unstable();
    ids.push(held);
    ids.sort_unstable();
    assert_eq!(done, ids);
    finish(m);
}
