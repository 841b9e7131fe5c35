#!/usr/bin/env bash
# Runs every test of btm: Rust (engine, semantics, host integration, C ABI,
# header), C (plus ASan/UBSan, valgrind, plugin reload), C++ (GoogleTest, the
# installed CMake/pkg-config package, sanitizers), C# (Mono), Windows (btm.dll
# cross-built with MinGW-w64, the C suite, examples and Rust tests under
# Wine) and a smoke run of the benchmark. Installs what it needs (Debian: apt-get, as root or with
# sudo). Exits non-zero if anything fails.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh rust c     # only some sections (rust c examples cpp csharp windows bench)
#   bash scripts/test.sh rust-asan  # optional, not in the default run: the Rust
#                                   # tests under AddressSanitizer (nightly)
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(rust c examples cpp csharp windows bench)

results=()
failed=0
run() {
    local name=$1
    shift
    echo
    echo "=================== $name ==================="
    local start=$SECONDS rc
    "$@"
    rc=$?
    if [ $rc -eq 0 ]; then
        results+=("PASS  $name ($((SECONDS - start)) s)")
    elif [ $rc -eq 77 ]; then
        # A section whose tools could not be fetched (tests/windows/run.sh:
        # rustup's server out of reach): shown, not failed.
        results+=("SKIP  $name ($((SECONDS - start)) s; see its output)")
    else
        results+=("FAIL  $name ($((SECONDS - start)) s)")
        failed=1
    fi
}

rust_asan() {
    if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        echo "rust-asan needs a nightly toolchain (rustup toolchain install nightly)"
        return 1
    fi
    RUSTFLAGS=-Zsanitizer=address RUSTDOCFLAGS=-Zsanitizer=address ASAN_OPTIONS=detect_leaks=1 \
        CARGO_TARGET_DIR=target/asan cargo +nightly test --target x86_64-unknown-linux-gnu \
        --lib --test semantics --test host_integration --test ffi --test faults --test stress \
        --test lane --test continuations
}

# The benchmark's smoke run, and btm_bench's phase modes (not part of
# bench/run.py's plan), so that none of it rots.
bench_smoke() {
    python3 bench/run.py --quick &&
        LD_LIBRARY_PATH=target/release bench/build/btm_bench w1phases 10000 &&
        LD_LIBRARY_PATH=target/release bench/build/btm_bench w2aphases 0 &&
        LD_LIBRARY_PATH=target/release bench/build/btm_bench fanlow 10000 &&
        LD_LIBRARY_PATH=target/release BTM_BENCH_SPIN=100 bench/build/btm_bench backlog 10000 &&
        LD_LIBRARY_PATH=target/release BTM_BENCH_W6_ORDER=runs16 BTM_BENCH_CPU=1 \
            bench/build/btm_bench w6 10000
}

rust_tests() {
    cargo build --release && ln -sf libbtm.so target/release/libbtm.so.0 && cargo test --release
}

for s in "${sections[@]}"; do
    case "$s" in
        rust) run "Rust tests (cargo test)" rust_tests ;;
        c) run "C tests (plain, ASan+UBSan, valgrind, reload, header, symbols)" bash tests/c/run.sh ;;
        examples) run "C examples (demo, poll(2) host loop, frame loop)" bash examples/c/run.sh all
                  run "Python example (ctypes)" python3 examples/python/thumbnails.py
                  run "Python at interpreter shutdown (workers ended by CPython)" python3 tests/python/interpreter_exit.py ;;
        cpp) run "C++ binding and packaging" bash tests/cpp/run.sh ;;
        csharp) run "C# binding (Mono)" bash tests/csharp/run.sh ;;
        windows) run "Windows (MinGW-w64 build, C suite, examples and Rust tests under Wine)" bash tests/windows/run.sh ;;
        bench) run "Benchmark smoke run" bench_smoke ;;
        rust-asan) run "Rust tests under AddressSanitizer (nightly)" rust_asan ;;
        *) echo "unknown section: $s (expected rust c examples cpp csharp windows bench rust-asan)"; exit 2 ;;
    esac
done

echo
echo "=================== summary ==================="
printf '%s\n' "${results[@]}"
exit $failed
