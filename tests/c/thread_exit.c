/*
 * Host code that ends btm's worker thread with pthread_exit (Windows:
 * ExitThread; what CPython does to a thread that calls Python during
 * interpreter shutdown, with _endthreadex on Windows): the
 * process must go on, the task fails with btm's message, the worker is
 * replaced, waits and btm_destroy return, and every userdata except the
 * one of the task that never returned is freed exactly once.
 *
 * A program of its own, run by tests/c/run.sh outside valgrind and the
 * sanitizers: a thread ended this way leaves what its frames held (the
 * std thread's own bookkeeping among it) unfreed, which leak checkers
 * report by design.
 *
 *   bash tests/c/run.sh   (step "thread exit"), or build and run alone:
 *   gcc -std=c11 -pthread -Iinclude tests/c/thread_exit.c -Ltarget/release -lbtm \
 *       -Wl,-rpath,target/release -o /tmp/thread_exit && /tmp/thread_exit
 * Windows: built with MinGW-w64 and run under Wine by tests/windows/run.sh
 * (the fork test left out).
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>
/* What CPython's PyThread_exit_thread does on Windows (_endthreadex). */
#define END_THIS_THREAD() ExitThread(0)
#else
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#define END_THIS_THREAD() pthread_exit(NULL)
#endif

#define WAIT_MS 20000u

static int failures = 0;
#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static atomic_int freed[64];
static atomic_int ran = 0;
static atomic_int hook_calls = 0;
static atomic_int start_hooks = 0;
static atomic_int notify_calls = 0;
static atomic_int notify_exits = 0;
static _Thread_local int on_worker = 0;

static void free_marker(void *p) { atomic_fetch_add(&freed[(uintptr_t)p], 1); }

/* Ends its thread on marker 1 (after the task function returned, from the
 * userdata's free function). */
static void free_then_exit(void *p) {
    atomic_fetch_add(&freed[(uintptr_t)p], 1);
    if ((uintptr_t)p == 1) END_THIS_THREAD();
}

static void plain_task(void *u, btm_task_context *ctx) {
    (void)u;
    (void)ctx;
    atomic_fetch_add(&ran, 1);
}

static void exiting_task(void *u, btm_task_context *ctx) {
    (void)u;
    (void)ctx;
    END_THIS_THREAD();
}

/* A manager with `threads` workers, processing, with thread start hook
 * `start` (or none). */
static btm_manager *make_hooked(int threads, btm_thread_hook_fn start) {
    btm_config cfg;
    btm_config_init_size(&cfg, sizeof cfg);
    cfg.max_threads = threads;
    cfg.start_processing = true;
    cfg.thread_start = start;
    btm_manager *m = NULL;
    if (btm_create(&cfg, &m) != BTM_STATUS_OK) {
        fprintf(stderr, "btm_create failed\n");
        exit(1);
    }
    return m;
}

static btm_manager *make(int threads) { return make_hooked(threads, NULL); }

static void reset(void) {
    for (int i = 0; i < 64; i++) atomic_store(&freed[i], 0);
    atomic_store(&ran, 0);
}

/* Polls until `want` failed and `want_ok` completed events came, or the wait fails. */
static void drain(btm_manager *m, int want_failed, int want_ok, btm_task_id failed_id, bool *saw_message) {
    int failed = 0, ok = 0;
    while (failed < want_failed || ok < want_ok) {
        btm_status s = btm_wait_events(m, WAIT_MS);
        CHECK(s == BTM_STATUS_OK);
        if (s != BTM_STATUS_OK) return;
        btm_event ev[64];
        size_t n = 0;
        CHECK(btm_poll_events(m, ev, 64, &n) == BTM_STATUS_OK);
        for (size_t i = 0; i < n; i++) {
            if (ev[i].kind == BTM_EVENT_TASK_FAILED) {
                failed++;
                if (ev[i].task_id == failed_id && saw_message &&
                    strstr(ev[i].message, "ended inside host code") != NULL)
                    *saw_message = true;
            } else if (ev[i].kind == BTM_EVENT_TASK_COMPLETED) {
                ok++;
            }
        }
    }
    CHECK(failed == want_failed);
    CHECK(ok == want_ok);
}

/* Adds a task running `first_fn` (userdata 1) that ends its thread, checks
 * its failure event, then runs `more` plain tasks (userdata 2, 3, ...) and
 * drains their events; returns the manager (two workers). */
static btm_manager *first_ends_then_more_run(btm_task_fn first_fn, btm_free_fn free_fn, uintptr_t more) {
    btm_manager *m = make(2);
    btm_task_id bad = 0, id = 0;
    CHECK(btm_add_task(m, first_fn, (void *)1, free_fn, 0, NULL, NULL, 0, &bad) == BTM_STATUS_OK);
    bool message = false;
    drain(m, 1, 0, bad, &message);
    CHECK(message);
    for (uintptr_t i = 2; i < 2 + more; i++)
        CHECK(btm_add_task(m, plain_task, (void *)i, free_fn, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    drain(m, 0, (int)more, 0, NULL);
    return m;
}

/* A lane task (no upstream task) ends its thread. */
static void task_ends_its_thread(void) {
    reset();
    btm_manager *m = first_ends_then_more_run(exiting_task, free_marker, 50);
    CHECK(atomic_load(&ran) == 50);
    btm_stats st;
    CHECK(btm_get_stats(m, &st) == BTM_STATUS_OK);
    CHECK(st.failed_total == 1);
    CHECK(st.running == 0);
    btm_destroy(m);
    /* The ended task never returned: its userdata stays the host's. */
    CHECK(atomic_load(&freed[1]) == 0);
    for (int i = 2; i < 52; i++) CHECK(atomic_load(&freed[i]) == 1);
}

/* Every worker's task ends its thread while more tasks wait, and the host
 * waits for idle: replacements run the rest. */
static void every_worker_ended_while_tasks_wait(void) {
    reset();
    btm_manager *m = make(2);
    btm_task_id id = 0;
    CHECK(btm_pause_processing(m) == BTM_STATUS_OK);
    for (uintptr_t i = 1; i <= 4; i++)
        CHECK(btm_add_task(m, exiting_task, (void *)i, free_marker, 10, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    for (uintptr_t i = 5; i < 25; i++)
        CHECK(btm_add_task(m, plain_task, (void *)i, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_start_processing(m) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    drain(m, 4, 20, 0, NULL);
    CHECK(atomic_load(&ran) == 20);
    btm_destroy(m);
    for (int i = 1; i <= 4; i++) CHECK(atomic_load(&freed[i]) == 0);
    for (int i = 5; i < 25; i++) CHECK(atomic_load(&freed[i]) == 1);
}

/* A task on the locked path (it has an upstream task) ends its thread: it
 * fails, and so does the task waiting for it. */
static void locked_task_ends_its_thread(void) {
    reset();
    btm_manager *m = make(2);
    btm_task_id up = 0, bad = 0, down = 0;
    CHECK(btm_add_task(m, plain_task, (void *)1, free_marker, 0, NULL, NULL, 0, &up) == BTM_STATUS_OK);
    CHECK(btm_add_task(m, exiting_task, (void *)2, free_marker, 0, NULL, &up, 1, &bad) == BTM_STATUS_OK);
    CHECK(btm_add_task(m, plain_task, (void *)3, free_marker, 0, NULL, &bad, 1, &down) == BTM_STATUS_OK);
    bool message = false;
    drain(m, 2, 1, bad, &message);
    CHECK(message);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    btm_destroy(m);
    CHECK(atomic_load(&freed[1]) == 1);
    CHECK(atomic_load(&freed[2]) == 0);
    CHECK(atomic_load(&freed[3]) == 1);
}

/* The task returned, and its userdata's free function ends the thread. */
static void free_function_ends_its_thread(void) {
    reset();
    btm_manager *m = first_ends_then_more_run(plain_task, free_then_exit, 10);
    btm_destroy(m);
    for (int i = 1; i < 12; i++) CHECK(atomic_load(&freed[i]) == 1);
}

static void task_hook(void *u, btm_task_id id, uint32_t kind, uint64_t value, uint32_t worker) {
    (void)u;
    (void)kind;
    (void)value;
    (void)worker;
    atomic_fetch_add(&hook_calls, 1);
    if (id == 2) END_THIS_THREAD();
}

/* A task hook ends the thread (task hooks send every task down the locked
 * path). */
static void task_hook_ends_its_thread(void) {
    reset();
    btm_manager *m = make(1);
    CHECK(btm_set_task_hooks(m, task_hook, NULL, NULL, NULL) == BTM_STATUS_OK);
    btm_task_id id = 0;
    for (uintptr_t i = 1; i <= 3; i++)
        CHECK(btm_add_task(m, plain_task, (void *)i, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    drain(m, 1, 2, 0, NULL);
    btm_destroy(m);
    CHECK(atomic_load(&freed[1]) == 1);
    CHECK(atomic_load(&freed[2]) == 0);
    CHECK(atomic_load(&freed[3]) == 1);
}

static void start_hook(void *u, uint32_t index) {
    (void)u;
    on_worker = 1;
    /* The first worker started ends at once. */
    if (atomic_fetch_add(&start_hooks, 1) == 0 && index == 0) END_THIS_THREAD();
}

/* The thread start hook ends a worker: the other runs the tasks. */
static void start_hook_ends_its_thread(void) {
    reset();
    btm_manager *m = make_hooked(2, start_hook);
    btm_task_id id = 0;
    for (uintptr_t i = 1; i <= 20; i++)
        CHECK(btm_add_task(m, plain_task, (void *)i, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    drain(m, 0, 20, 0, NULL);
    CHECK(atomic_load(&ran) == 20);
    btm_destroy(m);
    for (int i = 1; i <= 20; i++) CHECK(atomic_load(&freed[i]) == 1);
}

static void notify(void *u) {
    (void)u;
    atomic_fetch_add(&notify_calls, 1);
    if (on_worker && atomic_fetch_add(&notify_exits, 1) == 0) END_THIS_THREAD();
}

static void mark_worker(void *u, uint32_t index) {
    (void)u;
    (void)index;
    on_worker = 1;
}

static void waiting_task(void *u, btm_task_context *ctx) {
    (void)ctx;
    /* Give the host time to block in btm_wait_idle, so that the worker
     * delivers the event and calls the notify callback. */
    struct timespec t = {0, 20 * 1000000L};
    nanosleep(&t, NULL);
    (void)u;
    atomic_fetch_add(&ran, 1);
}

/* The notify callback ends a worker's thread: btm_destroy (which waits for
 * calls of the callback in progress) still returns. */
static void notify_ends_a_worker(void) {
    reset();
    atomic_store(&notify_exits, 0);
    btm_manager *m = make_hooked(1, mark_worker);
    CHECK(btm_set_notify(m, notify, (void *)40, free_marker) == BTM_STATUS_OK);
    btm_task_id id = 0;
    for (int round = 0; round < 50 && atomic_load(&notify_exits) == 0; round++) {
        CHECK(btm_add_task(m, waiting_task, (void *)41, NULL, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
        CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
        btm_event ev[8];
        size_t n = 0;
        CHECK(btm_poll_events(m, ev, 8, &n) == BTM_STATUS_OK);
    }
    CHECK(atomic_load(&notify_exits) >= 1);
    /* The manager goes on with a new worker. */
    CHECK(btm_add_task(m, plain_task, (void *)42, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    btm_destroy(m);
    CHECK(atomic_load(&freed[40]) == 1);
    CHECK(atomic_load(&freed[42]) == 1);
}

static atomic_int slow_free_started = 0, slow_free_done = 0;
static void slow_free(void *p) {
    (void)p;
    atomic_store(&slow_free_started, 1);
    struct timespec t = {0, 100 * 1000000L};
    nanosleep(&t, NULL);
    atomic_fetch_add(&slow_free_done, 1);
}

/* The task that ends its thread has a downstream task, which fails with
 * it: that task's userdata is freed by the time btm_destroy returns, and
 * not on the ending thread (whose host code could end it again, and which
 * btm_destroy does not join). */
static void downstream_userdata_freed_before_destroy_returns(void) {
    reset();
    atomic_store(&slow_free_started, 0);
    atomic_store(&slow_free_done, 0);
    btm_manager *m = make(1);
    CHECK(btm_pause_processing(m) == BTM_STATUS_OK);
    btm_task_id t = 0, d = 0;
    CHECK(btm_add_task(m, exiting_task, (void *)1, free_marker, 0, NULL, NULL, 0, &t) == BTM_STATUS_OK);
    CHECK(btm_add_task(m, plain_task, (void *)2, slow_free, 0, NULL, &t, 1, &d) == BTM_STATUS_OK);
    CHECK(btm_start_processing(m) == BTM_STATUS_OK);
    drain(m, 2, 0, 0, NULL);
    btm_destroy(m);
    CHECK(atomic_load(&slow_free_done) == 1);
    struct timespec t200 = {0, 200 * 1000000L};
    nanosleep(&t200, NULL);
    CHECK(atomic_load(&slow_free_done) == 1);
    CHECK(atomic_load(&freed[1]) == 0);
}

/* A host that only polls (its event descriptor, no waits, no adds): the
 * only worker's task ends its thread while more tasks wait; the poll
 * starts the replacement. */
static void a_host_that_only_polls_gets_a_replacement(void) {
    reset();
    btm_manager *m = make(1);
    CHECK(btm_pause_processing(m) == BTM_STATUS_OK);
    btm_task_id id = 0;
    CHECK(btm_add_task(m, exiting_task, (void *)1, free_marker, 10, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    for (uintptr_t i = 2; i <= 6; i++)
        CHECK(btm_add_task(m, plain_task, (void *)i, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_start_processing(m) == BTM_STATUS_OK);
    int events = 0;
    for (int spins = 0; events < 6 && spins < 20000; spins++) {
        btm_event ev[8];
        size_t n = 0;
        CHECK(btm_poll_events(m, ev, 8, &n) == BTM_STATUS_OK);
        for (size_t i = 0; i < n; i++)
            if (ev[i].kind == BTM_EVENT_TASK_FAILED || ev[i].kind == BTM_EVENT_TASK_COMPLETED) events++;
        struct timespec t = {0, 1000000L};
        nanosleep(&t, NULL);
    }
    CHECK(events == 6);
    CHECK(atomic_load(&ran) == 5);
    btm_destroy(m);
    for (int i = 2; i <= 6; i++) CHECK(atomic_load(&freed[i]) == 1);
}

static atomic_int ended_starts = 0;
static void ending_start_hook(void *u, uint32_t index) {
    (void)u;
    (void)index;
    atomic_fetch_add(&ended_starts, 1);
    END_THIS_THREAD();
}

/* A start hook that ends every thread: a host waiting for idle does not
 * start threads in a loop (the wait times out, as no task can run). */
static void a_start_hook_ending_every_thread_does_not_loop(void) {
    reset();
    atomic_store(&ended_starts, 0);
    btm_manager *m = make_hooked(2, ending_start_hook);
    btm_task_id id = 0;
    CHECK(btm_add_task(m, plain_task, (void *)1, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, 300) == BTM_STATUS_TIMED_OUT);
    CHECK(atomic_load(&ended_starts) <= 4);
    btm_destroy(m);
    CHECK(atomic_load(&ran) == 0);
    CHECK(atomic_load(&freed[1]) == 1);
}

static atomic_int race_starts = 0, race_stop = 0, race_bad = 0;
static btm_manager *race_m;
static void every_other_start_ends(void *u, uint32_t index) {
    (void)u;
    (void)index;
    if (atomic_fetch_add(&race_starts, 1) % 2 == 0) END_THIS_THREAD();
}
static void *race_host(void *a) {
    (void)a;
    btm_task_id id;
    while (!atomic_load(&race_stop)) {
        for (int i = 0; i < 4; i++)
            if (btm_add_task(race_m, plain_task, NULL, NULL, 0, NULL, NULL, 0, &id) != BTM_STATUS_OK)
                atomic_fetch_add(&race_bad, 1);
        btm_status s = btm_wait_idle(race_m, 100);
        if (s != BTM_STATUS_OK && s != BTM_STATUS_TIMED_OUT) atomic_fetch_add(&race_bad, 1);
        btm_event ev[64];
        size_t n;
        if (btm_poll_events(race_m, ev, 64, &n) != BTM_STATUS_OK) atomic_fetch_add(&race_bad, 1);
    }
    return NULL;
}
static void *race_toggler(void *a) {
    (void)a;
    while (!atomic_load(&race_stop)) {
        if (btm_set_max_threads(race_m, 1) != BTM_STATUS_OK) atomic_fetch_add(&race_bad, 1);
        struct timespec t = {0, 200000L};
        nanosleep(&t, NULL);
        if (btm_set_max_threads(race_m, 4) != BTM_STATUS_OK) atomic_fetch_add(&race_bad, 1);
        nanosleep(&t, NULL);
    }
    return NULL;
}

/* Threads ending in their start hook while others are started and retired
 * (a review found an ended thread's handle paired with the next worker of
 * its slot, and joined: a panic inside btm calls). One second. */
static void workers_ending_while_threads_come_and_go(void) {
    reset();
    btm_config cfg;
    btm_config_init_size(&cfg, sizeof cfg);
    cfg.max_threads = 4;
    cfg.start_processing = true;
    cfg.thread_start = every_other_start_ends;
    CHECK(btm_create(&cfg, &race_m) == BTM_STATUS_OK);
    pthread_t t[5];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, race_host, NULL);
    pthread_create(&t[4], NULL, race_toggler, NULL);
    struct timespec one_second = {1, 0};
    nanosleep(&one_second, NULL);
    atomic_store(&race_stop, 1);
    for (int i = 0; i < 5; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&race_bad) == 0);
    CHECK(atomic_load(&race_starts) > 2);
    btm_destroy(race_m);
}

#ifndef _WIN32 /* fork() is POSIX */
static atomic_int child_status = -1;
static void forking_task(void *u, btm_task_context *ctx) {
    (void)u;
    (void)ctx;
    pid_t pid = fork();
    if (pid == 0) exit(0); /* runs this thread's destructors in the child */
    int status = 0;
    for (int i = 0; i < 10000; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            atomic_store(&child_status, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            return;
        }
        struct timespec t = {0, 1000000L};
        nanosleep(&t, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    atomic_store(&child_status, 999);
}

/* A task forks and the child exits at once: the child's only thread, a
 * copy of the worker, ends through exit(), whose thread-local destructors
 * must leave the parent's copied manager alone (not settle it, nor hang
 * on its lock). */
static void a_child_forked_by_a_task_exits(void) {
    reset();
    atomic_store(&child_status, -1);
    btm_manager *m = make(1);
    btm_task_id id = 0;
    CHECK(btm_add_task(m, forking_task, (void *)1, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    CHECK(atomic_load(&child_status) == 0);
    btm_destroy(m);
    CHECK(atomic_load(&freed[1]) == 1);
}
#endif

static atomic_int first_start_ended = 0;
static void first_start_ends(void *u, uint32_t index) {
    (void)u;
    (void)index;
    if (atomic_fetch_add(&first_start_ended, 1) == 0) END_THIS_THREAD();
}

/* The only worker ends in its start hook (once): the host's wait starts
 * another, which runs the tasks (a review found none started). */
static void a_worker_ended_by_its_start_hook_is_replaced(void) {
    reset();
    atomic_store(&first_start_ended, 0);
    btm_manager *m = make_hooked(1, first_start_ends);
    btm_task_id id = 0;
    for (uintptr_t i = 1; i <= 5; i++)
        CHECK(btm_add_task(m, plain_task, (void *)i, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    CHECK(atomic_load(&ran) == 5);
    btm_destroy(m);
    for (int i = 1; i <= 5; i++) CHECK(atomic_load(&freed[i]) == 1);
}

static atomic_int hook_userdata_freed = 0;
static void free_hook_userdata(void *p) {
    (void)p;
    atomic_fetch_add(&hook_userdata_freed, 1);
}
static void exit_free(void *p) {
    atomic_fetch_add(&freed[(uintptr_t)p], 1);
    END_THIS_THREAD();
}
static btm_task_id victim = 0;
static void stopping_task(void *u, btm_task_context *ctx) {
    (void)u;
    btm_manager *m = btm_context_manager(ctx);
    if (m == NULL) return;
    /* The stopped task's userdata is freed here, on this worker, by a free
     * function that ends the thread inside btm_stop_task. */
    btm_stop_task(m, victim, false, false, NULL);
}

/* The thread ends inside a btm call that a task made (its free function
 * ends it): the manager is still freed, with its thread-hook userdata, by
 * btm_destroy (a review found the call's reference to the manager lost). */
static void thread_ended_inside_a_btm_call_from_a_task(void) {
    reset();
    atomic_store(&hook_userdata_freed, 0);
    btm_config cfg;
    btm_config_init_size(&cfg, sizeof cfg);
    cfg.max_threads = 1;
    cfg.start_processing = false;
    cfg.thread_start = mark_worker;
    cfg.thread_hook_userdata = (void *)50;
    cfg.thread_hook_free = free_hook_userdata;
    btm_manager *m = NULL;
    CHECK(btm_create(&cfg, &m) == BTM_STATUS_OK);
    btm_task_id id = 0;
    CHECK(btm_add_task(m, stopping_task, (void *)1, free_marker, 10, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_add_task(m, plain_task, (void *)2, exit_free, 0, NULL, NULL, 0, &victim) == BTM_STATUS_OK);
    CHECK(btm_start_processing(m) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    btm_destroy(m);
    CHECK(atomic_load(&freed[2]) == 1);
    CHECK(atomic_load(&hook_userdata_freed) == 1);
}

static atomic_int task_hooks_freed = 0;
static void count_hooks_free(void *p) {
    (void)p;
    atomic_fetch_add(&task_hooks_freed, 1);
}
static void quiet_hook(void *u, btm_task_id id, uint32_t kind, uint64_t value, uint32_t worker) {
    (void)u;
    (void)id;
    (void)kind;
    (void)value;
    (void)worker;
}

/* A task that runs with task hooks ends its thread: the hooks' userdata is
 * still freed once they are replaced (a review found the ended task's
 * reference to them kept for good). */
static void task_hooks_userdata_freed_after_a_thread_ends(void) {
    reset();
    atomic_store(&task_hooks_freed, 0);
    btm_manager *m = make(1);
    CHECK(btm_set_task_hooks(m, quiet_hook, quiet_hook, (void *)60, count_hooks_free) == BTM_STATUS_OK);
    btm_task_id id = 0;
    CHECK(btm_add_task(m, exiting_task, (void *)1, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_add_task(m, plain_task, (void *)2, free_marker, 0, NULL, NULL, 0, &id) == BTM_STATUS_OK);
    CHECK(btm_wait_idle(m, WAIT_MS) == BTM_STATUS_OK);
    CHECK(btm_set_task_hooks(m, NULL, NULL, NULL, NULL) == BTM_STATUS_OK);
    CHECK(atomic_load(&task_hooks_freed) == 1);
    btm_destroy(m);
    CHECK(atomic_load(&task_hooks_freed) == 1);
    CHECK(atomic_load(&freed[2]) == 1);
}

int main(void) {
#ifndef _WIN32
    alarm(120); /* never hang: SIGALRM ends the program with a failure */
#endif
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"task_ends_its_thread", task_ends_its_thread},
        {"every_worker_ended_while_tasks_wait", every_worker_ended_while_tasks_wait},
        {"locked_task_ends_its_thread", locked_task_ends_its_thread},
        {"free_function_ends_its_thread", free_function_ends_its_thread},
        {"task_hook_ends_its_thread", task_hook_ends_its_thread},
        {"start_hook_ends_its_thread", start_hook_ends_its_thread},
        {"notify_ends_a_worker", notify_ends_a_worker},
        {"downstream_userdata_freed_before_destroy_returns", downstream_userdata_freed_before_destroy_returns},
        {"a_host_that_only_polls_gets_a_replacement", a_host_that_only_polls_gets_a_replacement},
        {"a_start_hook_ending_every_thread_does_not_loop", a_start_hook_ending_every_thread_does_not_loop},
        {"workers_ending_while_threads_come_and_go", workers_ending_while_threads_come_and_go},
#ifndef _WIN32
        {"a_child_forked_by_a_task_exits", a_child_forked_by_a_task_exits},
#endif
        {"a_worker_ended_by_its_start_hook_is_replaced", a_worker_ended_by_its_start_hook_is_replaced},
        {"thread_ended_inside_a_btm_call_from_a_task", thread_ended_inside_a_btm_call_from_a_task},
        {"task_hooks_userdata_freed_after_a_thread_ends", task_hooks_userdata_freed_after_a_thread_ends},
    };
    int passed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = failures;
        tests[i].fn();
        if (failures == before) {
            passed++;
            printf("ok   %s\n", tests[i].name);
        } else {
            printf("FAIL %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, (int)(sizeof tests / sizeof tests[0]) - passed);
    return failures == 0 ? 0 : 1;
}
