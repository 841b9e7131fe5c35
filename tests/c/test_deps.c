/* Dependencies, result passing, pass-through gathering, failure cascade,
 * liveness of completed/failed-but-unpolled upstream tasks.
 * SEMANTICS parity 4, 5, 6, 7. */
#include "harness.h"

/* A downstream sees its upstream results in the order those completed (not
 * the order listed or added), each with the id of its producer. */
TEST(results_in_completion_order) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id u1 = add_simple(m, 1, 11, 1, NULL, NULL, 0);
    btm_task_id u2 = add_simple(m, 2, 12, 3, NULL, NULL, 0);
    btm_task_id u3 = add_simple(m, 3, 13, 2, NULL, NULL, 0);
    btm_task_id u4 = add_simple(m, 4, NO_RESULT, 4, NULL, NULL, 0); /* no result */
    btm_task_id ups[] = {u1, u2, u3, u4, u2}; /* duplicate counts once */
    btm_task_id d = add_simple(m, 5, 15, 0, NULL, ups, 5);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int ri = runlog_find(5);
    REQUIRE(ri >= 0);
    run_rec r = runlog_get((size_t)ri);
    const value_rec want[] = {{u2, 12}, {u3, 13}, {u1, 11}};
    CHECK(values_are(r.up, r.nup, want, 3, "downstream saw"));
    /* Events: u4 (no result: empty), u2, u3, u1, d. */
    int i4 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, u4);
    REQUIRE(i4 >= 0);
    CHECK_EQ(l.v[i4].nres, 0);
    CHECK(l.v[i4].results_null);
    int id_ = ev_find(&l, BTM_EVENT_TASK_COMPLETED, d);
    REQUIRE(id_ >= 0);
    const value_rec dres[] = {{d, 15}};
    CHECK(values_are(l.v[id_].res, l.v[id_].nres, dres, 1, "downstream's result"));
    /* Upstream results stay readable in their own events too (freed only
     * after the host's event and the downstream are done with them). */
    int i1 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, u1);
    REQUIRE(i1 >= 0);
    CHECK_EQ(l.v[i1].nres, 1);
    CHECK_EQ(l.v[i1].res[0].tag, 11);
    evlog_free(&l);
    rm(m);
}

/* One result read by several downstream tasks, and by the host, is freed
 * once after the last reader. */
TEST(shared_result_fan_out) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    btm_task_id u = add_simple(m, 1, 42, 0, NULL, NULL, 0);
    btm_task_id ds[8];
    for (int i = 0; i < 8; i++) ds[i] = add_simple(m, 10 + i, NO_RESULT, 0, NULL, &u, 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    for (int i = 0; i < 8; i++) {
        int ri = runlog_find(10 + i);
        REQUIRE(ri >= 0);
        run_rec r = runlog_get((size_t)ri);
        CHECK_EQ(r.nup, 1);
        CHECK_EQ(r.up[0].task_id, u);
        CHECK_EQ(r.up[0].tag, 42);
        CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, ds[i]), 1);
    }
    /* Still live after the last poll's pointers: the next poll frees it. */
    poll_drain(m, &l);
    CHECK_EQ(live_objects(), 0);
    evlog_free(&l);
    rm(m);
}

/* A chain runs to the end with no host poll between links. */
TEST(chain_needs_no_poll) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    enum { N = 50 };
    btm_task_id ids[N];
    ids[0] = add_simple(m, 0, 1000, 0, NULL, NULL, 0);
    for (int i = 1; i < N; i++) ids[i] = add_simple(m, i, 1000 + i, 0, NULL, &ids[i - 1], 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    /* No poll: wait_idle alone must see the whole chain done. */
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    REQUIRE_EQ(runlog_count(), N);
    for (int i = 0; i < N; i++) {
        run_rec r = runlog_get((size_t)i);
        CHECK_EQ(r.tag, i);
        if (i > 0) {
            CHECK_EQ(r.nup, 1);
            CHECK_EQ(r.up[0].task_id, ids[i - 1]);
            CHECK_EQ(r.up[0].tag, 1000 + i - 1);
        }
    }
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK(s.undelivered >= N); /* (exact count: see stats_counters) */
    CHECK_EQ(s.completed_total, N);
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    REQUIRE_EQ(l.n, N + 1);
    for (int i = 0; i < N; i++) CHECK(ev_is(&l, (size_t)i, BTM_EVENT_TASK_COMPLETED, ids[i]));
    CHECK_EQ(l.v[N].kind, BTM_EVENT_GROUP_FINISHED);
    evlog_free(&l);
    rm(m);
}

/* Pass-through: payload first, then upstream entries in completion order;
 * its own downstream sees the same list; nested pass-through contributes
 * all its entries; empty pass-through completes with an empty result. */
TEST(pass_through_gathering) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id u1 = add_simple(m, 1, 11, 1, NULL, NULL, 0);
    btm_task_id u2 = add_simple(m, 2, 12, 2, NULL, NULL, 0); /* completes first */
    btm_task_id pu[] = {u1, u2};
    btm_task_id p = add_pass(m, 0, NULL, pu, 2, 100);
    btm_task_id d = add_simple(m, 3, NO_RESULT, 0, NULL, &p, 1);
    btm_task_id u3 = add_simple(m, 4, 14, -1, NULL, NULL, 0);
    btm_task_id p2u[] = {u3, p};
    btm_task_id p2 = add_pass(m, -2, NULL, p2u, 2, 200);  /* nested */
    btm_task_id d2 = add_simple(m, 5, NO_RESULT, -3, NULL, &p2, 1);
    btm_task_id empty = add_pass(m, -4, NULL, NULL, 0, NO_RESULT);
    btm_task_id d3 = add_simple(m, 6, NO_RESULT, -5, NULL, &empty, 1);
    btm_task_id nores = add_simple(m, 7, NO_RESULT, -6, NULL, NULL, 0);
    btm_task_id p3 = add_pass(m, -7, NULL, &nores, 1, NO_RESULT); /* upstream gave nothing */
    btm_task_id p4 = add_pass(m, -8, NULL, NULL, 0, 400);         /* payload only */
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));

    const value_rec want_p[] = {{p, 100}, {u2, 12}, {u1, 11}};
    int ip = ev_find(&l, BTM_EVENT_TASK_COMPLETED, p);
    REQUIRE(ip >= 0);
    CHECK(values_are(l.v[ip].res, l.v[ip].nres, want_p, 3, "pass-through event"));
    int rd = runlog_find(3);
    REQUIRE(rd >= 0);
    run_rec r = runlog_get((size_t)rd);
    CHECK(values_are(r.up, r.nup, want_p, 3, "pass-through downstream saw"));

    /* p completed before u3 (priority 0 vs -1). */
    const value_rec want_p2[] = {{p2, 200}, {p, 100}, {u2, 12}, {u1, 11}, {u3, 14}};
    int ip2 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, p2);
    REQUIRE(ip2 >= 0);
    CHECK(values_are(l.v[ip2].res, l.v[ip2].nres, want_p2, 5, "nested pass-through event"));
    int rd2 = runlog_find(5);
    REQUIRE(rd2 >= 0);
    r = runlog_get((size_t)rd2);
    CHECK(values_are(r.up, r.nup, want_p2, 5, "nested downstream saw"));

    int ie = ev_find(&l, BTM_EVENT_TASK_COMPLETED, empty);
    REQUIRE(ie >= 0);
    CHECK_EQ(l.v[ie].nres, 0);
    CHECK(l.v[ie].results_null);
    int rd3 = runlog_find(6);
    REQUIRE(rd3 >= 0);
    CHECK_EQ(runlog_get((size_t)rd3).nup, 0);

    int i3 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, p3);
    REQUIRE(i3 >= 0);
    CHECK_EQ(l.v[i3].nres, 0);
    int i4 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, p4);
    REQUIRE(i4 >= 0);
    const value_rec want_p4[] = {{p4, 400}};
    CHECK(values_are(l.v[i4].res, l.v[i4].nres, want_p4, 1, "payload-only pass-through"));
    /* Pass-through tasks are scheduled like any other: p after u2, u1; the
     * empty one in its priority turn. */
    CHECK(ev_find(&l, BTM_EVENT_TASK_COMPLETED, u1) < ip);
    CHECK(ip < ev_find(&l, BTM_EVENT_TASK_COMPLETED, d));
    CHECK(ev_find(&l, BTM_EVENT_TASK_COMPLETED, d2) < ie);
    CHECK(ie < ev_find(&l, BTM_EVENT_TASK_COMPLETED, d3));
    CHECK(ev_find(&l, BTM_EVENT_TASK_COMPLETED, d3) < i3);
    evlog_free(&l);
    rm(m);
}

/* A pass-through waits for its priority turn even with no upstream. */
TEST(pass_through_scheduled_by_priority) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 5, NULL, NULL, 0);
    btm_task_id p = add_pass(m, 0, NULL, NULL, 0, 9);
    btm_task_id b = add_simple(m, 2, NO_RESULT, 1, NULL, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    REQUIRE_EQ(l.n, 4);
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, a));
    CHECK(ev_is(&l, 1, BTM_EVENT_TASK_COMPLETED, b));
    CHECK(ev_is(&l, 2, BTM_EVENT_TASK_COMPLETED, p));
    evlog_free(&l);
    rm(m);
}

/* Failure cascade: BFS from the failing task, siblings ascending id, each
 * task once, same message and details; a downstream fails even if another
 * upstream completed; downstream tasks never run. */
TEST(failure_cascade_bfs) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id ok = add_simple(m, 1, 11, 10, NULL, NULL, 0); /* completes first */
    btm_task_id f = add_failing(m, 2, 5, NULL, NULL, 0, "disk full", "at line 3\nat line 7");
    btm_task_id a = add_simple(m, 3, NO_RESULT, 0, NULL, &f, 1);
    btm_task_id a1 = add_simple(m, 4, NO_RESULT, 0, NULL, &a, 1);
    btm_task_id b = add_simple(m, 5, NO_RESULT, 0, NULL, &f, 1);
    btm_task_id dup[] = {a, b};
    btm_task_id dmd = add_simple(m, 6, NO_RESULT, 0, NULL, dup, 2); /* diamond */
    btm_task_id b1 = add_simple(m, 7, NO_RESULT, 0, NULL, &b, 1);
    btm_task_id mix[] = {ok, f};
    btm_task_id x = add_simple(m, 8, NO_RESULT, 0, NULL, mix, 2);
    btm_task_id pt = add_pass(m, 0, NULL, &b1, 1, 77); /* pass-through downstream */
    btm_task_id other = add_simple(m, 9, NO_RESULT, -1, NULL, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    /* ok, f ran; none of the downstream ran; other ran. */
    CHECK(runlog_find(1) >= 0);
    CHECK(runlog_find(2) >= 0);
    for (int t = 3; t <= 8; t++) CHECK_EQ(runlog_find(t), -1);
    CHECK(runlog_find(9) >= 0);
    /* Expected events: ok completed, f failed, then BFS: f's downstream
     * ascending (a, b, x), then a's (a1, dmd), b's (dmd already, b1), x's
     * none, a1's none, dmd's none, b1's (pt); then other, group finished. */
    const btm_task_id order[] = {f, a, b, x, a1, dmd, b1, pt};
    int i0 = ev_find(&l, BTM_EVENT_TASK_FAILED, f);
    REQUIRE(i0 >= 1);
    CHECK(ev_is(&l, (size_t)i0 - 1, BTM_EVENT_TASK_COMPLETED, ok));
    for (size_t k = 0; k < 8; k++) {
        size_t i = (size_t)i0 + k;
        if (!ev_is(&l, i, BTM_EVENT_TASK_FAILED, order[k])) {
            t_fail(__FILE__, __LINE__, "cascade position %zu: expected task %llu", k,
                   (unsigned long long)order[k]);
            evlog_dump(&l, "cascade");
            break;
        }
        CHECK_STR(l.v[i].message, "disk full");
        CHECK_STR(l.v[i].details, "at line 3\nat line 7");
    }
    for (size_t k = 0; k < 8; k++) CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, order[k]), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, x), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, 0), 8);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, other), 1);
    CHECK(ev_find(&l, BTM_EVENT_TASK_COMPLETED, other) > i0 + 7);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.failed_total, 8);
    CHECK_EQ(s.completed_total, 2);
    evlog_free(&l);
    rm(m);
}

/* A failing task that set a result first: the result is freed, the event
 * carries no result; NULL message / details give the documented defaults. */
TEST(failure_defaults_and_result_dropped) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    spec *s = spec_new(1, 55);
    s->fail = true; /* NULL message and details */
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int i = ev_find(&l, BTM_EVENT_TASK_FAILED, id);
    REQUIRE(i >= 0);
    CHECK_STR(l.v[i].message, "task failed");
    CHECK_STR(l.v[i].details, "");
    CHECK_EQ(l.v[i].nres, 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, id), 0);
    evlog_free(&l);
    rm(m);
}

/* A downstream added after its upstream completed, but before the host
 * polled that completion, still gets the result (the upstream is live). */
TEST(downstream_of_completed_unpolled_gets_result) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_task_id u = add_simple(m, 1, 11, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    btm_task_id d = add_simple(m, 2, NO_RESULT, 0, NULL, &u, 1);
    btm_task_id p = add_pass(m, 0, NULL, &u, 1, NO_RESULT);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int ri = runlog_find(2);
    REQUIRE(ri >= 0);
    run_rec r = runlog_get((size_t)ri);
    REQUIRE_EQ(r.nup, 1);
    CHECK_EQ(r.up[0].task_id, u);
    CHECK_EQ(r.up[0].tag, 11);
    int ip = ev_find(&l, BTM_EVENT_TASK_COMPLETED, p);
    REQUIRE(ip >= 0);
    REQUIRE_EQ(l.v[ip].nres, 1);
    CHECK_EQ(l.v[ip].res[0].tag, 11);
    CHECK(ev_find(&l, BTM_EVENT_TASK_COMPLETED, u) < ev_find(&l, BTM_EVENT_TASK_COMPLETED, d));
    evlog_free(&l);
    rm(m);
}

/* Upstream ids of tasks no longer live (completed and polled, failed and
 * polled, stopped) neither block nor deliver anything. */
TEST(upstream_no_longer_live_ignored) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_task_id done = add_simple(m, 1, 11, 0, NULL, NULL, 0);
    btm_task_id failed = add_failing(m, 2, 0, NULL, NULL, 0, "x", "y");
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id st = add_simple(m, 3, 13, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_stop_task(m, st, false, false, NULL), BTM_STATUS_OK);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    btm_task_id ups[] = {done, failed, st};
    btm_task_id d = add_simple(m, 4, NO_RESULT, 0, NULL, ups, 3);
    REQUIRE(settle(m, &l));
    int ri = runlog_find(4);
    REQUIRE(ri >= 0);
    CHECK_EQ(runlog_get((size_t)ri).nup, 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, d), 1);
    CHECK_EQ(runlog_find(3), -1);
    evlog_free(&l);
    rm(m);
}

/* A downstream of a failed-but-unpolled task fails at the add: its failed
 * event follows the events already queued; its userdata is freed without
 * running it. */
TEST(downstream_of_failed_unpolled_fails_at_add) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 77};
    btm_task_id u = add_failing(m, 1, 0, &g, NULL, 0, "bad input", "details here");
    btm_task_id other = add_simple(m, 2, NO_RESULT, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    btm_task_id d = 0;
    REQUIRE_ST(add_spec(m, spec_new(3, NO_RESULT), 0, &g, &u, 1, &d), BTM_STATUS_OK);
    CHECK(d > other);
    btm_task_id p = 0;
    REQUIRE_ST(btm_add_pass_through_task(m, 0, NULL, &d, 1, obj_new(9), obj_free, &p),
               BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(runlog_find(3), -1);
    /* u failed, other completed (default group finished), d failed, p
     * failed (downstream of d), then group 77 finished after d. */
    int iu = ev_find(&l, BTM_EVENT_TASK_FAILED, u);
    int io = ev_find(&l, BTM_EVENT_TASK_COMPLETED, other);
    int id_ = ev_find(&l, BTM_EVENT_TASK_FAILED, d);
    int ip = ev_find(&l, BTM_EVENT_TASK_FAILED, p);
    int ig = ev_find_group(&l, &g);
    REQUIRE(iu >= 0 && io >= 0 && id_ >= 0 && ip >= 0);
    CHECK(iu < id_);
    CHECK(io < id_);
    CHECK_STR(l.v[id_].message, "bad input");
    CHECK_STR(l.v[id_].details, "details here");
    CHECK_STR(l.v[ip].message, "bad input");
    /* group 77 finishes once, after d's failure (u's failure did not end it:
     * d was added before the host polled u). */
    CHECK_EQ(ev_count_group(&l, &g), 1);
    CHECK(ig > id_);
    /* The default group's finish queued after `other` must not be
     * delivered: p joined the default group before the host polled it. The
     * exact sequence: */
    btm_group dflt = {BTM_GROUP_KIND_DEFAULT, 0, 0};
    CHECK_EQ(ev_count_group(&l, &dflt), 1);
    bool exact = l.n == 6 && ev_is(&l, 0, BTM_EVENT_TASK_FAILED, u) &&
                 ev_is(&l, 1, BTM_EVENT_TASK_COMPLETED, other) &&
                 ev_is(&l, 2, BTM_EVENT_TASK_FAILED, d) &&
                 l.v[3].kind == BTM_EVENT_GROUP_FINISHED && group_eq(&l.v[3].group, &g) &&
                 ev_is(&l, 4, BTM_EVENT_TASK_FAILED, p) &&
                 l.v[5].kind == BTM_EVENT_GROUP_FINISHED && group_eq(&l.v[5].group, &dflt);
    CHECK(exact);
    if (!exact) evlog_dump(&l, "failed-unpolled");
    evlog_free(&l);
    rm(m);
}

/* An upstream stopped with stop_downstream=false: the downstream runs
 * without that result (but keeps results handed to it before the stop). */
TEST(downstream_runs_without_stopped_upstream_result) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, 11, 5, NULL, NULL, 0);
    gate *g = gate_new();
    btm_task_id b = add_gated(m, 2, 12, g, 4, NULL, NULL, 0);
    btm_task_id c = add_simple(m, 3, 13, 3, NULL, NULL, 0);
    btm_task_id ups[] = {a, b, c};
    btm_task_id d = add_simple(m, 4, NO_RESULT, 0, NULL, ups, 3);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS)); /* a done, b running */
    /* Stop a (completed, unpolled: already handed to d) and b (running). */
    btm_stop_report rep;
    CHECK_ST(btm_stop_task(m, a, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.after_finish, 1);
    CHECK_ST(btm_stop_task(m, b, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.while_running, 1);
    gate_open(g);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int ri = runlog_find(4);
    REQUIRE(ri >= 0);
    run_rec r = runlog_get((size_t)ri);
    const value_rec want[] = {{a, 11}, {c, 13}};
    CHECK(values_are(r.up, r.nup, want, 2, "downstream saw"));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, a), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, b), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, c), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, d), 1);
    evlog_free(&l);
    rm(m);
}

const test_case tests_deps[] = {
    TEST_ENTRY(results_in_completion_order),
    TEST_ENTRY(shared_result_fan_out),
    TEST_ENTRY(chain_needs_no_poll),
    TEST_ENTRY(pass_through_gathering),
    TEST_ENTRY(pass_through_scheduled_by_priority),
    TEST_ENTRY(failure_cascade_bfs),
    TEST_ENTRY(failure_defaults_and_result_dropped),
    TEST_ENTRY(downstream_of_completed_unpolled_gets_result),
    TEST_ENTRY(upstream_no_longer_live_ignored),
    TEST_ENTRY(downstream_of_failed_unpolled_fails_at_add),
    TEST_ENTRY(downstream_runs_without_stopped_upstream_result),
    {NULL, NULL},
};
