//! Wake-ups, waiting, progress, live control and instrumentation (the
//! host-integration features), through the engine API.
mod common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btm::engine::{Config, Error, Manager, Notify, Owned, TaskHooks, ThreadHooks};
use common::*;

fn readable(fd: btm::engine::RawSignal) -> bool {
    wait_readable(fd, 0)
}

/// A pass-through completes in the worker's lock section that takes it; when
/// it is the last task, the worker then goes idle. Its event must still raise
/// the descriptor and wake a host waiting for events or for idleness.
#[test]
fn a_pass_through_completed_last_raises_the_fd_and_ends_waits() {
    let _s = serial();
    let m = manager(1, true);
    let fd = m.event_fd().unwrap();
    for round in 0..50 {
        m.add(btm::engine::Job::pass_through(value(round)), 0, DEFAULT, &[]).unwrap();
        assert!(wait_readable(fd, 10_000), "round {round}: the fd never became readable");
        assert_eq!(m.wait_idle(Some(Duration::from_secs(10))), Ok(()), "round {round}");
        assert_eq!(m.wait_events(Some(Duration::from_secs(10))), Ok(()), "round {round}");
        let evs = poll(&m);
        assert_eq!(evs.iter().filter(|e| e.task().is_some()).count(), 1, "round {round}: {evs:?}");
        assert!(!readable(fd));
    }
    finish(m);
}

#[test]
fn event_fd_is_readable_exactly_while_events_are_undelivered() {
    let _s = serial();
    let m = manager(2, false);
    let fd = m.event_fd().unwrap();
    assert_eq!(m.event_fd().unwrap(), fd, "same descriptor every time");
    assert!(!readable(fd));
    let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    assert!(!readable(fd), "queued but not finished: nothing to poll");
    m.start_processing().unwrap();
    assert!(wait_readable(fd, 20_000));
    // A poll with capacity 1 leaves the group-finished event: still readable.
    assert_eq!(poll_n(&m, 1).len(), 1);
    assert!(readable(fd));
    assert_eq!(poll_n(&m, 1).len(), 1);
    assert!(!readable(fd), "drained: cleared");
    // A stop that withdraws the only queued event clears it too.
    m.pause_processing().unwrap();
    let b = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    m.start_processing().unwrap();
    assert!(wait_readable(fd, 20_000));
    m.stop_task(b, true, true).unwrap();
    assert!(!readable(fd), "nothing left to poll after the stop withdrew the event");
    assert_eq!(poll(&m), vec![]);
    let _ = a;
    finish(m);
}

#[test]
fn event_fd_never_misses_an_event_under_concurrent_producers() {
    let _s = serial();
    let m = manager(2, true);
    let fd = m.event_fd().unwrap();
    let producers: Vec<_> = (0..3)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..3000 {
                    m.add(nop(), 0, g(i % 7), &[]).unwrap();
                }
            })
        })
        .collect();
    let mut finals = 0;
    let mut spurious = 0;
    while finals < 9000 {
        // Sleep on the descriptor only: a missed wake-up would hang here
        // (and fail after the timeout).
        assert!(wait_readable(fd, 20_000), "fd not readable with {finals}/9000 events seen");
        let got = poll(&m);
        if got.is_empty() {
            spurious += 1;
        }
        finals += got.iter().filter(|e| matches!(e, Ev::Completed { .. })).count();
    }
    for p in producers {
        p.join().unwrap();
    }
    m.wait_idle(Some(TIMEOUT)).unwrap();
    drain(&m);
    assert!(!readable(fd), "readable with nothing to poll");
    assert_eq!(spurious, 0, "readable but nothing to poll {spurious} times");
    finish(m);
}

static NOTIFIED: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn on_notify(data: *mut c_void) {
    assert_eq!(data as usize, 0x5eed);
    NOTIFIED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn notify_fires_once_per_drain_on_the_empty_to_non_empty_transition() {
    let _s = serial();
    NOTIFIED.store(0, Ordering::SeqCst);
    let m = manager(1, false);
    m.set_notify(Some(Notify { func: on_notify, data: Owned::new(0x5eed as *mut c_void, None) }));
    for _ in 0..5 {
        m.add(nop(), 0, DEFAULT, &[]).unwrap();
    }
    m.start_processing().unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 1, "five events, one call until the host polls");
    assert_eq!(drain(&m).len(), 6);
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    wait_until("second notify", || NOTIFIED.load(Ordering::SeqCst) == 2);
    drain(&m);
    m.set_notify(None);
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    collect_finals(&m, 1);
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 2, "removed callback is not called");
    finish(m);
}

/// A poll with nothing to deliver returns without taking the lock, except
/// when it has other work: here, re-arming the notify callback after a stop
/// withdrew the event that fired it.
#[test]
fn a_poll_with_nothing_to_deliver_still_rearms_notify() {
    let _s = serial();
    NOTIFIED.store(0, Ordering::SeqCst);
    let m = manager(1, false);
    m.set_notify(Some(Notify { func: on_notify, data: Owned::new(0x5eed as *mut c_void, None) }));
    let a = m.add(nop(), 0, DEFAULT, &[]).unwrap();
    m.start_processing().unwrap();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 1);
    let r = m.stop_task(a, false, false).unwrap();
    assert_eq!(r.after_finish, 1, "the event is withdrawn");
    for _ in 0..3 {
        assert!(poll(&m).is_empty());
    }
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    wait_until("notify after the re-arming poll", || NOTIFIED.load(Ordering::SeqCst) == 2);
    collect_finals(&m, 1);
    finish(m);
}

/// What a notify callback that is slow to return saw: set as it runs.
#[derive(Default)]
struct SlowNotify {
    entered: std::sync::atomic::AtomicBool,
    returned: std::sync::atomic::AtomicBool,
    freed: std::sync::atomic::AtomicBool,
    thread: Mutex<Option<std::thread::ThreadId>>,
}

static SLOW_NOTIFY: Mutex<Option<Arc<SlowNotify>>> = Mutex::new(None);

/// Enters, then takes 200 ms to return (as a callback descheduled while it
/// posts its message would), once.
unsafe extern "C" fn slow_notify(_: *mut c_void) {
    let s = SLOW_NOTIFY.lock().unwrap().clone().unwrap();
    if s.entered.swap(true, Ordering::SeqCst) {
        return;
    }
    *s.thread.lock().unwrap() = Some(std::thread::current().id());
    let until = std::time::Instant::now() + Duration::from_millis(200);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    s.returned.store(true, Ordering::SeqCst);
}

unsafe extern "C" fn slow_notify_free(_: *mut c_void) {
    let s = SLOW_NOTIFY.lock().unwrap().clone().unwrap();
    assert!(s.returned.load(Ordering::SeqCst), "userdata freed while a call of its callback runs");
    s.freed.store(true, Ordering::SeqCst);
}

/// A host that replaces or removes its notify callback may then tear down
/// what the old callback posts to (its window, its loop): when `set_notify`
/// returns, a call of the old callback in progress on a worker has returned
/// and its userdata has been freed. Before session 37 it returned at once,
/// and the free came as the call ended.
#[test]
fn replacing_the_notify_callback_waits_for_a_call_in_progress() {
    let _s = serial();
    for replace in [false, true] {
        let s = Arc::new(SlowNotify::default());
        *SLOW_NOTIFY.lock().unwrap() = Some(s.clone());
        NOTIFIED.store(0, Ordering::SeqCst);
        let m = manager(1, true);
        m.set_notify(Some(Notify {
            func: slow_notify,
            data: Owned::new(0x51_0e as *mut c_void, Some(slow_notify_free)),
        }));
        m.add(nop(), 0, DEFAULT, &[]).unwrap();
        wait_until("the worker in the notify callback", || s.entered.load(Ordering::SeqCst));
        assert_ne!(
            *s.thread.lock().unwrap(),
            Some(std::thread::current().id()),
            "called on a worker, not on this thread"
        );
        m.set_notify(replace.then(|| Notify { func: on_notify, data: Owned::new(0x5eed as *mut c_void, None) }));
        assert!(s.returned.load(Ordering::SeqCst), "replace {replace}: returned while the old callback ran");
        assert!(s.freed.load(Ordering::SeqCst), "replace {replace}: returned before its userdata was freed");
        drain(&m);
        if replace {
            m.add(nop(), 0, DEFAULT, &[]).unwrap();
            wait_until("the new callback", || NOTIFIED.load(Ordering::SeqCst) == 1);
            drain(&m);
        }
        finish(m);
    }
    *SLOW_NOTIFY.lock().unwrap() = None;
}

/// Set by [`shutting_notify`] once it runs; its shut-down's result after.
static SHUTTING_ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SHUTTING_RESULT: Mutex<Option<Result<(), (Error, usize)>>> = Mutex::new(None);
static SHUTTING_MANAGER: Mutex<Option<std::sync::Weak<Manager>>> = Mutex::new(None);

/// A notify callback that shuts its manager down (once), which waits for
/// the workers to exit.
unsafe extern "C" fn shutting_notify(_: *mut c_void) {
    if SHUTTING_ENTERED.swap(true, Ordering::SeqCst) {
        return;
    }
    let m = SHUTTING_MANAGER.lock().unwrap().as_ref().and_then(std::sync::Weak::upgrade).unwrap();
    let r = m.shut_down(Some(Duration::from_secs(10)));
    *SHUTTING_RESULT.lock().unwrap() = Some(r);
}

/// `set_notify` made on a worker thread (by a task) does not wait for the
/// replaced callback: here that callback, on the other worker, shuts the
/// manager down and so waits for the task's worker to exit. Had the task
/// waited for the callback, neither would return until the shut-down timed
/// out (a review of session 37 found the cycle).
#[test]
fn set_notify_from_a_task_does_not_wait_for_a_callback_that_waits_for_its_worker() {
    let _s = serial();
    SHUTTING_ENTERED.store(false, Ordering::SeqCst);
    *SHUTTING_RESULT.lock().unwrap() = None;
    let m = manager(2, true);
    *SHUTTING_MANAGER.lock().unwrap() = Some(Arc::downgrade(&m));
    m.set_notify(Some(Notify { func: shutting_notify, data: Owned::new(std::ptr::null_mut(), None) }));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r2 = running.clone();
    m.add(
        job(move |ctx| {
            r2.store(true, Ordering::SeqCst);
            wait_until("the notify callback on the other worker", || SHUTTING_ENTERED.load(Ordering::SeqCst));
            manager_of(ctx).set_notify(None);
        }),
        0,
        DEFAULT,
        &[],
    )
    .unwrap();
    wait_until("the task running", || running.load(Ordering::SeqCst));
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    wait_until("the callback's shut-down", || SHUTTING_RESULT.lock().unwrap().is_some());
    assert_eq!(
        SHUTTING_RESULT.lock().unwrap().take(),
        Some(Ok(())),
        "the shut-down waited for a worker stuck in set_notify"
    );
    *SHUTTING_MANAGER.lock().unwrap() = None;
}

static NOTIFY_POSTS: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn count_notify(_data: *mut c_void) {
    NOTIFY_POSTS.fetch_add(1, Ordering::SeqCst);
}

/// A host driven by the notify callback alone, as btm.h describes: it adds
/// tasks, drains until a poll returns fewer events than its capacity, and
/// then waits for a call. It must never wait with events undelivered: a
/// review found the call lost when the poll's own end applied an outcome a
/// worker had left (the signal stayed raised from before the poll, so the
/// new event was not seen as a transition). The window is narrow: 1-4
/// workers, polls of 32 and 8, tasks added 64 at a time or all at once, 64
/// rounds; without the fix 3 of 4 runs of this test failed.
#[test]
fn a_host_driven_by_notify_alone_is_called_for_every_event_it_has_not_polled() {
    let _s = serial();
    NOTIFY_POSTS.store(0, Ordering::SeqCst);
    for round in 0..64 {
        let m = manager(1 + round % 4, true);
        m.set_notify(Some(Notify { func: count_notify, data: Owned::new(std::ptr::null_mut(), None) }));
        let (n, cap) = (20_000usize, [32usize, 8][round / 4 % 2]);
        let (mut added, mut seen, mut consumed) = (0usize, 0usize, NOTIFY_POSTS.load(Ordering::SeqCst));
        while seen < n {
            // All at once in odd rounds, 64 at a time in even ones.
            for _ in 0..if round % 2 == 1 { n } else { 64 } {
                if added < n {
                    m.add(nop(), 0, DEFAULT, &[]).unwrap();
                    added += 1;
                }
            }
            loop {
                let got = poll_n(&m, cap);
                seen += got.iter().filter(|e| matches!(e, Ev::Completed { .. })).count();
                if got.len() < cap {
                    break;
                }
            }
            if added < n || seen >= n {
                continue;
            }
            // Drained, everything added: sleep until the next call (one
            // that came during the drain counts: the host would find its
            // message queued).
            let undelivered = || m.stats().undelivered;
            let deadline = std::time::Instant::now() + TIMEOUT;
            while NOTIFY_POSTS.load(Ordering::SeqCst) == consumed {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: no notify, {seen} of {n} seen, {} undelivered",
                    undelivered()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            consumed = NOTIFY_POSTS.load(Ordering::SeqCst);
        }
        m.set_notify(None);
        finish(m);
    }
}

#[test]
fn waits_time_out_succeed_and_refuse_to_deadlock_inside_a_task() {
    let _s = serial();
    let m = manager(1, false);
    assert_eq!(m.wait_events(Some(Duration::from_millis(30))), Err(Error::TimedOut));
    assert_eq!(m.wait_idle(Some(Duration::from_millis(30))), Ok(()), "nothing queued: idle");
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    assert_eq!(m.wait_idle(Some(Duration::from_millis(30))), Err(Error::TimedOut), "paused with work queued");
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    m.add(
        job(move |ctx| {
            // SAFETY: the manager lives in an `Arc` that outlives the
            // running task; this takes a reference of its own.
            let mm = unsafe {
                Arc::increment_strong_count(ctx.manager());
                Arc::from_raw(ctx.manager())
            };
            *s2.lock().unwrap() = Some(mm.wait_idle(Some(Duration::from_secs(5))));
        }),
        0,
        DEFAULT,
        &[],
    )
    .unwrap();
    m.start_processing().unwrap();
    assert_eq!(m.wait_events(Some(TIMEOUT)), Ok(()));
    assert_eq!(m.wait_idle(Some(TIMEOUT)), Ok(()));
    assert_eq!(*seen.lock().unwrap(), Some(Err(Error::WouldDeadlock)));
    drain(&m);
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || m2.wait_events(None));
    std::thread::sleep(Duration::from_millis(20));
    m.shut_down(Some(TIMEOUT)).unwrap();
    assert_eq!(waiter.join().unwrap(), Err(Error::ShutDown), "a waiter is released by shut down");
    drop(m);
    assert_all_freed();
}

#[test]
fn a_wait_for_events_returns_for_an_event_not_for_a_previous_polls_results() {
    let _s = serial();
    let m = manager(1, true);
    m.add(job(|ctx| ctx.set_result(value(7))), 0, DEFAULT, &[]).unwrap();
    assert_eq!(m.wait_events(Some(TIMEOUT)), Ok(()));
    collect_finals(&m, 1);
    // The poll's result is released by the next poll, so a poll has work
    // to do (the lock-free poll gate is open) though no event is pending:
    // the wait must still wait for an event.
    assert_eq!(m.wait_events(Some(Duration::from_millis(30))), Err(Error::TimedOut));
    // An event that comes while the host waits ends the wait.
    let gate = Gate::new();
    let g2 = gate.clone();
    m.add(job(move |_| g2.pass()), 0, DEFAULT, &[]).unwrap();
    gate.wait_arrivals(1);
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || m2.wait_events(Some(TIMEOUT)));
    gate.open();
    assert_eq!(waiter.join().unwrap(), Ok(()));
    collect_finals(&m, 1);
    finish(m);
}

#[test]
fn progress_is_dropped_after_a_stop() {
    let _s = serial();
    let m = manager(1, true);
    let (gate, after_stop) = (Gate::new(), Gate::new());
    let (g2, a2) = (gate.clone(), after_stop.clone());
    let result = Arc::new(Mutex::new(None));
    let r2 = result.clone();
    let t = m
        .add(
            job(move |ctx| {
                assert!(ctx.report_progress(0.5, None));
                g2.pass();
                a2.pass();
                *r2.lock().unwrap() = Some(ctx.report_progress(0.9, None));
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    gate.wait_arrivals(1);
    gate.open();
    assert_eq!(m.stats().undelivered, 1);
    m.stop_task(t, false, false).unwrap();
    assert_eq!(m.stats().undelivered, 0, "the queued progress event was withdrawn");
    after_stop.open();
    wait_until("task to report", || result.lock().unwrap().is_some());
    assert_eq!(*result.lock().unwrap(), Some(false));
    assert_eq!(poll(&m), vec![]);
    finish(m);
}

#[test]
fn stats_and_group_stats_count_each_state() {
    let _s = serial();
    let m = manager(1, false);
    let gate = Gate::new();
    let g2 = gate.clone();
    let a = m.add(job(move |_| g2.pass()), 5, g(1), &[]).unwrap();
    m.add(nop(), 0, g(1), &[a]).unwrap();
    m.add(nop(), 0, g(2), &[]).unwrap();
    m.start_processing().unwrap();
    gate.wait_arrivals(1);
    let s = m.stats();
    assert_eq!((s.queued, s.blocked, s.running, s.undelivered), (1, 1, 1, 0));
    assert_eq!(m.group_stats(g(1)).unwrap(), [0, 1, 1, 0]);
    assert_eq!(m.group_stats(g(2)).unwrap(), [1, 0, 0, 0]);
    assert_eq!(m.group_stats(g(9)).unwrap(), [0, 0, 0, 0]);
    m.stop_group(g(2), false, false).unwrap();
    gate.open();
    m.wait_idle(Some(TIMEOUT)).unwrap();
    let s = m.stats();
    assert_eq!((s.undelivered, s.completed_total, s.stopped_total), (2, 2, 1));
    drain(&m);
    finish(m);
}

#[test]
fn max_threads_changes_at_run_time_and_extra_threads_retire() {
    let _s = serial();
    let m = manager(4, true);
    let gate = Gate::new();
    for _ in 0..4 {
        let g2 = gate.clone();
        m.add(job(move |_| g2.pass()), 0, DEFAULT, &[]).unwrap();
    }
    gate.wait_arrivals(4);
    assert_eq!(m.stats().threads, 4);
    m.set_max_threads(1).unwrap();
    gate.open();
    collect_finals(&m, 4);
    wait_until("extra threads to retire", || m.stats().threads == 1);
    let gate2 = Gate::new();
    for _ in 0..3 {
        let g2 = gate2.clone();
        m.add(job(move |_| g2.pass()), 0, DEFAULT, &[]).unwrap();
    }
    gate2.wait_arrivals(1);
    assert_eq!(m.stats().running, 1, "one thread now");
    m.set_max_threads(3).unwrap();
    gate2.wait_arrivals(3);
    gate2.open();
    collect_finals(&m, 3);
    assert_eq!(m.set_max_threads(100_000), Err(Error::InvalidThreadCount));
    finish(m);
}

static THREAD_STARTS: AtomicUsize = AtomicUsize::new(0);
static THREAD_STOPS: AtomicUsize = AtomicUsize::new(0);
static NAMES_OK: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn thread_start(_: *mut c_void, index: u32) {
    THREAD_STARTS.fetch_add(1, Ordering::SeqCst);
    if std::thread::current().name() == Some(&format!("btm-worker-{index}")) {
        NAMES_OK.fetch_add(1, Ordering::SeqCst);
    }
}
unsafe extern "C" fn thread_stop(_: *mut c_void, _: u32) {
    THREAD_STOPS.fetch_add(1, Ordering::SeqCst);
}
static HOOK_DATA_FREED: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn free_hook_data(_: *mut c_void) {
    HOOK_DATA_FREED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn workers_are_named_and_thread_hooks_run_before_any_task_and_at_exit() {
    let _s = serial();
    let hooks = ThreadHooks {
        on_start: Some(thread_start),
        on_stop: Some(thread_stop),
        data: Owned::new(1 as *mut c_void, Some(free_hook_data)),
    };
    let m = Manager::new(Config { max_threads: 2, start_processing: true, thread_hooks: Some(hooks) }).unwrap();
    let starts_seen = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    for _ in 0..2 {
        let (s2, g2) = (starts_seen.clone(), gate.clone());
        m.add(
            job(move |_| {
                s2.fetch_max(THREAD_STARTS.load(Ordering::SeqCst), Ordering::SeqCst);
                g2.pass();
            }),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    }
    gate.wait_arrivals(2);
    gate.open();
    collect_finals(&m, 2);
    assert!(starts_seen.load(Ordering::SeqCst) >= 1, "the hook ran before the task on its thread");
    m.shut_down(Some(TIMEOUT)).unwrap();
    assert_eq!(THREAD_STARTS.load(Ordering::SeqCst), 2);
    assert_eq!(NAMES_OK.load(Ordering::SeqCst), 2);
    assert_eq!(THREAD_STOPS.load(Ordering::SeqCst), 2, "shut down returns after every stop hook");
    assert_eq!(HOOK_DATA_FREED.load(Ordering::SeqCst), 0);
    drop(m);
    assert_eq!(HOOK_DATA_FREED.load(Ordering::SeqCst), 1);
    assert_all_freed();
}

static TRACE: Mutex<Vec<(char, u64, u32, u64)>> = Mutex::new(Vec::new());
static CURRENT_TASK: AtomicU64 = AtomicU64::new(0);
unsafe extern "C" fn task_start(_: *mut c_void, id: u64, kind: u32, value: u64, _worker: u32) {
    CURRENT_TASK.store(id, Ordering::SeqCst);
    TRACE.lock().unwrap().push(('B', id, kind, value));
}
unsafe extern "C" fn task_end(_: *mut c_void, id: u64, kind: u32, value: u64, _worker: u32) {
    TRACE.lock().unwrap().push(('E', id, kind, value));
}

#[test]
fn task_hooks_bracket_every_task_run() {
    let _s = serial();
    TRACE.lock().unwrap().clear();
    let m = manager(1, false);
    let a = m.add(nop(), 0, g(4), &[]).unwrap();
    m.set_task_hooks(Some(TaskHooks {
        on_start: Some(task_start),
        on_end: Some(task_end),
        data: Owned::new(std::ptr::null_mut(), None),
    }));
    let ran_inside = Arc::new(AtomicU64::new(0));
    let r2 = ran_inside.clone();
    let b = m
        .add(
            job(move |ctx| r2.store(CURRENT_TASK.load(Ordering::SeqCst) ^ ctx.task_id(), Ordering::SeqCst)),
            0,
            DEFAULT,
            &[],
        )
        .unwrap();
    m.start_processing().unwrap();
    collect_finals(&m, 2);
    assert_eq!(ran_inside.load(Ordering::SeqCst), 0, "the start hook ran just before the task");
    assert_eq!(*TRACE.lock().unwrap(), vec![('B', a, 1, 4), ('E', a, 1, 4), ('B', b, 0, 0), ('E', b, 0, 0)]);
    m.set_task_hooks(None);
    m.add(nop(), 0, DEFAULT, &[]).unwrap();
    collect_finals(&m, 1);
    assert_eq!(TRACE.lock().unwrap().len(), 4);
    finish(m);
}

#[test]
fn idle_manager_parks_its_workers() {
    let _s = serial();
    let m = manager(2, true);
    for _ in 0..100 {
        m.add(nop(), 0, DEFAULT, &[]).unwrap();
    }
    collect_finals(&m, 100);
    // Once idle, the workers sleep: their CPU time stops growing.
    let cpu = || {
        let mut total = 0u64;
        for entry in std::fs::read_dir("/proc/self/task").unwrap() {
            let path = entry.unwrap().path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.starts_with("btm-worker") {
                let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
                let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
                total += fields.get(11).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0)
                    + fields.get(12).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        total
    };
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu();
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu() - before;
    assert!(used <= 1, "idle workers used {used} clock ticks in 500 ms");
    finish(m);
}
