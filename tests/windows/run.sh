#!/usr/bin/env bash
# Windows: btm cross-built for x86_64-pc-windows-gnu (MinGW-w64) and run
# under Wine, on this Linux machine:
#   1. btm.dll built (cargo build --target x86_64-pc-windows-gnu),
#   2. its export table: exactly the functions btm.h declares,
#   3. the C suite (tests/c/harness.c, tests/c/test_*.c) built with MinGW
#      against btm.dll and run under Wine (the fork test is POSIX-only and
#      left out by #ifdef; the event object test runs instead of the fd one),
#   3a. tests/c/thread_exit.c (host code ending worker threads, here with
#      ExitThread) under Wine,
#   3b. a plugin DLL destroying its global manager from DllMain as the
#      process ends (tests/windows/dll_exit*.c),
#   4. the C and C++ thumbnail examples under Wine, and the C++ binding's
#      event_handle() compiled with MinGW's g++ (C++17),
#   5. the Rust tests under Wine: the library's units and every file of
#      tests/ but the loom models (loom's scheduler aborts under Wine when
#      a modelled thread panics: "failed to initiate panic") and the
#      header check (one header for all platforms, checked on Linux).
# Non-interactive; installs what it lacks (Debian: gcc-mingw-w64-x86-64 and
# its -posix variants, g++-mingw-w64-x86-64-posix, wine64, wine; rustup's
# x86_64-pc-windows-gnu target).
# Outputs: build/windows/, the Wine prefix in target/wine.
#
# Wine is not Windows: this checks that btm builds for Windows, exports its
# API, and behaves as on Linux under Wine's implementation of the Win32
# calls it makes (threads, TLS, SRW locks and condition variables through
# Rust's std, event objects, virtual memory). Timing-dependent behaviour on
# a real Windows kernel is not covered.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TARGET=x86_64-pc-windows-gnu
OUT="$ROOT/build/windows"
LIBDIR="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release"
mkdir -p "$OUT"
# No program or library of an earlier run may stand in for one that fails to build.
rm -f "$OUT"/*.exe "$OUT"/*.dll
export WINEPREFIX="$ROOT/target/wine"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=" # no Mono/Gecko install prompts
# Optimised, but without release's thin LTO and single codegen unit: the
# test programs build in about half the time (this is a check, not a
# build to ship).
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
RUST_SKIP=" loom_lane loom_model header "

declare -a SUMMARY=()
FAILED=0
step() { # step NAME LOGFILE command...
    local name="$1" log="$2"
    shift 2
    local t0 rc
    t0=$(date +%s)
    echo "==> $name"
    "$@" >"$log" 2>&1
    rc=$?
    grep -E '^(FAIL|    FAIL|WATCHDOG|failed tests|[0-9]+ passed|test result|exports:|.*panicked)' "$log" | head -40 | sed 's/^/    /'
    if [ $rc -eq 0 ]; then
        SUMMARY+=("PASS  $name ($(($(date +%s) - t0)) s)")
    else
        SUMMARY+=("FAIL  $name ($(($(date +%s) - t0)) s, exit $rc, log: ${log#"$ROOT"/})")
        FAILED=1
        tail -n 20 "$log" | sed 's/^/    | /'
    fi
    return $rc
}

# ---------------------------------------------------------------- tools
need_pkgs=()
# (Rust links with x86_64-w64-mingw32-gcc; the tests are built with the
# POSIX-threads variants, whose C++ library has std::mutex and whose C
# library has pthreads.)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need_pkgs+=(gcc-mingw-w64-x86-64)
command -v x86_64-w64-mingw32-gcc-posix >/dev/null 2>&1 || need_pkgs+=(gcc-mingw-w64-x86-64-posix)
command -v x86_64-w64-mingw32-g++-posix >/dev/null 2>&1 || need_pkgs+=(g++-mingw-w64-x86-64-posix)
command -v wine >/dev/null 2>&1 || need_pkgs+=(wine64 wine)
install_pkgs() { # apt-get as root, sudo otherwise; the package lists updated only if needed
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq)
    echo "==> installing: $*"
    "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null ||
        { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null; }
}
if [ ${#need_pkgs[@]} -gt 0 ] && ! install_pkgs "${need_pkgs[@]}"; then
    echo "could not install ${need_pkgs[*]}"
    exit 2
fi
# The target's standard library comes from rustup's server, not from a
# package registry: three tries; if it stays out of reach, the section is
# skipped (exit 77, reported as SKIP by scripts/test.sh), not failed.
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    for try in 1 2 3; do
        echo "==> rustup target add $TARGET (try $try)"
        rustup target add "$TARGET" && break
        [ "$try" -lt 3 ] && sleep 10
    done
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        echo "SKIP: rustup could not fetch the $TARGET standard library; nothing was tested for Windows"
        exit 77
    fi
fi

# A Wine prefix of our own. Rust's std (1.78 and later) imports ProcessPrng
# from bcryptprimitives.dll, which Wine 8 (Debian 12) lacks: a two-line
# stand-in, built with MinGW, calls BCryptGenRandom instead (installed only
# when the prefix has no bcryptprimitives.dll of its own).
wine_prefix() {
    mkdir -p "$WINEPREFIX" || return 1
    [ -f "$WINEPREFIX/system.reg" ] || wineboot --init || return 1
    wineserver --wait
    local sys32="$WINEPREFIX/drive_c/windows/system32"
    if [ ! -f "$sys32/bcryptprimitives.dll" ]; then
        x86_64-w64-mingw32-gcc -O2 -shared -o "$OUT/bcryptprimitives.dll" \
            "$ROOT/tests/windows/bcryptprimitives.c" -lbcrypt || return 1
        cp "$OUT/bcryptprimitives.dll" "$sys32/"
    fi
    echo "wine $(wine --version) in $WINEPREFIX"
}
step "Wine prefix" "$OUT/prefix.log" wine_prefix || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }

# ---------------------------------------------------------------- library
step "build btm.dll (cargo build --release --target $TARGET)" "$OUT/build.log" \
    cargo build --release --target "$TARGET" --lib
if [ ! -f "$LIBDIR/btm.dll" ]; then
    printf '%s\n' "${SUMMARY[@]}"
    exit 1
fi
# Next to the programs, where Windows looks first.
cp "$LIBDIR/btm.dll" "$OUT/"

check_exports() {
    local all declared missing extra rc=0
    all=$(x86_64-w64-mingw32-objdump -p "$LIBDIR/btm.dll" |
        awk '/\[Ordinal\/Name Pointer\] Table/ {t = 1; next} t && NF == 0 {t = 0} t {print $NF}' | sort -u)
    declared=$(grep -oE '\bbtm_[a-z_]+\(' "$ROOT/include/btm.h" | tr -d '(' | sort -u)
    echo "exports: $(printf '%s\n' "$all" | grep -c .) names, $(printf '%s\n' "$declared" | grep -c .) declared in btm.h"
    missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$all"))
    extra=$(comm -13 <(printf '%s\n' "$declared") <(printf '%s\n' "$all"))
    [ -n "$missing" ] && { echo "FAIL: declared in btm.h but not exported: $missing"; rc=1; }
    [ -n "$extra" ] && { echo "FAIL: exported but not declared in btm.h: $extra"; rc=1; }
    return $rc
}
step "btm.dll exports exactly btm.h's functions" "$OUT/exports.log" check_exports

# ---------------------------------------------------------------- C suite
# Linked against the import library (libbtm.dll.a; a plain -lbtm would find
# the static libbtm.a first), winpthreads linked in statically. MinGW's C99 printf
# (__USE_MINGW_ANSI_STDIO) for the suite's %zu.
CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -pthread -g -O1 -D__USE_MINGW_ANSI_STDIO=1 -I"$ROOT/include")
step "compile the C suite with MinGW-w64" "$OUT/compile.log" \
    x86_64-w64-mingw32-gcc-posix "${CFLAGS[@]}" "$ROOT"/tests/c/harness.c "$ROOT"/tests/c/test_*.c \
    "$LIBDIR/libbtm.dll.a" -static -o "$OUT/btm_tests.exe"
step "C suite under Wine" "$OUT/suite.log" timeout 600 wine "$OUT/btm_tests.exe"

# Host code ending btm's worker threads with ExitThread (what CPython's
# _endthreadex does to a thread calling Python during interpreter
# shutdown): tests/c/thread_exit.c, the fork case left out.
step "compile the thread-exit test with MinGW-w64" "$OUT/compile_thread_exit.log" \
    x86_64-w64-mingw32-gcc-posix "${CFLAGS[@]}" "$ROOT/tests/c/thread_exit.c" \
    "$LIBDIR/libbtm.dll.a" -static -o "$OUT/thread_exit.exe"
step "thread exit under Wine: ExitThread in tasks, hooks, free functions, notify" "$OUT/thread_exit.log" \
    timeout 180 wine "$OUT/thread_exit.exe"

# A plugin DLL whose global manager is destroyed from DllMain as the
# process ends (a C++ global btm::Manager's destructor): the process must
# end, and btm_destroy return there (it once waited forever for the
# workers Windows had already ended).
build_dll_exit() {
    x86_64-w64-mingw32-gcc-posix "${CFLAGS[@]}" -shared "$ROOT/tests/windows/dll_exit_plugin.c" \
        "$LIBDIR/libbtm.dll.a" -o "$OUT/dll_exit_plugin.dll" &&
        x86_64-w64-mingw32-gcc-posix "${CFLAGS[@]}" "$ROOT/tests/windows/dll_exit.c" -o "$OUT/dll_exit.exe"
}
run_dll_exit() {
    local out rc
    out=$(timeout 60 wine "$OUT/dll_exit.exe" 2>&1)
    rc=$?
    echo "$out"
    [ $rc -eq 0 ] || { echo "FAIL: exit status $rc (124: still running after 60 s)"; return 1; }
    case "$out" in
        *"btm_destroy returned in DLL_PROCESS_DETACH"*) ;;
        *) echo "FAIL: btm_destroy was not called, or did not return, in DLL_PROCESS_DETACH"; return 1 ;;
    esac
}
step "compile the DllMain exit test with MinGW-w64" "$OUT/compile_dll_exit.log" build_dll_exit
step "a manager destroyed from DllMain as the process ends, under Wine" "$OUT/dll_exit.log" run_dll_exit

# The C and C++ thumbnail examples (each checks its own outcome), and the
# C++ binding's event_handle(), which only Windows has.
build_examples() {
    x86_64-w64-mingw32-gcc-posix "${CFLAGS[@]}" "$ROOT/examples/c/thumbnails.c" \
        "$LIBDIR/libbtm.dll.a" -static -o "$OUT/thumbnails_c.exe" &&
        x86_64-w64-mingw32-g++-posix "${CXXFLAGS[@]}" "$ROOT/examples/cpp/thumbnails.cpp" \
            "$LIBDIR/libbtm.dll.a" -static -o "$OUT/thumbnails_cpp.exe" &&
        printf '%s\n' '#include "btm.hpp"' 'void* handle(btm::Manager& m) { return m.event_handle(); }' |
        x86_64-w64-mingw32-g++-posix "${CXXFLAGS[@]}" -fsyntax-only -x c++ -
}
CXXFLAGS=(-std=c++17 -Wall -Wextra -Wpedantic -Werror -g -O1 -I"$ROOT/include" -I"$ROOT/bindings/cpp")
step "compile examples/c/thumbnails.c, examples/cpp/thumbnails.cpp with MinGW-w64" "$OUT/examples.log" \
    build_examples
step "examples/c/thumbnails.c under Wine" "$OUT/thumbnails_c.log" timeout 120 wine "$OUT/thumbnails_c.exe"
step "examples/cpp/thumbnails.cpp under Wine" "$OUT/thumbnails_cpp.log" timeout 120 wine "$OUT/thumbnails_cpp.exe"

# ---------------------------------------------------------------- Rust
rust_tests() {
    local args=() f t
    for f in "$ROOT"/tests/*.rs; do
        t=$(basename "$f" .rs)
        case "$RUST_SKIP" in *" $t "*) continue ;; esac
        args+=(--test "$t")
    done
    echo "tests: ${args[*]}"
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine \
        timeout 1500 cargo test --release --target "$TARGET" --no-fail-fast --lib "${args[@]}"
}
step "Rust tests under Wine (all but$RUST_SKIP)" "$OUT/rust.log" rust_tests

echo
printf '%s\n' "${SUMMARY[@]}"
exit $FAILED
