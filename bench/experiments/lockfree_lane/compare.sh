#!/usr/bin/env bash
# Runs the lock-free lane (plain, with LANE_FULL=1 and with LANE_LOCK=1)
# interleaved with the
# hand-rolled Rust pool and btm on W1 and W6, and prints medians [min-max]
# in ns per task: bash bench/experiments/lockfree_lane/compare.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
runs=${1:-7}
cargo build --release --quiet
ln -sf libbtm.so target/release/libbtm.so.0
cargo build --release --quiet --manifest-path bench/experiments/lockfree_lane/Cargo.toml
cargo build --release --quiet --manifest-path bench/peers/rustpool/Cargo.toml
mkdir -p bench/build
gcc -O2 -std=c11 -Iinclude bench/btm_bench.c -Ltarget/release -lbtm -lpthread -o bench/build/btm_bench
lane=bench/experiments/lockfree_lane/target/release/lockfree_lane
pool=bench/peers/rustpool/target/release/peer_rustpool
ns() { "$@" | sed 's/.*"ns_per_task":\([0-9.]*\).*/\1/'; }
for w in "w1 1000" "w1 100000" "w1 1000000" "w6 100000" "w6 1000000"; do
    for _ in $(seq "$runs"); do
        echo "$w lane $(ns $lane $w)"
        echo "$w lane+full $(LANE_FULL=1 ns $lane $w)"
        echo "$w lane+lock $(LANE_LOCK=1 ns $lane $w)"
        echo "$w rustpool $(ns $pool $w)"
        echo "$w btm $(LD_LIBRARY_PATH=target/release ns bench/build/btm_bench $w)"
    done
done | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin]
keys = []
for r in rows:
    if (r[0], r[1]) not in keys:
        keys.append((r[0], r[1]))
for w, n in keys:
    cells, med = [], {}
    for p in ["lane", "lane+full", "lane+lock", "rustpool", "btm"]:
        v = [float(r[3]) for r in rows if (r[0], r[1], r[2]) == (w, n, p)]
        med[p] = st.median(v)
        cells.append("%s %.0f [%.0f-%.0f]" % (p, med[p], min(v), max(v)))
    print("%s %7s: %s | lane/rustpool %.2f, lane+full/rustpool %.2f, lane+lock/rustpool %.2f" % (
        w, n, ", ".join(cells), med["lane"] / med["rustpool"], med["lane+full"] / med["rustpool"],
        med["lane+lock"] / med["rustpool"]))
'
