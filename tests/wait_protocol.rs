//! The wake-up protocol under random mixes: lane tasks, chains, two-upstream
//! tasks, failures, priorities and groups on 1-3 workers, while hosts wait
//! in every way a host can (the event descriptor with polls of 1-3 events,
//! `wait_events` with a second thread in `wait_idle`, a notify callback),
//! and outcomes are left for the poll when only an event is wanted
//! (`State::apply_lane_for_waiters`). A lost wake-up fails a wait's
//! timeout. Written by the session-26 review of that change; `ROUNDS=N`
//! runs more rounds (3,000 of each passed then).
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use btm::engine::Manager;
use common::*;

/// Rounds per scenario: `ROUNDS` from the environment, else 100.
fn rounds() -> u64 {
    std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100)
}

fn spin_job(us: u64) -> btm::engine::Job {
    job(move |_| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(us) {
            std::hint::spin_loop();
        }
    })
}

/// Adds a random mix; returns how many tasks were added.
fn add_mix(m: &Arc<Manager>, rng: &mut Rng, n: usize) -> usize {
    let mut ids: Vec<u64> = Vec::new();
    let mut added = 0;
    for _ in 0..n {
        let k = rng.below(10);
        let prio = (rng.below(3)) as i32;
        let grp = g(1 + rng.below(3));
        let id = match k {
            0..=3 => m.add(spin_job(rng.below(30)), prio, grp, &[]).unwrap(),
            4 | 5 if !ids.is_empty() => {
                // a chain link (continuation or linked)
                let u = ids[ids.len() - 1 - rng.below(ids.len().min(3) as u64) as usize];
                m.add(spin_job(rng.below(30)), prio, grp, &[u]).unwrap()
            }
            6 if ids.len() >= 2 => {
                let a = ids[rng.below(ids.len() as u64) as usize];
                let b = ids[rng.below(ids.len() as u64) as usize];
                let ups: Vec<u64> = if a == b { vec![a] } else { vec![a, b] };
                m.add(spin_job(rng.below(30)), prio, grp, &ups).unwrap()
            }
            7 => m.add(failing("x", "y"), prio, grp, &[]).unwrap(),
            _ => m.add(nop(), prio, grp, &[]).unwrap(),
        };
        ids.push(id);
        added += 1;
        if rng.below(8) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(200)));
        }
    }
    added
}

#[test]
fn fd_host_small_polls_and_idle_waits() {
    let _s = serial();
    for round in 0..rounds() {
        let mut rng = Rng(0x9e3779b97f4a7c15 ^ (round + 1).wrapping_mul(0x2545F4914F6CDD1D));
        let m = manager(1 + (round % 3) as usize, true);
        let fd = m.event_fd().unwrap();
        let total = add_mix(&m, &mut rng, 200);
        let mut got = 0usize;
        while got < total {
            match rng.below(6) {
                0 => assert_eq!(m.wait_idle(Some(Duration::from_secs(10))), Ok(()), "round {round}: wait_idle"),
                1 => assert_eq!(
                    m.wait_events(Some(Duration::from_secs(10))),
                    Ok(()),
                    "round {round}: wait_events, {got}/{total}"
                ),
                _ => assert!(wait_readable(fd, 10_000), "round {round}: fd not readable with {got}/{total} delivered"),
            }
            let evs = poll_n(&m, 1 + rng.below(3) as usize);
            got += finals(&evs).len();
        }
        assert_eq!(m.wait_idle(Some(Duration::from_secs(10))), Ok(()));
        let rest = poll(&m);
        assert_eq!(finals(&rest).len(), 0, "round {round}: extra finals");
        finish(m);
    }
}

#[test]
fn wait_events_host_with_concurrent_idle_waiter() {
    let _s = serial();
    for round in 0..rounds() {
        let mut rng = Rng(0x1234567 ^ (round + 7).wrapping_mul(0x2545F4914F6CDD1D));
        let m = manager(1 + (round % 3) as usize, true);
        let total = add_mix(&m, &mut rng, 200);
        let m2 = Arc::clone(&m);
        let idle = std::thread::spawn(move || m2.wait_idle(Some(Duration::from_secs(10))));
        let mut got = 0usize;
        while got < total {
            assert_eq!(m.wait_events(Some(Duration::from_secs(10))), Ok(()), "round {round}: {got}/{total}");
            let evs = poll_n(&m, 1 + rng.below(2) as usize);
            got += finals(&evs).len();
        }
        assert_eq!(idle.join().unwrap(), Ok(()), "round {round}: idle waiter");
        finish(m);
    }
}

static NOTIFIED: AtomicUsize = AtomicUsize::new(0);
extern "C" fn on_notify(_: *mut std::ffi::c_void) {
    NOTIFIED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn notify_host_polling_until_empty() {
    let _s = serial();
    for round in 0..rounds() {
        let mut rng = Rng(0xabcdef ^ (round + 3).wrapping_mul(0x2545F4914F6CDD1D));
        let m = manager(1 + (round % 3) as usize, true);
        m.set_notify(Some(btm::engine::Notify {
            func: on_notify,
            data: btm::engine::Owned::new(std::ptr::null_mut(), None),
        }));
        let total = add_mix(&m, &mut rng, 200);
        let mut got = 0usize;
        let mut seen = 0usize;
        while got < total {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let now = NOTIFIED.load(Ordering::SeqCst);
                if now != seen {
                    seen = now;
                    break;
                }
                assert!(Instant::now() < deadline, "round {round}: no notify with {got}/{total}");
                std::thread::sleep(Duration::from_micros(50));
            }
            loop {
                let evs = poll_n(&m, 1 + rng.below(3) as usize);
                if evs.is_empty() {
                    break;
                }
                got += finals(&evs).len();
            }
            if rng.below(10) == 0 {
                assert_eq!(m.wait_idle(Some(Duration::from_secs(10))), Ok(()), "round {round}: wait_idle");
            }
        }
        m.set_notify(None);
        finish(m);
    }
}
