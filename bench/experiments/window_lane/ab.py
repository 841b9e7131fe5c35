#!/usr/bin/env python3
"""Interleaved rounds of the window_lane model (sim.c, docs/ENGINE_PLAN.md,
session 41): levels and hybrid, same and rr, medians and the rr/same ratio.

    python3 bench/experiments/window_lane/ab.py ROUNDS N [MODES]

Builds /tmp/window_lane_sim first. MODES defaults to "levels,hybrid".
"""
import os
import re
import statistics
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
exe = "/tmp/window_lane_sim"
subprocess.run(["gcc", "-O2", "-pthread", "-Wall", "-Wextra", "-o", exe, os.path.join(here, "sim.c")], check=True)
rounds, n = int(sys.argv[1]), sys.argv[2]
modes = (sys.argv[3] if len(sys.argv) > 3 else "levels,hybrid").split(",")
cfgs = [(m, o) for m in modes for o in ("same", "rr")]
res = {c: [] for c in cfgs}
adds = {c: [] for c in cfgs}
share = {c: [] for c in cfgs}
for r in range(rounds):
    for c in cfgs[r % len(cfgs):] + cfgs[:r % len(cfgs)]:
        out = subprocess.run([exe, c[0], c[1], n], capture_output=True, text=True, check=True).stdout
        m = re.search(r": ([\d.]+) ns/task \(adds ([\d.]+);.*window share ([\d.]+)%", out)
        res[c].append(float(m.group(1)))
        adds[c].append(float(m.group(2)))
        share[c].append(float(m.group(3)))
for c in cfgs:
    print("%-7s %-5s median %6.1f ns/task (min %6.1f, max %6.1f), adds %6.1f ns each, window share %5.1f%%" % (
        c[0], c[1], statistics.median(res[c]), min(res[c]), max(res[c]), statistics.median(adds[c]),
        statistics.median(share[c])))
for m in modes:
    print("%s rr / same: %.2fx" % (m, statistics.median(res[(m, "rr")]) / statistics.median(res[(m, "same")])))
