/* peer_glib.c - GLib peer of the btm side-by-side benchmark.
 *
 * A GThreadPool of 2 exclusive threads (threads created up front and kept,
 * GLib's fastest configuration); each task pushes its job to a GAsyncQueue
 * that the main thread drains, which is where a completion counts as
 * "observed". GThreadPool takes one non-NULL pointer per task, so each task
 * is a caller-owned job {fn, userdata, id, priority}; the job array is
 * allocated and pre-faulted before the clock starts, except in w5 where its
 * memory is what is being measured.
 *
 * Usage: ./peer_glib <w1|w2a|w2b|w3|w4|w5|w6> <N>   (see peer_common.h)
 */
#include <glib.h>

#include "peer_common.h"

#define GATE_ID UINT64_MAX

typedef struct job {
    pc_task_fn fn;
    void *ud;
    uint64_t id;
    int prio;
} job_t;

static GAsyncQueue *done;
static GThreadPool *pool;
static job_t *jobs;
static uint64_t completed, id_sum;

/* w3 bookkeeping (touched by the worker that frees the pool) */
static pthread_mutex_t freed_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freed_cv = PTHREAD_COND_INITIALIZER;
static uint64_t freed, freed_target;
static volatile uint64_t ran_instead;

static void pool_func(gpointer data, gpointer user_data)
{
    job_t *j = (job_t *)data;
    (void)user_data;
    j->fn(j->ud);
    if (j->id == GATE_ID) return;
    if (freed_target) __atomic_add_fetch(&ran_instead, 1, __ATOMIC_RELAXED);
    g_async_queue_push(done, j);
}

static void job_free(gpointer data)
{
    job_t *j = (job_t *)data;
    /* GLib 2.74 leaves one of its own wake-up markers, GUINT_TO_POINTER(1),
     * in the queue when more than one thread was running: skip it. */
    if (data == GUINT_TO_POINTER(1) || j->id == GATE_ID) return;
    free(j->ud);
    j->ud = NULL;
    pthread_mutex_lock(&freed_mu);
    if (++freed == freed_target) pthread_cond_signal(&freed_cv);
    pthread_mutex_unlock(&freed_mu);
}

static void make_pool(int with_free_func)
{
    GError *err = NULL;
    pool = g_thread_pool_new_full(pool_func, NULL, with_free_func ? job_free : NULL, PC_WORKERS,
                                  TRUE, &err);
    if (!pool || err) pc_die("g_thread_pool_new_full failed");
}

static void push(job_t *j, pc_task_fn fn, void *ud, uint64_t id)
{
    j->fn = fn;
    j->ud = ud;
    j->id = id;
    g_thread_pool_push(pool, j, NULL);
}

static void observe(void)
{
    job_t *j = (job_t *)g_async_queue_pop(done);
    completed++;
    id_sum += j->id;
}

static job_t *alloc_jobs(uint64_t n, int prefault)
{
    job_t *p = (job_t *)malloc((n ? n : 1) * sizeof(job_t));
    if (!p) pc_die("out of memory");
    if (prefault) memset(p, 0, (n ? n : 1) * sizeof(job_t));
    return p;
}

static void warm_up(void)
{
    job_t w[PC_WARMUP];
    int i;
    for (i = 0; i < PC_WARMUP; i++) push(&w[i], pc_task(), pc_dummy_ud, (uint64_t)i);
    for (i = 0; i < PC_WARMUP; i++) observe();
    completed = id_sum = 0;
}

static void check_ids(uint64_t n)
{
    if (completed != n || id_sum != n * (n ? n - 1 : 0) / 2)
        pc_die("completions %llu of %llu, id sum mismatch", (unsigned long long)completed,
               (unsigned long long)n);
}

static void block_workers(job_t *gate)
{
    int k;
    for (k = 0; k < PC_WORKERS; k++) push(&gate[k], pc_gate_task, NULL, GATE_ID);
    pc_gate_wait_entered(PC_WORKERS);
}

static void w1(uint64_t n)
{
    pc_task_fn fn = pc_task();
    uint64_t i, t0, t1;
    jobs = alloc_jobs(n, 1);
    t0 = pc_now_ns();
    for (i = 0; i < n; i++) push(&jobs[i], fn, pc_dummy_ud, i);
    for (i = 0; i < n; i++) observe();
    t1 = pc_now_ns();
    check_ids(n);
    pc_report(n, t1 - t0, NULL);
}

static void w2a(void)
{
    uint64_t total = (uint64_t)PC_W2A_CHAINS * PC_W2A_LEN, c, t0, t1;
    pc_task_fn fn = pc_task();
    jobs = alloc_jobs(total, 1);
    t0 = pc_now_ns();
    for (c = 0; c < PC_W2A_CHAINS; c++) push(&jobs[c * PC_W2A_LEN], fn, pc_dummy_ud, c * PC_W2A_LEN);
    while (completed < total) {
        job_t *j = (job_t *)g_async_queue_pop(done);
        completed++;
        id_sum += j->id;
        if (j->id % PC_W2A_LEN != PC_W2A_LEN - 1) push(&jobs[j->id + 1], fn, pc_dummy_ud, j->id + 1);
    }
    t1 = pc_now_ns();
    check_ids(total);
    pc_report(total, t1 - t0,
              ",\"chains\":1000,\"chain_len\":100,\"note\":\"no dependency support: the main "
              "thread submits the next link when it pops its predecessor's completion\"");
}

static void w2b(uint64_t n)
{
    pc_task_fn fn = pc_task();
    uint64_t i, t0, t1;
    jobs = alloc_jobs(n + 1, 1);
    t0 = pc_now_ns();
    for (i = 0; i < n; i++) push(&jobs[i], fn, pc_dummy_ud, i);
    for (i = 0; i < n; i++) observe();
    push(&jobs[n], fn, pc_dummy_ud, n);
    observe();
    t1 = pc_now_ns();
    check_ids(n + 1);
    pc_report(n + 1, t1 - t0,
              ",\"note\":\"no dependency support: the main thread pops the N completions, "
              "then submits the final task\"");
}

static void w3(uint64_t n)
{
    pc_task_fn fn = pc_task();
    job_t gate[PC_WORKERS];
    uint64_t i, t0, t1;
    job_t warm[PC_WARMUP];
    int k;
    g_thread_pool_free(pool, FALSE, TRUE); /* replace the plain pool by one with a free func */
    /* Warm-up: the measured operation once before the clock, on PC_WARMUP
     * queued tasks, as every program of the benchmark does: a pool with
     * them queued is destroyed, then the measured pool is made. */
    make_pool(1);
    block_workers(gate);
    for (k = 0; k < PC_WARMUP; k++) {
        void *ud = malloc(16);
        if (!ud) pc_die("out of memory");
        push(&warm[k], fn, ud, (uint64_t)k);
    }
    freed_target = PC_WARMUP;
    g_thread_pool_free(pool, TRUE, FALSE);
    pc_gate_open();
    pthread_mutex_lock(&freed_mu);
    while (freed < PC_WARMUP) pthread_cond_wait(&freed_cv, &freed_mu);
    freed = 0;
    pthread_mutex_unlock(&freed_mu);
    if (ran_instead) pc_die("a warm-up task ran instead of being cancelled");
    pc_gate_reset();
    make_pool(1);
    block_workers(gate);
    jobs = alloc_jobs(n, 1);
    for (i = 0; i < n; i++) {
        void *ud = malloc(16);
        if (!ud) pc_die("out of memory");
        push(&jobs[i], fn, ud, i);
    }
    freed_target = n;
    t0 = pc_now_ns();
    /* GThreadPool cannot cancel one task; the only cancellation is to destroy
     * the pool with immediate=TRUE. Queued items then go to item_free_func,
     * called by the last worker once the running tasks have returned. */
    g_thread_pool_free(pool, TRUE, FALSE);
    pc_gate_open();
    pthread_mutex_lock(&freed_mu);
    while (freed < n) pthread_cond_wait(&freed_cv, &freed_mu);
    pthread_mutex_unlock(&freed_mu);
    t1 = pc_now_ns();
    if (ran_instead) pc_die("%llu tasks ran instead of being cancelled", (unsigned long long)ran_instead);
    pc_report(n, t1 - t0,
              ",\"note\":\"no per-task or per-group cancel: g_thread_pool_free(pool, immediate=TRUE) "
              "destroys the whole pool; item_free_func (g_thread_pool_new_full) frees each "
              "queued item on the last worker after the running tasks return\"");
    pool = NULL;
}

static void w4(uint64_t n)
{
    pc_task_fn fn = pc_task();
    uint64_t i, t0, t1, total = 0, *lat;
    job_t j;
    char extra[128];
    double med, p99;
    if (n == 0) n = PC_W4_DEFAULT;
    lat = (uint64_t *)malloc(n * sizeof *lat);
    if (!lat) pc_die("out of memory");
    for (i = 0; i < n; i++) {
        t0 = pc_now_ns();
        push(&j, fn, pc_dummy_ud, i);
        observe();
        t1 = pc_now_ns();
        lat[i] = t1 - t0;
        total += lat[i];
    }
    check_ids(n);
    med = pc_percentile_us(lat, n, 50.0);
    p99 = pc_percentile_us(lat, n, 99.0);
    snprintf(extra, sizeof extra, ",\"median_us\":%.3f,\"p99_us\":%.3f", med, p99);
    pc_report(n, total, extra);
    free(lat);
}

static void w5(uint64_t n)
{
    pc_task_fn fn = pc_task();
    job_t gate[PC_WORKERS];
    uint64_t i, t0, t1;
    long before, after;
    char extra[192];
    block_workers(gate);
    before = pc_rss_bytes();
    t0 = pc_now_ns();
    jobs = alloc_jobs(n, 0); /* caller-owned job storage counts */
    for (i = 0; i < n; i++) push(&jobs[i], fn, pc_dummy_ud, i);
    t1 = pc_now_ns();
    after = pc_rss_bytes();
    snprintf(extra, sizeof extra,
             ",\"bytes_per_task\":%.1f,\"rss_delta\":%ld,\"note\":\"includes the caller-owned "
             "job (%zu bytes: fn + userdata + id + priority)\"",
             n ? (double)(after - before) / (double)n : 0.0, after - before, sizeof(job_t));
    pc_report(n, t1 - t0, extra); /* time = adding N tasks to a blocked pool */
    _exit(0); /* workers are still parked on the gate; nothing left to measure */
}

/* Higher priority first; GLib keeps FIFO order among equal priorities. */
static gint by_priority(gconstpointer a, gconstpointer b, gpointer user_data)
{
    (void)user_data;
    return ((const job_t *)b)->prio - ((const job_t *)a)->prio;
}

static void w6(uint64_t n)
{
    pc_task_fn fn = pc_task();
    uint64_t i, t0, t1;
    jobs = alloc_jobs(n, 1);
    for (i = 0; i < n; i++) jobs[i].prio = (int)(i % 4);
    g_thread_pool_set_sort_function(pool, by_priority, NULL);
    t0 = pc_now_ns();
    for (i = 0; i < n; i++) push(&jobs[i], fn, pc_dummy_ud, i);
    for (i = 0; i < n; i++) observe();
    t1 = pc_now_ns();
    check_ids(n);
    pc_report(n, t1 - t0,
              ",\"note\":\"g_thread_pool_set_sort_function: each push is a sorted insert into "
              "a linked list, O(queued tasks) under the queue lock\"");
}

int main(int argc, char **argv)
{
    uint64_t n = pc_parse_args(argc, argv, "glib");
    done = g_async_queue_new();
    make_pool(0);
    warm_up();
    if (strcmp(argv[1], "w1") == 0) w1(n);
    else if (strcmp(argv[1], "w2a") == 0) w2a();
    else if (strcmp(argv[1], "w2b") == 0) w2b(n);
    else if (strcmp(argv[1], "w3") == 0) w3(n);
    else if (strcmp(argv[1], "w4") == 0) w4(n);
    else if (strcmp(argv[1], "w5") == 0) w5(n);
    else if (strcmp(argv[1], "w6") == 0) w6(n);
    if (pool) g_thread_pool_free(pool, FALSE, TRUE);
    g_async_queue_unref(done);
    free(jobs);
    return 0;
}
