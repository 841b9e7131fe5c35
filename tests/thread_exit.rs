//! Host code that ends a worker's thread with `pthread_exit` (Windows:
//! `ExitThread`; CPython does so to a thread that calls Python during
//! interpreter shutdown, with `_endthreadex` on Windows): the
//! process goes on, the task fails with btm's message, the worker is
//! replaced by the host's next wait, and the manager is destroyed without
//! waiting for the ended thread. (tests/c/thread_exit.c covers hooks, free
//! functions and the notify callback from C.)
//!
//! Linux (x86_64 and aarch64: where the frame that stops `pthread_exit`'s
//! forced unwind exists, `engine::foreign`) and Windows (`ExitThread` does
//! not unwind; run under Wine by tests/windows/run.sh).
#![cfg(any(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")), windows))]

use std::ffi::{c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};

use btm::engine::{Manager, TaskContext};
use btm::ffi::event::*;
use btm::ffi::manager::*;
use btm::ffi::status::btm_status::*;
use btm::ffi::task::*;

static RAN: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_free(_: *mut c_void) {
    FREED.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn plain(_: *mut c_void, _: *mut TaskContext) {
    RAN.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn end_thread(_: *mut c_void, _: *mut TaskContext) {
    // SAFETY: ends the calling thread, which btm's frame lets it do.
    #[cfg(unix)]
    unsafe {
        libc::pthread_exit(null_mut())
    }
    // SAFETY: ends the calling thread (no unwinding on Windows).
    #[cfg(windows)]
    unsafe {
        ExitThread(0)
    }
}

#[cfg(windows)]
#[link(name = "kernel32")]
extern "system" {
    fn ExitThread(code: u32) -> !;
}

fn create(threads: i32) -> *mut Manager {
    let mut cfg = std::mem::MaybeUninit::<btm_config>::uninit();
    // SAFETY: writable config, then read after init.
    unsafe {
        assert_eq!(btm_config_init(cfg.as_mut_ptr()), BTM_STATUS_OK);
        let mut cfg = cfg.assume_init();
        cfg.max_threads = threads;
        cfg.start_processing = true;
        let mut m = null_mut();
        assert_eq!(btm_create(&cfg, &mut m), BTM_STATUS_OK);
        m
    }
}

/// Polls until `n` task events came; returns (the ids of failures with
/// btm's message, other failures, completions).
fn events(m: *mut Manager, n: usize) -> (Vec<u64>, usize, usize) {
    let (mut ended, mut other, mut ok) = (Vec::new(), 0, 0);
    while ended.len() + other + ok < n {
        // SAFETY: a live manager and a buffer of 16 events.
        unsafe {
            assert_eq!(btm_wait_events(m, 20_000), BTM_STATUS_OK, "events stopped coming");
            let mut ev: [btm_event; 16] = std::mem::zeroed();
            let mut got = 0usize;
            assert_eq!(btm_poll_events(m, ev.as_mut_ptr(), 16, &mut got), BTM_STATUS_OK);
            for e in &ev[..got] {
                if e.kind == btm_event_kind::BTM_EVENT_TASK_FAILED as u32 {
                    let msg = CStr::from_ptr(e.message).to_string_lossy();
                    if msg.contains("ended inside host code") {
                        ended.push(e.task_id);
                    } else {
                        other += 1;
                    }
                } else if e.kind == btm_event_kind::BTM_EVENT_TASK_COMPLETED as u32 {
                    ok += 1;
                }
            }
        }
    }
    (ended, other, ok)
}

#[test]
fn a_task_that_ends_its_thread_fails_and_the_manager_goes_on() {
    let m = create(2);
    // SAFETY: a live manager; functions and free functions as the API
    // expects.
    unsafe {
        let (mut bad, mut id) = (0u64, 0u64);
        assert_eq!(
            btm_add_task(
                m,
                Some(end_thread),
                1 as *mut c_void,
                Some(count_free),
                5,
                std::ptr::null(),
                std::ptr::null(),
                0,
                &mut bad
            ),
            BTM_STATUS_OK
        );
        // A task waiting for the one that ends its thread (the locked path).
        let mut down = 0u64;
        assert_eq!(
            btm_add_task(m, Some(plain), 2 as *mut c_void, Some(count_free), 0, std::ptr::null(), &bad, 1, &mut down),
            BTM_STATUS_OK
        );
        for i in 0..20usize {
            assert_eq!(
                btm_add_task(
                    m,
                    Some(plain),
                    (10 + i) as *mut c_void,
                    Some(count_free),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    &mut id
                ),
                BTM_STATUS_OK
            );
        }
        assert_eq!(btm_wait_idle(m, 20_000), BTM_STATUS_OK);
        let (ended, other, ok) = events(m, 22);
        // The task that ended its thread failed with btm's message, and
        // its downstream task with the same failure (a cascade shares it).
        assert_eq!(ended, vec![bad, down]);
        assert_eq!(other, 0);
        assert_eq!(ok, 20);
        assert_eq!(RAN.load(Ordering::SeqCst), 20);
        btm_destroy(m);
        // Everything but the ended task's userdata (its task never
        // returned) was freed.
        assert_eq!(FREED.load(Ordering::SeqCst), 21);
    }
}
