#!/usr/bin/env bash
# Usage: tests/fuzz/campaign.sh asan|valgrind|plain SECONDS FIRST_SEED OPS [CHUNK]
# Runs chunks of CHUNK seeds (default 10) per process until SECONDS pass.
# Logs: build/fuzz/logs/<tool>-<first seed of chunk>.log; summary on stdout.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TOOL=$1 SECS=$2 SEED=$3 OPS=$4 CHUNK=${5:-10}
LOG=build/fuzz/logs
mkdir -p "$LOG"
. tests/fuzz/asan_env.sh
END=$(( $(date +%s) + SECS ))
while [ "$(date +%s)" -lt "$END" ]; do
    f="$LOG/$TOOL-$SEED.log"
    if [ "$TOOL" = plain ]; then
        timeout 900 build/fuzz/fuzz_plain --seed "$SEED" --seeds "$CHUNK" --ops "$OPS" --keep-going --wd 60 >"$f" 2>&1
    elif [ "$TOOL" = asan ]; then
        timeout 900 build/fuzz/fuzz_asan --seed "$SEED" --seeds "$CHUNK" --ops "$OPS" --keep-going --wd 60 >"$f" 2>&1
    else
        timeout 1800 valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect --error-exitcode=99 --fair-sched=yes \
            build/fuzz/fuzz_plain --seed "$SEED" --seeds "$CHUNK" --ops "$OPS" --keep-going --wd 300 >"$f" 2>&1
    fi
    rc=$?
    n=$(grep -c '^seed ' "$f")
    echo "$TOOL seeds $SEED..$((SEED + CHUNK - 1)) rc=$rc seeds_done=$n ops=$OPS $(grep -c VIOLATION "$f") violations"
    SEED=$((SEED + CHUNK))
done
