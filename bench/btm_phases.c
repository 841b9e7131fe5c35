/*
 * W1's and W2a's phases timed one after the other (docs/PERFORMANCE.md,
 * "Where W1's host time goes"): N adds to a paused manager, then running the
 * whole queue (start processing, wait until idle), then polling every event.
 * Usage: btm_phases <w1|w2a> [N] [threads]  (N: W1's task count, default
 * 1000000; W2a is always 1000 chains of 100). Build and run:
 *   cargo build --release && ln -sf libbtm.so target/release/libbtm.so.0
 *   gcc -O2 -std=c11 -Iinclude bench/btm_phases.c -Ltarget/release -lbtm -o bench/build/btm_phases
 *   LD_LIBRARY_PATH=target/release bench/build/btm_phases w1
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void empty_task(void *ud, btm_task_context *ctx) {
    (void)ud;
    (void)ctx;
}

static void add(btm_manager *m, const btm_task_id *ups, size_t n_ups, btm_task_id *id) {
    if (btm_add_task(m, empty_task, NULL, NULL, 0, NULL, ups, n_ups, id) != BTM_STATUS_OK) {
        fprintf(stderr, "btm_add_task failed\n");
        exit(1);
    }
}

int main(int argc, char **argv) {
    int w2a = argc > 1 && !strcmp(argv[1], "w2a");
    if (argc < 2 || (!w2a && strcmp(argv[1], "w1"))) {
        fprintf(stderr, "usage: %s <w1|w2a> [N] [threads]\n", argv[0]);
        return 2;
    }
    size_t n = w2a ? 100000 : (argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 1000000);
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.max_threads = argc > 3 ? (uint32_t)atoi(argv[3]) : 2;
    cfg.start_processing = false;
    btm_manager *m = NULL;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) return 1;
    btm_task_id id = 0;
    double t0 = now_ns();
    if (w2a) {
        for (size_t c = 0; c < 1000; c++) {
            add(m, NULL, 0, &id);
            for (size_t i = 1; i < 100; i++) {
                btm_task_id prev = id;
                add(m, &prev, 1, &id);
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) add(m, NULL, 0, &id);
    }
    double t1 = now_ns();
    btm_start_processing(m);
    if (btm_wait_idle(m, 60000) != BTM_STATUS_OK) return 1;
    double t2 = now_ns();
    static btm_event events[4096];
    size_t seen = 0;
    while (seen < n) {
        size_t k = 0;
        btm_poll_events(m, events, 4096, &k);
        seen += k;
    }
    double t3 = now_ns();
    printf("{\"workload\":\"%s\",\"n\":%zu,\"threads\":%u,\"add_ns\":%.1f,\"run_ns\":%.1f,\"poll_ns\":%.1f}\n",
           argv[1], n, cfg.max_threads, (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n);
    btm_destroy(m);
    return 0;
}
