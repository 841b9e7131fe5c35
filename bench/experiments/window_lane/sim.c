/* Session 41: does W6's gap on the Intel VM come from the lane's shape (one
 * ring per priority, which a worker scans from the best at every take) or
 * from exact priority order itself? A model of the lane's hot path in C,
 * without btm: a host adds N empty tasks, then drains the two workers'
 * outcome queues. It keeps the lane's locked instructions (per add: the
 * state lock's acquire and release; per take: the take's fence, the claim's
 * compare-and-swaps, the `cont` word's swap, the outcome's fence), its
 * newest-entry pause (checked before the next take, as btm does; checked
 * right after the claim instead, the model's one-level adds ran 110-160 ns
 * against ~35), its back-off after a lost pop, and a host drain that does
 * not spin on the workers' lines; the rest of btm's bookkeeping is a busy
 * loop (HOST_WORK, WORKER_WORK rounds of ~4 instructions).
 *
 *   levels: one ring per priority, scanned from the best (btm's lane).
 *   window: one ring for every priority; a worker reads the published
 *           entries from the head (up to WINDOW of them) and claims the best
 *           (highest priority, then oldest). Exact only while the backlog
 *           fits in the window.
 *   hybrid: window, exact: adds go to the window ring while it spans
 *           fewer than WINDOW_ADD positions from its head (taken entries
 *           the head has not passed included), else to their priority's
 *           ring; a take claims the best of the window's best and the best
 *           level's oldest entry (ties: the older id).
 *
 * `same` gives every task priority 0 (W1's shape), `rr` priorities 0-3 in
 * turn (W6's); the line printed says which share of the adds went to the
 * window ring. Results (docs/ENGINE_PLAN.md, session 41; 5-9 interleaved
 * rounds per set): at the default HOST_WORK (40) the model is bound by its
 * workers and reproduces btm's gap (levels: rr 73-80 ns per task, same
 * 42-53, 1.5-1.7x). It does not test one ring for every priority: the
 * hybrid sent 0.0% of rr's adds and 0.1-0.2% of same's to its window (a
 * review's counters, session 41): an exact order leaves the low priorities'
 * entries waiting behind a backlog, the window stays full, and the hybrid
 * runs as the levels plus a scan (rr 77-88, same 53-68). With a slower
 * host (HOST_WORK 100 / 160) the window carries 12-53% of same's adds and
 * still none of rr's, and the levels' own gap shrinks to 1.20x / 1.04x:
 * the model does not reproduce the host-bound W6 runs of btm (session 37:
 * rr's adds 78-104 ns against 36), where a single ring might still help.
 * With WORKER_WORK=0 (HOST_WORK 40 / 70) the window still took at most
 * 0.4% of the adds: in rr the lowest priority's entries pile up whenever
 * the workers fall behind, the exact order keeps them waiting, and a full
 * window stays full.
 *
 * Usage: sim <levels|window|hybrid> <same|rr> <N>; one line, ns per task.
 * Build: gcc -O2 -pthread -o /tmp/sim bench/experiments/window_lane/sim.c
 * Interleaved rounds: [HOST_WORK=k] python3 bench/experiments/window_lane/ab.py ROUNDS N
 * Not part of the tests or of bench/run.py. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAP (1u << 21) /* no wrap in a run: N + 64 <= CAP */
#define LEVELS 4
#define WINDOW 64
#define WINDOW_ADD 16 /* hybrid: adds go to the window while it spans fewer positions from its head */
#define NEWEST_PAUSES 16
#define LOST_PAUSES 100 /* ~1 us at ~10 ns a PAUSE */

typedef struct {
    _Atomic uint64_t seq; /* pos + 1: published */
    _Atomic uint64_t state; /* 0 queued, 1 taken */
    uint64_t id;
    int prio;
    void (*fn)(void *);
    void *data;
} __attribute__((aligned(64))) slot_t;

typedef struct {
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) uint64_t tail; /* the host's own */
    _Alignas(64) slot_t *slots; /* read-only */
} ring_t;

typedef struct {
    _Alignas(64) _Atomic uint64_t pushed;
    _Alignas(64) uint64_t *buf; /* read-only */
} outq_t;

static ring_t rings[LEVELS];
static ring_t window;
static uint64_t cached_head; /* the host's */
static size_t window_adds; /* the host's: adds that went to the window ring */
static outq_t outq[2];
static _Alignas(64) _Atomic int lock_word;
static _Alignas(64) _Atomic int done;
static _Alignas(64) _Atomic uint64_t cont_word[2 * 8];
static volatile uint64_t sink[2 * 8];
static size_t max_backlog[2 * 8];
static int window_mode, host_work, worker_work;
static uint64_t *table;

static void __attribute__((noinline)) empty_task(void *d) { (void)d; }

static inline uint64_t busy(uint64_t x, int rounds) {
    for (int i = 0; i < rounds; i++) {
        x = x * 6364136223846793005ull + 1;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void host_add(uint64_t id, int prio) {
    table[(id * 4) % (1u << 22)] = busy(id, host_work);
    int z = 0;
    while (!atomic_compare_exchange_weak(&lock_word, &z, 1)) z = 0;
    ring_t *r = &rings[prio];
    if (window_mode) {
        /* The window ring while its backlog fits in the window (hybrid:
         * past it, the priority's own ring, until the workers catch up). */
        r = &window;
        if (r->tail - cached_head >= WINDOW_ADD) {
            cached_head = atomic_load_explicit(&r->head, memory_order_relaxed);
            if (window_mode == 2 && r->tail - cached_head >= WINDOW_ADD) r = &rings[prio];
        }
        window_adds += r == &window;
    }
    uint64_t pos = r->tail++;
    slot_t *s = &r->slots[pos];
    atomic_store_explicit(&s->state, 0, memory_order_relaxed);
    s->id = id;
    s->prio = prio;
    s->fn = empty_task;
    s->data = NULL;
    atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
    __builtin_prefetch(&r->slots[pos + 8], 1);
    z = 1;
    atomic_compare_exchange_strong(&lock_word, &z, 0); /* parking_lot's unlock */
}

enum { EMPTY, LOST, TAKEN };

static int take_levels(slot_t **out) {
    for (int l = LEVELS - 1; l >= 0; l--) {
        ring_t *r = &rings[l];
        uint64_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
        slot_t *s = &r->slots[pos];
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != pos + 1) continue; /* empty */
        if (!atomic_compare_exchange_strong(&r->head, &pos, pos + 1)) return LOST;
        uint64_t q = 0;
        atomic_compare_exchange_strong(&s->state, &q, 1);
        *out = s;
        return TAKEN;
    }
    return EMPTY;
}

static int take_window(slot_t **out, size_t *backlog) {
    ring_t *r = &window;
    /* Hybrid: the best level's oldest entry first (levels hold adds made
     * while the window was full: in the keep-up regime they stay empty and
     * unwritten, so these reads stay in the worker's cache). */
    ring_t *lr = NULL;
    slot_t *ls = NULL;
    uint64_t lpos = 0;
    if (window_mode == 2) {
        for (int l = LEVELS - 1; l >= 0; l--) {
            ring_t *c = &rings[l];
            uint64_t pos = atomic_load_explicit(&c->head, memory_order_relaxed);
            slot_t *s = &c->slots[pos];
            if (atomic_load_explicit(&s->seq, memory_order_acquire) == pos + 1) {
                lr = c;
                ls = s;
                lpos = pos;
                break;
            }
        }
    }
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    slot_t *best = NULL;
    int best_prio = ls ? ls->prio - 1 : -1;
    uint64_t p = head;
    for (; p < head + WINDOW; p++) {
        slot_t *s = &r->slots[p];
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != p + 1) break;
        if (atomic_load_explicit(&s->state, memory_order_relaxed) != 0) continue;
        if (s->prio > best_prio) {
            best_prio = s->prio;
            best = s;
            if (best_prio == LEVELS - 1) break; /* none better */
        }
    }
    if (p - head > *backlog) *backlog = p - head;
    if (ls && (!best || best->prio < ls->prio || (best->prio == ls->prio && ls->id < best->id))) {
        if (!atomic_compare_exchange_strong(&lr->head, &lpos, lpos + 1)) return LOST;
        uint64_t q = 0;
        atomic_compare_exchange_strong(&ls->state, &q, 1);
        *out = ls;
        return TAKEN;
    }
    if (!best) return EMPTY;
    uint64_t q = 0;
    if (!atomic_compare_exchange_strong(&best->state, &q, 1)) return LOST;
    /* The head moves over every taken entry that begins the window (past
     * another worker's move too). */
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (atomic_load_explicit(&r->slots[h].seq, memory_order_acquire) == h + 1 &&
           atomic_load_explicit(&r->slots[h].state, memory_order_relaxed) != 0) {
        if (atomic_compare_exchange_strong(&r->head, &h, h + 1)) h++;
    }
    *out = best;
    return TAKEN;
}

static void *worker(void *arg) {
    int w = (int)(intptr_t)arg;
    outq_t *q = &outq[w];
    unsigned backoff = 1;
    slot_t *claimed = NULL;
    while (!atomic_load_explicit(&done, memory_order_relaxed)) {
        /* btm's newest-entry pause, checked before the take */
        if (claimed && atomic_load_explicit(&claimed[1].seq, memory_order_relaxed) == 0)
            for (int i = 0; i < NEWEST_PAUSES; i++) _mm_pause();
        claimed = NULL;
        atomic_thread_fence(memory_order_seq_cst); /* the take's fence */
        slot_t *s = NULL;
        int t = window_mode ? take_window(&s, &max_backlog[w * 8]) : take_levels(&s);
        if (t == LOST) {
            for (int i = 0; i < LOST_PAUSES; i++) _mm_pause();
            continue;
        }
        if (t == EMPTY) {
            for (unsigned i = 0; i < backoff; i++) _mm_pause();
            if (backoff < 64)
                backoff *= 2;
            else
                sched_yield(); /* the host may share this CPU */
            continue;
        }
        backoff = 1;
        claimed = s;
        uint64_t id = s->id;
        void (*fn)(void *) = s->fn;
        void *data = s->data;
        atomic_store_explicit(&cont_word[w * 8], (id << 2) | 1, memory_order_relaxed);
        fn(data);
        if (worker_work) sink[w * 8] = busy(id, worker_work);
        atomic_exchange(&cont_word[w * 8], 0);
        uint64_t n = atomic_load_explicit(&q->pushed, memory_order_relaxed);
        q->buf[n] = id;
        atomic_store_explicit(&q->pushed, n + 1, memory_order_release);
        atomic_thread_fence(memory_order_seq_cst); /* the outcome's fence */
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sim <levels|window|hybrid> <same|rr> <N>\n");
        return 2;
    }
    window_mode = !strcmp(argv[1], "window") ? 1 : !strcmp(argv[1], "hybrid") ? 2 : 0;
    int rr = !strcmp(argv[2], "rr");
    size_t n = strtoul(argv[3], NULL, 10);
    if (n + 64 + 1 > CAP) return 2;
    host_work = getenv("HOST_WORK") ? atoi(getenv("HOST_WORK")) : 40;
    worker_work = getenv("WORKER_WORK") ? atoi(getenv("WORKER_WORK")) : 25;
    table = malloc((1u << 22) * sizeof(uint64_t));
    memset(table, 1, (1u << 22) * sizeof(uint64_t));
    for (int l = 0; l < LEVELS + 1; l++) {
        ring_t *r = l < LEVELS ? &rings[l] : &window;
        if (l < LEVELS && window_mode == 1) continue;
        if (l == LEVELS && !window_mode) continue;
        r->slots = aligned_alloc(64, (size_t)CAP * sizeof(slot_t));
        memset(r->slots, 0, (size_t)CAP * sizeof(slot_t));
    }
    for (int w = 0; w < 2; w++) {
        outq[w].buf = malloc(CAP * sizeof(uint64_t));
        memset(outq[w].buf, 0, CAP * sizeof(uint64_t));
    }
    pthread_t th[2];
    for (int w = 0; w < 2; w++) pthread_create(&th[w], NULL, worker, (void *)(intptr_t)w);
    uint64_t id = 1;
    for (int i = 0; i < 64; i++, id++) host_add(id, rr ? i % LEVELS : 0);
    while (atomic_load(&outq[0].pushed) + atomic_load(&outq[1].pushed) < 64) _mm_pause();
    size_t pos[2] = {atomic_load(&outq[0].pushed), atomic_load(&outq[1].pushed)};
    size_t base[2] = {pos[0], pos[1]};
    memset(max_backlog, 0, sizeof max_backlog);
    window_adds = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++, id++) host_add(id, rr ? (int)(i % LEVELS) : 0);
    double t_added = now_ns();
    size_t got = 0;
    uint64_t sum = 0;
    while (got < n) {
        size_t before = got;
        for (int w = 0; w < 2; w++) {
            uint64_t p = atomic_load_explicit(&outq[w].pushed, memory_order_acquire);
            while (pos[w] < p) {
                sum += outq[w].buf[pos[w]++];
                got++;
            }
        }
        /* As btm's poll, which reads a worker's count once per run of
         * entries and whose host blocks when a poll finds nothing: not a
         * spin on the workers' lines. */
        if (got - before < 64)
            for (int i = 0; i < 200; i++) _mm_pause();
    }
    double t = now_ns() - t0;
    atomic_store(&done, 1);
    for (int w = 0; w < 2; w++) pthread_join(th[w], NULL);
    size_t bl = max_backlog[0] > max_backlog[8] ? max_backlog[0] : max_backlog[8];
    printf("%s %s %zu: %.1f ns/task (adds %.1f; workers %zu / %zu; largest window %zu; window share %.1f%%; %llu)\n",
           argv[1], argv[2], n, t / (double)n, (t_added - t0) / (double)n, pos[0] - base[0], pos[1] - base[1], bl,
           100.0 * (double)window_adds / (double)n, (unsigned long long)(sum & 0xf));
    return 0;
}
