/*
 * btm demo: a batch of "thumbnail" jobs, the way a file browser or an asset
 * manager would use a background task manager.
 *
 * - 6 jobs in the named group "thumbnails", with priorities (the items
 *   visible on screen first), each reporting progress and producing a
 *   result (a heap-allocated thumbnail with its free function);
 * - one job fails (a corrupt file) and its downstream "contact sheet"
 *   fails with it, same message and details;
 * - a pass-through task gathers every successful thumbnail; a final
 *   "index" task reads the gathered list;
 * - a second group, "previews", is stopped as a whole before it runs;
 * - the host (this main thread) polls every event and prints it.
 *
 * Build and run: examples/c/run.sh
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ helpers */

static atomic_long allocations, frees; /* to show that btm frees everything */

static uint64_t t0_ms;
static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void work_ms(unsigned ms) { /* stands for decoding / scaling */
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void check(btm_status st, const char *what) {
    if (st != BTM_STATUS_OK) {
        fprintf(stderr, "%s failed: %s\n", what, btm_status_str(st));
        exit(1);
    }
}

/* --------------------------------------------------- host-side objects */

/* A job's userdata: what to render. */
typedef struct job {
    char path[64];
    int size;
    bool corrupt;
} job;

/* A task result: the rendered thumbnail. */
typedef struct thumbnail {
    char path[64];
    int width, height;
    size_t bytes;
} thumbnail;

static void *track(void *p) {
    atomic_fetch_add(&allocations, 1);
    return p;
}

static void free_tracked(void *p) {
    atomic_fetch_add(&frees, 1);
    free(p);
}

static job *job_new(const char *path, int size, bool corrupt) {
    job *j = calloc(1, sizeof *j);
    snprintf(j->path, sizeof j->path, "%s", path);
    j->size = size;
    j->corrupt = corrupt;
    return track(j);
}

/* ----------------------------------------------------------- tasks */

/* Runs on a worker thread. */
static void render_thumbnail(void *userdata, btm_task_context *ctx) {
    const job *j = userdata;
    static const char *const steps[] = {"decoding", "scaling", "encoding"};
    for (int i = 0; i < 3; i++) {
        if (btm_context_is_stopped(ctx)) return; /* give up early: dropped anyway */
        work_ms(15);
        btm_context_report_progress(ctx, (i + 1) / 3.0, steps[i]);
        if (j->corrupt && i == 0) {
            char details[160];
            snprintf(details, sizeof details,
                     "decode(\"%s\"): header checksum 0x3f1a != 0x0000\n  at exr_read_header\n"
                     "  at render_thumbnail",
                     j->path);
            btm_context_fail(ctx, "unsupported compression (corrupt file?)", details);
            return;
        }
    }
    thumbnail *t = calloc(1, sizeof *t);
    snprintf(t->path, sizeof t->path, "%s", j->path);
    t->width = j->size;
    t->height = j->size * 9 / 16;
    t->bytes = (size_t)t->width * (size_t)t->height * 4u;
    btm_context_set_result(ctx, track(t), free_tracked);
}

/* Reads what the pass-through gathered: its payload (a title string) and
 * then every thumbnail, each tagged with the id of the task that made it. */
static void write_index(void *userdata, btm_task_context *ctx) {
    (void)userdata;
    const btm_value *values = NULL;
    size_t n = 0;
    btm_context_upstream(ctx, &values, &n);
    size_t total = 0;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        /* entry 0 is the pass-through's payload: the title */
        if (i == 0) continue;
        const thumbnail *t = values[i].data;
        total += t->bytes;
        count++;
    }
    char *summary = malloc(128);
    snprintf(summary, 128, "index of %d thumbnails, %zu KiB", count, total / 1024);
    btm_context_set_result(ctx, track(summary), free_tracked);
}

/* A contact sheet needs the corrupt file's thumbnail: it fails with it. */
static void contact_sheet(void *userdata, btm_task_context *ctx) {
    (void)userdata;
    (void)ctx;
    printf("  (never printed: the contact sheet never runs)\n");
}

/* ------------------------------------------------- printing events */

typedef enum { KIND_THUMB, KIND_TITLE, KIND_TEXT } result_kind;

/* What the host knows about each task id, to print results. */
#define MAX_TASKS 64
static struct {
    btm_task_id id;
    const char *label;
    result_kind kind;
} known[MAX_TASKS];
static int n_known;

static void remember(btm_task_id id, const char *label, result_kind kind) {
    known[n_known].id = id;
    known[n_known].label = label;
    known[n_known].kind = kind;
    n_known++;
}

static int find(btm_task_id id) {
    for (int i = 0; i < n_known; i++)
        if (known[i].id == id) return i;
    return -1;
}

static const char *label_of(btm_task_id id) {
    int i = find(id);
    return i >= 0 ? known[i].label : "?";
}

static void group_text(const btm_event *e, char *buf, size_t cap) {
    switch (e->group.kind) {
    case BTM_GROUP_KIND_NAMED:
        snprintf(buf, cap, "\"%s\"", e->group_name);
        break;
    case BTM_GROUP_KIND_NUMBERED:
        snprintf(buf, cap, "#%llu", (unsigned long long)e->group.value);
        break;
    default:
        snprintf(buf, cap, "default");
    }
}

static void print_value(const btm_value *v) {
    int i = find(v->task_id);
    result_kind k = i >= 0 ? known[i].kind : KIND_TEXT;
    if (k == KIND_THUMB) {
        const thumbnail *t = v->data;
        printf("%s %dx%d (%zu KiB)", t->path, t->width, t->height, t->bytes / 1024);
    } else {
        printf("\"%s\"", (const char *)v->data);
    }
}

static void print_event(const btm_event *e) {
    char g[96];
    group_text(e, g, sizeof g);
    printf("[%4llu ms] ", (unsigned long long)(now_ms() - t0_ms));
    switch (e->kind) {
    case BTM_EVENT_TASK_PROGRESS:
        printf("progress   task %-2llu %-22s %3.0f%%  %s\n", (unsigned long long)e->task_id,
               label_of(e->task_id), e->progress * 100.0, e->message ? e->message : "");
        break;
    case BTM_EVENT_TASK_COMPLETED:
        printf("completed  task %-2llu %-22s group %s", (unsigned long long)e->task_id,
               label_of(e->task_id), g);
        if (e->result_count == 0) {
            printf(", no result\n");
        } else if (e->result_count == 1 && e->results[0].task_id == e->task_id) {
            printf(": ");
            print_value(&e->results[0]);
            printf("\n");
        } else {
            printf(", gathered %zu entries:\n", e->result_count);
            for (size_t i = 0; i < e->result_count; i++) {
                printf("             [%zu] from task %-2llu ", i,
                       (unsigned long long)e->results[i].task_id);
                print_value(&e->results[i]);
                printf("\n");
            }
        }
        break;
    case BTM_EVENT_TASK_FAILED:
        printf("FAILED     task %-2llu %-22s group %s: %s\n", (unsigned long long)e->task_id,
               label_of(e->task_id), g, e->message);
        printf("             details: ");
        for (const char *c = e->details; *c; c++) {
            putchar(*c);
            if (*c == '\n') printf("                      ");
        }
        printf("\n");
        break;
    case BTM_EVENT_GROUP_FINISHED:
        printf("group finished: %s\n", g);
        break;
    default:
        printf("event of unknown kind %u\n", (unsigned)e->kind);
    }
}

/* ------------------------------------------------------------- main */

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("btm %s (header %s): thumbnail demo\n\n", btm_version(), BTM_VERSION);

    btm_config cfg;
    check(btm_config_init_size(&cfg, sizeof cfg), "btm_config_init_size");
    cfg.max_threads = 2; /* paused by default: we start after queueing */
    btm_manager *m = NULL;
    check(btm_create(&cfg, &m), "btm_create");

    btm_group thumbs, previews;
    check(btm_group_named(m, "thumbnails", &thumbs), "btm_group_named");
    check(btm_group_named(m, "previews", &previews), "btm_group_named");

    static const struct {
        const char *path;
        int priority; /* visible on screen: higher */
        bool corrupt;
    } files[] = {
        {"beach.png", 10, false},  {"city.jpg", 10, false}, {"forest.tif", 5, false},
        {"corrupt.exr", 5, true},  {"desert.png", 0, false}, {"ocean.jpg", -5, false},
    };
    enum { N_FILES = sizeof files / sizeof files[0] };
    btm_task_id ids[N_FILES];
    btm_task_id ok_ids[N_FILES];
    size_t n_ok = 0;
    btm_task_id corrupt_id = 0;
    printf("queueing %d thumbnail jobs in group \"thumbnails\" (paused):\n", N_FILES);
    for (int i = 0; i < N_FILES; i++) {
        check(btm_add_task(m, render_thumbnail, job_new(files[i].path, 320, files[i].corrupt),
                           free_tracked, files[i].priority, &thumbs, NULL, 0, &ids[i]),
              "btm_add_task");
        remember(ids[i], files[i].path, KIND_THUMB);
        printf("  task %llu  %-12s priority %d\n", (unsigned long long)ids[i], files[i].path,
               files[i].priority);
        if (files[i].corrupt)
            corrupt_id = ids[i];
        else
            ok_ids[n_ok++] = ids[i];
    }

    /* A pass-through gathers the successful thumbnails (its payload, a
     * title, comes first), and an index task reads what it gathered. */
    btm_task_id gather = 0, index = 0, sheet = 0;
    char *title = track(malloc(32));
    snprintf(title, 32, "Holiday album");
    check(btm_add_pass_through_task(m, 0, &thumbs, ok_ids, n_ok, title, free_tracked, &gather),
          "btm_add_pass_through_task");
    remember(gather, "gather (pass-through)", KIND_TITLE);
    check(btm_add_task(m, write_index, NULL, NULL, 0, &thumbs, &gather, 1, &index), "btm_add_task");
    remember(index, "index", KIND_TEXT);
    printf("  task %llu  pass-through gathering tasks", (unsigned long long)gather);
    for (size_t i = 0; i < n_ok; i++) printf(" %llu", (unsigned long long)ok_ids[i]);
    printf("\n  task %llu  index, after the pass-through\n", (unsigned long long)index);
    /* The contact sheet depends on every job, the corrupt one included. */
    check(btm_add_task(m, contact_sheet, NULL, NULL, 0, &thumbs, ids, N_FILES, &sheet),
          "btm_add_task");
    remember(sheet, "contact sheet", KIND_TEXT);
    printf("  task %llu  contact sheet, after all %d jobs\n", (unsigned long long)sheet, N_FILES);

    /* A second batch the user scrolls away from before it starts. */
    printf("\nqueueing 4 jobs in group \"previews\", then stopping the group:\n");
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "preview-%d.mov", i);
        btm_task_id id;
        check(btm_add_task(m, render_thumbnail, job_new(name, 160, false), free_tracked, 20,
                           &previews, NULL, 0, &id),
              "btm_add_task");
    }
    btm_stop_report rep;
    check(btm_stop_task_group(m, &previews, true, true, &rep), "btm_stop_task_group");
    printf("  stopped %llu tasks before they started (%llu running, %llu finished); "
           "no event will come for them\n",
           (unsigned long long)rep.before_start, (unsigned long long)rep.while_running,
           (unsigned long long)rep.after_finish);

    printf("\nstart processing (2 worker threads); polling events:\n");
    t0_ms = now_ms();
    check(btm_start_processing(m), "btm_start_processing");

    /* The host loop: wait for events, drain them, print them. A UI would
     * do this from its own event loop (see btm_set_notify and
     * btm_get_event_fd). */
    bool done = false;
    btm_event events[8];
    while (!done) {
        btm_status st = btm_wait_events(m, 5000);
        if (st == BTM_STATUS_TIMED_OUT) {
            fprintf(stderr, "no event for 5 s: giving up\n");
            return 1;
        }
        size_t n = 0;
        do {
            check(btm_poll_events(m, events, 8, &n), "btm_poll_events");
            for (size_t i = 0; i < n; i++) {
                print_event(&events[i]);
                if (events[i].kind == BTM_EVENT_GROUP_FINISHED &&
                    events[i].group.kind == thumbs.kind && events[i].group.value == thumbs.value)
                    done = true;
            }
        } while (n == 8);
    }
    (void)corrupt_id;

    btm_stats s;
    check(btm_get_stats(m, &s), "btm_get_stats");
    printf("\nstats: %llu completed, %llu failed, %llu stopped, %llu worker threads\n",
           (unsigned long long)s.completed_total, (unsigned long long)s.failed_total,
           (unsigned long long)s.stopped_total, (unsigned long long)s.threads);
    size_t still = 0;
    check(btm_shut_down(m, 5000, &still), "btm_shut_down");
    btm_destroy(m);
    long a = atomic_load(&allocations), f = atomic_load(&frees);
    printf("host objects: %ld allocated, %ld freed by btm\n", a, f);
    if (a != f) {
        fprintf(stderr, "ERROR: btm_destroy returned before freeing every host object\n");
        return 1;
    }
    return 0;
}
