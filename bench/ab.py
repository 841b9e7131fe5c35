#!/usr/bin/env python3
"""Interleaved A/B rounds of btm builds against the hand-rolled pool.

This VM's wall time moves by up to 2x within an hour, so two builds of btm
are compared inside the same rounds, each round running the pool once and
every build once (each round starting with the next one), and medians are
taken:

    python3 bench/ab.py [--no-pool] W N ROUNDS LIBDIR[:VAR=V,...] [...]

LIBDIR is a directory holding a `libbtm.so` (and a `libbtm.so.0` link to it),
for example a copy of `target/release/libbtm.so` taken before a change:

    mkdir -p /tmp/before && cp target/release/libbtm.so /tmp/before/ \\
        && ln -sf libbtm.so /tmp/before/libbtm.so.0

Environment variables for `btm_bench` may follow a LIBDIR after a colon,
so that one build runs in several configurations in the same rounds
(`/tmp/before:BTM_BENCH_BULK=1024`, `target/release:BTM_BENCH_THREADS=1,
BTM_BENCH_SPIN=1000`). `--no-pool` leaves the pool out, for workloads
only `btm_bench` has (`backlog`, `fanlow`, ...).

Needs `bench/build/btm_bench` and the pool's binary, which
`python3 bench/run.py --quick` builds. W and N are `btm_bench`'s arguments
(`w1 100000`, `w2a 0`, `w2b 1000000`, ...). Prints, per program, the median
ns per task, its ratio to the pool's median, and the sorted samples.
Standard library only; not run by the tests.
"""

import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BTM_BENCH = os.path.join(ROOT, "bench", "build", "btm_bench")
POOL = os.path.join(ROOT, "bench", "peers", "rustpool", "target", "release", "peer_rustpool")


def ns_per_task(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    for line in out.splitlines():
        if line.startswith("{"):
            return json.loads(line)["ns_per_task"]
    raise RuntimeError(f"no result from {cmd}: {out!r}")


def main():
    args = sys.argv[1:]
    with_pool = not (args and args[0] == "--no-pool")
    if not with_pool:
        args = args[1:]
    if len(args) < 4:
        sys.exit(__doc__)
    w, n, rounds, dirs = args[0], args[1], int(args[2]), args[3:]
    for path in (BTM_BENCH, POOL) if with_pool else (BTM_BENCH,):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run `python3 bench/run.py --quick` first")
    envs = {}
    for d in dirs:
        lib, _, assigns = d.partition(":")
        if not os.path.exists(os.path.join(lib, "libbtm.so.0")):
            sys.exit(f"{lib} has no libbtm.so.0 (a link to libbtm.so)")
        envs[d] = dict(os.environ, LD_LIBRARY_PATH=lib)
        for kv in filter(None, assigns.split(",")):
            if "=" not in kv:
                sys.exit(f"{d}: {kv!r} is not VAR=VALUE")
            k, v = kv.split("=", 1)
            envs[d][k] = v
    samples = {d: [] for d in dirs}
    samples["pool"] = []
    for r in range(rounds):
        if with_pool:
            samples["pool"].append(ns_per_task([POOL, w, n]))
        # Each round starts with a different build, so that none always
        # runs first or right after the pool.
        k = r % len(dirs)
        for d in dirs[k:] + dirs[:k]:
            samples[d].append(ns_per_task([BTM_BENCH, w, n], envs[d]))
    pool = statistics.median(samples["pool"]) if with_pool else None
    if with_pool:
        print(f"pool {pool:.1f} ns/task {sorted(samples['pool'])}")
    for d in dirs:
        m = statistics.median(samples[d])
        ratio = f", {m / pool:.2f}x the pool" if with_pool else ""
        print(f"{d} {m:.1f} ns/task{ratio} {sorted(samples[d])}")


if __name__ == "__main__":
    main()
