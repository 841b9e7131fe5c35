//! The C boundary called exactly as C would: NULLs, zero lengths, bad ids,
//! bad strings, bad config sizes, calls after shut down. Every rejected
//! pointer handed over with a free function is still freed exactly once.

use std::ffi::{c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use btm::engine::{Manager, TaskContext};
use btm::ffi::context::*;
use btm::ffi::event::*;
use btm::ffi::manager::*;
use btm::ffi::status::btm_status::{self, *};
use btm::ffi::status::{btm_status_str, btm_version};
use btm::ffi::task::*;

static FREED: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn count_free(_: *mut c_void) {
    FREED.fetch_add(1, Ordering::SeqCst);
}
unsafe extern "C" fn task(_: *mut c_void, ctx: *mut TaskContext) {
    // SAFETY: the context of this running task.
    unsafe { btm_context_set_result(ctx, 7 as *mut c_void, None) };
}

fn create(start: bool) -> *mut Manager {
    let mut cfg = std::mem::MaybeUninit::<btm_config>::uninit();
    // SAFETY: writable config, then read after init.
    unsafe {
        assert_eq!(btm_config_init(cfg.as_mut_ptr()), BTM_STATUS_OK);
        let mut cfg = cfg.assume_init();
        cfg.max_threads = 1;
        cfg.start_processing = start;
        let mut m = null_mut();
        assert_eq!(btm_create(&cfg, &mut m), BTM_STATUS_OK);
        m
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn null_handles_and_out_pointers_are_rejected() {
    let _s = serial();
    // SAFETY: every pointer passed is NULL or valid.
    unsafe {
        let mut id = 0u64;
        let mut n = 0usize;
        let mut ev = std::mem::zeroed::<btm_event>();
        let mut g = std::mem::zeroed::<btm_group>();
        assert_eq!(btm_create(null(), null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_config_init(null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_start_processing(null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_pause_processing(null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_shut_down(null_mut(), 0, null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_poll_events(null_mut(), &mut ev, 1, &mut n), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_stop_task(null_mut(), 1, true, true, null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_stop_all_tasks(null_mut(), null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_next_group_id(null_mut(), &mut g), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_wait_events(null_mut(), 0), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_wait_idle(null_mut(), 0), BTM_STATUS_NULL_ARGUMENT);
        btm_destroy(null_mut());

        let before = FREED.load(Ordering::SeqCst);
        // NULL manager: the userdata is still freed.
        let s = btm_add_task(null_mut(), Some(task), 1 as *mut c_void, Some(count_free), 0, null(), null(), 0, &mut id);
        assert_eq!(s, BTM_STATUS_NULL_ARGUMENT);
        let m = create(false);
        // NULL function, NULL out pointer: freed too.
        assert_eq!(
            btm_add_task(m, None, 1 as *mut c_void, Some(count_free), 0, null(), null(), 0, &mut id),
            BTM_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            btm_add_task(m, Some(task), 1 as *mut c_void, Some(count_free), 0, null(), null(), 0, null_mut()),
            BTM_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            btm_add_pass_through_task(m, 0, null(), null(), 0, 1 as *mut c_void, Some(count_free), null_mut()),
            BTM_STATUS_NULL_ARGUMENT
        );
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 4);
        assert_eq!(btm_poll_events(m, null_mut(), 4, &mut n), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_poll_events(m, &mut ev, 1, null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_poll_events(m, &mut ev, 0, &mut n), BTM_STATUS_ZERO_CAPACITY);
        assert_eq!(btm_group_named(m, null(), &mut g), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_get_event_fd(m, null_mut()), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(btm_get_event_handle(m, null_mut()), BTM_STATUS_NULL_ARGUMENT);
        // The other platform's sleep object: UNSUPPORTED, nothing written.
        let (mut fd, mut handle) = (-7, 7 as *mut c_void);
        if cfg!(windows) {
            assert_eq!(btm_get_event_fd(m, &mut fd), BTM_STATUS_UNSUPPORTED);
        } else {
            assert_eq!(btm_get_event_handle(m, &mut handle), BTM_STATUS_UNSUPPORTED);
        }
        assert_eq!((fd, handle), (-7, 7 as *mut c_void));
        assert_eq!(btm_get_stats(m, null_mut()), BTM_STATUS_NULL_ARGUMENT);
        // Context functions with NULL.
        assert_eq!(btm_context_task_id(null()), 0);
        assert!(btm_context_manager(null()).is_null());
        assert!(!btm_context_is_stopped(null()));
        assert_eq!(btm_context_fail(null_mut(), null(), null()), BTM_STATUS_NULL_ARGUMENT);
        let before = FREED.load(Ordering::SeqCst);
        assert_eq!(btm_context_set_result(null_mut(), 1 as *mut c_void, Some(count_free)), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 1);
        assert_eq!(btm_context_report_progress(null(), 0.5, null()), BTM_STATUS_NULL_ARGUMENT);
        let (mut vals, mut cnt) = (null::<btm::engine::Value>(), 0usize);
        assert_eq!(btm_context_upstream(null(), &mut vals, &mut cnt), BTM_STATUS_NULL_ARGUMENT);
        btm_destroy(m);
    }
}

#[test]
fn bad_ids_lengths_groups_and_strings() {
    let _s = serial();
    // SAFETY: every pointer passed is NULL or valid.
    unsafe {
        let m = create(false);
        let mut id = 0u64;
        let mut a = 0u64;
        assert_eq!(btm_add_task(m, Some(task), null_mut(), None, 0, null(), null(), 0, &mut a), BTM_STATUS_OK);
        let before = FREED.load(Ordering::SeqCst);
        let never = [a + 100];
        assert_eq!(
            btm_add_task(m, Some(task), 1 as *mut c_void, Some(count_free), 0, null(), never.as_ptr(), 1, &mut id),
            BTM_STATUS_UNKNOWN_UPSTREAM
        );
        assert_eq!(
            btm_add_task(m, Some(task), 1 as *mut c_void, Some(count_free), 0, null(), null(), 3, &mut id),
            BTM_STATUS_INVALID_ARGUMENT
        );
        let bad_group = btm_group { kind: 9, reserved: 0, value: 0 };
        assert_eq!(
            btm_add_task(m, Some(task), 1 as *mut c_void, Some(count_free), 0, &bad_group, null(), 0, &mut id),
            BTM_STATUS_INVALID_GROUP
        );
        let never_named = btm_group { kind: btm_group_kind::BTM_GROUP_KIND_NAMED as u32, reserved: 0, value: 55 };
        assert_eq!(
            btm_add_task(m, Some(task), 1 as *mut c_void, Some(count_free), 0, &never_named, null(), 0, &mut id),
            BTM_STATUS_INVALID_GROUP
        );
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 4);
        // No id was consumed by the rejected adds.
        assert_eq!(btm_add_task(m, Some(task), null_mut(), None, 0, null(), null(), 0, &mut id), BTM_STATUS_OK);
        assert_eq!(id, a + 1);
        // Zero-length upstream with a NULL pointer is fine.
        assert_eq!(btm_add_task(m, Some(task), null_mut(), None, 0, null(), null(), 0, &mut id), BTM_STATUS_OK);

        let mut g = std::mem::zeroed::<btm_group>();
        assert_eq!(btm_group_named(m, c"\xff\xfe".as_ptr(), &mut g), BTM_STATUS_INVALID_UTF8);
        assert_eq!(btm_group_named(m, c"thumbnails".as_ptr(), &mut g), BTM_STATUS_OK);
        assert_eq!(g.kind, btm_group_kind::BTM_GROUP_KIND_NAMED as u32);
        let mut r = std::mem::zeroed::<btm_stop_report>();
        assert_eq!(btm_stop_task(m, 12345, true, true, &mut r), BTM_STATUS_NOT_FOUND);
        assert_eq!(btm_stop_task_group(m, &g, true, true, &mut r), BTM_STATUS_NOT_FOUND);
        assert_eq!(btm_stop_task_group(m, &bad_group, true, true, &mut r), BTM_STATUS_INVALID_GROUP);
        assert_eq!(btm_set_task_priority(m, 12345, 1), BTM_STATUS_NOT_FOUND);
        assert_eq!(btm_context_report_progress(1 as *const TaskContext, f64::NAN, null()), BTM_STATUS_INVALID_ARGUMENT);
        assert_eq!(btm_stop_all_tasks(m, &mut r), BTM_STATUS_OK);
        assert_eq!(r.before_start, 3);
        btm_destroy(m);
    }
}

#[test]
fn config_size_and_thread_counts_are_checked() {
    let _s = serial();
    // SAFETY: every pointer passed is NULL or valid for the size it claims.
    unsafe {
        let mut cfg = std::mem::zeroed::<btm_config>();
        btm_config_init(&mut cfg);
        let mut m = null_mut();
        cfg.max_threads = -1;
        assert_eq!(btm_create(&cfg, &mut m), BTM_STATUS_INVALID_THREAD_COUNT);
        cfg.max_threads = 1_000_000;
        assert_eq!(btm_create(&cfg, &mut m), BTM_STATUS_INVALID_THREAD_COUNT);
        cfg.max_threads = 2;
        cfg.struct_size = 4;
        assert_eq!(btm_create(&cfg, &mut m), BTM_STATUS_INVALID_CONFIG);
        assert!(m.is_null(), "out-parameter untouched on error");
        // An older caller's shorter struct (only the first three fields).
        cfg.struct_size = 9;
        assert_eq!(btm_create(&cfg, &mut m), BTM_STATUS_OK);
        btm_destroy(m);
        // A newer caller's longer struct: zero tail accepted, non-zero not.
        #[repr(C)]
        struct Newer {
            base: btm_config,
            extra: u64,
        }
        let mut newer = Newer { base: cfg, extra: 0 };
        newer.base.struct_size = std::mem::size_of::<Newer>() as u32;
        let mut m = null_mut();
        assert_eq!(btm_create(&newer.base, &mut m), BTM_STATUS_OK);
        btm_destroy(m);
        newer.extra = 1;
        let mut m = null_mut();
        assert_eq!(btm_create(&newer.base, &mut m), BTM_STATUS_INVALID_CONFIG);
        // A bool byte that is neither 0 nor 1: rejected, and the hook
        // userdata it carries is still freed (ownership passes on every call).
        let mut raw = cfg;
        raw.struct_size = std::mem::size_of::<btm_config>() as u32;
        raw.thread_hook_userdata = 1 as *mut c_void;
        raw.thread_hook_free = Some(count_free);
        let p = (&mut raw as *mut btm_config).cast::<u8>().add(std::mem::offset_of!(btm_config, start_processing));
        p.write(7);
        let before = FREED.load(Ordering::SeqCst);
        assert_eq!(btm_create(&raw, &mut m), BTM_STATUS_INVALID_CONFIG);
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 1);
        // NULL config: defaults.
        assert_eq!(btm_create(null(), &mut m), BTM_STATUS_OK);
        assert_eq!(btm_set_max_threads(m, -3), BTM_STATUS_INVALID_THREAD_COUNT);
        btm_destroy(m);
    }
}

#[test]
fn shut_down_twice_and_calls_after_shut_down() {
    let _s = serial();
    // SAFETY: valid pointers.
    unsafe {
        let m = create(true);
        let mut left = 99usize;
        assert_eq!(btm_shut_down(m, BTM_WAIT_FOREVER, &mut left), BTM_STATUS_OK);
        assert_eq!(left, 0);
        assert_eq!(btm_shut_down(m, BTM_WAIT_FOREVER, &mut left), BTM_STATUS_ALREADY_SHUT_DOWN);
        let before = FREED.load(Ordering::SeqCst);
        let mut id = 0;
        assert_eq!(
            btm_add_task(m, Some(task), 1 as *mut c_void, Some(count_free), 0, null(), null(), 0, &mut id),
            BTM_STATUS_SHUT_DOWN
        );
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 1);
        assert_eq!(btm_start_processing(m), BTM_STATUS_SHUT_DOWN);
        assert_eq!(btm_pause_processing(m), BTM_STATUS_SHUT_DOWN);
        assert_eq!(btm_wait_events(m, 10), BTM_STATUS_SHUT_DOWN);
        let mut n = 5usize;
        let mut ev = std::mem::zeroed::<btm_event>();
        assert_eq!(btm_poll_events(m, &mut ev, 1, &mut n), BTM_STATUS_OK);
        assert_eq!(n, 0);
        btm_destroy(m);
    }
}

#[test]
fn events_carry_results_and_named_group_names() {
    let _s = serial();
    // SAFETY: valid pointers.
    unsafe {
        let m = create(true);
        let mut g = std::mem::zeroed::<btm_group>();
        btm_group_named(m, c"thumbnails".as_ptr(), &mut g);
        let mut id = 0;
        assert_eq!(btm_add_task(m, Some(task), null_mut(), None, 3, &g, null(), 0, &mut id), BTM_STATUS_OK);
        assert_eq!(btm_wait_idle(m, 20_000), BTM_STATUS_OK);
        let mut ev = [std::mem::zeroed::<btm_event>(); 4];
        let mut n = 0;
        assert_eq!(btm_poll_events(m, ev.as_mut_ptr(), 4, &mut n), BTM_STATUS_OK);
        assert_eq!(n, 2);
        assert_eq!(ev[0].kind, btm_event_kind::BTM_EVENT_TASK_COMPLETED as u32);
        assert_eq!(ev[0].task_id, id);
        assert_eq!(ev[0].group, g);
        assert_eq!(CStr::from_ptr(ev[0].group_name).to_str(), Ok("thumbnails"));
        let mut name = null();
        assert_eq!(btm_group_name(m, &g, &mut name), BTM_STATUS_OK);
        assert_eq!(name, ev[0].group_name);
        let numbered = btm_group { kind: btm_group_kind::BTM_GROUP_KIND_NUMBERED as u32, reserved: 0, value: 3 };
        assert_eq!(btm_group_name(m, &numbered, &mut name), BTM_STATUS_OK);
        assert!(name.is_null());
        let bogus = btm_group { kind: btm_group_kind::BTM_GROUP_KIND_NAMED as u32, reserved: 0, value: 99 };
        assert_eq!(btm_group_name(m, &bogus, &mut name), BTM_STATUS_INVALID_GROUP);
        assert_eq!(btm_group_name(m, null(), &mut name), BTM_STATUS_NULL_ARGUMENT);
        assert_eq!(ev[0].result_count, 1);
        assert_eq!((*ev[0].results).data as usize, 7);
        assert_eq!((*ev[0].results).task_id, id);
        assert_eq!(ev[1].kind, btm_event_kind::BTM_EVENT_GROUP_FINISHED as u32);
        assert_eq!(ev[1].task_id, 0);
        btm_destroy(m);
    }
}

#[test]
fn status_strings_and_version() {
    for code in 0..=16u32 {
        // SAFETY: static strings.
        let s = unsafe { CStr::from_ptr(btm_status_str(code)) }.to_str().unwrap();
        assert!(!s.is_empty() && s != "unknown status code", "status {code} has a description");
    }
    // SAFETY: static strings.
    unsafe {
        assert_eq!(CStr::from_ptr(btm_status_str(9999)).to_str(), Ok("unknown status code"));
        assert_eq!(CStr::from_ptr(btm_version()).to_str(), Ok(env!("CARGO_PKG_VERSION")));
    }
    assert_eq!(BTM_STATUS_PANIC as u32, 15);
    assert_eq!(BTM_STATUS_TOO_MANY_GROUPS as u32, 16);
    assert_eq!(BTM_STATUS_FORKED as u32, 17);
    assert_eq!(BTM_STATUS_UNSUPPORTED as u32, 18);
    let _: btm_status = BTM_STATUS_OK;
}

/// (Linux's shared object, read with `nm`; tests/windows/run.sh checks
/// btm.dll's export table.)
#[cfg(target_os = "linux")]
#[test]
fn exports_are_only_btm_symbols() {
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/libbtm.so");
    assert!(lib.exists(), "{} missing: run `cargo build --release` first (scripts/test.sh does)", lib.display());
    let out = std::process::Command::new("nm").args(["-D", "--defined-only"]).arg(&lib).output().expect("nm");
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert!(names.len() > 30, "found the exports: {names:?}");
    let foreign: Vec<&&str> = names.iter().filter(|n| !n.starts_with("btm_")).collect();
    assert!(foreign.is_empty(), "non-btm exports: {foreign:?}");
}
