/*
 * Instructions per call of btm's three hot paths, without the noise that
 * spinning threads add to a whole-program count under callgrind: N tasks are
 * added to a paused manager (no worker thread yet: the add path alone), one
 * worker then drains the full queue while the host sleeps (the worker path
 * without lock contention), and the host polls every event at the end (the
 * poll path). bench/paths.sh runs it under callgrind and prints the three
 * figures; they are exact from run to run.
 * Usage: btm_paths <N> [chain]   (chain: every task but each 100th waits
 * for the task added before it, W2a's shape: the dependency paths)
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void empty_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
}

static btm_event events[4096];

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 100000;
    int chain = argc > 2 && !strcmp(argv[2], "chain");
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = 1;
    cfg.start_processing = false;
    btm_manager *m;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) return 1;
    btm_task_id id;
    id = 0;
    for (size_t i = 0; i < n; i++) {
        btm_task_id prev = id;
        size_t n_ups = chain && i % 100 ? 1 : 0;
        if (btm_add_task(m, empty_task, NULL, NULL, 0, NULL, &prev, n_ups, &id) != BTM_STATUS_OK) return 1;
    }
    if (btm_start_processing(m) != BTM_STATUS_OK) return 1;
    for (;;) { /* sleep, not wait: a waiting host would be woken per task */
        btm_stats s;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (btm_get_stats(m, &s) != BTM_STATUS_OK) return 1;
        if (s.completed_total == n) break;
    }
    size_t seen = 0, k;
    while (seen < n) {
        if (btm_poll_events(m, events, 4096, &k) != BTM_STATUS_OK) return 1;
        seen += k;
    }
    btm_destroy(m);
    return 0;
}
