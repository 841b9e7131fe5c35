//! Host code misbehaving, through the engine API (and the C ABI where the
//! behaviour is the C boundary's own):
//!
//! - free functions that call back into the manager (add, stop, poll, shut
//!   down) from every place btm calls free functions: a worker after a task,
//!   a host thread inside `stop_task`, `poll` (results of the previous poll),
//!   `shut_down`, and the manager's own destruction;
//! - a notify callback that adds, polls, stops and shuts down;
//! - a task that shuts down its own manager, and one that destroys it
//!   (`btm_destroy` from inside the task, through the C ABI);
//! - a task that never returns while the host shuts down: `TimedOut` with the
//!   number of such threads, its userdata untouched until it returns, and
//!   everything freed once it does (engine API and `btm_destroy` after a
//!   timed-out `btm_shut_down`);
//! - worker threads that cannot be created (a child process lowers
//!   RLIMIT_NPROC and drops root, since the limit does not apply to root):
//!   btm counts the failures in `Stats::spawn_failures` and keeps working
//!   with the threads it has, and starts threads again once it can.
//!
//! Every scenario runs under a deadline: a deadlock fails the test instead of
//! hanging it. Every allocation handed to btm is tracked; each must be freed
//! exactly once.

use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use btm::engine::{Config, Error, GroupKey, Job, Manager, Notify, Owned, TaskContext};

// --- tracking -----------------------------------------------------------------

#[derive(Default)]
struct Tracker {
    live: HashSet<usize>,
    errors: Vec<String>,
}

fn tracker() -> MutexGuard<'static, Tracker> {
    static T: OnceLock<Mutex<Tracker>> = OnceLock::new();
    T.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

fn track(p: usize) {
    if !tracker().live.insert(p) {
        tracker().errors.push(format!("{p:#x} tracked twice"));
    }
}

fn untrack(p: usize) {
    let mut t = tracker();
    if !t.live.remove(&p) {
        t.errors.push(format!("{p:#x} freed twice or never allocated"));
    }
}

fn live() -> usize {
    tracker().live.len()
}

/// Waits until every tracked allocation is freed and no double free
/// happened.
fn assert_all_freed(what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while live() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = tracker();
    assert!(t.errors.is_empty(), "{what}: {:?}", t.errors);
    assert_eq!(t.live.len(), 0, "{what}: allocations never freed");
}

/// Tests share the tracker: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on its own thread and fails (instead of hanging) if it does not
/// finish within 30 s.
fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no progress in 30 s (deadlock)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

// --- closures as tasks, with tracked userdata ---------------------------------

type Body = Box<dyn FnOnce(&mut TaskContext) + Send>;

unsafe extern "C" fn run_body(ud: *mut c_void, ctx: *mut TaskContext) {
    // SAFETY: `ud` is the Option<Body> made by `job`; `ctx` valid for the call.
    let slot = unsafe { &mut *(ud as *mut Option<Body>) };
    if let Some(f) = slot.take() {
        f(unsafe { &mut *ctx });
    }
}

unsafe extern "C" fn free_body(ud: *mut c_void) {
    untrack(ud as usize);
    // SAFETY: made by `job`.
    drop(unsafe { Box::from_raw(ud as *mut Option<Body>) });
}

fn job(f: impl FnOnce(&mut TaskContext) + Send + 'static) -> Job {
    let p = Box::into_raw(Box::new(Some(Box::new(f) as Body)));
    track(p as usize);
    Job::task(run_body, Owned::new(p.cast(), Some(free_body)))
}

fn nop() -> Job {
    job(|_| {})
}

unsafe extern "C" fn free_plain(p: *mut c_void) {
    untrack(p as usize);
    // SAFETY: made by `plain` (a boxed u64).
    drop(unsafe { Box::from_raw(p as *mut u64) });
}

/// A tracked result or payload.
fn plain() -> Owned {
    let p = Box::into_raw(Box::new(0u64));
    track(p as usize);
    Owned::new(p.cast(), Some(free_plain))
}

/// The manager of the running task, as an owned reference.
fn manager_of(ctx: &TaskContext) -> Arc<Manager> {
    // SAFETY: valid while the task runs; we take our own strong reference.
    unsafe {
        let p = ctx.manager();
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

fn manager(max_threads: usize, start: bool) -> Arc<Manager> {
    Manager::new(Config { max_threads, start_processing: start, thread_hooks: None }).unwrap()
}

fn drain(m: &Arc<Manager>) -> usize {
    m.wait_idle(Some(Duration::from_secs(20))).expect("idle");
    let mut n = 0;
    loop {
        let got = m.poll(1024, |_| {});
        if got == 0 {
            return n;
        }
        n += got;
    }
}

#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<(bool, usize)>, Condvar)>);

impl Gate {
    fn pass(&self) {
        let (l, cv) = &*self.0;
        let mut g = l.lock().unwrap();
        g.1 += 1;
        cv.notify_all();
        while !g.0 {
            g = cv.wait(g).unwrap();
        }
    }
    fn wait_arrivals(&self, n: usize) {
        let (l, cv) = &*self.0;
        let mut g = l.lock().unwrap();
        while g.1 < n {
            g = cv.wait_timeout(g, Duration::from_secs(20)).unwrap().0;
        }
    }
    fn open(&self) {
        let (l, cv) = &*self.0;
        l.lock().unwrap().0 = true;
        cv.notify_all();
    }
}

// --- free functions that call back into the manager ---------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Add,
    Stop(u64),
    StopAll,
    Poll,
    ShutDown,
    /// Removes the notify callback (from inside it: must not wait for
    /// itself).
    ClearNotify,
}

/// Userdata whose free function acts on the manager.
struct Reentrant {
    m: Weak<Manager>,
    action: Action,
    log: Arc<Mutex<Vec<String>>>,
}

unsafe extern "C" fn free_reentrant(p: *mut c_void) {
    untrack(p as usize);
    // SAFETY: made by `reentrant_data`.
    let r = unsafe { Box::from_raw(p as *mut Reentrant) };
    let outcome = match r.m.upgrade() {
        // The manager is being destroyed: nothing to call back into.
        None => "manager gone".to_owned(),
        Some(m) => match r.action {
            Action::Add => format!("add {:?}", m.add(nop(), 0, GroupKey::DEFAULT, &[]).map(|_| ())),
            Action::Stop(id) => format!("stop {:?}", m.stop_task(id, true, true).map(|_| ())),
            Action::StopAll => format!("stop_all {}", m.stop_all().total()),
            Action::Poll => format!("poll {}", m.poll(1024, |_| {})),
            Action::ShutDown => format!("shut_down {:?}", m.shut_down(Some(Duration::from_secs(10)))),
            Action::ClearNotify => {
                m.set_notify(None);
                "clear_notify".to_owned()
            }
        },
    };
    r.log.lock().unwrap().push(outcome);
}

fn reentrant_data(m: &Arc<Manager>, action: Action, log: &Arc<Mutex<Vec<String>>>) -> Owned {
    let p = Box::into_raw(Box::new(Reentrant { m: Arc::downgrade(m), action, log: log.clone() }));
    track(p as usize);
    Owned::new(p.cast(), Some(free_reentrant))
}

unsafe extern "C" fn run_nothing(_: *mut c_void, _: *mut TaskContext) {}

/// A task whose userdata's free function performs `action`.
fn reentrant_task(m: &Arc<Manager>, action: Action, log: &Arc<Mutex<Vec<String>>>) -> Job {
    Job::task(run_nothing, reentrant_data(m, action, log))
}

#[test]
fn free_functions_that_call_back_into_the_manager() {
    let _s = serial();
    within("free functions calling back", || {
        let log = Arc::new(Mutex::new(Vec::new()));
        let take = |log: &Arc<Mutex<Vec<String>>>| std::mem::take(&mut *log.lock().unwrap());

        // 1. On a worker, after the task ran: add, stop, poll.
        let m = manager(2, true);
        let victim = m.add(nop(), -5, GroupKey::DEFAULT, &[]).unwrap();
        m.pause_processing().unwrap();
        m.add(reentrant_task(&m, Action::Add, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.add(reentrant_task(&m, Action::Stop(victim), &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.add(reentrant_task(&m, Action::Poll, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.start_processing().unwrap();
        m.wait_idle(Some(Duration::from_secs(20))).unwrap();
        drain(&m);
        let mut got = take(&log);
        got.sort();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&"add Ok(())".to_owned()), "{got:?}");
        assert!(got.iter().any(|g| g.starts_with("poll ")), "{got:?}");

        // 2. On the host, inside stop_task (stopped before it started), and
        //    inside stop_all: add (accepted), stop, poll, shut down.
        let m = manager(1, false);
        let other = m.add(nop(), 0, GroupKey::DEFAULT, &[]).unwrap();
        let a = m.add(reentrant_task(&m, Action::Add, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.stop_task(a, false, false).unwrap();
        let b = m.add(reentrant_task(&m, Action::Stop(other), &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.stop_task(b, false, false).unwrap();
        let c = m.add(reentrant_task(&m, Action::Poll, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.stop_task(c, false, false).unwrap();
        assert_eq!(take(&log), vec!["add Ok(())", "stop Ok(())", "poll 0"]);
        m.add(reentrant_task(&m, Action::StopAll, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.add(reentrant_task(&m, Action::ShutDown, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.stop_all();
        let got = take(&log);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got.contains(&"shut_down Ok(())".to_owned())
                || got.contains(&"shut_down Err((AlreadyShutDown, 0))".to_owned())
        );
        assert!(m.is_shut_down(), "a free function shut the manager down");
        assert_eq!(m.add(nop(), 0, GroupKey::DEFAULT, &[]), Err(Error::ShutDown));
        drop(m);
        assert_all_freed("host-side frees");

        // 3. Results of the previous poll, freed inside the next poll: the
        //    result's free function polls (re-entrant poll) and adds.
        let m = manager(1, true);
        let l2 = log.clone();
        let m2 = Arc::downgrade(&m);
        m.add(
            job(move |ctx| ctx.set_result(reentrant_data(&m2.upgrade().unwrap(), Action::Poll, &l2))),
            0,
            GroupKey::DEFAULT,
            &[],
        )
        .unwrap();
        let l3 = log.clone();
        let m3 = Arc::downgrade(&m);
        m.add(
            job(move |ctx| ctx.set_result(reentrant_data(&m3.upgrade().unwrap(), Action::Add, &l3))),
            0,
            GroupKey::DEFAULT,
            &[],
        )
        .unwrap();
        m.wait_idle(Some(Duration::from_secs(20))).unwrap();
        assert_eq!(m.poll(1024, |_| {}), 3); // two completions, group finished
        assert!(take(&log).is_empty(), "results live until the next poll");
        m.poll(1024, |_| {}); // frees them: one polls, one adds
        let mut got = take(&log);
        got.sort();
        assert_eq!(got, vec!["add Ok(())", "poll 0"]);
        drain(&m);

        // 4. Inside shut_down: a queued task's free function shuts down
        //    again and adds; a payload's free function stops everything.
        m.pause_processing().unwrap();
        m.add(reentrant_task(&m, Action::ShutDown, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.add(reentrant_task(&m, Action::Add, &log), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.add(Job::pass_through(reentrant_data(&m, Action::StopAll, &log)), 0, GroupKey::DEFAULT, &[]).unwrap();
        m.shut_down(Some(Duration::from_secs(10))).unwrap();
        let mut got = take(&log);
        got.sort();
        assert_eq!(got, vec!["add Err(ShutDown)", "shut_down Err((AlreadyShutDown, 0))", "stop_all 0"]);

        // 5. During destruction: the weak reference no longer upgrades.
        let m = manager(1, true);
        let l4 = log.clone();
        let m4 = Arc::downgrade(&m);
        m.add(
            job(move |ctx| ctx.set_result(reentrant_data(&m4.upgrade().unwrap(), Action::Add, &l4))),
            0,
            GroupKey::DEFAULT,
            &[],
        )
        .unwrap();
        m.wait_idle(Some(Duration::from_secs(20))).unwrap();
        m.poll(1024, |_| {}); // the result now lives until the manager goes
        m.shut_down(Some(Duration::from_secs(10))).unwrap();
        drop(m);
        let deadline = Instant::now() + Duration::from_secs(20);
        while log.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(take(&log), vec!["manager gone"]);
    });
    assert_all_freed("free functions calling back");
}

// --- notify callbacks that call back -------------------------------------------

struct NotifyData {
    m: Weak<Manager>,
    calls: AtomicUsize,
    action: Action,
    log: Arc<Mutex<Vec<String>>>,
}

unsafe extern "C" fn on_events(p: *mut c_void) {
    // SAFETY: the NotifyData registered with the callback, alive until it
    // is replaced or the manager is freed.
    let d = unsafe { &*(p as *const NotifyData) };
    let n = d.calls.fetch_add(1, SeqCst);
    let Some(m) = d.m.upgrade() else { return };
    if n >= 3 {
        return;
    }
    let what = match d.action {
        Action::Add => format!("add {:?}", m.add(nop(), 0, GroupKey::DEFAULT, &[]).map(|_| ())),
        Action::Poll => format!("poll {}", m.poll(1024, |_| {})),
        Action::Stop(id) => format!("stop {:?}", m.stop_task(id, false, false).map(|_| ())),
        Action::StopAll => format!("stop_all {}", m.stop_all().total()),
        // Called on the worker that produced the event, while the other
        // worker is blocked in task 1: times out waiting for it.
        Action::ShutDown => format!("shut_down {:?}", m.shut_down(Some(Duration::from_millis(200)))),
        // Its own userdata (`d`) stays alive until this call returns.
        Action::ClearNotify => {
            m.set_notify(None);
            "clear_notify".to_owned()
        }
    };
    d.log.lock().unwrap().push(what);
}

unsafe extern "C" fn free_notify(p: *mut c_void) {
    untrack(p as usize);
    // SAFETY: made in `set_notify`.
    drop(unsafe { Box::from_raw(p as *mut NotifyData) });
}

fn set_notify(m: &Arc<Manager>, action: Action, log: &Arc<Mutex<Vec<String>>>) {
    let p = Box::into_raw(Box::new(NotifyData {
        m: Arc::downgrade(m),
        calls: AtomicUsize::new(0),
        action,
        log: log.clone(),
    }));
    track(p as usize);
    m.set_notify(Some(Notify { func: on_events, data: Owned::new(p.cast(), Some(free_notify)) }));
}

#[test]
fn notify_callbacks_that_add_poll_stop_and_shut_down() {
    let _s = serial();
    within("notify callbacks calling back", || {
        for action in
            [Action::Add, Action::Poll, Action::Stop(1), Action::StopAll, Action::ShutDown, Action::ClearNotify]
        {
            let log = Arc::new(Mutex::new(Vec::new()));
            let m = manager(2, true);
            set_notify(&m, action, &log);
            let gate = Gate::default();
            let g2 = gate.clone();
            // Task 1 blocks (so the stop actions have something to stop);
            // task 2 completes and raises the notification.
            m.add(job(move |_| g2.pass()), 0, GroupKey::DEFAULT, &[]).unwrap();
            gate.wait_arrivals(1);
            m.add(nop(), 0, GroupKey::DEFAULT, &[]).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while log.lock().unwrap().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            gate.open();
            let got = std::mem::take(&mut *log.lock().unwrap());
            assert!(!got.is_empty(), "{action:?}: notify never called");
            match action {
                Action::Add => assert_eq!(got[0], "add Ok(())"),
                Action::Poll => assert!(got[0].starts_with("poll ")),
                Action::Stop(_) => assert_eq!(got[0], "stop Ok(())"),
                Action::StopAll => assert!(got[0].starts_with("stop_all ")),
                Action::ShutDown => assert!(got[0].starts_with("shut_down Err((TimedOut"), "{got:?}"),
                Action::ClearNotify => assert_eq!(got, ["clear_notify"], "called once, then removed"),
            }
            if !m.is_shut_down() {
                // More notifications while the callback adds tasks: bounded
                // by its own counter; then everything drains.
                drain(&m);
                m.set_notify(None);
            }
            let _ = m.shut_down(Some(Duration::from_secs(10)));
            drop(m);
            assert_all_freed(&format!("notify {action:?}"));
        }
    });
}

// --- tasks that shut down or destroy their own manager --------------------------

#[test]
fn task_that_shuts_down_its_own_manager() {
    let _s = serial();
    within("task shutting down its manager", || {
        let m = manager(2, false);
        let result = Arc::new(Mutex::new(None));
        let r2 = result.clone();
        m.add(
            job(move |ctx| {
                let me = manager_of(ctx);
                let first = me.shut_down(Some(Duration::from_secs(10)));
                let again = me.shut_down(Some(Duration::from_secs(10)));
                let add = me.add(nop(), 0, GroupKey::DEFAULT, &[]).map(|_| ());
                ctx.set_result(plain()); // dropped: the task was stopped
                *r2.lock().unwrap() = Some((first, again, add));
            }),
            10,
            GroupKey::DEFAULT,
            &[],
        )
        .unwrap();
        for _ in 0..5 {
            m.add(nop(), 0, GroupKey::DEFAULT, &[]).unwrap();
        }
        m.start_processing().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while result.lock().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            *result.lock().unwrap(),
            Some((Ok(()), Err((Error::AlreadyShutDown, 0)), Err(Error::ShutDown))),
            "shut_down from inside a task does not wait for that task"
        );
        assert_eq!(m.shut_down(None), Err((Error::AlreadyShutDown, 0)));
        assert_eq!(m.poll(1024, |_| {}), 0, "nothing is delivered after shut down");
        // The host lets go while the worker may still be finishing: the
        // manager is then freed by its last worker.
        let weak = Arc::downgrade(&m);
        drop(m);
        let deadline = Instant::now() + Duration::from_secs(20);
        while weak.strong_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(weak.strong_count(), 0, "manager freed once its workers exited");
    });
    assert_all_freed("task shutting down its manager");
}

static DESTROYED_FROM_TASK: AtomicBool = AtomicBool::new(false);
static STATUS_AFTER_DESTROY: AtomicU32 = AtomicU32::new(u32::MAX);

unsafe extern "C" fn destroy_own_manager(ud: *mut c_void, ctx: *mut btm::engine::TaskContext) {
    // SAFETY: `ud` is the handle from `btm_create`, handed to this task; the
    // context is valid for the call.
    unsafe {
        let handle = *(ud as *const *mut Manager);
        btm::ffi::manager::btm_destroy(handle);
        // A handle from the context stays usable until the task returns and
        // then only reports "shut down".
        let from_ctx = btm::ffi::context::btm_context_manager(ctx);
        let s = btm::ffi::manager::btm_start_processing(from_ctx);
        STATUS_AFTER_DESTROY.store(s as u32, SeqCst);
    }
    DESTROYED_FROM_TASK.store(true, SeqCst);
}

unsafe extern "C" fn free_handle_box(p: *mut c_void) {
    untrack(p as usize);
    // SAFETY: made by the test below.
    drop(unsafe { Box::from_raw(p as *mut *mut Manager) });
}

#[test]
fn task_that_destroys_its_own_manager_through_the_c_abi() {
    use btm::ffi::manager::{btm_config, btm_config_init, btm_create};
    use btm::ffi::status::btm_status;
    let _s = serial();
    within("btm_destroy from inside a task", || unsafe {
        let mut cfg = std::mem::MaybeUninit::<btm_config>::uninit();
        assert_eq!(btm_config_init(cfg.as_mut_ptr()), btm_status::BTM_STATUS_OK);
        let mut cfg = cfg.assume_init();
        cfg.max_threads = 1;
        cfg.start_processing = true;
        let mut handle: *mut Manager = std::ptr::null_mut();
        assert_eq!(btm_create(&cfg, &mut handle), btm_status::BTM_STATUS_OK);
        let ud = Box::into_raw(Box::new(handle));
        track(ud as usize);
        let mut id = 0;
        let s = btm::ffi::task::btm_add_task(
            handle,
            Some(destroy_own_manager),
            ud.cast(),
            Some(free_handle_box),
            0,
            std::ptr::null(),
            std::ptr::null(),
            0,
            &mut id,
        );
        assert_eq!(s, btm_status::BTM_STATUS_OK);
        // The host must not touch `handle` again; it waits for the task.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !DESTROYED_FROM_TASK.load(SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(DESTROYED_FROM_TASK.load(SeqCst));
        assert_eq!(
            STATUS_AFTER_DESTROY.load(SeqCst),
            btm_status::BTM_STATUS_SHUT_DOWN as u32,
            "the context's handle reports shut down"
        );
    });
    assert_all_freed("btm_destroy from inside a task");
}

// --- a task that never returns when the host shuts down --------------------------

#[test]
fn task_that_does_not_return_at_shut_down() {
    let _s = serial();
    within("shut down with a stuck task", || {
        let m = manager(2, true);
        let gate = Gate::default();
        let g2 = gate.clone();
        let returned = Arc::new(AtomicBool::new(false));
        let r2 = returned.clone();
        m.add(
            job(move |ctx| {
                g2.pass();
                ctx.set_result(plain());
                r2.store(true, SeqCst);
            }),
            0,
            GroupKey::DEFAULT,
            &[],
        )
        .unwrap();
        gate.wait_arrivals(1);
        m.pause_processing().unwrap();
        for _ in 0..5 {
            m.add(job(|ctx| ctx.set_result(plain())), 0, GroupKey::DEFAULT, &[]).unwrap();
        }
        assert_eq!(live(), 6);
        let t = Instant::now();
        assert_eq!(m.shut_down(Some(Duration::from_millis(100))), Err((Error::TimedOut, 1)));
        assert!(t.elapsed() < Duration::from_secs(5), "the timeout path returns");
        assert_eq!(live(), 1, "queued tasks freed at shut down; the stuck task's userdata is not");
        assert_eq!(m.poll(1024, |_| {}), 0);
        // Destroying the handle does not wait for the stuck task either, and
        // frees nothing under it.
        let weak = Arc::downgrade(&m);
        drop(m);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(live(), 1);
        assert!(weak.strong_count() > 0, "the stuck worker keeps the manager alive");
        gate.open();
        let deadline = Instant::now() + Duration::from_secs(20);
        while (weak.strong_count() > 0 || live() > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(returned.load(SeqCst));
        assert_eq!(weak.strong_count(), 0, "manager freed by its last worker");
    });
    assert_all_freed("stuck task");
}

static STUCK_GATE: OnceLock<Gate> = OnceLock::new();

unsafe extern "C" fn stuck_task(_: *mut c_void, _: *mut TaskContext) {
    STUCK_GATE.get().unwrap().pass();
}

#[test]
fn c_abi_destroy_after_a_timed_out_shut_down_does_not_wait_again() {
    use btm::ffi::manager::{btm_config, btm_config_init, btm_create, btm_destroy, btm_shut_down};
    use btm::ffi::status::btm_status;
    let _s = serial();
    let gate = STUCK_GATE.get_or_init(Gate::default).clone();
    within("btm_destroy after a timed-out btm_shut_down", move || unsafe {
        let mut cfg = std::mem::MaybeUninit::<btm_config>::uninit();
        btm_config_init(cfg.as_mut_ptr());
        let mut cfg = cfg.assume_init();
        cfg.start_processing = true;
        let mut h: *mut Manager = std::ptr::null_mut();
        assert_eq!(btm_create(&cfg, &mut h), btm_status::BTM_STATUS_OK);
        let ud = Box::into_raw(Box::new(0u64));
        track(ud as usize);
        let mut id = 0;
        let s = btm::ffi::task::btm_add_task(
            h,
            Some(stuck_task),
            ud.cast(),
            Some(free_plain),
            0,
            std::ptr::null(),
            std::ptr::null(),
            0,
            &mut id,
        );
        assert_eq!(s, btm_status::BTM_STATUS_OK);
        gate.wait_arrivals(1);
        let mut still = 0usize;
        assert_eq!(btm_shut_down(h, 50, &mut still), btm_status::BTM_STATUS_TIMED_OUT);
        assert_eq!(still, 1);
        let t = Instant::now();
        btm_destroy(h);
        assert!(t.elapsed() < Duration::from_secs(5), "destroy does not wait for the stuck task again");
        assert_eq!(live(), 1, "the stuck task's userdata is still in use");
        gate.open();
    });
    assert_all_freed("btm_destroy after a timed-out shut down");
}

// --- worker threads that cannot be created ------------------------------------------

// Linux only: thread limits through RLIMIT_NPROC, counted in /proc.
#[cfg(target_os = "linux")]
const CHILD_ENV: &str = "BTM_FAULTS_SPAWN_CHILD";

#[cfg(target_os = "linux")]
fn threads_of_this_process() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[cfg(target_os = "linux")]
/// Lowers RLIMIT_NPROC so that exactly `extra` more threads can be created,
/// dropping root first if needed (root ignores the limit). Returns false if
/// the limit cannot be made to bite.
fn limit_threads(extra: u64) -> Result<(), String> {
    // SAFETY: plain syscalls on this process.
    unsafe {
        if libc::geteuid() == 0 {
            // A uid with no other process, so that the count is ours alone.
            if libc::setgid(54321) != 0 || libc::setuid(54321) != 0 {
                return Err(format!("cannot drop root: {}", std::io::Error::last_os_error()));
            }
        }
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NPROC, &mut lim);
        lim.rlim_cur = threads_of_this_process() + extra;
        if libc::setrlimit(libc::RLIMIT_NPROC, &lim) != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
    }
    // Check that the limit bites: `extra` threads start, one more does not.
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let mut held = Vec::new();
    for _ in 0..extra {
        let rx = rx.clone();
        match std::thread::Builder::new().spawn(move || {
            let _ = rx.lock().unwrap().recv();
        }) {
            Ok(h) => held.push(h),
            Err(e) => return Err(format!("limit too tight: {e}")),
        }
    }
    let bites = std::thread::Builder::new().spawn(|| {}).map(|h| h.join()).is_err();
    drop(tx);
    for h in held {
        h.join().unwrap();
    }
    // Let the kernel account the exits.
    std::thread::sleep(Duration::from_millis(50));
    if bites {
        Ok(())
    } else {
        Err("RLIMIT_NPROC is not enforced here".into())
    }
}

#[cfg(target_os = "linux")]
fn raise_thread_limit() {
    // SAFETY: plain syscalls; the soft limit goes back up to the hard one.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NPROC, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NPROC, &lim);
    }
}

#[cfg(target_os = "linux")]
/// The child process's part (does nothing unless started by the test below).
#[test]
fn spawn_failure_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    if let Err(why) = limit_threads(1) {
        println!("SKIP: {why}");
        return;
    }
    // One worker can be created, not four.
    let m = manager(4, true);
    let gate = Gate::default();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..4 {
        let (g, d) = (gate.clone(), done.clone());
        m.add(
            job(move |_| {
                g.pass();
                d.fetch_add(1, SeqCst);
            }),
            0,
            GroupKey::DEFAULT,
            &[],
        )
        .unwrap();
    }
    gate.wait_arrivals(1);
    let s = m.stats();
    println!("limited: {s:?}");
    assert_eq!(s.threads, 1, "{s:?}");
    assert!(s.spawn_failures >= 1, "{s:?}");
    assert_eq!((s.running, s.queued), (1, 3), "{s:?}");
    gate.open();
    assert_eq!(drain(&m), 5, "all four tasks completed with the one thread it has, then the group finished");
    assert_eq!(done.load(SeqCst), 4);

    // A second manager cannot create any thread while the first's worker
    // holds the last slot: its task waits, the failure is reported, nothing
    // hangs.
    let m2 = manager(2, true);
    m2.add(nop(), 0, GroupKey::DEFAULT, &[]).unwrap();
    let s2 = m2.stats();
    println!("no thread at all: {s2:?}");
    assert_eq!(s2.threads, 0, "{s2:?}");
    assert!(s2.spawn_failures >= 1, "{s2:?}");
    assert_eq!(m2.wait_idle(Some(Duration::from_millis(100))), Err(Error::TimedOut));
    // Once threads can be created again, the next add provisions a worker
    // and both tasks run.
    m.shut_down(Some(Duration::from_secs(10))).unwrap();
    drop(m);
    raise_thread_limit();
    m2.add(nop(), 0, GroupKey::DEFAULT, &[]).unwrap();
    assert_eq!(drain(&m2), 3, "both tasks completed once a thread could be created");
    println!("recovered: {:?}", m2.stats());
    m2.shut_down(Some(Duration::from_secs(10))).unwrap();
    drop(m2);
    assert_all_freed("spawn failures");
    println!("CHILD OK");
}

#[cfg(target_os = "linux")]
#[test]
fn worker_threads_that_cannot_be_created() {
    // In this process nothing limits threads: no failure is reported.
    let m = manager(4, true);
    for _ in 0..8 {
        m.add(Job::pass_through(Owned::new(std::ptr::null_mut(), None)), 0, GroupKey::DEFAULT, &[]).unwrap();
    }
    drain(&m);
    assert_eq!(m.stats().spawn_failures, 0);
    m.shut_down(None).unwrap();

    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "spawn_failure_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = stdout.lines().find(|l| l.starts_with("SKIP:")) {
        eprintln!("worker_threads_that_cannot_be_created: not testable here ({line})");
        return;
    }
    assert!(out.status.success() && stdout.contains("CHILD OK"), "child failed:\n{stdout}\n{stderr}");
    for key in ["limited: ", "no thread at all: ", "recovered: "] {
        if let Some(l) = stdout.lines().find_map(|l| l.find(key).map(|i| &l[i..])) {
            eprintln!("spawn failures: {l}");
        }
    }
}
