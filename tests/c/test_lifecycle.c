/* Lifecycle: pause/start, shut down (queued, running, timeout path),
 * destroy, waits, progress, stats, thread hooks, version and status
 * strings, result ownership. SEMANTICS parity 2, 3, 11 and "a C ABI adds". */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#ifndef _WIN32
#include <sys/wait.h>
#include <unistd.h>
#endif

TEST(paused_by_default) {
    btm_config cfg;
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    CHECK_EQ(cfg.struct_size, sizeof(btm_config));
    CHECK_EQ(cfg.max_threads, 0);
    CHECK(!cfg.start_processing);
    CHECK(cfg.thread_start == NULL && cfg.thread_stop == NULL && cfg.thread_hook_free == NULL);
    btm_manager *m = NULL;
    REQUIRE_ST(btm_create(NULL, &m), BTM_STATUS_OK); /* NULL config: defaults */
    REQUIRE(m);
    btm_task_id t = 0;
    CHECK_ST(add_spec(m, spec_new(1, NO_RESULT), 0, NULL, NULL, 0, &t), BTM_STATUS_OK);
    /* Paused: the task never starts; wait_idle times out. */
    CHECK_ST(btm_wait_idle(m, 50), BTM_STATUS_TIMED_OUT);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, 1);
    CHECK_EQ(s.threads, 0);
    CHECK_EQ(runlog_count(), 0);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    CHECK_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    CHECK_EQ(runlog_count(), 1);
    btm_destroy(m); /* the completed event is never polled: freed here */
}

/* pause/start are idempotent; pause lets a running task finish and report
 * but starts nothing new until start. */
TEST(pause_start_idempotent) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_OK);
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_OK);
    gate *g = gate_new();
    btm_task_id r = add_gated(m, 1, 11, g, 10, NULL, NULL, 0);
    btm_task_id q = add_simple(m, 2, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_OK);
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_OK);
    gate_open(g);
    evlog l;
    evlog_init(&l);
    REQUIRE(poll_until_count(m, &l, 1, WAIT_MS)); /* the running one reports */
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, r));
    /* q stays queued while paused. */
    CHECK_ST(btm_wait_idle(m, 50), BTM_STATUS_TIMED_OUT);
    CHECK_EQ(runlog_find(2), -1);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, 1);
    CHECK_EQ(s.running, 0);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, q), 1);
    evlog_free(&l);
    rm(m);
}

/* Shut down with queued tasks only: OK, still_running 0, queued userdata
 * freed on this thread before it returns, no event afterwards, every later
 * call reports SHUT_DOWN; a second shut down ALREADY_SHUT_DOWN. */
TEST(shut_down_with_queued_tasks) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    btm_task_id ids[5];
    for (int i = 0; i < 5; i++) ids[i] = add_simple(m, i, 10 + i, 0, NULL, NULL, 0);
    btm_task_id pt = add_pass(m, 0, NULL, ids, 5, 99);
    (void)pt;
    size_t still = 777;
    REQUIRE_ST(btm_shut_down(m, WAIT_MS, &still), BTM_STATUS_OK);
    CHECK_EQ(still, 0);
    CHECK_EQ(live_objects(), 0);
    CHECK_EQ(runlog_count(), 0);
    evlog l;
    evlog_init(&l);
    btm_event evs[4];
    size_t n = 99;
    btm_status st = btm_poll_events(m, evs, 4, &n);
    CHECK_EQ(st, BTM_STATUS_OK); /* nothing to deliver, ever */
    CHECK_EQ(n, 0);
    still = 777;
    CHECK_ST(btm_shut_down(m, WAIT_MS, &still), BTM_STATUS_ALREADY_SHUT_DOWN);
    CHECK_ST(btm_shut_down(m, 0, NULL), BTM_STATUS_ALREADY_SHUT_DOWN);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_SHUT_DOWN);
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_SHUT_DOWN);
    CHECK_ST(btm_wait_events(m, 10), BTM_STATUS_SHUT_DOWN);
    CHECK_ST(btm_set_max_threads(m, 2), BTM_STATUS_SHUT_DOWN);
    btm_task_id id = 5555;
    CHECK_ST(add_spec(m, spec_new(9, NO_RESULT), 0, NULL, NULL, 0, &id), BTM_STATUS_SHUT_DOWN);
    CHECK_EQ(id, 5555);
    CHECK_ST(btm_add_pass_through_task(m, 0, NULL, NULL, 0, obj_new(1), obj_free, &id),
             BTM_STATUS_SHUT_DOWN);
    CHECK_EQ(live_objects(), 0); /* rejected userdata freed by the call */
    CHECK_ST(btm_stop_task(m, ids[0], true, true, NULL), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_wait_idle(m, 10), BTM_STATUS_OK);
    btm_stats s;
    CHECK_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued + s.blocked + s.running + s.undelivered + s.threads, 0);
    evlog_free(&l);
    rm(m);
}

/* A running task at shut down with no limit: shut down waits for it (the
 * task sees btm_context_is_stopped and returns), then OK; its result and
 * outcome are dropped, no event. */
static void hook_until_stopped(spec *s, btm_task_context *ctx) {
    gate_pass(s->before);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (!btm_context_is_stopped(ctx) && now_ms() < deadline) sleep_ms(1);
    if (!btm_context_is_stopped(ctx)) t_fail(__FILE__, __LINE__, "task never saw its stop");
}

TEST(shut_down_waits_for_running_task) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    gate *g = gate_new();
    gate_open(g); /* only used to count arrival */
    spec *s = spec_new(1, 11);
    s->hook = hook_until_stopped;
    s->before = g;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(g, 2, WAIT_MS)); /* spec_task passed it, then the hook */
    btm_task_id q = add_simple(m, 2, NO_RESULT, -1, NULL, &id, 1); /* blocked */
    (void)q;
    size_t still = 99;
    REQUIRE_ST(btm_shut_down(m, BTM_WAIT_FOREVER, &still), BTM_STATUS_OK);
    CHECK_EQ(still, 0);
    /* OK means no btm thread will call host code again: everything freed. */
    CHECK_EQ(live_objects(), 0);
    evlog l;
    evlog_init(&l);
    btm_event evs[4];
    size_t n = 0;
    btm_status st = btm_poll_events(m, evs, 4, &n);
    CHECK_EQ(st, BTM_STATUS_OK); /* nothing to deliver, ever */
    CHECK_EQ(n, 0);
    CHECK_EQ(runlog_find(2), -1);
    evlog_free(&l);
    rm(m);
}

/* The timeout path: a task blocked on a gate at shut down. TIMED_OUT with
 * still_running 1; the task's userdata is not freed under its feet; after
 * the gate opens, the userdata is freed (on the worker) and the thread
 * exits; destroy then returns without waiting again. */
TEST(shut_down_timeout_with_blocked_task) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    gate *g = gate_new();
    btm_task_id r = add_gated(m, 1, 11, g, 0, NULL, NULL, 0);
    gate *g2 = gate_new();
    btm_task_id r2 = add_gated(m, 2, 12, g2, 0, NULL, NULL, 0);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    REQUIRE(gate_wait_arrived(g2, 1, WAIT_MS));
    btm_task_id q = add_simple(m, 3, NO_RESULT, 0, NULL, NULL, 0);
    (void)r; (void)r2; (void)q;
    /* The queued one is freed by shut down; the two running ones are not. */
    size_t still = 0;
    uint64_t t0 = now_ms();
    REQUIRE_ST(btm_shut_down(m, 100, &still), BTM_STATUS_TIMED_OUT);
    uint64_t dt = now_ms() - t0;
    CHECK(dt >= 90);
    CHECK(dt < WAIT_MS);
    CHECK_EQ(still, 2);
    CHECK_EQ(live_objects(), 2);
    CHECK_EQ(runlog_find(3), -1);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.running, 2);
    gate_open(g);
    /* Wait until the first task's userdata was freed by its worker. */
    uint64_t deadline = now_ms() + WAIT_MS;
    while (live_objects() > 1 && now_ms() < deadline) sleep_ms(1);
    CHECK_EQ(live_objects(), 1);
    evlog l;
    evlog_init(&l);
    btm_event evs[4];
    size_t n = 0;
    btm_status st = btm_poll_events(m, evs, 4, &n);
    CHECK_EQ(st, BTM_STATUS_OK); /* nothing to deliver, ever */
    CHECK_EQ(n, 0);
    /* destroy with one task still blocked: it must not wait for it again,
     * and must not free its userdata under its feet. */
    forget_manager(m);
    t0 = now_ms();
    btm_destroy(m);
    CHECK(now_ms() - t0 < WAIT_MS / 2);
    CHECK_EQ(live_objects(), 1);
    gate_open(g2);
    CHECK(wait_all_freed(WAIT_MS));
    evlog_free(&l);
}

/* destroy without shut down: queued, blocked, finished-unpolled tasks and
 * the last poll's results are all freed. */
TEST(destroy_frees_everything) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, 11, 0, NULL, NULL, 0);
    btm_task_id b = add_simple(m, 2, 12, 0, NULL, NULL, 0);
    evlog l;
    evlog_init(&l);
    REQUIRE(poll_until_count(m, &l, 1, WAIT_MS)); /* a's result held by the poll */
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);   /* b finished, unpolled */
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id c = add_simple(m, 3, 13, 0, NULL, NULL, 0);
    add_simple(m, 4, 14, 0, NULL, &c, 1);
    add_pass(m, 0, NULL, &b, 1, 15);
    (void)a;
    CHECK(live_objects() > 0);
    rm(m);
    CHECK_EQ(live_objects(), 0);
    evlog_free(&l);
}

/* btm_destroy frees the last poll's results (and everything else the
 * manager owns) before it returns: after it, no free function may run.
 * Repeated with 2 workers: the problem it catches is timing-dependent. */
static void hook_work(spec *s, btm_task_context *ctx) {
    (void)ctx;
    sleep_ms((unsigned)s->arg); /* stands for real work */
}

TEST(destroy_frees_before_returning) {
    for (int round = 0; round < 30; round++) {
        btm_manager *m = mk(2, true);
        REQUIRE(m);
        btm_task_id ids[4];
        for (int i = 0; i < 3; i++) {
            spec *s = spec_new(i, 10 + i);
            s->hook = hook_work;
            s->arg = 2;
            REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &ids[i]), BTM_STATUS_OK);
        }
        ids[3] = add_pass(m, 0, NULL, ids, 3, 13);
        /* The usual host loop: wait for events, drain them. */
        evlog l;
        evlog_init(&l);
        REQUIRE(poll_until_count(m, &l, 5, WAIT_MS)); /* 4 completions + group finished */
        evlog_free(&l);
        /* The last poll holds the results. */
        if (round % 2 == 0) CHECK_ST(btm_shut_down(m, WAIT_MS, NULL), BTM_STATUS_OK);
        rm(m);
        if (live_objects() != 0) {
            t_fail(__FILE__, __LINE__,
                   "round %d: %ld objects not yet freed when btm_destroy returned (freed later, "
                   "by a btm thread)", round, live_objects());
            break;
        }
    }
}

/* Progress events: coalesced (at most one undelivered per task, the latest
 * wins), clamped, NaN rejected, none after the final event, withdrawn by a
 * stop, NOT_FOUND for a stopped task. */
static void hook_progress(spec *s, btm_task_context *ctx) {
    gate *reported = s->ptr;
    gate *cont = (gate *)(uintptr_t)s->arg;
    CHECK_ST(btm_context_report_progress(ctx, 0.1, "p1"), BTM_STATUS_OK);
    CHECK_ST(btm_context_report_progress(ctx, 0.2, "p2"), BTM_STATUS_OK);
    CHECK_ST(btm_context_report_progress(ctx, 0.3, "p3"), BTM_STATUS_OK);
    CHECK_ST(btm_context_report_progress(ctx, NAN, "nan"), BTM_STATUS_INVALID_ARGUMENT);
    CHECK_ST(btm_context_report_progress(NULL, 0.5, "x"), BTM_STATUS_NULL_ARGUMENT);
    gate_pass(reported); /* round 1 reported */
    gate_pass(cont);
    CHECK_ST(btm_context_report_progress(ctx, 1.5, NULL), BTM_STATUS_OK); /* clamped to 1 */
    gate_pass(reported);
    gate_pass((gate *)(uintptr_t)s->arg2);
    CHECK_ST(btm_context_report_progress(ctx, -3.0, "neg"), BTM_STATUS_OK); /* clamped to 0 */
    /* returns: completes; the progress queued before stays before it */
}

TEST(progress_coalesced) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    gate *reported = gate_new();
    gate *cont = gate_new();
    gate *cont2 = gate_new();
    gate_open(reported);
    spec *s = spec_new(1, 11);
    s->hook = hook_progress;
    s->ptr = reported;
    s->arg = (uint64_t)(uintptr_t)cont;
    s->arg2 = (uint64_t)(uintptr_t)cont2;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(reported, 1, WAIT_MS));
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    REQUIRE_EQ(l.n, 1);
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_PROGRESS, id));
    CHECK(fabs(l.v[0].progress - 0.3) < 1e-12);
    CHECK_STR(l.v[0].message, "p3");
    CHECK(!l.v[0].has_details);
    gate_open(cont);
    REQUIRE(gate_wait_arrived(reported, 2, WAIT_MS));
    poll_drain(m, &l);
    REQUIRE_EQ(l.n, 2);
    CHECK(ev_is(&l, 1, BTM_EVENT_TASK_PROGRESS, id));
    CHECK(l.v[1].progress == 1.0);
    CHECK(!l.v[1].has_message);
    gate_open(cont2);
    REQUIRE(settle(m, &l));
    REQUIRE_EQ(l.n, 5);
    CHECK(ev_is(&l, 2, BTM_EVENT_TASK_PROGRESS, id));
    CHECK(l.v[2].progress == 0.0);
    CHECK(ev_is(&l, 3, BTM_EVENT_TASK_COMPLETED, id));
    CHECK_EQ(l.v[4].kind, BTM_EVENT_GROUP_FINISHED);
    evlog_free(&l);
    rm(m);
}

static void hook_progress_then_wait(spec *s, btm_task_context *ctx) {
    CHECK_ST(btm_context_report_progress(ctx, 0.5, "half"), BTM_STATUS_OK);
    gate_pass(s->ptr);              /* reported */
    gate_pass((gate *)(uintptr_t)s->arg); /* host stopped us */
    CHECK(btm_context_is_stopped(ctx));
    CHECK_ST(btm_context_report_progress(ctx, 0.7, "after stop"), BTM_STATUS_NOT_FOUND);
}

TEST(progress_withdrawn_by_stop) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    gate *reported = gate_new();
    gate *cont = gate_new();
    gate_open(reported);
    spec *s = spec_new(1, 11);
    s->hook = hook_progress_then_wait;
    s->ptr = reported;
    s->arg = (uint64_t)(uintptr_t)cont;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(reported, 1, WAIT_MS));
    btm_stats st;
    REQUIRE_ST(btm_get_stats(m, &st), BTM_STATUS_OK);
    CHECK_EQ(st.undelivered, 1);
    REQUIRE_ST(btm_stop_task(m, id, true, true, NULL), BTM_STATUS_OK);
    gate_open(cont);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(l.n, 0);
    evlog_free(&l);
    rm(m);
}

/* btm_wait_events / btm_wait_idle with timeouts; WOULD_DEADLOCK from inside
 * a task; wait_events from a task simply waits. */
static void hook_waits(spec *s, btm_task_context *ctx) {
    btm_manager *m = btm_context_manager(ctx);
    CHECK(m != NULL);
    CHECK_ST(btm_wait_idle(m, 0), BTM_STATUS_WOULD_DEADLOCK);
    CHECK_ST(btm_wait_idle(m, BTM_WAIT_FOREVER), BTM_STATUS_WOULD_DEADLOCK);
    btm_status st = btm_wait_events(m, 20);
    CHECK(st == BTM_STATUS_OK || st == BTM_STATUS_TIMED_OUT);
    s->arg = 1;
}

typedef struct waiter_arg {
    btm_manager *m;
    btm_status st;
    uint64_t waited_ms;
} waiter_arg;

static void *waiter_thread(void *p) {
    waiter_arg *w = p;
    uint64_t t0 = now_ms();
    w->st = btm_wait_events(w->m, WAIT_MS);
    w->waited_ms = now_ms() - t0;
    return NULL;
}

TEST(wait_events_and_idle) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    CHECK_ST(btm_wait_idle(m, 0), BTM_STATUS_OK); /* nothing to do */
    CHECK_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    uint64_t t0 = now_ms();
    CHECK_ST(btm_wait_events(m, 50), BTM_STATUS_TIMED_OUT);
    CHECK(now_ms() - t0 >= 45);
    CHECK_ST(btm_wait_events(m, 0), BTM_STATUS_TIMED_OUT);
    add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_ST(btm_wait_idle(m, 30), BTM_STATUS_TIMED_OUT); /* paused with a queued task */
    /* A host thread blocked in wait_events wakes up when an event comes. */
    waiter_arg w = {m, BTM_STATUS_PANIC, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, waiter_thread, &w) == 0);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    pthread_join(th, NULL);
    CHECK_ST(w.st, BTM_STATUS_OK);
    CHECK(w.waited_ms < WAIT_MS);
    CHECK_ST(btm_wait_events(m, 0), BTM_STATUS_OK); /* pending: at once */
    CHECK_ST(btm_wait_events(m, BTM_WAIT_FOREVER), BTM_STATUS_OK);
    /* Inside a task. */
    spec *s = spec_new(2, NO_RESULT);
    s->hook = hook_waits;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, id), 1);
    evlog_free(&l);
    rm(m);
}

/* Counters: queued, blocked, running, undelivered, totals, threads. */
TEST(stats_counters) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    btm_stats s;
    memset(&s, 0xff, sizeof s);
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued + s.blocked + s.running + s.undelivered, 0);
    CHECK_EQ(s.completed_total + s.failed_total + s.stopped_total + s.threads, 0);
    CHECK_EQ(s.spawn_failures, 0);
    gate *g = gate_new();
    btm_task_id r = add_gated(m, 1, NO_RESULT, g, 5, NULL, NULL, 0);
    add_simple(m, 2, NO_RESULT, 0, NULL, &r, 1);
    add_failing(m, 3, 0, NULL, &r, 1, "x", "y");
    btm_task_id st = add_simple(m, 4, NO_RESULT, -5, NULL, NULL, 0);
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, 2);
    CHECK_EQ(s.blocked, 2);
    REQUIRE_ST(btm_stop_task(m, st, false, false, NULL), BTM_STATUS_OK);
    REQUIRE_ST(btm_set_max_threads(m, 1), BTM_STATUS_OK);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.running, 1);
    CHECK_EQ(s.blocked, 2);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(s.threads, 1);
    CHECK_EQ(s.stopped_total, 1);
    gate_open(g);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued + s.blocked + s.running, 0);
    CHECK_EQ(s.completed_total, 2);
    CHECK_EQ(s.failed_total, 1);
    /* The 3 final events are queued; the default group's finish is decided
     * when the last of them is polled, so it is not counted yet (see the
     * btm_stats.undelivered documentation) but the poll delivers it. */
    CHECK_EQ(s.undelivered, 3);
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    CHECK_EQ(l.n, 4);
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.undelivered, 0);
    evlog_free(&l);
    rm(m);
}

/* Thread hooks: thread_start / thread_stop once per worker, on the worker;
 * the hook userdata freed once after the last worker exited. */
static atomic_int hook_starts, hook_stops;
static void on_start(void *ud, uint32_t idx) {
    CHECK_EQ(obj_tag(ud), 4242);
    CHECK(idx < 3);
    atomic_fetch_add(&hook_starts, 1);
}
static void on_stop(void *ud, uint32_t idx) {
    CHECK_EQ(obj_tag(ud), 4242);
    (void)idx;
    atomic_fetch_add(&hook_stops, 1);
}

/* A started manager of `max_threads` workers with the counting thread
 * hooks above (and a tracked hook userdata), the counters reset. */
static btm_manager *started_with_thread_hooks(int max_threads) {
    atomic_store(&hook_starts, 0);
    atomic_store(&hook_stops, 0);
    btm_config cfg;
    if (btm_config_init(&cfg) != BTM_STATUS_OK) abort();
    cfg.max_threads = max_threads;
    cfg.start_processing = true;
    cfg.thread_start = on_start;
    cfg.thread_stop = on_stop;
    cfg.thread_hook_userdata = obj_new(4242);
    cfg.thread_hook_free = obj_free;
    btm_manager *m = NULL;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) abort();
    return m;
}

TEST(thread_hooks) {
    /* Repeated: the ordering problems this catches are timing-dependent. */
    for (int round = 0; round < 20; round++) {
        btm_manager *m = started_with_thread_hooks(3);
        gate *g = gate_new();
        for (int i = 0; i < 3; i++) add_gated(m, i, NO_RESULT, g, 0, NULL, NULL, 0);
        REQUIRE(gate_wait_arrived(g, 3, WAIT_MS));
        CHECK_EQ(atomic_load(&hook_starts), 3);
        gate_open(g);
        CHECK_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
        CHECK_EQ(live_objects(), 1); /* the hook userdata */
        size_t still = 9;
        CHECK_ST(btm_shut_down(m, WAIT_MS, &still), BTM_STATUS_OK);
        /* OK: every worker has exited, so thread_stop ran on each. */
        CHECK_EQ(atomic_load(&hook_stops), 3);
        btm_destroy(m);
        /* destroy released the manager: the hook userdata is freed before it
         * returns (no btm thread may call host code afterwards). */
        if (live_objects() != 0) {
            t_fail(__FILE__, __LINE__,
                   "round %d: thread_hook_free had not run when btm_destroy returned", round);
            break;
        }
    }
}

/* A task shuts its manager down (OK: every other worker has exited; its
 * own goes on) and the host destroys the manager while that task still
 * runs. No timed-out shut-down left a worker running, so btm_destroy waits
 * as long as the running task takes, and thread_stop and thread_hook_free
 * have run before it returns (btm.h, btm_config.thread_hook_free: "in
 * btm_destroy ..., or, if a timed-out shut-down left a worker running a
 * task, when that worker exits"). Before the fix btm_destroy returned at
 * once (the shut-down was already done) and the worker ran the host's
 * thread_stop and thread_hook_free after it, when the host may have
 * unloaded the library. */
static atomic_int sdt_called;
static void hook_shut_down_then_linger(spec *s, btm_task_context *ctx) {
    (void)s;
    size_t still = 9;
    CHECK_ST(btm_shut_down(btm_context_manager(ctx), BTM_WAIT_FOREVER, &still), BTM_STATUS_OK);
    atomic_store(&sdt_called, 1);
    sleep_ms(30); /* still running when the host destroys */
}

TEST(destroy_after_a_shut_down_from_a_task_waits_for_it) {
    for (int round = 0; round < 5; round++) {
        atomic_store(&sdt_called, 0);
        btm_manager *m = started_with_thread_hooks(1);
        spec *sp = spec_new(1, NO_RESULT);
        sp->hook = hook_shut_down_then_linger;
        btm_task_id id = 0;
        REQUIRE_ST(add_spec(m, sp, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
        uint64_t deadline = now_ms() + WAIT_MS;
        while (!atomic_load(&sdt_called) && now_ms() < deadline) sleep_ms(1);
        REQUIRE(atomic_load(&sdt_called));
        btm_destroy(m);
        int stops = atomic_load(&hook_stops);
        long live = live_objects();
        if (stops != 1 || live != 0) {
            t_fail(__FILE__, __LINE__,
                   "round %d: when btm_destroy returned: thread_stop ran %d times, %ld objects not freed "
                   "(the task's userdata, the thread-hook userdata)", round, stops, live);
            wait_all_freed(WAIT_MS);
            break;
        }
    }
}

/* btm_shut_down with a timeout of 0 when no task is running: its workers
 * are idle (asleep), not "inside a task that has not returned", so the
 * shut-down is OK with 0 still running, thread_stop has run on each, and
 * btm_destroy frees the thread-hook userdata before it returns (btm.h).
 * Before the fix: TIMED_OUT with still_running 2 (the sleeping workers had
 * not exited yet), and the thread-hook free function ran on a worker after
 * btm_destroy had returned. */
TEST(shut_down_zero_timeout_with_idle_workers) {
    for (int round = 0; round < 20; round++) {
        btm_manager *m = started_with_thread_hooks(2);
        gate *g = gate_new();
        for (int i = 0; i < 2; i++) add_gated(m, i, NO_RESULT, g, 0, NULL, NULL, 0);
        REQUIRE(gate_wait_arrived(g, 2, WAIT_MS));
        gate_open(g);
        CHECK_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
        sleep_ms(2); /* the workers go to sleep */
        btm_stats st;
        CHECK_ST(btm_get_stats(m, &st), BTM_STATUS_OK);
        CHECK_EQ(st.running, 0);
        size_t still = 99;
        btm_status s = btm_shut_down(m, 0, &still);
        if (s != BTM_STATUS_OK || still != 0)
            t_fail(__FILE__, __LINE__, "round %d: shut_down(0) with no running task: %u (%s), still_running %zu",
                   round, (unsigned)s, btm_status_str(s), still);
        else
            CHECK_EQ(atomic_load(&hook_stops), 2);
        btm_destroy(m);
        if (live_objects() != 0) {
            t_fail(__FILE__, __LINE__, "round %d: thread_hook_free had not run when btm_destroy returned", round);
            wait_all_freed(WAIT_MS);
            break;
        }
        if (s != BTM_STATUS_OK) break;
    }
}

/* Results: replacing a result frees the previous one; failing after
 * setting one frees it; NULL data means "no result". */
static obj static_result = {OBJ_ALIVE, 3};

static void hook_results(spec *s, btm_task_context *ctx) {
    (void)s;
    CHECK_ST(btm_context_set_result(ctx, obj_new(1), obj_free), BTM_STATUS_OK);
    long before = live_objects();
    CHECK_ST(btm_context_set_result(ctx, obj_new(2), obj_free), BTM_STATUS_OK);
    CHECK_EQ(live_objects(), before); /* +1 new, -1 replaced */
    CHECK_ST(btm_context_set_result(ctx, NULL, NULL), BTM_STATUS_OK); /* none */
    CHECK_EQ(live_objects(), before - 1);
    /* A result without a free function: btm never frees it. */
    CHECK_ST(btm_context_set_result(ctx, &static_result, NULL), BTM_STATUS_OK);
}

TEST(result_ownership) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    spec *s = spec_new(1, NO_RESULT);
    s->hook = hook_results;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int i = ev_find(&l, BTM_EVENT_TASK_COMPLETED, id);
    REQUIRE(i >= 0);
    REQUIRE_EQ(l.v[i].nres, 1);
    CHECK_EQ(l.v[i].res[0].tag, 3);
    CHECK_EQ(l.v[i].res[0].task_id, id);
    CHECK_EQ(live_objects(), 0);
    poll_drain(m, &l);
    CHECK_EQ(static_result.magic, OBJ_ALIVE);
    evlog_free(&l);
    rm(m);
}

#ifndef _WIN32 /* fork() is POSIX */
/* Fork: in a child made by fork() after btm_create, the parent's manager
 * is a copy without worker threads. Every call given it returns FORKED
 * without touching anything (out-parameters stay as they were), a refused
 * add frees its userdata once, btm_destroy of the copy does nothing (no
 * free function runs for the parent's queued task), and a manager made in
 * the child works. The parent's manager is unaffected. The child reports
 * its own checks (one bit each) through a pipe; alarm() turns a hang in
 * the child into a failure. */
static int fork_child_frees;
static void fork_child_free(void *p) {
    (void)p;
    fork_child_frees++;
}
static int fork_child_runs;
static void fork_child_task(void *p, btm_task_context *ctx) {
    (void)p;
    (void)ctx;
    fork_child_runs++;
}
static int fork_child(btm_manager *m, btm_task_id queued) {
    int bad = 0;
    btm_task_id id = 77;
    if (btm_add_task(m, fork_child_task, (void *)&fork_child_frees, fork_child_free, 0, NULL, NULL, 0, &id) !=
            BTM_STATUS_FORKED ||
        id != 77)
        bad |= 1;
    if (fork_child_frees != 1) bad |= 2;
    btm_event ev[4];
    size_t n = 99;
    if (btm_poll_events(m, ev, 4, &n) != BTM_STATUS_FORKED || n != 99) bad |= 4;
    if (btm_wait_idle(m, BTM_WAIT_FOREVER) != BTM_STATUS_FORKED) bad |= 8;
    if (btm_wait_events(m, BTM_WAIT_FOREVER) != BTM_STATUS_FORKED) bad |= 8;
    if (btm_stop_task(m, queued, false, false, NULL) != BTM_STATUS_FORKED) bad |= 16;
    if (btm_shut_down(m, 0, NULL) != BTM_STATUS_FORKED) bad |= 16;
    btm_stats st;
    if (btm_get_stats(m, &st) != BTM_STATUS_FORKED) bad |= 32;
    if (btm_start_processing(m) != BTM_STATUS_FORKED) bad |= 32;
    btm_destroy(m); /* the copy: nothing happens */
    if (fork_child_frees != 1) bad |= 64;
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = 1;
    cfg.start_processing = true;
    btm_manager *c = NULL;
    if (btm_create(&cfg, &c) != BTM_STATUS_OK) return bad | 128;
    if (btm_add_task(c, fork_child_task, NULL, NULL, 0, NULL, NULL, 0, &id) != BTM_STATUS_OK ||
        btm_wait_idle(c, WAIT_MS) != BTM_STATUS_OK || fork_child_runs != 1)
        bad |= 128;
    btm_destroy(c);
    return bad;
}

TEST(forked_child_refuses_the_parents_manager) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    CHECK(add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0) != 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK); /* the workers exist */
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id queued = add_simple(m, 2, NO_RESULT, 0, NULL, NULL, 0); /* stays queued */
    CHECK(queued != 0);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(60);
        int bad = fork_child(m, queued);
        /* Through a pipe, not the exit code: valgrind turns the child's
         * exit code into 1 for the parent's memory the child never frees
         * (the copy of the manager, its threads' blocks). */
        ssize_t w = write(fds[1], &bad, sizeof bad);
        _exit(w == (ssize_t)sizeof bad ? 0 : 1);
    }
    close(fds[1]);
    int bad = -1;
    CHECK_EQ(read(fds[0], &bad, sizeof bad), (long long)sizeof bad);
    close(fds[0]);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status)); /* not killed by its alarm */
    CHECK_EQ(bad, 0);
    /* The parent's manager and its queued task are untouched. */
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    CHECK_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    CHECK(runlog_find(2) >= 0);
    rm(m);
}
#endif

/* Static strings: version and status descriptions. */
TEST(version_and_status_strings) {
    CHECK_STR(btm_version(), BTM_VERSION);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", BTM_VERSION_MAJOR, BTM_VERSION_MINOR,
             BTM_VERSION_PATCH);
    CHECK_STR(btm_version(), buf);
    const char *seen[19];
    for (uint32_t c = 0; c <= BTM_STATUS_UNSUPPORTED; c++) {
        const char *d = btm_status_str(c);
        CHECK(d != NULL && d[0] != 0);
        seen[c] = d;
        for (uint32_t k = 0; k < c; k++) CHECK(strcmp(seen[k], d) != 0);
        CHECK(strcmp(d, "unknown status code") != 0);
    }
    CHECK_STR(btm_status_str(BTM_STATUS_UNSUPPORTED + 1), "unknown status code");
    CHECK_STR(btm_status_str(UINT32_MAX), "unknown status code");
    CHECK_EQ(btm_status_str(0), btm_status_str(0)); /* static */
}

/* Ids are unique, increasing and never 0. */
TEST(ids_unique_increasing) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    btm_task_id prev = 0;
    for (int i = 0; i < 200; i++) {
        btm_task_id id = i % 3 == 0 ? add_pass(m, 0, NULL, NULL, 0, NO_RESULT)
                                    : add_simple(m, i, NO_RESULT, 0, NULL, NULL, 0);
        CHECK(id > prev);
        prev = id;
        if (i % 50 == 0) CHECK_ST(btm_stop_all_tasks(m, NULL), BTM_STATUS_OK);
    }
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    evlog_free(&l);
    rm(m);
}

const test_case tests_lifecycle[] = {
    TEST_ENTRY(paused_by_default),
    TEST_ENTRY(pause_start_idempotent),
    TEST_ENTRY(shut_down_with_queued_tasks),
    TEST_ENTRY(shut_down_waits_for_running_task),
    TEST_ENTRY(shut_down_timeout_with_blocked_task),
    TEST_ENTRY(destroy_frees_everything),
    TEST_ENTRY(destroy_frees_before_returning),
    TEST_ENTRY(progress_coalesced),
    TEST_ENTRY(progress_withdrawn_by_stop),
    TEST_ENTRY(wait_events_and_idle),
    TEST_ENTRY(stats_counters),
    TEST_ENTRY(thread_hooks),
    TEST_ENTRY(shut_down_zero_timeout_with_idle_workers),
    TEST_ENTRY(destroy_after_a_shut_down_from_a_task_waits_for_it),
    TEST_ENTRY(result_ownership),
#ifndef _WIN32
    TEST_ENTRY(forked_child_refuses_the_parents_manager),
#endif
    TEST_ENTRY(version_and_status_strings),
    TEST_ENTRY(ids_unique_increasing),
    {NULL, NULL},
};
