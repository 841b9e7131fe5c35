/*
 * A host loop that sleeps in poll(2) on btm's event descriptor (the way a
 * libuv, GLib, Qt or epoll host would) and drains events as they come, with
 * a progress line on the terminal. No busy polling: between events the host
 * thread is asleep in the kernel.
 *
 *   bash examples/c/run.sh poll_loop
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define JOBS 6
#define STEPS 20

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A "conversion" that reports progress at each step. */
static void convert(void *userdata, btm_task_context *ctx) {
    long job = (long)(size_t)userdata;
    char msg[64];
    for (int step = 1; step <= STEPS; step++) {
        if (btm_context_is_stopped(ctx)) return;
        sleep_ms(5 + job);
        snprintf(msg, sizeof msg, "job %ld: frame %d/%d", job, step, STEPS);
        btm_context_report_progress(ctx, (double)step / STEPS, msg);
    }
}

int main(void) {
    btm_config cfg;
    btm_config_init_size(&cfg, sizeof cfg);
    cfg.max_threads = 2;
    cfg.start_processing = true;
    btm_manager *m = NULL;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) return 1;
    int fd = -1;
    if (btm_get_event_fd(m, &fd) != BTM_STATUS_OK) return 1;

    btm_task_id ids[JOBS];
    double progress[JOBS] = {0};
    for (long j = 0; j < JOBS; j++)
        if (btm_add_task(m, convert, (void *)(size_t)j, NULL, 0, NULL, NULL, 0, &ids[j]) != BTM_STATUS_OK) return 1;

    int finished = 0, wakeups = 0;
    while (finished < JOBS) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10000) != 1) {
            fprintf(stderr, "\nno event for 10 s\n");
            return 1;
        }
        wakeups++;
        btm_event ev[32];
        size_t n = 32;
        while (n == 32) { /* drain until a poll returns less than its capacity */
            if (btm_poll_events(m, ev, 32, &n) != BTM_STATUS_OK) return 1;
            for (size_t i = 0; i < n; i++) {
                for (int j = 0; j < JOBS; j++) {
                    if (ev[i].task_id != ids[j]) continue;
                    if (ev[i].kind == BTM_EVENT_TASK_PROGRESS) progress[j] = ev[i].progress;
                    if (ev[i].kind == BTM_EVENT_TASK_COMPLETED) {
                        progress[j] = 1.0;
                        finished++;
                    }
                }
            }
        }
        printf("\r[");
        for (int j = 0; j < JOBS; j++) printf(" %3.0f%%", progress[j] * 100.0);
        printf(" ] %d/%d done", finished, JOBS);
        fflush(stdout);
    }
    printf("\nall %d jobs done after %d wake-ups of the host loop (events are coalesced per wake-up)\n", JOBS,
           wakeups);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) != 0) { /* drained: the descriptor must be quiet now */
        size_t n = 0;
        btm_event ev[4];
        btm_poll_events(m, ev, 4, &n);
        if (n != 0 && !(n == 1 && ev[0].kind == BTM_EVENT_GROUP_FINISHED)) {
            fprintf(stderr, "descriptor readable with nothing to poll\n");
            return 1;
        }
    }
    btm_destroy(m);
    return 0;
}
