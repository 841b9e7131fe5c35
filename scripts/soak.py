#!/usr/bin/env python3
"""Soak test for btm (not run in CI).

Builds libbtm (cargo build --release) and a small C driver against the C ABI,
runs a random workload for a configurable time, samples the driver's RSS
every second from /proc, and reports whether memory stayed flat.

The driver, on 4 worker threads by default: adds tasks (random priorities,
groups, upstream ids, pass-through tasks with payloads), stops tasks and
groups (every flag combination), polls with random capacities, and every
few seconds destroys its manager and creates a new one. Tasks set results
of varying sizes, fail, or add a child task from inside. Every userdata,
payload and result is counted; after each destroy the count must be 0.

    python3 scripts/soak.py                  # 120 s
    python3 scripts/soak.py --seconds 3600   # an hour
    python3 scripts/soak.py --seconds 60 --threads 8 --seed 7

Verdict: after a warm-up (the first 20% of the run, at least 5 s), memory is
called flat when the least-squares slope of RSS is below --max-slope KiB per
minute (default 256) and the peak of the last quarter is within
--max-growth KiB (default 4096) of the peak of the first post-warm-up
quarter. Exit status 0 when flat and no leak was counted, 1 otherwise.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DRIVER = r"""
#include "btm.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_long live;          /* userdata + payloads + results not yet freed */
static atomic_long task_runs;

static unsigned next_rand(unsigned *s) { *s = *s * 1103515245u + 12345u; return (*s >> 8) & 0xffffff; }

static void free_blob(void *p) { free(p); atomic_fetch_sub(&live, 1); }
static void *new_blob(unsigned v) {
    size_t n = 8 + (v % 64) * 16;            /* 8 .. 1 KiB: exercise the allocator */
    unsigned char *p = malloc(n);
    memset(p, (int)(v & 0xff), n);
    atomic_fetch_add(&live, 1);
    return p;
}

typedef struct { unsigned seed; int depth; } ud_t;
static void free_ud(void *p) { free(p); atomic_fetch_sub(&live, 1); }
static ud_t *new_ud(unsigned seed, int depth) {
    ud_t *u = malloc(sizeof *u);
    u->seed = seed; u->depth = depth;
    atomic_fetch_add(&live, 1);
    return u;
}

static void task(void *userdata, btm_task_context *ctx) {
    ud_t *u = userdata;
    unsigned s = u->seed;
    atomic_fetch_add(&task_runs, 1);
    volatile unsigned x = 0;
    for (unsigned i = 0; i < (s % 2000); i++) x += i;
    if (u->depth < 2 && next_rand(&s) % 8 == 0) {
        btm_manager *m = btm_context_manager(ctx);
        btm_task_id id;
        ud_t *child = new_ud(next_rand(&s), u->depth + 1);
        btm_add_task(m, task, child, free_ud, 0, NULL, NULL, 0, &id);
    }
    switch (next_rand(&s) % 10) {
    case 0: btm_context_fail(ctx, "soak failure", "details of the soak failure"); break;
    case 1: break;
    default: btm_context_set_result(ctx, new_blob(s), free_blob); break;
    }
}

#define RING 256

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 60;
    unsigned seed = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
    int threads = argc > 3 ? atoi(argv[3]) : 4;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long ops = 0, managers = 0, events_total = 0, leaks = 0;
    btm_event ev[256];
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double el = (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
        if (el >= seconds) break;
        btm_config cfg;
        btm_config_init(&cfg);
        cfg.max_threads = threads;
        cfg.start_processing = true;
        btm_manager *m = NULL;
        if (btm_create(&cfg, &m) != BTM_STATUS_OK) { fprintf(stderr, "create failed\n"); return 2; }
        managers++;
        btm_task_id ring[RING];
        int nring = 0;
        double until = el + 2.0 + (next_rand(&seed) % 3000) / 1000.0;   /* 2..5 s per manager */
        while (el < until && el < seconds) {
            for (int k = 0; k < 200; k++) {
                unsigned r = next_rand(&seed) % 100;
                btm_group g = { BTM_GROUP_KIND_NUMBERED, 0, next_rand(&seed) % 8 };
                if (r < 50) {
                    btm_task_id ups[3];
                    size_t nu = nring ? next_rand(&seed) % 3 : 0;
                    for (size_t i = 0; i < nu; i++) ups[i] = ring[next_rand(&seed) % nring];
                    btm_task_id id;
                    btm_status s;
                    int prio = (int)(next_rand(&seed) % 7) - 3;
                    if (r < 8)
                        s = btm_add_pass_through_task(m, prio, &g, ups, nu, new_blob(r), free_blob, &id);
                    else
                        s = btm_add_task(m, task, new_ud(next_rand(&seed), 0), free_ud, prio, &g, ups, nu, &id);
                    if (s == BTM_STATUS_OK) ring[nring < RING ? nring++ : next_rand(&seed) % RING] = id;
                } else if (r < 65 && nring) {
                    btm_stop_task(m, ring[next_rand(&seed) % nring], next_rand(&seed) & 1, next_rand(&seed) & 1, NULL);
                } else if (r < 68) {
                    btm_stop_task_group(m, &g, next_rand(&seed) & 1, next_rand(&seed) & 1, NULL);
                } else if (r < 69) {
                    btm_stop_all_tasks(m, NULL);
                } else {
                    size_t n = 0;
                    size_t cap = 1 + next_rand(&seed) % 256;
                    btm_poll_events(m, ev, cap, &n);
                    events_total += (long)n;
                }
                ops++;
            }
            btm_stats st;
            btm_get_stats(m, &st);
            if (st.queued + st.blocked > 20000) {    /* keep the backlog bounded */
                btm_wait_idle(m, 1000);
            }
            clock_gettime(CLOCK_MONOTONIC, &t);
            el = (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
        }
        btm_destroy(m);
        long l = atomic_load(&live);
        if (l != 0) { leaks++; fprintf(stderr, "after destroy #%ld: %ld allocations not freed\n", managers, l); }
    }
    printf("SOAK ops=%ld managers=%ld task_runs=%ld events=%ld leaks_after_destroy=%ld\n",
           ops, managers, (long)atomic_load(&task_runs), events_total, leaks);
    return leaks ? 1 : 0;
}
"""


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def slope_kib_per_min(samples):
    n = len(samples)
    if n < 2:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [r for _, r in samples]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 60.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-slope", type=float, default=256.0, help="KiB per minute")
    ap.add_argument("--max-growth", type=float, default=4096.0, help="KiB")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--lib"], cwd=ROOT, check=True)
    libdir = os.path.join(ROOT, "target", "release")
    tmp = tempfile.mkdtemp(prefix="btm-soak-")
    src = os.path.join(tmp, "soak.c")
    exe = os.path.join(tmp, "soak")
    with open(src, "w") as f:
        f.write(DRIVER)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-std=gnu11", "-Wall", "-I", os.path.join(ROOT, "include"), src, "-o", exe,
                    "-L", libdir, "-lbtm", f"-Wl,-rpath,{libdir}", "-lpthread"], check=True)

    print(f"soak: {args.seconds:.0f} s, {args.threads} worker threads, seed {args.seed}", flush=True)
    p = subprocess.Popen([exe, str(args.seconds), str(args.seed), str(args.threads)],
                         stdout=subprocess.PIPE, text=True)
    samples = []
    start = time.monotonic()
    while p.poll() is None:
        r = rss_kib(p.pid)
        el = time.monotonic() - start
        if r is not None:
            samples.append((el, r))
            if len(samples) % 10 == 1:
                print(f"  t={el:6.0f} s  RSS {r / 1024:8.1f} MiB", flush=True)
        time.sleep(1.0)
    out = p.stdout.read()
    print(out.strip())

    warm = max(5.0, args.seconds * 0.2)
    steady = [s for s in samples if s[0] >= warm]
    if len(steady) < 4:
        print("soak: too short to judge (need a few samples after the warm-up)")
        return 1 if p.returncode else 0
    q = max(1, len(steady) // 4)
    first_peak = max(r for _, r in steady[:q])
    last_peak = max(r for _, r in steady[-q:])
    slope = slope_kib_per_min(steady)
    growth = last_peak - first_peak
    flat = slope < args.max_slope and growth < args.max_growth
    print(f"soak: {len(samples)} RSS samples; after {warm:.0f} s warm-up: first-quarter peak "
          f"{first_peak / 1024:.1f} MiB, last-quarter peak {last_peak / 1024:.1f} MiB "
          f"(growth {growth:+d} KiB), slope {slope:+.1f} KiB/min, overall max {max(r for _, r in samples) / 1024:.1f} MiB")
    print(f"soak: memory is {'FLAT' if flat else 'NOT FLAT'}; driver exit status {p.returncode}")
    return 0 if flat and p.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
