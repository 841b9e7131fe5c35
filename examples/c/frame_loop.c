/*
 * A frame-loop host (a game or an editor viewport): each frame it drains at
 * most K events, so a burst of completions is spread over several frames
 * instead of stalling one. Events are never lost: what a frame leaves
 * behind is delivered, in order, by the next ones.
 *
 *   bash examples/c/run.sh frame_loop
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <stdio.h>
#include <time.h>

#define TASKS 200
#define EVENTS_PER_FRAME 16

static void load_tile(void *userdata, btm_task_context *ctx) {
    /* The result is the tile number itself (no allocation to free). */
    btm_context_set_result(ctx, userdata, NULL);
}

int main(void) {
    btm_config cfg;
    btm_config_init_size(&cfg, sizeof cfg);
    cfg.max_threads = 2;
    cfg.start_processing = true;
    btm_manager *m = NULL;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) return 1;
    btm_group tiles;
    if (btm_group_named(m, "tiles", &tiles) != BTM_STATUS_OK) return 1;
    for (size_t i = 1; i <= TASKS; i++) {
        btm_task_id id;
        if (btm_add_task(m, load_tile, (void *)i, NULL, 0, &tiles, NULL, 0, &id) != BTM_STATUS_OK) return 1;
    }

    int frame = 0, loaded = 0, busiest = 0, group_done = 0;
    size_t sum = 0;
    const struct timespec frame_time = {0, 2 * 1000000L}; /* a 2 ms "frame" */
    while (!group_done) {
        if (++frame > 10000) {
            fprintf(stderr, "the group never finished\n");
            return 1;
        }
        btm_event ev[EVENTS_PER_FRAME];
        size_t n = 0;
        if (btm_poll_events(m, ev, EVENTS_PER_FRAME, &n) != BTM_STATUS_OK) return 1;
        if ((int)n > busiest) busiest = (int)n;
        for (size_t i = 0; i < n; i++) {
            if (ev[i].kind == BTM_EVENT_TASK_COMPLETED) {
                loaded++;
                sum += (size_t)ev[i].results[0].data;
            } else if (ev[i].kind == BTM_EVENT_GROUP_FINISHED) {
                group_done = 1;
            }
        }
        nanosleep(&frame_time, NULL); /* render the frame */
    }
    printf("%d tiles loaded over %d frames, at most %d events per frame (cap %d), checksum %zu (expected %d)\n",
           loaded, frame, busiest, EVENTS_PER_FRAME, sum, TASKS * (TASKS + 1) / 2);
    btm_destroy(m);
    return (loaded == TASKS && sum == (size_t)(TASKS * (TASKS + 1) / 2)) ? 0 : 1;
}
