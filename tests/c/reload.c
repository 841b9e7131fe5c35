/*
 * Plugin reload test: what a Unity domain reload or an editor plugin reload
 * does. 200 times in one process: dlopen libbtm.so, create a manager, run
 * tasks (a chain, a pass-through, a failing task), stop tasks (queued, a
 * group, one running), poll everything, shut down, destroy, dlclose.
 *
 * Checks: no crash; no thread left behind (entries of /proc/self/task right
 * after btm_destroy, and after dlclose); RSS flat (RSS after iteration 200
 * minus RSS after iteration 20 under a generous bound); every free function
 * called exactly once.
 *
 * Usage: reload [path/to/libbtm.so] [iterations]
 */
#define _POSIX_C_SOURCE 200809L
#include "btm.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef btm_status (*fn_config_init)(btm_config *);
typedef btm_status (*fn_create)(const btm_config *, btm_manager **);
typedef void (*fn_destroy)(btm_manager *);
typedef btm_status (*fn_add_task)(btm_manager *, btm_task_fn, void *, btm_free_fn, int32_t,
                                  const btm_group *, const btm_task_id *, size_t, btm_task_id *);
typedef btm_status (*fn_add_pass)(btm_manager *, int32_t, const btm_group *, const btm_task_id *,
                                  size_t, void *, btm_free_fn, btm_task_id *);
typedef btm_status (*fn_stop_task)(btm_manager *, btm_task_id, bool, bool, btm_stop_report *);
typedef btm_status (*fn_stop_group)(btm_manager *, const btm_group *, bool, bool,
                                    btm_stop_report *);
typedef btm_status (*fn_poll)(btm_manager *, btm_event *, size_t, size_t *);
typedef btm_status (*fn_wait)(btm_manager *, uint32_t);
typedef btm_status (*fn_shut_down)(btm_manager *, uint32_t, size_t *);
typedef btm_status (*fn_group_named)(btm_manager *, const char *, btm_group *);
typedef btm_status (*fn_set_result)(btm_task_context *, void *, btm_free_fn);
typedef btm_status (*fn_fail)(btm_task_context *, const char *, const char *);
typedef bool (*fn_is_stopped)(const btm_task_context *);
typedef const char *(*fn_version)(void);

typedef struct api {
    void *lib;
    fn_config_init config_init;
    fn_create create;
    fn_destroy destroy;
    fn_add_task add_task;
    fn_add_pass add_pass;
    fn_stop_task stop_task;
    fn_stop_group stop_group;
    fn_poll poll;
    fn_wait wait_events;
    fn_wait wait_idle;
    fn_shut_down shut_down;
    fn_group_named group_named;
    fn_set_result set_result;
    fn_fail fail;
    fn_is_stopped is_stopped;
    fn_version version;
} api;

static api A; /* tasks reach the library through this table too */
static atomic_long allocs, frees;
static atomic_int running_started;
static int failures;

#define FAIL(...)                                                                  \
    do {                                                                           \
        failures++;                                                                \
        printf("FAIL %s:%d: ", __FILE__, __LINE__);                                \
        printf(__VA_ARGS__);                                                       \
        printf("\n");                                                              \
        fflush(stdout);                                                            \
    } while (0)

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *tracked(void) {
    atomic_fetch_add(&allocs, 1);
    return malloc(16);
}

static void tracked_free(void *p) {
    atomic_fetch_add(&frees, 1);
    free(p);
}

/* Threads of this process, not counting those in state Z or X (done).
 * Note: pthread_join returns as soon as the kernel clears the thread's tid,
 * which happens inside the kernel's exit path; the thread can then stay
 * listed (state R, running kernel exit code only, never user code again)
 * for a few microseconds. Callers allow for that with a short grace period. */
static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* gone meanwhile */
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        const char *paren = strrchr(buf, ')'); /* the state follows "(comm) " */
        char state = (paren && paren[1] == ' ') ? paren[2] : '?';
        if (state != 'Z' && state != 'X') n++;
    }
    closedir(d);
    return n;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static bool load(const char *path) {
    A.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!A.lib) {
        FAIL("dlopen(%s): %s", path, dlerror());
        return false;
    }
#define SYM(field, name)                                                           \
    do {                                                                           \
        void *s_ = dlsym(A.lib, name);                                             \
        if (!s_) {                                                                 \
            FAIL("dlsym(%s) failed", name);                                        \
            return false;                                                          \
        }                                                                          \
        memcpy(&A.field, &s_, sizeof s_);                                          \
    } while (0)
    SYM(config_init, "btm_config_init");
    SYM(create, "btm_create");
    SYM(destroy, "btm_destroy");
    SYM(add_task, "btm_add_task");
    SYM(add_pass, "btm_add_pass_through_task");
    SYM(stop_task, "btm_stop_task");
    SYM(stop_group, "btm_stop_task_group");
    SYM(poll, "btm_poll_events");
    SYM(wait_events, "btm_wait_events");
    SYM(wait_idle, "btm_wait_idle");
    SYM(shut_down, "btm_shut_down");
    SYM(group_named, "btm_group_named");
    SYM(set_result, "btm_context_set_result");
    SYM(fail, "btm_context_fail");
    SYM(is_stopped, "btm_context_is_stopped");
    SYM(version, "btm_version");
#undef SYM
    return true;
}

static void task_result(void *ud, btm_task_context *ctx) {
    (void)ud;
    A.set_result(ctx, tracked(), tracked_free);
}

static void task_fail(void *ud, btm_task_context *ctx) {
    (void)ud;
    A.fail(ctx, "expected failure", "details");
}

/* Runs until stopped (bounded). */
static void task_until_stopped(void *ud, btm_task_context *ctx) {
    (void)ud;
    atomic_fetch_add(&running_started, 1);
    uint64_t deadline = now_ms() + 10000;
    while (!A.is_stopped(ctx) && now_ms() < deadline) sleep_ms(1);
    if (!A.is_stopped(ctx)) FAIL("a running task never saw its stop");
}

static bool one_iteration(int it) {
    btm_config cfg;
    A.config_init(&cfg);
    cfg.max_threads = 2;
    cfg.start_processing = true;
    btm_manager *m = NULL;
    if (A.create(&cfg, &m) != BTM_STATUS_OK) {
        FAIL("iteration %d: btm_create", it);
        return false;
    }
    btm_group g;
    A.group_named(m, "reload", &g);
    atomic_store(&running_started, 0);
    btm_task_id spin = 0, chain[5], pt = 0, f = 0, q = 0, id = 0;
    A.add_task(m, task_until_stopped, tracked(), tracked_free, 10, NULL, NULL, 0, &spin);
    /* wait until it runs, then stop it while running */
    uint64_t deadline = now_ms() + 10000;
    while (atomic_load(&running_started) == 0 && now_ms() < deadline) sleep_ms(1);
    if (atomic_load(&running_started) == 0) FAIL("iteration %d: the spinning task never ran", it);
    btm_stop_report rep;
    if (A.stop_task(m, spin, false, false, &rep) != BTM_STATUS_OK || rep.while_running != 1)
        FAIL("iteration %d: stopping the running task", it);
    for (int i = 0; i < 5; i++)
        A.add_task(m, task_result, tracked(), tracked_free, 0, &g, i ? &chain[i - 1] : NULL,
                   i ? 1u : 0u, &chain[i]);
    A.add_pass(m, 0, &g, chain, 5, tracked(), tracked_free, &pt);
    A.add_task(m, task_fail, tracked(), tracked_free, 0, NULL, NULL, 0, &f);
    A.add_task(m, task_result, tracked(), tracked_free, -5, NULL, &f, 1, &id);
    /* a group of queued tasks stopped as a whole */
    btm_group other;
    A.group_named(m, "stopped", &other);
    for (int i = 0; i < 20; i++)
        A.add_task(m, task_result, tracked(), tracked_free, -100, &other, &pt, 1, &q);
    A.stop_group(m, &other, false, true, NULL);
    /* drain until the pass-through's group finished */
    btm_event ev[16];
    size_t n = 0, finals = 0;
    bool group_done = false;
    deadline = now_ms() + 10000;
    while (!(group_done && finals >= 8) && now_ms() < deadline) {
        if (A.poll(m, ev, 16, &n) != BTM_STATUS_OK) break;
        for (size_t i = 0; i < n; i++) {
            if (ev[i].kind == BTM_EVENT_TASK_COMPLETED || ev[i].kind == BTM_EVENT_TASK_FAILED)
                finals++;
            if (ev[i].kind == BTM_EVENT_GROUP_FINISHED && ev[i].group.kind == g.kind &&
                ev[i].group.value == g.value)
                group_done = true;
        }
        if (n == 0) A.wait_events(m, 100);
    }
    if (!group_done || finals != 8)
        FAIL("iteration %d: expected 8 final events and the group finished (got %zu, %d)", it,
             finals, group_done);
    size_t still = 99;
    btm_status st = A.shut_down(m, 10000, &still);
    if (st != BTM_STATUS_OK || still != 0) FAIL("iteration %d: shut_down %u still %zu", it, st, still);
    A.destroy(m);
    return true;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "libbtm.so";
    int iterations = argc > 2 ? atoi(argv[2]) : 200;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int base_threads = count_threads();
    long rss20 = 0, rss_end = 0;
    int lingering_after_destroy = 0, max_lingering = 0, unloaded = 0;
    uint64_t t0 = now_ms();
    for (int it = 1; it <= iterations && failures < 20; it++) {
        if (!load(path)) return 1;
        if (it == 1) printf("reload: library %s, version %s, %d iterations\n", path, A.version(),
                            iterations);
        one_iteration(it);
        /* Right after destroy no btm thread may remain: once dlclose unmaps
         * the code, any thread still inside it would crash the host. */
        int extra = count_threads() - base_threads;
        if (extra > 0) { /* grace period for the kernel's exit path, see count_threads */
            uint64_t grace = now_ms() + 100;
            while (count_threads() > base_threads && now_ms() < grace) sleep_ms(1);
            extra = count_threads() - base_threads;
        }
        if (extra > 0) {
            lingering_after_destroy++;
            if (extra > max_lingering) max_lingering = extra;
            /* let them go before dlclose so the run can go on and report */
            uint64_t deadline = now_ms() + 5000;
            while (count_threads() > base_threads && now_ms() < deadline) sleep_ms(1);
        }
        if (dlclose(A.lib) != 0) FAIL("iteration %d: dlclose: %s", it, dlerror());
        void *still_loaded = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (still_loaded)
            dlclose(still_loaded);
        else
            unloaded++;
        memset(&A, 0, sizeof A);
        if (count_threads() != base_threads)
            FAIL("iteration %d: %d threads after dlclose (%d before the first load)", it,
                 count_threads(), base_threads);
        if (atomic_load(&allocs) != atomic_load(&frees))
            FAIL("iteration %d: %ld allocations, %ld frees", it, (long)atomic_load(&allocs),
                 (long)atomic_load(&frees));
        if (it == 20) rss20 = rss_kb();
        if (it == iterations) rss_end = rss_kb();
    }
    if (lingering_after_destroy)
        FAIL("%d of %d iterations: btm threads still alive right after btm_destroy returned "
             "(up to %d): a dlclose there would unmap code they run",
             lingering_after_destroy, iterations, max_lingering);
    long growth = rss_end - rss20;
    const long bound_kb = 4096;
    printf("reload: %d iterations in %llu ms; threads before %d, after %d; library unloaded by "
           "dlclose in %d of %d iterations\n",
           iterations, (unsigned long long)(now_ms() - t0), base_threads, count_threads(), unloaded,
           iterations);
    if (iterations >= 20) {
        printf("reload: RSS after iteration 20: %ld kB, after %d: %ld kB, growth %ld kB (bound %ld)\n",
               rss20, iterations, rss_end, growth, bound_kb);
        if (growth > bound_kb) FAIL("RSS grew by %ld kB between iteration 20 and %d", growth,
                                    iterations);
    }
    printf("reload: %s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
