/* Re-entrancy and threads: add / stop / pause / poll / shut down / destroy
 * from inside tasks, free functions calling back into btm, concurrent adds
 * from 4 host threads, a stop/poll stress. SEMANTICS "deliberate fixes"
 * (every function safe from any thread, never deadlocks). */
#include "harness.h"

#include <sched.h>
#include <stdlib.h>

/* ---- add from inside a task ------------------------------------------ */

static atomic_uint_fast64_t child_id, child_pt_id;

static void hook_add_child(spec *s, btm_task_context *ctx) {
    (void)s;
    btm_manager *m = btm_context_manager(ctx);
    btm_task_id self = btm_context_task_id(ctx);
    btm_task_id id = 0;
    /* The child names the running task as its upstream: it waits for it and
     * receives its result. */
    CHECK_ST(add_spec(m, spec_new(100, 1000), 5, NULL, &self, 1, &id), BTM_STATUS_OK);
    atomic_store(&child_id, id);
    btm_task_id pt = 0;
    CHECK_ST(btm_add_pass_through_task(m, 0, NULL, &id, 1, obj_new(2000), obj_free, &pt),
             BTM_STATUS_OK);
    atomic_store(&child_pt_id, pt);
    btm_group g;
    CHECK_ST(btm_group_named(m, "from-task", &g), BTM_STATUS_OK);
    CHECK_ST(btm_next_group_id(m, &g), BTM_STATUS_OK);
    btm_stats st;
    CHECK_ST(btm_get_stats(m, &st), BTM_STATUS_OK);
    CHECK_EQ(st.running, 1);
}

TEST(reentrant_add_from_task) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    spec *s = spec_new(1, 11);
    s->hook = hook_add_child;
    btm_task_id parent = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &parent), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    btm_task_id child = atomic_load(&child_id), pt = atomic_load(&child_pt_id);
    REQUIRE(child > parent);
    int ic = runlog_find(100);
    REQUIRE(ic >= 0);
    run_rec r = runlog_get((size_t)ic);
    REQUIRE_EQ(r.nup, 1);
    CHECK_EQ(r.up[0].task_id, parent);
    CHECK_EQ(r.up[0].tag, 11);
    bool exact = l.n == 4 && ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, parent) &&
                 ev_is(&l, 1, BTM_EVENT_TASK_COMPLETED, child) &&
                 ev_is(&l, 2, BTM_EVENT_TASK_COMPLETED, pt) &&
                 l.v[3].kind == BTM_EVENT_GROUP_FINISHED;
    CHECK(exact);
    if (!exact) evlog_dump(&l, "add from task");
    if (l.n == 4) {
        CHECK_EQ(l.v[2].nres, 2);
        CHECK_EQ(l.v[2].res[0].tag, 2000);
        CHECK_EQ(l.v[2].res[1].tag, 1000);
    }
    evlog_free(&l);
    rm(m);
}

/* ---- stop from inside a task ----------------------------------------- */

static void hook_stop_others_and_self(spec *s, btm_task_context *ctx) {
    btm_manager *m = btm_context_manager(ctx);
    btm_stop_report rep;
    CHECK_ST(btm_stop_task(m, (btm_task_id)s->arg, false, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 2);
    /* Stop itself: it keeps running to the end; its outcome is dropped. */
    CHECK(!btm_context_is_stopped(ctx));
    CHECK_ST(btm_stop_task(m, btm_context_task_id(ctx), false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.while_running, 1);
    CHECK(btm_context_is_stopped(ctx));
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 99};
    CHECK_ST(btm_stop_task_group(m, &g, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 1);
}

TEST(reentrant_stop_from_task) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    spec *s = spec_new(1, 11);
    s->hook = hook_stop_others_and_self;
    btm_task_id self = 0;
    REQUIRE_ST(add_spec(m, s, 10, NULL, NULL, 0, &self), BTM_STATUS_OK);
    btm_task_id victim = add_simple(m, 2, NO_RESULT, 0, NULL, NULL, 0);
    add_simple(m, 3, NO_RESULT, 0, NULL, &victim, 1);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 99};
    add_simple(m, 4, NO_RESULT, 0, &g, NULL, 0);
    btm_task_id survivor = add_simple(m, 5, NO_RESULT, 0, NULL, NULL, 0);
    s->arg = victim;
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(runlog_find(2), -1);
    CHECK_EQ(runlog_find(3), -1);
    CHECK_EQ(runlog_find(4), -1);
    bool exact = l.n == 2 && ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, survivor) &&
                 l.v[1].kind == BTM_EVENT_GROUP_FINISHED;
    CHECK(exact);
    if (!exact) evlog_dump(&l, "stop from task");
    evlog_free(&l);
    rm(m);
}

/* ---- pause / start / set_max_threads from inside a task ------------- */

static void hook_pause(spec *s, btm_task_context *ctx) {
    (void)s;
    btm_manager *m = btm_context_manager(ctx);
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_OK);
    CHECK_ST(btm_set_max_threads(m, 1), BTM_STATUS_OK);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_OK);
}

TEST(reentrant_pause_from_task) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    spec *s = spec_new(1, NO_RESULT);
    s->hook = hook_pause;
    btm_task_id p = 0;
    REQUIRE_ST(add_spec(m, s, 10, NULL, NULL, 0, &p), BTM_STATUS_OK);
    btm_task_id q = add_simple(m, 2, NO_RESULT, 0, NULL, &p, 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(poll_until_count(m, &l, 1, WAIT_MS));
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, p));
    CHECK_ST(btm_wait_idle(m, 50), BTM_STATUS_TIMED_OUT); /* q ready but paused */
    CHECK_EQ(runlog_find(2), -1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, q), 1);
    evlog_free(&l);
    rm(m);
}

/* ---- poll from inside a task ----------------------------------------- */

static atomic_int polled_kind;
static atomic_uint_fast64_t polled_id;
static atomic_size_t polled_n;

static void hook_poll(spec *s, btm_task_context *ctx) {
    (void)s;
    btm_manager *m = btm_context_manager(ctx);
    btm_event evs[8];
    size_t n = 0;
    CHECK_ST(btm_poll_events(m, evs, 8, &n), BTM_STATUS_OK);
    atomic_store(&polled_n, n);
    if (n > 0) {
        atomic_store(&polled_kind, (int)evs[0].kind);
        atomic_store(&polled_id, evs[0].task_id);
        CHECK(evs[0].result_count == 1 && evs[0].results != NULL);
        if (evs[0].result_count == 1 && evs[0].results)
            CHECK_EQ(obj_tag(evs[0].results[0].data), 11);
    }
    CHECK_ST(btm_wait_events(m, 0), BTM_STATUS_TIMED_OUT);
}

TEST(reentrant_poll_from_task) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 1};
    btm_task_id first = add_simple(m, 1, 11, 10, &g, NULL, 0);
    spec *s = spec_new(2, NO_RESULT);
    s->hook = hook_poll;
    btm_task_id poller = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, &first, 1, &poller), BTM_STATUS_OK);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    /* The task took `first`'s completion and g's finish; the host gets the
     * rest. Every event is delivered exactly once. */
    CHECK_EQ(atomic_load(&polled_n), 2);
    CHECK_EQ(atomic_load(&polled_kind), BTM_EVENT_TASK_COMPLETED);
    CHECK_EQ(atomic_load(&polled_id), first);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, first), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, poller), 1);
    CHECK_EQ(ev_count_group(&l, &g), 0);
    evlog_free(&l);
    rm(m);
}

/* ---- shut down from inside a task ------------------------------------ */

static atomic_int sd_status;
static atomic_size_t sd_still;

static void hook_shut_down(spec *s, btm_task_context *ctx) {
    btm_manager *m = btm_context_manager(ctx);
    gate *other = s->ptr;
    CHECK(gate_wait_arrived(other, 1, WAIT_MS));
    size_t still = 999;
    /* Does not wait for its own worker; the other one is still blocked. */
    atomic_store(&sd_status, (int)btm_shut_down(m, 0, &still));
    atomic_store(&sd_still, still);
    CHECK(btm_context_is_stopped(ctx));
    btm_task_id id = 1234;
    CHECK_ST(add_spec(m, spec_new(50, NO_RESULT), 0, NULL, NULL, 0, &id), BTM_STATUS_SHUT_DOWN);
    CHECK_EQ(id, 1234);
    CHECK_ST(btm_shut_down(m, 0, NULL), BTM_STATUS_ALREADY_SHUT_DOWN);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_SHUT_DOWN);
}

TEST(reentrant_shut_down_from_task) {
    atomic_store(&sd_status, -1);
    atomic_store(&sd_still, 999);
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    gate *g = gate_new();
    btm_task_id blocked = add_gated(m, 1, 11, g, 10, NULL, NULL, 0);
    spec *s = spec_new(2, 22);
    s->hook = hook_shut_down;
    s->ptr = g;
    btm_task_id sd = 0;
    REQUIRE_ST(add_spec(m, s, 5, NULL, NULL, 0, &sd), BTM_STATUS_OK);
    add_simple(m, 3, NO_RESULT, 0, NULL, NULL, 0); /* queued: freed by the shut down */
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    /* Wait until the shut-down task has returned (its userdata freed):
     * then only the blocked task's userdata is left. */
    uint64_t deadline = now_ms() + WAIT_MS;
    while (live_objects() > 1 && now_ms() < deadline) sleep_ms(1);
    CHECK_EQ(live_objects(), 1);
    CHECK_EQ(atomic_load(&sd_status), BTM_STATUS_TIMED_OUT);
    CHECK_EQ(atomic_load(&sd_still), 1);
    CHECK_ST(btm_shut_down(m, 0, NULL), BTM_STATUS_ALREADY_SHUT_DOWN);
    gate_open(g);
    CHECK(wait_all_freed(WAIT_MS));
    btm_event evs[4];
    size_t n = 0;
    btm_status st = btm_poll_events(m, evs, 4, &n);
    CHECK_EQ(st, BTM_STATUS_OK); /* nothing to deliver, ever */
    CHECK_EQ(n, 0);
    CHECK_EQ(runlog_find(3), -1);
    (void)blocked;
    rm(m);
}

/* A task alone shutting down with no limit returns OK (it never waits for
 * its own worker). */
static void hook_shut_down_forever(spec *s, btm_task_context *ctx) {
    (void)s;
    size_t still = 999;
    CHECK_ST(btm_shut_down(btm_context_manager(ctx), BTM_WAIT_FOREVER, &still), BTM_STATUS_OK);
    CHECK_EQ(still, 0);
}

TEST(reentrant_shut_down_forever_from_task) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    spec *s = spec_new(1, NO_RESULT);
    s->hook = hook_shut_down_forever;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    CHECK(wait_all_freed(WAIT_MS));
    CHECK_ST(btm_wait_events(m, 10), BTM_STATUS_SHUT_DOWN);
    rm(m);
}

/* ---- destroy from inside a task --------------------------------------- */

static void hook_destroy(spec *s, btm_task_context *ctx) {
    btm_manager *ctxm = btm_context_manager(ctx);
    /* Wait until the host's own calls on the handle have returned:
     * destroying a handle while another thread is still inside a call on
     * it would be the host's use-after-free, not btm's. */
    gate_pass(s->ptr);
    btm_destroy(s->m); /* the host's handle, released from inside */
    /* The context's handle stays usable until the task returns. */
    btm_task_id id = 77;
    CHECK_ST(add_spec(ctxm, spec_new(9, NO_RESULT), 0, NULL, NULL, 0, &id), BTM_STATUS_SHUT_DOWN);
    CHECK_EQ(id, 77);
    CHECK_ST(btm_start_processing(ctxm), BTM_STATUS_SHUT_DOWN);
    btm_stats st;
    CHECK_ST(btm_get_stats(ctxm, &st), BTM_STATUS_OK);
    CHECK(btm_context_is_stopped(ctx));
}

TEST(reentrant_destroy_from_task) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    gate *g = gate_new();
    spec *s = spec_new(1, 11);
    s->hook = hook_destroy;
    s->m = m;
    s->ptr = g;
    forget_manager(m);
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    add_simple(m, 2, NO_RESULT, -1, NULL, NULL, 0); /* queued: freed by the destroy */
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    /* The host makes no further call on m: the task owns its end. */
    gate_open(g);
    CHECK(wait_all_freed(WAIT_MS));
    CHECK_EQ(runlog_find(2), -1);
}

/* ---- free functions calling back into btm ---------------------------- */

typedef struct reobj {
    obj hdr;
    btm_manager *m;
    int tag;
} reobj;

static atomic_int reobj_adds_ok, reobj_adds_shut;

static void reobj_free(void *p) {
    reobj *r = p;
    if (r->hdr.magic != OBJ_ALIVE) {
        t_fail(__FILE__, __LINE__, "reobj freed twice");
        return;
    }
    btm_stats st;
    CHECK_ST(btm_get_stats(r->m, &st), BTM_STATUS_OK);
    CHECK_ST(btm_stop_task(r->m, 987654321, true, true, NULL), BTM_STATUS_NOT_FOUND);
    btm_task_id id = 0;
    btm_status s = add_spec(r->m, spec_new(r->tag, NO_RESULT), 0, NULL, NULL, 0, &id);
    if (s == BTM_STATUS_OK)
        atomic_fetch_add(&reobj_adds_ok, 1);
    else if (s == BTM_STATUS_SHUT_DOWN)
        atomic_fetch_add(&reobj_adds_shut, 1);
    else
        t_fail(__FILE__, __LINE__, "add from a free function: %s", btm_status_str(s));
    obj_free(p);
}

static void *reobj_new(btm_manager *m, int tag) {
    reobj *r = malloc(sizeof *r);
    if (!r) abort();
    r->hdr.magic = OBJ_ALIVE;
    r->hdr.tag = tag;
    r->m = m;
    r->tag = tag;
    atomic_fetch_add(&obj_allocs, 1);
    return r;
}

static void reobj_task(void *ud, btm_task_context *ctx) {
    reobj *r = ud;
    /* result whose free function also re-enters (runs on the polling
     * thread or a worker) */
    CHECK_ST(btm_context_set_result(ctx, reobj_new(r->m, r->tag + 1), reobj_free), BTM_STATUS_OK);
}

TEST(reentrant_free_functions) {
    atomic_store(&reobj_adds_ok, 0);
    atomic_store(&reobj_adds_shut, 0);
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = 0, b = 0, p = 0;
    /* a runs: its userdata free (worker) adds task 100; its result free
     * (after the host polls) adds task 101. */
    REQUIRE_ST(btm_add_task(m, reobj_task, reobj_new(m, 100), reobj_free, 0, NULL, NULL, 0, &a),
               BTM_STATUS_OK);
    /* b is stopped: its userdata free runs on this thread, inside the stop
     * call's cleanup, and adds task 200. */
    REQUIRE_ST(btm_add_task(m, reobj_task, reobj_new(m, 200), reobj_free, 0, NULL, NULL, 0, &b),
               BTM_STATUS_OK);
    /* a pass-through payload freed after the host polled it */
    REQUIRE_ST(btm_add_pass_through_task(m, 0, NULL, NULL, 0, reobj_new(m, 300), reobj_free, &p),
               BTM_STATUS_OK);
    REQUIRE_ST(btm_stop_task(m, b, false, false, NULL), BTM_STATUS_OK);
    CHECK_EQ(atomic_load(&reobj_adds_ok), 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    REQUIRE(settle(m, &l)); /* frees of the last poll add tasks: run them */
    REQUIRE(settle(m, &l));
    CHECK(runlog_find(100) >= 0);
    CHECK(runlog_find(101) >= 0);
    CHECK(runlog_find(200) >= 0);
    CHECK(runlog_find(300) >= 0);
    CHECK_EQ(atomic_load(&reobj_adds_ok), 4);
    /* A rejected add frees its reentrant userdata in the call. */
    btm_task_id id = 0;
    CHECK_ST(btm_add_task(m, NULL, reobj_new(m, 400), reobj_free, 0, NULL, NULL, 0, &id),
             BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(atomic_load(&reobj_adds_ok), 5);
    /* destroy with a reentrant userdata still queued: its free's add is
     * rejected with SHUT_DOWN (and that spec is freed) */
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    REQUIRE_ST(btm_add_task(m, reobj_task, reobj_new(m, 500), reobj_free, 0, NULL, NULL, 0, &id),
               BTM_STATUS_OK);
    rm(m);
    CHECK_EQ(atomic_load(&reobj_adds_shut), 1);
    CHECK_EQ(live_objects(), 0);
    evlog_free(&l);
}

/* What the host handed over for the manager's life (the thread-hook,
 * task-hook and notify userdata) and the results of the last poll are freed
 * by btm_destroy while the manager still exists, shut down: their free
 * functions may call it (stats work, a stop finds nothing, an add gets
 * SHUT_DOWN). Until session 30 they ran while the manager was being freed,
 * and such a call read freed memory (a fuzzer found it). */
static void noop_thread_hook(void *ud, uint32_t worker) {
    (void)ud;
    (void)worker;
}
static void noop_task_hook(void *ud, uint64_t task, uint32_t kind, uint64_t value, uint32_t worker) {
    (void)ud;
    (void)task;
    (void)kind;
    (void)value;
    (void)worker;
}
static void noop_notify(void *ud) { (void)ud; }

/* A free function that btm runs on the host's thread destroys the host's
 * handle (a binding whose task userdata holds the last reference to its
 * manager object does this): btm.h lets any function be called from a
 * free function, and btm_destroy's handle is live. The call that ran the
 * free function must not touch the manager afterwards. Before the fix,
 * the stops, btm_shut_down, btm_set_notify and btm_set_task_hooks went on
 * using the manager btm_destroy had just freed (valgrind: invalid reads in
 * Manager::release / set_notify / set_task_hooks). */
static btm_manager *destroy_target;
static void free_then_destroy(void *p) {
    obj_free(p);
    btm_manager *m = destroy_target;
    destroy_target = NULL;
    if (m) btm_destroy(m);
}

TEST(reentrant_destroy_from_a_free_function_on_the_calling_thread) {
    for (int call = 0; call < 6; call++) {
        btm_manager *m = NULL;
        REQUIRE_ST(btm_create(NULL, &m), BTM_STATUS_OK); /* paused: tasks stay queued */
        destroy_target = m;
        btm_task_id id = 0;
        if (call < 4)
            REQUIRE_ST(btm_add_task(m, spec_task, obj_new(call), free_then_destroy, 0, NULL, NULL, 0, &id),
                       BTM_STATUS_OK);
        btm_stop_report rep;
        size_t still = 9;
        switch (call) {
        case 0: CHECK_ST(btm_stop_task(m, id, true, true, &rep), BTM_STATUS_OK); break;
        case 1: CHECK_ST(btm_stop_task_group(m, NULL, true, true, &rep), BTM_STATUS_OK); break;
        case 2: CHECK_ST(btm_stop_all_tasks(m, &rep), BTM_STATUS_OK); break;
        case 3: CHECK_ST(btm_shut_down(m, WAIT_MS, &still), BTM_STATUS_OK); break;
        case 4: CHECK_ST(btm_set_notify(m, NULL, obj_new(call), free_then_destroy), BTM_STATUS_OK); break;
        case 5: CHECK_ST(btm_set_task_hooks(m, NULL, NULL, obj_new(call), free_then_destroy), BTM_STATUS_OK); break;
        }
        CHECK(destroy_target == NULL); /* the free function ran, and destroyed */
        if (destroy_target) btm_destroy(destroy_target);
        destroy_target = NULL;
        CHECK_EQ(live_objects(), 0);
    }
}

TEST(reentrant_free_functions_during_destroy) {
    atomic_store(&reobj_adds_ok, 0);
    atomic_store(&reobj_adds_shut, 0);
    btm_config cfg;
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    cfg.max_threads = 1;
    cfg.start_processing = true;
    cfg.thread_start = noop_thread_hook;
    cfg.thread_stop = noop_thread_hook;
    reobj *thread_data = reobj_new(NULL, 700);
    cfg.thread_hook_userdata = thread_data;
    cfg.thread_hook_free = reobj_free;
    btm_manager *m = NULL;
    REQUIRE_ST(btm_create(&cfg, &m), BTM_STATUS_OK);
    thread_data->m = m; /* (no worker runs before the first add) */
    REQUIRE_ST(btm_set_task_hooks(m, noop_task_hook, noop_task_hook, reobj_new(m, 710), reobj_free),
               BTM_STATUS_OK);
    REQUIRE_ST(btm_set_notify(m, noop_notify, reobj_new(m, 720), reobj_free), BTM_STATUS_OK);
    /* The task's result (tag 731) is in the last poll when m is destroyed;
     * its userdata's free, on the worker, adds task 730, which runs. */
    btm_task_id id = 0;
    REQUIRE_ST(btm_add_task(m, reobj_task, reobj_new(m, 730), reobj_free, 0, NULL, NULL, 0, &id),
               BTM_STATUS_OK);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (runlog_find(730) < 0 && now_ms() < deadline) sleep_ms(1);
    REQUIRE(runlog_find(730) >= 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    CHECK_EQ(atomic_load(&reobj_adds_ok), 1);
    btm_event ev[8];
    size_t n = 0;
    REQUIRE_ST(btm_poll_events(m, ev, 8, &n), BTM_STATUS_OK);
    size_t completed = 0;
    for (size_t i = 0; i < n; i++) completed += ev[i].kind == BTM_EVENT_TASK_COMPLETED;
    CHECK_EQ(completed, 2); /* both: the results stay until the destroy */
    forget_manager(m);
    btm_destroy(m);
    CHECK_EQ(atomic_load(&reobj_adds_shut), 4); /* 731, 710, 720, 700 */
    CHECK_EQ(atomic_load(&reobj_adds_ok), 1);
    CHECK_EQ(live_objects(), 0);
}

/* ---- a poll from a free function that a poll runs --------------------- */

static btm_manager *nested_m;
static atomic_int nested_polls, nested_events, nested_bad;

/* A result's free function that polls the same manager (on the polling
 * thread, inside the outer poll). */
static void free_and_poll(void *p) {
    obj_free(p);
    btm_event ev[4];
    size_t n = 0;
    if (btm_poll_events(nested_m, ev, 4, &n) != BTM_STATUS_OK) atomic_fetch_add(&nested_bad, 1);
    atomic_fetch_add(&nested_polls, 1);
    for (size_t i = 0; i < n; i++) {
        if (ev[i].kind != BTM_EVENT_TASK_COMPLETED) continue;
        atomic_fetch_add(&nested_events, 1);
        /* The nested poll's own results are alive. */
        if (ev[i].result_count != 1 || obj_tag(ev[i].results[0].data) < 1) atomic_fetch_add(&nested_bad, 1);
    }
}

static void result_task(void *ud, btm_task_context *ctx) {
    CHECK_ST(btm_context_set_result(ctx, obj_new((int)(intptr_t)ud), free_and_poll), BTM_STATUS_OK);
}

TEST(reentrant_poll_from_a_result_free_function_keeps_the_outer_results) {
    atomic_store(&nested_polls, 0);
    atomic_store(&nested_events, 0);
    atomic_store(&nested_bad, 0);
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    nested_m = m;
    btm_task_id ids[3];
    for (int i = 0; i < 3; i++)
        REQUIRE_ST(btm_add_task(m, result_task, (void *)(intptr_t)(i + 1), NULL, 0, NULL, NULL, 0, &ids[i]),
                   BTM_STATUS_OK);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    btm_event ev[1];
    size_t n = 0;
    REQUIRE_ST(btm_poll_events(m, ev, 1, &n), BTM_STATUS_OK);
    REQUIRE_EQ(n, 1);
    CHECK_EQ(ev[0].task_id, ids[0]);
    CHECK_EQ(atomic_load(&nested_polls), 0);
    /* Releases task 1's result: its free function polls, inside this poll,
     * and takes task 3's event. That nested poll must not release the
     * result this poll returns (a review found it freed before the outer
     * poll returned). */
    REQUIRE_ST(btm_poll_events(m, ev, 1, &n), BTM_STATUS_OK);
    REQUIRE_EQ(n, 1);
    CHECK_EQ(atomic_load(&nested_polls), 1);
    CHECK_EQ(atomic_load(&nested_events), 1);
    CHECK_EQ(ev[0].task_id, ids[1]);
    REQUIRE_EQ(ev[0].result_count, 1);
    CHECK_EQ(obj_tag(ev[0].results[0].data), 2);
    CHECK_EQ(atomic_load(&nested_bad), 0);
    CHECK_EQ(live_objects(), 2); /* the results of tasks 2 and 3 */
    /* The next poll releases both (their free functions poll again and find
     * nothing but the group's end). */
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(live_objects(), 0);
    CHECK_EQ(atomic_load(&nested_bad), 0);
    rm(m);
    evlog_free(&l);
}

/* A -> B -> A: a free function of manager A's poll polls B, whose poll runs
 * a free function that polls A again. That innermost poll of A must not
 * release the results A's outer poll is about to return (a review found the
 * first version of the fix forgot A once B's poll ran). */
static btm_manager *aba_a, *aba_b;
static atomic_int aba_inner_a_polls;

static void free_poll_a(void *p) {
    obj_free(p);
    btm_event ev[1];
    size_t n = 0;
    CHECK_ST(btm_poll_events(aba_a, ev, 1, &n), BTM_STATUS_OK);
    atomic_fetch_add(&aba_inner_a_polls, 1);
}

static void free_poll_b(void *p) {
    obj_free(p);
    btm_event ev[1];
    size_t n = 0;
    CHECK_ST(btm_poll_events(aba_b, ev, 1, &n), BTM_STATUS_OK);
}

static void aba_task(void *ud, btm_task_context *ctx) {
    int tag = (int)(intptr_t)ud;
    btm_free_fn f = tag == 1 ? free_poll_b : tag == 11 ? free_poll_a : obj_free;
    CHECK_ST(btm_context_set_result(ctx, obj_new(tag), f), BTM_STATUS_OK);
}

TEST(reentrant_poll_of_a_through_b_from_a_free_function_keeps_the_outer_results) {
    atomic_store(&aba_inner_a_polls, 0);
    aba_a = mk(1, true);
    aba_b = mk(1, true);
    REQUIRE(aba_a && aba_b);
    btm_task_id id = 0;
    for (intptr_t t = 1; t <= 3; t++)
        REQUIRE_ST(btm_add_task(aba_a, aba_task, (void *)t, NULL, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    for (intptr_t t = 11; t <= 12; t++)
        REQUIRE_ST(btm_add_task(aba_b, aba_task, (void *)t, NULL, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    REQUIRE_ST(btm_wait_idle(aba_a, WAIT_MS), BTM_STATUS_OK);
    REQUIRE_ST(btm_wait_idle(aba_b, WAIT_MS), BTM_STATUS_OK);
    btm_event ev[1];
    size_t n = 0;
    REQUIRE_ST(btm_poll_events(aba_b, ev, 1, &n), BTM_STATUS_OK); /* B's task 11 (frees by polling A) */
    REQUIRE_EQ(n, 1);
    REQUIRE_ST(btm_poll_events(aba_a, ev, 1, &n), BTM_STATUS_OK); /* A's task 1 (frees by polling B) */
    REQUIRE_EQ(n, 1);
    CHECK_EQ(obj_tag(ev[0].results[0].data), 1);
    /* Releases task 1's result: its free function polls B, which releases
     * task 11's result, whose free function polls A. */
    REQUIRE_ST(btm_poll_events(aba_a, ev, 1, &n), BTM_STATUS_OK);
    REQUIRE_EQ(n, 1);
    CHECK_EQ(atomic_load(&aba_inner_a_polls), 1);
    REQUIRE_EQ(ev[0].result_count, 1);
    CHECK_EQ(obj_tag(ev[0].results[0].data), 2); /* alive: not released by the inner poll */
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(aba_a, &l));
    REQUIRE(settle(aba_b, &l));
    REQUIRE(settle(aba_a, &l));
    rm(aba_a);
    rm(aba_b);
    CHECK_EQ(live_objects(), 0);
    evlog_free(&l);
}

/* ---- concurrent adds from 4 host threads ------------------------------ */

enum { ADDERS = 4, PER_ADDER = 500 };

typedef struct adder_arg {
    btm_manager *m;
    int index;
    btm_task_id ids[PER_ADDER];
    int bad;
} adder_arg;

static void *adder(void *p) {
    adder_arg *a = p;
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, (uint64_t)a->index + 1};
    for (int i = 0; i < PER_ADDER; i++) {
        int tag = a->index * PER_ADDER + i;
        btm_task_id id = 0;
        btm_status st;
        const btm_task_id *up = i > 0 && i % 10 == 0 ? &a->ids[i - 1] : NULL;
        if (i % 7 == 3)
            st = btm_add_pass_through_task(a->m, i % 5, &g, up, up ? 1 : 0, obj_new(tag), obj_free,
                                           &id);
        else
            st = add_spec(a->m, spec_new(tag, tag), i % 5 - 2, &g, up, up ? 1 : 0, &id);
        if (st != BTM_STATUS_OK || id == 0 || (i > 0 && id <= a->ids[i - 1])) a->bad++;
        a->ids[i] = id;
    }
    return NULL;
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

TEST(concurrent_adds_from_4_threads) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    static adder_arg args[ADDERS];
    pthread_t th[ADDERS];
    for (int i = 0; i < ADDERS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].m = m;
        args[i].index = i;
        REQUIRE(pthread_create(&th[i], NULL, adder, &args[i]) == 0);
    }
    /* Poll concurrently while they add. */
    evlog l;
    evlog_init(&l);
    uint64_t deadline = now_ms() + WAIT_MS * 3;
    size_t finals = 0;
    while (finals < ADDERS * PER_ADDER && now_ms() < deadline) {
        size_t before = l.n;
        size_t k = poll_into(m, &l, 64);
        if (k == (size_t)-1) break;
        for (size_t i = before; i < l.n; i++)
            if (l.v[i].kind == BTM_EVENT_TASK_COMPLETED || l.v[i].kind == BTM_EVENT_TASK_FAILED)
                finals++;
        if (k == 0) (void)btm_wait_events(m, 50);
    }
    for (int i = 0; i < ADDERS; i++) pthread_join(th[i], NULL);
    REQUIRE(settle(m, &l));
    for (int i = 0; i < ADDERS; i++) CHECK_EQ(args[i].bad, 0);
    /* Every id unique across threads. */
    static uint64_t all[ADDERS * PER_ADDER];
    size_t n = 0;
    for (int i = 0; i < ADDERS; i++)
        for (int k = 0; k < PER_ADDER; k++) all[n++] = args[i].ids[k];
    qsort(all, n, sizeof all[0], cmp_u64);
    for (size_t i = 1; i < n; i++) CHECK(all[i] != all[i - 1]);
    /* Exactly one completion per task, none failed. */
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), ADDERS * PER_ADDER);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, 0), 0);
    static uint64_t seen[ADDERS * PER_ADDER];
    size_t ns = 0;
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].kind == BTM_EVENT_TASK_COMPLETED && ns < ADDERS * PER_ADDER)
            seen[ns++] = l.v[i].task_id;
    qsort(seen, ns, sizeof seen[0], cmp_u64);
    bool same = ns == n;
    for (size_t i = 0; same && i < n; i++) same = seen[i] == all[i];
    CHECK(same);
    /* Each group finished at least once, the last time after its last
     * completion; and a group finish is never followed by... (refills may
     * finish it again, which is fine). */
    for (int gi = 0; gi < ADDERS; gi++) {
        btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, (uint64_t)gi + 1};
        int last_completion = -1, last_finish = -1;
        for (size_t i = 0; i < l.n; i++) {
            if (!group_eq(&l.v[i].group, &g)) continue;
            if (l.v[i].kind == BTM_EVENT_TASK_COMPLETED) last_completion = (int)i;
            if (l.v[i].kind == BTM_EVENT_GROUP_FINISHED) last_finish = (int)i;
        }
        CHECK(last_finish == last_completion + 1);
    }
    evlog_free(&l);
    rm(m);
}

/* ---- stop / poll / add stress ----------------------------------------- */

enum { STRESS_ADDERS = 2, STRESS_PER = 1500, STRESS_MAX = STRESS_ADDERS * STRESS_PER };

typedef struct stress {
    btm_manager *m;
    pthread_mutex_t mu;
    btm_task_id issued[STRESS_MAX];
    size_t n_issued;
    atomic_int adders_done;
    btm_task_id stopped[STRESS_MAX];
    size_t n_stopped;
    uint64_t after_finish; /* sum of the successful stops' reports */
} stress;

static stress S;

static void *stress_adder(void *p) {
    uintptr_t idx = (uintptr_t)p;
    unsigned seed = (unsigned)idx * 7919u + 1u;
    btm_task_id mine[STRESS_PER];
    for (int i = 0; i < STRESS_PER; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        btm_task_id up[2];
        size_t nup = 0;
        if (i > 2 && r % 3 == 0) up[nup++] = mine[i - 1 - (int)(r % 3)];
        if (i > 5 && r % 5 == 0) up[nup++] = mine[i - 5];
        btm_task_id id = 0;
        btm_status st;
        if (r % 11 == 0) {
            spec *s = spec_new(1, NO_RESULT);
            s->fail = true;
            s->fail_msg = "stress";
            st = add_spec(S.m, s, (int32_t)(r % 7) - 3, NULL, up, nup, &id);
        } else if (r % 13 == 0) {
            st = btm_add_pass_through_task(S.m, 0, NULL, up, nup, obj_new(2), obj_free, &id);
        } else {
            st = add_spec(S.m, spec_new(2, (r & 1) ? 3 : NO_RESULT), (int32_t)(r % 7) - 3, NULL,
                          up, nup, &id);
        }
        if (st != BTM_STATUS_OK) {
            t_fail(__FILE__, __LINE__, "stress add: %s", btm_status_str(st));
            mine[i] = mine[i > 0 ? i - 1 : 0];
            continue;
        }
        mine[i] = id;
        pthread_mutex_lock(&S.mu);
        S.issued[S.n_issued++] = id;
        pthread_mutex_unlock(&S.mu);
    }
    atomic_fetch_add(&S.adders_done, 1);
    return NULL;
}

static void *stress_stopper(void *p) {
    (void)p;
    unsigned seed = 4242u;
    while (atomic_load(&S.adders_done) < STRESS_ADDERS) {
        seed = seed * 1103515245u + 12345u;
        sched_yield();
        /* Mostly recent ids (queued, running or just finished), some old. */
        pthread_mutex_lock(&S.mu);
        size_t n = S.n_issued;
        size_t window = (seed >> 20) % 4 == 0 ? n : (n < 64 ? n : 64);
        btm_task_id id = n ? S.issued[n - 1 - (seed >> 8) % window] : 0;
        pthread_mutex_unlock(&S.mu);
        if (!id) continue;
        btm_stop_report rep;
        btm_status st = btm_stop_task(S.m, id, false, false, &rep);
        if (st == BTM_STATUS_OK) {
            if (rep.before_start + rep.while_running + rep.after_finish != 1)
                t_fail(__FILE__, __LINE__, "a stop without flags reached %llu tasks",
                       (unsigned long long)(rep.before_start + rep.while_running + rep.after_finish));
            pthread_mutex_lock(&S.mu);
            S.stopped[S.n_stopped++] = id;
            S.after_finish += rep.after_finish;
            pthread_mutex_unlock(&S.mu);
        } else if (st != BTM_STATUS_NOT_FOUND) {
            t_fail(__FILE__, __LINE__, "stress stop: %s", btm_status_str(st));
        }
        if ((seed >> 4) % 50 == 0) {
            btm_stats s;
            CHECK_ST(btm_get_stats(S.m, &s), BTM_STATUS_OK);
        }
    }
    return NULL;
}

TEST(stress_add_stop_poll) {
    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.mu, NULL);
    S.m = mk(2, true);
    REQUIRE(S.m);
    pthread_t th[STRESS_ADDERS + 1];
    for (uintptr_t i = 0; i < STRESS_ADDERS; i++)
        REQUIRE(pthread_create(&th[i], NULL, stress_adder, (void *)i) == 0);
    REQUIRE(pthread_create(&th[STRESS_ADDERS], NULL, stress_stopper, NULL) == 0);
    evlog l;
    evlog_init(&l);
    uint64_t deadline = now_ms() + WAIT_MS * 3;
    while (atomic_load(&S.adders_done) < STRESS_ADDERS && now_ms() < deadline) {
        if (poll_into(S.m, &l, 32) == 0) (void)btm_wait_events(S.m, 5);
    }
    for (int i = 0; i <= STRESS_ADDERS; i++) pthread_join(th[i], NULL);
    REQUIRE(settle(S.m, &l));
    /* Every issued id: exactly one final event, or (stop returned OK) none. */
    qsort(S.stopped, S.n_stopped, sizeof S.stopped[0], cmp_u64);
    static uint64_t finals[STRESS_MAX * 2];
    size_t nf = 0;
    for (size_t i = 0; i < l.n; i++)
        if ((l.v[i].kind == BTM_EVENT_TASK_COMPLETED || l.v[i].kind == BTM_EVENT_TASK_FAILED) &&
            nf < STRESS_MAX * 2)
            finals[nf++] = l.v[i].task_id;
    qsort(finals, nf, sizeof finals[0], cmp_u64);
    for (size_t i = 1; i < nf; i++)
        if (finals[i] == finals[i - 1])
            t_fail(__FILE__, __LINE__, "task %llu got two final events",
                   (unsigned long long)finals[i]);
    for (size_t i = 1; i < S.n_stopped; i++)
        if (S.stopped[i] == S.stopped[i - 1])
            t_fail(__FILE__, __LINE__, "task %llu stopped twice with OK",
                   (unsigned long long)S.stopped[i]);
    for (size_t i = 0; i < S.n_stopped; i++)
        if (bsearch(&S.stopped[i], finals, nf, sizeof finals[0], cmp_u64))
            t_fail(__FILE__, __LINE__, "task %llu: event delivered after a successful stop",
                   (unsigned long long)S.stopped[i]);
    CHECK_EQ(nf + S.n_stopped, S.n_issued);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(S.m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.stopped_total, S.n_stopped);
    /* Tasks stopped after they finished were counted as completed or
     * failed first. */
    CHECK_EQ(s.completed_total + s.failed_total, nf + S.after_finish);
    printf("      stress: %zu tasks, %zu stopped, %zu final events, %zu events in all\n",
           S.n_issued, S.n_stopped, nf, l.n);
    evlog_free(&l);
    rm(S.m);
}

const test_case tests_reentrant[] = {
    TEST_ENTRY(reentrant_add_from_task),
    TEST_ENTRY(reentrant_stop_from_task),
    TEST_ENTRY(reentrant_pause_from_task),
    TEST_ENTRY(reentrant_poll_from_task),
    TEST_ENTRY(reentrant_shut_down_from_task),
    TEST_ENTRY(reentrant_shut_down_forever_from_task),
    TEST_ENTRY(reentrant_destroy_from_task),
    TEST_ENTRY(reentrant_free_functions),
    TEST_ENTRY(reentrant_free_functions_during_destroy),
    TEST_ENTRY(reentrant_destroy_from_a_free_function_on_the_calling_thread),
    TEST_ENTRY(reentrant_poll_from_a_result_free_function_keeps_the_outer_results),
    TEST_ENTRY(reentrant_poll_of_a_through_b_from_a_free_function_keeps_the_outer_results),
    TEST_ENTRY(concurrent_adds_from_4_threads),
    TEST_ENTRY(stress_add_stop_poll),
    {NULL, NULL},
};
