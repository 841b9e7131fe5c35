//! Review finding 1: a lane entry that a worker gives back to the locked
//! path (`Take::GiveBack`: it popped the entry, then saw an older or better
//! task on the locked path) is, between the worker's cancel of its slot and
//! the worker's lock section (`State::give_back`), neither queued in the lane
//! nor on the locked path nor running. Host calls landing in that window
//! treat the task as running:
//! - `stop_task` reports it `while_running` though it never runs, and its
//!   userdata is freed later on the worker, not on the thread that stopped
//!   it (btm.h: "Free functions of tasks that never ran run on the calling
//!   thread");
//! - `set_priority` returns `NotQueued` ("running or finished") for a task
//!   that has not started, and the change is lost.
//!
//! One worker alternates between locked tasks (released by a root task,
//! older than the lane's newest entry) and lane entries of the same
//! priority, so it gives back about every other lane entry it pops; a host
//! stops or re-prioritises the lane entry just ahead of it while another
//! host thread keeps the state lock busy (which widens the window).
//! Environment: `BTM_GIVE_BACK_ROUNDS` (default 20, ~2 s).
mod common;

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use btm::engine::{Error, Job, Owned, TaskContext};
use common::*;

static CLOCK: AtomicU64 = AtomicU64::new(1);

struct Ud {
    t: Arc<T>,
    last: Arc<AtomicU64>,
}

#[derive(Default)]
struct T {
    start: AtomicU64,
    freed_on_worker: AtomicBool,
}

unsafe extern "C" fn run(p: *mut c_void, ctx: *mut TaskContext) {
    let ud = unsafe { &*(p as *const Ud) };
    ud.t.start.store(CLOCK.fetch_add(1, SeqCst), SeqCst);
    ud.last.store(unsafe { &*ctx }.task_id(), SeqCst);
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(10) {
        std::hint::spin_loop();
    }
}

unsafe extern "C" fn free_ud(p: *mut c_void) {
    let ud = unsafe { Box::from_raw(p as *mut Ud) };
    if std::thread::current().name().is_some_and(|n| n.starts_with("btm-worker")) {
        ud.t.freed_on_worker.store(true, SeqCst);
    }
}

fn task(last: &Arc<AtomicU64>) -> (Job, Arc<T>) {
    let t = Arc::new(T::default());
    let ud = Box::new(Ud { t: t.clone(), last: last.clone() });
    (Job::task(run, Owned::new(Box::into_raw(ud).cast(), Some(free_ud))), t)
}

#[test]
fn a_lane_task_being_given_back_is_stopped_before_start_and_can_change_priority() {
    let _s = serial();
    let rounds: u64 = std::env::var("BTM_GIVE_BACK_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let (mut bad_stops, mut worker_frees, mut bad_prio, mut stops_before, mut prio_ok) = (0, 0, 0, 0, 0);
    for round in 0..rounds {
        let m = manager(1, true);
        let last = Arc::new(AtomicU64::new(0));
        let gate = Gate::new();
        let gc = gate.clone();
        let root = m.add(job(move |_| gc.pass()), 0, DEFAULT, &[]).unwrap();
        gate.wait_arrivals(1);
        let n = 400;
        let mut lane_ids = Vec::new();
        let mut ts: HashMap<u64, Arc<T>> = HashMap::new();
        for _ in 0..n {
            let (j, t) = task(&last);
            ts.insert(m.add(j, 0, DEFAULT, &[root]).unwrap(), t);
            let (j, t) = task(&last);
            let id = m.add(j, 0, DEFAULT, &[]).unwrap();
            ts.insert(id, t);
            lane_ids.push(id);
        }
        let spam_stop = Arc::new(AtomicBool::new(false));
        let spam = {
            let (m, stop) = (m.clone(), spam_stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let _ = m.stats();
                }
            })
        };
        gate.open();
        let mut stopped = Vec::new();
        let mut not_queued = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut k = 0;
        let mut rng = Rng(round + 1);
        let mut op = 0u64;
        while k < lane_ids.len() && Instant::now() < deadline {
            let cur = last.load(SeqCst);
            while k < lane_ids.len() && lane_ids[k] <= cur {
                k += 1;
            }
            let Some(&target) = lane_ids.get(k) else { break };
            // Just behind the worker's pop of the next entry.
            let t = Instant::now();
            let wait = Duration::from_nanos(rng.below(4000));
            while t.elapsed() < wait {
                std::hint::spin_loop();
            }
            op += 1;
            if op % 3 == 2 {
                match m.set_priority(target, 0) {
                    Err(Error::NotQueued) => not_queued.push((target, CLOCK.fetch_add(1, SeqCst))),
                    Ok(()) => prio_ok += 1,
                    Err(_) => {}
                }
            } else if let Ok(r) = m.stop_task(target, false, false) {
                stopped.push((target, r));
            }
            // Wait for the worker to move on.
            let t = Instant::now();
            while last.load(SeqCst) == cur && t.elapsed() < Duration::from_millis(5) {
                std::hint::spin_loop();
            }
            if last.load(SeqCst) == cur {
                k += 1; // the worker is done with what is left before it
            }
        }
        spam_stop.store(true, SeqCst);
        spam.join().unwrap();
        m.wait_idle(Some(TIMEOUT)).unwrap();
        let _ = drain(&m);
        m.shut_down(Some(TIMEOUT)).unwrap();
        drop(m);
        for (id, r) in &stopped {
            let t = &ts[id];
            let ran = t.start.load(SeqCst) != 0;
            if r.while_running == 1 && !ran {
                bad_stops += 1;
                if bad_stops <= 3 {
                    eprintln!("round {round}: stop of queued task {id} reported {r:?}; the task never ran");
                }
            }
            stops_before += r.before_start;
            if !ran && t.freed_on_worker.load(SeqCst) {
                worker_frees += 1;
            }
        }
        // One worker: a task that another task's start follows (after the
        // call returned) was not running when `set_priority` said so.
        let starts: Vec<u64> = ts.values().map(|t| t.start.load(SeqCst)).filter(|&s| s != 0).collect();
        for (id, returned) in &not_queued {
            let s = ts[id].start.load(SeqCst);
            if s > *returned && starts.iter().any(|&o| o > *returned && o < s) {
                bad_prio += 1;
                if bad_prio <= 3 {
                    eprintln!(
                        "round {round}: set_priority({id}) returned NotQueued; the task started later, after another"
                    );
                }
            }
        }
    }
    eprintln!(
        "{rounds} rounds: {stops_before} stops before start, {prio_ok} priority changes; stops reporting a \
         never-run task as running: {bad_stops} (its userdata freed on a worker: {worker_frees}); \
         NotQueued for a queued task: {bad_prio}"
    );
    assert_eq!((bad_stops, worker_frees, bad_prio), (0, 0, 0), "tasks in a give-back seen as running");
    assert_all_freed();
}
