//! Loom models of the engine's core synchronization protocol.
//!
//! These are *models*: small re-implementations of the protocol, written with
//! loom's `Mutex`, `Condvar`, atomics and threads, which loom runs under every
//! interleaving (bounded by a preemption bound). They do not run the engine's
//! code; they mirror it, and must be kept in step with it:
//!
//! 1. **Event queue, liveness and the stop-withdraws-queued-events rule**
//!    (`State::finish` / `State::fail` pushing `Ev::Final(id)` and counting
//!    `deliverable`; `State::stop_reachable` removing the task record and
//!    decrementing `deliverable` for a finished one, and `State::stop`
//!    clearing the queue when nothing is deliverable; `Manager::poll`
//!    validating each queued id against the task table, skipping stale ones,
//!    and deciding `group finished` at delivery). A worker completing a task
//!    races a host thread stopping it and another host thread polling.
//!    Checked: once `stop_task` has returned `Ok`, no poll that starts later
//!    delivers the task's event (in fact none ever does); every final event is
//!    delivered at most once; `group finished` only right after a final event
//!    of the group, never because of a stop; `deliverable` always equals the
//!    number of events a poll would really deliver.
//!
//! 2. **Worker park/unpark** (`next_job`: a worker with no work registers in
//!    `spinning`, clears the `work_hint` atomic, spins unlocked watching it,
//!    then relocks and, still finding nothing, registers in `sleeping` and
//!    waits on `work_cv`; `State::provision` under the lock counts spinning
//!    workers as coming and wakes sleeping ones, and `Manager::run_after`
//!    sets the hint and calls `notify_one` after unlocking; `finish` wakes
//!    host waiters of `wait_idle`; `shut_down` wakes every worker). Checked:
//!    no lost wake-up: every task added is run and the host's `wait_idle`
//!    and `shut_down` return (loom reports a deadlock otherwise).
//!
//! Each model has a *mutant* (a deliberately broken variant) that loom must
//! reject, so that a model that stopped checking anything would be noticed:
//! a poll that trusts the queue without validating liveness, and a worker
//! that checks for work and goes to sleep in two separate lock sections.
//!
//! These run in the normal `cargo test` (loom's types are used directly; no
//! `--cfg loom` needed), each in a few seconds at most, with a preemption
//! bound of 2 or 3; `BTM_LOOM_PREEMPTIONS=N` raises it for a deeper run.

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

/// A loom builder with the model's preemption bound, or the larger one in
/// `BTM_LOOM_PREEMPTIONS` (e.g. 3: two workers then take ~20 s here).
fn builder(preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    let extra = std::env::var("BTM_LOOM_PREEMPTIONS").ok().and_then(|v| v.parse().ok());
    b.preemption_bound = Some(extra.map_or(preemptions, |e: usize| e.max(preemptions)));
    b
}

// ---------------------------------------------------------------------------
// 1. Event queue, liveness, stop withdraws queued events
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Body {
    /// Taken by a worker (`Body::Running`).
    Running,
    /// Finished, final event queued, not yet polled (`Body::Completed`).
    Completed,
    /// Removed from the table: polled or stopped.
    Gone,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Delivered {
    Final(usize),
    GroupFinished,
}

struct Queue {
    /// Task records by id (0 and 1), both in the same group.
    tasks: [Body; 2],
    /// `State::events`: ids only, validated when polled.
    events: VecDeque<usize>,
    /// `State::deliverable`.
    deliverable: usize,
    /// The group's live count (`GroupSlot::live`).
    group_live: usize,
    /// The group's last live task ended by a stop (so it must not finish).
    emptied_by_stop: bool,
    delivered: Vec<Delivered>,
}

impl Queue {
    /// `State::finish` for a completed task.
    fn finish(&mut self, id: usize) {
        if self.tasks[id] == Body::Gone {
            return; // stopped while running: outcome dropped
        }
        self.tasks[id] = Body::Completed;
        self.events.push_back(id);
        self.deliverable += 1;
    }

    /// `State::stop_reachable` for one task; `true` if it was live.
    fn stop(&mut self, id: usize) -> bool {
        let was = std::mem::replace(&mut self.tasks[id], Body::Gone);
        match was {
            Body::Gone => return false,
            Body::Completed => self.deliverable -= 1,
            Body::Running => {}
        }
        self.group_live -= 1; // `groups.leave`, no event
        self.emptied_by_stop = self.group_live == 0;
        if self.deliverable == 0 {
            self.events.clear();
        }
        true
    }

    /// `Manager::poll` with unlimited capacity. `trust_queue` is the mutant.
    fn poll(&mut self, trust_queue: bool) -> Vec<Delivered> {
        let mut out = Vec::new();
        while let Some(id) = self.events.pop_front() {
            if !trust_queue && self.tasks[id] != Body::Completed {
                continue; // stale: the task was stopped
            }
            self.tasks[id] = Body::Gone;
            self.deliverable = self.deliverable.saturating_sub(1);
            out.push(Delivered::Final(id));
            self.group_live = self.group_live.saturating_sub(1);
            if self.group_live == 0 {
                out.push(Delivered::GroupFinished);
            }
        }
        if self.deliverable == 0 {
            self.events.clear();
        }
        self.delivered.extend(&out);
        out
    }

    fn check_deliverable(&self) {
        let real = self.events.iter().filter(|&&id| self.tasks[id] == Body::Completed).count();
        assert_eq!(self.deliverable, real, "deliverable count out of step with the queue");
    }
}

fn event_queue_model(trust_queue: bool) {
    builder(3).check(move || {
        // Task 1 already completed (its event queued); task 0 is running.
        let q = Arc::new(Mutex::new(Queue {
            tasks: [Body::Running, Body::Completed],
            events: VecDeque::from([1]),
            deliverable: 1,
            group_live: 2,
            emptied_by_stop: false,
            delivered: Vec::new(),
        }));
        // 0: not returned yet, 1: returned Ok, 2: returned NotFound.
        let stop_result = Arc::new(AtomicUsize::new(0));

        let worker = {
            let q = q.clone();
            thread::spawn(move || {
                let mut q = q.lock().unwrap();
                q.finish(0);
                q.check_deliverable();
            })
        };
        let stopper = {
            let (q, r) = (q.clone(), stop_result.clone());
            thread::spawn(move || {
                let found = {
                    let mut q = q.lock().unwrap();
                    let found = q.stop(0);
                    q.check_deliverable();
                    found
                };
                r.store(if found { 1 } else { 2 }, Ordering::SeqCst);
            })
        };
        let poller = {
            let (q, r) = (q.clone(), stop_result.clone());
            thread::spawn(move || {
                let stop_returned_ok = r.load(Ordering::SeqCst) == 1;
                let got = q.lock().unwrap().poll(trust_queue);
                if stop_returned_ok {
                    assert!(!got.contains(&Delivered::Final(0)), "event of task 0 delivered after its stop returned");
                }
            })
        };
        worker.join().unwrap();
        stopper.join().unwrap();
        poller.join().unwrap();

        let mut q = q.lock().unwrap();
        q.poll(trust_queue);
        q.check_deliverable();
        let finals0 = q.delivered.iter().filter(|d| **d == Delivered::Final(0)).count();
        let finals1 = q.delivered.iter().filter(|d| **d == Delivered::Final(1)).count();
        assert_eq!(finals1, 1, "task 1 delivered exactly once");
        match stop_result.load(Ordering::SeqCst) {
            1 => assert_eq!(finals0, 0, "a stopped task is never delivered"),
            _ => assert_eq!(finals0, 1, "an unstopped task is delivered exactly once"),
        }
        // Group finished: at most once, right after a final event; and only
        // if the group's last live task ended by delivery (not by the stop).
        let gf: Vec<usize> =
            q.delivered.iter().enumerate().filter(|(_, d)| **d == Delivered::GroupFinished).map(|(i, _)| i).collect();
        assert!(gf.len() <= 1);
        for &i in &gf {
            assert!(i > 0 && matches!(q.delivered[i - 1], Delivered::Final(_)));
            assert_eq!(i, q.delivered.len() - 1, "group finished after the group's last final event");
        }
        assert_eq!(q.group_live, 0);
        let want = usize::from(!q.emptied_by_stop);
        assert_eq!(gf.len(), want, "group finished exactly when its last task ended by a delivered event");
    });
}

#[test]
fn loom_stop_withdraws_queued_events_and_poll_validates_liveness() {
    event_queue_model(false);
}

#[test]
#[should_panic]
fn loom_mutant_poll_trusting_the_queue_is_caught() {
    event_queue_model(true);
}

// ---------------------------------------------------------------------------
// 2. Worker park/unpark: spinning, sleeping, the hint atomic
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Sched {
    /// `ReadyQueue` length.
    ready: usize,
    /// `State::running` + finished, as counts.
    running: usize,
    done: usize,
    spinning: usize,
    sleeping: usize,
    host_waiters: usize,
    shut_down: bool,
}

struct Pool {
    st: Mutex<Sched>,
    work_cv: Condvar,
    host_cv: Condvar,
    /// `Manager::work_hint`.
    hint: AtomicUsize,
    /// Mutant: check for work and go to sleep in two lock sections.
    split_sleep: AtomicBool,
}

/// Spin iterations in the model (`SPIN_ITERS` + `YIELD_ITERS` in the engine).
const SPIN: usize = 1;

/// `next_job` and the worker loop of `worker_main`.
fn worker(p: &Pool) {
    let mut st = p.st.lock().unwrap();
    let mut spun = false;
    loop {
        if st.shut_down {
            return;
        }
        if st.ready > 0 {
            // `take_next`: run it unlocked, then `finish` under the lock.
            st.ready -= 1;
            st.running += 1;
            drop(st);
            thread::yield_now(); // the task
            st = p.st.lock().unwrap();
            st.running -= 1;
            st.done += 1;
            let wake_host = st.host_waiters > 0;
            drop(st);
            if wake_host {
                p.host_cv.notify_all();
            }
            st = p.st.lock().unwrap();
            spun = false;
            continue;
        }
        if !spun {
            spun = true;
            st.spinning += 1;
            p.hint.store(0, Ordering::Relaxed);
            drop(st);
            for _ in 0..SPIN {
                if p.hint.load(Ordering::Relaxed) != 0 {
                    break;
                }
                thread::yield_now();
            }
            st = p.st.lock().unwrap();
            st.spinning -= 1;
            continue;
        }
        spun = false;
        if p.split_sleep.load(Ordering::Relaxed) {
            // MUTANT: the decision to sleep is made under one lock, the
            // sleep registered under another.
            drop(st);
            st = p.st.lock().unwrap();
        }
        st.sleeping += 1;
        st = p.work_cv.wait(st).unwrap();
        st.sleeping -= 1;
    }
}

/// `Manager::add` of a ready task: `make_ready` + `State::provision` under
/// the lock, then `run_after` (hint, wake-ups) after unlocking.
fn add(p: &Pool) {
    let (hint, wake) = {
        let mut st = p.st.lock().unwrap();
        st.ready += 1;
        let hint = st.spinning > 0;
        let mut wake = 0;
        let mut coming = st.spinning;
        while st.ready > coming && st.sleeping > wake {
            wake += 1;
            coming += 1;
        }
        (hint, wake)
    };
    if hint {
        p.hint.store(1, Ordering::Relaxed);
    }
    for _ in 0..wake {
        p.work_cv.notify_one();
    }
}

/// `Manager::wait_idle` (no timeout).
fn wait_idle(p: &Pool) {
    let mut st = p.st.lock().unwrap();
    st.host_waiters += 1;
    while st.ready + st.running > 0 {
        st = p.host_cv.wait(st).unwrap();
    }
    st.host_waiters -= 1;
}

/// `Manager::shut_down`: flag under the lock, then wake every worker.
fn shut_down(p: &Pool) {
    p.st.lock().unwrap().shut_down = true;
    p.work_cv.notify_all();
}

fn park_model(workers: usize, tasks: usize, split_sleep: bool, preemptions: usize) {
    builder(preemptions).check(move || {
        let p = Arc::new(Pool {
            st: Mutex::new(Sched::default()),
            work_cv: Condvar::new(),
            host_cv: Condvar::new(),
            hint: AtomicUsize::new(0),
            split_sleep: AtomicBool::new(split_sleep),
        });
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let p = p.clone();
                thread::spawn(move || worker(&p))
            })
            .collect();
        for _ in 0..tasks {
            add(&p);
        }
        wait_idle(&p);
        assert_eq!(p.st.lock().unwrap().done, tasks, "every task ran");
        shut_down(&p);
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn loom_one_worker_never_loses_a_wake_up() {
    park_model(1, 2, false, 3);
}

#[test]
fn loom_two_workers_never_lose_a_wake_up() {
    park_model(2, 2, false, 2);
}

/// Runs only in the child process started by the test below (loom aborts
/// the process after reporting a deadlock, so the mutant cannot run as a
/// `should_panic` test in this one).
#[test]
fn loom_mutant_child() {
    if std::env::var_os("BTM_LOOM_MUTANT").is_some() {
        park_model(1, 1, true, 3);
    }
}

#[test]
fn loom_mutant_sleeping_in_two_steps_loses_a_wake_up() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "loom_mutant_child", "--nocapture", "--test-threads=1"])
        .env("BTM_LOOM_MUTANT", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "loom accepted the broken protocol");
    assert!(stderr.contains("deadlock"), "loom did not report the lost wake-up as a deadlock:\n{stderr}");
}
