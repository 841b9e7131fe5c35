#!/usr/bin/env python3
"""Interleaved A/B rounds of btm builds against the hand-rolled pool.

This VM's wall time moves by up to 2x within an hour, so two builds of btm
are compared inside the same rounds, each round running the pool once and
every build once (alternating their order), and medians are taken:

    python3 bench/ab.py W N ROUNDS LIBDIR [LIBDIR ...]

LIBDIR is a directory holding a `libbtm.so` (and a `libbtm.so.0` link to it),
for example a copy of `target/release/libbtm.so` taken before a change:

    mkdir -p /tmp/before && cp target/release/libbtm.so /tmp/before/ \\
        && ln -sf libbtm.so /tmp/before/libbtm.so.0

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
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    w, n, rounds, dirs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    for path in (BTM_BENCH, POOL):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run `python3 bench/run.py --quick` first")
    for d in dirs:
        if not os.path.exists(os.path.join(d, "libbtm.so.0")):
            sys.exit(f"{d} has no libbtm.so.0 (a link to libbtm.so)")
    samples = {d: [] for d in dirs}
    samples["pool"] = []
    for r in range(rounds):
        samples["pool"].append(ns_per_task([POOL, w, n]))
        for d in dirs if r % 2 == 0 else dirs[::-1]:
            env = dict(os.environ, LD_LIBRARY_PATH=d)
            samples[d].append(ns_per_task([BTM_BENCH, w, n], env))
    pool = statistics.median(samples["pool"])
    print(f"pool {pool:.1f} ns/task {sorted(samples['pool'])}")
    for d in dirs:
        m = statistics.median(samples[d])
        print(f"{d} {m:.1f} ns/task, {m / pool:.2f}x the pool {sorted(samples[d])}")


if __name__ == "__main__":
    main()
