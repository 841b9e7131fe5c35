/* Stops: every variant and flag combination, transitivity, running tasks,
 * withdrawn events, reports, NOT_FOUND, scheduling right after a stop.
 * SEMANTICS parity 10, 12, "the host's view is the truth". */
#include "harness.h"

enum { Q, A, B, C, S, R, U, NT };
static const char *const names[NT] = {"Q", "A", "B", "C", "S", "R", "U"};

/* Graph: Q -> A -> B -> C, A -> S, Q -> R, U alone. B is the stop target
 * (by id, or as the only member of group 7). */
static void run_flag_case(int variant, bool up, bool down, const bool *expect_stopped) {
    runlog_reset();
    btm_manager *m = mk(1, false);
    if (!m) return;
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 7};
    btm_task_id id[NT];
    id[Q] = add_simple(m, Q, 100 + Q, 0, NULL, NULL, 0);
    id[A] = add_simple(m, A, 100 + A, 0, NULL, &id[Q], 1);
    id[B] = add_simple(m, B, 100 + B, 0, &g, &id[A], 1);
    id[C] = add_simple(m, C, 100 + C, 0, NULL, &id[B], 1);
    id[S] = add_simple(m, S, 100 + S, 0, NULL, &id[A], 1);
    id[R] = add_simple(m, R, 100 + R, 0, NULL, &id[Q], 1);
    id[U] = add_simple(m, U, 100 + U, 0, NULL, NULL, 0);
    btm_stop_report rep;
    memset(&rep, 0xff, sizeof rep);
    btm_status st;
    if (variant == 0)
        st = btm_stop_task(m, id[B], up, down, &rep);
    else if (variant == 1)
        st = btm_stop_task_group(m, &g, up, down, &rep);
    else
        st = btm_stop_task(m, id[B], up, down, NULL);
    CHECK_EQ(st, BTM_STATUS_OK);
    size_t n_stopped = 0;
    for (int t = 0; t < NT; t++) n_stopped += expect_stopped[t];
    if (variant != 2) {
        CHECK_EQ(rep.before_start, n_stopped);
        CHECK_EQ(rep.while_running, 0);
        CHECK_EQ(rep.after_finish, 0);
    }
    /* Stopped tasks' userdata is freed by the stop, on this thread. */
    CHECK_EQ(live_objects(), (long)(NT - n_stopped));
    btm_stats stats;
    if (btm_get_stats(m, &stats) == BTM_STATUS_OK) CHECK_EQ(stats.stopped_total, n_stopped);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    if (settle(m, &l)) {
        for (int t = 0; t < NT; t++) {
            bool ran = runlog_find(t) >= 0;
            bool evented = ev_count(&l, BTM_EVENT_TASK_COMPLETED, id[t]) +
                               ev_count(&l, BTM_EVENT_TASK_FAILED, id[t]) >
                           0;
            if (ran == expect_stopped[t] || evented == expect_stopped[t])
                t_fail(__FILE__, __LINE__,
                       "variant %d up=%d down=%d: task %s ran=%d evented=%d, expected stopped=%d",
                       variant, up, down, names[t], ran, evented, expect_stopped[t]);
        }
        /* Downstream of a stopped task runs without its result. */
        int ic = runlog_find(C);
        if (ic >= 0) CHECK_EQ(runlog_get((size_t)ic).nup, 0);
        int is = runlog_find(S);
        if (is >= 0) {
            run_rec r = runlog_get((size_t)is);
            CHECK_EQ(r.nup, expect_stopped[A] ? 0 : 1);
        }
        int ia = runlog_find(A);
        if (ia >= 0) CHECK_EQ(runlog_get((size_t)ia).nup, expect_stopped[Q] ? 0 : 1);
        /* Group 7 (B alone) never finishes: B was stopped. */
        CHECK_EQ(ev_count_group(&l, &g), 0);
    }
    evlog_free(&l);
    rm(m);
}

TEST(stop_flag_combinations) {
    /*                         Q  A  B  C  S  R  U */
    const bool none[NT] = {0, 0, 1, 0, 0, 0, 0};
    const bool up[NT] = {1, 1, 1, 0, 0, 0, 0};
    const bool down[NT] = {0, 0, 1, 1, 0, 0, 0};
    const bool both[NT] = {1, 1, 1, 1, 1, 1, 0};
    for (int variant = 0; variant < 3; variant++) {
        run_flag_case(variant, false, false, none);
        run_flag_case(variant, true, false, up);
        run_flag_case(variant, false, true, down);
        run_flag_case(variant, true, true, both);
    }
}

/* A running task that is stopped keeps running to the end and keeps its
 * thread; it sees btm_context_is_stopped; its result is freed, no event.
 * Its downstream (stop_downstream=false) runs at once without its result,
 * while it is still running. */
TEST(stop_running_task) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    gate *g = gate_new();
    btm_task_id r = add_gated(m, 1, 11, g, 0, NULL, NULL, 0);
    btm_task_id d = add_simple(m, 2, NO_RESULT, 0, NULL, &r, 1);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    btm_stop_report rep;
    REQUIRE_ST(btm_stop_task(m, r, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 0);
    CHECK_EQ(rep.while_running, 1);
    CHECK_EQ(rep.after_finish, 0);
    /* The downstream is unblocked by the stop itself (no other event). */
    evlog l;
    evlog_init(&l);
    REQUIRE(poll_until_count(m, &l, 1, WAIT_MS));
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, d));
    int id_ = runlog_find(2);
    REQUIRE(id_ >= 0);
    CHECK_EQ(runlog_get((size_t)id_).nup, 0);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.running, 1); /* the stopped task still holds its thread */
    CHECK_ST(btm_stop_task(m, r, true, true, NULL), BTM_STATUS_NOT_FOUND); /* no longer live */
    gate_open(g);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, r), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, r), 0);
    int ir = runlog_find(1);
    REQUIRE(ir >= 0);
    CHECK(runlog_get((size_t)ir).stopped_at_end);
    /* userdata and dropped result freed (on the worker, just after the
     * task returned: possibly a moment after wait_idle saw it finish) */
    CHECK(wait_all_freed(WAIT_MS));

    /* Stopped while running with stop_downstream: its downstream never runs;
     * a failure it reports is dropped too (no cascade, no event). */
    gate *h = gate_new();
    spec *sp = spec_new(3, NO_RESULT);
    sp->before = h;
    sp->fail = true;
    sp->fail_msg = "late";
    btm_task_id r2 = 0;
    REQUIRE_ST(add_spec(m, sp, 0, NULL, NULL, 0, &r2), BTM_STATUS_OK);
    btm_task_id d2 = add_simple(m, 4, NO_RESULT, 0, NULL, &r2, 1);
    REQUIRE(gate_wait_arrived(h, 1, WAIT_MS));
    REQUIRE_ST(btm_stop_task(m, r2, false, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.while_running, 1);
    CHECK_EQ(rep.before_start, 1);
    gate_open(h);
    REQUIRE(settle(m, &l));
    CHECK_EQ(runlog_find(4), -1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, r2), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, d2), 0);

    /* A running task reached through stop_task_group, with upstream and
     * downstream flags: its finished-unpolled upstream (another group) is
     * withdrawn, its queued downstream never runs. */
    btm_group g1 = {BTM_GROUP_KIND_NUMBERED, 0, 1};
    btm_group g2 = {BTM_GROUP_KIND_NUMBERED, 0, 2};
    gate *k = gate_new();
    btm_task_id up = add_simple(m, 5, 55, 0, &g1, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    btm_task_id r3 = add_gated(m, 6, 66, k, 0, &g2, &up, 1);
    btm_task_id d3 = add_simple(m, 7, NO_RESULT, 0, NULL, &r3, 1);
    REQUIRE(gate_wait_arrived(k, 1, WAIT_MS));
    REQUIRE_ST(btm_stop_task_group(m, &g2, true, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.while_running, 1);
    CHECK_EQ(rep.after_finish, 1);
    CHECK_EQ(rep.before_start, 1);
    gate_open(k);
    size_t before = l.n;
    REQUIRE(settle(m, &l));
    CHECK_EQ(l.n, before);
    CHECK_EQ(runlog_find(7), -1);
    (void)d3;
    evlog_free(&l);
    rm(m);
}

/* After a stop returns, an already-queued event of the stopped task is
 * withdrawn (report after_finish), with no group finished from it. */
TEST(stop_withdraws_queued_event) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 3};
    btm_task_id t = add_simple(m, 1, 11, 0, &g, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    btm_stats s;
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK(s.undelivered >= 1); /* completed (+ group finished: see stats_counters) */
    btm_stop_report rep;
    REQUIRE_ST(btm_stop_task(m, t, true, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 0);
    CHECK_EQ(rep.while_running, 0);
    CHECK_EQ(rep.after_finish, 1);
    CHECK_EQ(live_objects(), 0); /* the result is freed at once */
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.undelivered, 0);
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    CHECK_EQ(l.n, 0);
    if (l.n) evlog_dump(&l, "after stop");

    /* A failed-but-unpolled task with a failed downstream: stopping only the
     * upstream withdraws its event; the downstream's failure stays. */
    btm_task_id f = add_failing(m, 2, 0, NULL, NULL, 0, "f", "d");
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    btm_task_id fd = 0; /* fails at the add: f failed, unpolled */
    REQUIRE_ST(add_spec(m, spec_new(3, NO_RESULT), 0, NULL, &f, 1, &fd), BTM_STATUS_OK);
    REQUIRE_ST(btm_stop_task(m, f, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.after_finish, 1);
    CHECK_EQ(rep.before_start + rep.while_running, 0);
    poll_drain(m, &l);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, f), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, fd), 1);
    CHECK_EQ(runlog_find(3), -1);

    /* Both withdrawn with stop_downstream. */
    btm_task_id f2 = add_failing(m, 4, 0, NULL, NULL, 0, "f", "d");
    btm_task_id f2d = add_simple(m, 5, NO_RESULT, 0, NULL, &f2, 1);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    REQUIRE_ST(btm_stop_task(m, f2, false, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.after_finish, 2);
    size_t before = l.n;
    poll_drain(m, &l);
    CHECK_EQ(l.n, before);
    (void)f2d;
    evlog_free(&l);
    rm(m);
}

/* stop_upstream reaching a completed-but-unpolled upstream withdraws its
 * event too. */
TEST(stop_upstream_reaches_finished_unpolled) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_task_id u = add_simple(m, 1, 11, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id d = add_simple(m, 2, NO_RESULT, 0, NULL, &u, 1);
    btm_stop_report rep;
    REQUIRE_ST(btm_stop_task(m, d, true, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 1);
    CHECK_EQ(rep.after_finish, 1);
    CHECK_EQ(rep.while_running, 0);
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    CHECK_EQ(l.n, 0);
    CHECK_EQ(live_objects(), 0);
    evlog_free(&l);
    rm(m);
}

/* stop_all_tasks: queued, blocked, running and finished-unpolled tasks;
 * ids are never reused afterwards; the manager keeps working. */
TEST(stop_all_tasks_report_and_ids) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    btm_stop_report rep;
    memset(&rep, 0xff, sizeof rep);
    CHECK_ST(btm_stop_all_tasks(m, &rep), BTM_STATUS_OK); /* nothing to stop */
    CHECK_EQ(rep.before_start + rep.while_running + rep.after_finish, 0);
    gate *g = gate_new();
    btm_task_id fin = add_simple(m, 1, 11, 10, NULL, NULL, 0);
    btm_task_id run = add_gated(m, 2, 12, g, 9, NULL, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    btm_stats s;
    /* wait for `fin` to be finished (its events queued) */
    uint64_t deadline = now_ms() + WAIT_MS;
    do {
        REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    } while (s.completed_total < 1 && now_ms() < deadline);
    REQUIRE_EQ(s.completed_total, 1);
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id q1 = add_simple(m, 3, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id q2 = add_pass(m, 0, NULL, NULL, 0, 14);
    btm_task_id bl = add_simple(m, 5, NO_RESULT, 0, NULL, &run, 1);
    REQUIRE_ST(btm_stop_all_tasks(m, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 3);
    CHECK_EQ(rep.while_running, 1);
    CHECK_EQ(rep.after_finish, 1);
    CHECK_EQ(live_objects(), 1); /* only the running task's userdata */
    gate_open(g);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    CHECK(wait_all_freed(WAIT_MS));
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    CHECK_EQ(l.n, 0);
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.stopped_total, 5);
    CHECK_EQ(s.completed_total, 1);
    /* Ids are not reused; the manager keeps working. */
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    btm_task_id next = add_simple(m, 6, NO_RESULT, 0, NULL, NULL, 0);
    CHECK(next > bl && next > q2 && next > q1 && next > fin);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, next), 1);
    CHECK_EQ(l.n, 2);
    evlog_free(&l);
    rm(m);
}

/* NOT_FOUND (not an error) for ids that are not live, and groups without
 * live tasks. */
TEST(stop_not_found) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_stop_report rep;
    CHECK_ST(btm_stop_task(m, 424242, true, true, &rep), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_task(m, 0, true, true, NULL), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_task(m, UINT64_MAX, false, false, NULL), BTM_STATUS_NOT_FOUND);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 1};
    CHECK_ST(btm_stop_task_group(m, &g, true, true, &rep), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_task_group(m, NULL, true, true, &rep), BTM_STATUS_NOT_FOUND);
    btm_group named;
    REQUIRE_ST(btm_group_named(m, "nobody", &named), BTM_STATUS_OK);
    CHECK_ST(btm_stop_task_group(m, &named, true, true, NULL), BTM_STATUS_NOT_FOUND);
    /* finished and polled */
    btm_task_id t = add_simple(m, 1, 11, 0, &g, NULL, 0);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_ST(btm_stop_task(m, t, true, true, &rep), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_task_group(m, &g, true, true, &rep), BTM_STATUS_NOT_FOUND);
    /* failed and polled */
    btm_task_id f = add_failing(m, 2, 0, NULL, NULL, 0, "x", "y");
    REQUIRE(settle(m, &l));
    CHECK_ST(btm_stop_task(m, f, false, false, NULL), BTM_STATUS_NOT_FOUND);
    /* already stopped */
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id s = add_simple(m, 3, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_ST(btm_stop_task(m, s, false, false, NULL), BTM_STATUS_OK);
    CHECK_ST(btm_stop_task(m, s, false, false, NULL), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_all_tasks(m, NULL), BTM_STATUS_OK);
    evlog_free(&l);
    rm(m);
}

/* A stop that unblocks a task schedules it at once (the original waited for
 * an unrelated event): D waits on U, which waits on a gated running task;
 * stopping U (not downstream) lets D run on the idle worker while the
 * gated task is still blocked. */
TEST(stop_schedules_immediately) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    gate *g = gate_new();
    btm_task_id x = add_gated(m, 1, NO_RESULT, g, 0, NULL, NULL, 0);
    btm_task_id u = add_simple(m, 2, 12, 0, NULL, &x, 1);
    btm_task_id d = add_simple(m, 3, NO_RESULT, 0, NULL, &u, 1);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    btm_stop_report rep;
    REQUIRE_ST(btm_stop_task(m, u, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 1);
    evlog l;
    evlog_init(&l);
    REQUIRE(poll_until_count(m, &l, 1, WAIT_MS));
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, d));
    gate_open(g);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, x), 1);
    CHECK_EQ(runlog_find(2), -1);
    evlog_free(&l);
    rm(m);
}

const test_case tests_stops[] = {
    TEST_ENTRY(stop_flag_combinations),
    TEST_ENTRY(stop_running_task),
    TEST_ENTRY(stop_withdraws_queued_event),
    TEST_ENTRY(stop_upstream_reaches_finished_unpolled),
    TEST_ENTRY(stop_all_tasks_report_and_ids),
    TEST_ENTRY(stop_not_found),
    TEST_ENTRY(stop_schedules_immediately),
    {NULL, NULL},
};
