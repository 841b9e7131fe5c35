/* Bad input: every function with NULL handles / out-pointers / function
 * pointers, unknown or never-issued ids, NULL arrays with a length,
 * invalid UTF-8, bad group kinds, bad configs and thread counts, calls
 * after shut down, zero capacities. Each gets its documented status, and
 * every pointer handed over with a free function is freed exactly once
 * (the runner checks the counters). docs/BAD_INPUT.md names these tests. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>

static void noop_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
}

TEST(bad_config_init_null) {
    CHECK_ST(btm_config_init(NULL), BTM_STATUS_NULL_ARGUMENT);
}

/* A caller built against an older header (a shorter btm_config: fields are
 * only ever appended) initialises its struct as btm.h says. Before the
 * fix the only initialiser, btm_config_init, wrote this library's whole
 * struct: 8 bytes past an older caller's 40-byte struct (here, a struct
 * without thread_hook_free). btm_config_init_size writes exactly the
 * caller's size. */
typedef struct older_config {
    uint32_t struct_size;
    int32_t max_threads;
    bool start_processing;
    btm_thread_hook_fn thread_start;
    btm_thread_hook_fn thread_stop;
    void *thread_hook_userdata;
} older_config;

TEST(bad_config_init_older_caller) {
    struct {
        older_config cfg;
        unsigned char after[32];
    } s;
    memset(&s, 0xAB, sizeof s);
    REQUIRE_ST(btm_config_init_size((btm_config *)&s.cfg, sizeof s.cfg), BTM_STATUS_OK);
    size_t clobbered = 0;
    for (size_t i = 0; i < sizeof s.after; i++) clobbered += s.after[i] != 0xAB;
    CHECK_EQ(clobbered, 0);
    CHECK_EQ(s.cfg.struct_size, sizeof s.cfg);
    CHECK_EQ(s.cfg.max_threads, 0);
    CHECK(!s.cfg.start_processing);
    CHECK(s.cfg.thread_start == NULL && s.cfg.thread_stop == NULL && s.cfg.thread_hook_userdata == NULL);
    btm_manager *m = NULL;
    CHECK_ST(btm_create((const btm_config *)&s.cfg, &m), BTM_STATUS_OK);
    btm_destroy(m);

    /* A newer caller's longer struct: the bytes this library does not know
     * are zeroed, so btm_create accepts it. */
    struct {
        btm_config cfg;
        uint64_t future[2];
        unsigned char after[16];
    } big;
    memset(&big, 0xCD, sizeof big);
    REQUIRE_ST(btm_config_init_size(&big.cfg, sizeof big.cfg + sizeof big.future), BTM_STATUS_OK);
    CHECK_EQ(big.cfg.struct_size, sizeof big.cfg + sizeof big.future);
    CHECK(big.future[0] == 0 && big.future[1] == 0);
    CHECK_EQ(big.after[0], 0xCD);
    m = NULL;
    CHECK_ST(btm_create(&big.cfg, &m), BTM_STATUS_OK);
    btm_destroy(m);

    /* Bad sizes: nothing written. */
    btm_config c;
    memset(&c, 0x5A, sizeof c);
    CHECK_ST(btm_config_init_size(&c, 0), BTM_STATUS_INVALID_ARGUMENT);
    CHECK_ST(btm_config_init_size(&c, offsetof(btm_config, start_processing)), BTM_STATUS_INVALID_ARGUMENT);
    CHECK_ST(btm_config_init_size(&c, (size_t)UINT32_MAX + 1), BTM_STATUS_INVALID_ARGUMENT);
    CHECK_EQ(c.struct_size, 0x5A5A5A5A);
    CHECK_ST(btm_config_init_size(NULL, sizeof c), BTM_STATUS_NULL_ARGUMENT);
}

TEST(bad_create_null_out) {
    btm_config cfg;
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    cfg.thread_hook_userdata = obj_new(1);
    cfg.thread_hook_free = obj_free;
    CHECK_ST(btm_create(&cfg, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(live_objects(), 0); /* hook userdata freed on error */
    CHECK_ST(btm_create(NULL, NULL), BTM_STATUS_NULL_ARGUMENT);
}

TEST(bad_create_config_struct_size) {
    btm_config cfg;
    btm_manager *m = (btm_manager *)(uintptr_t)0x1;
    void *hook = obj_new(1);
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    cfg.thread_hook_userdata = hook;
    cfg.thread_hook_free = obj_free;
    cfg.struct_size = 0;
    CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_INVALID_CONFIG);
    CHECK(m == (btm_manager *)(uintptr_t)0x1); /* out-parameter untouched */
    cfg.struct_size = 4;
    CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_INVALID_CONFIG);
    cfg.struct_size = (uint32_t)offsetof(btm_config, start_processing); /* lacks the flag */
    CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_INVALID_CONFIG);
    /* INVALID_CONFIG: the caller keeps ownership of the hook userdata. */
    CHECK_EQ(live_objects(), 1);
    obj_free(hook);

    /* A newer caller's longer struct: accepted if the unknown bytes are 0,
     * rejected otherwise. */
    struct {
        btm_config cfg;
        uint64_t future[4];
    } big;
    memset(&big, 0, sizeof big);
    REQUIRE_ST(btm_config_init(&big.cfg), BTM_STATUS_OK);
    big.cfg.struct_size = sizeof big;
    m = NULL;
    CHECK_ST(btm_create(&big.cfg, &m), BTM_STATUS_OK);
    btm_destroy(m);
    big.future[2] = 1;
    m = NULL;
    /* Rejected with the hook fields readable: btm frees the hook userdata,
     * as on every other error (btm.h). */
    big.cfg.thread_hook_userdata = obj_new(1);
    big.cfg.thread_hook_free = obj_free;
    CHECK_ST(btm_create(&big.cfg, &m), BTM_STATUS_INVALID_CONFIG);
    CHECK(m == NULL);
    CHECK_EQ(live_objects(), 0);

    /* An older caller's shorter struct (up to start_processing): defaults
     * for the rest. */
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    cfg.struct_size = (uint32_t)(offsetof(btm_config, start_processing) + 1);
    cfg.start_processing = true;
    m = NULL;
    CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_OK);
    if (m) {
        btm_task_id id = 0;
        CHECK_ST(add_spec(m, spec_new(1, NO_RESULT), 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
        CHECK_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK); /* started: it ran */
        btm_destroy(m);
    }

    /* A bool byte that is neither 0 nor 1: rejected, the hook userdata
     * freed. */
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    memset((unsigned char *)&cfg + offsetof(btm_config, start_processing), 2, 1);
    cfg.thread_hook_userdata = obj_new(1);
    cfg.thread_hook_free = obj_free;
    m = NULL;
    CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_INVALID_CONFIG);
    CHECK(m == NULL);
    CHECK_EQ(live_objects(), 0);
}

/* A struct_size that ends inside a pointer field (not the size of any
 * older btm_config: fields are only appended) must be rejected with
 * INVALID_CONFIG, and the torn field never read. Before the fix btm copied
 * the first bytes of the pointer over the default NULL: btm_create
 * returned OK with a thread_start hook whose address was cut to 4 bytes,
 * and the first worker called it (SIGSEGV); a torn thread_hook_free was
 * called on a rejected config the same way. */
static atomic_int torn_hook_calls;
static void torn_hook(void *ud, uint32_t idx) {
    (void)ud;
    (void)idx;
    atomic_fetch_add(&torn_hook_calls, 1);
}

TEST(bad_create_config_struct_size_inside_a_field) {
    const size_t ptr = sizeof(void *);
    const size_t cuts[] = {
        offsetof(btm_config, thread_start) + 1,
        offsetof(btm_config, thread_start) + ptr / 2,
        offsetof(btm_config, thread_stop) + ptr / 2,
        offsetof(btm_config, thread_hook_userdata) + ptr / 2,
        offsetof(btm_config, thread_hook_free) + ptr / 2,
        offsetof(btm_config, thread_hook_free) + ptr - 1,
    };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        btm_config cfg;
        REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
        cfg.start_processing = true;
        cfg.thread_start = torn_hook;
        cfg.thread_stop = torn_hook;
        cfg.struct_size = (uint32_t)cuts[i];
        btm_manager *m = (btm_manager *)0x1;
        btm_status s = btm_create(&cfg, &m);
        if (s != BTM_STATUS_INVALID_CONFIG) {
            t_fail(__FILE__, __LINE__, "struct_size %zu: btm_create returned %u (%s), expected INVALID_CONFIG",
                   cuts[i], (unsigned)s, btm_status_str(s));
            /* Not started: a torn hook would crash the first worker. */
            if (s == BTM_STATUS_OK) btm_destroy(m);
            continue;
        }
        CHECK(m == (btm_manager *)0x1);
    }
    /* The torn hook-free field: neither called (it would be a torn
     * pointer) nor a reason to keep the rest; the caller keeps the
     * userdata, as for a struct too short to hold the hook fields. */
    btm_config cfg;
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    cfg.max_threads = -1; /* rejected after the config is read */
    void *ud = obj_new(7);
    cfg.thread_hook_userdata = ud;
    cfg.thread_hook_free = obj_free;
    cfg.struct_size = (uint32_t)(offsetof(btm_config, thread_hook_free) + ptr / 2);
    btm_manager *m = (btm_manager *)0x1;
    CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_INVALID_CONFIG);
    CHECK(m == (btm_manager *)0x1);
    CHECK_EQ(live_objects(), 1);
    obj_free(ud);
    CHECK_EQ(atomic_load(&torn_hook_calls), 0);
    /* Sizes that end at a field (older callers) still work. */
    const size_t whole[] = {offsetof(btm_config, thread_start), offsetof(btm_config, thread_stop),
                            offsetof(btm_config, thread_hook_userdata), offsetof(btm_config, thread_hook_free)};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
        cfg.struct_size = (uint32_t)whole[i];
        m = NULL;
        CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_OK);
        btm_destroy(m);
    }
}

TEST(bad_create_thread_count) {
    const int32_t bad[] = {-1, -8, INT32_MIN, BTM_MAX_THREADS_LIMIT + 1, INT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        btm_config cfg;
        REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
        cfg.max_threads = bad[i];
        cfg.thread_hook_userdata = obj_new(1);
        cfg.thread_hook_free = obj_free;
        btm_manager *m = NULL;
        CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_INVALID_THREAD_COUNT);
        CHECK(m == NULL);
        CHECK_EQ(live_objects(), 0); /* hook userdata freed on error */
    }
    btm_config cfg;
    REQUIRE_ST(btm_config_init(&cfg), BTM_STATUS_OK);
    cfg.max_threads = BTM_MAX_THREADS_LIMIT; /* the largest accepted; lazy */
    btm_manager *m = NULL;
    CHECK_ST(btm_create(&cfg, &m), BTM_STATUS_OK);
    btm_stats s;
    CHECK_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    CHECK_EQ(s.threads, 0);
    btm_destroy(m);
}

TEST(bad_destroy_null) {
    btm_destroy(NULL);
    btm_destroy(NULL);
    CHECK(1);
}

static void notify_noop(void *ud) {
    (void)ud;
}

static void task_hook_noop(void *ud, uint64_t task_id, uint32_t group_kind, uint64_t group_value,
                           uint32_t worker_index) {
    (void)ud;
    (void)task_id;
    (void)group_kind;
    (void)group_value;
    (void)worker_index;
}

/* Every function taking a manager, with NULL: NULL_ARGUMENT, and every
 * pointer handed over with a free function is freed by the call. */
TEST(bad_null_manager) {
    btm_task_id id = 42;
    btm_group g;
    btm_stats s;
    btm_group_stats gs;
    btm_event ev[2];
    size_t n = 0;
    CHECK_ST(btm_add_task(NULL, spec_task, spec_new(1, NO_RESULT), obj_free, 0, NULL, NULL, 0, &id),
             BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_add_pass_through_task(NULL, 0, NULL, NULL, 0, obj_new(2), obj_free, &id),
             BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(id, 42);
    CHECK_EQ(live_objects(), 0);
    CHECK_ST(btm_start_processing(NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_pause_processing(NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_shut_down(NULL, 0, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_next_group_id(NULL, &g), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_group_named(NULL, "x", &g), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_set_max_threads(NULL, 1), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_get_stats(NULL, &s), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_get_group_stats(NULL, NULL, &gs), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_stop_task(NULL, 1, true, true, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_stop_task_group(NULL, NULL, true, true, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_stop_all_tasks(NULL, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_set_task_priority(NULL, 1, 1), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_poll_events(NULL, ev, 2, &n), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_wait_events(NULL, 0), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_wait_idle(NULL, 0), BTM_STATUS_NULL_ARGUMENT);
    int32_t fd = -7;
    CHECK_ST(btm_get_event_fd(NULL, &fd), BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(fd, -7);
    void *handle = &fd;
    CHECK_ST(btm_get_event_handle(NULL, &handle), BTM_STATUS_NULL_ARGUMENT);
    CHECK(handle == &fd);
    /* userdata handed over with a free function is freed on error too */
    CHECK_ST(btm_set_notify(NULL, notify_noop, obj_new(3), obj_free), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_set_task_hooks(NULL, task_hook_noop, task_hook_noop, obj_new(4), obj_free),
             BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(live_objects(), 0);
}

/* NULL out-pointers: NULL_ARGUMENT, nothing consumed. */
TEST(bad_null_out_pointers) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_task_id first = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_ST(btm_add_task(m, spec_task, spec_new(2, NO_RESULT), obj_free, 0, NULL, NULL, 0, NULL),
             BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_add_pass_through_task(m, 0, NULL, NULL, 0, obj_new(3), obj_free, NULL),
             BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_next_group_id(m, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_group_named(m, "x", NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_get_stats(m, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_get_group_stats(m, NULL, NULL), BTM_STATUS_NULL_ARGUMENT);
    btm_event ev[2];
    CHECK_ST(btm_poll_events(m, ev, 2, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_get_event_fd(m, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_get_event_handle(m, NULL), BTM_STATUS_NULL_ARGUMENT);
    /* NULL callbacks are not errors: they unregister (userdata still owned
     * by btm and freed). */
    CHECK_ST(btm_set_notify(m, NULL, obj_new(5), obj_free), BTM_STATUS_OK);
    CHECK_ST(btm_set_task_hooks(m, NULL, NULL, obj_new(6), obj_free), BTM_STATUS_OK);
    /* report_out and still_running_out are optional: NULL is fine. */
    CHECK_ST(btm_stop_task(m, 999, true, true, NULL), BTM_STATUS_NOT_FOUND);
    /* No id was consumed by the rejected adds. */
    btm_task_id next = add_simple(m, 4, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_EQ(next, first + 1);
    /* A rejected next_group_id consumed no group number either. */
    btm_group g1, g2;
    REQUIRE_ST(btm_next_group_id(m, &g1), BTM_STATUS_OK);
    CHECK_ST(btm_next_group_id(m, NULL), BTM_STATUS_NULL_ARGUMENT);
    REQUIRE_ST(btm_next_group_id(m, &g2), BTM_STATUS_OK);
    CHECK_EQ(g2.value, g1.value + 1);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    evlog_free(&l);
    rm(m);
}

TEST(bad_null_task_fn) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_task_id first = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id id = 42;
    CHECK_ST(btm_add_task(m, NULL, spec_new(2, NO_RESULT), obj_free, 0, NULL, NULL, 0, &id),
             BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(id, 42);
    /* NULL userdata with a free function, or userdata without one: fine. */
    CHECK_ST(btm_add_task(m, noop_task, NULL, obj_free, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    CHECK_EQ(id, first + 1);
    static obj unowned = {OBJ_ALIVE, 5};
    CHECK_ST(btm_add_task(m, noop_task, &unowned, NULL, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    CHECK_EQ(id, first + 2);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 3);
    CHECK_EQ(unowned.magic, OBJ_ALIVE);
    evlog_free(&l);
    rm(m);
}

/* upstream NULL with a length > 0: INVALID_ARGUMENT; NULL with 0: fine. */
TEST(bad_upstream_null_with_len) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id first = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id id = 42;
    CHECK_ST(add_spec(m, spec_new(2, NO_RESULT), 0, NULL, NULL, 1, &id), BTM_STATUS_INVALID_ARGUMENT);
    CHECK_ST(add_spec(m, spec_new(2, NO_RESULT), 0, NULL, NULL, SIZE_MAX, &id),
             BTM_STATUS_INVALID_ARGUMENT);
    CHECK_ST(btm_add_pass_through_task(m, 0, NULL, NULL, 3, obj_new(3), obj_free, &id),
             BTM_STATUS_INVALID_ARGUMENT);
    CHECK_EQ(id, 42);
    CHECK_EQ(live_objects(), 1);
    /* a non-NULL pointer with length 0 is just "no upstream" */
    btm_task_id dummy = 999999;
    CHECK_ST(add_spec(m, spec_new(4, NO_RESULT), 0, NULL, &dummy, 0, &id), BTM_STATUS_OK);
    CHECK_EQ(id, first + 1);
    rm(m);
}

/* Upstream ids never issued: UNKNOWN_UPSTREAM, no id consumed; the id
 * becomes valid once issued. */
TEST(bad_upstream_never_issued) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    btm_task_id future = a + 1;
    btm_task_id id = 42;
    CHECK_ST(add_spec(m, spec_new(2, NO_RESULT), 0, NULL, &future, 1, &id),
             BTM_STATUS_UNKNOWN_UPSTREAM);
    btm_task_id mixed[] = {a, a + 100};
    CHECK_ST(add_spec(m, spec_new(3, NO_RESULT), 0, NULL, mixed, 2, &id), BTM_STATUS_UNKNOWN_UPSTREAM);
    btm_task_id zero = 0, huge = UINT64_MAX;
    CHECK_ST(add_spec(m, spec_new(4, NO_RESULT), 0, NULL, &zero, 1, &id), BTM_STATUS_UNKNOWN_UPSTREAM);
    CHECK_ST(add_spec(m, spec_new(5, NO_RESULT), 0, NULL, &huge, 1, &id), BTM_STATUS_UNKNOWN_UPSTREAM);
    CHECK_ST(btm_add_pass_through_task(m, 0, NULL, &future, 1, obj_new(6), obj_free, &id),
             BTM_STATUS_UNKNOWN_UPSTREAM);
    CHECK_EQ(id, 42);
    CHECK_EQ(live_objects(), 1);
    /* No id consumed: the next one is `future`, and now it is a valid
     * upstream. */
    btm_task_id b = add_simple(m, 7, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_EQ(b, future);
    btm_task_id c = add_simple(m, 8, NO_RESULT, 0, NULL, &future, 1);
    CHECK_EQ(c, future + 1);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_EQ(ev_count(&l, BTM_EVENT_TASK_COMPLETED, 0), 3);
    evlog_free(&l);
    rm(m);
}

/* A named group interned only by another manager is INVALID_GROUP (btm.h,
 * BTM_STATUS_INVALID_GROUP), also when this manager has interned as many
 * names: before the fix a name's value was its index in its manager's
 * list, so "beta" of manager B (index 0) was taken by manager A for its own
 * "alpha" (index 0): the task went into A's "alpha" group and its event
 * carried the name "alpha". */
TEST(bad_named_group_of_another_manager_same_index) {
    btm_manager *a = mk(1, false);
    REQUIRE(a);
    btm_manager *b = mk(1, false);
    REQUIRE(b);
    btm_group alpha, beta;
    REQUIRE_ST(btm_group_named(a, "alpha", &alpha), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(b, "beta", &beta), BTM_STATUS_OK);
    const char *name = (const char *)0x1;
    CHECK_ST(btm_group_name(a, &beta, &name), BTM_STATUS_INVALID_GROUP);
    CHECK(name == (const char *)0x1);
    btm_task_id id = 42;
    btm_group_stats gs;
    CHECK_ST(add_spec(a, spec_new(1, NO_RESULT), 0, &beta, NULL, 0, &id), BTM_STATUS_INVALID_GROUP);
    CHECK_EQ(id, 42);
    CHECK_ST(btm_get_group_stats(a, &beta, &gs), BTM_STATUS_INVALID_GROUP);
    CHECK_ST(btm_stop_task_group(a, &beta, true, true, NULL), BTM_STATUS_INVALID_GROUP);
    /* Each manager's own name still works. */
    CHECK_ST(btm_group_name(a, &alpha, &name), BTM_STATUS_OK);
    CHECK_STR(name, "alpha");
    CHECK_ST(btm_group_name(b, &beta, &name), BTM_STATUS_OK);
    CHECK_STR(name, "beta");
    btm_group again;
    CHECK_ST(btm_group_named(a, "alpha", &again), BTM_STATUS_OK);
    CHECK(group_eq(&again, &alpha));
    if (id != 42) {
        evlog l;
        evlog_init(&l);
        REQUIRE_ST(btm_start_processing(a), BTM_STATUS_OK);
        settle(a, &l);
        int i = ev_find(&l, BTM_EVENT_TASK_COMPLETED, id);
        if (i >= 0) t_fail(__FILE__, __LINE__, "the task of B's group \"beta\" ran in A's group \"%s\"", l.v[i].group_name);
        evlog_free(&l);
    }
    rm(a);
    rm(b);
}

/* Invalid group kinds, a non-zero `reserved` and never-interned names:
 * INVALID_GROUP. */
TEST(bad_group_kind) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_manager *other = mk(1, false);
    REQUIRE(other);
    btm_group names[3];
    REQUIRE_ST(btm_group_named(other, "a", &names[0]), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(other, "b", &names[1]), BTM_STATUS_OK);
    REQUIRE_ST(btm_group_named(other, "c", &names[2]), BTM_STATUS_OK);
    btm_task_id first = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    const btm_group bad[] = {
        {3, 0, 1},
        {UINT32_MAX, 0, 0},
        {BTM_GROUP_KIND_NAMED, 0, 123456}, /* never interned here */
        names[2],                           /* interned by another manager only */
        {BTM_GROUP_KIND_NUMBERED, 1, 5},    /* reserved not 0 */
        {BTM_GROUP_KIND_DEFAULT, 7, 0},     /* reserved not 0 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        btm_task_id id = 42;
        btm_group_stats gs;
        CHECK_ST(add_spec(m, spec_new(2, NO_RESULT), 0, &bad[i], NULL, 0, &id), BTM_STATUS_INVALID_GROUP);
        CHECK_ST(btm_add_pass_through_task(m, 0, &bad[i], NULL, 0, obj_new(3), obj_free, &id),
                 BTM_STATUS_INVALID_GROUP);
        CHECK_EQ(id, 42);
        CHECK_ST(btm_stop_task_group(m, &bad[i], true, true, NULL), BTM_STATUS_INVALID_GROUP);
        CHECK_ST(btm_get_group_stats(m, &bad[i], &gs), BTM_STATUS_INVALID_GROUP);
    }
    CHECK_EQ(live_objects(), 1);
    btm_task_id next = add_simple(m, 4, NO_RESULT, 0, NULL, NULL, 0);
    CHECK_EQ(next, first + 1);
    /* The default kind ignores value; numbered accepts any value. */
    btm_group dflt = {BTM_GROUP_KIND_DEFAULT, 0, 777};
    btm_group big = {BTM_GROUP_KIND_NUMBERED, 0, UINT64_MAX};
    btm_task_id t1 = add_simple(m, 5, NO_RESULT, 0, &dflt, NULL, 0);
    btm_task_id t2 = add_simple(m, 6, NO_RESULT, 0, &big, NULL, 0);
    REQUIRE_ST(btm_start_processing(m), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int i1 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, t1);
    int i2 = ev_find(&l, BTM_EVENT_TASK_COMPLETED, t2);
    REQUIRE(i1 >= 0 && i2 >= 0);
    CHECK_EQ(l.v[i1].group.kind, BTM_GROUP_KIND_DEFAULT);
    CHECK_EQ(l.v[i2].group.kind, BTM_GROUP_KIND_NUMBERED);
    CHECK(l.v[i2].group.value == UINT64_MAX);
    evlog_free(&l);
    rm(other);
    rm(m);
}

/* Invalid UTF-8 group names: INVALID_UTF8; NULL name: NULL_ARGUMENT. */
TEST(bad_group_name_utf8) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    const char *bad[] = {
        "\xff",                 /* never valid */
        "abc\xfe",              /* never valid */
        "\xc0\x80",             /* overlong NUL */
        "\xed\xa0\x80",         /* UTF-16 surrogate */
        "\xe2\x82",             /* truncated */
        "\x80",                 /* lone continuation */
        "\xf4\x90\x80\x80",     /* above U+10FFFF */
    };
    btm_group g = {99, 99, 99};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_ST(btm_group_named(m, bad[i], &g), BTM_STATUS_INVALID_UTF8);
        CHECK_EQ(g.kind, 99); /* untouched */
    }
    CHECK_ST(btm_group_named(m, NULL, &g), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_group_named(m, "ok \xe2\x9c\x93", &g), BTM_STATUS_OK);
    CHECK_EQ(g.kind, BTM_GROUP_KIND_NAMED);
    rm(m);
}

/* Adds after shut down: SHUT_DOWN, userdata freed, no id. */
TEST(bad_add_after_shut_down) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    btm_task_id a = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_shut_down(m, WAIT_MS, NULL), BTM_STATUS_OK);
    btm_task_id id = 42;
    CHECK_ST(add_spec(m, spec_new(2, NO_RESULT), 0, NULL, NULL, 0, &id), BTM_STATUS_SHUT_DOWN);
    CHECK_ST(btm_add_pass_through_task(m, 0, NULL, NULL, 0, obj_new(3), obj_free, &id),
             BTM_STATUS_SHUT_DOWN);
    /* also with an upstream that is no longer live */
    CHECK_ST(add_spec(m, spec_new(4, NO_RESULT), 0, NULL, &a, 1, &id), BTM_STATUS_SHUT_DOWN);
    CHECK_EQ(id, 42);
    CHECK_EQ(live_objects(), 0);
    CHECK_ST(btm_start_processing(m), BTM_STATUS_SHUT_DOWN);
    CHECK_ST(btm_pause_processing(m), BTM_STATUS_SHUT_DOWN);
    CHECK_ST(btm_set_max_threads(m, 1), BTM_STATUS_SHUT_DOWN);
    CHECK_ST(btm_wait_events(m, 0), BTM_STATUS_SHUT_DOWN);
    rm(m);
}

TEST(bad_shut_down_twice) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    size_t still = 5;
    CHECK_ST(btm_shut_down(m, 0, &still), BTM_STATUS_OK);
    CHECK_EQ(still, 0);
    still = 5;
    CHECK_ST(btm_shut_down(m, 0, &still), BTM_STATUS_ALREADY_SHUT_DOWN);
    CHECK_EQ(still, 5); /* not written on ALREADY_SHUT_DOWN */
    CHECK_ST(btm_shut_down(m, BTM_WAIT_FOREVER, NULL), BTM_STATUS_ALREADY_SHUT_DOWN);
    rm(m); /* destroy after shut down: fine */
}

/* Stops of unknown / never issued / finished ids: NOT_FOUND (not an
 * error). Stop calls after shut down find nothing. */
TEST(bad_stop_unknown_or_finished) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_stop_report rep;
    CHECK_ST(btm_stop_task(m, 1, true, true, &rep), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_task(m, 0, true, true, &rep), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_task(m, UINT64_MAX, true, true, &rep), BTM_STATUS_NOT_FOUND);
    btm_task_id t = add_simple(m, 1, NO_RESULT, 0, NULL, NULL, 0);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    CHECK_ST(btm_stop_task(m, t, true, true, &rep), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_set_task_priority(m, t, 1), BTM_STATUS_NOT_FOUND);
    btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 31337};
    CHECK_ST(btm_stop_task_group(m, &g, true, true, &rep), BTM_STATUS_NOT_FOUND);
    REQUIRE_ST(btm_shut_down(m, WAIT_MS, NULL), BTM_STATUS_OK);
    CHECK_ST(btm_stop_task(m, t + 1, true, true, &rep), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_stop_task_group(m, NULL, true, true, &rep), BTM_STATUS_NOT_FOUND);
    memset(&rep, 0xff, sizeof rep);
    CHECK_ST(btm_stop_all_tasks(m, &rep), BTM_STATUS_OK); /* nothing to stop */
    CHECK_EQ(rep.before_start + rep.while_running + rep.after_finish, 0);
    /* Other calls after shut down. */
    btm_event ev[2];
    size_t n = 99;
    CHECK_ST(btm_poll_events(m, ev, 2, &n), BTM_STATUS_OK);
    CHECK_EQ(n, 0);
    CHECK_ST(btm_set_task_priority(m, t, 1), BTM_STATUS_NOT_FOUND);
    CHECK_ST(btm_wait_idle(m, 0), BTM_STATUS_OK);
    btm_group g2;
    CHECK_ST(btm_group_named(m, "late", &g2), BTM_STATUS_OK);
    CHECK_ST(btm_next_group_id(m, &g2), BTM_STATUS_OK);
    btm_stats s;
    CHECK_ST(btm_get_stats(m, &s), BTM_STATUS_OK);
    evlog_free(&l);
    rm(m);
}

/* Poll with capacity 0 or a NULL buffer: ZERO_CAPACITY / NULL_ARGUMENT,
 * and no event is lost by a rejected poll. */
TEST(bad_poll_args) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    btm_task_id t = add_simple(m, 1, 11, 0, NULL, NULL, 0);
    REQUIRE_ST(btm_wait_idle(m, WAIT_MS), BTM_STATUS_OK);
    btm_event ev[4];
    size_t n = 77;
    CHECK_ST(btm_poll_events(m, ev, 0, &n), BTM_STATUS_ZERO_CAPACITY);
    CHECK_EQ(n, 77);
    CHECK_ST(btm_poll_events(m, NULL, 4, &n), BTM_STATUS_NULL_ARGUMENT);
    /* both wrong: the NULL pointer is reported first */
    CHECK_ST(btm_poll_events(m, NULL, 0, &n), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_poll_events(m, ev, 4, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(n, 77);
    /* Capacity 1: one event at a time, in order. */
    evlog l;
    evlog_init(&l);
    CHECK_EQ(poll_into(m, &l, 1), 1);
    CHECK_EQ(poll_into(m, &l, 1), 1);
    CHECK_EQ(poll_into(m, &l, 1), 0);
    CHECK(ev_is(&l, 0, BTM_EVENT_TASK_COMPLETED, t));
    CHECK_EQ(l.v[1].kind, BTM_EVENT_GROUP_FINISHED);
    evlog_free(&l);
    rm(m);
}

TEST(bad_set_max_threads) {
    btm_manager *m = mk(1, false);
    REQUIRE(m);
    CHECK_ST(btm_set_max_threads(m, -1), BTM_STATUS_INVALID_THREAD_COUNT);
    CHECK_ST(btm_set_max_threads(m, INT32_MIN), BTM_STATUS_INVALID_THREAD_COUNT);
    CHECK_ST(btm_set_max_threads(m, BTM_MAX_THREADS_LIMIT + 1), BTM_STATUS_INVALID_THREAD_COUNT);
    CHECK_ST(btm_set_max_threads(m, 0), BTM_STATUS_OK); /* 0 means 8 */
    CHECK_ST(btm_set_max_threads(m, BTM_MAX_THREADS_LIMIT), BTM_STATUS_OK);
    rm(m);
}

/* Context functions with a NULL context; out-pointers NULL inside a task. */
static void hook_bad_context(spec *s, btm_task_context *ctx) {
    (void)s;
    const btm_value *v = NULL;
    size_t n = 0;
    CHECK_ST(btm_context_upstream(ctx, NULL, &n), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_context_upstream(ctx, &v, NULL), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_context_report_progress(ctx, NAN, NULL), BTM_STATUS_INVALID_ARGUMENT);
    /* set_result with NULL data and a free function: "no result", nothing
     * to free. */
    CHECK_ST(btm_context_set_result(ctx, NULL, obj_free), BTM_STATUS_OK);
}

TEST(bad_context_null) {
    CHECK_EQ(btm_context_task_id(NULL), 0);
    CHECK(btm_context_manager(NULL) == NULL);
    CHECK(!btm_context_is_stopped(NULL));
    const btm_value *v = NULL;
    size_t n = 0;
    CHECK_ST(btm_context_upstream(NULL, &v, &n), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_context_fail(NULL, "m", "d"), BTM_STATUS_NULL_ARGUMENT);
    CHECK_ST(btm_context_report_progress(NULL, 0.5, "m"), BTM_STATUS_NULL_ARGUMENT);
    /* set_result with a NULL context still frees the data. */
    CHECK_ST(btm_context_set_result(NULL, obj_new(1), obj_free), BTM_STATUS_NULL_ARGUMENT);
    CHECK_EQ(live_objects(), 0);
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    spec *s = spec_new(1, NO_RESULT);
    s->hook = hook_bad_context;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int i = ev_find(&l, BTM_EVENT_TASK_COMPLETED, id);
    REQUIRE(i >= 0);
    CHECK_EQ(l.v[i].nres, 0);
    evlog_free(&l);
    rm(m);
}

/* Failure strings: any bytes are copied as given (invalid UTF-8 too). */
static void hook_fail_bytes(spec *s, btm_task_context *ctx) {
    (void)s;
    CHECK_ST(btm_context_fail(ctx, "first", "x"), BTM_STATUS_OK);
    CHECK_ST(btm_context_fail(ctx, "bad \xff\xfe bytes", "\xc0\x80"), BTM_STATUS_OK);
}

TEST(bad_fail_strings_copied) {
    btm_manager *m = mk(1, true);
    REQUIRE(m);
    spec *s = spec_new(1, NO_RESULT);
    s->hook = hook_fail_bytes;
    btm_task_id id = 0;
    REQUIRE_ST(add_spec(m, s, 0, NULL, NULL, 0, &id), BTM_STATUS_OK);
    evlog l;
    evlog_init(&l);
    REQUIRE(settle(m, &l));
    int i = ev_find(&l, BTM_EVENT_TASK_FAILED, id);
    REQUIRE(i >= 0);
    CHECK_STR(l.v[i].message, "bad \xff\xfe bytes");
    CHECK_STR(l.v[i].details, "\xc0\x80");
    evlog_free(&l);
    rm(m);
}

TEST(bad_status_code) {
    CHECK_STR(btm_status_str(BTM_STATUS_UNSUPPORTED + 1), "unknown status code");
    CHECK_STR(btm_status_str(0xdeadbeef), "unknown status code");
}

const test_case tests_bad_input[] = {
    TEST_ENTRY(bad_config_init_null),
    TEST_ENTRY(bad_config_init_older_caller),
    TEST_ENTRY(bad_create_null_out),
    TEST_ENTRY(bad_create_config_struct_size),
    TEST_ENTRY(bad_create_config_struct_size_inside_a_field),
    TEST_ENTRY(bad_create_thread_count),
    TEST_ENTRY(bad_destroy_null),
    TEST_ENTRY(bad_null_manager),
    TEST_ENTRY(bad_null_out_pointers),
    TEST_ENTRY(bad_null_task_fn),
    TEST_ENTRY(bad_upstream_null_with_len),
    TEST_ENTRY(bad_upstream_never_issued),
    TEST_ENTRY(bad_group_kind),
    TEST_ENTRY(bad_named_group_of_another_manager_same_index),
    TEST_ENTRY(bad_group_name_utf8),
    TEST_ENTRY(bad_add_after_shut_down),
    TEST_ENTRY(bad_shut_down_twice),
    TEST_ENTRY(bad_stop_unknown_or_finished),
    TEST_ENTRY(bad_poll_args),
    TEST_ENTRY(bad_set_max_threads),
    TEST_ENTRY(bad_context_null),
    TEST_ENTRY(bad_fail_strings_copied),
    TEST_ENTRY(bad_status_code),
    {NULL, NULL},
};
