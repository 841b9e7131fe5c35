/*
 * The floor under W3 on this machine, without any task manager: free N
 * 16-byte blocks with glibc's free() (what btm_bench's free function does
 * for each stopped task).
 * Usage: w3_floor <N>; prints one JSON line. bench/run.py runs it next to
 * W3 so the report shows how much of a stop is the host's own free calls.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    void **p = malloc(n * sizeof *p);
    if (!p) return 1;
    for (size_t i = 0; i < n; i++)
        if (!(p[i] = malloc(16))) return 1;
    double t0 = now_ms();
    for (size_t i = 0; i < n; i++) free(p[i]);
    double t1 = now_ms();
    free(p);
    printf("{\"n\":%zu,\"free_ms\":%.3f}\n", n, t1 - t0);
    return 0;
}
