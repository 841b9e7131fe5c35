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

#[test]
fn a_polled_burst_of_events_gives_the_event_queue_back() {
    let _s = serial();
    let m = manager(2, true);
    let n = 50_000;
    queue_events(&m, 1, n);
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
    queue_events(&m, 7, n);
    assert!(m.event_queue_capacity() >= n as usize);
    m.stop_group(g(7), false, false).unwrap();
    assert!(m.event_queue_capacity() <= 4096, "kept {} entries", m.event_queue_capacity());
    assert!(poll(&m).iter().all(|e| e.task().is_none()), "the stopped tasks' events were withdrawn");
    finish(m);
    assert_all_freed();
}

#[test]
fn a_small_queue_keeps_its_capacity() {
    let _s = serial();
    let m = manager(2, true);
    queue_events(&m, 1, 1000);
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
