/*
 * Instructions per call of btm's three hot paths, without the noise that
 * spinning threads add to a whole-program count under callgrind: N tasks are
 * added to a paused manager (no worker thread yet: the add path alone), one
 * worker then drains the full queue while the host sleeps (the worker path
 * without lock contention), and the host polls every event at the end (the
 * poll path). bench/paths.sh runs it under callgrind and prints the three
 * figures; they are exact from run to run.
 * Usage: btm_paths <N> [chain|fanin|lane|lane4|lane8|lanebulk|lane4bulk|lanechain|lanechainbulk|lanefanin|lanefaninq|chainstep]
 *   chain: every task but each 100th waits for the task added before it,
 *          W2a's shape: the dependency paths;
 *   fanin: the last task waits for all the others, W2b's shape (to a
 *          paused manager, so the upstream tasks are queued when linked);
 *   lane:  the tasks are added to a running manager whose one worker is
 *          held by a first task (blocked reading a pipe), so that they take
 *          the lane, W1's path (beyond a lane level's 16,384 entries the
 *          rest wait in the level's overflow: paths.sh's row "past a full lane
 *          ring" runs 40,000 and 20,000 and takes the difference); the host then
 *          releases the worker, sleeps until every task has run (counted
 *          by the tasks themselves: a poll or a stats call would make the
 *          worker's outcomes go through the lock) and polls them.
 *   lane4: lane, with priorities 0-3 in turn (W6's shape: four lane levels).
 *   lane8: lane, with priorities 0-7 in turn (eight lane levels, the most
 *          a lane has: its workers' loop made for eight, session 35).
 *   lanebulk: lane, the tasks added with btm_add_tasks, 1,024 per call (the
 *          btm_bulk row's path).
 *   lane4bulk: lane4, added as lanebulk (btm_bulk's W6 path).
 *   lanechain: lane, in chains of 100 (W2a's shape on a running manager:
 *          each chain's first task in the lane, the others continuations
 *          attached to the task before them).
 *   lanechainbulk: lanechain, added with btm_add_tasks, ten chains (1,000
 *          tasks) per call, each link naming the one before it with
 *          BTM_IN_BATCH (the btm_bulk row's W2a path; N a multiple of 1,000).
 *   lanefanin: lane, then, once every task has run (none polled yet), one
 *          more task that waits for all of them (W2b's path on a running
 *          manager: the fan-in's add applies the workers' outcomes and
 *          links the finished upstream tasks).
 *   lanefaninq: lane, with the task that waits for all the others added
 *          while they are still queued (the worker held): W2b's path when
 *          the workers lag behind the host's adds, as with btm_add_tasks.
 *   chainstep: chains of 100 on a running manager whose one worker is free,
 *          each task added once the task before it has run (the host waits
 *          for it, spinning): the add finds its upstream task finished, its
 *          outcome not yet applied, and takes the locked fallback (a host
 *          that adds each link after seeing the one before it run; W2a's
 *          host, faster than the chain's worker, attaches 99% of its links,
 *          counted with temporary counters in session 13). Only the add
 *          figure means something, within ~5% from run to run (valgrind's
 *          scheduling decides whether the worker has left the outcome when
 *          the add looks): the worker's count includes its idle spinning.
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void empty_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
}

static _Atomic size_t ran;
static void counted_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
    ran++;
}

static int gate[2];
static void gate_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
    char c;
    if (read(gate[0], &c, 1) != 1) abort();
    ran++;
}

static btm_event events[4096];

static void sleep_ms(long ms) {
    struct timespec ts = {0, ms * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* The lane paths: see the usage above. */
static int lane_paths(size_t n, int levels, int chains, int fanin, size_t bulk) {
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = 1;
    cfg.start_processing = true;
    btm_manager *m;
    btm_task_id id;
    if (pipe(gate) != 0 || btm_create(&cfg, &m) != BTM_STATUS_OK) return 1;
    btm_task_id *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return 1;
    if (btm_add_task(m, gate_task, NULL, NULL, 0, NULL, NULL, 0, &id) != BTM_STATUS_OK) return 1;
    btm_task_desc *descs = calloc(bulk ? bulk : 1, sizeof *descs);
    if (!descs) return 1;
    btm_task_id *prevs = malloc((bulk ? bulk : 1) * sizeof *prevs);
    if (!prevs) return 1;
    for (size_t i = 0; bulk && i < bulk; i++) {
        descs[i].task_fn = counted_task;
        descs[i].priority = (int)(i % (size_t)levels);
        if (chains && i % 100) { /* the task before, in the same call */
            prevs[i] = BTM_IN_BATCH | (i - 1);
            descs[i].upstream = &prevs[i];
            descs[i].upstream_len = 1;
        }
    }
    for (size_t i = 0; bulk && i < n;) {
        size_t k = n - i < bulk ? n - i : bulk;
        if (btm_add_tasks(m, descs, k, ids + i) != BTM_STATUS_OK) return 1;
        i += k;
    }
    for (size_t i = 0; !bulk && i < n; i++) {
        btm_task_id prev = id;
        size_t n_ups = chains && i % 100 ? 1 : 0;
        if (btm_add_task(m, counted_task, NULL, NULL, (int)(i % (size_t)levels), NULL, &prev, n_ups, &id) !=
            BTM_STATUS_OK)
            return 1;
        ids[i] = id;
    }
    size_t total = n + 1;
    if (fanin == 2 && n > 0) { /* lanefaninq: linked while still queued */
        if (btm_add_task(m, counted_task, NULL, NULL, 0, NULL, ids, n, &id) != BTM_STATUS_OK) return 1;
        total++;
    }
    if (write(gate[1], "x", 1) != 1) return 1;
    /* Every task ran (the gate task too); the pause lets the worker leave
     * the last outcome, so that the polls below do not spin on an empty
     * queue (which would count against the poll). */
    while (ran < total) sleep_ms(10);
    sleep_ms(10);
    if (fanin == 1 && n > 0) {
        if (btm_add_task(m, counted_task, NULL, NULL, 0, NULL, ids, n, &id) != BTM_STATUS_OK) return 1;
        total++;
        while (ran < total) sleep_ms(10);
        sleep_ms(10);
    }
    free(ids);
    free(descs);
    free(prevs);
    size_t seen = 0, k;
    while (seen < total) {
        if (btm_poll_events(m, events, 4096, &k) != BTM_STATUS_OK) return 1;
        seen += k;
    }
    btm_destroy(m);
    return 0;
}

/* The chain fallback: see the usage above. */
static int chainstep_paths(size_t n) {
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = 1;
    cfg.start_processing = true;
    btm_manager *m;
    btm_task_id id = 0;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) return 1;
    for (size_t i = 0; i < n; i++) {
        btm_task_id prev = id;
        size_t n_ups = i % 100 ? 1 : 0;
        if (btm_add_task(m, counted_task, NULL, NULL, 0, NULL, &prev, n_ups, &id) != BTM_STATUS_OK) return 1;
        while (ran < i + 1) {
        }
    }
    sleep_ms(10);
    size_t seen = 0, k;
    while (seen < n) {
        if (btm_poll_events(m, events, 4096, &k) != BTM_STATUS_OK) return 1;
        seen += k;
    }
    btm_destroy(m);
    return 0;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 100000;
    int chain = argc > 2 && !strcmp(argv[2], "chain");
    int fanin = argc > 2 && !strcmp(argv[2], "fanin");
    if (argc > 2 && !strcmp(argv[2], "lane")) return lane_paths(n, 1, 0, 0, 0);
    if (argc > 2 && !strcmp(argv[2], "lane4")) return lane_paths(n, 4, 0, 0, 0);
    if (argc > 2 && !strcmp(argv[2], "lane8")) return lane_paths(n, 8, 0, 0, 0);
    if (argc > 2 && !strcmp(argv[2], "lanechain")) return lane_paths(n, 1, 1, 0, 0);
    if (argc > 2 && !strcmp(argv[2], "lanefanin")) return lane_paths(n, 1, 0, 1, 0);
    if (argc > 2 && !strcmp(argv[2], "lanefaninq")) return lane_paths(n, 1, 0, 2, 0);
    if (argc > 2 && !strcmp(argv[2], "lanebulk")) return lane_paths(n, 1, 0, 0, 1024);
    if (argc > 2 && !strcmp(argv[2], "lanechainbulk")) return lane_paths(n, 1, 1, 0, 1000);
    if (argc > 2 && !strcmp(argv[2], "lane4bulk")) return lane_paths(n, 4, 0, 0, 1024);
    if (argc > 2 && !strcmp(argv[2], "chainstep")) return chainstep_paths(n);
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = 1;
    cfg.start_processing = false;
    btm_manager *m;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) return 1;
    btm_task_id id;
    id = 0;
    btm_task_id *ids = malloc((n + 1) * sizeof *ids);
    if (!ids) return 1;
    for (size_t i = 0; i < n; i++) {
        btm_task_id prev = id;
        size_t n_ups = chain && i % 100 ? 1 : 0;
        const btm_task_id *ups = &prev;
        if (fanin && i + 1 == n) {
            ups = ids;
            n_ups = i;
        }
        if (btm_add_task(m, empty_task, NULL, NULL, 0, NULL, ups, n_ups, &id) != BTM_STATUS_OK) return 1;
        ids[i] = id;
    }
    if (btm_start_processing(m) != BTM_STATUS_OK) return 1;
    for (;;) { /* sleep, not wait: a waiting host would be woken per task */
        btm_stats s;
        sleep_ms(10);
        if (btm_get_stats(m, &s) != BTM_STATUS_OK) return 1;
        if (s.completed_total == n) break;
    }
    size_t seen = 0, k;
    while (seen < n) {
        if (btm_poll_events(m, events, 4096, &k) != BTM_STATUS_OK) return 1;
        seen += k;
    }
    btm_destroy(m);
    free(ids);
    return 0;
}
