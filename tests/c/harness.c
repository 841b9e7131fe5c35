/* The test harness: counters, gates, task specs, logs, runner. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Failures                                                            */
/* ------------------------------------------------------------------ */

atomic_long t_checks;
static atomic_int t_failures; /* failures of the current test */
static pthread_mutex_t t_print_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *t_current = "(none)";

void t_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    atomic_fetch_add(&t_failures, 1);
    pthread_mutex_lock(&t_print_mu);
    fprintf(stdout, "    FAIL [%s] %s:%d: ", t_current, file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&t_print_mu);
}

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool wait_until(bool (*pred)(void *arg), void *arg, unsigned timeout_ms) {
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (pred(arg)) return true;
        if (now_ms() > deadline) return pred(arg);
        sleep_ms(1);
    }
}

static void abs_deadline(struct timespec *ts, unsigned ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000u);
    ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
}

/* ------------------------------------------------------------------ */
/* Tracked objects                                                     */
/* ------------------------------------------------------------------ */

atomic_long obj_allocs;
atomic_long obj_frees;
atomic_long obj_errors;

void *obj_new(int tag) {
    obj *o = malloc(sizeof *o);
    if (!o) abort();
    o->magic = OBJ_ALIVE;
    o->tag = tag;
    atomic_fetch_add(&obj_allocs, 1);
    return o;
}

/* Specs are bigger than obj; both start with an obj header. */
static void obj_release(obj *o) {
    o->magic = OBJ_DEAD;
    free(o);
    atomic_fetch_add(&obj_frees, 1);
}

void obj_free(void *p) {
    if (p == NULL) {
        atomic_fetch_add(&obj_errors, 1);
        t_fail(__FILE__, __LINE__, "free function called with NULL");
        return;
    }
    obj *o = p;
    if (o->magic != OBJ_ALIVE) {
        atomic_fetch_add(&obj_errors, 1);
        t_fail(__FILE__, __LINE__, "free function called on a dead object (magic %#x)",
               (unsigned)o->magic);
        return;
    }
    obj_release(o);
}

int obj_tag(const void *p) {
    const obj *o = p;
    if (o == NULL || o->magic != OBJ_ALIVE) return -1000;
    return o->tag;
}

long live_objects(void) {
    return atomic_load(&obj_allocs) - atomic_load(&obj_frees);
}

static bool all_freed(void *arg) {
    (void)arg;
    return live_objects() == 0;
}

bool wait_all_freed(unsigned timeout_ms) {
    return wait_until(all_freed, NULL, timeout_ms);
}

/* ------------------------------------------------------------------ */
/* Gates                                                               */
/* ------------------------------------------------------------------ */

#define GATE_POOL 64
static gate gate_pool[GATE_POOL];
static int gate_used;
static pthread_mutex_t gate_pool_mu = PTHREAD_MUTEX_INITIALIZER;

static void gates_init(void) {
    for (int i = 0; i < GATE_POOL; i++) {
        pthread_mutex_init(&gate_pool[i].mu, NULL);
        pthread_cond_init(&gate_pool[i].cv, NULL);
    }
}

gate *gate_new(void) {
    pthread_mutex_lock(&gate_pool_mu);
    if (gate_used >= GATE_POOL) abort();
    gate *g = &gate_pool[gate_used++];
    pthread_mutex_unlock(&gate_pool_mu);
    pthread_mutex_lock(&g->mu);
    g->open = 0;
    g->arrived = 0;
    pthread_mutex_unlock(&g->mu);
    return g;
}

void gate_open(gate *g) {
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void gate_pass(gate *g) {
    struct timespec dl;
    abs_deadline(&dl, WAIT_MS * 3);
    pthread_mutex_lock(&g->mu);
    g->arrived++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) {
        if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) == ETIMEDOUT) {
            t_fail(__FILE__, __LINE__, "a gate was never opened");
            break;
        }
    }
    pthread_mutex_unlock(&g->mu);
}

bool gate_wait_arrived(gate *g, int n, unsigned timeout_ms) {
    struct timespec dl;
    bool ok = true;
    abs_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&g->mu);
    while (g->arrived < n) {
        if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) == ETIMEDOUT) {
            ok = g->arrived >= n;
            break;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static void gates_open_all(void) {
    pthread_mutex_lock(&gate_pool_mu);
    int n = gate_used;
    pthread_mutex_unlock(&gate_pool_mu);
    for (int i = 0; i < n; i++) gate_open(&gate_pool[i]);
}

static void gates_reset(void) {
    pthread_mutex_lock(&gate_pool_mu);
    gate_used = 0;
    pthread_mutex_unlock(&gate_pool_mu);
}

/* ------------------------------------------------------------------ */
/* Run log                                                             */
/* ------------------------------------------------------------------ */

#define RUNLOG_MAX 8192
static run_rec runlog[RUNLOG_MAX];
static size_t runlog_n;
static pthread_mutex_t runlog_mu = PTHREAD_MUTEX_INITIALIZER;

void runlog_reset(void) {
    pthread_mutex_lock(&runlog_mu);
    runlog_n = 0;
    pthread_mutex_unlock(&runlog_mu);
}

size_t runlog_count(void) {
    pthread_mutex_lock(&runlog_mu);
    size_t n = runlog_n;
    pthread_mutex_unlock(&runlog_mu);
    return n;
}

run_rec runlog_get(size_t i) {
    run_rec r;
    memset(&r, 0, sizeof r);
    r.tag = -1;
    pthread_mutex_lock(&runlog_mu);
    if (i < runlog_n) r = runlog[i];
    pthread_mutex_unlock(&runlog_mu);
    return r;
}

int runlog_find(int tag) {
    int found = -1;
    pthread_mutex_lock(&runlog_mu);
    for (size_t i = 0; i < runlog_n; i++) {
        if (runlog[i].tag == tag) {
            found = (int)i;
            break;
        }
    }
    pthread_mutex_unlock(&runlog_mu);
    return found;
}

size_t runlog_tags(int *out, size_t n) {
    pthread_mutex_lock(&runlog_mu);
    size_t k = runlog_n < n ? runlog_n : n;
    for (size_t i = 0; i < k; i++) out[i] = runlog[i].tag;
    pthread_mutex_unlock(&runlog_mu);
    return k;
}

bool run_order_is(const int *expected, size_t n) {
    int got[64];
    size_t k = runlog_tags(got, 64);
    bool ok = k == n;
    for (size_t i = 0; ok && i < n; i++) ok = got[i] == expected[i];
    if (!ok) {
        printf("      run order:");
        for (size_t i = 0; i < k; i++) printf(" %d", got[i]);
        printf("\n      expected: ");
        for (size_t i = 0; i < n; i++) printf(" %d", expected[i]);
        printf("\n");
    }
    return ok;
}

bool values_are(const value_rec *got, size_t n, const value_rec *want, size_t wn,
                       const char *what) {
    bool ok = n == wn;
    for (size_t i = 0; ok && i < n; i++)
        ok = got[i].task_id == want[i].task_id && got[i].tag == want[i].tag;
    if (!ok) {
        printf("      %s:", what);
        for (size_t i = 0; i < n && i < MAX_VALUES; i++)
            printf(" {%llu,%d}", (unsigned long long)got[i].task_id, got[i].tag);
        printf("\n      expected:");
        for (size_t i = 0; i < wn; i++)
            printf(" {%llu,%d}", (unsigned long long)want[i].task_id, want[i].tag);
        printf("\n");
    }
    return ok;
}

/* ------------------------------------------------------------------ */
/* Specs and the task function                                         */
/* ------------------------------------------------------------------ */

spec *spec_new(int tag, int result_tag) {
    spec *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->hdr.magic = OBJ_ALIVE;
    s->hdr.tag = tag;
    s->tag = tag;
    s->result_tag = result_tag;
    atomic_fetch_add(&obj_allocs, 1);
    return s;
}

void spec_task(void *userdata, btm_task_context *ctx) {
    spec *s = userdata;
    if (s == NULL || s->hdr.magic != OBJ_ALIVE) {
        t_fail(__FILE__, __LINE__, "task ran with a bad userdata");
        return;
    }
    run_rec r;
    memset(&r, 0, sizeof r);
    r.tag = s->tag;
    r.id = btm_context_task_id(ctx);
    if (r.id == 0) t_fail(__FILE__, __LINE__, "btm_context_task_id returned 0");
    const btm_value *vals = NULL;
    size_t n = 12345;
    btm_status st = btm_context_upstream(ctx, &vals, &n);
    if (st != BTM_STATUS_OK) {
        t_fail(__FILE__, __LINE__, "btm_context_upstream: %s", btm_status_str(st));
        n = 0;
    }
    if (n > 0 && vals == NULL) t_fail(__FILE__, __LINE__, "upstream count %zu with NULL values", n);
    if (n == 0 && vals != NULL) t_fail(__FILE__, __LINE__, "upstream count 0 with non-NULL values");
    r.nup = n;
    for (size_t i = 0; i < n && i < MAX_VALUES; i++) {
        r.up[i].task_id = vals[i].task_id;
        r.up[i].tag = obj_tag(vals[i].data);
    }
    size_t idx;
    pthread_mutex_lock(&runlog_mu);
    idx = runlog_n;
    if (runlog_n < RUNLOG_MAX) runlog[runlog_n++] = r;
    pthread_mutex_unlock(&runlog_mu);

    if (s->before) gate_pass(s->before);
    if (s->hook) s->hook(s, ctx);
    if (s->result_tag != NO_RESULT) {
        st = btm_context_set_result(ctx, obj_new(s->result_tag), obj_free);
        if (st != BTM_STATUS_OK)
            t_fail(__FILE__, __LINE__, "btm_context_set_result: %s", btm_status_str(st));
    }
    if (s->fail) {
        st = btm_context_fail(ctx, s->fail_msg, s->fail_details);
        if (st != BTM_STATUS_OK)
            t_fail(__FILE__, __LINE__, "btm_context_fail: %s", btm_status_str(st));
    }
    bool stopped = btm_context_is_stopped(ctx);
    pthread_mutex_lock(&runlog_mu);
    if (idx < RUNLOG_MAX) runlog[idx].stopped_at_end = stopped;
    pthread_mutex_unlock(&runlog_mu);
}

btm_status add_spec(btm_manager *m, spec *s, int32_t priority, const btm_group *group,
                    const btm_task_id *up, size_t up_len, btm_task_id *id_out) {
    return btm_add_task(m, spec_task, s, obj_free, priority, group, up, up_len, id_out);
}

static btm_task_id add_checked(btm_manager *m, spec *s, int32_t priority,
                               const btm_group *group, const btm_task_id *up,
                               size_t up_len) {
    btm_task_id id = 0;
    btm_status st = add_spec(m, s, priority, group, up, up_len, &id);
    if (st != BTM_STATUS_OK) {
        t_fail(__FILE__, __LINE__, "btm_add_task: %s", btm_status_str(st));
        return 0;
    }
    if (id == 0) t_fail(__FILE__, __LINE__, "btm_add_task issued id 0");
    return id;
}

btm_task_id add_simple(btm_manager *m, int tag, int result_tag, int32_t priority,
                       const btm_group *group, const btm_task_id *up, size_t up_len) {
    return add_checked(m, spec_new(tag, result_tag), priority, group, up, up_len);
}

btm_task_id add_failing(btm_manager *m, int tag, int32_t priority, const btm_group *group,
                        const btm_task_id *up, size_t up_len, const char *msg,
                        const char *details) {
    spec *s = spec_new(tag, NO_RESULT);
    s->fail = true;
    s->fail_msg = msg;
    s->fail_details = details;
    return add_checked(m, s, priority, group, up, up_len);
}

btm_task_id add_gated(btm_manager *m, int tag, int result_tag, gate *g, int32_t priority,
                      const btm_group *group, const btm_task_id *up, size_t up_len) {
    spec *s = spec_new(tag, result_tag);
    s->before = g;
    return add_checked(m, s, priority, group, up, up_len);
}

btm_task_id add_pass(btm_manager *m, int32_t priority, const btm_group *group,
                     const btm_task_id *up, size_t up_len, int payload_tag) {
    btm_task_id id = 0;
    void *payload = payload_tag == NO_RESULT ? NULL : obj_new(payload_tag);
    btm_status st = btm_add_pass_through_task(m, priority, group, up, up_len, payload,
                                              payload ? obj_free : NULL, &id);
    if (st != BTM_STATUS_OK) {
        t_fail(__FILE__, __LINE__, "btm_add_pass_through_task: %s", btm_status_str(st));
        return 0;
    }
    return id;
}

/* ------------------------------------------------------------------ */
/* Event log                                                           */
/* ------------------------------------------------------------------ */

void evlog_init(evlog *l) {
    l->v = NULL;
    l->n = 0;
    l->cap = 0;
}

void evlog_free(evlog *l) {
    free(l->v);
    evlog_init(l);
}

static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void evlog_push(evlog *l, const btm_event *e) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) abort();
    }
    ev *c = &l->v[l->n++];
    memset(c, 0, sizeof *c);
    c->kind = e->kind;
    c->task_id = e->task_id;
    c->group = e->group;
    if (e->group_name) {
        c->has_group_name = true;
        copy_str(c->group_name, sizeof c->group_name, e->group_name);
    }
    c->nres = e->result_count;
    c->results_null = e->results == NULL;
    if (e->result_count > 0 && e->results == NULL)
        t_fail(__FILE__, __LINE__, "event with %zu results and a NULL array", e->result_count);
    for (size_t i = 0; i < e->result_count && i < MAX_VALUES && e->results; i++) {
        c->res[i].task_id = e->results[i].task_id;
        c->res[i].tag = obj_tag(e->results[i].data);
    }
    if (e->message) {
        c->has_message = true;
        copy_str(c->message, sizeof c->message, e->message);
    }
    if (e->details) {
        c->has_details = true;
        copy_str(c->details, sizeof c->details, e->details);
    }
    c->progress = e->progress;
    /* Sanity of every event, whatever the test. */
    if (e->reserved != 0) t_fail(__FILE__, __LINE__, "event.reserved != 0");
    switch (e->kind) {
    case BTM_EVENT_TASK_COMPLETED:
        if (e->task_id == 0) t_fail(__FILE__, __LINE__, "completed event with task id 0");
        if (e->message || e->details) t_fail(__FILE__, __LINE__, "completed event with a message");
        break;
    case BTM_EVENT_TASK_FAILED:
        if (e->task_id == 0) t_fail(__FILE__, __LINE__, "failed event with task id 0");
        if (!e->message || !e->details)
            t_fail(__FILE__, __LINE__, "failed event with a NULL message or details");
        if (e->result_count) t_fail(__FILE__, __LINE__, "failed event with results");
        break;
    case BTM_EVENT_GROUP_FINISHED:
        if (e->task_id != 0) t_fail(__FILE__, __LINE__, "group finished with a task id");
        break;
    case BTM_EVENT_TASK_PROGRESS:
        if (e->task_id == 0) t_fail(__FILE__, __LINE__, "progress event with task id 0");
        if (!(e->progress >= 0.0 && e->progress <= 1.0))
            t_fail(__FILE__, __LINE__, "progress out of range");
        break;
    default:
        t_fail(__FILE__, __LINE__, "unknown event kind %u", (unsigned)e->kind);
    }
    if ((e->group.kind == BTM_GROUP_KIND_NAMED) != (e->group_name != NULL))
        t_fail(__FILE__, __LINE__, "group_name must be set exactly for named groups");
}

size_t poll_into(btm_manager *m, evlog *l, size_t cap) {
    btm_event *buf = calloc(cap, sizeof *buf);
    if (!buf) abort();
    size_t n = 99999;
    btm_status st = btm_poll_events(m, buf, cap, &n);
    if (st != BTM_STATUS_OK) {
        t_fail(__FILE__, __LINE__, "btm_poll_events: %s", btm_status_str(st));
        free(buf);
        return (size_t)-1;
    }
    if (n > cap) {
        t_fail(__FILE__, __LINE__, "btm_poll_events wrote %zu > capacity %zu", n, cap);
        n = cap;
    }
    for (size_t i = 0; i < n; i++) evlog_push(l, &buf[i]);
    free(buf);
    return n;
}

void poll_drain(btm_manager *m, evlog *l) {
    for (;;) {
        size_t n = poll_into(m, l, 16);
        if (n == 0 || n == (size_t)-1) return;
    }
}

bool settle(btm_manager *m, evlog *l) {
    btm_status st = btm_wait_idle(m, WAIT_MS);
    if (st != BTM_STATUS_OK) {
        t_fail(__FILE__, __LINE__, "btm_wait_idle: %s", btm_status_str(st));
        return false;
    }
    poll_drain(m, l);
    return true;
}

bool poll_until_count(btm_manager *m, evlog *l, size_t n, unsigned timeout_ms) {
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        size_t k = poll_into(m, l, 16);
        if (k == (size_t)-1) return false;
        if (l->n >= n) return true;
        if (now_ms() > deadline) {
            t_fail(__FILE__, __LINE__, "timed out waiting for %zu events (have %zu)", n, l->n);
            return false;
        }
        if (k == 0) {
            btm_status st = btm_wait_events(m, 100);
            if (st != BTM_STATUS_OK && st != BTM_STATUS_TIMED_OUT) {
                t_fail(__FILE__, __LINE__, "btm_wait_events: %s", btm_status_str(st));
                return false;
            }
        }
    }
}

size_t ev_count(const evlog *l, uint32_t kind, btm_task_id task_id) {
    size_t c = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind == kind && (task_id == 0 || l->v[i].task_id == task_id)) c++;
    return c;
}

int ev_find(const evlog *l, uint32_t kind, btm_task_id task_id) {
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind == kind && (task_id == 0 || l->v[i].task_id == task_id)) return (int)i;
    return -1;
}

bool group_eq(const btm_group *a, const btm_group *b) {
    if (a->kind != b->kind) return false;
    if (a->kind == BTM_GROUP_KIND_DEFAULT) return true;
    return a->value == b->value;
}

int ev_find_group(const evlog *l, const btm_group *g) {
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind == BTM_EVENT_GROUP_FINISHED && group_eq(&l->v[i].group, g))
            return (int)i;
    return -1;
}

size_t ev_count_group(const evlog *l, const btm_group *g) {
    size_t c = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind == BTM_EVENT_GROUP_FINISHED && group_eq(&l->v[i].group, g)) c++;
    return c;
}

bool ev_is(const evlog *l, size_t i, uint32_t kind, btm_task_id id) {
    return i < l->n && l->v[i].kind == kind && l->v[i].task_id == id;
}

void evlog_dump(const evlog *l, const char *title) {
    static const char *names[] = {"?", "completed", "failed", "group finished", "progress"};
    pthread_mutex_lock(&t_print_mu);
    printf("      events (%s):\n", title);
    for (size_t i = 0; i < l->n; i++) {
        const ev *e = &l->v[i];
        printf("        [%zu] %s task %llu group %u/%llu", i,
               e->kind <= 4 ? names[e->kind] : "??", (unsigned long long)e->task_id,
               (unsigned)e->group.kind, (unsigned long long)e->group.value);
        if (e->kind == BTM_EVENT_TASK_COMPLETED) {
            printf(" results:");
            for (size_t k = 0; k < e->nres && k < MAX_VALUES; k++)
                printf(" {%llu,%d}", (unsigned long long)e->res[k].task_id, e->res[k].tag);
        }
        if (e->has_message) printf(" msg=\"%s\"", e->message);
        if (e->kind == BTM_EVENT_TASK_PROGRESS) printf(" p=%.2f", e->progress);
        printf("\n");
    }
    fflush(stdout);
    pthread_mutex_unlock(&t_print_mu);
}

/* ------------------------------------------------------------------ */
/* Managers                                                            */
/* ------------------------------------------------------------------ */

#define MAX_MANAGERS 64
static btm_manager *managers[MAX_MANAGERS];
static pthread_mutex_t managers_mu = PTHREAD_MUTEX_INITIALIZER;

btm_manager *mk(int32_t max_threads, bool start_processing) {
    btm_config cfg;
    btm_status st = btm_config_init(&cfg);
    if (st != BTM_STATUS_OK) {
        t_fail(__FILE__, __LINE__, "btm_config_init: %s", btm_status_str(st));
        return NULL;
    }
    cfg.max_threads = max_threads;
    cfg.start_processing = start_processing;
    btm_manager *m = NULL;
    st = btm_create(&cfg, &m);
    if (st != BTM_STATUS_OK || m == NULL) {
        t_fail(__FILE__, __LINE__, "btm_create: %s", btm_status_str(st));
        return NULL;
    }
    pthread_mutex_lock(&managers_mu);
    for (int i = 0; i < MAX_MANAGERS; i++) {
        if (managers[i] == NULL) {
            managers[i] = m;
            break;
        }
    }
    pthread_mutex_unlock(&managers_mu);
    return m;
}

void forget_manager(btm_manager *m) {
    pthread_mutex_lock(&managers_mu);
    for (int i = 0; i < MAX_MANAGERS; i++)
        if (managers[i] == m) managers[i] = NULL;
    pthread_mutex_unlock(&managers_mu);
}

void rm(btm_manager *m) {
    forget_manager(m);
    btm_destroy(m);
}

static void managers_destroy_all(void) {
    for (int i = 0; i < MAX_MANAGERS; i++) {
        pthread_mutex_lock(&managers_mu);
        btm_manager *m = managers[i];
        managers[i] = NULL;
        pthread_mutex_unlock(&managers_mu);
        if (m) btm_destroy(m);
    }
}

/* ------------------------------------------------------------------ */
/* Runner                                                              */
/* ------------------------------------------------------------------ */

static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv = PTHREAD_COND_INITIALIZER;
static uint64_t wd_generation;
static bool wd_running;
static unsigned wd_limit_s = 120;

static void *watchdog(void *arg) {
    (void)arg;
    pthread_mutex_lock(&wd_mu);
    for (;;) {
        uint64_t gen = wd_generation;
        bool running = wd_running;
        struct timespec dl;
        abs_deadline(&dl, wd_limit_s * 1000u);
        int rc = 0;
        while (wd_generation == gen && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&wd_cv, &wd_mu, &dl);
        if (wd_generation == gen && running) {
            fprintf(stdout, "WATCHDOG: test %s still running after %u s: aborting\n", t_current,
                    wd_limit_s);
            fflush(stdout);
            abort();
        }
    }
    return NULL;
}

static void wd_arm(bool running) {
    pthread_mutex_lock(&wd_mu);
    wd_generation++;
    wd_running = running;
    pthread_cond_broadcast(&wd_cv);
    pthread_mutex_unlock(&wd_mu);
}

static const test_case *const all_tables[] = {
    tests_order, tests_deps, tests_groups, tests_stops, tests_lifecycle, tests_reentrant,
    tests_bad_input, tests_bulk, tests_host,
};

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    gates_init();
    const char *lim = getenv("BTM_TEST_TIMEOUT_S");
    if (lim && atoi(lim) > 0) wd_limit_s = (unsigned)atoi(lim);
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, NULL);
    pthread_detach(wd);

    int passed = 0, failed = 0;
    const char *names_failed[256];
    int nf = 0;
    for (size_t t = 0; t < sizeof all_tables / sizeof all_tables[0]; t++) {
        for (const test_case *tc = all_tables[t]; tc->name; tc++) {
            if (argc > 1) {
                bool match = false;
                for (int a = 1; a < argc; a++)
                    if (strstr(tc->name, argv[a])) match = true;
                if (!match) continue;
            }
            t_current = tc->name;
            atomic_store(&t_failures, 0);
            atomic_store(&obj_allocs, 0);
            atomic_store(&obj_frees, 0);
            atomic_store(&obj_errors, 0);
            runlog_reset();
            gates_reset();
            wd_arm(true);
            uint64_t t0 = now_ms();

            tc->fn();

            /* Teardown: release every gate, destroy what the test left. */
            gates_open_all();
            managers_destroy_all();
            if (!wait_all_freed(WAIT_MS))
                t_fail(__FILE__, __LINE__, "free-function accounting: %ld objects never freed "
                       "(%ld allocated, %ld freed)", live_objects(),
                       (long)atomic_load(&obj_allocs), (long)atomic_load(&obj_frees));
            if (atomic_load(&obj_errors) != 0)
                t_fail(__FILE__, __LINE__, "free-function accounting: %ld bad frees",
                       (long)atomic_load(&obj_errors));
            wd_arm(false);
            uint64_t dt = now_ms() - t0;
            if (atomic_load(&t_failures) == 0) {
                passed++;
                printf("PASS %-48s (%llu ms, %ld objects)\n", tc->name, (unsigned long long)dt,
                       (long)atomic_load(&obj_allocs));
            } else {
                failed++;
                if (nf < 256) names_failed[nf++] = tc->name;
                printf("FAIL %-48s (%llu ms)\n", tc->name, (unsigned long long)dt);
            }
        }
    }
    t_current = "(none)";
    if (nf) {
        printf("failed tests:");
        for (int i = 0; i < nf; i++) printf(" %s", names_failed[i]);
        printf("\n");
    }
    printf("%d passed, %d failed (%ld checks)\n", passed, failed, (long)atomic_load(&t_checks));
    if (passed + failed == 0) {
        printf("no test ran\n");
        return 2;
    }
    return failed ? 1 : 0;
}
