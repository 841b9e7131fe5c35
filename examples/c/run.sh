#!/usr/bin/env bash
# Builds libbtm and runs a C example: `run.sh` (the thumbnail demo,
# examples/c/thumbnails.c), `run.sh poll_loop` (a host sleeping in poll(2) on
# the event descriptor, with a progress line), `run.sh frame_loop` (a frame
# loop draining at most K events per frame), or `run.sh all`.
# Outputs: build/c/examples/. Exits non-zero if anything fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/build/c/examples"
mkdir -p "$OUT"
command -v gcc >/dev/null 2>&1 || {
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev
}
cargo build --release --quiet
ln -sf libbtm.so target/release/libbtm.so.0
which="${1:-thumbnails}"
[ "$which" = all ] && set -- thumbnails poll_loop frame_loop || set -- "$which"
for ex in "$@"; do
    [ -f "examples/c/$ex.c" ] || { echo "unknown example: $ex (thumbnails poll_loop frame_loop all)"; exit 2; }
    gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -pthread -O2 -I"$ROOT/include" \
        "examples/c/$ex.c" -o "$OUT/$ex" \
        -L"$ROOT/target/release" -lbtm -Wl,-rpath,"$ROOT/target/release"
    echo "== examples/c/$ex.c"
    "$OUT/$ex"
done
