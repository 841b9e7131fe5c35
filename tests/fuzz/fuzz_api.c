/*
 * fuzz_api.c: a randomized, seed-driven driver of the whole btm C API.
 *
 * Usage: fuzz_api [--seed S] [--seeds K] [--ops N] [--keep-going]
 *                 [--trace] [--wd SECONDS] [--mask HEXMASK] [--no-destroy-reentry]
 *   Runs seeds S .. S+K-1, N host operations each, with 1-4 managers.
 *   --mask disables operation kinds (bit i = op i, see op_names).
 *   Exit 0: no violation; 1: a violation (seed and op trace printed);
 *   3: watchdog (a hang: seed, op index and trace printed).
 *
 * Everything handed to btm is a tracked object whose memory is kept until
 * the end of the seed: btm's free functions only count (and check) frees,
 * so a double free or a late use is reported by the fuzzer itself.
 *
 * Written by a review in session 30 (docs/RELIABILITY.md): tests/c/run.sh
 * runs seeds 1-20 under ASan+UBSan; tests/fuzz/campaign.sh runs long
 * campaigns (asan, valgrind or plain); tests/fuzz/mutant_shim.c is an
 * LD_PRELOAD shim that drops, duplicates or swaps events, to check that
 * the fuzzer's checks catch such a library.
 */
#define _GNU_SOURCE
#include "btm.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stddef.h>
#include <sched.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Basics                                                              */
/* ------------------------------------------------------------------ */

static uint64_t g_seed;
static int g_trace;
static atomic_long g_violations;
static atomic_uint_fast64_t g_seq = 1;
static atomic_long g_heartbeat;
static atomic_long g_opidx;
static unsigned g_wd_seconds = 60;
static uint64_t g_mask;
/* Calls into a manager from the free functions btm_destroy runs for its
 * task-hook, notify or thread-hook userdata (they crashed until c5142a3:
 * this fuzzer's first finding). On; --no-destroy-reentry turns them off
 * (--destroy-reentry-all, the old switch, is still accepted). */
static int g_destroy_reentry_all = 1;
static pthread_mutex_t g_print_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int tl_is_host;
static _Thread_local int tl_reent_depth;

static uint64_t tick(void) { return atomic_fetch_add(&g_seq, 1); }

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_us(unsigned us) {
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* op trace: a ring of the last host operations */
#define TRACE_RING 512
static char g_ring[TRACE_RING][200];
static long g_ring_n;

static void trace(const char *fmt, ...) {
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_print_mu);
    snprintf(g_ring[g_ring_n % TRACE_RING], sizeof g_ring[0], "#%ld %s", (long)atomic_load(&g_opidx), buf);
    g_ring_n++;
    if (g_trace) fprintf(stderr, "  op#%ld %s\n", (long)atomic_load(&g_opidx), buf);
    pthread_mutex_unlock(&g_print_mu);
}

static void dump_trace(int last) {
    pthread_mutex_lock(&g_print_mu);
    long from = g_ring_n - last;
    if (from < 0) from = 0;
    if (from < g_ring_n - TRACE_RING) from = g_ring_n - TRACE_RING;
    fprintf(stdout, "---- last %ld host ops (seed %" PRIu64 ") ----\n", g_ring_n - from, g_seed);
    for (long i = from; i < g_ring_n; i++) fprintf(stdout, "  %s\n", g_ring[i % TRACE_RING]);
    fflush(stdout);
    pthread_mutex_unlock(&g_print_mu);
}

#define MAX_REPORTED 40
static void violation(const char *fmt, ...) {
    long n = atomic_fetch_add(&g_violations, 1);
    if (n >= MAX_REPORTED) return;
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_print_mu);
    fprintf(stdout, "VIOLATION seed=%" PRIu64 " op=%ld: %s\n", g_seed, (long)atomic_load(&g_opidx), buf);
    fflush(stdout);
    pthread_mutex_unlock(&g_print_mu);
}

/* splitmix64 */
static uint64_t rnd_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t g_rng;
static uint32_t R(uint32_t n) { return n ? (uint32_t)(rnd_next(&g_rng) % n) : 0; }
static bool P(unsigned pct) { return R(100) < pct; }
static uint32_t Rs(uint64_t *s, uint32_t n) { return n ? (uint32_t)(rnd_next(s) % n) : 0; }
static bool Ps(uint64_t *s, unsigned pct) { return Rs(s, 100) < pct; }

static const char *st(btm_status s) { return btm_status_str(s); }

/* coverage counters (printed at the end) */
enum { C_NESTED_POLL, C_FREE_REENTRY, C_TASK_REENTRY, C_GF, C_CASCADE, C_PROGRESS, C_STOP_OK, C_CLEAN, C_NOSTOP_CLEAN,
       C_HOOK, C_NOTIFY, C_WAKE_CHECK, C_ORDER_CHECK, C_SEEN_CHECK, C_TASK_SHUT, C_HOST_SHUT, C_DESTROY, C_RAN, C_BATCH_OK,
       C_PT, C_EVENTS, NCNT };
static const char *cnt_name[] = {"nested polls", "free-fn re-entries", "in-task calls", "group finished", "cascaded failures",
                                 "progress events", "stops OK", "clean drains", "clean drains without stops", "hook calls",
                                 "notify calls", "wake-up checks", "upstream-order checks", "result-seen checks",
                                 "in-task shut downs", "host shut downs", "destroys", "task runs", "batches OK",
                                 "pass-throughs completed", "events"};
static atomic_long g_cnt[NCNT];
#define CNT(k) atomic_fetch_add(&g_cnt[k], 1)

/* expected-status helper: a set of allowed statuses as a bit mask */
#define B(x) (1u << (x))
static void expect(btm_status got, uint32_t allowed, const char *what) {
    if (got > 31 || !(allowed & B(got))) {
        char list[200] = "";
        for (int i = 0; i < 32; i++)
            if (allowed & B(i)) {
                strncat(list, st((uint32_t)i), sizeof list - strlen(list) - 3);
                strncat(list, "|", sizeof list - strlen(list) - 1);
            }
        violation("%s returned %u (%s), expected one of %s", what, (unsigned)got, st(got), list);
    }
}

/* A shut down from inside a task may be in flight at any time: a status
 * SHUT_DOWN (or ALREADY_SHUT_DOWN) is accepted when the manager's maybe_shut
 * flag is set after the call returned. */
#define SD_AFTER(m, s, allowed) \
    (((s) == 7 || (s) == 8) && atomic_load(&(m)->maybe_shut) ? ((allowed) | B(s)) : (allowed))

/* ------------------------------------------------------------------ */
/* Tracked objects                                                     */
/* ------------------------------------------------------------------ */

#define MAGIC 0x7A5C0DE5u
enum { K_SPEC = 1, K_RESULT, K_PAYLOAD, K_NOTIFY, K_HOOK, K_THOOK, K_UNOWNED };
static const char *kind_name[] = {"?", "userdata", "result", "payload", "notify-ud", "hook-ud", "thread-hook-ud", "unowned"};

typedef struct tobj {
    uint32_t magic;
    uint32_t serial;
} tobj;

struct mgr;
typedef struct trk {
    tobj *p;
    atomic_int frees;
    uint8_t kind;
    struct mgr *m;
    atomic_uint_fast64_t owner; /* task id (results, payloads, userdata) */
    atomic_uint_fast64_t dgen;  /* poll generation that last delivered it (+1) */
    atomic_int accepted;        /* 1 once a call that takes ownership returned */
} trk;

#define MAX_TRK (1u << 19)
static trk *g_trk;
static atomic_uint g_ntrk = 1;

static void *tnew(size_t size, int kind, struct mgr *m) {
    uint32_t serial = atomic_fetch_add(&g_ntrk, 1);
    if (serial >= MAX_TRK) {
        fprintf(stdout, "tracked object table full\n");
        abort();
    }
    tobj *o = calloc(1, size < sizeof(tobj) ? sizeof(tobj) : size);
    if (!o) abort();
    o->magic = MAGIC;
    o->serial = serial;
    trk *t = &g_trk[serial];
    t->p = o;
    t->kind = (uint8_t)kind;
    t->m = m;
    return o;
}

static trk *tlook(const void *p) {
    if (!p) return NULL;
    const tobj *o = p;
    if (o->magic != MAGIC) return NULL;
    if (o->serial == 0 || o->serial >= atomic_load(&g_ntrk)) return NULL;
    trk *t = &g_trk[o->serial];
    return t->p == o ? t : NULL;
}

/* ------------------------------------------------------------------ */
/* Managers and task records                                           */
/* ------------------------------------------------------------------ */

#define MAX_ID 40000
#define MAX_NAMED 8
#define MAX_NUMS 8

typedef struct task_rec {
    uint8_t added, is_pt, from_task, run_count, called_fail, fail_null_msg, fail_null_det;
    uint8_t saw_stopped, hook_start, hook_end, finals, final_kind, progress_n, has_payload;
    uint32_t gkind;
    uint64_t gval;
    uint16_t nup;
    uint64_t *up; /* resolved upstream ids, as given */
    uint64_t add_start, add_ret;
    uint32_t ud_serial, payload_serial, result_serial;
    uint64_t start_seq, end_seq;
    char fail_msg[24], fail_det[24];
    uint16_t nseen;
    uint64_t *seen_tid; /* upstream values the task saw */
    uint32_t *seen_ser;
    long final_ev; /* index in the event log */
    uint64_t final_poll_start, final_poll_end;
    uint64_t hook_start_g, hook_end_g;
} task_rec;

typedef struct evrec {
    uint32_t kind;
    uint64_t tid;
    uint32_t gkind;
    uint64_t gval;
    int8_t has_gname;
    char gname[16];
    uint16_t nres;
    uint64_t *res_tid;
    uint32_t *res_ser;
    int8_t results_null, has_msg, has_det;
    char msg[24], det[24];
    double progress;
    uint64_t poll_start, poll_end;
} evrec;

typedef struct stoprec {
    int kind; /* 0 task, 1 group, 2 all */
    uint64_t id;
    uint32_t gkind;
    uint64_t gval;
    uint64_t start, end;
} stoprec;

typedef struct named {
    char name[16];
    uint64_t value;
} named;

typedef struct mgr {
    int slot, inc; /* slot and incarnation number */
    btm_manager *h;
    int alive;            /* host handle valid */
    int in_destroy;       /* btm_destroy running (host) */
    pthread_rwlock_t guard; /* worker-side calls through the host handle */
    atomic_int dead;
    atomic_int shut;       /* shut down (certain) */
    atomic_int maybe_shut; /* a shut down may be in flight (host or task) */
    atomic_int task_shut;  /* a task called btm_shut_down */
    int host_shut;
    int shut_ok; /* the host's shut down returned OK: no worker left */
    int max_threads;
    int no_stops;
    int sp_init;
    atomic_int stopped_any;
    atomic_int reports_missing;
    atomic_ulong report_sum;
    pthread_mutex_t mu; /* tasks, named, nums, stops */
    task_rec *tasks;
    atomic_uint_fast64_t max_id;
    named nm[MAX_NAMED];
    int nnamed;
    uint64_t nums[MAX_NUMS];
    int nnums;
    stoprec *stops;
    size_t nstops, capstops;
    /* host only */
    evrec *ev;
    size_t nev, capev;
    evrec *stash;
    size_t nstash, capstash;
    atomic_uint_fast64_t poll_gen;
    int poll_depth;
    atomic_long notify_count;
    int notify_registered; /* our counting notify is registered */
    atomic_int thread_starts, thread_stops, thread_hooks;
    int hooks_set;
    int clean_end;
    uint64_t destroyed_at;
    struct mgr *next_all;
} mgr;

#define NSLOT 4
static mgr *g_slot[NSLOT];
static int g_nslots;
static mgr *g_all; /* every incarnation of this seed */
static int g_inc;

static task_rec *rec_of(mgr *m, uint64_t id) {
    if (id == 0 || id >= MAX_ID) return NULL;
    return &m->tasks[id];
}

static void note_id(mgr *m, uint64_t id) {
    uint64_t cur = atomic_load(&m->max_id);
    while (id > cur && !atomic_compare_exchange_weak(&m->max_id, &cur, id)) {
    }
}

/* ------------------------------------------------------------------ */
/* Free functions, callbacks                                           */
/* ------------------------------------------------------------------ */

typedef struct spec {
    tobj hdr;
    mgr *m;
    uint64_t rng;
    int depth;
    atomic_int running;
    int spin_us;
} spec;

typedef struct hookud {
    tobj hdr;
    mgr *m;
    atomic_int active;
    int id;
} hookud;

typedef struct notifyud {
    tobj hdr;
    mgr *m;
    atomic_int active;
    int counting;
} notifyud;

static void reentrant_from_free(trk *t);

static void tfree(void *p) {
    if (p == NULL) {
        violation("free function called with NULL");
        return;
    }
    trk *t = tlook(p);
    if (!t) {
        violation("free function called on a pointer btm was never given (%p)", p);
        return;
    }
    int old = atomic_fetch_add(&t->frees, 1);
    if (old != 0) {
        violation("double free of %s serial %u (owner task %" PRIu64 ", free #%d)", kind_name[t->kind],
                  t->p->serial, (uint64_t)atomic_load(&t->owner), old + 1);
        return;
    }
    mgr *m = t->m;
    switch (t->kind) {
    case K_SPEC: {
        spec *s = (spec *)p;
        if (atomic_load(&s->running))
            violation("userdata of task %" PRIu64 " freed while its task function runs",
                      (uint64_t)atomic_load(&t->owner));
        break;
    }
    case K_RESULT:
    case K_PAYLOAD: {
        uint64_t dg = atomic_load(&t->dgen);
        if (dg && m && m->alive && !m->in_destroy && atomic_load(&m->poll_gen) + 1 == dg)
            violation("%s of task %" PRIu64 " freed before the next poll (its event pointer must stay valid)",
                      kind_name[t->kind], (uint64_t)atomic_load(&t->owner));
        break;
    }
    case K_HOOK:
        if (atomic_load(&((hookud *)p)->active))
            violation("task-hook userdata freed while a task that started with it still runs");
        break;
    case K_NOTIFY:
        if (atomic_load(&((notifyud *)p)->active)) violation("notify userdata freed during a notify call");
        break;
    case K_THOOK:
        if (m && atomic_load(&m->thread_starts) != atomic_load(&m->thread_stops))
            violation("thread-hook userdata freed while workers are alive (%d started, %d stopped)",
                      atomic_load(&m->thread_starts), atomic_load(&m->thread_stops));
        break;
    case K_UNOWNED:
        violation("btm freed a userdata it was given without a free function");
        break;
    }
    if (tl_reent_depth < 2) {
        tl_reent_depth++;
        reentrant_from_free(t);
        tl_reent_depth--;
    }
}

static void notify_fn(void *ud) {
    notifyud *n = ud;
    trk *t = tlook(ud);
    if (!t || atomic_load(&t->frees)) {
        violation("notify called with a dead or unknown userdata");
        return;
    }
    atomic_fetch_add(&n->active, 1);
    CNT(C_NOTIFY);
    if (n->counting) atomic_fetch_add(&n->m->notify_count, 1);
    atomic_fetch_sub(&n->active, 1);
}

static void thread_start_fn(void *ud, uint32_t idx);
static void thread_stop_fn(void *ud, uint32_t idx);
static _Thread_local mgr *tl_thread_mgr;
static _Thread_local int tl_thread_started;
static _Thread_local uint64_t tl_hook_task;

static void thread_start_fn(void *ud, uint32_t idx) {
    hookud *h = ud;
    if (idx >= BTM_MAX_THREADS_LIMIT) violation("thread_start with worker index %u", idx);
    if (tl_thread_started) violation("thread_start twice on one thread");
    tl_thread_started = 1;
    tl_thread_mgr = h->m;
    atomic_fetch_add(&h->m->thread_starts, 1);
}
static void thread_stop_fn(void *ud, uint32_t idx) {
    hookud *h = ud;
    (void)idx;
    if (!tl_thread_started || tl_thread_mgr != h->m) violation("thread_stop on a thread without thread_start");
    tl_thread_started = 0;
    atomic_fetch_add(&h->m->thread_stops, 1);
}

/* Worker-side calls through the host handle: only while the host has not
 * begun to destroy it. */
static bool guard_enter(mgr *m) {
    if (pthread_rwlock_tryrdlock(&m->guard) != 0) return false;
    if (atomic_load(&m->dead)) {
        pthread_rwlock_unlock(&m->guard);
        return false;
    }
    return true;
}
static void guard_exit(mgr *m) { pthread_rwlock_unlock(&m->guard); }

static void hook_start(void *ud, uint64_t tid, uint32_t gk, uint64_t gv, uint32_t widx) {
    hookud *h = ud;
    (void)widx;
    trk *t = tlook(ud);
    if (!t || atomic_load(&t->frees)) violation("on_start hook with dead userdata");
    atomic_fetch_add(&h->active, 1);
    CNT(C_HOOK);
    if (tl_hook_task) violation("on_start for task %" PRIu64 " while task %" PRIu64 " is in its hooks", tid, tl_hook_task);
    tl_hook_task = tid;
    mgr *m = h->m;
    pthread_mutex_lock(&m->mu);
    task_rec *r = rec_of(m, tid);
    if (r) {
        r->hook_start++;
        r->hook_start_g = ((uint64_t)gk << 60) ^ gv;
    } else
        violation("on_start hook with task id %" PRIu64, tid);
    pthread_mutex_unlock(&m->mu);
    if ((tid & 7) == 3 && guard_enter(m)) {
        btm_stats s;
        expect(btm_get_stats(m->h, &s), B(0), "get_stats from on_start hook");
        guard_exit(m);
    }
}
static void hook_end(void *ud, uint64_t tid, uint32_t gk, uint64_t gv, uint32_t widx) {
    hookud *h = ud;
    (void)widx;
    mgr *m = h->m;
    if (tl_hook_task != tid) violation("on_end for task %" PRIu64 " but on_start was for %" PRIu64, tid, tl_hook_task);
    tl_hook_task = 0;
    pthread_mutex_lock(&m->mu);
    task_rec *r = rec_of(m, tid);
    if (r) {
        r->hook_end++;
        r->hook_end_g = ((uint64_t)gk << 60) ^ gv;
        if (r->run_count == 0 || r->end_seq == 0) violation("on_end for task %" PRIu64 " before its function ended", tid);
    }
    pthread_mutex_unlock(&m->mu);
    atomic_fetch_sub(&h->active, 1);
}

/* ------------------------------------------------------------------ */
/* Groups                                                              */
/* ------------------------------------------------------------------ */

static const char *g_names[] = {"", "alpha", "thumbs", "\xce\xb2" "eta", "g4", "g5"};
static const char *g_bad_utf8[] = {"\xff", "abc\xfe", "\xc0\x80", "\xed\xa0\x80", "\xe2\x82", "\x80", "\xf4\x90\x80\x80"};

static bool is_named_value(mgr *m, uint64_t v, int *idx) {
    for (int i = 0; i < m->nnamed; i++)
        if (m->nm[i].value == v) {
            if (idx) *idx = i;
            return true;
        }
    return false;
}

/* Picks a group for an add. *bad: 0 good, 1 kind out of range, 2 named not
 * interned. Caller holds m->mu. */
static const btm_group *pick_group(mgr *m, uint64_t *rs, btm_group *g, int *bad, int allow_bad) {
    *bad = 0;
    memset(g, 0, sizeof *g);
    uint32_t r = Rs(rs, 100);
    if (r < 25) return NULL;
    if (r < 30) {
        g->kind = BTM_GROUP_KIND_DEFAULT;
        g->value = Rs(rs, 2) ? 0 : 77;
        return g;
    }
    if (r < 60) {
        g->kind = BTM_GROUP_KIND_NUMBERED;
        uint32_t k = Rs(rs, 6);
        g->value = k < 4 ? k : (k == 4 ? UINT64_MAX : (m->nnums ? m->nums[Rs(rs, (uint32_t)m->nnums)] : 5));
        return g;
    }
    if (r < 94 || !allow_bad) {
        if (m->nnamed == 0) {
            g->kind = BTM_GROUP_KIND_NUMBERED;
            g->value = 9;
            return g;
        }
        g->kind = BTM_GROUP_KIND_NAMED;
        g->value = m->nm[Rs(rs, (uint32_t)m->nnamed)].value;
        return g;
    }
    if (r < 97) {
        g->kind = Rs(rs, 2) ? 3 : UINT32_MAX;
        *bad = 1;
        return g;
    }
    g->kind = BTM_GROUP_KIND_NAMED;
    g->value = 0xDEAD0000BEEFull + Rs(rs, 1000);
    if (is_named_value(m, g->value, NULL))
        *bad = 0;
    else
        *bad = 2;
    return g;
}

/* ------------------------------------------------------------------ */
/* Adding tasks                                                        */
/* ------------------------------------------------------------------ */

static void task_fn(void *ud, btm_task_context *ctx);

static spec *spec_new(mgr *m, uint64_t seed, int depth) {
    spec *s = tnew(sizeof(spec), K_SPEC, m);
    s->m = m;
    s->rng = seed;
    s->depth = depth;
    s->spin_us = (int)(seed % 5 == 0 ? (seed >> 8) % 300 : (seed >> 8) % 20);
    return s;
}

static void rec_add(mgr *m, uint64_t id, bool pt, const btm_group *g, const uint64_t *up, size_t nup,
                    uint64_t s0, uint64_t s1, uint32_t ud_serial, uint32_t payload_serial, bool from_task) {
    pthread_mutex_lock(&m->mu);
    task_rec *r = rec_of(m, id);
    if (!r) {
        pthread_mutex_unlock(&m->mu);
        violation("issued id %" PRIu64 " out of the fuzzer's range", id);
        return;
    }
    if (r->added) violation("id %" PRIu64 " issued twice", id);
    r->added = 1;
    r->is_pt = pt;
    r->from_task = from_task;
    r->gkind = g ? g->kind : 0;
    r->gval = g && g->kind != 0 ? g->value : 0;
    r->nup = (uint16_t)nup;
    if (nup) {
        r->up = malloc(nup * sizeof(uint64_t));
        memcpy(r->up, up, nup * sizeof(uint64_t));
    }
    r->add_start = s0;
    r->add_ret = s1;
    r->ud_serial = ud_serial;
    r->payload_serial = payload_serial;
    r->has_payload = payload_serial != 0;
    pthread_mutex_unlock(&m->mu);
    note_id(m, id);
    if (ud_serial) atomic_store(&g_trk[ud_serial].owner, id);
    if (payload_serial) atomic_store(&g_trk[payload_serial].owner, id);
}

/* Upstream pick. *unknown set if a never-issued id is included. */
static size_t pick_upstream(mgr *m, uint64_t *rs, uint64_t *up, size_t max, int *unknown, int allow_bad,
                            uint64_t self) {
    size_t n = Rs(rs, 100) < 45 ? 0 : 1 + Rs(rs, (uint32_t)max);
    uint64_t hi = atomic_load(&m->max_id);
    for (size_t i = 0; i < n; i++) {
        uint32_t r = Rs(rs, 100);
        if (hi == 0 || (allow_bad && r < 3)) {
            if (!allow_bad) return i;
            uint32_t k = Rs(rs, 4);
            up[i] = k == 0 ? 0 : k == 1 ? UINT64_MAX : k == 2 ? hi + 100000 : (BTM_IN_BATCH | 0);
            *unknown = 1;
        } else if (r < 60) {
            uint64_t back = Rs(rs, 6);
            up[i] = hi > back ? hi - back : hi;
        } else if (r < 70 && self) {
            up[i] = self;
        } else {
            up[i] = 1 + Rs(rs, (uint32_t)hi);
        }
    }
    return n;
}

/* Eleven distinct priorities: more than the lane's eight levels, so that
 * some take the locked path and empty levels are given to new ones. */
static const int32_t g_prios[] = {0, 0, 0, 1, 2, 3, 4, -1, -5, 7, 9, INT32_MIN, INT32_MAX};
#define N_PRIOS ((uint32_t)(sizeof g_prios / sizeof *g_prios))

/* One add_task / add_pass_through from any thread. Returns the id or 0. */
static uint64_t do_add_one(mgr *m, btm_manager *h, uint64_t *rs, int depth, bool from_task, uint64_t self) {
    bool pt = Ps(rs, 20);
    btm_group gbuf;
    int gbad = 0, unknown = 0;
    uint64_t up[6];
    pthread_mutex_lock(&m->mu);
    const btm_group *g = pick_group(m, rs, &gbuf, &gbad, 1);
    pthread_mutex_unlock(&m->mu);
    size_t nup = pick_upstream(m, rs, up, 4, &unknown, 1, self);
    int32_t prio = g_prios[Rs(rs, N_PRIOS)];
    bool null_up = nup > 0 && Ps(rs, 2);
    bool null_out = Ps(rs, 1);
    bool null_fn = !pt && Ps(rs, 1);
    if (atomic_load(&m->max_id) > MAX_ID - 200) return 0;
    uint32_t errs = 0;
    if (null_out || null_fn) errs |= B(BTM_STATUS_NULL_ARGUMENT);
    if (null_up) errs |= B(BTM_STATUS_INVALID_ARGUMENT);
    if (gbad) errs |= B(BTM_STATUS_INVALID_GROUP);
    if (unknown && !null_up) errs |= B(BTM_STATUS_UNKNOWN_UPSTREAM);
    bool shut = atomic_load(&m->shut), maybe = atomic_load(&m->maybe_shut);
    uint32_t allowed;
    if (errs)
        allowed = errs | (shut || maybe ? B(BTM_STATUS_SHUT_DOWN) : 0);
    else
        allowed = shut ? B(BTM_STATUS_SHUT_DOWN) : maybe ? B(BTM_STATUS_SHUT_DOWN) | B(0) : B(0);
    uint64_t id = 0xABABABABull;
    void *obj = NULL;
    uint32_t ser = 0;
    btm_status s;
    uint64_t s0 = tick();
    if (pt) {
        if (Ps(rs, 70)) {
            obj = tnew(sizeof(tobj), K_PAYLOAD, m);
            ser = ((tobj *)obj)->serial;
        }
        s = btm_add_pass_through_task(h, prio, g, null_up ? NULL : up, nup, obj, obj ? tfree : NULL,
                                      null_out ? NULL : &id);
    } else {
        obj = spec_new(m, rnd_next(rs), depth);
        ser = ((tobj *)obj)->serial;
        s = btm_add_task(h, null_fn ? NULL : task_fn, obj, tfree, prio, g, null_up ? NULL : up, nup,
                         null_out ? NULL : &id);
    }
    uint64_t s1 = tick();
    char what[200];
    snprintf(what, sizeof what, "%s%s(m%d, prio %d, group %u/%" PRIu64 "%s, nup %zu%s%s%s%s)",
             from_task ? "in-task " : "", pt ? "add_pass_through_task" : "add_task", m->inc, prio,
             g ? g->kind : 0, g ? g->value : 0, gbad ? " BAD" : "", nup, unknown ? " unknown-up" : "",
             null_up ? " up=NULL" : "", null_out ? " out=NULL" : "", null_fn ? " fn=NULL" : "");
    if (tl_is_host) trace("%s -> %s id %" PRIu64, what, st(s), s == 0 ? id : 0);
    allowed = SD_AFTER(m, s, allowed);
    expect(s, allowed, what);
    if (s == BTM_STATUS_OK) {
        if (id == 0 || id == 0xABABABABull || (id & BTM_IN_BATCH)) violation("%s: bad id %" PRIu64, what, id);
        uint64_t resolved[6];
        for (size_t i = 0; i < nup; i++) resolved[i] = up[i];
        rec_add(m, id, pt, g, resolved, nup, s0, s1, pt ? 0 : ser, pt ? ser : 0, from_task);
        return id;
    }
    if (id != 0xABABABABull) violation("%s failed (%s) but wrote the id", what, st(s));
    if (obj && atomic_load(&g_trk[ser].frees) != 1)
        violation("%s failed (%s): its userdata/payload freed %d times before return", what, st(s),
                  atomic_load(&g_trk[ser].frees));
    return 0;
}

/* btm_add_tasks with a random array. */
static _Thread_local uint64_t tl_prev_ids[48];
static _Thread_local size_t tl_prev_n;

static void do_add_batch(mgr *m, btm_manager *h, uint64_t *rs, int depth, bool from_task) {
    size_t count = Ps(rs, 10) ? 0 : 1 + Rs(rs, Ps(rs, 10) ? 40 : 8);
    if (atomic_load(&m->max_id) > MAX_ID - 200) return;
    btm_task_desc d[41];
    uint64_t ups[41][5];
    uint32_t sers[41];
    int ispt[41];
    memset(d, 0, sizeof d);
    /* error model, in the documented order */
    int e_fn[41] = {0}, e_flags[41] = {0}, e_kind[41] = {0}, e_upnull[41] = {0}, e_named[41] = {0},
        e_unknown[41] = {0}, e_ambig[41] = {0};
    bool use_prev = tl_prev_n > 0 && Ps(rs, 25);
    uint64_t hi = atomic_load(&m->max_id);
    for (size_t j = 0; j < count; j++) {
        ispt[j] = Ps(rs, 20);
        sers[j] = 0;
        if (ispt[j]) {
            d[j].flags = BTM_TASK_PASS_THROUGH;
            if (Ps(rs, 60)) {
                d[j].userdata = tnew(sizeof(tobj), K_PAYLOAD, m);
                d[j].userdata_free = tfree;
                sers[j] = ((tobj *)d[j].userdata)->serial;
            }
        } else {
            d[j].task_fn = task_fn;
            spec *s = spec_new(m, rnd_next(rs), depth);
            d[j].userdata = s;
            d[j].userdata_free = tfree;
            sers[j] = s->hdr.serial;
        }
        d[j].priority = g_prios[Rs(rs, N_PRIOS)];
        int gbad = 0;
        pthread_mutex_lock(&m->mu);
        const btm_group *g = pick_group(m, rs, &d[j].group, &gbad, 1);
        pthread_mutex_unlock(&m->mu);
        if (!g) memset(&d[j].group, 0, sizeof d[j].group);
        if (gbad == 1) e_kind[j] = 1;
        if (gbad == 2) e_named[j] = 1;
        size_t nup = Ps(rs, 40) ? 0 : 1 + Rs(rs, 4);
        for (size_t i = 0; i < nup; i++) {
            uint32_t r = Rs(rs, 100);
            if (r < 45 && j > 0)
                ups[j][i] = BTM_IN_BATCH | Rs(rs, (uint32_t)j);
            else if (r < 90 && hi > 0)
                ups[j][i] = hi > 4 && Ps(rs, 60) ? hi - Rs(rs, 4) : 1 + Rs(rs, (uint32_t)hi);
            else if (r < 93 || hi == 0) {
                ups[j][i] = BTM_IN_BATCH | (j + Rs(rs, 3)); /* self or later: unknown */
                e_unknown[j] = 1;
            } else if (r < 96) {
                ups[j][i] = Rs(rs, 2) ? 0 : hi + 50000;
                e_unknown[j] = 1;
            } else
                ups[j][i] = hi ? hi : 1, e_unknown[j] |= hi == 0;
        }
        d[j].upstream = nup ? ups[j] : (Ps(rs, 50) ? ups[j] : NULL);
        d[j].upstream_len = nup;
        if (use_prev && Ps(rs, 40)) {
            size_t k = Rs(rs, (uint32_t)tl_prev_n);
            size_t len = 1 + Rs(rs, (uint32_t)((tl_prev_n - k) < 5 ? (tl_prev_n - k) : 5));
            d[j].upstream = &tl_prev_ids[k];
            d[j].upstream_len = len;
            e_unknown[j] = 0;
            /* prev ids of another manager would be unknown or random: only
             * valid when they were issued by this manager */
            for (size_t i = 0; i < len; i++) {
                if (tl_prev_ids[k + i] == 0) e_unknown[j] = 1;
                /* above hi: tasks adding concurrently may issue it before the call */
                else if (tl_prev_ids[k + i] > hi) e_ambig[j] = 1;
            }
        }
        /* rare injected descriptor errors */
        uint32_t e = Rs(rs, 400);
        if (e == 0 && !ispt[j]) {
            d[j].task_fn = NULL;
            e_fn[j] = 1;
        } else if (e == 1) {
            d[j].flags |= 2;
            e_flags[j] = 1;
        } else if (e == 2 && ispt[j]) {
            d[j].task_fn = task_fn;
            e_flags[j] = 1;
        } else if (e == 3 && d[j].upstream_len == 0) {
            d[j].upstream = NULL;
            d[j].upstream_len = 2;
            e_upnull[j] = 1;
        }
    }
    bool null_ids = count && Ps(rs, 2);
    bool null_tasks = count && Ps(rs, 1);
    /* expected */
    uint32_t allowed = 0;
    bool shut = atomic_load(&m->shut), maybe = atomic_load(&m->maybe_shut);
    if (count == 0)
        allowed = B(0);
    else if (null_ids)
        allowed = B(BTM_STATUS_NULL_ARGUMENT);
    else if (null_tasks)
        allowed = B(BTM_STATUS_INVALID_ARGUMENT);
    else {
        for (size_t j = 0; j < count && !allowed; j++) {
            if (e_fn[j] || e_flags[j]) {
                if (e_fn[j]) allowed |= B(BTM_STATUS_NULL_ARGUMENT);
                if (e_flags[j]) allowed |= B(BTM_STATUS_INVALID_ARGUMENT);
            } else if (e_kind[j])
                allowed = B(BTM_STATUS_INVALID_GROUP);
            else if (e_upnull[j])
                allowed = B(BTM_STATUS_INVALID_ARGUMENT);
        }
        if (!allowed && shut) allowed = B(BTM_STATUS_SHUT_DOWN);
        uint32_t later = 0, later2 = 0;
        for (size_t j = 0; j < count && !later; j++) {
            if (e_named[j])
                later = B(BTM_STATUS_INVALID_GROUP);
            else if (e_unknown[j] || e_ambig[j])
                later = B(BTM_STATUS_UNKNOWN_UPSTREAM);
        }
        for (size_t j = 0; j < count && !later2; j++) {
            if (e_named[j])
                later2 = B(BTM_STATUS_INVALID_GROUP);
            else if (e_unknown[j])
                later2 = B(BTM_STATUS_UNKNOWN_UPSTREAM);
        }
        later |= later2 ? later2 : (later ? B(0) : 0);
        if (!allowed && maybe) allowed = B(BTM_STATUS_SHUT_DOWN) | (later ? later : B(0));
        if (!allowed) allowed = later ? later : B(0);
    }
    uint64_t snap_up[41][5] = {{0}};
    for (size_t j = 0; j < count; j++)
        for (size_t i = 0; i < d[j].upstream_len && i < 5 && d[j].upstream; i++) snap_up[j][i] = d[j].upstream[i];
    uint64_t ids_local[41] = {0};
    uint64_t *ids = use_prev ? tl_prev_ids : ids_local;
    uint64_t before[41];
    memcpy(before, ids, sizeof(uint64_t) * (count < 41 ? count : 41));
    uint64_t s0 = tick();
    btm_status s = btm_add_tasks(h, null_tasks ? NULL : d, count, null_ids ? NULL : ids);
    uint64_t s1 = tick();
    char what[160];
    snprintf(what, sizeof what, "%sadd_tasks(m%d, count %zu%s%s%s)", from_task ? "in-task " : "", m->inc, count,
             null_ids ? " ids=NULL" : "", null_tasks ? " tasks=NULL" : "", use_prev ? " up->ids_out" : "");
    if (tl_is_host) trace("%s -> %s first id %" PRIu64, what, st(s), s == 0 && count ? ids[0] : 0);
    if (allowed == B(0) || (allowed & (B(BTM_STATUS_INVALID_GROUP) | B(BTM_STATUS_UNKNOWN_UPSTREAM)))) allowed = SD_AFTER(m, s, allowed);
    expect(s, allowed, what);
    if (s == BTM_STATUS_OK) {
        CNT(C_BATCH_OK);
        for (size_t j = 0; j < count; j++) {
            if (ids[j] != ids[0] + j) violation("%s: ids not consecutive (%" PRIu64 " at %zu after %" PRIu64 ")", what, ids[j], j, ids[0]);
            uint64_t res[5];
            size_t n = d[j].upstream_len > 5 ? 5 : d[j].upstream_len;
            for (size_t i = 0; i < n; i++) {
                uint64_t u = snap_up[j][i];
                res[i] = (u & BTM_IN_BATCH) ? ids[0] + (u & ~BTM_IN_BATCH) : u;
            }
            rec_add(m, ids[j], ispt[j], &d[j].group, res, n, s0, s1, ispt[j] ? 0 : sers[j], ispt[j] ? sers[j] : 0,
                    from_task);
        }
        if (count) {
            tl_prev_n = count;
            if (!use_prev) memcpy(tl_prev_ids, ids, count * sizeof(uint64_t));
        }
    } else {
        if (memcmp(before, ids, sizeof(uint64_t) * (count < 41 ? count : 41)) != 0)
            violation("%s failed (%s) but wrote ids", what, st(s));
        for (size_t j = 0; j < count; j++) {
            if (!sers[j]) continue;
            int want = null_tasks ? 0 : 1;
            if (atomic_load(&g_trk[sers[j]].frees) != want)
                violation("%s failed (%s): userdata of entry %zu freed %d times (want %d)", what, st(s), j,
                          atomic_load(&g_trk[sers[j]].frees), want);
            if (null_tasks) atomic_store(&g_trk[sers[j]].frees, 1); /* ours to drop */
        }
    }
}

/* ------------------------------------------------------------------ */
/* Stops (any thread)                                                  */
/* ------------------------------------------------------------------ */

static void add_stoprec(mgr *m, int kind, uint64_t id, const btm_group *g, uint64_t s0, uint64_t s1) {
    pthread_mutex_lock(&m->mu);
    if (m->nstops == m->capstops) {
        m->capstops = m->capstops ? m->capstops * 2 : 64;
        m->stops = realloc(m->stops, m->capstops * sizeof(stoprec));
    }
    stoprec *r = &m->stops[m->nstops++];
    r->kind = kind;
    r->id = id;
    r->gkind = g ? g->kind : 0;
    r->gval = g && g->kind ? g->value : 0;
    r->start = s0;
    r->end = s1;
    pthread_mutex_unlock(&m->mu);
}

static void note_report(mgr *m, btm_stop_report *rep, bool have) {
    CNT(C_STOP_OK);
    if (!have) {
        atomic_store(&m->reports_missing, 1);
        return;
    }
    atomic_fetch_add(&m->report_sum, rep->before_start + rep->while_running + rep->after_finish);
}

static void do_stop(mgr *m, btm_manager *h, uint64_t *rs, bool from_task, uint64_t self) {
    uint32_t which = Rs(rs, 100);
    btm_stop_report rep;
    memset(&rep, 0xEE, sizeof rep);
    bool want_rep = !Ps(rs, 10);
    bool up = Ps(rs, 50), down = Ps(rs, 50);
    atomic_store(&m->stopped_any, 1);
    char what[160];
    if (which < 70) {
        uint64_t hi = atomic_load(&m->max_id);
        uint64_t id = hi == 0 || Ps(rs, 5) ? (Ps(rs, 50) ? 0 : hi + 1000)
                      : (self && Ps(rs, 15)) ? self
                      : Ps(rs, 60) && hi > 6 ? hi - Rs(rs, 6)
                                              : 1 + Rs(rs, (uint32_t)hi);
        /* Shut down before the call: nothing is live. (Read before it: a
         * shut-down that another thread finishes after the stop returned
         * OK may set `shut` before the check.) */
        bool was_shut = atomic_load(&m->shut);
        uint64_t s0 = tick();
        btm_status s = btm_stop_task(h, id, up, down, want_rep ? &rep : NULL);
        uint64_t s1 = tick();
        snprintf(what, sizeof what, "%sstop_task(m%d, %" PRIu64 ", up %d, down %d)", from_task ? "in-task " : "", m->inc,
                 id, up, down);
        if (tl_is_host) trace("%s -> %s", what, st(s));
        expect(s, was_shut ? B(1) : B(0) | B(1), what);
        if (s == BTM_STATUS_OK) {
            note_report(m, &rep, want_rep);
            if (want_rep && rep.before_start + rep.while_running + rep.after_finish == 0)
                violation("%s OK but its report counts no task", what);
            add_stoprec(m, 0, id, NULL, s0, s1);
        }
    } else if (which < 93) {
        btm_group gb;
        int gbad = 0;
        uint64_t grs = rnd_next(rs);
        pthread_mutex_lock(&m->mu);
        const btm_group *g = pick_group(m, &grs, &gb, &gbad, 1);
        pthread_mutex_unlock(&m->mu);
        bool was_shut = atomic_load(&m->shut); /* (as for stop_task above) */
        uint64_t s0 = tick();
        btm_status s = btm_stop_task_group(h, g, up, down, want_rep ? &rep : NULL);
        uint64_t s1 = tick();
        snprintf(what, sizeof what, "%sstop_task_group(m%d, %u/%" PRIu64 "%s, up %d, down %d)", from_task ? "in-task " : "",
                 m->inc, g ? g->kind : 0, g ? g->value : 0, gbad ? " BAD" : "", up, down);
        if (tl_is_host) trace("%s -> %s", what, st(s));
        expect(s, gbad ? B(BTM_STATUS_INVALID_GROUP) : was_shut ? B(1) : B(0) | B(1), what);
        if (s == BTM_STATUS_OK) {
            note_report(m, &rep, want_rep);
            add_stoprec(m, 1, 0, g, s0, s1);
        }
    } else {
        uint64_t s0 = tick();
        btm_status s = btm_stop_all_tasks(h, want_rep ? &rep : NULL);
        uint64_t s1 = tick();
        snprintf(what, sizeof what, "%sstop_all_tasks(m%d)", from_task ? "in-task " : "", m->inc);
        if (tl_is_host) trace("%s -> %s", what, st(s));
        expect(s, B(0), what);
        if (s == BTM_STATUS_OK) {
            note_report(m, &rep, want_rep);
            add_stoprec(m, 2, 0, NULL, s0, s1);
        }
    }
}

/* ------------------------------------------------------------------ */
/* The task function                                                   */
/* ------------------------------------------------------------------ */

static void check_value_alive(const btm_value *v, uint64_t tid, const char *where) {
    trk *t = tlook(v->data);
    if (!t) {
        violation("task %" PRIu64 ": %s entry from task %" PRIu64 " is not a pointer given to btm", tid, where, v->task_id);
        return;
    }
    if (atomic_load(&t->frees)) violation("task %" PRIu64 ": %s entry from task %" PRIu64 " already freed", tid, where, v->task_id);
}

static void task_fn(void *ud, btm_task_context *ctx) {
    spec *s = ud;
    trk *t = tlook(ud);
    if (!t || atomic_load(&t->frees)) {
        violation("task function called with a dead or unknown userdata");
        return;
    }
    mgr *m = s->m;
    uint64_t id = btm_context_task_id(ctx);
    btm_manager *h = btm_context_manager(ctx);
    if (atomic_exchange(&s->running, 1)) violation("task %" PRIu64 " runs twice at once", id);
    if (atomic_load(&m->thread_hooks) && !tl_thread_started) violation("task %" PRIu64 " runs on a thread without thread_start", id);
    if (tl_hook_task && tl_hook_task != id) violation("task %" PRIu64 " runs inside the hooks of task %" PRIu64, id, tl_hook_task);
    if (!h) violation("btm_context_manager returned NULL");
    uint64_t start = tick();
    pthread_mutex_lock(&m->mu);
    task_rec *r = rec_of(m, id);
    CNT(C_RAN);
    if (r) {
        r->run_count++;
        r->start_seq = start;
    } else
        violation("task function with id %" PRIu64, id);
    pthread_mutex_unlock(&m->mu);
    uint64_t rs = s->rng;
    /* upstream values */
    const btm_value *vals = (const btm_value *)0x1;
    size_t nv = 12345;
    expect(btm_context_upstream(ctx, &vals, &nv), B(0), "btm_context_upstream");
    if ((nv == 0) != (vals == NULL)) violation("task %" PRIu64 ": context_upstream count %zu with pointer %p", id, nv, (void *)vals);
    uint64_t *stid = NULL;
    uint32_t *sser = NULL;
    if (nv && nv < 100000) {
        stid = malloc(nv * sizeof(uint64_t));
        sser = malloc(nv * sizeof(uint32_t));
        for (size_t i = 0; i < nv; i++) {
            check_value_alive(&vals[i], id, "upstream");
            trk *vt = tlook(vals[i].data);
            stid[i] = vals[i].task_id;
            sser[i] = vt ? vt->p->serial : 0;
        }
    }
    if (Ps(&rs, 3)) {
        expect(btm_context_upstream(ctx, NULL, &nv), B(BTM_STATUS_NULL_ARGUMENT), "context_upstream(values_out NULL)");
        expect(btm_context_upstream(NULL, &vals, &nv), B(BTM_STATUS_NULL_ARGUMENT), "context_upstream(NULL ctx)");
        void *o = tnew(sizeof(tobj), K_RESULT, m);
        atomic_store(&g_trk[((tobj *)o)->serial].owner, id);
        expect(btm_context_set_result(NULL, o, tfree), B(BTM_STATUS_NULL_ARGUMENT), "context_set_result(NULL ctx)");
        if (atomic_load(&g_trk[((tobj *)o)->serial].frees) != 1) violation("set_result(NULL ctx) did not free the data");
        expect(btm_context_fail(NULL, "x", "y"), B(BTM_STATUS_NULL_ARGUMENT), "context_fail(NULL)");
        expect(btm_context_report_progress(NULL, 0.5, NULL), B(BTM_STATUS_NULL_ARGUMENT), "report_progress(NULL)");
        if (btm_context_is_stopped(NULL) || btm_context_task_id(NULL) != 0 || btm_context_manager(NULL) != NULL)
            violation("NULL context accessors");
    }
    /* progress */
    int np = Ps(&rs, 25) ? 1 + (int)Rs(&rs, 3) : 0;
    int prog_n = 0;
    for (int i = 0; i < np; i++) {
        char msg[24];
        snprintf(msg, sizeof msg, "P:%" PRIu64 ":%d", id, i);
        uint32_t k = Rs(&rs, 10);
        double f = k == 0 ? 1.5 : k == 1 ? -3 : k == 2 ? NAN : (double)Rs(&rs, 1000) / 1000.0;
        btm_status ps = btm_context_report_progress(ctx, f, Ps(&rs, 30) ? NULL : msg);
        if (k == 2)
            expect(ps, B(BTM_STATUS_INVALID_ARGUMENT), "report_progress(NaN)");
        else {
            expect(ps, B(0) | B(1), "report_progress");
            if (ps == BTM_STATUS_NOT_FOUND && !btm_context_is_stopped(ctx))
                violation("task %" PRIu64 ": report_progress NOT_FOUND but is_stopped is false", id);
            if (ps == 0) prog_n++;
        }
    }
    /* work */
    if (s->spin_us) {
        uint64_t until = now_us() + (uint64_t)s->spin_us;
        while (now_us() < until) {
            if (btm_context_is_stopped(ctx) && Ps(&rs, 50)) break;
            if (Ps(&rs, 20)) sched_yield();
        }
    }
    /* re-entrant calls */
    if (s->depth < 3 && Ps(&rs, s->depth == 0 ? 18 : 8)) {
        int nops = 1 + (int)Rs(&rs, 2);
        CNT(C_TASK_REENTRY);
        for (int k = 0; k < nops; k++) {
            uint32_t op = Rs(&rs, 100);
            if (op < 30)
                do_add_one(m, h, &rs, s->depth + 1, true, id);
            else if (op < 40)
                do_add_batch(m, h, &rs, s->depth + 1, true);
            else if (op < 52) {
                if (!m->no_stops) do_stop(m, h, &rs, true, id);
            } else if (op < 58) {
                uint64_t hi = atomic_load(&m->max_id);
                uint64_t tid = Ps(&rs, 20) ? id : 1 + Rs(&rs, (uint32_t)(hi ? hi : 1));
                btm_status ss = btm_set_task_priority(h, tid, g_prios[Rs(&rs, N_PRIOS)]);
                expect(ss, B(0) | B(1) | B(BTM_STATUS_NOT_QUEUED), "in-task set_task_priority");
                if (tid == id && ss == 0) violation("set_task_priority OK on the running task itself");
            } else if (op < 64) {
                btm_stats stt;
                expect(btm_get_stats(h, &stt), B(0), "in-task get_stats");
                btm_group_stats gs;
                expect(btm_get_group_stats(h, NULL, &gs), B(0), "in-task get_group_stats");
            } else if (op < 70) {
                expect(btm_wait_events(h, Rs(&rs, 2)), B(0) | B(BTM_STATUS_TIMED_OUT) | B(BTM_STATUS_SHUT_DOWN),
                       "in-task wait_events");
            } else if (op < 76) {
                expect(btm_wait_idle(h, Ps(&rs, 50) ? 0 : 5), B(BTM_STATUS_WOULD_DEADLOCK), "in-task wait_idle");
            } else if (op < 82) {
                uint32_t ok = B(0) | B(BTM_STATUS_SHUT_DOWN);
                if (Ps(&rs, 30)) expect(btm_pause_processing(h), ok, "in-task pause");
                expect(btm_start_processing(h), ok, "in-task start");
            } else if (op < 87) {
                int32_t n = 1 + (int32_t)Rs(&rs, 3);
                expect(btm_set_max_threads(h, n), B(0) | B(BTM_STATUS_SHUT_DOWN), "in-task set_max_threads");
            } else if (op < 92) {
                btm_group g;
                expect(btm_next_group_id(h, &g), B(0), "in-task next_group_id");
                const char *nm = NULL;
                expect(btm_group_name(h, &g, &nm), B(0), "in-task group_name");
                if (nm) violation("group_name of a numbered group is not NULL");
            } else if (op < 94 && !m->no_stops && Ps(&rs, 8)) {
                /* shut down from inside the task */
                atomic_store(&m->maybe_shut, 1);
                atomic_store(&m->task_shut, 1);
                CNT(C_TASK_SHUT);
                atomic_store(&m->stopped_any, 1);
                size_t still = 999;
                uint32_t to = Ps(&rs, 50) ? 0 : BTM_WAIT_FOREVER;
                btm_status ss = btm_shut_down(h, to, &still);
                expect(ss, B(0) | B(BTM_STATUS_TIMED_OUT) | B(BTM_STATUS_ALREADY_SHUT_DOWN), "in-task shut_down");
                if (ss == 0 && still != 0) violation("in-task shut_down OK with still_running %zu", still);
                if (ss == BTM_STATUS_TIMED_OUT && to == BTM_WAIT_FOREVER) violation("in-task shut_down(FOREVER) timed out");
                atomic_store(&m->shut, 1);
            } else {
                btm_stats stt;
                expect(btm_get_stats(h, &stt), B(0), "in-task get_stats");
            }
        }
    }
    /* result */
    uint32_t res_ser = 0;
    uint32_t rk = Rs(&rs, 100);
    if (rk < 55) {
        void *o = tnew(sizeof(tobj), K_RESULT, m);
        atomic_store(&g_trk[((tobj *)o)->serial].owner, id);
        expect(btm_context_set_result(ctx, o, tfree), B(0), "context_set_result");
        res_ser = ((tobj *)o)->serial;
        if (rk < 8) { /* replace it */
            void *o2 = tnew(sizeof(tobj), K_RESULT, m);
            atomic_store(&g_trk[((tobj *)o2)->serial].owner, id);
            expect(btm_context_set_result(ctx, o2, tfree), B(0), "context_set_result (replace)");
            if (atomic_load(&g_trk[res_ser].frees) != 1) violation("task %" PRIu64 ": replaced result not freed at once", id);
            res_ser = ((tobj *)o2)->serial;
        } else if (rk < 12) { /* replace with NULL */
            expect(btm_context_set_result(ctx, NULL, tfree), B(0), "context_set_result(NULL)");
            if (atomic_load(&g_trk[res_ser].frees) != 1) violation("task %" PRIu64 ": result replaced by NULL not freed", id);
            res_ser = 0;
        }
    }
    /* failure */
    int called_fail = 0, null_msg = 0, null_det = 0;
    char fm[24], fd[24];
    if (Ps(&rs, 15)) {
        called_fail = 1;
        if (Ps(&rs, 20)) expect(btm_context_fail(ctx, "first", "x"), B(0), "context_fail");
        null_msg = Ps(&rs, 10);
        null_det = Ps(&rs, 20);
        snprintf(fm, sizeof fm, "F:%" PRIu64, id);
        snprintf(fd, sizeof fd, "D:%" PRIu64, id);
        expect(btm_context_fail(ctx, null_msg ? NULL : fm, null_det ? NULL : fd), B(0), "context_fail");
    }
    /* upstream values must still be alive */
    for (size_t i = 0; i < nv && nv < 100000; i++) check_value_alive(&vals[i], id, "upstream (at end)");
    bool stopped = btm_context_is_stopped(ctx);
    uint64_t end = tick();
    pthread_mutex_lock(&m->mu);
    if (r) {
        r->end_seq = end;
        r->called_fail = (uint8_t)called_fail;
        r->fail_null_msg = (uint8_t)null_msg;
        r->fail_null_det = (uint8_t)null_det;
        if (called_fail) {
            snprintf(r->fail_msg, sizeof r->fail_msg, "%s", null_msg ? "task failed" : fm);
            snprintf(r->fail_det, sizeof r->fail_det, "%s", null_det ? "" : fd);
        }
        r->result_serial = res_ser;
        r->saw_stopped = stopped;
        r->progress_n = (uint8_t)prog_n;
        r->nseen = (uint16_t)nv;
        r->seen_tid = stid;
        r->seen_ser = sser;
    } else {
        free(stid);
        free(sser);
    }
    pthread_mutex_unlock(&m->mu);
    atomic_store(&s->running, 0);
}

/* ------------------------------------------------------------------ */
/* Polling                                                             */
/* ------------------------------------------------------------------ */

static void push_ev(evrec **v, size_t *n, size_t *cap, const evrec *e) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *v = realloc(*v, *cap * sizeof(evrec));
    }
    (*v)[(*n)++] = *e;
}

static void capture(mgr *m, const btm_event *e, evrec *o, uint64_t ps, uint64_t pe) {
    memset(o, 0, sizeof *o);
    o->kind = e->kind;
    o->tid = e->task_id;
    o->gkind = e->group.kind;
    o->gval = e->group.value;
    o->poll_start = ps;
    o->poll_end = pe;
    if (e->reserved != 0 || e->group.reserved != 0) violation("event with non-zero reserved field");
    if (e->group_name) {
        o->has_gname = 1;
        snprintf(o->gname, sizeof o->gname, "%s", e->group_name);
    }
    o->results_null = e->results == NULL;
    if (e->kind < 1 || e->kind > 4) {
        violation("event of unknown kind %u", e->kind);
        return;
    }
    if (e->kind == BTM_EVENT_TASK_COMPLETED) {
        if ((e->result_count == 0) != (e->results == NULL))
            violation("completed event of %" PRIu64 ": result_count %zu with results %p", e->task_id, e->result_count,
                      (const void *)e->results);
        if (e->message || e->details) violation("completed event with message/details");
        if (e->result_count > 10000) {
            violation("completed event with %zu results", e->result_count);
            return;
        }
        o->nres = (uint16_t)e->result_count;
        if (o->nres) {
            o->res_tid = malloc(o->nres * sizeof(uint64_t));
            o->res_ser = malloc(o->nres * sizeof(uint32_t));
        }
        for (size_t i = 0; i < e->result_count; i++) {
            trk *t = tlook(e->results[i].data);
            o->res_tid[i] = e->results[i].task_id;
            o->res_ser[i] = t ? t->p->serial : 0;
            if (!t) {
                violation("completed event of %" PRIu64 ": result %zu is not a pointer given to btm", e->task_id, i);
                continue;
            }
            if (atomic_load(&t->frees))
                violation("completed event of %" PRIu64 ": result %zu (of task %" PRIu64 ") already freed", e->task_id, i,
                          e->results[i].task_id);
            uint64_t g = atomic_load(&m->poll_gen) + 1;
            uint64_t cur = atomic_load(&t->dgen);
            while (cur < g && !atomic_compare_exchange_weak(&t->dgen, &cur, g)) {
            }
        }
    } else {
        if (e->results || e->result_count) violation("non-completed event (kind %u) with results", e->kind);
    }
    if (e->kind == BTM_EVENT_TASK_FAILED) {
        if (!e->message || !e->details) violation("failed event of %" PRIu64 " with NULL message/details", e->task_id);
    }
    if (e->kind == BTM_EVENT_TASK_PROGRESS) {
        if (e->details) violation("progress event with details");
        if (!(e->progress >= 0.0 && e->progress <= 1.0)) violation("progress event with fraction %f", e->progress);
        o->progress = e->progress;
    } else if (e->progress != 0.0)
        violation("non-progress event with progress %f", e->progress);
    if (e->kind == BTM_EVENT_GROUP_FINISHED) {
        if (e->task_id != 0) violation("group finished event with task id %" PRIu64, e->task_id);
        if (e->message || e->details) violation("group finished event with message");
    } else if (e->task_id == 0)
        violation("event kind %u with task id 0", e->kind);
    if (e->message) {
        o->has_msg = 1;
        snprintf(o->msg, sizeof o->msg, "%s", e->message);
    }
    if (e->details) {
        o->has_det = 1;
        snprintf(o->det, sizeof o->det, "%s", e->details);
    }
}

static void apply_ev(mgr *m, evrec *e) {
    CNT(C_EVENTS);
    push_ev(&m->ev, &m->nev, &m->capev, e);
    long idx = (long)m->nev - 1;
    if (e->kind == BTM_EVENT_TASK_COMPLETED || e->kind == BTM_EVENT_TASK_FAILED) {
        pthread_mutex_lock(&m->mu);
        task_rec *r = rec_of(m, e->tid);
        if (r) {
            r->finals++;
            if (r->finals == 1) {
                r->final_kind = (uint8_t)e->kind;
                r->final_ev = idx;
                r->final_poll_start = e->poll_start;
                r->final_poll_end = e->poll_end;
            } else
                violation("task %" PRIu64 " of m%d got a second final event", e->tid, m->inc);
        }
        pthread_mutex_unlock(&m->mu);
    }
}

static int host_poll(mgr *m, size_t cap, int how);

/* how: 0 normal, 1 events NULL, 2 count NULL */
static int host_poll(mgr *m, size_t cap, int how) {
    btm_event *buf = malloc((cap ? cap : 1) * sizeof(btm_event));
    size_t n = 777777;
    if (m->poll_depth == 0) atomic_fetch_add(&m->poll_gen, 1);
    else CNT(C_NESTED_POLL);
    m->poll_depth++;
    bool was_shut = atomic_load(&m->shut);
    uint64_t s0 = tick();
    btm_status s = btm_poll_events(m->h, how == 1 ? NULL : buf, cap, how == 2 ? NULL : &n);
    uint64_t s1 = tick();
    m->poll_depth--;
    char what[100];
    snprintf(what, sizeof what, "poll_events(m%d, cap %zu%s)%s", m->inc, cap,
             how == 1 ? ", events NULL" : how == 2 ? ", count NULL" : "", m->poll_depth ? " nested" : "");
    uint32_t allowed = how ? B(BTM_STATUS_NULL_ARGUMENT) : cap == 0 ? B(BTM_STATUS_ZERO_CAPACITY) : B(0);
    expect(s, allowed, what);
    int got = 0;
    if (s == BTM_STATUS_OK) {
        if (n > cap) {
            violation("%s wrote count %zu", what, n);
            n = 0;
        }
        got = (int)n;
        if (n && was_shut) violation("%s delivered %zu events after shut down", what, n);
        evrec tmp;
        if (m->poll_depth > 0) {
            for (size_t i = 0; i < n; i++) {
                capture(m, &buf[i], &tmp, s0, s1);
                push_ev(&m->stash, &m->nstash, &m->capstash, &tmp);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                capture(m, &buf[i], &tmp, s0, s1);
                apply_ev(m, &tmp);
            }
            for (size_t i = 0; i < m->nstash; i++) apply_ev(m, &m->stash[i]);
            m->nstash = 0;
        }
    } else if (n != 777777)
        violation("%s failed but wrote the count", what);
    trace("%s -> %s n=%d", what, st(s), got);
    free(buf);
    return got;
}

static mgr *g_cur_destroy; /* manager being destroyed by the host */
static atomic_int g_quiet;

/* re-entrant calls from free functions */
static void reentrant_from_free(trk *t) {
    uint64_t h = (uint64_t)t->p->serial * 0x9E3779B97F4A7C15ull ^ g_seed;
    uint32_t r = (uint32_t)(h >> 40) % 100;
    if (r >= 6 || atomic_load(&g_quiet)) return;
    CNT(C_FREE_REENTRY);
    if (tl_is_host) {
        /* any live manager, or the one being destroyed (adds get SHUT_DOWN) */
        int k = (int)((h >> 20) % NSLOT);
        mgr *m = g_slot[k];
        if (!m) return;
        if (!m->alive && m != g_cur_destroy) return;
        if (m == g_cur_destroy) {
            if (!g_destroy_reentry_all && t->kind != K_SPEC && t->kind != K_RESULT && t->kind != K_PAYLOAD) return;
            uint64_t rs = h;
            uint64_t hi0 = atomic_load(&m->max_id);
            spec *s = spec_new(m, h, 3);
            uint64_t id = 0;
            btm_status st2 = btm_add_task(m->h, task_fn, s, tfree, 0, NULL, NULL, 0, &id);
            expect(st2, B(BTM_STATUS_SHUT_DOWN), "add from a free function during destroy");
            if (st2 == 0) rec_add(m, id, false, NULL, NULL, 0, 0, 0, s->hdr.serial, 0, true);
            if (g_destroy_reentry_all) {
                btm_stats stt;
                expect(btm_get_stats(m->h, &stt), B(0), "get_stats from a free function during destroy");
            }
            (void)rs;
            (void)hi0;
            return;
        }
        if (m->poll_depth > 0 || (r < 2 && m->alive)) {
            /* a poll from a free function (nested when that manager's poll runs it) */
            if (m->poll_depth > 0 || r == 0) host_poll(m, 1 + (h >> 50) % 4, 0);
            return;
        }
        btm_stats stt;
        expect(btm_get_stats(m->h, &stt), B(0), "get_stats from a free function");
        if (r < 4) {
            uint64_t rs = h;
            do_add_one(m, m->h, &rs, 3, true, 0);
        }
    } else {
        mgr *m = t->m;
        if (!m || !guard_enter(m)) return;
        uint64_t rs = h;
        if (r < 3)
            do_add_one(m, m->h, &rs, 3, true, 0);
        else {
            btm_stats stt;
            expect(btm_get_stats(m->h, &stt), B(0), "get_stats from a worker free function");
        }
        guard_exit(m);
    }
}

/* ------------------------------------------------------------------ */
/* Manager life                                                        */
/* ------------------------------------------------------------------ */

static mgr *mgr_create(int slot) {
    mgr *m = calloc(1, sizeof *m);
    m->slot = slot;
    m->inc = ++g_inc;
    m->tasks = calloc(MAX_ID, sizeof(task_rec));
    pthread_mutex_init(&m->mu, NULL);
    pthread_rwlock_init(&m->guard, NULL);
    m->next_all = g_all;
    g_all = m;
    btm_config c;
    expect(btm_config_init(&c), B(0), "config_init");
    static const int32_t mts[] = {1, 1, 2, 2, 3, 3, 0};
    c.max_threads = mts[R(7)];
    c.start_processing = P(50);
    m->sp_init = c.start_processing;
    m->no_stops = P(25);
    int bad = R(100);
    uint32_t allowed = B(0);
    if (P(40)) {
        hookud *hu = tnew(sizeof(hookud), K_THOOK, m);
        hu->m = m;
        c.thread_start = thread_start_fn;
        c.thread_stop = thread_stop_fn;
        c.thread_hook_userdata = hu;
        c.thread_hook_free = tfree;
        atomic_store(&m->thread_hooks, 1);
    }
    /* configurations that must be refused (hook userdata freed) */
    unsigned char big[sizeof(btm_config) + 16];
    const btm_config *cp = &c;
    if (bad < 4) {
        c.max_threads = bad < 2 ? -1 : 1025;
        allowed = B(BTM_STATUS_INVALID_THREAD_COUNT);
    } else if (bad < 6) {
        memset(big, 0, sizeof big);
        memcpy(big, &c, sizeof c);
        ((btm_config *)big)->struct_size = sizeof big;
        big[sizeof c + 3] = 1;
        cp = (const btm_config *)big;
        allowed = B(BTM_STATUS_INVALID_CONFIG);
    } else if (bad < 10) {
        memset(big, 0, sizeof big);
        memcpy(big, &c, sizeof c);
        ((btm_config *)big)->struct_size = sizeof big;
        cp = (const btm_config *)big;
    }
    bool older = false;
    if (bad >= 10 && bad < 14) {
        /* an older caller: struct ends right after start_processing */
        c.struct_size = (uint32_t)(offsetof(btm_config, start_processing) + 1);
        older = true;
    }
    btm_manager *h = (btm_manager *)0x1;
    btm_status s = btm_create(cp, &h);
    if (older && c.thread_hook_userdata) {
        /* btm reads no hook field: the userdata stays ours */
        if (atomic_load(&g_trk[((tobj *)c.thread_hook_userdata)->serial].frees) != 0)
            violation("btm_create (short struct) freed a hook userdata it cannot see");
        atomic_store(&g_trk[((tobj *)c.thread_hook_userdata)->serial].frees, 1);
        atomic_store(&m->thread_hooks, 0);
        c.thread_hook_userdata = NULL;
        c.thread_start = NULL;
    }
    trace("create(m%d slot %d, max_threads %d, start %d, hooks %d, cfg %d) -> %s", m->inc, slot, c.max_threads,
          c.start_processing, c.thread_start != NULL, bad, st(s));
    expect(s, allowed, "btm_create");
    if (c.thread_hook_userdata && s != 0 && atomic_load(&g_trk[((tobj *)c.thread_hook_userdata)->serial].frees) != 1)
        violation("btm_create failed without freeing the thread hook userdata");
    if (s != 0) {
        if (h != (btm_manager *)0x1) violation("btm_create failed but wrote the handle");
        return mgr_create(slot);
    }
    m->h = h;
    m->alive = 1;
    m->max_threads = c.max_threads;
    /* intern names */
    int nn = 1 + (int)R(4);
    for (int i = 0; i < nn; i++) {
        btm_group g;
        const char *name = g_names[R(6)];
        expect(btm_group_named(h, name, &g), B(0), "group_named");
        if (g.kind != BTM_GROUP_KIND_NAMED) violation("group_named returned kind %u", g.kind);
        int idx;
        if (is_named_value(m, g.value, &idx)) {
            if (strcmp(m->nm[idx].name, name) != 0) violation("two names with one group value");
            continue;
        }
        for (int j = 0; j < m->nnamed; j++)
            if (strcmp(m->nm[j].name, name) == 0) violation("one name, two group values");
        snprintf(m->nm[m->nnamed].name, 16, "%s", name);
        m->nm[m->nnamed++].value = g.value;
    }
    return m;
}

static void mgr_destroy(mgr *m, bool shut_first) {
    atomic_store(&m->maybe_shut, 1);
    if (shut_first && !m->host_shut) {
        size_t still = 999;
        uint32_t to = P(50) ? 0 : (P(50) ? 1 : BTM_WAIT_FOREVER);
        btm_status s = btm_shut_down(m->h, to, &still);
        trace("shut_down(m%d, %u) -> %s still %zu", m->inc, to, st(s), still);
        expect(s, atomic_load(&m->task_shut) ? B(0) | B(BTM_STATUS_TIMED_OUT) | B(BTM_STATUS_ALREADY_SHUT_DOWN)
                                             : B(0) | B(BTM_STATUS_TIMED_OUT),
               "shut_down");
        m->host_shut = 1;
        atomic_store(&m->shut, 1);
    }
    pthread_rwlock_wrlock(&m->guard);
    atomic_store(&m->dead, 1);
    pthread_rwlock_unlock(&m->guard);
    trace("destroy(m%d)", m->inc);
    CNT(C_DESTROY);
    m->in_destroy = 1;
    g_cur_destroy = m;
    m->alive = 0;
    btm_destroy(m->h);
    g_cur_destroy = NULL;
    m->in_destroy = 0;
    m->destroyed_at = tick();
    g_slot[m->slot] = NULL;
}

/* ------------------------------------------------------------------ */
/* Host operations                                                     */
/* ------------------------------------------------------------------ */

static mgr *pick_mgr(void) {
    for (int k = 0; k < 8; k++) {
        mgr *m = g_slot[R((uint32_t)g_nslots)];
        if (m) return m;
    }
    for (int i = 0; i < g_nslots; i++)
        if (g_slot[i]) return g_slot[i];
    return NULL;
}

static void op_bad_input(mgr *m) {
    uint32_t k = R(20);
    btm_task_id id = 42;
    btm_stats stt;
    btm_group g;
    size_t n = 5;
    btm_event ev[2];
    switch (k) {
    case 0: {
        spec *s = spec_new(m, 1, 3);
        expect(btm_add_task(NULL, task_fn, s, tfree, 0, NULL, NULL, 0, &id), B(2), "add_task(NULL mgr)");
        if (atomic_load(&g_trk[s->hdr.serial].frees) != 1) violation("add_task(NULL mgr) did not free userdata");
        break;
    }
    case 1: {
        void *o = tnew(sizeof(tobj), K_PAYLOAD, m);
        expect(btm_add_pass_through_task(NULL, 0, NULL, NULL, 0, o, tfree, &id), B(2), "add_pass_through(NULL mgr)");
        if (atomic_load(&g_trk[((tobj *)o)->serial].frees) != 1) violation("add_pass_through(NULL mgr) did not free");
        break;
    }
    case 2:
        expect(btm_poll_events(NULL, ev, 2, &n), B(2), "poll(NULL)");
        expect(btm_wait_events(NULL, 0), B(2), "wait_events(NULL)");
        expect(btm_wait_idle(NULL, 0), B(2), "wait_idle(NULL)");
        break;
    case 3:
        expect(btm_stop_task(NULL, 1, true, true, NULL), B(2), "stop_task(NULL)");
        expect(btm_stop_task_group(NULL, NULL, true, true, NULL), B(2), "stop_group(NULL)");
        expect(btm_stop_all_tasks(NULL, NULL), B(2), "stop_all(NULL)");
        break;
    case 4:
        expect(btm_get_stats(NULL, &stt), B(2), "get_stats(NULL)");
        expect(btm_get_stats(m->h, NULL), B(2), "get_stats(out NULL)");
        break;
    case 5:
        expect(btm_next_group_id(m->h, NULL), B(2), "next_group_id(out NULL)");
        expect(btm_group_named(m->h, NULL, &g), B(2), "group_named(NULL name)");
        expect(btm_group_named(m->h, "x", NULL), B(2), "group_named(NULL out)");
        break;
    case 6: {
        g.kind = 99;
        g.value = 1;
        memset(&g, 0x5A, sizeof g);
        btm_group bad = g;
        expect(btm_group_named(m->h, g_bad_utf8[R(7)], &g), B(BTM_STATUS_INVALID_UTF8), "group_named(bad utf8)");
        if (memcmp(&g, &bad, sizeof g) != 0) violation("group_named(bad utf8) wrote the group");
        break;
    }
    case 7: {
        const char *nm = (const char *)0x1;
        g.kind = 7;
        g.reserved = 0;
        g.value = 0;
        expect(btm_group_name(m->h, &g, &nm), B(BTM_STATUS_INVALID_GROUP), "group_name(kind 7)");
        g.kind = BTM_GROUP_KIND_NAMED;
        g.value = 0xFEEDFACE12ull;
        if (!is_named_value(m, g.value, NULL))
            expect(btm_group_name(m->h, &g, &nm), B(BTM_STATUS_INVALID_GROUP), "group_name(never interned)");
        expect(btm_group_name(m->h, NULL, &nm), B(2), "group_name(NULL group)");
        if (m->nnamed) {
            int i = (int)R((uint32_t)m->nnamed);
            g.value = m->nm[i].value;
            nm = NULL;
            expect(btm_group_name(m->h, &g, &nm), B(0), "group_name");
            if (!nm || strcmp(nm, m->nm[i].name) != 0) violation("group_name returned the wrong name");
        }
        break;
    }
    case 8:
        expect(btm_set_max_threads(m->h, -1), B(6) | (atomic_load(&m->shut) ? B(7) : 0), "set_max_threads(-1)");
        expect(btm_set_max_threads(m->h, 1025), B(6) | (atomic_load(&m->shut) ? B(7) : 0), "set_max_threads(1025)");
        expect(btm_set_max_threads(NULL, 1), B(2), "set_max_threads(NULL)");
        break;
    case 9: {
        int32_t fd = -7;
        expect(btm_get_event_fd(NULL, &fd), B(2), "get_event_fd(NULL)");
        expect(btm_get_event_fd(m->h, NULL), B(2), "get_event_fd(out NULL)");
        expect(btm_get_event_fd(m->h, &fd), B(0), "get_event_fd");
        int32_t fd2 = -8;
        expect(btm_get_event_fd(m->h, &fd2), B(0), "get_event_fd");
        if (fd < 0 || fd != fd2) violation("get_event_fd: %d then %d", fd, fd2);
        break;
    }
    case 10: {
        notifyud *nu = tnew(sizeof(notifyud), K_NOTIFY, m);
        nu->m = m;
        expect(btm_set_notify(NULL, notify_fn, nu, tfree), B(2), "set_notify(NULL)");
        if (atomic_load(&g_trk[nu->hdr.serial].frees) != 1) violation("set_notify(NULL mgr) did not free userdata");
        hookud *hu = tnew(sizeof(hookud), K_HOOK, m);
        hu->m = m;
        expect(btm_set_task_hooks(NULL, hook_start, hook_end, hu, tfree), B(2), "set_task_hooks(NULL)");
        if (atomic_load(&g_trk[hu->hdr.serial].frees) != 1) violation("set_task_hooks(NULL mgr) did not free userdata");
        break;
    }
    case 11:
        expect(btm_stop_task(m->h, 0, true, true, NULL), B(1), "stop_task(0)");
        expect(btm_stop_task(m->h, UINT64_MAX, false, false, NULL), B(1), "stop_task(max)");
        expect(btm_set_task_priority(m->h, 0, 1), B(1), "set_task_priority(0)");
        expect(btm_set_task_priority(NULL, 1, 1), B(2), "set_task_priority(NULL)");
        break;
    case 12: {
        g.kind = 3;
        g.reserved = 0;
        g.value = 0;
        btm_group_stats gs;
        memset(&gs, 0x11, sizeof gs);
        expect(btm_get_group_stats(m->h, &g, &gs), B(BTM_STATUS_INVALID_GROUP), "get_group_stats(kind 3)");
        expect(btm_get_group_stats(m->h, NULL, NULL), B(2), "get_group_stats(out NULL)");
        expect(btm_stop_task_group(m->h, &g, true, true, NULL), B(BTM_STATUS_INVALID_GROUP), "stop_task_group(kind 3)");
        break;
    }
    case 13: {
        btm_config c;
        expect(btm_config_init(NULL), B(2), "config_init(NULL)");
        btm_config_init(&c);
        hookud *hu = tnew(sizeof(hookud), K_THOOK, NULL);
        c.thread_hook_userdata = hu;
        c.thread_hook_free = tfree;
        c.thread_start = thread_start_fn;
        expect(btm_create(&c, NULL), B(2), "create(out NULL)");
        if (atomic_load(&g_trk[hu->hdr.serial].frees) != 1) violation("create(out NULL) did not free hook userdata");
        c.struct_size = 4;
        btm_manager *h = (btm_manager *)0x1;
        hookud *hu2 = tnew(sizeof(hookud), K_THOOK, NULL);
        c.thread_hook_userdata = hu2;
        expect(btm_create(&c, &h), B(BTM_STATUS_INVALID_CONFIG), "create(struct_size 4)");
        if (atomic_load(&g_trk[hu2->hdr.serial].frees) != 0) violation("create(struct_size 4) freed the hook userdata");
        atomic_store(&g_trk[hu2->hdr.serial].frees, 1); /* ours */
        break;
    }
    case 14: {
        const char *s = btm_status_str(0xdeadbeef);
        if (!s || strcmp(s, "unknown status code") != 0) violation("status_str(unknown)");
        if (strcmp(btm_version(), BTM_VERSION) != 0) violation("version mismatch");
        for (uint32_t i = 0; i <= 16; i++)
            if (!btm_status_str(i) || !*btm_status_str(i)) violation("status_str(%u) empty", i);
        break;
    }
    case 15: {
        /* upstream NULL with a length; IN_BATCH given to add_task */
        spec *s = spec_new(m, 2, 3);
        uint64_t before = atomic_load(&m->max_id);
        btm_status r = btm_add_task(m->h, task_fn, s, tfree, 0, NULL, NULL, 3, &id);
        expect(r, B(3) | (atomic_load(&m->shut) ? B(7) : 0), "add_task(upstream NULL, len 3)");
        spec *s2 = spec_new(m, 3, 3);
        uint64_t u = BTM_IN_BATCH | 0;
        (void)before;
        r = btm_add_task(m->h, task_fn, s2, tfree, 0, NULL, &u, 1, &id);
        expect(r, B(4) | (atomic_load(&m->shut) || atomic_load(&m->maybe_shut) ? B(7) : 0), "add_task(IN_BATCH upstream)");
        break;
    }
    case 16: {
        btm_task_desc d;
        memset(&d, 0, sizeof d);
        expect(btm_add_tasks(NULL, &d, 1, &id), B(2), "add_tasks(NULL mgr)");
        expect(btm_add_tasks(m->h, NULL, 0, NULL), B(0), "add_tasks(count 0)");
        expect(btm_add_tasks(NULL, NULL, 0, NULL), B(2), "add_tasks(NULL, count 0)");
        break;
    }
    case 17: {
        hookud *hu = tnew(sizeof(hookud), K_HOOK, m);
        hu->m = m;
        expect(btm_pause_processing(NULL), B(2), "pause(NULL)");
        expect(btm_start_processing(NULL), B(2), "start(NULL)");
        size_t still = 5;
        expect(btm_shut_down(NULL, 0, &still), B(2), "shut_down(NULL)");
        btm_destroy(NULL);
        atomic_store(&g_trk[hu->hdr.serial].frees, 1);
        break;
    }
    case 18: {
        /* unowned userdata: no free function, never freed by btm */
        if (atomic_load(&m->max_id) > MAX_ID - 200) break;
        spec *s = tnew(sizeof(spec), K_UNOWNED, m);
        s->m = m;
        s->rng = 5;
        s->depth = 3;
        uint64_t s0 = tick();
        btm_status r = btm_add_task(m->h, task_fn, s, NULL, 0, NULL, NULL, 0, &id);
        uint64_t s1 = tick();
        expect(r, B(0) | (atomic_load(&m->shut) || atomic_load(&m->maybe_shut) ? B(7) : 0), "add_task(no free fn)");
        if (r == 0) rec_add(m, id, false, NULL, NULL, 0, s0, s1, 0, 0, false);
        break;
    }
    default: {
        uint64_t hi = atomic_load(&m->max_id);
        expect(btm_set_task_priority(m->h, hi + 999, 1), B(1), "set_task_priority(never issued)");
        expect(btm_stop_task(m->h, hi + 999, true, true, NULL), B(1), "stop_task(never issued)");
        break;
    }
    }
    trace("bad_input %u on m%d", k, m->inc);
}

enum {
    OP_ADD, OP_BATCH, OP_STOP, OP_PRIO, OP_PAUSE, OP_START, OP_THREADS, OP_HOOKS, OP_NOTIFY, OP_POLL,
    OP_WAIT_EV, OP_WAIT_IDLE, OP_STATS, OP_GROUPS, OP_SHUT, OP_DESTROY, OP_BAD, OP_FD, NOPS
};
static const char *op_names[] = {"add", "batch", "stop", "prio", "pause", "start", "threads", "hooks", "notify", "poll",
                                 "wait_events", "wait_idle", "stats", "groups", "shut", "destroy", "bad", "fd"};
static const unsigned op_weight[] = {88, 32, 28, 16, 12, 24, 8, 8, 8, 88, 12, 12, 8, 8, 1, 2, 16, 4};

static void host_op(void) {
    unsigned total = 0;
    for (int i = 0; i < NOPS; i++)
        if (!(g_mask >> i & 1)) total += op_weight[i];
    if (!total) return;
    unsigned x = R(total);
    int op = 0;
    for (op = 0; op < NOPS; op++) {
        if (g_mask >> op & 1) continue;
        if (x < op_weight[op]) break;
        x -= op_weight[op];
    }
    mgr *m = pick_mgr();
    if (!m) return;
    if (atomic_load(&m->shut) && P(3)) op = OP_DESTROY; /* do not linger on a shut-down manager */
    uint64_t rs = rnd_next(&g_rng);
    bool shut = atomic_load(&m->shut), maybe = atomic_load(&m->maybe_shut);
    uint32_t sd = shut ? B(7) : maybe ? B(7) | B(0) : B(0);
    switch (op) {
    case OP_ADD:
        do_add_one(m, m->h, &rs, 0, false, 0);
        break;
    case OP_BATCH:
        do_add_batch(m, m->h, &rs, 0, false);
        break;
    case OP_STOP:
        if (!m->no_stops) do_stop(m, m->h, &rs, false, 0);
        break;
    case OP_PRIO: {
        uint64_t hi = atomic_load(&m->max_id);
        uint64_t id = 1 + R((uint32_t)(hi ? hi : 1));
        if (hi > 4 && P(60)) id = hi - R(4);
        uint64_t s0 = tick();
        btm_status s = btm_set_task_priority(m->h, id, g_prios[R(N_PRIOS)]);
        trace("set_task_priority(m%d, %" PRIu64 ") -> %s", m->inc, id, st(s));
        expect(s, shut ? B(1) : B(0) | B(1) | B(BTM_STATUS_NOT_QUEUED), "set_task_priority");
        pthread_mutex_lock(&m->mu);
        task_rec *r = rec_of(m, id);
        if (r && s == 0) {
            if (r->start_seq && r->start_seq < s0)
                violation("set_task_priority(%" PRIu64 ") OK though the task started before the call", id);
            if (r->finals) violation("set_task_priority(%" PRIu64 ") OK though its final event was polled", id);
        }
        if (r && s == BTM_STATUS_NOT_QUEUED && r->finals)
            violation("set_task_priority(%" PRIu64 ") NOT_QUEUED though polled (should be NOT_FOUND)", id);
        pthread_mutex_unlock(&m->mu);
        break;
    }
    case OP_PAUSE: {
        btm_status s = btm_pause_processing(m->h);
        expect(s, SD_AFTER(m, s, sd), "pause_processing");
        trace("pause(m%d)", m->inc);
        break;
    }
    case OP_START: {
        btm_status s = btm_start_processing(m->h);
        expect(s, SD_AFTER(m, s, sd), "start_processing");
        trace("start(m%d)", m->inc);
        break;
    }
    case OP_THREADS: {
        static const int32_t v[] = {1, 2, 3, 0, 1, 2};
        int32_t n = v[R(6)];
        btm_status s = btm_set_max_threads(m->h, n);
        expect(s, SD_AFTER(m, s, sd), "set_max_threads");
        trace("set_max_threads(m%d, %d)", m->inc, n);
        break;
    }
    case OP_HOOKS: {
        hookud *hu = tnew(sizeof(hookud), K_HOOK, m);
        hu->m = m;
        bool on = P(70);
        bool owned = P(90);
        if (!owned) g_trk[hu->hdr.serial].kind = K_UNOWNED;
        expect(btm_set_task_hooks(m->h, on ? hook_start : NULL, on ? hook_end : NULL, hu, owned ? tfree : NULL), B(0),
               "set_task_hooks");
        trace("set_task_hooks(m%d, %s)", m->inc, on ? "on" : "off");
        break;
    }
    case OP_NOTIFY: {
        notifyud *nu = tnew(sizeof(notifyud), K_NOTIFY, m);
        nu->m = m;
        nu->counting = 0;
        bool on = P(70);
        expect(btm_set_notify(m->h, on ? notify_fn : NULL, nu, tfree), B(0), "set_notify");
        m->notify_registered = 0;
        trace("set_notify(m%d, %s)", m->inc, on ? "on" : "off");
        break;
    }
    case OP_POLL: {
        static const size_t caps[] = {1, 1, 2, 3, 7, 64, 64, 0};
        size_t cap = caps[R(8)];
        int how = P(2) ? 1 + (int)R(2) : 0;
        int drains = P(30) ? 20 : 1;
        for (int i = 0; i < drains; i++) {
            int n = host_poll(m, cap, how);
            if ((size_t)n < cap || how) break;
        }
        break;
    }
    case OP_WAIT_EV: {
        uint32_t to = R(3);
        btm_status s = btm_wait_events(m->h, to);
        trace("wait_events(m%d, %u) -> %s", m->inc, to, st(s));
        expect(s, SD_AFTER(m, s, shut ? B(7) : B(0) | B(9) | (maybe ? B(7) : 0)), "wait_events");
        break;
    }
    case OP_WAIT_IDLE: {
        uint32_t to = R(4);
        btm_status s = btm_wait_idle(m->h, to);
        trace("wait_idle(m%d, %u) -> %s", m->inc, to, st(s));
        expect(s, m->shut_ok ? B(0) : B(0) | B(9), "wait_idle");
        break;
    }
    case OP_STATS: {
        btm_stats s;
        expect(btm_get_stats(m->h, &s), B(0), "get_stats");
        btm_group gb;
        int bad;
        pthread_mutex_lock(&m->mu);
        const btm_group *g = pick_group(m, &rs, &gb, &bad, 1);
        pthread_mutex_unlock(&m->mu);
        btm_group_stats gs;
        expect(btm_get_group_stats(m->h, g, &gs), bad ? B(13) : B(0), "get_group_stats");
        if (shut && m->host_shut && (s.queued || s.blocked)) violation("stats after shut down: queued %" PRIu64 " blocked %" PRIu64, s.queued, s.blocked);
        trace("stats(m%d)", m->inc);
        break;
    }
    case OP_GROUPS: {
        btm_group g;
        expect(btm_next_group_id(m->h, &g), B(0), "next_group_id");
        if (g.kind != BTM_GROUP_KIND_NUMBERED) violation("next_group_id kind %u", g.kind);
        pthread_mutex_lock(&m->mu);
        for (int i = 0; i < m->nnums; i++)
            if (m->nums[i] == g.value) violation("next_group_id returned %" PRIu64 " twice", g.value);
        if (m->nnums < MAX_NUMS) m->nums[m->nnums++] = g.value;
        if (m->nnamed < MAX_NAMED && P(30)) {
            const char *nm = g_names[R(6)];
            btm_group gn;
            expect(btm_group_named(m->h, nm, &gn), B(0), "group_named");
            int idx;
            if (!is_named_value(m, gn.value, &idx)) {
                bool dup = false;
                for (int j = 0; j < m->nnamed; j++)
                    if (strcmp(m->nm[j].name, nm) == 0) dup = true;
                if (dup) violation("group_named(\"%s\") gave a second value", nm);
                snprintf(m->nm[m->nnamed].name, 16, "%s", nm);
                m->nm[m->nnamed++].value = gn.value;
            } else if (strcmp(m->nm[idx].name, nm) != 0)
                violation("group_named(\"%s\") returned the value of \"%s\"", nm, m->nm[idx].name);
        }
        pthread_mutex_unlock(&m->mu);
        trace("groups(m%d)", m->inc);
        break;
    }
    case OP_SHUT: {
        if (m->no_stops ? P(90) : P(50)) break;
        size_t still = 999;
        uint32_t to = P(40) ? 0 : P(50) ? 1 : BTM_WAIT_FOREVER;
        atomic_store(&m->stopped_any, 1);
        atomic_store(&m->maybe_shut, 1);
        CNT(C_HOST_SHUT);
        btm_status s = btm_shut_down(m->h, to, P(20) ? NULL : &still);
        trace("shut_down(m%d, %u) -> %s still %zu", m->inc, to, st(s), still);
        if (m->host_shut)
            expect(s, B(BTM_STATUS_ALREADY_SHUT_DOWN), "shut_down (second)");
        else
            expect(s, B(0) | B(9) | (atomic_load(&m->task_shut) ? B(8) : 0), "shut_down");
        if (s == BTM_STATUS_ALREADY_SHUT_DOWN && still != 999) violation("shut_down ALREADY_SHUT_DOWN wrote still_running");
        if (s == BTM_STATUS_TIMED_OUT && to == BTM_WAIT_FOREVER) violation("shut_down(FOREVER) timed out");
        if (!m->host_shut && s == 0 && !atomic_load(&m->task_shut)) m->shut_ok = 1;
        m->host_shut = 1;
        atomic_store(&m->shut, 1);
        /* nothing is delivered after a shut down */
        host_poll(m, 8, 0);
        break;
    }
    case OP_DESTROY: {
        if (!atomic_load(&m->shut) && P(75)) break;
        int slot = m->slot;
        mgr_destroy(m, P(30));
        g_slot[slot] = mgr_create(slot);
        break;
    }
    case OP_BAD:
        op_bad_input(m);
        break;
    case OP_FD: {
        int32_t fd = -1;
        expect(btm_get_event_fd(m->h, &fd), B(0), "get_event_fd");
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, 0);
        trace("event_fd(m%d) readable %d", m->inc, pr);
        break;
    }
    }
}

/* ------------------------------------------------------------------ */
/* End of a seed: drain, checks                                        */
/* ------------------------------------------------------------------ */

static void clean_drain(mgr *m) {
    /* a fresh counting notify, then drain: every later event must notify */
    notifyud *nu = tnew(sizeof(notifyud), K_NOTIFY, m);
    nu->m = m;
    nu->counting = 1;
    expect(btm_set_task_hooks(m->h, NULL, NULL, NULL, NULL), B(0), "set_task_hooks(off)");
    expect(btm_set_notify(m->h, notify_fn, nu, tfree), B(0), "set_notify(counting)");
    int32_t fd = -1;
    expect(btm_get_event_fd(m->h, &fd), B(0), "get_event_fd");
    expect(btm_start_processing(m->h), atomic_load(&m->maybe_shut) ? B(0) | B(7) : B(0), "start (drain)");
    uint64_t deadline = now_us() + 60000000ull;
    long snap = 0;
    bool drained_once = false;
    int quiet = 0;
    trace("drain m%d", m->inc);
    for (;;) {
        atomic_fetch_add(&g_heartbeat, 1);
        if (now_us() > deadline) {
            btm_stats s;
            btm_get_stats(m->h, &s);
            violation("m%d did not become idle within 60 s (queued %" PRIu64 " blocked %" PRIu64 " running %" PRIu64
                      " undelivered %" PRIu64 ")", m->inc, s.queued, s.blocked, s.running, s.undelivered);
            return;
        }
        btm_start_processing(m->h);
        btm_status w = btm_wait_idle(m->h, 200);
        expect(w, B(0) | B(9), "wait_idle (drain)");
        if (w != 0) continue;
        /* idle: if we drained before, pending events must have notified
         * and made the descriptor readable */
        btm_stats s;
        bool pending_checked = false;
        if (drained_once) {
            struct pollfd pfd = {fd, POLLIN, 0};
            int readable = poll(&pfd, 1, 300);
            uint64_t until = now_us() + 300000;
            while (atomic_load(&m->notify_count) == snap && now_us() < until) sleep_us(1000);
            long nc = atomic_load(&m->notify_count);
            atomic_fetch_add(&m->poll_gen, 0);
            int n = host_poll(m, 64, 0);
            pending_checked = true;
            CNT(C_WAKE_CHECK);
            if (n > 0 && !atomic_load(&m->shut)) {
                if (nc == snap) violation("m%d: %d events pending after a drain but no notify call (lost wake-up)", m->inc, n);
                if (readable != 1) violation("m%d: %d events pending but the event fd is not readable", m->inc, n);
            }
            if (n > 0) {
                while (host_poll(m, 64, 0) == 64) {
                }
            } else if (readable == 1 && !atomic_load(&m->shut)) {
                /* readable though nothing was pending? poll again to see */
                violation("m%d: event fd readable with no event pending", m->inc);
            }
            (void)pending_checked;
        }
        /* drain */
        for (;;) {
            snap = atomic_load(&m->notify_count);
            int n = host_poll(m, 64, 0);
            if (n < 64) break;
        }
        drained_once = true;
        expect(btm_get_stats(m->h, &s), B(0), "get_stats (drain)");
        if (s.queued == 0 && s.blocked == 0 && s.running == 0 && s.undelivered == 0) {
            if (++quiet >= 2) break;
        } else
            quiet = 0;
    }
}

static bool same_group(const task_rec *r, uint32_t gk, uint64_t gv) {
    if (r->gkind == 0) return gk == 0;
    return r->gkind == gk && r->gval == gv;
}

static void describe(mgr *m, uint64_t id) {
    task_rec *r = rec_of(m, id);
    if (!r) return;
    char up[200] = "";
    for (int i = 0; i < r->nup && strlen(up) < 170; i++) snprintf(up + strlen(up), sizeof up - strlen(up), " %" PRIu64, r->up[i]);
    evrec *e = r->finals ? &m->ev[r->final_ev] : NULL;
    pthread_mutex_lock(&g_print_mu);
    fprintf(stdout,
            "    task %" PRIu64 ": added %d pt %d from_task %d group %u/%" PRIu64 " up [%s] add %" PRIu64 "..%" PRIu64
            " ran %d start %" PRIu64 " end %" PRIu64 " fail %d \"%s\" saw_stopped %d result %u finals %d kind %d msg \"%s\" poll %" PRIu64 "\n",
            id, r->added, r->is_pt, r->from_task, r->gkind, r->gval, up, r->add_start, r->add_ret, r->run_count, r->start_seq,
            r->end_seq, r->called_fail, r->fail_msg, r->saw_stopped, r->result_serial, r->finals, r->final_kind, e ? e->msg : "",
            r->final_poll_start);
    fflush(stdout);
    pthread_mutex_unlock(&g_print_mu);
}

/* Is `target` reachable from `from` along recorded upstream edges (only
 * through pass-through tasks when pt_only)? Breadth-first, no depth limit. */
static uint32_t *g_visit;
static uint32_t g_visit_gen;
static uint64_t *g_queue;
static bool in_closure(mgr *m, uint64_t from, uint64_t target, int depth, bool pt_only) {
    (void)depth;
    if (!g_visit) {
        g_visit = calloc(MAX_ID, sizeof(uint32_t));
        g_queue = malloc(MAX_ID * sizeof(uint64_t));
    }
    if (++g_visit_gen == 0) {
        memset(g_visit, 0, MAX_ID * sizeof(uint32_t));
        g_visit_gen = 1;
    }
    size_t qh = 0, qt = 0;
    g_queue[qt++] = from;
    g_visit[from] = g_visit_gen;
    while (qh < qt) {
        task_rec *r = rec_of(m, g_queue[qh++]);
        if (!r) continue;
        for (int i = 0; i < r->nup; i++) {
            uint64_t u = r->up[i];
            if (u == target) return true;
            task_rec *ur = rec_of(m, u);
            if (!ur || g_visit[u] == g_visit_gen) continue;
            if (pt_only && !ur->is_pt) continue;
            g_visit[u] = g_visit_gen;
            g_queue[qt++] = u;
        }
    }
    return false;
}

/* D ran: every upstream that was live at D's add and got a final event must
 * have ended before D started. */
static void check_order(mgr *m, uint64_t did, task_rec *d, uint64_t from, int depth) {
    task_rec *f = rec_of(m, from);
    if (!f || depth > 10) return;
    for (int i = 0; i < f->nup; i++) {
        uint64_t u = f->up[i];
        task_rec *ur = rec_of(m, u);
        if (!ur || !ur->added || u == from) continue;
        if (ur->finals != 1) continue;              /* stopped (or never delivered): no promise */
        if (ur->final_poll_start <= f->add_ret) continue; /* maybe not live at the add */
        if (ur->final_kind == BTM_EVENT_TASK_FAILED) {
            violation("m%d: task %" PRIu64 " ran though its upstream %" PRIu64 " (live at its add) failed", m->inc, did, u);
            continue;
        }
        if (ur->is_pt)
            check_order(m, did, d, u, depth + 1);
        else if ((CNT(C_ORDER_CHECK), ur->run_count == 0 || ur->end_seq == 0 || ur->end_seq > d->start_seq))
            violation("m%d: task %" PRIu64 " started before its upstream %" PRIu64 " ended", m->inc, did, u);
        else if (depth == 0 && ur->result_serial) {
            bool found = false;
            CNT(C_SEEN_CHECK);
            for (int k = 0; k < d->nseen; k++)
                if (d->seen_tid[k] == u && d->seen_ser[k] == ur->result_serial) found = true;
            if (!found) violation("m%d: task %" PRIu64 " did not see the result of its upstream %" PRIu64, m->inc, did, u);
        }
    }
}

static void final_checks(mgr *m) {
    uint64_t hi = atomic_load(&m->max_id);
    long no_final = 0, finals = 0;
    for (uint64_t id = 1; id <= hi; id++) {
        task_rec *r = rec_of(m, id);
        if (!r) break;
        if (!r->added) {
            violation("m%d: id %" PRIu64 " was skipped (ids not consecutive: a rejected add used an id?)", m->inc, id);
            continue;
        }
        if (r->is_pt && r->run_count) violation("m%d: pass-through %" PRIu64 " ran a function", m->inc, id);
        if (r->run_count > 1) violation("m%d: task %" PRIu64 " ran %d times", m->inc, id, r->run_count);
        if (r->is_pt && (r->hook_start || r->hook_end)) violation("m%d: pass-through %" PRIu64 " reported to hooks", m->inc, id);
        if (r->hook_start != r->hook_end) violation("m%d: task %" PRIu64 ": %d on_start, %d on_end", m->inc, id, r->hook_start, r->hook_end);
        if (r->hook_start && !r->run_count) violation("m%d: hooks for task %" PRIu64 " that never ran", m->inc, id);
        if (r->hook_start > 1) violation("m%d: on_start twice for %" PRIu64, m->inc, id);
        if (r->hook_start) {
            uint64_t want = ((uint64_t)r->gkind << 60) ^ r->gval;
            if (r->gkind == 0 ? (r->hook_start_g >> 60) != 0 : r->hook_start_g != want)
                violation("m%d: on_start hook of %" PRIu64 " with the wrong group", m->inc, id);
        }
        if (r->finals) finals++;
        else no_final++;
        if (r->saw_stopped && r->finals)
            violation("m%d: task %" PRIu64 " saw is_stopped but got a final event", m->inc, id);
        if (r->finals) {
            evrec *e = &m->ev[r->final_ev];
            if (!same_group(r, e->gkind, e->gval))
                violation("m%d: final event of %" PRIu64 " has group %u/%" PRIu64 ", added with %u/%" PRIu64, m->inc, id, e->gkind,
                          e->gval, r->gkind, r->gval);
            if (r->final_kind == BTM_EVENT_TASK_COMPLETED) {
                if (!r->is_pt && r->run_count == 0) violation("m%d: task %" PRIu64 " completed without running", m->inc, id);
                if (r->run_count && r->called_fail) violation("m%d: task %" PRIu64 " called fail but completed", m->inc, id);
                if (!r->is_pt) {
                    if (r->result_serial) {
                        if (e->nres != 1 || e->res_tid[0] != id || e->res_ser[0] != r->result_serial)
                            violation("m%d: completed event of %" PRIu64 " has %u results, not its own result", m->inc, id, e->nres);
                    } else if (e->nres != 0)
                        violation("m%d: completed event of %" PRIu64 " (no result set) has %u results", m->inc, id, e->nres);
                } else {
                    int k = 0;
                    CNT(C_PT);
                    if (r->payload_serial) {
                        if (e->nres < 1 || e->res_tid[0] != id || e->res_ser[0] != r->payload_serial)
                            violation("m%d: pass-through %" PRIu64 "'s event does not start with its payload", m->inc, id);
                        k = 1;
                    }
                    for (; k < e->nres; k++) {
                        uint64_t src = e->res_tid[k];
                        trk *t = e->res_ser[k] ? &g_trk[e->res_ser[k]] : NULL;
                        if (!t || atomic_load(&t->owner) != src)
                            violation("m%d: pass-through %" PRIu64 " entry %d: data not produced by task %" PRIu64, m->inc, id, k, src);
                        if (!in_closure(m, id, src, 0, true))
                            violation("m%d: pass-through %" PRIu64 " gathered a value of %" PRIu64 ", not upstream", m->inc, id, src);
                    }
                }
            } else {
                if (r->run_count && !r->called_fail) violation("m%d: task %" PRIu64 " ran without failing but failed", m->inc, id);
                if (r->run_count && r->called_fail) {
                    if (strcmp(e->msg, r->fail_msg) != 0 || strcmp(e->det, r->fail_det) != 0)
                        violation("m%d: failed event of %" PRIu64 ": message \"%s\"/\"%s\", want \"%s\"/\"%s\"", m->inc, id, e->msg,
                                  e->det, r->fail_msg, r->fail_det);
                } else if (!r->run_count) {
                    /* cascade: the message of a failed ancestor */
                    CNT(C_CASCADE);
                    uint64_t a = 0;
                    if (strncmp(e->msg, "F:", 2) == 0) a = strtoull(e->msg + 2, NULL, 10);
                    task_rec *ar = rec_of(m, a);
                    if (a) {
                        if (!ar || !ar->called_fail || !in_closure(m, id, a, 0, false)) {
                            violation("m%d: %" PRIu64 " failed with \"%s\", not from a failed ancestor", m->inc, id, e->msg);
                            describe(m, id);
                            describe(m, a);
                        }
                        else if (strcmp(e->det, ar->fail_det) != 0)
                            violation("m%d: cascade to %" PRIu64 " details \"%s\" != \"%s\"", m->inc, id, e->det, ar->fail_det);
                    } else if (strcmp(e->msg, "task failed") != 0)
                        violation("m%d: %" PRIu64 " failed with unexpected message \"%s\"", m->inc, id, e->msg);
                }
            }
        }
        if (r->run_count && r->start_seq) check_order(m, id, r, id, 0);
        /* values seen: each from a task in the pass-through closure */
        for (int k = 0; k < r->nseen; k++) {
            uint64_t src = r->seen_tid[k];
            trk *t = r->seen_ser[k] ? &g_trk[r->seen_ser[k]] : NULL;
            if (!t || atomic_load(&t->owner) != src)
                violation("m%d: task %" PRIu64 " saw an upstream value not produced by task %" PRIu64, m->inc, id, src);
            if (!in_closure(m, id, src, 0, true))
                violation("m%d: task %" PRIu64 " saw a value of %" PRIu64 ", not an upstream", m->inc, id, src);
        }
    }
    /* events */
    for (size_t i = 0; i < m->nev; i++) {
        evrec *e = &m->ev[i];
        if (e->kind == BTM_EVENT_GROUP_FINISHED) {
            CNT(C_GF);
            if (i == 0) {
                violation("m%d: group finished as the first event", m->inc);
                continue;
            }
            evrec *p = &m->ev[i - 1];
            task_rec *pr = rec_of(m, p->tid);
            if ((p->kind != BTM_EVENT_TASK_COMPLETED && p->kind != BTM_EVENT_TASK_FAILED) || !pr || !same_group(pr, e->gkind, e->gval))
                violation("m%d: group finished (%u/%" PRIu64 ") at event %zu does not follow a final event of that group", m->inc,
                          e->gkind, e->gval, i);
            uint64_t decided = p->poll_start;
            for (uint64_t id = 1; id <= hi; id++) {
                task_rec *r = rec_of(m, id);
                if (!r || !r->added || !same_group(r, e->gkind, e->gval)) continue;
                if (r->add_ret && r->add_ret < decided && r->finals && r->final_ev > (long)i)
                    violation("m%d: group %u/%" PRIu64 " finished (event %zu) while task %" PRIu64 " was live (final event %ld)", m->inc,
                              e->gkind, e->gval, i, id, r->final_ev);
            }
            int idx;
            if (e->gkind == BTM_GROUP_KIND_NAMED) {
                if (!is_named_value(m, e->gval, &idx) || !e->has_gname || strcmp(e->gname, m->nm[idx].name) != 0)
                    violation("m%d: group finished with a wrong group name", m->inc);
            } else if (e->has_gname)
                violation("m%d: group name on a non-named group event", m->inc);
            continue;
        }
        task_rec *r = rec_of(m, e->tid);
        if (!r || !r->added) {
            violation("m%d: event kind %u for unknown id %" PRIu64, m->inc, e->kind, e->tid);
            continue;
        }
        if (!same_group(r, e->gkind, e->gval)) violation("m%d: event kind %u of %" PRIu64 " with wrong group", m->inc, e->kind, e->tid);
        if (e->gkind == BTM_GROUP_KIND_NAMED) {
            int idx;
            if (!is_named_value(m, e->gval, &idx) || !e->has_gname || strcmp(e->gname, m->nm[idx].name) != 0)
                violation("m%d: event of %" PRIu64 " with a wrong group name", m->inc, e->tid);
        } else if (e->has_gname)
            violation("m%d: group name on a non-named group event", m->inc);
        if (e->kind == BTM_EVENT_TASK_PROGRESS) {
            CNT(C_PROGRESS);
            if (r->is_pt || r->run_count == 0) violation("m%d: progress event for %" PRIu64 " which never ran", m->inc, e->tid);
            else if (r->progress_n == 0) violation("m%d: progress event for %" PRIu64 " which reported none successfully", m->inc, e->tid);
            if (r->finals && r->final_ev < (long)i) violation("m%d: progress event of %" PRIu64 " after its final event", m->inc, e->tid);
            if (e->has_msg) {
                char want[16];
                snprintf(want, sizeof want, "P:%" PRIu64 ":", e->tid);
                if (strncmp(e->msg, want, strlen(want)) != 0) violation("m%d: progress message \"%s\" of %" PRIu64, m->inc, e->msg, e->tid);
            }
        }
        /* stops: no event delivered by a poll that began after a stop returned */
        for (size_t k = 0; k < m->nstops; k++) {
            stoprec *s = &m->stops[k];
            if (e->poll_start <= s->end) continue;
            bool covered = false;
            if (s->kind == 0)
                covered = s->id == e->tid;
            else if (r->add_ret && r->add_ret < s->start && !(r->finals && r->final_poll_end < s->start)) {
                covered = s->kind == 2 || same_group(r, s->gkind, s->gval);
            }
            if (covered)
                violation("m%d: event kind %u of task %" PRIu64 " delivered after a %s returned OK", m->inc, e->kind, e->tid,
                          s->kind == 0 ? "stop_task of it" : s->kind == 1 ? "stop_task_group of its group" : "stop_all_tasks");
        }
    }
    /* no-stop managers: every task exactly one final event; groups finish */
    if (m->clean_end && !atomic_load(&m->stopped_any)) {
        if (no_final) violation("m%d (no stops): %ld tasks without a final event", m->inc, no_final);
    }
    (void)finals;
}

static void check_accounting(mgr *m) {
    btm_stats s;
    expect(btm_get_stats(m->h, &s), B(0), "get_stats (end)");
    uint64_t hi = atomic_load(&m->max_id);
    uint64_t finals = 0, none = 0;
    pthread_mutex_lock(&m->mu);
    for (uint64_t id = 1; id <= hi; id++) {
        task_rec *r = rec_of(m, id);
        if (!r) break;
        if (r->finals) finals++;
        else none++;
    }
    pthread_mutex_unlock(&m->mu);
    if (s.queued || s.blocked || s.running || s.undelivered)
        violation("m%d: after the drain queued %" PRIu64 " blocked %" PRIu64 " running %" PRIu64 " undelivered %" PRIu64, m->inc, s.queued,
                  s.blocked, s.running, s.undelivered);
    if (hi != finals + s.stopped_total)
        violation("m%d: %" PRIu64 " tasks added != %" PRIu64 " final events + %" PRIu64 " stopped", m->inc, hi, finals, s.stopped_total);
    if (!atomic_load(&m->reports_missing) && atomic_load(&m->report_sum) != s.stopped_total)
        violation("m%d: stop reports add up to %lu, stopped_total %" PRIu64, m->inc, atomic_load(&m->report_sum), s.stopped_total);
    if (s.completed_total + s.failed_total < finals)
        violation("m%d: completed+failed totals %" PRIu64 " < final events %" PRIu64, m->inc, s.completed_total + s.failed_total, finals);
    /* group stats all zero */
    btm_group_stats gs;
    expect(btm_get_group_stats(m->h, NULL, &gs), B(0), "group stats (end)");
    if (gs.queued || gs.blocked || gs.running || gs.undelivered) violation("m%d: default group stats not zero at the end", m->inc);
    /* group finished completeness without stops */
    if (!atomic_load(&m->stopped_any)) {
        /* for each group with final events, the last event of that group is its group finished */
        for (size_t i = 0; i < m->nev; i++) {
            evrec *e = &m->ev[i];
            if (e->kind != BTM_EVENT_TASK_COMPLETED && e->kind != BTM_EVENT_TASK_FAILED) continue;
            task_rec *r = rec_of(m, e->tid);
            if (!r) continue;
            /* is this the last final event of its group? */
            bool later = false;
            size_t j;
            for (j = i + 1; j < m->nev && !later; j++) {
                evrec *f = &m->ev[j];
                if (f->kind == BTM_EVENT_TASK_COMPLETED || f->kind == BTM_EVENT_TASK_FAILED) {
                    task_rec *fr = rec_of(m, f->tid);
                    if (fr && fr->gkind == r->gkind && (r->gkind == 0 || fr->gval == r->gval)) later = true;
                }
            }
            if (!later) {
                bool gf = false;
                for (j = i + 1; j < m->nev; j++)
                    if (m->ev[j].kind == BTM_EVENT_GROUP_FINISHED && same_group(r, m->ev[j].gkind, m->ev[j].gval)) gf = true;
                if (!gf) violation("m%d (no stops): group %u/%" PRIu64 " never finished after its last task %" PRIu64, m->inc, r->gkind,
                                   r->gval, e->tid);
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* Watchdog, main                                                      */
/* ------------------------------------------------------------------ */

static void *watchdog(void *arg) {
    (void)arg;
    long last = -1;
    unsigned still = 0;
    for (;;) {
        sleep(1);
        long hb = atomic_load(&g_heartbeat);
        if (hb != last) {
            last = hb;
            still = 0;
            continue;
        }
        if (++still >= g_wd_seconds) {
            pthread_mutex_lock(&g_print_mu);
            fprintf(stdout, "WATCHDOG seed=%" PRIu64 " op=%ld: no progress for %u s (hang)\n", g_seed, (long)atomic_load(&g_opidx),
                    g_wd_seconds);
            fflush(stdout);
            pthread_mutex_unlock(&g_print_mu);
            dump_trace(60);
            _exit(3);
        }
    }
    return NULL;
}

static void free_seed(void) {
    mgr *m = g_all;
    while (m) {
        mgr *n = m->next_all;
        for (uint64_t id = 0; id < MAX_ID; id++) {
            free(m->tasks[id].up);
            free(m->tasks[id].seen_tid);
            free(m->tasks[id].seen_ser);
        }
        free(m->tasks);
        for (size_t i = 0; i < m->nev; i++) {
            free(m->ev[i].res_tid);
            free(m->ev[i].res_ser);
        }
        free(m->ev);
        free(m->stash);
        free(m->stops);
        pthread_mutex_destroy(&m->mu);
        pthread_rwlock_destroy(&m->guard);
        free(m);
        m = n;
    }
    g_all = NULL;
    unsigned n = atomic_load(&g_ntrk);
    for (unsigned i = 1; i < n; i++) free(g_trk[i].p);
    memset(g_trk, 0, sizeof(trk) * n);
    atomic_store(&g_ntrk, 1);
}

static int run_seed(uint64_t seed, long ops) {
    g_seed = seed;
    g_rng = seed * 0x2545F4914F6CDD1Dull + 1;
    long v0 = atomic_load(&g_violations);
    g_ring_n = 0;
    g_inc = 0;
    g_nslots = 1 + (int)R(NSLOT);
    for (int i = 0; i < g_nslots; i++) g_slot[i] = mgr_create(i);
    for (long i = 0; i < ops; i++) {
        atomic_store(&g_opidx, i);
        atomic_fetch_add(&g_heartbeat, 1);
        host_op();
    }
    atomic_store(&g_opidx, ops);
    atomic_store(&g_quiet, 1);
    /* end: each manager either drained cleanly or destroyed abruptly */
    for (int i = 0; i < g_nslots; i++) {
        mgr *m = g_slot[i];
        if (!m) continue;
        atomic_fetch_add(&g_heartbeat, 1);
        if (!m->host_shut && !atomic_load(&m->maybe_shut) && P(70)) {
            m->clean_end = 1;
            CNT(C_CLEAN);
            if (m->no_stops && !atomic_load(&m->stopped_any)) CNT(C_NOSTOP_CLEAN);
            clean_drain(m);
            if (!atomic_load(&m->maybe_shut)) check_accounting(m);
            else m->clean_end = 0;
        }
        mgr_destroy(m, P(40));
    }
    /* every tracked object freed exactly once (threads left running by a
     * timed-out shut down finish on their own) */
    uint64_t deadline = now_us() + 30000000ull;
    unsigned n = atomic_load(&g_ntrk);
    for (;;) {
        atomic_fetch_add(&g_heartbeat, 1);
        bool all = true;
        for (unsigned i = 1; i < n && all; i++)
            if (atomic_load(&g_trk[i].frees) == 0 && g_trk[i].kind != K_UNOWNED) all = false;
        bool threads = true;
        for (mgr *m = g_all; m; m = m->next_all)
            if (atomic_load(&m->thread_starts) != atomic_load(&m->thread_stops)) threads = false;
        if (all && threads) break;
        if (now_us() > deadline) break;
        sleep_us(2000);
    }
    sleep_us(20000);
    atomic_store(&g_quiet, 0);
    n = atomic_load(&g_ntrk);
    for (unsigned i = 1; i < n; i++) {
        trk *t = &g_trk[i];
        int f = atomic_load(&t->frees);
        if (t->kind == K_UNOWNED) {
            if (f) violation("unowned userdata freed by btm");
            continue;
        }
        if (f != 1)
            violation("%s serial %u (m%d, owner task %" PRIu64 ") freed %d times", kind_name[t->kind], i, t->m ? t->m->inc : -1,
                      (uint64_t)atomic_load(&t->owner), f);
    }
    for (mgr *m = g_all; m; m = m->next_all) {
        if (atomic_load(&m->thread_starts) != atomic_load(&m->thread_stops))
            violation("m%d: %d thread_start, %d thread_stop", m->inc, atomic_load(&m->thread_starts), atomic_load(&m->thread_stops));
        final_checks(m);
    }
    long nv = atomic_load(&g_violations) - v0;
    long tasks = 0, events = 0;
    for (mgr *m = g_all; m; m = m->next_all) {
        tasks += (long)atomic_load(&m->max_id);
        events += (long)m->nev;
    }
    fprintf(stdout, "seed %" PRIu64 ": %ld ops, %d managers, %ld tasks, %ld events, %u objects: %s\n", seed, ops, g_inc, tasks, events,
            n - 1, nv ? "FAIL" : "ok");
    fflush(stdout);
    if (nv) dump_trace(80);
    free_seed();
    return nv ? 1 : 0;
}

int main(int argc, char **argv) {
    uint64_t seed = 1, nseeds = 1;
    long ops = 2000;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seeds") && i + 1 < argc) nseeds = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--ops") && i + 1 < argc) ops = strtol(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--keep-going")) keep = 1;
        else if (!strcmp(argv[i], "--trace")) g_trace = 1;
        else if (!strcmp(argv[i], "--destroy-reentry-all")) g_destroy_reentry_all = 1;
        else if (!strcmp(argv[i], "--no-destroy-reentry")) g_destroy_reentry_all = 0;
        else if (!strcmp(argv[i], "--wd") && i + 1 < argc) g_wd_seconds = (unsigned)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--mask") && i + 1 < argc) g_mask = strtoull(argv[++i], NULL, 16);
        else {
            fprintf(stderr, "usage: %s [--seed S] [--seeds K] [--ops N] [--keep-going] [--trace] [--wd S] [--mask HEX] [--no-destroy-reentry]\nmask bits:", argv[0]);
            for (int k = 0; k < NOPS; k++) fprintf(stderr, " %d=%s", k, op_names[k]);
            fputc('\n', stderr);
            return 2;
        }
    }
    tl_is_host = 1;
    g_trk = calloc(MAX_TRK, sizeof(trk));
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, NULL);
    pthread_detach(wd);
    int rc = 0;
    for (uint64_t s = seed; s < seed + nseeds; s++) {
        if (run_seed(s, ops)) {
            rc = 1;
            if (!keep) break;
        }
    }
    sleep_us(50000); /* let workers left by timed-out shut downs exit */
    fprintf(stdout, "coverage:");
    for (int k = 0; k < NCNT; k++) fprintf(stdout, " %s=%ld;", cnt_name[k], atomic_load(&g_cnt[k]));
    fprintf(stdout, "\nviolations: %ld\n", atomic_load(&g_violations));
    free(g_trk);
    free(g_visit);
    free(g_queue);
    return rc;
}
