#!/usr/bin/env bash
# Exact instruction counts of btm's hot paths (see bench/btm_paths.c):
#   bash bench/paths.sh [N]      (default N=100000; needs valgrind)
# Prints instructions per btm_add_task call (paused manager), per task on
# the worker thread (draining a full queue alone) and per polled event, for
# independent tasks and for chains of dependent tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
cargo build --release --quiet
mkdir -p bench/build
ln -sf libbtm.so target/release/libbtm.so.0
gcc -O2 -std=c11 -Iinclude bench/btm_paths.c -Ltarget/release -lbtm -lpthread -o bench/build/btm_paths
report() { # report MODE-ARG LABEL
    local out=bench/build/paths$1.callgrind
    LD_LIBRARY_PATH=target/release valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$out" \
        bench/build/btm_paths "$n" $1 >/dev/null 2>&1
    echo "$2"
    callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk -v n="$n" '
        / src\/ffi\/task.rs:btm_add_task \[/ { add = $1 }
        /event.rs:btm_poll_events/ { if (!poll) poll = $1 }
        /pthread_create.c:start_thread/ { if (!worker) worker = $1 }
        END {
            gsub(",", "", add); gsub(",", "", poll); gsub(",", "", worker)
            printf "  btm_add_task     %7.1f instructions per call (paused manager)\n", add / n
            printf "  worker thread    %7.1f instructions per task (one worker, full queue)\n", worker / n
            printf "  btm_poll_events  %7.1f instructions per event\n", poll / n
        }'
}
report "" "independent tasks (W1's shape):"
report chain "chains of 100 (W2a's shape: each task waits for the one before):"
