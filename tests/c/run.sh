#!/usr/bin/env bash
# The C test command: builds libbtm, then runs
#   1. the C suite (tests/c/*.c) built normally,
#   2. the same suite built with -fsanitize=address,undefined
#      -fno-sanitize-recover=all (ASan leak detection on),
#   3. the normal build under valgrind memcheck (no definite/indirect leak,
#      no invalid access),
#   4. the plugin-reload test (dlopen/dlclose 200 times),
#   4a. the thread-exit test (host code ending worker threads with
#      pthread_exit; not under valgrind or the sanitizers),
#   4b. the API fuzzer (tests/fuzz) on seeds 1-20 under ASan+UBSan (not
#      when test names are given),
#   5. header checks (C11 alone, C++17 alone) and the export check
#      (libbtm.so exports only btm_* symbols; soname libbtm.so.0).
# Non-interactive; installs missing Debian packages (gcc, g++, valgrind,
# binutils) itself; exits non-zero if any step fails. Outputs: build/c/.
# Usage: tests/c/run.sh [test-name-filter...]   (filters apply to the suite)
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/build/c"
LIBDIR="$ROOT/target/release"
SRC="$ROOT/tests/c"
mkdir -p "$OUT"
FILTERS=("$@")

CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -pthread -g -I"$ROOT/include")
SUITE=("$SRC"/harness.c "$SRC"/test_*.c)
LINK=(-L"$LIBDIR" -lbtm -lm -Wl,-rpath,"$LIBDIR")

# ---------------------------------------------------------------- helpers
declare -a SUMMARY=()
FAILED=0
T_START=$(date +%s)

step() { # step NAME LOGFILE command...
    local name="$1" log="$2"
    shift 2
    local t0 t1 rc
    t0=$(date +%s)
    echo "==> $name"
    "$@" >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    # show the interesting lines of the log
    local shown
    shown=$(grep -E '^(FAIL|    FAIL|WATCHDOG|failed tests|[0-9]+ passed|reload:|==[0-9]+== +(ERROR SUMMARY|definitely|indirectly|Invalid|at |by )|SUMMARY:|ERROR:|.*runtime error)' "$log" | head -60)
    [ -n "$shown" ] && printf '%s\n' "$shown" | sed 's/^/    /'
    if [ $rc -eq 0 ]; then
        SUMMARY+=("PASS  $name ($((t1 - t0)) s)")
    else
        SUMMARY+=("FAIL  $name ($((t1 - t0)) s, exit $rc, log: ${log#"$ROOT"/})")
        FAILED=1
        [ -z "$shown" ] && tail -n 20 "$log" | sed 's/^/    | /'
    fi
}

need_pkgs=()
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v valgrind >/dev/null 2>&1 || need_pkgs+=(valgrind)
command -v nm >/dev/null 2>&1 || need_pkgs+=(binutils)
command -v readelf >/dev/null 2>&1 || need_pkgs+=(binutils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "==> installing: ${need_pkgs[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${need_pkgs[@]}" >/dev/null || {
        echo "could not install ${need_pkgs[*]}"
        exit 2
    }
fi
# gcc's ASan/UBSan runtimes (libasan8, libubsan1) come with gcc on Debian 12;
# check that a sanitized program links.
if ! echo 'int main(void){return 0;}' | gcc -x c -fsanitize=address,undefined -o "$OUT/.asan_probe" - >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "==> installing the sanitizer runtimes"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libasan8 libubsan1 >/dev/null
fi
rm -f "$OUT/.asan_probe"
command -v cargo >/dev/null 2>&1 || { echo "cargo not found (install Rust first)"; exit 2; }

# ---------------------------------------------------------------- library
build_lib() {
    local i
    for i in 1 2 3; do
        if cargo build --release; then
            ln -sf libbtm.so "$LIBDIR/libbtm.so.0"
            return 0
        fi
        echo "cargo build failed (attempt $i); retrying in 30 s"
        sleep 30
    done
    return 1
}
step "build libbtm (cargo build --release)" "$OUT/build.log" build_lib
if [ ! -f "$LIBDIR/libbtm.so" ]; then
    printf '%s\n' "${SUMMARY[@]}"
    exit 1
fi

# ---------------------------------------------------------------- suite
step "compile suite" "$OUT/compile.log" \
    gcc "${CFLAGS[@]}" -O1 "${SUITE[@]}" -o "$OUT/btm_tests" "${LINK[@]}"
step "C suite" "$OUT/suite.log" \
    timeout 240 "$OUT/btm_tests" "${FILTERS[@]}"

step "compile suite with ASan+UBSan" "$OUT/compile_asan.log" \
    gcc "${CFLAGS[@]}" -O1 -fno-omit-frame-pointer \
    -fsanitize=address,undefined -fno-sanitize-recover=all \
    "${SUITE[@]}" -o "$OUT/btm_tests_asan" "${LINK[@]}"
step "C suite under ASan+UBSan (detect_leaks=1)" "$OUT/suite_asan.log" \
    env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout 240 "$OUT/btm_tests_asan" "${FILTERS[@]}"

# --child-silent-after-fork: the fork test's child never frees its copy of
# the parent's manager (by design, see btm_create); it reports through a
# pipe, and its leak report is not the suite's.
step "C suite under valgrind memcheck" "$OUT/suite_valgrind.log" \
    env BTM_TEST_TIMEOUT_S=300 timeout 280 valgrind --quiet --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --error-exitcode=1 --fair-sched=yes --child-silent-after-fork=yes "$OUT/btm_tests" "${FILTERS[@]}"

# A host's own CI runs valgrind with its defaults ("possibly lost" is an
# error): the thumbnail example, a whole host, must be clean so (btm once
# left Rust's handle of the host thread that joined its workers).
step "compile examples/c/thumbnails.c (-O1 -g)" "$OUT/compile_thumbnails.log" \
    gcc "${CFLAGS[@]}" -O1 "$ROOT/examples/c/thumbnails.c" -o "$OUT/thumbnails" "${LINK[@]}"
step "examples/c/thumbnails.c under valgrind, default leak kinds" "$OUT/thumbnails_valgrind.log" \
    timeout 240 valgrind --quiet --leak-check=full --error-exitcode=1 --fair-sched=yes "$OUT/thumbnails"

# ---------------------------------------------------------------- reload
step "compile reload test" "$OUT/compile_reload.log" \
    gcc "${CFLAGS[@]}" -O1 "$SRC/reload.c" -o "$OUT/reload" -ldl
step "plugin reload: dlopen/dlclose x200" "$OUT/reload.log" \
    timeout 120 "$OUT/reload" "$LIBDIR/libbtm.so" 200

# ----------------------------------------------------------- thread exit
# Host code ending btm's worker threads with pthread_exit: a program of its
# own, outside valgrind and the sanitizers (the ended threads' frames are
# never freed, which leak checkers report by design).
step "compile thread-exit test" "$OUT/compile_thread_exit.log" \
    gcc "${CFLAGS[@]}" -O1 "$SRC/thread_exit.c" -o "$OUT/thread_exit" "${LINK[@]}"
step "thread exit: pthread_exit in tasks, hooks, free functions, notify" "$OUT/thread_exit.log" \
    timeout 180 "$OUT/thread_exit"

# ---------------------------------------------------------------- fuzzer
# The random API driver (tests/fuzz/fuzz_api.c) on fixed seeds, under
# ASan+UBSan: every call's status and out-parameters, every pointer freed
# exactly once, every task's events, hooks, notify, free functions calling
# back (also during btm_destroy). Skipped when test names were given.
if [ ${#FILTERS[@]} -eq 0 ]; then
    step "compile API fuzzer (ASan+UBSan)" "$OUT/fuzz_compile.log" \
        bash "$ROOT/tests/fuzz/build.sh"
    step "API fuzzer under ASan+UBSan: seeds 1-20, 2,000 operations each" "$OUT/fuzz.log" \
        env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        timeout 600 "$ROOT/build/fuzz/fuzz_asan" --seed 1 --seeds 20 --ops 2000
fi

# ---------------------------------------------------------------- header
step "header alone as C11" "$OUT/header_c.log" \
    gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$ROOT/include" "$SRC/header_only.c"
step "header alone as C++17" "$OUT/header_cpp.log" \
    g++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$ROOT/include" "$SRC/header_only.cpp"

check_exports() {
    local all bad soname
    all=$(nm -D --defined-only "$LIBDIR/libbtm.so" | awk '{print $NF}' | sort -u)
    bad=$(printf '%s\n' "$all" | grep -v '^btm_' || true)
    echo "$(printf '%s\n' "$all" | grep -c '^btm_') btm_* exports"
    soname=$(readelf -d "$LIBDIR/libbtm.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    echo "soname: $soname"
    local rc=0
    if [ -n "$bad" ]; then
        echo "FAIL: exports that are not btm_*:"
        printf '%s\n' "$bad"
        rc=1
    fi
    if [ "$soname" != "libbtm.so.0" ]; then
        echo "FAIL: soname is '$soname', expected libbtm.so.0"
        rc=1
    fi
    # every function the header declares is exported, and vice versa
    local declared
    declared=$(grep -oE '\bbtm_[a-z_]+\(' "$ROOT/include/btm.h" | tr -d '(' | sort -u)
    local missing extra
    missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$all"))
    extra=$(comm -13 <(printf '%s\n' "$declared") <(printf '%s\n' "$all" | grep '^btm_'))
    if [ -n "$missing" ]; then
        echo "FAIL: declared in btm.h but not exported: $missing"
        rc=1
    fi
    if [ -n "$extra" ]; then
        echo "FAIL: exported but not declared in btm.h: $extra"
        rc=1
    fi
    return $rc
}
step "exports only btm_* (nm -D --defined-only), soname" "$OUT/symbols.log" check_exports
sed 's/^/    /' "$OUT/symbols.log"

# ---------------------------------------------------------------- summary
echo
echo "================ tests/c/run.sh summary ($(($(date +%s) - T_START)) s) ================"
printf '%s\n' "${SUMMARY[@]}"
for f in suite suite_asan; do
    [ -f "$OUT/$f.log" ] && printf '%-12s %s\n' "$f:" "$(grep -E '^[0-9]+ passed' "$OUT/$f.log" | tail -1)"
done
if [ -f "$OUT/suite_valgrind.log" ]; then
    printf '%-12s %s\n' "valgrind:" "$(grep -E '^[0-9]+ passed' "$OUT/suite_valgrind.log" | tail -1); $(grep -cE '^==[0-9]+== ' "$OUT/suite_valgrind.log") valgrind report lines"
fi
[ -f "$OUT/reload.log" ] && printf '%-12s %s\n' "reload:" "$(grep -E '^reload: (RSS|[0-9])' "$OUT/reload.log" | tr '\n' ' ')"
if [ $FAILED -ne 0 ]; then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: OK"
