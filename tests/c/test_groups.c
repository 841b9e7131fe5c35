/* Groups: named vs numbered, next_group_id, group finished (after the last
 * final event, never from a stop, refilled, host's view), cascades across
 * groups, group stats. SEMANTICS parity 8, 9. */
#include "harness.h"

static bool is_group_finished(const evlog *l, size_t i, const btm_group *g) {
    return i < l->n && l->v[i].kind == BTM_EVENT_GROUP_FINISHED && group_eq(&l->v[i].group, g);
}

TEST(group_finished_after_last_final_event) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_group g, named;
    REQUIRE_ST(btm_next_group_id(m, &g), BTM_STATUS_OK);
    CHECK_EQ(g.kind, BTM_GROUP_KIND_NUMBERED);
    REQUIRE_ST(btm_group_named(m, "thumbnails", &named), BTM_STATUS_OK);
    CHECK_EQ(named.kind, BTM_GROUP_KIND_NAMED);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 3, &g, NULL, 0);
    btm_task_id n1 = add_simple(m, 2, NO_RESULT, 2, &named, NULL, 0);
    btm_task_id b = add_failing(m, 3, 1, &g, NULL, 0, "m", "d"); /* failing ends it too */
    btm_task_id n2 = add_pass(m, 0, &named, NULL, 0, NO_RESULT);
    btm_task_id c = add_simple(m, 4, NO_RESULT, -1, NULL, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    btm_group dflt = {BTM_GROUP_KIND_DEFAULT, 0, 0};
    bool exact = l.n == 8 && ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, a) &&
                 ev_is(&l, 1, BTM_EVENT_TASK_COMPLETED, n1) &&
                 ev_is(&l, 2, BTM_EVENT_TASK_FAILED, b) && is_group_finished(&l, 3, &g) &&
                 ev_is(&l, 4, BTM_EVENT_TASK_COMPLETED, n2) && is_group_finished(&l, 5, &named) &&
                 ev_is(&l, 6, BTM_EVENT_TASK_COMPLETED, c) && is_group_finished(&l, 7, &dflt);
    CHECK(exact);
    if (!exact) evlog_dump(&l, "group finished");
    if (l.n == 8) {
        CHECK(l.v[1].has_group_name);
        CHECK_STR(l.v[1].group_name, "thumbnails");
        CHECK_STR(l.v[5].group_name, "thumbnails");
        CHECK(!l.v[0].has_group_name);
        CHECK_EQ(l.v[0].group.value, g.value);
        CHECK_EQ(l.v[3].group.value, g.value);
    }
    evlog_free(&l);
    rm(m);
}

/* A group emptied by a stop never finishes; a stopped running task ends no
 * group; a group whose other task was stopped finishes when its last live
 * task completes. */
TEST(group_finished_never_from_stop) {
    btm_manager *m = mk(3, false);
    REQUIRE(m);
    btm_group g1 = {BTM_GROUP_KIND_NUMBERED, 0, 1};
    btm_group g2 = {BTM_GROUP_KIND_NUMBERED, 0, 2};
    btm_group g3 = {BTM_GROUP_KIND_NUMBERED, 0, 3};
    btm_group g4 = {BTM_GROUP_KIND_NUMBERED, 0, 4};
    btm_group g5 = {BTM_GROUP_KIND_NUMBERED, 0, 5};
    evlog l;
    evlog_init(&l);
    /* g1: all queued tasks stopped. */
    add_simple(m, 1, NO_RESULT, 0, &g1, NULL, 0);
    add_simple(m, 2, NO_RESULT, 0, &g1, NULL, 0);
    btm_stop_report rep;
    CHECK_ST(btm_stop_task_group(m, &g1, true, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 2);
    /* g2: t1 completes and is polled; t2 (blocked on blk, another group)
     * is then stopped: g2 never finishes. */
    gate *gb = gate_new();
    btm_task_id t1 = add_simple(m, 3, NO_RESULT, 5, &g2, NULL, 0);
    btm_task_id blk = add_gated(m, 4, NO_RESULT, gb, 4, &g5, NULL, 0);
    btm_task_id t2 = add_simple(m, 5, NO_RESULT, 0, &g2, &blk, 1);
    /* g3: a running task is stopped; it ends without any event. */
    gate *g = gate_new();
    btm_task_id r3 = add_gated(m, 6, 66, g, 3, &g3, NULL, 0);
    /* g4: one task running (gated), the other blocked on it and stopped:
     * the running one's completion finishes g4 (not the stop). */
    gate *h = gate_new();
    btm_task_id r4 = add_gated(m, 7, NO_RESULT, h, 2, &g4, NULL, 0);
    btm_task_id q4 = add_simple(m, 8, NO_RESULT, 0, &g4, &r4, 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(poll_until_count(m, &l, 1, WAIT_MS));
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, t1));
    CHECK_EQ(l.n, 1);
    REQUIRE(gate_wait_arrived(gb, 1, WAIT_MS));
    REQUIRE(gate_wait_arrived(g, 1, WAIT_MS));
    REQUIRE(gate_wait_arrived(h, 1, WAIT_MS));
    CHECK_ST(btm_stop_task_group(m, &g2, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 1);
    CHECK_EQ(rep.while_running + rep.after_finish, 0);
    CHECK_ST(btm_stop_task(m, r3, true, true, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.while_running, 1);
    CHECK_EQ(rep.before_start + rep.after_finish, 0);
    CHECK_ST(btm_stop_task(m, q4, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 1);
    CHECK_EQ(rep.while_running + rep.after_finish, 0);
    gate_open(gb);
    gate_open(g);
    gate_open(h);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count_group(&l, &g1), 0);
    CHECK_EQ(ev_count_group(&l, &g2), 0);
    CHECK_EQ(ev_count_group(&l, &g3), 0);
    CHECK_EQ(ev_count_group(&l, &g4), 1);
    CHECK_EQ(ev_count_group(&l, &g5), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, r3), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, t2), 0);
    int i4 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, r4);
    REQUIRE(i4 >= 0);
    CHECK(is_group_finished(&l, (size_t)i4 + 1, &g4));
    int i5 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, blk);
    REQUIRE(i5 >= 0);
    CHECK(is_group_finished(&l, (size_t)i5 + 1, &g5));
    CHECK_EQ(runlog_find(5), -1);
    CHECK_EQ(runlog_find(8), -1);
    int r = runlog_find(6);
    REQUIRE(r >= 0);
    CHECK(runlog_get((size_t)r).stopped_at_end); /* the task could see it */
    evlog_free(&l);
    rm(m);
}

/* A group that is refilled and empties again finishes again. */
TEST(group_refilled_finishes_again) {
    btm_manager *m = mk(2, true);
    REQUIRE(m);
    btm_group g;
    REQUIRE_ST(btm_group_named(m, "batch", &g), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    for (int round = 0; round < 3; round++) {
        btm_task_id a = add_simple(m, round * 10 + 1, NO_RESULT, 0, &g, NULL, 0);
        btm_task_id b = add_simple(m, round * 10 + 2, NO_RESULT, 0, &g, &a, 1);
        REQUIRE(settle(m, &l));
        CHECK_EQ(ev_count_group(&l, &g), (size_t)round + 1);
        CHECK(is_group_finished(&l, l.n - 1, &g));
        CHECK(ev_is(&l, l.n - 2, BTM_EVENT_TASK_COMPLETED, b));
    }
    evlog_free(&l);
    rm(m);
}

/* The host's view decides: a task added to the group before the host
 * polled the last completion keeps the group unfinished. */
TEST(group_not_finished_if_refilled_before_poll) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 12345};
    btm_task_id a = add_simple(m, 1, NO_RESULT, 0, &g, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK); /* a completed, unpolled */
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id b = add_simple(m, 2, NO_RESULT, 0, &g, NULL, 0);
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    REQUIRE_EQ(l.n, 1);
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, a));
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(settle(m, &l));
    REQUIRE_EQ(l.n, 3);
    CHECK(ev_is(&l, 1, BTM_EVENT_TASK_COMPLETED, b));
    CHECK(is_group_finished(&l, 2, &g));
    evlog_free(&l);
    rm(m);
}

/* Same, but the refill is then stopped before the poll. Decision (the
 * semantics leave it implicit): the finish belongs to the completion the
 * host polls, and when the host polls it no other task of the group is
 * live, so the group finishes right after it. */
TEST(group_refill_then_stopped_before_poll) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 9};
    btm_task_id a = add_simple(m, 1, NO_RESULT, 0, &g, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    REQUIRE_ST(btm_pause_processing(m), BTM_STATUS_OK);
    btm_task_id b = add_simple(m, 2, NO_RESULT, 0, &g, NULL, 0);
    CHECK_ST(btm_stop_task(m, b, true, true, NULL), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    /* a is the group's last live task when the host receives its
     * completion (b's stop did not empty the group: a was still live), so
     * the group finishes right after it, exactly once. */
    bool exact = l.n == 2 && ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, a) &&
                 is_group_finished(&l, 1, &g);
    CHECK(exact);
    if (!exact) evlog_dump(&l, "refill stopped");
    evlog_free(&l);
    rm(m);
}

/* Failure cascade across groups: each group finishes at most once, right
 * after the failure that emptied it; a group with another live task waits. */
TEST(cascade_group_finished_interleaved) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_group g1 = {BTM_GROUP_KIND_NUMBERED, 0, 1};
    btm_group g2 = {BTM_GROUP_KIND_NUMBERED, 0, 2};
    btm_group g3, g4;
    REQUIRE_ST(btm_group_named(m, "three", &g3), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(m, "four", &g4), BTM_STATUS_OK);
    btm_task_id f = add_failing(m, 1, 10, &g1, NULL, 0, "E", "T");
    btm_task_id a = add_simple(m, 2, NO_RESULT, 0, &g2, &f, 1);
    btm_task_id b = add_simple(m, 3, NO_RESULT, 0, &g2, &f, 1);
    btm_task_id d = add_simple(m, 4, NO_RESULT, 0, &g4, &f, 1);
    btm_task_id c = add_simple(m, 5, NO_RESULT, 0, &g3, &a, 1);
    btm_task_id e = add_simple(m, 6, NO_RESULT, -10, &g4, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    bool exact = l.n == 10 && ev_is(&l, 0, BTM_EVENT_TASK_FAILED, f) &&
                 is_group_finished(&l, 1, &g1) && ev_is(&l, 2, BTM_EVENT_TASK_FAILED, a) &&
                 ev_is(&l, 3, BTM_EVENT_TASK_FAILED, b) && is_group_finished(&l, 4, &g2) &&
                 ev_is(&l, 5, BTM_EVENT_TASK_FAILED, d) && ev_is(&l, 6, BTM_EVENT_TASK_FAILED, c) &&
                 is_group_finished(&l, 7, &g3) && ev_is(&l, 8, BTM_EVENT_TASK_COMPLETED, e) &&
                 is_group_finished(&l, 9, &g4);
    CHECK(exact);
    if (!exact) evlog_dump(&l, "cascade groups");
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].kind == BTM_EVENT_TASK_FAILED) CHECK_STR(l.v[i].message, "E");
    evlog_free(&l);
    rm(m);
}

/* Named and numbered groups never compare equal, even with the same value;
 * the same name always gives the same group; "" is a valid name;
 * next_group_id never repeats. */
TEST(named_vs_numbered_groups) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_group a, a2, b, empty;
    REQUIRE_ST(btm_group_named(m, "thumbnails", &a), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(m, "thumbnails", &a2), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(m, "other", &b), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(m, "", &empty), BTM_STATUS_OK);
    CHECK(group_eq(&a, &a2));
    CHECK(!group_eq(&a, &b));
    CHECK(!group_eq(&a, &empty));
    CHECK_EQ(a.reserved, 0);
    btm_group num = {BTM_GROUP_KIND_NUMBERED, 0, a.value};
    btm_group num_b = {BTM_GROUP_KIND_NUMBERED, 0, b.value};
    btm_group next[5];
    for (int i = 0; i < 5; i++) {
        REQUIRE_ST(btm_next_group_id(m, &next[i]), BTM_STATUS_OK);
        CHECK_EQ(next[i].kind, BTM_GROUP_KIND_NUMBERED);
        for (int j = 0; j < i; j++) CHECK(next[i].value != next[j].value);
    }
    btm_task_id tn = add_simple(m, 1, NO_RESULT, 0, &a, NULL, 0);
    btm_task_id tnum = add_simple(m, 2, NO_RESULT, 0, &num, NULL, 0);
    btm_task_id tnumb = add_simple(m, 3, NO_RESULT, 0, &num_b, NULL, 0);
    btm_task_id te = add_simple(m, 4, NO_RESULT, 0, &empty, NULL, 0);
    btm_group_stats gs;
    REQUIRE_ST(btm_get_group_stats(m, &a, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 1);
    REQUIRE_ST(btm_get_group_stats(m, &num, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 1);
    /* Stopping the numbered group with the named group's value leaves the
     * named task alone. */
    btm_stop_report rep;
    CHECK_ST(btm_stop_task_group(m, &num, false, false, &rep), BTM_STATUS_OK);
    CHECK_EQ(rep.before_start, 1);
    REQUIRE_ST(btm_get_group_stats(m, &a, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, tn), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, tnum), 0);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, tnumb), 1);
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, te), 1);
    CHECK_EQ(ev_count_group(&l, &a), 1);
    CHECK_EQ(ev_count_group(&l, &num), 0);
    CHECK_EQ(ev_count_group(&l, &num_b), 1);
    CHECK_EQ(ev_count_group(&l, &empty), 1);
    int ie = ev_find(&l, BTM_EVENT_TASK_COMPLETED, te);
    REQUIRE(ie >= 0);
    CHECK(l.v[ie].has_group_name);
    CHECK_STR(l.v[ie].group_name, "");
    int ib = ev_find(&l, BTM_EVENT_TASK_COMPLETED, tnumb);
    REQUIRE(ib >= 0);
    CHECK(!l.v[ib].has_group_name);
    CHECK_EQ(l.v[ib].group.kind, BTM_GROUP_KIND_NUMBERED);
    /* Named groups of another manager are not this manager's. */
    evlog_free(&l);
    rm(m);
}

/* A UTF-8 name (non-ASCII) round-trips through events. */
TEST(named_group_utf8_roundtrip) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    const char *name = "vignettes \xc3\xa9t\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x96\xbc";
    btm_group g;
    REQUIRE_ST(btm_group_named(m, name, &g), BTM_STATUS_OK);
    btm_task_id t = add_simple(m, 1, NO_RESULT, 0, &g, NULL, 0);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    REQUIRE_EQ(l.n, 2);
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, t));
    CHECK_STR(l.v[0].group_name, name);
    CHECK_STR(l.v[1].group_name, name);
    evlog_free(&l);
    rm(m);
}

/* Per-group counters by state. */
TEST(group_stats_by_state) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 5};
    gate *gt = gate_new();
    btm_task_id run = add_gated(m, 1, NO_RESULT, gt, 10, &g, NULL, 0);
    add_simple(m, 2, NO_RESULT, 0, &g, NULL, 0);
    add_simple(m, 3, NO_RESULT, 0, &g, &run, 1);
    btm_group_stats gs;
    REQUIRE_ST(btm_get_group_stats(m, &g, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 2);
    CHECK_EQ(gs.blocked, 1);
    CHECK_EQ(gs.running, 0);
    CHECK_EQ(gs.undelivered, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    REQUIRE(gate_wait_arrived(gt, 1, WAIT_MS));
    REQUIRE_ST(btm_get_group_stats(m, &g, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 1);
    CHECK_EQ(gs.blocked, 1);
    CHECK_EQ(gs.running, 1);
    gate_open(gt);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    REQUIRE_ST(btm_get_group_stats(m, &g, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued, 0);
    CHECK_EQ(gs.blocked, 0);
    CHECK_EQ(gs.running, 0);
    CHECK_EQ(gs.undelivered, 3);
    evlog l;
    evlog_init(&l);
    poll_drain(m, &l);
    REQUIRE_ST(btm_get_group_stats(m, &g, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.undelivered, 0);
    /* An unknown group: all zero. The default group via NULL. */
    btm_group unknown = {BTM_GROUP_KIND_NUMBERED, 0, 987654};
    REQUIRE_ST(btm_get_group_stats(m, &unknown, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued + gs.blocked + gs.running + gs.undelivered, 0);
    REQUIRE_ST(btm_get_group_stats(m, NULL, &gs), BTM_STATUS_OK);
    CHECK_EQ(gs.queued + gs.blocked + gs.running + gs.undelivered, 0);
    evlog_free(&l);
    rm(m);
}

const test_case tests_groups[] = {
    TEST_ENTRY(group_finished_after_last_final_event),
    TEST_ENTRY(group_finished_never_from_stop),
    TEST_ENTRY(group_refilled_finishes_again),
    TEST_ENTRY(group_not_finished_if_refilled_before_poll),
    TEST_ENTRY(group_refill_then_stopped_before_poll),
    TEST_ENTRY(cascade_group_finished_interleaved),
    TEST_ENTRY(named_vs_numbered_groups),
    TEST_ENTRY(named_group_utf8_roundtrip),
    TEST_ENTRY(group_stats_by_state),
    {NULL, NULL},
};
