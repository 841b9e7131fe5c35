/* Bulk add: btm_add_tasks with btm_task_desc and BTM_TASK_PASS_THROUGH.
 * A batch runs every task, ids in array order; priorities, groups by
 * value, upstream ids issued before the call or named in the call with
 * BTM_IN_BATCH, pass-through entries; adds from inside a task. All-or-nothing bad input: every userdata freed
 * exactly once before the call returns, no id issued, task_ids_out
 * untouched, and the documented order of errors. */
#include "harness.h"

#include <stdlib.h>

#define SENTINEL 0xA5A5A5A5A5A5A5A5ull
#define OUT_LEN 16

static const btm_group G_DEFAULT = {BTM_GROUP_KIND_DEFAULT, 0, 0};

static void noop_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
}

/* A task descriptor running spec_task on `s` (owned: freed with obj_free). */
static btm_task_desc desc_spec(spec *s, int32_t priority, const btm_group *g,
                               const btm_task_id *up, size_t up_len) {
    btm_task_desc d;
    memset(&d, 0, sizeof d);
    d.task_fn = spec_task;
    d.userdata = s;
    d.userdata_free = obj_free;
    d.group = g ? *g : G_DEFAULT;
    d.upstream = up;
    d.upstream_len = up_len;
    d.priority = priority;
    return d;
}

static btm_task_desc desc_simple(int tag, int result_tag, int32_t priority) {
    return desc_spec(spec_new(tag, result_tag), priority, NULL, NULL, 0);
}

/* A pass-through descriptor; payload_tag NO_RESULT: no payload. */
static btm_task_desc desc_pass(int payload_tag, int32_t priority, const btm_group *g,
                               const btm_task_id *up, size_t up_len) {
    btm_task_desc d;
    memset(&d, 0, sizeof d);
    d.flags = BTM_TASK_PASS_THROUGH;
    if (payload_tag != NO_RESULT) {
        d.userdata = obj_new(payload_tag);
        d.userdata_free = obj_free;
    }
    d.group = g ? *g : G_DEFAULT;
    d.upstream = up;
    d.upstream_len = up_len;
    d.priority = priority;
    return d;
}

/* True if the upstream list `v` holds task `id` with a result of `tag`. */
static bool value_find(const value_rec *v, size_t n, btm_task_id id, int tag) {
    for (size_t i = 0; i < n; i++)
        if (v[i].task_id == id && v[i].tag == tag) return true;
    return false;
}

static long owned_count(const btm_task_desc *d, size_t n) {
    long k = 0;
    for (size_t i = 0; d && i < n; i++)
        if (d[i].userdata && d[i].userdata_free) k++;
    return k;
}

static void fill_sentinel(btm_task_id *ids, size_t n) {
    for (size_t i = 0; i < n; i++) ids[i] = SENTINEL;
}

/* Adds a batch that must succeed; fails the test (returning false) if not. */
static bool add_batch_at(int line, btm_manager *m, const btm_task_desc *d, size_t n,
                         btm_task_id *ids) {
    fill_sentinel(ids, n);
    atomic_fetch_add(&t_checks, 1);
    btm_status st = btm_add_tasks(m, d, n, ids);
    if (st != BTM_STATUS_OK) {
        t_fail(__FILE__, line, "btm_add_tasks: %s", btm_status_str(st));
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add(&t_checks, 1);
        if (ids[i] == 0 || ids[i] == SENTINEL)
            t_fail(__FILE__, line, "btm_add_tasks: id %zu not written (%llu)", i,
                   (unsigned long long)ids[i]);
        if (i > 0 && ids[i] <= ids[i - 1])
            t_fail(__FILE__, line, "btm_add_tasks: ids not increasing: [%zu]=%llu after %llu", i,
                   (unsigned long long)ids[i], (unsigned long long)ids[i - 1]);
    }
    return true;
}
#define ADD_BATCH(m, d, n, ids) add_batch_at(__LINE__, (m), (d), (n), (ids))

/* Calls btm_add_tasks(m, d, n, out) (out: a sentinel-filled buffer, or NULL
 * with null_out) and expects `want`. Checks that every owned userdata of
 * the descriptors was freed before the call returned, that the out array is
 * untouched, that nothing was added, and (when `last` is given) that no id
 * was issued: the next add gets *last + 1 (and becomes the new *last). */
static void expect_rejected_at(int line, btm_manager *m, const btm_task_desc *d, size_t n,
                               bool null_out, btm_status want, btm_task_id *last) {
    btm_task_id out[OUT_LEN];
    fill_sentinel(out, OUT_LEN);
    long owned = owned_count(d, n);
    long live0 = live_objects();
    btm_stats s0, s1;
    bool have_stats = m && btm_get_stats(m, &s0) == BTM_STATUS_OK;

    btm_status st = btm_add_tasks(m, d, n, null_out ? NULL : out);

    atomic_fetch_add(&t_checks, 4);
    if (st != want)
        t_fail(__FILE__, line, "btm_add_tasks returned %u (%s), expected %u (%s)", (unsigned)st,
               btm_status_str(st), (unsigned)want, btm_status_str(want));
    long live1 = live_objects();
    if (live1 != live0 - owned)
        t_fail(__FILE__, line, "%ld of %ld userdata freed by the rejected call", live0 - live1,
               owned);
    for (size_t i = 0; i < OUT_LEN; i++) {
        if (out[i] != SENTINEL) {
            t_fail(__FILE__, line, "task_ids_out[%zu] written (%llu) by a rejected call", i,
                   (unsigned long long)out[i]);
            break;
        }
    }
    if (have_stats && btm_get_stats(m, &s1) == BTM_STATUS_OK) {
        if (s1.queued != s0.queued || s1.blocked != s0.blocked || s1.running != s0.running ||
            s1.undelivered != s0.undelivered)
            t_fail(__FILE__, line, "a rejected call changed the counters (queued %llu -> %llu, "
                   "blocked %llu -> %llu)", (unsigned long long)s0.queued,
                   (unsigned long long)s1.queued, (unsigned long long)s0.blocked,
                   (unsigned long long)s1.blocked);
    }
    if (last && m) {
        btm_task_id next = 0;
        btm_status st2 = add_spec(m, spec_new(9999, NO_RESULT), 0, NULL, NULL, 0, &next);
        if (st2 != BTM_STATUS_OK)
            t_fail(__FILE__, line, "probe add: %s", btm_status_str(st2));
        else if (next != *last + 1)
            t_fail(__FILE__, line, "an id was consumed: next id %llu, expected %llu",
                   (unsigned long long)next, (unsigned long long)(*last + 1));
        *last = next;
    }
}
#define REJECT(m, d, n, null_out, want, last) \
    expect_rejected_at(__LINE__, (m), (d), (n), (null_out), (want), (last))

/* ------------------------------------------------------------------ */
/* Behaviour                                                           */
/* ------------------------------------------------------------------ */

/* Every task of a batch runs once; ids follow the last id issued, in
 * array order; each id's completed event is polled exactly once with its
 * own result; the task saw its own id. */
TEST(bulk_runs_every_task) {
    btm_manager *m = mk(4, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 100, NO_RESULT, 0, NULL, NULL, 0);
    enum { N = 8 };
    btm_task_desc d[N];
    for (int i = 0; i < N; i++) d[i] = desc_simple(i, 1000 + i, 0);
    btm_task_id ids[N];
    REQUIRE(ADD_BATCH(m, d, N, ids));
    for (int i = 0; i < N; i++) CHECK_EQ(ids[i], a + 1 + (btm_task_id)i);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, N + 1);
    CHECK_EQ(runlog_count(), 0); /* paused */
    /* The next single add follows the batch. */
    btm_task_id b = add_simple(m, 101, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_EQ(b, ids[N - 1] + 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(runlog_count(), N + 2);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[i]), 1);
        CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, ids[i]), 0);
        int e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[i]);
        if (e >= 0) {
            const value_rec want[] = {{ids[i], 1000 + i}};
            CHECK(values_are(l.v[e].res, l.v[e].nres, want, 1, "batch task result"));
            CHECK_EQ(l.v[e].group.kind, BTM_GROUP_KIND_DEFAULT);
        }
        int r = runlog_find(i);
        REQUIRE(r >= 0);
        CHECK_EQ(runlog_get((size_t)r).id, ids[i]);
        CHECK_EQ(runlog_get((size_t)r).nup, 0);
    }
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), N + 2);
    CHECK_EQ(ev_count_group(&l, &G_DEFAULT), 1);
    /* Polled once: nothing more comes. */
    size_t before = l.n;
    poll_drain(m, &l);
    CHECK_EQ(l.n, before);
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.completed_total, N + 2);
    CHECK_EQ(s.undelivered, 0);
    evlog_free(&l);
    rm(m);
}

/* A large batch on a running manager with several workers: every task
 * completes once with its own result. */
TEST(bulk_large_batch) {
    btm_manager *m = mk(4, true);
    REQUIRE(m);
    enum { N = 1000 };
    btm_task_desc *d = calloc(N, sizeof *d);
    btm_task_id *ids = calloc(N, sizeof *ids);
    if (!d || !ids) abort();
    for (int i = 0; i < N; i++) d[i] = desc_simple(i, i, (int32_t)(i % 7) - 3);
    bool ok = ADD_BATCH(m, d, N, ids);
    evlog l;
    evlog_init(&l);
    if (ok && settle(m, &l)) {
        for (int i = 1; i < N; i++) CHECK_EQ(ids[i], ids[0] + (btm_task_id)i);
        CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), N);
        CHECK_EQ(runlog_count(), N);
        int *seen = calloc(N, sizeof *seen);
        if (!seen) abort();
        for (size_t k = 0; k < l.n; k++) {
            const ev *e = &l.v[k];
            if (e->kind != BTM_EVENT_TASK_COMPLETED) continue;
            atomic_fetch_add(&t_checks, 1);
            if (e->task_id < ids[0] || e->task_id > ids[N - 1]) {
                t_fail(__FILE__, __LINE__, "event for unknown id %llu",
                       (unsigned long long)e->task_id);
                continue;
            }
            size_t i = (size_t)(e->task_id - ids[0]);
            seen[i]++;
            if (e->nres != 1 || e->res[0].task_id != e->task_id || e->res[0].tag != (int)i)
                t_fail(__FILE__, __LINE__, "task %zu: wrong result", i);
        }
        int bad = 0;
        for (int i = 0; i < N; i++) bad += seen[i] != 1;
        CHECK_EQ(bad, 0);
        free(seen);
    }
    evlog_free(&l);
    free(d);
    free(ids);
    rm(m);
}

/* One worker held by a gate: single adds and two batches with mixed
 * priorities, then one batch task re-prioritised; released, they run by
 * priority, ties in id order, across and within batches. */
TEST(bulk_priorities_within_and_across) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    gate *g = gate_new();
    add_gated(m, 0, NO_RESULT, g, 0, NULL, NULL, 0);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    add_simple(m, 1, NO_RESULT, 5, NULL, NULL, 0);
    add_simple(m, 2, NO_RESULT, 0, NULL, NULL, 0);
    const int32_t prio1[] = {0, 5, 10, -1, 5, 0};
    btm_task_desc d1[6];
    for (int i = 0; i < 6; i++) d1[i] = desc_simple(10 + i, NO_RESULT, prio1[i]);
    btm_task_id ids1[6];
    REQUIRE(ADD_BATCH(m, d1, 6, ids1));
    add_simple(m, 3, NO_RESULT, 10, NULL, NULL, 0);
    const int32_t prio2[] = {5, 10, INT32_MIN};
    btm_task_desc d2[3];
    for (int i = 0; i < 3; i++) d2[i] = desc_simple(20 + i, NO_RESULT, prio2[i]);
    btm_task_id ids2[3];
    REQUIRE(ADD_BATCH(m, d2, 3, ids2));
    CHECK(ids2[0] > ids1[5]);
    /* Batch tasks are ordinary queued tasks: their priority can change. */
    CHECK_ST(btm_set_task_priority(m, ids1[3], 7), BTM_STATUS_OK);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, 12);
    CHECK_EQ(s.running, 1);
    gate_open(g);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    const int expected[] = {0, 12, 3, 21, 13, 1, 11, 14, 20, 2, 10, 15, 22};
    CHECK(run_order_is(expected, sizeof expected / sizeof expected[0]));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 13);
    evlog_free(&l);
    rm(m);
}

/* Groups by value: all-zero (and default with a value) is the default
 * group, numbered, named from btm_group_named. Stopping the numbered group
 * stops just its batch members. */
TEST(bulk_groups_by_value) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_group named, other_named;
    REQUIRE_ST(btm_group_named(m, "bulk", &named), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(m, "bulk-other", &other_named), BTM_STATUS_OK);
    const btm_group num = {BTM_GROUP_KIND_NUMBERED, 0, 7};
    const btm_group num8 = {BTM_GROUP_KIND_NUMBERED, 0, 8};
    const btm_group dflt_value = {BTM_GROUP_KIND_DEFAULT, 0, 777};
    /* Controls outside the batch, in groups the batch does not use. */
    btm_task_id c8 = add_simple(m, 50, NO_RESULT, 0, &num8, NULL, 0);
    btm_task_id cn = add_simple(m, 51, NO_RESULT, 0, &other_named, NULL, 0);
    btm_task_desc d[7];
    memset(d, 0, sizeof d);
    d[0] = desc_simple(0, 100, 0); /* all-zero group */
    d[1] = desc_spec(spec_new(1, 101), 0, &num, NULL, 0);
    d[2] = desc_spec(spec_new(2, 102), 0, &named, NULL, 0);
    d[3] = desc_spec(spec_new(3, 103), 0, &dflt_value, NULL, 0);
    d[4] = desc_spec(spec_new(4, 104), 0, &num, NULL, 0);
    d[5] = desc_spec(spec_new(5, 105), 0, &named, NULL, 0);
    d[6] = desc_pass(106, 0, &num, NULL, 0);
    btm_task_id ids[7];
    REQUIRE(ADD_BATCH(m, d, 7, ids));
    btm_group_stats gs;
    REQUIRE_ST(btm_get_group_stats(m, NULL, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 2);
    REQUIRE_ST(btm_get_group_stats(m, &num, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 3);
    REQUIRE_ST(btm_get_group_stats(m, &named, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 2);
    REQUIRE_ST(btm_get_group_stats(m, &num8, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 1);

    long live = live_objects();
    btm_stop_report rep;
    memset(&rep, 0xff, sizeof rep);
    CHECK_ST(btm_stop_task_group(m, &num, true, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 3);
    CHECK_EQ(rep.while_running, 0);
    CHECK_EQ(rep.after_finish, 0);
    CHECK_EQ(live_objects(), live - 3); /* two specs and the payload */
    CHECK_ST(btm_stop_task_group(m, &num, true, true, NULL), BTM_STATUS_NOT_FOUND);
    REQUIRE_ST(btm_get_group_stats(m, NULL, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 2);
    REQUIRE_ST(btm_get_group_stats(m, &named, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 2);

    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK(runlog_find(1) < 0);
    CHECK(runlog_find(4) < 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[1]), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[4]), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[6]), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, c8), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, cn), 1);
    const int kept[] = {0, 2, 3, 5};
    for (size_t k = 0; k < 4; k++) {
        int i = kept[k];
        int e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[i]);
        REQUIRE(e >= 0);
        const value_rec want[] = {{ids[i], 100 + i}};
        CHECK(values_are(l.v[e].res, l.v[e].nres, want, 1, "grouped batch task"));
        if (i == 2 || i == 5) {
            CHECK_EQ(l.v[e].group.kind, BTM_GROUP_KIND_NAMED);
            CHECK(l.v[e].group.value == named.value);
            CHECK_STR(l.v[e].group_name, "bulk");
        } else {
            CHECK_EQ(l.v[e].group.kind, BTM_GROUP_KIND_DEFAULT);
            CHECK(!l.v[e].has_group_name);
        }
    }
    /* Groups finish once each; the stopped numbered group never does. */
    CHECK_EQ(ev_count_group(&l, &G_DEFAULT), 1);
    CHECK_EQ(ev_count_group(&l, &named), 1);
    CHECK_EQ(ev_count_group(&l, &other_named), 1);
    CHECK_EQ(ev_count_group(&l, &num8), 1);
    CHECK_EQ(ev_count_group(&l, &num), 0);
    evlog_free(&l);
    rm(m);
}

/* A batch task waiting on tasks added before the call: it gets their
 * results (duplicates count once); one waiting on a task that fails fails
 * with it; a batch pass-through gathers the upstream result. */
TEST(bulk_upstream_added_before) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id u = add_simple(m, 1, 50, 0, NULL, NULL, 0);
    btm_task_id f = add_failing(m, 2, 0, NULL, NULL, 0, "boom", "trace");
    btm_task_id uu[] = {u, u, u};
    btm_task_desc d[5];
    d[0] = desc_spec(spec_new(10, 60), 0, NULL, &u, 1);
    d[1] = desc_pass(70, 0, NULL, &u, 1);
    d[2] = desc_spec(spec_new(11, NO_RESULT), 0, NULL, uu, 3);
    d[3] = desc_spec(spec_new(12, NO_RESULT), 0, NULL, &f, 1);
    d[4] = desc_simple(13, NO_RESULT, 5); /* no upstream: runs first */
    btm_task_id ids[5];
    REQUIRE(ADD_BATCH(m, d, 5, ids));
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, 3);  /* u, f, ids[4] */
    CHECK_EQ(s.blocked, 4); /* ids[0..3] */
    /* A single add downstream of a batch task. */
    btm_task_id dd = add_simple(m, 14, NO_RESULT, 0, NULL, &ids[0], 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(runlog_find(13), 0);
    int r = runlog_find(10);
    REQUIRE(r >= 0);
    run_rec rr = runlog_get((size_t)r);
    const value_rec want_u[] = {{u, 50}};
    CHECK(values_are(rr.up, rr.nup, want_u, 1, "batch task upstream"));
    r = runlog_find(11);
    REQUIRE(r >= 0);
    rr = runlog_get((size_t)r);
    CHECK(values_are(rr.up, rr.nup, want_u, 1, "duplicate upstream"));
    int e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[1]);
    REQUIRE(e >= 0);
    const value_rec want_p[] = {{ids[1], 70}, {u, 50}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, want_p, 2, "batch pass-through"));
    /* ids[3] failed with f, never ran. */
    CHECK(runlog_find(12) < 0);
    e = ev_find(&l, BTM_EVENT_TASK_FAILED, ids[3]);
    REQUIRE(e >= 0);
    CHECK_STR(l.v[e].message, "boom");
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, f), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[3]), 0);
    r = runlog_find(14);
    REQUIRE(r >= 0);
    rr = runlog_get((size_t)r);
    const value_rec want_d[] = {{ids[0], 60}};
    CHECK(values_are(rr.up, rr.nup, want_d, 1, "downstream of a batch task"));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, dd), 1);
    evlog_free(&l);
    rm(m);
}

/* A descriptor's upstream array may be the call's own task_ids_out (a host
 * chaining a batch to the one before through one id array): every upstream
 * id is read before the first id is written. Crossed here, so that a call
 * writing ids[0] before reading it would make the second task wait for the
 * first task of its own batch. */
TEST(bulk_upstream_read_from_the_ids_out_array) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id ids[2];
    btm_task_desc a[2] = {desc_simple(1, 51, 0), desc_simple(2, 52, 0)};
    REQUIRE(ADD_BATCH(m, a, 2, ids));
    btm_task_id a0 = ids[0], a1 = ids[1];
    btm_task_desc b[2];
    b[0] = desc_spec(spec_new(3, NO_RESULT), 0, NULL, &ids[1], 1);
    b[1] = desc_spec(spec_new(4, NO_RESULT), 0, NULL, &ids[0], 1);
    REQUIRE_ST(btm_add_tasks(m, b, 2, ids), BTM_STATUS_OK);
    CHECK(ids[0] > a1 && ids[1] == ids[0] + 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int r = runlog_find(3);
    REQUIRE(r >= 0);
    run_rec rr = runlog_get((size_t)r);
    const value_rec want_b0[] = {{a1, 52}};
    CHECK(values_are(rr.up, rr.nup, want_b0, 1, "first task's upstream (ids[1] before the call)"));
    r = runlog_find(4);
    REQUIRE(r >= 0);
    rr = runlog_get((size_t)r);
    const value_rec want_b1[] = {{a0, 51}};
    CHECK(values_are(rr.up, rr.nup, want_b1, 1, "second task's upstream (ids[0] before the call)"));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[1]), 1);
    evlog_free(&l);
    rm(m);
}

/* Upstream ids from the same batch are not issued yet: UNKNOWN_UPSTREAM,
 * nothing added. Once issued they are fine. */
TEST(bulk_upstream_same_batch_rejected) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    {
        btm_task_id up = last + 1; /* d[0]'s id, were it issued */
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0),
                              desc_spec(spec_new(3, NO_RESULT), 0, NULL, &up, 1)};
        REJECT(m, d, 2, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
    }
    {
        btm_task_id up = last + 2; /* its own id, were it issued */
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0),
                              desc_spec(spec_new(3, NO_RESULT), 0, NULL, &up, 1)};
        REJECT(m, d, 2, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
    }
    {
        btm_task_id up = last + 1; /* the first's id, from a pass-through */
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_pass(4, 0, NULL, &up, 1)};
        REJECT(m, d, 2, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
    }
    /* Chained over two calls it works. */
    btm_task_desc d1[1] = {desc_simple(5, 55, 0)};
    btm_task_id id1[1];
    REQUIRE(ADD_BATCH(m, d1, 1, id1));
    CHECK_EQ(id1[0], last + 1);
    btm_task_desc d2[1] = {desc_spec(spec_new(6, NO_RESULT), 0, NULL, id1, 1)};
    btm_task_id id2[1];
    REQUIRE(ADD_BATCH(m, d2, 1, id2));
    CHECK_EQ(id2[0], id1[0] + 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int r = runlog_find(6);
    REQUIRE(r >= 0);
    run_rec rr = runlog_get((size_t)r);
    const value_rec want[] = {{id1[0], 55}};
    CHECK(values_are(rr.up, rr.nup, want, 1, "chained batches"));
    CHECK(runlog_find(2) < 0 && runlog_find(3) < 0);
    evlog_free(&l);
    rm(m);
}

/* BTM_IN_BATCH | j names descriptor j of the same call: a chain, a fan-in
 * over batch tasks and a task issued before, and a pass-through over a
 * batch task, all added in one call to a paused manager. Each task waits
 * for its batch upstream tasks (run after them, their results in its
 * upstream list, by their real ids). */
TEST(bulk_in_batch_upstream_graph) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    btm_task_id u = add_simple(m, 1, 50, 0, NULL, NULL, 0);
    btm_task_id up1[] = {BTM_IN_BATCH | 0};
    btm_task_id up2[] = {BTM_IN_BATCH | 1, u, BTM_IN_BATCH | 0};
    btm_task_id up3[] = {BTM_IN_BATCH | 2};
    btm_task_desc d[5];
    d[0] = desc_simple(10, 60, 0);
    d[1] = desc_spec(spec_new(11, 61), 0, NULL, up1, 1);
    d[2] = desc_spec(spec_new(12, 62), 0, NULL, up2, 3);
    d[3] = desc_pass(73, 0, NULL, up3, 1);
    d[4] = desc_simple(14, NO_RESULT, 9); /* no upstream: runs first */
    btm_task_id ids[5];
    REQUIRE(ADD_BATCH(m, d, 5, ids));
    CHECK_EQ(ids[0], u + 1);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, 3);  /* u, ids[0], ids[4] */
    CHECK_EQ(s.blocked, 3); /* ids[1..3] */
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int r0 = runlog_find(10), r1 = runlog_find(11), r2 = runlog_find(12);
    REQUIRE(r0 >= 0 && r1 >= 0 && r2 >= 0);
    CHECK(r0 < r1 && r1 < r2);
    CHECK(runlog_find(1) < r2);
    run_rec rr = runlog_get((size_t)r1);
    CHECK_EQ(rr.id, ids[1]);
    const value_rec want1[] = {{ids[0], 60}};
    CHECK(values_are(rr.up, rr.nup, want1, 1, "chain link's upstream"));
    rr = runlog_get((size_t)r2);
    CHECK_EQ(rr.nup, 3);
    CHECK(value_find(rr.up, rr.nup, ids[0], 60) && value_find(rr.up, rr.nup, ids[1], 61) &&
          value_find(rr.up, rr.nup, u, 50));
    int e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[3]);
    REQUIRE(e >= 0);
    const value_rec want3[] = {{ids[3], 73}, {ids[2], 62}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, want3, 2, "pass-through over a batch task"));
    for (int i = 0; i < 5; i++) CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[i]), 1);
    evlog_free(&l);
    rm(m);
}

/* Chains added whole, one call per ten chains of 100, to a running
 * manager with two workers (each link attaches to the one before it while
 * the workers may already run the chain): every task runs once, after the
 * task before it in its chain. */
TEST(bulk_in_batch_chains_on_a_running_manager) {
    enum { CHAINS = 40, LEN = 100, PER_CALL = 10 };
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    static btm_task_desc d[PER_CALL * LEN];
    static btm_task_id ups[PER_CALL * LEN], ids[PER_CALL * LEN];
    for (int c0 = 0; c0 < CHAINS; c0 += PER_CALL) {
        for (int j = 0; j < PER_CALL * LEN; j++) {
            int tag = 1000 + c0 * LEN + j;
            ups[j] = BTM_IN_BATCH | (btm_task_id)(j - 1);
            d[j] = desc_spec(spec_new(tag, NO_RESULT), 0, NULL, j % LEN ? &ups[j] : NULL, j % LEN ? 1 : 0);
        }
        REQUIRE(ADD_BATCH(m, d, PER_CALL * LEN, ids));
    }
    evlog l;
    evlog_init(&l);
    REQUIRE(poll_until_count(m, &l, CHAINS * LEN, 30000));
    CHECK_EQ(runlog_count(), CHAINS * LEN);
    for (int t = 0; t < CHAINS * LEN; t++) {
        int r = runlog_find(1000 + t);
        if (r < 0) {
            CHECK(r >= 0);
            break;
        }
        if (t % LEN && r < runlog_find(1000 + t - 1)) {
            t_fail(__FILE__, __LINE__, "task %d of chain %d ran before the task before it", t % LEN,
                   t / LEN);
            break;
        }
    }
    REQUIRE(settle(m, &l));
    CHECK_EQ(live_objects(), 0);
    evlog_free(&l);
    rm(m);
}

/* A batch task that fails fails its batch downstream tasks with it (they
 * never run); a stop of a batch task with stop_downstream reaches its
 * batch downstream tasks. */
TEST(bulk_in_batch_failure_and_stop_reach_downstream) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    spec *f = spec_new(20, NO_RESULT);
    f->fail = true;
    f->fail_msg = "boom";
    btm_task_id up0[] = {BTM_IN_BATCH | 0}, up1[] = {BTM_IN_BATCH | 1}, up3[] = {BTM_IN_BATCH | 3};
    btm_task_desc d[6];
    d[0] = desc_spec(f, 0, NULL, NULL, 0);
    d[1] = desc_spec(spec_new(21, NO_RESULT), 0, NULL, up0, 1);
    d[2] = desc_spec(spec_new(22, NO_RESULT), 0, NULL, up1, 1);
    d[3] = desc_simple(23, NO_RESULT, 0);
    d[4] = desc_spec(spec_new(24, NO_RESULT), 0, NULL, up3, 1);
    d[5] = desc_simple(25, NO_RESULT, 0);
    btm_task_id ids[6];
    REQUIRE(ADD_BATCH(m, d, 6, ids));
    btm_stop_report rep;
    REQUIRE_ST(btm_stop_task(m, ids[3], false, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 2);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK(runlog_find(20) >= 0 && runlog_find(25) >= 0);
    CHECK(runlog_find(21) < 0 && runlog_find(22) < 0 && runlog_find(23) < 0 && runlog_find(24) < 0);
    for (int i = 0; i < 3; i++) CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, ids[i]), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[5]), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[3]) + ev_count(&l, BTM_EVENT_TASK_FAILED, ids[3]) +
                 ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[4]) + ev_count(&l, BTM_EVENT_TASK_FAILED, ids[4]),
             0);
    evlog_free(&l);
    rm(m);
}

/* Pass-through entries: payload first, then gathered upstream results; no
 * payload gives an empty result; a payload without a free function is
 * left alone; a downstream sees the gathered list. */
TEST(bulk_pass_through) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    static obj unowned = {OBJ_ALIVE, 77};
    btm_task_id u = add_simple(m, 1, 50, 0, NULL, NULL, 0);
    btm_task_desc d[6];
    d[0] = desc_pass(100, 0, NULL, NULL, 0);
    d[1] = desc_pass(NO_RESULT, 0, NULL, NULL, 0);
    d[2] = desc_pass(300, 0, NULL, &u, 1);
    d[3] = desc_simple(4, 40, 0);
    d[4] = desc_pass(NO_RESULT, 0, NULL, &u, 1);
    d[5] = desc_pass(NO_RESULT, 0, NULL, NULL, 0);
    d[5].userdata = &unowned; /* no free function: never freed */
    btm_task_id ids[6];
    REQUIRE(ADD_BATCH(m, d, 6, ids));
    btm_task_id dd = add_simple(m, 5, NO_RESULT, 0, NULL, &ids[2], 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(runlog_count(), 3); /* u, d[3], dd: pass-through runs no code */
    for (int i = 0; i < 6; i++) CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ids[i]), 1);
    int e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[0]);
    REQUIRE(e >= 0);
    const value_rec w0[] = {{ids[0], 100}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, w0, 1, "payload only"));
    e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[1]);
    REQUIRE(e >= 0);
    CHECK_EQ(l.v[e].nres, 0);
    CHECK(l.v[e].results_null);
    e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[2]);
    REQUIRE(e >= 0);
    const value_rec w2[] = {{ids[2], 300}, {u, 50}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, w2, 2, "payload and upstream"));
    e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[3]);
    REQUIRE(e >= 0);
    const value_rec w3[] = {{ids[3], 40}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, w3, 1, "plain task among pass-through"));
    e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[4]);
    REQUIRE(e >= 0);
    const value_rec w4[] = {{u, 50}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, w4, 1, "upstream only"));
    e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, ids[5]);
    REQUIRE(e >= 0);
    const value_rec w5[] = {{ids[5], 77}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, w5, 1, "unowned payload"));
    int r = runlog_find(5);
    REQUIRE(r >= 0);
    run_rec rr = runlog_get((size_t)r);
    CHECK(values_are(rr.up, rr.nup, w2, 2, "downstream of a batch pass-through"));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, dd), 1);
    evlog_free(&l);
    rm(m);
    CHECK_EQ(unowned.magic, OBJ_ALIVE);
}

/* btm_add_tasks from inside a running task (through btm_context_manager):
 * the batch may wait on the running task itself. */
static atomic_uint_fast64_t inner_ids[2];
static atomic_uint inner_status;

static void hook_add_batch(spec *s, btm_task_context *ctx) {
    (void)s;
    btm_manager *m = btm_context_manager(ctx);
    btm_task_id self = btm_context_task_id(ctx);
    btm_task_desc d[2] = {desc_spec(spec_new(21, 121), 0, NULL, &self, 1),
                          desc_pass(130, 0, NULL, &self, 1)};
    btm_task_id ids[2] = {0, 0};
    atomic_store(&inner_status, btm_add_tasks(m, d, 2, ids));
    atomic_store(&inner_ids[0], ids[0]);
    atomic_store(&inner_ids[1], ids[1]);
}

TEST(bulk_from_inside_task) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    atomic_store(&inner_status, 999u);
    atomic_store(&inner_ids[0], 0);
    atomic_store(&inner_ids[1], 0);
    spec *s = spec_new(20, 120);
    s->hook = hook_add_batch;
    btm_task_id p = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &p), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(atomic_load(&inner_status), BTM_STATUS_OK);
    btm_task_id c0 = (btm_task_id)atomic_load(&inner_ids[0]);
    btm_task_id c1 = (btm_task_id)atomic_load(&inner_ids[1]);
    CHECK_EQ(c0, p + 1);
    CHECK_EQ(c1, p + 2);
    int r = runlog_find(21);
    REQUIRE(r >= 0);
    run_rec rr = runlog_get((size_t)r);
    const value_rec want[] = {{p, 120}};
    CHECK(values_are(rr.up, rr.nup, want, 1, "child of the adding task"));
    int e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, c1);
    REQUIRE(e >= 0);
    const value_rec wp[] = {{c1, 130}, {p, 120}};
    CHECK(values_are(l.v[e].res, l.v[e].nres, wp, 2, "pass-through child"));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 3);
    evlog_free(&l);
    rm(m);
}

/* count 0: OK with NULL arrays, nothing added, no id; NULL manager is
 * still NULL_ARGUMENT. */
TEST(bulk_count_zero) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_ST(btm_add_tasks(m, NULL, 0, NULL), BTM_STATUS_OK);
    btm_task_id out[2] = {SENTINEL, SENTINEL};
    /* Non-NULL arrays with count 0: nothing read, nothing written. */
    btm_task_desc d;
    memset(&d, 0, sizeof d);
    d.task_fn = noop_task;
    CHECK_ST(btm_add_tasks(m, &d, 0, out), BTM_STATUS_OK);
    CHECK_ST(btm_add_tasks(m, &d, 0, NULL), BTM_STATUS_OK);
    CHECK_ST(btm_add_tasks(m, NULL, 0, out), BTM_STATUS_OK);
    CHECK(out[0] == SENTINEL && out[1] == SENTINEL);
    CHECK_ST(btm_add_tasks(NULL, NULL, 0, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_add_tasks(NULL, &d, 0, out), BTM_STATUS_NULL_ARGUMENT);
    CHECK(out[0] == SENTINEL && out[1] == SENTINEL);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.queued, 1);
    btm_task_id next = add_simple(m, 2, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_EQ(next, last + 1);
    /* A zero-initialised descriptor plus task_fn is a plain task. */
    btm_task_desc z;
    memset(&z, 0, sizeof z);
    z.task_fn = noop_task;
    btm_task_id zid = 0;
    CHECK_ST(btm_add_tasks(m, &z, 1, &zid), BTM_STATUS_OK);
    CHECK_EQ(zid, next + 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int e = ev_find(&l, BTM_EVENT_TASK_COMPLETED, zid);
    REQUIRE(e >= 0);
    CHECK_EQ(l.v[e].group.kind, BTM_GROUP_KIND_DEFAULT);
    CHECK_EQ(l.v[e].nres, 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 3);
    evlog_free(&l);
    rm(m);
}

/* ------------------------------------------------------------------ */
/* Bad input: all or nothing                                           */
/* ------------------------------------------------------------------ */

/* A NULL manager: NULL_ARGUMENT, every userdata freed, nothing written. */
TEST(bulk_bad_null_manager) {
    {
        btm_task_desc d[3] = {desc_simple(1, NO_RESULT, 0), desc_pass(2, 0, NULL, NULL, 0),
                              desc_simple(3, 33, 4)};
        REJECT(NULL, d, 3, false, BTM_STATUS_NULL_ARGUMENT, NULL);
    }
    {
        btm_task_desc d[2] = {desc_simple(1, NO_RESULT, 0), desc_simple(2, NO_RESULT, 0)};
        REJECT(NULL, d, 2, true, BTM_STATUS_NULL_ARGUMENT, NULL);
    }
    REJECT(NULL, NULL, 3, false, BTM_STATUS_NULL_ARGUMENT, NULL);
    CHECK_EQ(live_objects(), 0);
}

/* A NULL task_ids_out: NULL_ARGUMENT, every userdata freed, no id issued. */
TEST(bulk_bad_null_ids_out) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, &last, 1),
                          desc_simple(4, NO_RESULT, 0)};
    REJECT(m, d, 3, true, BTM_STATUS_NULL_ARGUMENT, &last);
    btm_task_desc one[1] = {desc_simple(5, NO_RESULT, 0)};
    REJECT(m, one, 1, true, BTM_STATUS_NULL_ARGUMENT, &last);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 3); /* the first and two probes */
    CHECK(runlog_find(2) < 0 && runlog_find(4) < 0 && runlog_find(5) < 0);
    evlog_free(&l);
    rm(m);
}

/* tasks NULL with a count: INVALID_ARGUMENT, nothing to free, no id. */
TEST(bulk_bad_tasks_null) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    REJECT(m, NULL, 1, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    REJECT(m, NULL, 5, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    rm(m);
}

/* A NULL task_fn anywhere (first, middle, last): NULL_ARGUMENT; the good
 * descriptors around it are freed too. */
TEST(bulk_bad_null_task_fn) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const int positions[] = {0, 2, 3};
    for (size_t k = 0; k < 3; k++) {
        btm_task_desc d[4] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, &last, 1),
                              desc_simple(4, 44, 1), desc_simple(5, NO_RESULT, 0)};
        d[positions[k]].task_fn = NULL; /* flags 0: a task without a function */
        REJECT(m, d, 4, false, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    {
        /* a pass-through entry missing its flag is a task without a function */
        btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, NULL, 0),
                              desc_simple(4, NO_RESULT, 0)};
        d[1].flags = 0;
        REJECT(m, d, 3, false, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    {
        /* ... also with no userdata at all */
        btm_task_desc d[3];
        d[0] = desc_simple(2, NO_RESULT, 0);
        memset(&d[1], 0, sizeof d[1]);
        d[2] = desc_simple(4, NO_RESULT, 0);
        REJECT(m, d, 3, false, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 6); /* the first and five probes */
    CHECK(runlog_find(2) < 0 && runlog_find(4) < 0 && runlog_find(5) < 0);
    evlog_free(&l);
    rm(m);
}

/* Unknown flags bits, and a task_fn on a pass-through: INVALID_ARGUMENT. */
TEST(bulk_bad_flags) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const uint32_t bad[] = {2, 4, 0x80000000u, BTM_TASK_PASS_THROUGH | 2u, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* with a task function */
        btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0), desc_simple(3, NO_RESULT, 0),
                              desc_pass(4, 0, NULL, NULL, 0)};
        d[1].flags = bad[i];
        REJECT(m, d, 3, false, BTM_STATUS_INVALID_ARGUMENT, &last);
        /* without one (as a pass-through would be) */
        btm_task_desc e[3] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, NULL, 0),
                              desc_simple(4, NO_RESULT, 0)};
        e[1].flags = bad[i];
        REJECT(m, e, 3, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    {
        btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, NULL, 0),
                              desc_simple(4, NO_RESULT, 0)};
        d[1].task_fn = noop_task; /* a pass-through with a function */
        REJECT(m, d, 3, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_simple(3, NO_RESULT, 0)};
        d[1].flags = BTM_TASK_PASS_THROUGH; /* spec_task set: rejected */
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    rm(m);
}

/* A group kind out of range: INVALID_GROUP. */
TEST(bulk_bad_group_kind) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const btm_group bad[] = {{3, 0, 1}, {UINT32_MAX, 0, 0}, {0x100, 0, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0),
                              desc_spec(spec_new(3, NO_RESULT), 0, &bad[i], NULL, 0),
                              desc_pass(4, 0, NULL, NULL, 0)};
        REJECT(m, d, 3, false, BTM_STATUS_INVALID_GROUP, &last);
        btm_task_desc e[2] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, &bad[i], NULL, 0)};
        REJECT(m, e, 2, false, BTM_STATUS_INVALID_GROUP, &last);
    }
    rm(m);
}

/* A batch whose descriptors all name one group, with no upstream task or
 * only the one before (a chain), is checked through its first descriptor
 * (the uniform batch's short path): a bad group there still rejects the
 * whole call, frees every userdata and issues no id. */
TEST(bulk_uniform_batch_with_a_bad_group) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_manager *other = mk(1, false);
    REQUIRE(other);
    btm_group foreign;
    REQUIRE_ST(btm_group_named(other, "elsewhere", &foreign), BTM_STATUS_OK);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const btm_group bad[] = {{3, 0, 1}, {BTM_GROUP_KIND_NAMED, 0, 123456}, foreign};
    /* The same as a chain (each task naming the one before). */
    const btm_task_id links[4] = {0, BTM_IN_BATCH | 0, BTM_IN_BATCH | 1, BTM_IN_BATCH | 2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        btm_task_desc d[4], c[4];
        for (int k = 0; k < 4; k++) {
            d[k] = desc_spec(spec_new(2 + k, NO_RESULT), 5, &bad[i], NULL, 0);
            c[k] = desc_spec(spec_new(2 + k, NO_RESULT), 5, &bad[i], k ? &links[k] : NULL, k ? 1 : 0);
        }
        REJECT(m, d, 4, false, BTM_STATUS_INVALID_GROUP, &last);
        REJECT(m, c, 4, false, BTM_STATUS_INVALID_GROUP, &last);
    }
    rm(other);
    rm(m);
}

/* A named group never interned by this manager: INVALID_GROUP. */
TEST(bulk_bad_named_group_not_interned) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_manager *other = mk(1, false);
    REQUIRE(other);
    btm_group names[3], mine;
    REQUIRE_ST(btm_group_named(other, "a", &names[0]), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(other, "b", &names[1]), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(other, "c", &names[2]), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(m, "mine", &mine), BTM_STATUS_OK);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const btm_group bad[] = {{BTM_GROUP_KIND_NAMED, 0, 123456}, names[2]};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        btm_task_desc d[3] = {desc_spec(spec_new(2, NO_RESULT), 0, &mine, NULL, 0),
                              desc_simple(3, NO_RESULT, 0),
                              desc_spec(spec_new(4, NO_RESULT), 0, &bad[i], NULL, 0)};
        REJECT(m, d, 3, false, BTM_STATUS_INVALID_GROUP, &last);
        btm_task_desc e[2] = {desc_pass(2, 0, &bad[i], NULL, 0), desc_simple(3, NO_RESULT, 0)};
        REJECT(m, e, 2, false, BTM_STATUS_INVALID_GROUP, &last);
    }
    btm_group_stats gs;
    REQUIRE_ST(btm_get_group_stats(m, &mine, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 0);
    rm(other);
    rm(m);
}

/* upstream NULL with a length: INVALID_ARGUMENT. */
TEST(bulk_bad_upstream_null_with_len) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    {
        btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0),
                              desc_spec(spec_new(3, NO_RESULT), 0, NULL, NULL, 1),
                              desc_simple(4, NO_RESULT, 0)};
        REJECT(m, d, 3, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, NULL, 3)};
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, NULL, NULL, SIZE_MAX),
                              desc_simple(3, NO_RESULT, 0)};
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    /* A non-NULL pointer with length 0 is "no upstream". */
    btm_task_id bogus = 999999;
    btm_task_desc ok[1] = {desc_spec(spec_new(5, NO_RESULT), 0, NULL, &bogus, 0)};
    btm_task_id id[1];
    REQUIRE(ADD_BATCH(m, ok, 1, id));
    CHECK_EQ(id[0], last + 1);
    rm(m);
}

/* An upstream id never issued (the next id, 0, UINT64_MAX, one bad among
 * good ones): UNKNOWN_UPSTREAM. */
TEST(bulk_bad_upstream_never_issued) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id first = last;
    for (int k = 0; k < 8; k++) {
        /* recomputed for every call: each probe issues the next id */
        btm_task_id up[2] = {first, 0};
        size_t n = 1;
        switch (k / 2) {
        case 0: up[0] = last + 1; break; /* the next id */
        case 1: up[0] = 0; break;
        case 2: up[0] = UINT64_MAX; break;
        default: up[1] = last + 100; n = 2; break;
        }
        if (k % 2 == 0) {
            btm_task_desc d[3] = {desc_spec(spec_new(2, NO_RESULT), 0, NULL, &first, 1),
                                  desc_simple(3, NO_RESULT, 0),
                                  desc_spec(spec_new(4, NO_RESULT), 0, NULL, up, n)};
            REJECT(m, d, 3, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
        } else {
            btm_task_desc e[2] = {desc_pass(5, 0, NULL, up, n), desc_simple(6, NO_RESULT, 0)};
            REJECT(m, e, 2, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
        }
    }
    /* The probes are real tasks: waiting on them (and on `first`) works. */
    btm_task_id up2[2] = {first, last};
    btm_task_desc d[1] = {desc_spec(spec_new(7, NO_RESULT), 0, NULL, up2, 2)};
    btm_task_id id[1];
    REQUIRE(ADD_BATCH(m, d, 1, id));
    CHECK_EQ(id[0], last + 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, id[0]), 1);
    CHECK(runlog_find(2) < 0 && runlog_find(4) < 0);
    evlog_free(&l);
    rm(m);
}

/* BTM_IN_BATCH naming the descriptor itself, a later one or one past the
 * array: UNKNOWN_UPSTREAM, every userdata freed, no id issued; in
 * btm_add_task, where there is no batch, any id with the bit too. */
TEST(bulk_bad_in_batch_not_before) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const btm_task_id bad[] = {BTM_IN_BATCH | 1, BTM_IN_BATCH | 2, BTM_IN_BATCH | 3, BTM_IN_BATCH | 1000,
                               BTM_IN_BATCH | (1ull << 62), UINT64_MAX};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        btm_task_id up[2] = {BTM_IN_BATCH | 0, bad[k]};
        btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0),
                              desc_spec(spec_new(3, NO_RESULT), 0, NULL, up, 2),
                              desc_simple(4, NO_RESULT, 0)};
        REJECT(m, d, 3, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
    }
    {
        btm_task_id up = BTM_IN_BATCH | 0; /* the first descriptor names itself */
        btm_task_desc d[1] = {desc_pass(5, 0, NULL, &up, 1)};
        REJECT(m, d, 1, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
    }
    btm_task_id up = BTM_IN_BATCH | 0, id = 0;
    long live0 = live_objects();
    CHECK_ST(add_spec(m, spec_new(6, NO_RESULT), 0, NULL, &up, 1, &id), BTM_STATUS_UNKNOWN_UPSTREAM);
    CHECK_EQ(live_objects(), live0);
    up = BTM_IN_BATCH | last;
    CHECK_ST(add_spec(m, spec_new(7, NO_RESULT), 0, NULL, &up, 1, &id), BTM_STATUS_UNKNOWN_UPSTREAM);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK(runlog_find(2) < 0 && runlog_find(3) < 0 && runlog_find(6) < 0 && runlog_find(7) < 0);
    evlog_free(&l);
    rm(m);
}

/* After btm_shut_down: SHUT_DOWN, every userdata freed (count 0 stays OK). */
TEST(bulk_bad_after_shut_down) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_shut_down(m, WAIT_MS, NULL), BTM_STATUS_OK);
    CHECK_EQ(live_objects(), 0);
    {
        btm_task_desc d[3] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, NULL, 0),
                              desc_spec(spec_new(4, NO_RESULT), 0, NULL, &a, 1)};
        REJECT(m, d, 3, false, BTM_STATUS_SHUT_DOWN, NULL);
    }
    {
        btm_task_desc d[1] = {desc_pass(5, 0, NULL, NULL, 0)};
        REJECT(m, d, 1, false, BTM_STATUS_SHUT_DOWN, NULL);
    }
    CHECK_ST(btm_add_tasks(m, NULL, 0, NULL), BTM_STATUS_OK); /* count 0: documented OK */
    CHECK_EQ(live_objects(), 0);
    rm(m);
}

/* The documented order when two errors are present: NULL_ARGUMENT
 * (manager, then task_ids_out); INVALID_ARGUMENT (tasks NULL); descriptors
 * in array order, the first bad one deciding (task_fn / flags, then group
 * kind, then upstream NULL with a length); SHUT_DOWN; then in array order
 * named groups never interned and upstream ids never issued. */
TEST(bulk_bad_error_order) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id last = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const btm_group bad_kind = {7, 0, 0};
    const btm_group not_interned = {BTM_GROUP_KIND_NAMED, 0, 424242};
    btm_task_id never = 1000000;

    /* NULL manager before everything. */
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_simple(3, NO_RESULT, 0)};
        d[0].flags = 8;
        REJECT(NULL, d, 2, false, BTM_STATUS_NULL_ARGUMENT, NULL);
    }
    {
        btm_task_desc d[1] = {desc_spec(spec_new(2, NO_RESULT), 0, &bad_kind, NULL, 0)};
        REJECT(NULL, d, 1, true, BTM_STATUS_NULL_ARGUMENT, NULL);
    }
    /* NULL task_ids_out before tasks NULL and before the descriptors. */
    REJECT(m, NULL, 2, true, BTM_STATUS_NULL_ARGUMENT, &last);
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_simple(3, NO_RESULT, 0)};
        d[1].flags = 2;
        REJECT(m, d, 2, true, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    {
        btm_task_desc d[1] = {desc_spec(spec_new(2, NO_RESULT), 0, &bad_kind, NULL, 0)};
        REJECT(m, d, 1, true, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    /* Descriptors: the first bad one decides. */
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, &bad_kind, NULL, 0),
                              desc_simple(3, NO_RESULT, 0)};
        d[1].task_fn = NULL;
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_GROUP, &last);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0),
                              desc_spec(spec_new(3, NO_RESULT), 0, &bad_kind, NULL, 0)};
        d[0].task_fn = NULL;
        REJECT(m, d, 2, false, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_simple(3, NO_RESULT, 0)};
        d[0].flags = 2;
        d[1].task_fn = NULL;
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, NULL, NULL, 2),
                              desc_simple(3, NO_RESULT, 0)};
        d[1].task_fn = NULL;
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    /* Within one descriptor: the group kind before the upstream array. */
    {
        btm_task_desc d[1] = {desc_spec(spec_new(2, NO_RESULT), 0, &bad_kind, NULL, 1)};
        REJECT(m, d, 1, false, BTM_STATUS_INVALID_GROUP, &last);
    }
    /* Within one descriptor: task_fn / flags before the group kind. */
    {
        btm_task_desc d[1] = {desc_spec(spec_new(2, NO_RESULT), 0, &bad_kind, NULL, 0)};
        d[0].task_fn = NULL;
        REJECT(m, d, 1, false, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    {
        btm_task_desc d[1] = {desc_spec(spec_new(2, NO_RESULT), 0, &bad_kind, NULL, 0)};
        d[0].flags = 16;
        REJECT(m, d, 1, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    /* Every descriptor check before the never-interned name and the never
     * issued upstream, even when those come first in the array. */
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, &not_interned, NULL, 0),
                              desc_simple(3, NO_RESULT, 0)};
        d[1].task_fn = NULL;
        REJECT(m, d, 2, false, BTM_STATUS_NULL_ARGUMENT, &last);
    }
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, NULL, &never, 1),
                              desc_spec(spec_new(3, NO_RESULT), 0, &bad_kind, NULL, 0)};
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_GROUP, &last);
    }
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, NULL, &never, 1),
                              desc_pass(3, 0, NULL, NULL, 1)};
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, &not_interned, NULL, 0),
                              desc_simple(3, NO_RESULT, 0)};
        d[1].flags = 4;
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, &last);
    }
    /* Named group and upstream: in array order. */
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, NULL, &never, 1),
                              desc_spec(spec_new(3, NO_RESULT), 0, &not_interned, NULL, 0)};
        REJECT(m, d, 2, false, BTM_STATUS_UNKNOWN_UPSTREAM, &last);
    }
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, &not_interned, NULL, 0),
                              desc_spec(spec_new(3, NO_RESULT), 0, NULL, &never, 1)};
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_GROUP, &last);
    }
    {
        btm_task_desc d[1] = {desc_spec(spec_new(2, NO_RESULT), 0, &not_interned, &never, 1)};
        REJECT(m, d, 1, false, BTM_STATUS_INVALID_GROUP, &last);
    }

    /* After shut down: the argument and descriptor checks come first,
     * SHUT_DOWN before the name and upstream checks. */
    REQUIRE_ST(btm_shut_down(m, WAIT_MS, NULL), BTM_STATUS_OK);
    REJECT(m, NULL, 2, true, BTM_STATUS_NULL_ARGUMENT, NULL);
    REJECT(m, NULL, 2, false, BTM_STATUS_INVALID_ARGUMENT, NULL);
    {
        btm_task_desc d[1] = {desc_simple(2, NO_RESULT, 0)};
        REJECT(m, d, 1, true, BTM_STATUS_NULL_ARGUMENT, NULL);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_simple(3, NO_RESULT, 0)};
        d[1].task_fn = NULL;
        REJECT(m, d, 2, false, BTM_STATUS_NULL_ARGUMENT, NULL);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, NULL, 0)};
        d[1].flags = 6;
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, NULL);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, NULL, NULL, 5)};
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_ARGUMENT, NULL);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, &bad_kind, NULL, 0)};
        REJECT(m, d, 2, false, BTM_STATUS_INVALID_GROUP, NULL);
    }
    {
        btm_task_desc d[2] = {desc_simple(2, NO_RESULT, 0), desc_pass(3, 0, &not_interned, NULL, 0)};
        REJECT(m, d, 2, false, BTM_STATUS_SHUT_DOWN, NULL);
    }
    {
        btm_task_desc d[2] = {desc_spec(spec_new(2, NO_RESULT), 0, NULL, &never, 1),
                              desc_simple(3, NO_RESULT, 0)};
        REJECT(m, d, 2, false, BTM_STATUS_SHUT_DOWN, NULL);
    }
    CHECK_EQ(live_objects(), 0);
    rm(m);
}

const test_case tests_bulk[] = {
    TEST_ENTRY(bulk_runs_every_task),
    TEST_ENTRY(bulk_large_batch),
    TEST_ENTRY(bulk_priorities_within_and_across),
    TEST_ENTRY(bulk_groups_by_value),
    TEST_ENTRY(bulk_upstream_added_before),
    TEST_ENTRY(bulk_upstream_read_from_the_ids_out_array),
    TEST_ENTRY(bulk_upstream_same_batch_rejected),
    TEST_ENTRY(bulk_in_batch_upstream_graph),
    TEST_ENTRY(bulk_in_batch_chains_on_a_running_manager),
    TEST_ENTRY(bulk_in_batch_failure_and_stop_reach_downstream),
    TEST_ENTRY(bulk_pass_through),
    TEST_ENTRY(bulk_from_inside_task),
    TEST_ENTRY(bulk_count_zero),
    TEST_ENTRY(bulk_bad_null_manager),
    TEST_ENTRY(bulk_bad_null_ids_out),
    TEST_ENTRY(bulk_bad_tasks_null),
    TEST_ENTRY(bulk_bad_null_task_fn),
    TEST_ENTRY(bulk_bad_flags),
    TEST_ENTRY(bulk_bad_group_kind),
    TEST_ENTRY(bulk_uniform_batch_with_a_bad_group),
    TEST_ENTRY(bulk_bad_named_group_not_interned),
    TEST_ENTRY(bulk_bad_upstream_null_with_len),
    TEST_ENTRY(bulk_bad_upstream_never_issued),
    TEST_ENTRY(bulk_bad_in_batch_not_before),
    TEST_ENTRY(bulk_bad_after_shut_down),
    TEST_ENTRY(bulk_bad_error_order),
    {NULL, NULL},
};
