/*
 * Minimal C11 test harness for the btm C API.
 *
 * - CHECK(cond): records a failure and goes on; REQUIRE(cond): records a
 *   failure and returns from the test function.
 * - Every void* handed to btm (userdata, payloads, results) is a tracked
 *   object: allocations and frees are counted with atomics, and the runner
 *   fails a test whose counters are not back to zero at its end.
 * - Gates (mutex + condvar) let tests hold a task inside its function and
 *   release it; the runner opens every gate and destroys every manager a
 *   test left behind, so a failing test never hangs the suite.
 * - Waits are bounded (WAIT_MS) and fail the test instead of hanging; a
 *   watchdog thread aborts the process if one test runs far too long.
 */
#ifndef BTM_TEST_HARNESS_H
#define BTM_TEST_HARNESS_H

#include "btm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Generous bound for anything the tests wait for. */
#define WAIT_MS 10000u

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

void t_fail(const char *file, int line, const char *fmt, ...)
#if defined(__MINGW32__) /* MinGW's printf is the C99 one (__USE_MINGW_ANSI_STDIO) */
    __attribute__((format(gnu_printf, 3, 4)))
#elif defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
extern atomic_long t_checks;

#define CHECK(cond)                                                     \
    do {                                                                \
        atomic_fetch_add(&t_checks, 1);                                 \
        if (!(cond)) t_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);    \
    } while (0)

#define REQUIRE(cond)                                                   \
    do {                                                                \
        atomic_fetch_add(&t_checks, 1);                                 \
        if (!(cond)) {                                                  \
            t_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);           \
            return;                                                     \
        }                                                               \
    } while (0)

/* Compare two integers (printed as long long on failure). */
#define CHECK_EQ(a, b)                                                  \
    do {                                                                \
        long long a_ = (long long)(a), b_ = (long long)(b);             \
        atomic_fetch_add(&t_checks, 1);                                 \
        if (a_ != b_)                                                   \
            t_fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %lld != %lld", \
                   #a, #b, a_, b_);                                     \
    } while (0)

#define REQUIRE_EQ(a, b)                                                \
    do {                                                                \
        long long a_ = (long long)(a), b_ = (long long)(b);             \
        atomic_fetch_add(&t_checks, 1);                                 \
        if (a_ != b_) {                                                 \
            t_fail(__FILE__, __LINE__, "REQUIRE_EQ(%s, %s): %lld != %lld", \
                   #a, #b, a_, b_);                                     \
            return;                                                     \
        }                                                               \
    } while (0)

/* A status check that prints the status' name. */
#define CHECK_ST(call, expected)                                        \
    do {                                                                \
        btm_status st_ = (call);                                        \
        atomic_fetch_add(&t_checks, 1);                                 \
        if (st_ != (btm_status)(expected))                              \
            t_fail(__FILE__, __LINE__, "%s returned %u (%s), expected %s", \
                   #call, (unsigned)st_, btm_status_str(st_), #expected); \
    } while (0)

#define REQUIRE_ST(call, expected)                                      \
    do {                                                                \
        btm_status st_ = (call);                                        \
        atomic_fetch_add(&t_checks, 1);                                 \
        if (st_ != (btm_status)(expected)) {                            \
            t_fail(__FILE__, __LINE__, "%s returned %u (%s), expected %s", \
                   #call, (unsigned)st_, btm_status_str(st_), #expected); \
            return;                                                     \
        }                                                               \
    } while (0)

#define CHECK_STR(a, b)                                                 \
    do {                                                                \
        const char *a_ = (a), *b_ = (b);                                \
        atomic_fetch_add(&t_checks, 1);                                 \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)            \
            t_fail(__FILE__, __LINE__, "CHECK_STR(%s, %s): \"%s\" != \"%s\"", \
                   #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");    \
    } while (0)

/* ------------------------------------------------------------------ */
/* Tests and the runner                                                */
/* ------------------------------------------------------------------ */

typedef void (*test_fn)(void);
typedef struct test_case {
    const char *name;
    test_fn fn;
} test_case;

#define TEST(name) static void name(void)
#define TEST_ENTRY(name) { #name, name }

extern const test_case tests_order[];
extern const test_case tests_deps[];
extern const test_case tests_groups[];
extern const test_case tests_stops[];
extern const test_case tests_lifecycle[];
extern const test_case tests_reentrant[];
extern const test_case tests_bad_input[];
extern const test_case tests_bulk[];
extern const test_case tests_host[];

/* ------------------------------------------------------------------ */
/* Tracked objects: every void* handed to btm                          */
/* ------------------------------------------------------------------ */

extern atomic_long obj_allocs;   /* tracked objects created */
extern atomic_long obj_frees;    /* ... and released through obj_free */
extern atomic_long obj_errors;   /* free of NULL, bad magic or a double free */

#define OBJ_ALIVE 0x0B1EC7A1u
#define OBJ_DEAD 0xDEADBEEFu

typedef struct obj {
    uint32_t magic;
    int tag;
} obj;

void *obj_new(int tag);         /* a tracked object with a tag */
void obj_free(void *p);         /* btm_free_fn for every tracked object */
int obj_tag(const void *p);     /* the tag, or -1000 for NULL / a dead object */
long live_objects(void);        /* obj_allocs - obj_frees */
/* Waits (bounded) until every tracked object has been freed. */
bool wait_all_freed(unsigned timeout_ms);

/* ------------------------------------------------------------------ */
/* Gates                                                               */
/* ------------------------------------------------------------------ */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;     /* 1 once released */
    int arrived;  /* how many waiters reached the gate */
} gate;

gate *gate_new(void);                 /* from a pool the runner resets */
void gate_open(gate *g);
/* Called by a task: count arrival, wait until open (bounded: fails the
 * test after WAIT_MS * 3 instead of hanging). */
void gate_pass(gate *g);
/* Waits until `n` waiters reached the gate; false on timeout. */
bool gate_wait_arrived(gate *g, int n, unsigned timeout_ms);

/* ------------------------------------------------------------------ */
/* Task specs: the userdata of every test task                         */
/* ------------------------------------------------------------------ */

#define NO_RESULT (-1)

typedef struct spec spec;
typedef void (*hook_fn)(spec *s, btm_task_context *ctx);

struct spec {
    obj hdr;              /* tracked: the userdata itself is counted */
    int tag;              /* recorded in the run log */
    int result_tag;       /* NO_RESULT or the tag of a result object */
    bool fail;            /* call btm_context_fail(fail_msg, fail_details) */
    const char *fail_msg;
    const char *fail_details;
    gate *before;         /* if set: gate_pass(before) first */
    hook_fn hook;         /* if set: runs after the gate, before the outcome */
    btm_manager *m;       /* for hooks */
    uint64_t arg;         /* for hooks */
    uint64_t arg2;
    void *ptr;            /* for hooks */
};

/* A new spec (tracked) with tag and result tag, nothing else. */
spec *spec_new(int tag, int result_tag);
/* The task function used by every test task (see struct spec). */
void spec_task(void *userdata, btm_task_context *ctx);

/* Convenience wrappers around btm_add_task with spec_task + obj_free. */
btm_status add_spec(btm_manager *m, spec *s, int32_t priority,
                    const btm_group *group, const btm_task_id *up,
                    size_t up_len, btm_task_id *id_out);
/* add a plain task: tag, result tag; returns its id (0 on failure, which
 * is recorded as a test failure). */
btm_task_id add_simple(btm_manager *m, int tag, int result_tag, int32_t priority,
                       const btm_group *group, const btm_task_id *up,
                       size_t up_len);
btm_task_id add_failing(btm_manager *m, int tag, int32_t priority,
                        const btm_group *group, const btm_task_id *up,
                        size_t up_len, const char *msg, const char *details);
btm_task_id add_gated(btm_manager *m, int tag, int result_tag, gate *g,
                      int32_t priority, const btm_group *group,
                      const btm_task_id *up, size_t up_len);
btm_task_id add_pass(btm_manager *m, int32_t priority, const btm_group *group,
                     const btm_task_id *up, size_t up_len, int payload_tag);

/* ------------------------------------------------------------------ */
/* Run log: what ran, in order, and what each task saw upstream        */
/* ------------------------------------------------------------------ */

#define MAX_VALUES 32

typedef struct value_rec {
    uint64_t task_id;
    int tag;
} value_rec;

typedef struct run_rec {
    int tag;
    btm_task_id id;
    size_t nup;
    value_rec up[MAX_VALUES];
    bool stopped_at_end; /* btm_context_is_stopped when the task finished */
} run_rec;

void runlog_reset(void);
size_t runlog_count(void);
run_rec runlog_get(size_t i);
/* Index in the run log of the task with `tag` (-1 if it never ran). */
int runlog_find(int tag);
/* Copies up to `n` run tags in order into `out`; returns the count. */
size_t runlog_tags(int *out, size_t n);
/* True if the run log's tags are exactly `expected`; prints both if not. */
bool run_order_is(const int *expected, size_t n);

/* ------------------------------------------------------------------ */
/* Event log: copies of polled events                                  */
/* ------------------------------------------------------------------ */

typedef struct ev {
    uint32_t kind;
    btm_task_id task_id;
    btm_group group;
    bool has_group_name;
    char group_name[64];
    size_t nres;
    value_rec res[MAX_VALUES];
    bool results_null;
    bool has_message, has_details;
    char message[128];
    char details[128];
    double progress;
} ev;

/* True if `got` (n entries) equals `want` (wn entries) by task id and tag;
 * prints both, labelled `what`, if not. */
bool values_are(const value_rec *got, size_t n, const value_rec *want, size_t wn, const char *what);

typedef struct evlog {
    ev *v;
    size_t n, cap;
} evlog;

void evlog_init(evlog *l);
void evlog_free(evlog *l);
/* One btm_poll_events call (capacity `cap`), appending to `l`; returns the
 * number of events, or (size_t)-1 on an error status (recorded). */
size_t poll_into(btm_manager *m, evlog *l, size_t cap);
/* Polls until nothing is pending. */
void poll_drain(btm_manager *m, evlog *l);
/* Waits for the manager to become idle (bounded) and then drains the
 * events. false (with a recorded failure) on timeout. */
bool settle(btm_manager *m, evlog *l);
/* Polls (waiting with btm_wait_events) until `l` holds at least `n`
 * events; false on timeout. */
bool poll_until_count(btm_manager *m, evlog *l, size_t n, unsigned timeout_ms);
/* Number of events of `kind` for `task_id` (0: any). */
size_t ev_count(const evlog *l, uint32_t kind, btm_task_id task_id);
/* Index of the first event of `kind` for `task_id` (-1 if none). */
int ev_find(const evlog *l, uint32_t kind, btm_task_id task_id);
/* Index of the first GROUP_FINISHED event for `g` (-1 if none). */
int ev_find_group(const evlog *l, const btm_group *g);
size_t ev_count_group(const evlog *l, const btm_group *g);
bool group_eq(const btm_group *a, const btm_group *b);
/* Prints the log (for failure diagnosis). */
void evlog_dump(const evlog *l, const char *title);
/* true if the event at index i is a final event (completed/failed) of id */
bool ev_is(const evlog *l, size_t i, uint32_t kind, btm_task_id id);

/* ------------------------------------------------------------------ */
/* Managers                                                            */
/* ------------------------------------------------------------------ */

/* Creates a manager (registered: the runner destroys it if the test
 * returns early). NULL on failure (recorded). */
btm_manager *mk(int32_t max_threads, bool start_processing);
/* Destroys a manager made with mk. */
void rm(btm_manager *m);
/* Forgets a manager made with mk without destroying it (the test destroyed
 * it some other way). */
void forget_manager(btm_manager *m);

/* A monotonic clock in milliseconds. */
uint64_t now_ms(void);
/* Polls `pred(arg)` every millisecond until true or timeout. */
bool wait_until(bool (*pred)(void *arg), void *arg, unsigned timeout_ms);
void sleep_ms(unsigned ms);

#endif /* BTM_TEST_HARNESS_H */
