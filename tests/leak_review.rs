//! Memory that must not grow with the number of operations a long-running
//! host makes (a desktop app or game running for days): what a stop or a
//! priority change leaves behind must be given back, not only once the
//! workers or the queue come back to it.
//!
//! Each test makes the same batch of operations in cycles and compares the
//! process's resident memory after cycle `WARM` and after the last: the
//! bound is a fraction of the growth before the fix, so that it cannot
//! flake (allocator noise is a few hundred KiB).

mod common;

use common::*;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    s.split_whitespace().nth(1).expect("resident").parse::<u64>().expect("a number") * 4
}

const WARM: usize = 10;
const CYCLES: usize = 40;

/// Runs `cycle` `CYCLES` times and returns the resident growth (KiB) from
/// the end of cycle `WARM` to the end of the last.
fn growth_kib(what: &str, mut cycle: impl FnMut()) -> u64 {
    let mut warm = 0;
    let mut last = 0;
    for c in 1..=CYCLES {
        cycle();
        last = rss_kib();
        if c == WARM {
            warm = last;
        }
    }
    eprintln!("{what}: RSS {warm} KiB after cycle {WARM}, {last} KiB after cycle {CYCLES}");
    last.saturating_sub(warm)
}

#[test]
fn tasks_added_and_stopped_while_every_worker_is_busy_leave_nothing_in_the_lane() {
    // A host whose workers are all inside long tasks (a bake, an export)
    // while its UI adds tasks and cancels them (thumbnails scrolled past).
    // Each cancelled lane entry stayed in its level's overflow (40 bytes)
    // until a worker came back and passed over it: 4M cancels kept
    // 160 MB, and the memory stayed until as many new entries went
    // through the ring.
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, g(1));
    let per_cycle = 100_000;
    let grown = growth_kib("lane add+stop behind a busy worker", || {
        for _ in 0..per_cycle {
            let id = m.add(nop(), 0, DEFAULT, &[]).unwrap();
            assert_eq!(m.stop_task(id, false, false).unwrap().before_start, 1);
        }
    });
    gate.open();
    collect_finals(&m, 1);
    finish(m);
    assert_all_freed();
    // Before the fix: 30 cycles x 100,000 x 40 bytes = ~117,000 KiB.
    assert!(grown < 16 * 1024, "{grown} KiB more after {} more cycles of adds and stops", CYCLES - WARM);
}

#[test]
fn tasks_added_and_stopped_behind_a_queued_task_leave_nothing_in_the_ready_queue() {
    // A paused manager (a game that pauses background work during play)
    // with a task queued, and a host that adds tasks of that priority and
    // stops them: each stopped task left a stale entry (4 bytes) in the
    // ready queue's level, dropped only once the level empties.
    let _s = serial();
    let m = manager(1, false);
    let kept = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    let per_cycle = 250_000;
    let grown = growth_kib("add+stop behind a queued task, paused", || {
        for _ in 0..per_cycle {
            let id = m.add(nop(), 0, DEFAULT, &[]).unwrap();
            assert_eq!(m.stop_task(id, false, false).unwrap().before_start, 1);
        }
    });
    m.start_processing().unwrap();
    assert_eq!(finals(&collect_finals(&m, 1)), vec![kept]);
    finish(m);
    assert_all_freed();
    // Before the fix: 30 cycles x 250,000 x 4 bytes = ~29,300 KiB (more
    // as the level's buffer doubles).
    assert!(grown < 8 * 1024, "{grown} KiB more after {} more cycles of adds and stops", CYCLES - WARM);
}

#[test]
fn priority_changes_of_a_queued_task_leave_nothing_in_the_ready_queue() {
    // A host that raises the priority of what is on screen and lowers it
    // again, every frame, while another task of the lower priority stays
    // queued: each move back left a stale entry in that level.
    let _s = serial();
    let m = manager(1, false);
    let kept = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    let moved = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    let per_cycle = 250_000;
    let mut i = 0u64;
    let grown = growth_kib("priority changes behind a queued task, paused", || {
        for _ in 0..per_cycle {
            i += 1;
            m.set_priority(moved, (i % 2) as i32).unwrap();
        }
    });
    m.start_processing().unwrap();
    let mut done = finals(&collect_finals(&m, 2));
    done.sort_unstable();
    assert_eq!(done, vec![kept, moved]);
    finish(m);
    assert_all_freed();
    // Before the fix: 30 cycles x 250,000 x 4 bytes = ~29,300 KiB (more
    // as the level's buffer doubles).
    assert!(grown < 8 * 1024, "{grown} KiB more after {} more cycles of priority changes", CYCLES - WARM);
}

#[test]
fn compacted_ready_levels_keep_priority_then_id_order() {
    // The fix for the two tests above compacts a ready level once its
    // stale entries outnumber its valid ones (twice, plus 64): queued
    // tasks at a few priorities, many stopped or moved between them while
    // paused, must still run exactly once each, by priority then id.
    let _s = serial();
    let mut rng = Rng(0x5eed_1eaf);
    for round in 0..20 {
        let m = manager(1, false);
        let log = Log::default();
        let mut live: Vec<(u64, i32)> = Vec::new();
        for op in 0..5_000 {
            match rng.below(10) {
                0..=4 => {
                    let priority = rng.below(3) as i32;
                    let log = log.clone();
                    let id = m.add(job(move |ctx| log.push(ctx.task_id() as i64)), priority, DEFAULT, &[]).unwrap();
                    live.push((id, priority));
                }
                5..=7 if !live.is_empty() => {
                    let (id, _) = live.swap_remove(rng.below(live.len() as u64) as usize);
                    assert_eq!(m.stop_task(id, false, false).unwrap().before_start, 1, "round {round} op {op}");
                }
                _ if !live.is_empty() => {
                    let i = rng.below(live.len() as u64) as usize;
                    let priority = rng.below(3) as i32;
                    m.set_priority(live[i].0, priority).unwrap();
                    live[i].1 = priority;
                }
                _ => {}
            }
        }
        m.start_processing().unwrap();
        let done = finals(&collect_finals(&m, live.len()));
        assert_eq!(done.len(), live.len());
        live.sort_by_key(|&(id, p)| (std::cmp::Reverse(p), id));
        let want: Vec<i64> = live.iter().map(|&(id, _)| id as i64).collect();
        assert_eq!(log.get(), want, "round {round}: run by priority then id");
        finish(m);
    }
    assert_all_freed();
}

#[test]
fn trimmed_and_compacted_lane_overflows_keep_every_remaining_task_in_order() {
    // The fix for the lane tests drops the cancelled entries that end a
    // level's overflow (the next adds take their positions) and compacts
    // the overflow once cancelled entries are most of it (the live ones
    // move up, and their task records with them). Tasks stopped in random
    // order (the newest one time in four) behind a full ring, with adds in
    // between, must leave every other task to run exactly once, in id
    // order (one worker, one priority), and stops and priority changes of
    // moved entries must still find them.
    let _s = serial();
    let mut rng = Rng(0x0e7f_1047);
    for round in 0..4 {
        let m = manager(1, true);
        let gate = occupy_a_worker(&m, g(1));
        let log = Log::default();
        let mut live: Vec<u64> = Vec::new();
        for op in 0..150_000 {
            if (op < 60_000 && live.len() < 60_000) || rng.below(4) == 0 {
                let log = log.clone();
                live.push(m.add(job(move |ctx| log.push(ctx.task_id() as i64)), 0, DEFAULT, &[]).unwrap());
            } else if !live.is_empty() {
                let i = if rng.below(4) == 0 { live.len() - 1 } else { rng.below(live.len() as u64) as usize };
                let id = live.remove(i);
                assert_eq!(m.stop_task(id, false, false).unwrap().before_start, 1, "round {round} op {op}");
            }
        }
        // A priority change of a queued lane task takes it out of the lane
        // (to the locked path) wherever its entry moved: the same priority
        // keeps its order.
        for _ in 0..100.min(live.len()) {
            let id = live[rng.below(live.len() as u64) as usize];
            m.set_priority(id, 0).unwrap();
        }
        gate.open();
        let done = finals(&collect_finals(&m, live.len() + 1));
        assert_eq!(done.len(), live.len() + 1);
        let want: Vec<i64> = live.iter().map(|&id| id as i64).collect();
        assert_eq!(log.get(), want, "round {round}: each remaining task once, in id order");
        finish(m);
    }
    assert_all_freed();
}

#[test]
fn a_polled_burst_of_progress_events_gives_its_memory_back() {
    // A frame hitch, a modal dialog, a host that polls only every few
    // seconds: many tasks report progress before the host polls. Each
    // task with an undelivered progress event has an entry in a map
    // (`State::progress`), which kept its largest size for the manager's
    // life once the events were polled: 500,000 tasks, ~45-85 MB.
    let _s = serial();
    let m = manager(2, true);
    let before = rss_kib();
    let n = 500_000;
    for _ in 0..n {
        m.add(job(|ctx| assert!(ctx.report_progress(0.5, None))), 0, DEFAULT, &[]).unwrap();
    }
    wait_until("every task ran", || {
        let s = m.stats();
        s.queued == 0 && s.running == 0
    });
    let peak = rss_kib();
    // Counted as they come, not kept (a million `Ev`s would be ~64 MB).
    let (mut progress, mut finals) = (0, 0);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while finals < n {
        assert!(std::time::Instant::now() < deadline, "{finals} of {n} final events after {TIMEOUT:?}");
        m.poll(4096, |e| match e.kind {
            btm::engine::EventKind::Progress => progress += 1,
            btm::engine::EventKind::Completed => finals += 1,
            _ => {}
        });
    }
    assert_eq!(progress, n);
    poll(&m);
    wait_until("the task table's chunks given back", || m.table_chunks_held() <= 3);
    let after = rss_kib();
    eprintln!("progress burst: RSS {before} KiB before, {peak} KiB at its peak, {after} KiB once polled");
    // The same burst without progress reports keeps ~6-12 MB (allocator
    // heap the events and task records left); the map alone was ~40 MB.
    finish(m);
    assert_all_freed();
    assert!(after.saturating_sub(before) < 24 * 1024, "{} KiB kept after the burst was polled", after - before);
}

#[test]
fn a_sliding_window_of_tasks_behind_busy_workers_leaves_nothing_in_the_lane() {
    // As the first test, but the host keeps its 100 newest tasks and stops
    // the oldest (a list scrolled past): the overflow's last entry is
    // always live, so the cancelled ones before it stay, 40 bytes each,
    // until the workers come back.
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, g(1));
    let mut window = std::collections::VecDeque::new();
    let per_cycle = 100_000;
    let grown = growth_kib("a sliding window of lane tasks behind a busy worker", || {
        for _ in 0..per_cycle {
            window.push_back(m.add(nop(), 0, DEFAULT, &[]).unwrap());
            if window.len() > 100 {
                let oldest = window.pop_front().unwrap();
                assert_eq!(m.stop_task(oldest, false, false).unwrap().before_start, 1);
            }
        }
    });
    gate.open();
    collect_finals(&m, window.len() + 1);
    finish(m);
    assert_all_freed();
    assert!(grown < 16 * 1024, "{grown} KiB more after {} more cycles of adds and stops", CYCLES - WARM);
}

#[test]
fn a_lane_drained_by_task_hooks_behind_a_busy_worker_leaves_nothing_in_its_overflow() {
    // Task hooks (a profiler switched on and off) close the lane and move
    // its queued tasks to the locked path. The drain left each overflow
    // entry as a cancelled one, uncounted by the compaction, and with the
    // only worker busy nothing passed over them: every cycle's backlog
    // stayed (40 bytes a task) under the next one's.
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, g(1));
    // The ring fills with the first cycle's entries (cancelled by its
    // drain; the busy worker never passes over them), so every later add
    // goes to the overflow.
    let per_cycle = 50_000;
    let grown = growth_kib("lane backlog drained by task hooks behind a busy worker", || {
        for _ in 0..per_cycle {
            m.add(nop(), 0, g(2), &[]).unwrap();
        }
        m.set_task_hooks(Some(btm::engine::TaskHooks {
            on_start: None,
            on_end: None,
            data: btm::engine::Owned::new(std::ptr::null_mut(), None),
        }));
        m.set_task_hooks(None);
        assert_eq!(m.stop_group(g(2), false, false).unwrap().before_start, per_cycle as u64);
    });
    gate.open();
    collect_finals(&m, 1);
    finish(m);
    assert_all_freed();
    // Without the trim: 30 cycles x 50,000 x 40 bytes = ~58,000 KiB.
    assert!(grown < 16 * 1024, "{grown} KiB more after {} more cycles of drained backlogs", CYCLES - WARM);
}
