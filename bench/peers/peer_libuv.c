/* peer_libuv.c - libuv peer of the btm side-by-side benchmark.
 *
 * uv_queue_work() on a private loop; the task runs on the libuv threadpool
 * (UV_THREADPOOL_SIZE=2), its after_work_cb runs on the loop thread (= the
 * main thread), which is where a completion counts as "observed".
 * Request storage (one uv_work_t per task, owned by the caller as libuv
 * requires) is a single array allocated and pre-faulted before the clock
 * starts, except in w5 where its memory is what is being measured.
 *
 * Usage: ./peer_libuv <w1|w2a|w2b|w3|w4|w5|w6> <N>   (see peer_common.h)
 */
#include <uv.h>

#include "peer_common.h"

typedef struct job {
    uv_work_t req; /* first member: a uv_work_t* is a job_t* */
    pc_task_fn fn;
    void *ud;
    uint64_t id;
} job_t;

static uv_loop_t loop;
static uint64_t completed, id_sum, n_tasks, fan_done, cancelled, ran_instead;
static job_t *jobs;
static job_t final_job;

static void work_cb(uv_work_t *r)
{
    job_t *j = (job_t *)r;
    j->fn(j->ud);
}

static void after_count(uv_work_t *r, int status)
{
    job_t *j = (job_t *)r;
    if (status != 0) pc_die("after_work status %d", status);
    completed++;
    id_sum += j->id;
}

static void queue(job_t *j, pc_task_fn fn, void *ud, uint64_t id, uv_after_work_cb after)
{
    j->fn = fn;
    j->ud = ud;
    j->id = id;
    if (uv_queue_work(&loop, &j->req, work_cb, after) != 0) pc_die("uv_queue_work failed");
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
    completed = id_sum = 0;
    for (i = 0; i < PC_WARMUP; i++) queue(&w[i], pc_task(), pc_dummy_ud, (uint64_t)i, after_count);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (completed != PC_WARMUP) pc_die("warm-up lost completions");
    completed = id_sum = 0;
}

static void check_ids(uint64_t n)
{
    if (completed != n || id_sum != n * (n ? n - 1 : 0) / 2)
        pc_die("completions %llu of %llu, id sum mismatch", (unsigned long long)completed,
               (unsigned long long)n);
}

/* ---- w1 ---- */
static void w1(uint64_t n)
{
    pc_task_fn fn = pc_task();
    uint64_t i, t0, t1;
    jobs = alloc_jobs(n, 1);
    t0 = pc_now_ns();
    for (i = 0; i < n; i++) queue(&jobs[i], fn, pc_dummy_ud, i, after_count);
    uv_run(&loop, UV_RUN_DEFAULT);
    t1 = pc_now_ns();
    check_ids(n);
    pc_report(n, t1 - t0, NULL);
}

/* ---- w2a: chains, the next link is submitted by the loop thread ---- */
static void after_chain(uv_work_t *r, int status)
{
    job_t *j = (job_t *)r;
    if (status != 0) pc_die("after_work status %d", status);
    completed++;
    id_sum += j->id;
    if (j->id % PC_W2A_LEN != PC_W2A_LEN - 1)
        queue(&jobs[j->id + 1], j->fn, j->ud, j->id + 1, after_chain);
}

static void w2a(void)
{
    uint64_t total = (uint64_t)PC_W2A_CHAINS * PC_W2A_LEN, c, t0, t1;
    pc_task_fn fn = pc_task();
    jobs = alloc_jobs(total, 1);
    t0 = pc_now_ns();
    for (c = 0; c < PC_W2A_CHAINS; c++)
        queue(&jobs[c * PC_W2A_LEN], fn, pc_dummy_ud, c * PC_W2A_LEN, after_chain);
    uv_run(&loop, UV_RUN_DEFAULT);
    t1 = pc_now_ns();
    check_ids(total);
    pc_report(total, t1 - t0,
              ",\"chains\":1000,\"chain_len\":100,\"note\":\"no dependency support: the loop "
              "thread submits the next link from the after_work_cb of its predecessor\"");
}

/* ---- w2b: fan-in ---- */
static void after_fan(uv_work_t *r, int status)
{
    job_t *j = (job_t *)r;
    if (status != 0) pc_die("after_work status %d", status);
    completed++;
    id_sum += j->id;
    if (j != &final_job && ++fan_done == n_tasks)
        queue(&final_job, j->fn, j->ud, n_tasks, after_fan);
}

static void w2b(uint64_t n)
{
    pc_task_fn fn = pc_task();
    uint64_t i, t0, t1;
    jobs = alloc_jobs(n, 1);
    n_tasks = n;
    t0 = pc_now_ns();
    for (i = 0; i < n; i++) queue(&jobs[i], fn, pc_dummy_ud, i, after_fan);
    if (n == 0) queue(&final_job, fn, pc_dummy_ud, 0, after_fan);
    uv_run(&loop, UV_RUN_DEFAULT);
    t1 = pc_now_ns();
    check_ids(n + 1);
    pc_report(n + 1, t1 - t0,
              ",\"note\":\"no dependency support: the loop thread counts the N completions "
              "and then submits the final task\"");
}

/* ---- w3: cancel N queued tasks ---- */
static void after_cancel(uv_work_t *r, int status)
{
    job_t *j = (job_t *)r;
    free(j->ud); /* the cancel path frees the userdata */
    j->ud = NULL;
    if (status == UV_ECANCELED)
        cancelled++;
    else
        ran_instead++;
}

static void after_ignore(uv_work_t *r, int status)
{
    (void)r;
    (void)status;
}

static void w3(uint64_t n)
{
    pc_task_fn fn = pc_task();
    job_t gate[PC_WORKERS];
    uint64_t i, t0, t1;
    int k;
    job_t warm[PC_WARMUP];
    for (k = 0; k < PC_WORKERS; k++) queue(&gate[k], pc_gate_task, NULL, 0, after_ignore);
    pc_gate_wait_entered(PC_WORKERS);
    /* Warm-up: the measured operation once before the clock, on PC_WARMUP
     * queued tasks, as every program of the benchmark does. */
    for (k = 0; k < PC_WARMUP; k++) {
        void *ud = malloc(16);
        if (!ud) pc_die("out of memory");
        queue(&warm[k], fn, ud, (uint64_t)k, after_cancel);
    }
    for (k = 0; k < PC_WARMUP; k++)
        if (uv_cancel((uv_req_t *)&warm[k].req) != 0) pc_die("uv_cancel failed on a queued warm-up task");
    while (cancelled + ran_instead < PC_WARMUP) uv_run(&loop, UV_RUN_NOWAIT);
    if (cancelled != PC_WARMUP) pc_die("a warm-up task ran instead of being cancelled");
    cancelled = 0;
    jobs = alloc_jobs(n, 1);
    for (i = 0; i < n; i++) {
        void *ud = malloc(16);
        if (!ud) pc_die("out of memory");
        queue(&jobs[i], fn, ud, i, after_cancel);
    }
    t0 = pc_now_ns();
    for (i = 0; i < n; i++)
        if (uv_cancel((uv_req_t *)&jobs[i].req) != 0) pc_die("uv_cancel failed on a queued task");
    while (cancelled + ran_instead < n) uv_run(&loop, UV_RUN_NOWAIT);
    t1 = pc_now_ns();
    pc_gate_open();
    uv_run(&loop, UV_RUN_DEFAULT);
    if (cancelled != n) pc_die("%llu tasks ran instead of being cancelled", (unsigned long long)ran_instead);
    pc_report(n, t1 - t0,
              ",\"note\":\"uv_cancel() per request; each after_work_cb(UV_ECANCELED) frees the "
              "userdata on the loop thread\"");
}

/* ---- w4: round trips ---- */
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
        queue(&j, fn, pc_dummy_ud, i, after_count);
        uv_run(&loop, UV_RUN_DEFAULT);
        t1 = pc_now_ns();
        lat[i] = t1 - t0;
        total += lat[i];
    }
    check_ids(n);
    med = pc_percentile_us(lat, n, 50.0);
    p99 = pc_percentile_us(lat, n, 99.0);
    snprintf(extra, sizeof extra, ",\"median_us\":%.3f,\"p99_us\":%.3f", med, p99);
    pc_report(n, total, extra);
}

/* ---- w5: bytes per queued task ---- */
static void w5(uint64_t n)
{
    pc_task_fn fn = pc_task();
    job_t gate[PC_WORKERS];
    uint64_t i, t0, t1;
    long before, after;
    char extra[160];
    int k;
    for (k = 0; k < PC_WORKERS; k++) queue(&gate[k], pc_gate_task, NULL, 0, after_ignore);
    pc_gate_wait_entered(PC_WORKERS);
    before = pc_rss_bytes();
    t0 = pc_now_ns();
    jobs = alloc_jobs(n, 0); /* caller-owned request storage counts */
    for (i = 0; i < n; i++) queue(&jobs[i], fn, pc_dummy_ud, i, after_ignore);
    t1 = pc_now_ns();
    after = pc_rss_bytes();
    snprintf(extra, sizeof extra,
             ",\"bytes_per_task\":%.1f,\"rss_delta\":%ld,\"note\":\"includes the caller-owned "
             "request (%zu bytes: uv_work_t + fn + userdata + id)\"",
             n ? (double)(after - before) / (double)n : 0.0, after - before, sizeof(job_t));
    pc_report(n, t1 - t0, extra); /* time = adding N tasks to a blocked pool */
    _exit(0); /* workers are still parked on the gate; nothing left to measure */
}

int main(int argc, char **argv)
{
    uint64_t n = pc_parse_args(argc, argv, "libuv");
    setenv("UV_THREADPOOL_SIZE", "2", 1); /* before the first use of the pool */
    if (uv_loop_init(&loop) != 0) pc_die("uv_loop_init failed");
    if (strcmp(argv[1], "w6") == 0) {
        pc_unsupported("uv_queue_work has no priorities: one FIFO queue shared by all requests");
        return 0;
    }
    warm_up();
    if (strcmp(argv[1], "w1") == 0) w1(n);
    else if (strcmp(argv[1], "w2a") == 0) w2a();
    else if (strcmp(argv[1], "w2b") == 0) w2b(n);
    else if (strcmp(argv[1], "w3") == 0) w3(n);
    else if (strcmp(argv[1], "w4") == 0) w4(n);
    else if (strcmp(argv[1], "w5") == 0) w5(n);
    uv_loop_close(&loop);
    free(jobs);
    return 0;
}
