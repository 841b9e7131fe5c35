#!/usr/bin/env bash
# Builds libbtm and runs the C thumbnail demo (examples/c/thumbnails.c).
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
gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -pthread -O2 -I"$ROOT/include" \
    examples/c/thumbnails.c -o "$OUT/thumbnails" \
    -L"$ROOT/target/release" -lbtm -Wl,-rpath,"$ROOT/target/release"
exec "$OUT/thumbnails"
