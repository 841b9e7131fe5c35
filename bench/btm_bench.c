/*
 * btm side of the side-by-side benchmark (bench/run.py runs it with the
 * peers). Usage: btm_bench <workload> <N>; prints one JSON line.
 * Workloads: w1 (N empty tasks, all completions polled; the host blocks in
 * btm_wait_events when a poll finds nothing, as the peers block in their
 * completion queues), w2a (1000 chains of 100), w2b (N tasks fanning into
 * one), w3 (stop N queued tasks in one group,
 * including every free call), w4 (round trip, 10,000 times; w4fd: the host
 * sleeps in btm_wait_events instead of spinning on poll), w5 (bytes per
 * queued task), w6 (w1 with 4 priority levels), q1 and q2 (the original's
 * two quadratic cases: N tasks waiting on one upstream task; the stop of a
 * group of 1,000 queued behind N other tasks); q3 (btm's own: N tasks of
 * N distinct priorities queued, then run); sg (scatter-gather: N
 * tasks on one upstream task, one more on all N; not run by bench/run.py).
 * With BTM_BENCH_BULK=K in the environment, w1 and w6 add their tasks with
 * btm_add_tasks, K per call (the "btm_bulk" row of bench/run.py); the other
 * workloads then print "unsupported" (they are btm's own row).
 * BTM_BENCH_THREADS=K sets max_threads (default 2, as for every peer; for
 * experiments only). BTM_BENCH_PHASES=1 makes w1, w6 and w2a also print, on
 * stderr, how long the adds took and how long the drain after them.
 * w1phases and w2aphases (N ignored: 1000 chains of 100) time the adds (to
 * a paused manager), the run of the whole queue and the polls one after
 * the other, in ns per task; bench/run.py does not run them.
 * fanlow (not run by bench/run.py either; docs/PERFORMANCE.md, session 29):
 * both workers held on a pipe, 1,000 tasks queued at priority 0 with a
 * fan-in over them, then N tasks at priority 5; the workers released, the
 * drain of all of them in ns per task (fanlow0: the same without the
 * fan-in). Until session 29 the 1,000 queued linked tasks made every
 * worker apply every outcome under the lock until they ran. backlog: the
 * same without the 1,000 (N tasks of one priority queued in the lane, then
 * drained by both workers at once; BTM_BENCH_SPIN=k gives each task k
 * rounds of arithmetic, ~k ns, and times the workers' drain alone (the
 * host sleeps meanwhile, then polls); session 30: a pause meant for a worker at
 * its level's newest entry fired there whenever the workers' claims
 * alternated, and two workers drained ~100 ns tasks barely faster than one).
 * For experiments on W6 (bench/run.py sets none): BTM_BENCH_W6_ORDER
 * gives task i's priority: "rr" (the default, i % 4), "same" (0: W1 with
 * W6's four queues made), "runs16" ((i / 16) % 4) or "blocks" (i * 4 / N);
 * BTM_BENCH_W6_LEVELS=k uses k priorities instead of 4 (k in place of 4
 * in the orders above; session 35: up to and beyond the lane's eight
 * levels);
 * BTM_BENCH_CPU=1 makes w1 and w6 print, on stderr, the CPU time of the
 * process and of each thread (/proc/self/task/x/schedstat) since it
 * started, start-up included, in ns per task.
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sched.h>
#include <unistd.h>
#include <sys/resource.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void empty_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
}

/* backlog with BTM_BENCH_SPIN=k: tasks that each run k rounds of
 * arithmetic (k = 100 is ~100 ns here). */
static unsigned long spin_rounds;
static size_t spin_done;
static void spin_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
    volatile unsigned long x = 1;
    for (unsigned long i = 0; i < spin_rounds; i++) x = x * 31 + i;
    __atomic_add_fetch(&spin_done, 1, __ATOMIC_RELEASE);
}

/* fanlow: tasks that hold a worker until the host writes to the pipe. */
static int hold_pipe[2];
static int held;
static void hold_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
    char b;
    __atomic_add_fetch(&held, 1, __ATOMIC_ACQ_REL);
    if (read(hold_pipe[0], &b, 1) != 1) abort();
}
static void add_task_fn(btm_manager *m, btm_task_fn fn, int prio) {
    btm_task_id id;
    if (btm_add_task(m, fn, NULL, NULL, prio, NULL, NULL, 0, &id) != BTM_STATUS_OK) abort();
}

static size_t frees;
static void count_free(void *p) {
    free(p);
    frees++;
}

/* How the host waits for completions. */
enum drain_mode {
    /* Poll; when a poll finds nothing, block in btm_wait_events until events
     * are deliverable, as every peer's main thread blocks in its completion
     * queue (a crossbeam or GLib queue, libuv's loop). */
    DRAIN_BLOCK_WHEN_EMPTY,
    /* Block in btm_wait_events before every poll (w4fd). */
    DRAIN_BLOCK_FIRST,
    /* Poll in a loop, never blocking (w4: the lowest latency a host can get). */
    DRAIN_SPIN,
};
static void drain(btm_manager *m, size_t want, enum drain_mode mode);
static void add(btm_manager *m, int prio, const btm_task_id *ups, size_t n_ups, btm_task_id *id);

/* Tasks run before any clock starts, as every peer does (PC_WARMUP in
 * peers/peer_common.h): the worker threads exist and have run once. With
 * `levels` > 1 (W6) the warm-up uses priorities 0..levels-1 in turn, so that
 * btm's queue of each priority exists before the clock starts (made at the
 * first task of that priority: a 1 MiB mapping; with BTM_BENCH_W6_LEVELS
 * above 8, the first eight priorities' only), as the hand-rolled pool's
 * channel per priority does. */
#define WARMUP 64

static btm_event events[4096];

static btm_manager *make(int start, int levels) {
    /* The host's poll buffer is written before any clock starts, as a host
     * polling every frame has it (and as the peers' host arrays are
     * prefaulted): its first use in a run otherwise pays page faults, 25 ns
     * per event in W1 1k. */
    memset(events, 0, sizeof events);
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = getenv("BTM_BENCH_THREADS") ? atoi(getenv("BTM_BENCH_THREADS")) : 2;
    cfg.start_processing = start != 0;
    btm_manager *m = NULL;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) {
        fprintf(stderr, "btm_create failed\n");
        exit(1);
    }
    if (start) {
        btm_task_id id;
        for (int i = 0; i < WARMUP; i++) add(m, i % levels, NULL, 0, &id);
        drain(m, WARMUP, DRAIN_BLOCK_WHEN_EMPTY);
    }
    return m;
}

/* Polls until `want` final events (completed or failed) were seen. */
static void drain(btm_manager *m, size_t want, enum drain_mode mode) {
    size_t seen = 0;
    while (seen < want) {
        size_t n = 0;
        if (mode == DRAIN_BLOCK_FIRST) btm_wait_events(m, BTM_WAIT_FOREVER);
        btm_poll_events(m, events, 4096, &n);
        for (size_t i = 0; i < n; i++)
            if (events[i].kind == BTM_EVENT_TASK_COMPLETED || events[i].kind == BTM_EVENT_TASK_FAILED) seen++;
        if (n == 0 && mode == DRAIN_BLOCK_WHEN_EMPTY) btm_wait_events(m, BTM_WAIT_FOREVER);
    }
}

static void add(btm_manager *m, int prio, const btm_task_id *ups, size_t n_ups, btm_task_id *id) {
    if (btm_add_task(m, empty_task, NULL, NULL, prio, NULL, ups, n_ups, id) != BTM_STATUS_OK) {
        fprintf(stderr, "add failed\n");
        exit(1);
    }
}

/* W3's, Q2's and Q3's start: a started manager (its warm-up tasks run), paused,
 * then a warm-up stop of WARMUP queued tasks (each with a malloc(16)
 * userdata) in a group of their own, polled, and the free count reset. */
static btm_manager *paused_after_a_warm_up_stop(void) {
    btm_manager *m = make(1, 1);
    btm_task_id id;
    if (btm_pause_processing(m) != BTM_STATUS_OK) exit(1);
    btm_group warm = {BTM_GROUP_KIND_NUMBERED, 0, 8};
    for (size_t i = 0; i < WARMUP; i++) {
        void *p = malloc(16);
        if (btm_add_task(m, empty_task, p, count_free, 0, &warm, NULL, 0, &id) != BTM_STATUS_OK) exit(1);
    }
    btm_stop_report wr;
    if (btm_stop_task_group(m, &warm, false, false, &wr) != BTM_STATUS_OK || frees != WARMUP) {
        fprintf(stderr, "the warm-up stop freed %zu of %d\n", frees, WARMUP);
        exit(1);
    }
    size_t polled = 0;
    btm_poll_events(m, events, 4096, &polled);
    frees = 0;
    return m;
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return rss * 4096;
}

/* BTM_BENCH_W6_ORDER (see the top), read once. */
enum w6_order { W6_RR, W6_SAME, W6_RUNS16, W6_BLOCKS };
static enum w6_order w6_order_from_env(void) {
    const char *o = getenv("BTM_BENCH_W6_ORDER");
    if (!o || !strcmp(o, "rr")) return W6_RR;
    if (!strcmp(o, "same")) return W6_SAME;
    if (!strcmp(o, "runs16")) return W6_RUNS16;
    if (!strcmp(o, "blocks")) return W6_BLOCKS;
    fprintf(stderr, "BTM_BENCH_W6_ORDER: rr, same, runs16 or blocks\n");
    exit(2);
}

/* Task i's priority with `levels` priorities (W6: 4, read at run time as
 * it always was, so that the default loop is the one earlier runs timed). */
static int w6_priority(enum w6_order order, size_t i, size_t n, size_t levels) {
    switch (order) {
    case W6_SAME: return 0;
    case W6_RUNS16: return (int)((i / 16) % levels);
    case W6_BLOCKS: return (int)(i * levels / n);
    default: return (int)(i % levels);
    }
}

/* BTM_BENCH_CPU: the CPU time of the process and of each of its threads. */
static void print_cpu(size_t n) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
    fprintf(stderr, "cpu: process %.1f ns/task; threads (ns/task):", cpu / (double)n);
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[64] = "?";
        unsigned long long run = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(comm, sizeof comm, f)) strcpy(comm, "?");
            comm[strcspn(comm, "\n")] = 0;
            fclose(f);
        }
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%llu", &run) != 1) run = 0;
            fclose(f);
        }
        fprintf(stderr, " %s %.1f", comm, (double)run / (double)n);
    }
    if (d) closedir(d);
    fprintf(stderr, "\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s <w1|w2a|w2b|w3|w4|w4fd|w5|w6|q1|q2|q3|sg|w1phases|w2aphases|fanlow|fanlow0|backlog> <N>\n",
                argv[0]);
        return 2;
    }
    const char *w = argv[1];
    size_t n = (size_t)strtoull(argv[2], NULL, 10);
    btm_manager *m;
    btm_task_id id;

    const char *bulk_env = getenv("BTM_BENCH_BULK");
    size_t bulk = bulk_env ? (size_t)strtoull(bulk_env, NULL, 10) : 0;
    if (bulk && strcmp(w, "w1") && strcmp(w, "w6") && strcmp(w, "w2a") && strcmp(w, "w2b")) {
        printf("{\"peer\":\"btm_bulk\",\"workload\":\"%s\",\"unsupported\":\"measured on W1, W2 and W6 only; "
               "see btm's row\"}\n", w);
        return 0;
    }
    if (!strcmp(w, "w1") || !strcmp(w, "w6")) {
        int levels = !strcmp(w, "w6") ? 4 : 1;
        if (levels > 1 && getenv("BTM_BENCH_W6_LEVELS")) levels = atoi(getenv("BTM_BENCH_W6_LEVELS"));
        if (levels < 1) levels = 1;
        enum w6_order order = w6_order_from_env();
        m = make(1, levels);
        btm_task_desc *descs = NULL;
        btm_task_id *ids = NULL;
        if (bulk) {
            descs = calloc(bulk, sizeof *descs);
            ids = malloc(bulk * sizeof *ids);
            if (!descs || !ids) return 1;
            for (size_t i = 0; i < bulk; i++) descs[i].task_fn = empty_task;
        }
        double t0 = now_ns();
        if (bulk) {
            for (size_t i = 0; i < n;) {
                size_t k = n - i < bulk ? n - i : bulk;
                for (size_t j = 0; j < k; j++) descs[j].priority = w6_priority(order, i + j, n, (size_t)levels);
                if (btm_add_tasks(m, descs, k, ids) != BTM_STATUS_OK) {
                    fprintf(stderr, "btm_add_tasks failed\n");
                    return 1;
                }
                i += k;
            }
        } else {
            for (size_t i = 0; i < n; i++) add(m, w6_priority(order, i, n, (size_t)levels), NULL, 0, &id);
        }
        double t_added = now_ns();
        drain(m, n, DRAIN_BLOCK_WHEN_EMPTY);
        double t = now_ns() - t0;
        if (getenv("BTM_BENCH_CPU")) print_cpu(n);
        if (getenv("BTM_BENCH_PHASES"))
            fprintf(stderr, "%s: add phase %.1f ns/task, drain phase %.1f ns/task\n", w, (t_added - t0) / (double)n,
                    (now_ns() - t_added) / (double)n);
        free(descs);
        free(ids);
        printf("{\"peer\":\"%s\",\"workload\":\"%s\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f}\n",
               bulk ? "btm_bulk" : "btm", w, n, t / (double)n, t / 1e6);
    } else if (!strcmp(w, "w2a")) {
        size_t chains = 1000, len = 100;
        m = make(1, 1);
        /* Bulk: whole chains per btm_add_tasks call (bulk / 100 of them),
         * each link naming the descriptor before it with BTM_IN_BATCH. */
        size_t per_call = bulk ? (bulk / len ? bulk / len : 1) * len : 0;
        btm_task_desc *descs = NULL;
        btm_task_id *ids = NULL, *prevs = NULL;
        if (bulk) {
            descs = calloc(per_call, sizeof *descs);
            ids = malloc(per_call * sizeof *ids);
            prevs = malloc(per_call * sizeof *prevs);
            if (!descs || !ids || !prevs) return 1;
            for (size_t j = 0; j < per_call; j++) {
                descs[j].task_fn = empty_task;
                if (j % len) {
                    prevs[j] = BTM_IN_BATCH | (j - 1);
                    descs[j].upstream = &prevs[j];
                    descs[j].upstream_len = 1;
                }
            }
        }
        double t0 = now_ns();
        if (bulk) {
            for (size_t c = 0; c < chains; c += per_call / len)
                if (btm_add_tasks(m, descs, per_call, ids) != BTM_STATUS_OK) {
                    fprintf(stderr, "btm_add_tasks failed\n");
                    return 1;
                }
        } else {
            for (size_t c = 0; c < chains; c++) {
                add(m, 0, NULL, 0, &id);
                for (size_t i = 1; i < len; i++) {
                    btm_task_id prev = id;
                    add(m, 0, &prev, 1, &id);
                }
            }
        }
        double t_added = now_ns();
        drain(m, chains * len, DRAIN_BLOCK_WHEN_EMPTY);
        double t = now_ns() - t0;
        if (getenv("BTM_BENCH_PHASES"))
            fprintf(stderr, "w2a: add phase %.1f ns/task, drain phase %.1f ns/task\n",
                    (t_added - t0) / (double)(chains * len), (now_ns() - t_added) / (double)(chains * len));
        free(descs);
        free(ids);
        free(prevs);
        printf("{\"peer\":\"%s\",\"workload\":\"w2a\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f}\n",
               bulk ? "btm_bulk" : "btm", chains * len, t / (double)(chains * len), t / 1e6);
    } else if (!strcmp(w, "w2b")) {
        m = make(1, 1);
        btm_task_id *ids = malloc(n * sizeof *ids);
        if (!ids) return 1;
        memset(ids, 0, n * sizeof *ids); /* prefaulted, as the peers' host arrays */
        btm_task_desc *descs = bulk ? calloc(bulk, sizeof *descs) : NULL;
        if (bulk && !descs) return 1;
        for (size_t j = 0; j < bulk; j++) descs[j].task_fn = empty_task;
        double t0 = now_ns();
        if (bulk) {
            for (size_t i = 0; i < n; i += bulk)
                if (btm_add_tasks(m, descs, n - i < bulk ? n - i : bulk, ids + i) != BTM_STATUS_OK) {
                    fprintf(stderr, "btm_add_tasks failed\n");
                    return 1;
                }
        } else {
            for (size_t i = 0; i < n; i++) add(m, 0, NULL, 0, &ids[i]);
        }
        double t_added = now_ns();
        add(m, 0, ids, n, &id);
        double t_joined = now_ns();
        drain(m, n + 1, DRAIN_BLOCK_WHEN_EMPTY);
        double t = now_ns() - t0;
        if (getenv("BTM_BENCH_PHASES"))
            fprintf(stderr, "w2b: add phase %.1f ns/task, fan-in add %.1f ns/upstream, drain phase %.1f ns/task\n",
                    (t_added - t0) / (double)n, (t_joined - t_added) / (double)n,
                    (now_ns() - t_joined) / (double)(n + 1));
        free(ids);
        free(descs);
        printf("{\"peer\":\"%s\",\"workload\":\"w2b\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f}\n",
               bulk ? "btm_bulk" : "btm", n, t / (double)(n + 1), t / 1e6);
    } else if (!strcmp(w, "w3")) {
        /* The warm-up tasks run, then the manager is paused: every task
         * added after stays queued. Then a warm-up stop of WARMUP queued
         * tasks in another group, as every peer cancels WARMUP queued tasks
         * before its clock (the code of the measured operation has run
         * once; its first run in a process costs a few microseconds of
         * cold code, which would otherwise dominate the 1k point). */
        m = paused_after_a_warm_up_stop();
        btm_group g = {BTM_GROUP_KIND_NUMBERED, 0, 7};
        for (size_t i = 0; i < n; i++) {
            void *p = malloc(16);
            if (btm_add_task(m, empty_task, p, count_free, 0, &g, NULL, 0, &id) != BTM_STATUS_OK) return 1;
        }
        long rss_full = rss_bytes();
        double t0 = now_ns();
        btm_stop_report r;
        btm_stop_task_group(m, &g, false, false, &r);
        double t = now_ns() - t0;
        long rss_after = rss_bytes();
        if (frees != n || r.before_start != n) {
            fprintf(stderr, "w3: %zu frees, %llu stopped, want %zu\n", frees, (unsigned long long)r.before_start, n);
            return 1;
        }
        printf("{\"peer\":\"btm\",\"workload\":\"w3\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f,"
               "\"rss_returned_mb\":%.1f}\n",
               n, t / (double)n, t / 1e6, (double)(rss_full - rss_after) / 1e6);
    } else if (!strcmp(w, "w4") || !strcmp(w, "w4fd")) {
        int sleep_on_wait = !strcmp(w, "w4fd");
        size_t reps = n ? n : 10000;
        double *lat = malloc(reps * sizeof *lat);
        m = make(1, 1);
        for (size_t i = 0; i < 100; i++) { /* warm up: threads started */
            add(m, 0, NULL, 0, &id);
            drain(m, 1, sleep_on_wait ? DRAIN_BLOCK_FIRST : DRAIN_SPIN);
        }
        for (size_t i = 0; i < reps; i++) {
            double t0 = now_ns();
            add(m, 0, NULL, 0, &id);
            drain(m, 1, sleep_on_wait ? DRAIN_BLOCK_FIRST : DRAIN_SPIN);
            lat[i] = (now_ns() - t0) / 1000.0;
        }
        qsort(lat, reps, sizeof *lat, cmp_double);
        printf("{\"peer\":\"btm\",\"workload\":\"%s\",\"n\":%zu,\"median_us\":%.2f,\"p99_us\":%.2f}\n", w, reps,
               lat[reps / 2], lat[reps * 99 / 100]);
        free(lat);
    } else if (!strcmp(w, "w5")) {
        m = make(0, 1);
        long before = rss_bytes();
        for (size_t i = 0; i < n; i++) add(m, 0, NULL, 0, &id);
        long after = rss_bytes();
        printf("{\"peer\":\"btm\",\"workload\":\"w5\",\"n\":%zu,\"bytes_per_task\":%.1f}\n", n,
               (double)(after - before) / (double)n);
    } else if (!strcmp(w, "q1")) {
        /* The original's first quadratic case: N tasks waiting on one
         * upstream task. The upstream task holds a worker (on a pipe) while
         * the host adds the N tasks, each naming it, so that all of them
         * wait; the host then lets it finish and polls every completion.
         * Timed from the upstream task's add to the last completion
         * observed, per task (N + 1). */
        m = make(1, 1);
        if (pipe(hold_pipe) != 0) return 1;
        btm_task_id root;
        double t0 = now_ns();
        if (btm_add_task(m, hold_task, NULL, NULL, 0, NULL, NULL, 0, &root) != BTM_STATUS_OK) return 1;
        for (size_t i = 0; i < n; i++) add(m, 0, &root, 1, &id);
        if (write(hold_pipe[1], "", 1) != 1) return 1;
        drain(m, n + 1, DRAIN_BLOCK_WHEN_EMPTY);
        double t = now_ns() - t0;
        printf("{\"peer\":\"btm\",\"workload\":\"q1\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f}\n", n,
               t / (double)(n + 1), t / 1e6);
    } else if (!strcmp(w, "sg")) {
        /* Scatter-gather (not run by bench/run.py; docs/PERFORMANCE.md,
         * session 32): as q1, N tasks waiting on one upstream task held on
         * a pipe, then one more task waiting on all N; timed from the
         * upstream task's add to the last completion observed, per task
         * (N + 2). */
        m = make(1, 1);
        if (pipe(hold_pipe) != 0) return 1;
        btm_task_id root, gather;
        btm_task_id *mid = malloc(n * sizeof *mid);
        if (!mid) return 1;
        double t0 = now_ns();
        if (btm_add_task(m, hold_task, NULL, NULL, 0, NULL, NULL, 0, &root) != BTM_STATUS_OK) return 1;
        for (size_t i = 0; i < n; i++) add(m, 0, &root, 1, &mid[i]);
        add(m, 0, mid, n, &gather);
        if (write(hold_pipe[1], "", 1) != 1) return 1;
        drain(m, n + 2, DRAIN_BLOCK_WHEN_EMPTY);
        double t = now_ns() - t0;
        printf("{\"peer\":\"btm\",\"workload\":\"sg\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f}\n", n,
               t / (double)(n + 2), t / 1e6);
        free(mid);
    } else if (!strcmp(w, "q2")) {
        /* The original's second quadratic case: stopping a group queued
         * behind many other tasks. As W3 (the warm-up tasks run, the
         * manager paused, a warm-up stop), then N tasks of one group queued
         * and Q2_GROUP tasks of another behind them; the stop of that
         * second group is timed, every free call included, per stopped
         * task. */
        enum { Q2_GROUP = 1000 };
        m = paused_after_a_warm_up_stop();
        btm_group many = {BTM_GROUP_KIND_NUMBERED, 0, 7}, small = {BTM_GROUP_KIND_NUMBERED, 0, 9};
        for (size_t i = 0; i < n; i++)
            if (btm_add_task(m, empty_task, NULL, NULL, 0, &many, NULL, 0, &id) != BTM_STATUS_OK) return 1;
        for (size_t i = 0; i < Q2_GROUP; i++) {
            void *p = malloc(16);
            if (btm_add_task(m, empty_task, p, count_free, 0, &small, NULL, 0, &id) != BTM_STATUS_OK) return 1;
        }
        double t0 = now_ns();
        btm_stop_report r;
        btm_stop_task_group(m, &small, false, false, &r);
        double t = now_ns() - t0;
        if (frees != Q2_GROUP || r.before_start != Q2_GROUP) {
            fprintf(stderr, "q2: %zu frees, %llu stopped, want %d\n", frees, (unsigned long long)r.before_start,
                    Q2_GROUP);
            return 1;
        }
        printf("{\"peer\":\"btm\",\"workload\":\"q2\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.4f}\n", n,
               t / (double)Q2_GROUP, t / 1e6);
    } else if (!strcmp(w, "q3")) {
        /* A quadratic case of btm's own (session 36): N tasks of N distinct
         * priorities queued (in scrambled order: i times an odd constant,
         * modulo 2^32, is a bijection) while the manager is paused, then
         * run, every completion polled. Until session 36 the locked queue
         * kept its priority levels in a sorted vector, and each level made
         * or dropped moved every level after it. As W3's start (the warm-up
         * tasks run, the manager paused, a warm-up stop); timed from the
         * first add to the last completion observed, per task. */
        m = paused_after_a_warm_up_stop();
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            int priority = (int)(int32_t)((uint32_t)i * 2654435761u);
            if (btm_add_task(m, empty_task, NULL, NULL, priority, NULL, NULL, 0, &id) != BTM_STATUS_OK) return 1;
        }
        if (btm_start_processing(m) != BTM_STATUS_OK) return 1;
        drain(m, n, DRAIN_BLOCK_WHEN_EMPTY);
        double t = now_ns() - t0;
        printf("{\"peer\":\"btm\",\"workload\":\"q3\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f}\n", n,
               t / (double)n, t / 1e6);
    } else if (!strcmp(w, "w1phases") || !strcmp(w, "w2aphases")) {
        /* W1's or W2a's phases one after the other (docs/PERFORMANCE.md,
         * "Where W1's host time goes"): adds to a paused manager, running
         * the whole queue, polling every event. Not run by bench/run.py. */
        int chains = !strcmp(w, "w2aphases");
        if (chains) n = 100000;
        m = make(0, 1);
        id = 0;
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            btm_task_id prev = id;
            add(m, 0, &prev, chains && i % 100 != 0, &id);
        }
        double t1 = now_ns();
        btm_start_processing(m);
        if (btm_wait_idle(m, 60000) != BTM_STATUS_OK) return 1;
        double t2 = now_ns();
        drain(m, n, DRAIN_BLOCK_WHEN_EMPTY);
        double t3 = now_ns();
        printf("{\"peer\":\"btm\",\"workload\":\"%s\",\"n\":%zu,\"add_ns\":%.1f,\"run_ns\":%.1f,"
               "\"poll_ns\":%.1f}\n",
               w, n, (t1 - t0) / (double)n, (t2 - t1) / (double)n, (t3 - t2) / (double)n);
    } else if (!strcmp(w, "fanlow") || !strcmp(w, "fanlow0") || !strcmp(w, "backlog")) {
        int fan = !strcmp(w, "fanlow");
        size_t low = strcmp(w, "backlog") ? 1000 : 0;
        m = make(1, 1);
        /* Every worker held (BTM_BENCH_THREADS of them, 2 by default). */
        int workers = getenv("BTM_BENCH_THREADS") ? atoi(getenv("BTM_BENCH_THREADS")) : 2;
        if (workers < 1 || workers > 64) return 2;
        if (pipe(hold_pipe) != 0) return 1;
        for (int i = 0; i < workers; i++) add_task_fn(m, hold_task, 10);
        while (__atomic_load_n(&held, __ATOMIC_ACQUIRE) < workers) sched_yield();
        btm_task_id *ids = malloc((low ? low : 1) * sizeof *ids);
        if (!ids) return 1;
        for (size_t i = 0; i < low; i++) add(m, 0, NULL, 0, &ids[i]);
        if (fan) add(m, 0, ids, low, &id);
        spin_rounds = getenv("BTM_BENCH_SPIN") ? strtoul(getenv("BTM_BENCH_SPIN"), NULL, 10) : 0;
        for (size_t i = 0; i < n; i++) {
            if (low || !spin_rounds)
                add(m, low ? 5 : 0, NULL, 0, &id);
            else
                add_task_fn(m, spin_task, 0);
        }
        size_t want = (size_t)workers + low + (size_t)fan + n;
        double t0 = now_ns();
        static const char release[64] = {0};
        if (write(hold_pipe[1], release, (size_t)workers) != workers) return 1;
        if (!low && spin_rounds) {
            /* The workers' drain alone: the host sleeps until the tasks
             * ran, then polls their events (untimed). */
            struct timespec nap = {0, 100000};
            while (__atomic_load_n(&spin_done, __ATOMIC_ACQUIRE) < n) nanosleep(&nap, NULL);
        } else {
            drain(m, want, DRAIN_BLOCK_WHEN_EMPTY);
        }
        double t = now_ns() - t0;
        if (!low && spin_rounds) drain(m, want, DRAIN_BLOCK_WHEN_EMPTY);
        free(ids);
        printf("{\"peer\":\"btm\",\"workload\":\"%s\",\"n\":%zu,\"ns_per_task\":%.1f,\"ms\":%.3f}\n", w, n,
               t / (double)want, t / 1e6);
    } else {
        fprintf(stderr, "unknown workload %s\n", w);
        return 2;
    }
    btm_destroy(m);
    return 0;
}
