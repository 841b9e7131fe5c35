#!/usr/bin/env bash
# Exact instruction counts of btm's hot paths (see bench/btm_paths.c):
#   bash bench/paths.sh [N]      (default N=100000; needs valgrind)
# Prints instructions per btm_add_task call, per task on the worker thread
# (draining a full queue alone) and per polled event: for independent tasks
# on the lane (W1's path; 10,000 tasks, which fit in a lane level; then the
# marginal task beyond a full level's ring, which waits in its overflow), for
# independent tasks on the locked path (added to a paused manager) and for
# chains of dependent tasks, and the add of a chain task whose upstream task
# already ran.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
cargo build --release --quiet
mkdir -p bench/build
ln -sf libbtm.so target/release/libbtm.so.0
gcc -O2 -std=c11 -Iinclude bench/btm_paths.c -Ltarget/release -lbtm -lpthread -o bench/build/btm_paths
counts() { # counts N MODE-ARG: inclusive Ir of the add calls, the worker thread and the polls
    local out=bench/build/paths$2-$1.callgrind
    LD_LIBRARY_PATH=target/release valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$out" \
        bench/build/btm_paths "$1" $2 >/dev/null 2>&1
    callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null | awk '
        /src\/ffi\/task.rs:btm_add_tasks?$/ { if (!($NF in seen)) { seen[$NF] = 1; v = $1; gsub(",", "", v); add += v } }
        /event.rs:btm_poll_events/ { if (!poll) poll = $1 }
        /pthread_create.c:start_thread/ { if (!worker) worker = $1 }
        / PROGRAM TOTALS/ { total = $1 }
        END { gsub(",", "", add); gsub(",", "", poll); gsub(",", "", worker); gsub(",", "", total)
              print add + 0, worker + 0, poll + 0, total + 0 }'
}
# Each figure is (count at N - count at 0) / N, so that fixed costs (the
# first chunk, level and thread) cancel out.
report() { # report N MODE-ARG LABEL
    echo "$3"
    paste -d' ' <(counts "$1" "$2") <(counts 0 "$2") | awk -v n="$1" '{
        printf "  btm_add_task     %7.1f instructions per call\n", ($1 - $5) / n
        printf "  worker thread    %7.1f instructions per task (one worker, full queue)\n", ($2 - $6) / n
        printf "  btm_poll_events  %7.1f instructions per event\n", ($3 - $7) / n
        printf "  whole program    %7.1f instructions per task\n", ($4 - $8) / n
    }'
}
report 10000 lane "independent tasks on the lane (W1's path: added while the one worker is held):"
# The marginal task past a full ring: (count at 2N - count at N) / N for
# N = 20,000 (20,480 for calls of 1,024); a level's ring holds 16,384
# entries, so all N wait in the level's overflow first.
past() { # past N MODE-ARG LABEL
    echo "$3"
    paste -d' ' <(counts $(($1 * 2)) "$2") <(counts "$1" "$2") | awk -v n="$1" '{
        printf "  btm_add_task     %7.1f instructions per call\n", ($1 - $5) / n
        printf "  worker thread    %7.1f instructions per task (one worker, full queue)\n", ($2 - $6) / n
        printf "  btm_poll_events  %7.1f instructions per event\n", ($3 - $7) / n
        printf "  whole program    %7.1f instructions per task\n", ($4 - $8) / n
    }'
}
past 20000 lane "the same past a full lane ring (tasks 20,001-40,000, each waiting in the level's overflow first; 0-30% of W1 1M's adds in real runs, most of W1 100k's under callgrind):"
report 10000 lane4 "the same with priorities 0-3 in turn (W6's path: four lane levels):"
report 10000 lane8 "the same with priorities 0-7 in turn (eight lane levels, the most a lane has):"
report 10000 lanebulk "the same added with btm_add_tasks, 1,024 per call (btm_bulk's path; the add figure is per task):"
past 20480 lanebulk "the same past a full lane ring (tasks 20,481-40,960; 24-80% of btm_bulk's W1 100k and 1M tasks in real runs, most under callgrind):"
report 10240 lane4bulk "four levels added with btm_add_tasks, 1,024 per call (btm_bulk's W6 path; the add figure is per task):"
report "$n" "" "independent tasks on the locked path (added to a paused manager):"
report "$n" chain "chains of 100 (W2a's shape: each task waits for the one before):"
report 10000 lanechain "chains of 100 on the lane (W2a's path: each chain's first task in the lane, the rest continuations):"
report 10000 lanechainbulk "the same added with btm_add_tasks, ten chains per call, each link naming the one before with BTM_IN_BATCH (btm_bulk's W2a path; the add figure is per task):"
report "$n" fanin "a fan-in (W2b's shape: the last task waits for all the others):"
report 10000 lanefanin "a fan-in on the lane (W2b's path: the tasks run, then one more task waits for all of them; its add is counted in the adds):"
report 10000 lanefaninq "a fan-in added while its upstream tasks still wait in the lane (W2b's path when the workers lag behind the adds, as with btm_add_tasks; its add is counted in the adds):"
report 10000 chainstep "chains of 100, each task added once the one before it ran (the chain's locked fallback; only the add means something, within ~5%; the worker's count includes its idle spinning):"
