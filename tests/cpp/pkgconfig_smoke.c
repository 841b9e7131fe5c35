/* Built by tests/cpp/run.sh with only `pkg-config --cflags --libs btm`
 * (and once with --static against libbtm.a): proves btm.pc works for a C
 * consumer. Runs one task and polls its completion. */
#include <btm.h>

#include <stdio.h>
#include <string.h>

static void task(void *userdata, btm_task_context *ctx) {
    btm_context_set_result(ctx, userdata, NULL);
}

int main(void) {
    if (strcmp(btm_version(), BTM_VERSION) != 0) {
        fprintf(stderr, "library %s, header %s\n", btm_version(), BTM_VERSION);
        return 1;
    }
    btm_config cfg;
    btm_config_init(&cfg);
    cfg.start_processing = true;
    btm_manager *m = NULL;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) {
        return 1;
    }
    static int answer = 42;
    btm_task_id id = 0;
    int ok = btm_add_task(m, task, &answer, NULL, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK;
    ok = ok && btm_wait_idle(m, 20000) == BTM_STATUS_OK;
    btm_event events[4];
    size_t n = 0;
    ok = ok && btm_poll_events(m, events, 4, &n) == BTM_STATUS_OK && n >= 1;
    ok = ok && events[0].kind == BTM_EVENT_TASK_COMPLETED && events[0].task_id == id && events[0].result_count == 1 &&
         *(const int *)events[0].results[0].data == 42;
    btm_destroy(m);
    printf("pkg-config C consumer: btm %s %s\n", btm_version(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
