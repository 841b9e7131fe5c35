/* Ordering: priorities, FIFO ties, default priority, negative priorities,
 * blocked tasks skipped, a ready downstream jumping the queue,
 * btm_set_task_priority. SEMANTICS parity 1, 2, 3. */
#include "harness.h"

/* max_threads=1, add while paused, then start: higher priority first, equal
 * priorities in the order added; events in the same order. */
TEST(priorities_and_fifo_ties) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    const int32_t prio[] = {0, 5, -3, 5, 0, 10, -3, 5, 2147483647, -2147483647 - 1};
    btm_task_id ids[10];
    for (int i = 0; i < 10; i++) ids[i] = add_simple(m, i, 100 + i, prio[i], NULL, NULL, 0);
    CHECK_EQ(runlog_count(), 0); /* paused: nothing ran */
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    const int expected[] = {8, 5, 1, 3, 7, 0, 4, 2, 6, 9};
    CHECK(run_order_is(expected, 10));
    /* Completed events in run order (one worker), then the default group
     * finishes once, after the last one. */
    REQUIRE_EQ(l.n, 11);
    for (int i = 0; i < 10; i++) {
        CHECK(ev_is(&l, (size_t)i, BTM_EVENT_TASK_COMPLETED, ids[expected[i]]));
        CHECK_EQ(l.v[i].nres, 1);
        CHECK_EQ(l.v[i].res[0].task_id, ids[expected[i]]);
        CHECK_EQ(l.v[i].res[0].tag, 100 + expected[i]);
        CHECK_EQ(l.v[i].group.kind, BTM_GROUP_KIND_DEFAULT);
    }
    CHECK_EQ(l.v[10].kind, BTM_EVENT_GROUP_FINISHED);
    CHECK_EQ(l.v[10].group.kind, BTM_GROUP_KIND_DEFAULT);
    /* Ids are unique and increase in the order added. */
    for (int i = 1; i < 10; i++) CHECK(ids[i] > ids[i - 1]);
    evlog_free(&l);
    rm(m);
}

/* The default priority is 0 and is identical to an explicit 0: FIFO with
 * other zeros, and stopped / cascaded 0-priority tasks never run or report
 * (the original ran them: a deliberate fix). */
TEST(default_priority_is_plain_zero) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id b = add_simple(m, 2, NO_RESULT, 1, NULL, NULL, 0);
    btm_task_id c = add_simple(m, 3, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id stopped = add_simple(m, 4, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id f = add_failing(m, 5, 0, NULL, NULL, 0, "boom", "trace");
    btm_task_id down = add_simple(m, 6, NO_RESULT, 0, NULL, &f, 1);
    btm_task_id last = add_simple(m, 7, NO_RESULT, 0, NULL, NULL, 0);
    (void)a; (void)b; (void)c; (void)last;
    CHECK_ST(btm_stop_task(m, stopped, false, false, NULL), BTM_STATUS_OK);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    const int expected[] = {2, 1, 3, 5, 7};
    CHECK(run_order_is(expected, 5));
    CHECK_EQ(runlog_find(4), -1);
    CHECK_EQ(runlog_find(6), -1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, stopped), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, stopped), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_FAILED, down), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, down), 0);
    evlog_free(&l);
    rm(m);
}

/* Negative priorities order among themselves and after the default. */
TEST(negative_priorities) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    add_simple(m, 0, NO_RESULT, -10, NULL, NULL, 0);
    add_simple(m, 1, NO_RESULT, -1, NULL, NULL, 0);
    add_simple(m, 2, NO_RESULT, -100, NULL, NULL, 0);
    add_simple(m, 3, NO_RESULT, 0, NULL, NULL, 0);
    add_simple(m, 4, NO_RESULT, -1, NULL, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    const int expected[] = {3, 1, 4, 0, 2};
    CHECK(run_order_is(expected, 5));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 5);
    evlog_free(&l);
    rm(m);
}

/* A task whose upstream is not done is skipped (lower priorities run
 * meanwhile); once ready it competes by its priority, so a high-priority
 * downstream runs right after its upstream. */
TEST(blocked_skipped_and_downstream_jumps_queue) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 10, NULL, NULL, 0);     /* first */
    add_simple(m, 2, NO_RESULT, 5, NULL, &a, 1);                        /* right after a */
    add_simple(m, 3, NO_RESULT, 1, NULL, NULL, 0);
    add_simple(m, 4, NO_RESULT, 1, NULL, NULL, 0);
    btm_task_id x = add_simple(m, 5, NO_RESULT, -5, NULL, NULL, 0);     /* low */
    add_simple(m, 6, NO_RESULT, 100, NULL, &x, 1);                      /* blocked on x */
    add_simple(m, 7, NO_RESULT, -6, NULL, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    const int expected[] = {1, 2, 3, 4, 5, 6, 7};
    CHECK(run_order_is(expected, 7));
    evlog_free(&l);
    rm(m);
}

/* With processing on, a task added to an idle pool starts at once. */
TEST(start_processing_true_runs_at_once) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    btm_task_id id = add_simple(m, 1, 7, 0, NULL, NULL, 0);
    evlog l;
    evlog_init(&l);
    REQUIRE(poll_until_count(m, &l, 1, WAIT_MS));
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, id));
    evlog_free(&l);
    rm(m);
}

/* btm_set_task_priority on queued and blocked tasks; NOT_QUEUED for a
 * running or finished one; NOT_FOUND when not live. */
TEST(set_task_priority) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id b = add_simple(m, 2, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id c = add_simple(m, 3, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id d = add_simple(m, 4, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id blocked = add_simple(m, 5, NO_RESULT, -50, NULL, &d, 1);
    CHECK_ST(btm_set_task_priority(m, c, 5), BTM_STATUS_OK);
    CHECK_ST(btm_set_task_priority(m, b, 5), BTM_STATUS_OK); /* tie with c: b added first */
    CHECK_ST(btm_set_task_priority(m, a, -1), BTM_STATUS_OK);
    CHECK_ST(btm_set_task_priority(m, blocked, 50), BTM_STATUS_OK); /* jumps once ready */
    CHECK_ST(btm_set_task_priority(m, d, 5), BTM_STATUS_OK);
    CHECK_ST(btm_set_task_priority(m, d, 5), BTM_STATUS_OK);         /* same value again */
    CHECK_ST(btm_set_task_priority(m, d, 4), BTM_STATUS_OK);         /* d behind b, c */
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    const int expected[] = {2, 3, 4, 5, 1};
    CHECK(run_order_is(expected, 5));
    CHECK_ST(btm_set_task_priority(m, a, 3), BTM_STATUS_NOT_FOUND);  /* polled */
    CHECK_ST(btm_set_task_priority(m, 999999, 3), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_set_task_priority(m, 0, 3), BTM_STATUS_NOT_FOUND);

    /* Running: NOT_QUEUED. Finished but unpolled: NOT_QUEUED. */
    gate *g = gate_new();
    btm_task_id running = add_gated(m, 10, NO_RESULT, g, 0, NULL, NULL, 0);
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    CHECK_ST(btm_set_task_priority(m, running, 9), BTM_STATUS_NOT_QUEUED);
    gate_open(g);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    CHECK_ST(btm_set_task_priority(m, running, 9), BTM_STATUS_NOT_QUEUED);
    evlog_free(&l);
    evlog_init(&l);
    poll_drain(m, &l);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, running), 1);
    CHECK_ST(btm_set_task_priority(m, running, 9), BTM_STATUS_NOT_FOUND);
    evlog_free(&l);
    rm(m);
}

/* Worker threads are lazy and capped at max_threads; a task counts as
 * running from the moment a worker takes it. */
TEST(threads_lazy_and_capped) {
    btm_manager *m = mk(2, false);
    REQUIRE(m);
    btm_stats s;
    gate *g = gate_new();
    btm_task_id ids[6];
    for (int i = 0; i < 6; i++) ids[i] = add_gated(m, i, NO_RESULT, g, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.threads, 0);
    CHECK_EQ(s.queued, 6);
    CHECK_EQ(s.running, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(g, 2, WAIT_MS));
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.threads, 2);
    CHECK_EQ(s.running, 2);
    CHECK_EQ(s.queued, 4);
    /* Raise the cap at run time: more workers take the queued tasks. */
    CHECK_ST(btm_set_max_threads(m, 4), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(g, 4, WAIT_MS));
    REQUIRE_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.running, 4);
    CHECK(s.threads <= 4);
    CHECK_ST(btm_set_max_threads(m, 1), BTM_STATUS_OK);
    gate_open(g);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 6);
    (void)ids;
    evlog_free(&l);
    rm(m);
}

const test_case tests_order[] = {
    TEST_ENTRY(priorities_and_fifo_ties),
    TEST_ENTRY(default_priority_is_plain_zero),
    TEST_ENTRY(negative_priorities),
    TEST_ENTRY(blocked_skipped_and_downstream_jumps_queue),
    TEST_ENTRY(start_processing_true_runs_at_once),
    TEST_ENTRY(set_task_priority),
    TEST_ENTRY(threads_lazy_and_capped),
    {NULL, NULL},
};
