//! Fan-ins over marked lane entries (session 29, `lane::LINKED`; written by
//! a review of that change): the fan-in must become ready without the
//! host's poll on every way a marked task leaves the lane (claim, a second
//! fan-in, a priority change, a pause, hooks, a chain link on top, a stop,
//! a batch with `IN_BATCH` fan-ins), with marks racing the workers' claims,
//! and over ring and overflow entries at once; the (counted, marked) pair
//! returns to (0, 0).
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use btm::engine::{NewTask, Owned, TaskHooks, IN_BATCH};
use common::*;

fn signalling(tx: &mpsc::Sender<u64>, tag: u64) -> btm::engine::Job {
    let tx = tx.clone();
    job(move |_| {
        let _ = tx.send(tag);
    })
}

thread_local!(
    /// Tags received while waiting for another one.
    static GOT: std::cell::RefCell<Vec<u64>> = Default::default()
);

/// Waits for `tag` on `rx` without polling the manager (nobody polls, nobody
/// waits for idleness: only the workers can make the fan-in ready).
fn expect_without_poll(rx: &mpsc::Receiver<u64>, tag: u64, what: &str) {
    if GOT.with(|g| {
        let mut g = g.borrow_mut();
        g.iter().position(|&t| t == tag).map(|i| g.remove(i)).is_some()
    }) {
        return;
    }
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(t) if t == tag => return,
            Ok(t) => GOT.with(|g| g.borrow_mut().push(t)),
            Err(_) => panic!("{what}: fan-in {tag} never ran without a poll"),
        }
    }
}

/// Every way a marked task can leave the lane, the fan-in then runs
/// without a poll.
#[test]
fn a_fan_in_over_marked_entries_runs_without_a_poll_whatever_moved_them() {
    let _s = serial();
    for mode in 0..8 {
        for threads in [1usize, 2] {
            let m = manager(threads, true);
            let gates: Vec<Gate> = (0..threads).map(|_| occupy_a_worker(&m, DEFAULT)).collect();
            GOT.with(|g| g.borrow_mut().clear());
            let (tx, rx) = mpsc::channel();
            let ups: Vec<u64> = (0..4).map(|_| m.add(nop(), 0, DEFAULT, &[]).unwrap()).collect();
            // Lower tasks behind, which must not be needed for the fan-in.
            for _ in 0..50 {
                m.add(nop(), -1, DEFAULT, &[]).unwrap();
            }
            let mut f = m.add(signalling(&tx, 1), 5, DEFAULT, &ups).unwrap();
            assert_eq!(linked(&m), (0, 4), "mode {mode}");
            match mode {
                0 => {}
                1 => {
                    // A second fan-in over the same (already marked) tasks.
                    m.stop_task(f, false, false).unwrap();
                    f = m.add(signalling(&tx, 2), 5, DEFAULT, &ups[1..]).unwrap();
                    assert_eq!(linked(&m), (0, 4));
                }
                2 => {
                    // A priority change of a marked task (to the locked path).
                    m.set_priority(ups[0], 3).unwrap();
                    assert_eq!(linked(&m), (0, 3));
                }
                3 => {
                    // A pause (the lane closes; its entries stay, marked).
                    m.pause_processing().unwrap();
                    assert_eq!(linked(&m), (0, 4));
                    m.start_processing().unwrap();
                }
                4 => {
                    // Hooks (the lane closes and drains).
                    m.set_task_hooks(Some(TaskHooks {
                        on_start: None,
                        on_end: None,
                        data: Owned::new(std::ptr::null_mut(), None),
                    }));
                    m.set_task_hooks(None);
                    assert_eq!(linked(&m), (0, 0));
                }
                5 => {
                    // A chain link and a single-upstream task onto marked tasks.
                    let _c = m.add_link(signalling(&tx, 50), 0, DEFAULT, ups[0]).unwrap();
                    let _d = m.add(signalling(&tx, 51), 0, DEFAULT, &[ups[1]]).unwrap();
                    assert_eq!(linked(&m), (0, 4));
                }
                6 => {
                    // A stop of one marked upstream (the fan-in fails:
                    // use another fan-in that does not name it).
                    m.stop_task(ups[0], false, false).unwrap();
                    let g2 = m.add(signalling(&tx, 3), 5, DEFAULT, &ups[1..]).unwrap();
                    let _ = g2;
                    assert_eq!(linked(&m), (0, 3));
                }
                _ => {
                    // A batch over the same marked tasks and new ones of two
                    // priorities (pushed unpublished, then published).
                    let b_ups = [ups[2], ups[3], IN_BATCH, IN_BATCH | 1];
                    let batch = vec![
                        NewTask { job: nop(), priority: 0, group: DEFAULT, upstream: &[] },
                        NewTask { job: nop(), priority: 2, group: DEFAULT, upstream: &[] },
                        NewTask { job: signalling(&tx, 4), priority: 6, group: DEFAULT, upstream: &b_ups },
                    ];
                    m.add_many(batch).unwrap();
                    assert_eq!(linked(&m), (0, 6));
                }
            }
            for gate in &gates {
                gate.open();
            }
            let tag = match mode {
                1 => 2,
                6 => 3,
                7 => 4,
                _ => 1,
            };
            expect_without_poll(&rx, tag, &format!("mode {mode} threads {threads}"));
            if mode == 7 {
                expect_without_poll(&rx, 1, "mode 7, first fan-in");
            }
            let _ = f;
            while rx.try_recv().is_ok() {}
            m.wait_idle(Some(TIMEOUT)).unwrap();
            assert_eq!(linked(&m), (0, 0), "mode {mode}");
            let _ = drain(&m);
            finish(m);
        }
    }
}

/// The mark races the workers' claims: a stream of tiny tasks drained by
/// 2-4 workers while the host adds fan-ins over the newest ones (queued,
/// marked, claimed, finished). Nobody polls until every fan-in ran.
#[test]
fn marks_racing_claims_keep_the_count_exact_and_fan_ins_prompt() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_FAN_IN_MARK_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let (mut max_counted, mut max_marked) = (0, 0);
    for round in 0..rounds {
        let mut rng = Rng(0xBAD5EED + round);
        let threads = 2 + (round % 3) as usize;
        let m = manager(threads, true);
        let ran = Arc::new(AtomicUsize::new(0));
        let mut ids: Vec<u64> = Vec::new();
        let mut fan_ins = 0usize;
        for op in 0..4000u64 {
            let prio = rng.below(3) as i32;
            match rng.below(10) {
                0 if ids.len() > 4 => {
                    let n = 1 + rng.below(6) as usize;
                    let ups: Vec<u64> = ids[ids.len() - n.min(ids.len())..].to_vec();
                    let r = ran.clone();
                    m.add(
                        job(move |_| {
                            r.fetch_add(1, Ordering::SeqCst);
                        }),
                        3,
                        DEFAULT,
                        &ups,
                    )
                    .unwrap();
                    fan_ins += 1;
                    let (c, k) = linked(&m);
                    max_counted = max_counted.max(c);
                    max_marked = max_marked.max(k);
                }
                1 if !ids.is_empty() && op % 7 == 0 => {
                    let v = ids[ids.len() - 1 - rng.below(ids.len().min(6) as u64) as usize];
                    let _ = m.set_priority(v, rng.below(3) as i32);
                }
                _ => {
                    let spin = rng.below(200);
                    ids.push(
                        m.add(
                            job(move |_| {
                                for _ in 0..spin {
                                    std::hint::spin_loop();
                                }
                            }),
                            prio,
                            DEFAULT,
                            &[],
                        )
                        .unwrap(),
                    );
                }
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while ran.load(Ordering::SeqCst) < fan_ins {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: {} of {fan_ins} fan-ins ran without a poll; linked {:?}",
                ran.load(Ordering::SeqCst),
                linked(&m)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        m.wait_idle(Some(TIMEOUT)).unwrap();
        assert_eq!(linked(&m), (0, 0), "round {round}");
        let s = m.stats();
        assert_eq!((s.queued, s.blocked, s.running), (0, 0, 0), "round {round}: {s:?}");
        let _ = drain(&m);
        finish(m);
    }
    eprintln!("max counted {max_counted}, max marked {max_marked}");
    assert!(max_marked > 0, "the mark exercised");
}

/// Past a full ring: overflow entries counted, ring entries marked; the
/// overflow then moves into the ring (still counted), all drain, and the
/// count returns to 0 without a poll making the fan-in ready.
#[test]
fn a_fan_in_over_ring_and_overflow_entries_runs_without_a_poll() {
    let _s = serial();
    let m = manager(1, true);
    let gate = occupy_a_worker(&m, DEFAULT);
    let (tx, rx) = mpsc::channel();
    let ids: Vec<u64> = (0..RING + 100).map(|_| m.add(nop(), 0, DEFAULT, &[]).unwrap()).collect();
    // At least half of the queued entries (so that overflow entries stay,
    // counted), in the ring and in the overflow.
    let ups: Vec<u64> = ids
        .iter()
        .copied()
        .step_by(2)
        .chain(ids[ids.len() - 3..].iter().copied())
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .collect();
    let f = m.add(signalling(&tx, 9), 5, DEFAULT, &ups).unwrap();
    let (c, k) = linked(&m);
    assert_eq!(c + k, ups.len(), "every upstream counted or marked: {:?}", (c, k));
    assert!(c > 0 && k > 0, "{:?}", (c, k));
    gate.open();
    expect_without_poll(&rx, 9, "ring and overflow");
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(linked(&m), (0, 0));
    let _ = (f, drain(&m));
    finish(m);
}
