/* peer_common.h - shared measurement helpers for the btm side-by-side
 * benchmark peers (bench/peers/peer_*.c[pp]). Header-only; include it in
 * exactly one translation unit per program. Usable from C and C++.
 *
 * Every peer program has the same command line:
 *     ./peer_<name> <workload> <N>
 * and prints exactly one line of JSON on stdout, for example
 *     {"peer":"libuv","workload":"w1","n":100000,"ns_per_task":123.4,"ms":12.3}
 * or, when the workload cannot be expressed with that peer,
 *     {"peer":"libuv","workload":"w6","unsupported":"reason"}
 * Anything else (diagnostics) goes to stderr. Exit status 0 on success,
 * 1 on a failed self-check, 2 on bad usage.
 */
#ifndef BTM_BENCH_PEER_COMMON_H
#define BTM_BENCH_PEER_COMMON_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
#define PC_EXTERN_C extern "C"
#else
#define PC_EXTERN_C
#endif

#define PC_WORKERS 2            /* worker threads, everywhere */
#define PC_W2A_CHAINS 1000      /* w2a: 1000 chains ... */
#define PC_W2A_LEN 100          /* ... of 100 dependent tasks (N is ignored) */
#define PC_W4_DEFAULT 10000     /* w4: round trips when N == 0 */
#define PC_WARMUP 64            /* tasks run before any clock starts */

/* The task body every peer runs: an empty, non-inlined C function called
 * through a function pointer with a userdata pointer. */
PC_EXTERN_C __attribute__((noinline)) void bench_task(void *ud)
{
    (void)ud;
    __asm__ __volatile__("" ::: "memory");
}
typedef void (*pc_task_fn)(void *);
/* Read through a volatile so no compiler can see which function is called. */
static pc_task_fn volatile pc_task_ptr = bench_task;
static inline pc_task_fn pc_task(void) { return pc_task_ptr; }

/* A userdata pointer that is never dereferenced. */
static char pc_dummy_ud[16] __attribute__((unused));

static inline uint64_t pc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Resident set size in bytes, from /proc/self/statm. */
static inline long pc_rss_bytes(void)
{
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    fclose(f);
    return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

static inline void pc_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "peer: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---- the gate: blocks workers so that queued tasks really stay queued ---- */
static pthread_mutex_t pc_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pc_gate_cv = PTHREAD_COND_INITIALIZER;
static int pc_gate_entered = 0;
static int pc_gate_is_open = 0;

/* Task body of a gate task: announce, then block until pc_gate_open(). */
PC_EXTERN_C void pc_gate_task(void *ud)
{
    (void)ud;
    pthread_mutex_lock(&pc_gate_mu);
    pc_gate_entered++;
    pthread_cond_broadcast(&pc_gate_cv);
    while (!pc_gate_is_open) pthread_cond_wait(&pc_gate_cv, &pc_gate_mu);
    pthread_mutex_unlock(&pc_gate_mu);
}

/* Wait until `n` gate tasks are blocked (i.e. every worker is occupied). */
static inline void pc_gate_wait_entered(int n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&pc_gate_mu);
    while (pc_gate_entered < n) {
        if (pthread_cond_timedwait(&pc_gate_cv, &pc_gate_mu, &deadline) != 0 &&
            pc_gate_entered < n) {
            pthread_mutex_unlock(&pc_gate_mu);
            pc_die("only %d of %d workers reached the gate within 10 s", pc_gate_entered, n);
        }
    }
    pthread_mutex_unlock(&pc_gate_mu);
}

static inline void pc_gate_open(void)
{
    pthread_mutex_lock(&pc_gate_mu);
    pc_gate_is_open = 1;
    pthread_cond_broadcast(&pc_gate_cv);
    pthread_mutex_unlock(&pc_gate_mu);
}

/* Closes the gate again for a second use. Only once every gate task has
 * returned (the caller knows it: GLib frees a destroyed pool's queued items
 * only after its running tasks returned). */
static __attribute__((unused)) void pc_gate_reset(void)
{
    pthread_mutex_lock(&pc_gate_mu);
    pc_gate_is_open = 0;
    pc_gate_entered = 0;
    pthread_mutex_unlock(&pc_gate_mu);
}

/* ---- w4 statistics ---- */
static __attribute__((unused)) int pc_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
/* Sorts `v` in place; nearest-rank percentile, p in (0,100]. */
static inline double pc_percentile_us(uint64_t *v, size_t n, double p)
{
    size_t rank;
    if (n == 0) return 0.0;
    qsort(v, n, sizeof v[0], pc_cmp_u64);
    rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1000.0;
}

/* ---- output ---- */
static const char *pc_peer_name = "?";
static const char *pc_workload = "?";

/* Print the result line. `extra` is either NULL or a string of additional
 * JSON members starting with a comma, e.g. ",\"median_us\":1.5". */
static inline void pc_report(uint64_t n, uint64_t elapsed_ns, const char *extra)
{
    double per = n ? (double)elapsed_ns / (double)n : 0.0;
    printf("{\"peer\":\"%s\",\"workload\":\"%s\",\"n\":%llu,\"ns_per_task\":%.1f,\"ms\":%.3f%s}\n",
           pc_peer_name, pc_workload, (unsigned long long)n, per,
           (double)elapsed_ns / 1e6, extra ? extra : "");
    fflush(stdout);
}

static inline void pc_unsupported(const char *reason)
{
    printf("{\"peer\":\"%s\",\"workload\":\"%s\",\"unsupported\":\"%s\"}\n",
           pc_peer_name, pc_workload, reason);
    fflush(stdout);
}

/* Parses argv; returns N. Exits with status 2 on bad usage. */
static inline uint64_t pc_parse_args(int argc, char **argv, const char *peer)
{
    static const char *const known[] = {"w1", "w2a", "w2b", "w3", "w4", "w5", "w6"};
    size_t i;
    int ok = 0;
    char *end = NULL;
    unsigned long long n;
    pc_peer_name = peer;
    if (argc != 3) goto usage;
    for (i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(argv[1], known[i]) == 0) ok = 1;
    if (!ok) goto usage;
    n = strtoull(argv[2], &end, 10);
    if (!end || *end || argv[2][0] == '-') goto usage;
    pc_workload = argv[1];
    return (uint64_t)n;
usage:
    fprintf(stderr,
            "usage: %s <w1|w2a|w2b|w3|w4|w5|w6> <N>\n"
            "  w1  N empty tasks, every completion observed by the main thread\n"
            "  w2a %d chains of %d dependent tasks (N ignored)\n"
            "  w2b N tasks fanning into one final task\n"
            "  w3  cancel N queued tasks (workers blocked), freeing each userdata\n"
            "  w4  N single-task round trips (N=0: %d); median_us, p99_us\n"
            "  w5  bytes per queued task (RSS delta over N queued tasks)\n"
            "  w6  w1 with 4 priority levels (task i has priority i%%4)\n",
            argc > 0 ? argv[0] : "peer", PC_W2A_CHAINS, PC_W2A_LEN, PC_W4_DEFAULT);
    exit(2);
}

#endif /* BTM_BENCH_PEER_COMMON_H */
