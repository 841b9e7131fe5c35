#!/usr/bin/env bash
# Builds the API fuzzer: build/fuzz/fuzz_plain (for valgrind) and
# build/fuzz/fuzz_asan (ASan+UBSan). Library: target/release/libbtm.so.
set -eu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
mkdir -p build/fuzz
CF=(-std=c11 -Wall -Wextra -Werror -g -pthread -Iinclude)
LK=(-Ltarget/release -lbtm -lm -Wl,-rpath,"$ROOT/target/release")
gcc "${CF[@]}" -O1 tests/fuzz/fuzz_api.c -o build/fuzz/fuzz_plain "${LK[@]}"
gcc "${CF[@]}" -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
    tests/fuzz/fuzz_api.c -o build/fuzz/fuzz_asan "${LK[@]}"
