/* What this machine charges for the two things btm's lane is most sensitive
 * to, printed as one JSON line for bench/run.py's report:
 *
 *   line_round_trip_ns  a cache line handed from CPU 0 to CPU 1 and back
 *                       (two threads pinned, each waiting for the other's
 *                       store): what a host's add pays when a worker has
 *                       just read the line it writes (W6's gap on the Intel
 *                       VM of session 37; docs/ENGINE_PLAN.md);
 *   pause_ns            one x86 PAUSE (spin_loop hint), in which btm's spins
 *                       are counted (~35 ns on the AMD EPYC VMs of sessions
 *                       15-36, 9.6 ns on that Intel VM).
 *
 * Medians of 5 repetitions. Build: gcc -O2 -o bench/build/machine
 * bench/machine.c -lpthread. Not part of the tests. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() atomic_signal_fence(memory_order_seq_cst)
#endif

#define TRIPS 200000
#define REPS 5

static _Alignas(128) atomic_long flag;
static int pinned = 1;

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (pthread_setaffinity_np(pthread_self(), sizeof s, &s) != 0) pinned = 0;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *echo(void *arg) {
    (void)arg;
    pin(1);
    for (long i = 1; i <= (long)TRIPS * REPS; i++) {
        while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i - 1) {
        }
        atomic_store_explicit(&flag, 2 * i, memory_order_release);
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    double trip[REPS] = {0}, pause[REPS];
    pthread_t t;
    /* One CPU: the two threads would hand the line over through the
     * scheduler, and the trip would measure its time slices. */
    int two = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
    pin(0);
    if (two && pthread_create(&t, NULL, echo, NULL) != 0) return 1;
    long i = 1;
    for (int r = 0; two && r < REPS; r++) {
        double t0 = now_ns();
        for (long k = 0; k < TRIPS; k++, i++) {
            atomic_store_explicit(&flag, 2 * i - 1, memory_order_release);
            while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i) {
            }
        }
        trip[r] = (now_ns() - t0) / TRIPS;
    }
    if (two) pthread_join(t, NULL);
    for (int r = 0; r < REPS; r++) {
        double t0 = now_ns();
        for (int k = 0; k < 1000000; k++) PAUSE();
        pause[r] = (now_ns() - t0) / 1e6;
    }
    qsort(trip, REPS, sizeof *trip, cmp);
    qsort(pause, REPS, sizeof *pause, cmp);
    if (two && pinned)
        printf("{\"line_round_trip_ns\":%.1f,\"pause_ns\":%.1f}\n", trip[REPS / 2], pause[REPS / 2]);
    else
        printf("{\"line_round_trip_ns\":null,\"pause_ns\":%.1f}\n", pause[REPS / 2]);
    return 0;
}
