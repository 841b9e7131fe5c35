#!/usr/bin/env bash
# tests/cpp/run.sh: the one command for the C++ binding and the C/C++
# packaging. From a clean clone, non-interactively:
#
#   1. installs missing Debian packages (cmake, g++, clang + its sanitizer
#      runtime, libgtest-dev, pkg-config; apt-get as root, sudo otherwise)
#   2. builds the library (cargo build --release)
#   3. installs it with packaging/install.sh into a fresh temporary prefix,
#      moves that prefix elsewhere (proving it is relocatable) and checks the
#      layout, sonames, symlinks and exported symbols
#   4. builds and runs the C++ tests (GoogleTest via CMake/ctest, g++,
#      -Wall -Wextra -Wpedantic -Werror) against the installed package
#   5. the same with clang++ -fsanitize=address,undefined
#      -fno-sanitize-recover=all
#   6. builds examples/cpp with find_package(btm) against the installed
#      package and runs it (shared and static)
#   7. compiles and runs a C program using only `pkg-config --cflags --libs
#      btm` (and a static link with --static)
#
# Prints a summary and exits non-zero if anything failed.
#
# Environment: JOBS (parallel jobs, default: nproc), BTM_CPP_BUILD_DIR
# (default: build/cpp in the repository, git-ignored), BTM_KEEP_TMP=1 keeps
# the temporary prefix, BTM_CPP_SKIP_APT=1 never calls apt-get.
set -uo pipefail
exec </dev/null

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" || exit 2
build_root=${BTM_CPP_BUILD_DIR:-$repo/build/cpp}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
logs="$build_root/logs"
mkdir -p "$logs"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/btm-cpp.XXXXXX")
cleanup() { if [ "${BTM_KEEP_TMP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
stage="$tmp/stage"    # install.sh writes here...
prefix="$tmp/prefix"  # ...and the tree is then moved here

summary=()
failures=0
extra_notes=()

# step NAME FUNCTION: runs FUNCTION with its output in a log; prints the log's
# tail on failure. Steps whose prerequisite failed are skipped.
step() {
    local name=$1 fn=$2 slug log start rc secs
    slug=$(echo "$name" | tr -c 'A-Za-z0-9' '_' | tr -s '_')
    log="$logs/$slug.log"
    echo "==> $name"
    start=$(date +%s)
    "$fn" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        summary+=("PASS  $name (${secs}s)")
        grep -E "tests passed|Skipped\)|^gathered|consumer:|^installed|^note:" "$log" | sed 's/^/      /' || true
    else
        summary+=("FAIL  $name (${secs}s, log: $log)")
        failures=$((failures + 1))
        echo "---- last lines of $log ----"
        tail -n 60 "$log"
        echo "----"
    fi
    return $rc
}

skip() {
    summary+=("SKIP  $1 (prerequisite failed)")
    failures=$((failures + 1))
    echo "==> $1: skipped (prerequisite failed)"
}

# --- 1. packages --------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_install() {
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "missing packages ($*) and not root (no passwordless sudo): install them first"
            return 1
        fi
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
    echo "installing: $*"
    "${apt[@]}" install -y --no-install-recommends "$@" ||
        { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "$@"; }
}

sanitizer_probe() {  # sanitizer_probe CXX: can CXX link an ASan+UBSan program?
    printf 'int main() { return 0; }\n' >"$tmp/probe.cpp"
    "$1" -fsanitize=address,undefined -fno-sanitize-recover=all "$tmp/probe.cpp" -o "$tmp/probe" 2>/dev/null &&
        "$tmp/probe"
}

san_cxx=clang++
packages() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first"; return 1; }
    local want=(cmake g++ clang pkg-config libgtest-dev) missing=()
    for p in "${want[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "${BTM_CPP_SKIP_APT:-0}" = 1 ] && { echo "missing: ${missing[*]}"; return 1; }
        apt_install "${missing[@]}" || return 1
    else
        echo "all packages present: ${want[*]}"
    fi
    # clang's sanitizer runtime is only a Recommends of clang in Debian.
    if ! sanitizer_probe clang++; then
        local major
        major=$(clang++ --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n1)
        if [ -n "$major" ] && [ "${BTM_CPP_SKIP_APT:-0}" != 1 ]; then
            apt_install "libclang-rt-$major-dev" || true
        fi
    fi
    if sanitizer_probe clang++; then
        san_cxx=clang++
    elif sanitizer_probe g++; then
        san_cxx=g++
        echo "note: clang++ cannot link sanitizers here; using g++ for the sanitizer run"
    else
        echo "neither clang++ nor g++ can link -fsanitize=address,undefined"
        return 1
    fi
    echo "note: sanitizer build uses $san_cxx"
}

# --- 2. library -----------------------------------------------------------------
build_library() { cargo build --release --lib; }

# --- 3. install -----------------------------------------------------------------
version=$(awk '/^\[/{p=($0=="[package]")} p&&/^version *=/{gsub(/.*= *"|".*/,"");print;exit}' Cargo.toml)
major=${version%%.*}

install_package() {
    BTM_NO_BUILD=1 packaging/install.sh "$stage" || return 1
    mv "$stage" "$prefix" || return 1
    local ok=0 f
    check() { if "$@"; then :; else echo "layout check failed: $*"; ok=1; fi; }
    for f in lib/libbtm.so.$version lib/libbtm.a include/btm.h include/btm.hpp \
             lib/cmake/btm/btmConfig.cmake lib/cmake/btm/btmConfigVersion.cmake lib/pkgconfig/btm.pc; do
        check test -f "$prefix/$f"
    done
    check test "$(readlink "$prefix/lib/libbtm.so.$major")" = "libbtm.so.$version"
    check test "$(readlink "$prefix/lib/libbtm.so")" = "libbtm.so.$major"
    check test -e "$prefix/lib/libbtm.so"  # the chain resolves
    local soname
    soname=$(readelf -d "$prefix/lib/libbtm.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
    check test "$soname" = "libbtm.so.$major"
    # Relocatable: nothing installed names the prefix it was installed into.
    if grep -rIl -- "$stage" "$prefix"; then
        echo "layout check failed: the files above name the install prefix $stage"
        ok=1
    fi
    # Symbol hygiene: the shared library exports btm_* and nothing else.
    local foreign
    foreign=$(nm -D --defined-only "$prefix/lib/libbtm.so.$version" | awk '{print $3}' | grep -v '^btm_' || true)
    if [ -n "$foreign" ]; then
        echo "layout check failed: exported symbols other than btm_*:"
        echo "$foreign"
        ok=1
    fi
    [ $ok -eq 0 ] && echo "installed btm $version (soname $soname) into a temporary prefix; layout, symlinks, relocation and exports ok"
    return $ok
}

# --- 4/5. C++ tests ---------------------------------------------------------------
cpp_tests() {  # cpp_tests BUILD_DIR CXX [extra cmake args]
    local dir=$1 cxx=$2
    shift 2
    rm -rf "$dir"
    cmake -S tests/cpp -B "$dir" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" "$@" &&
        cmake --build "$dir" -j "$jobs" &&
        (cd "$dir" && ctest -j "$jobs" --output-on-failure --timeout 120)
}
# Optimised: GCC's flow-based warnings (-Wstringop-overflow, -Wmaybe-uninitialized)
# only fire with optimisation, and users build btm.hpp at -O2.
tests_gcc() { cpp_tests "$build_root/tests" g++ -DCMAKE_BUILD_TYPE=Release; }
tests_san() {
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        cpp_tests "$build_root/tests-sanitize" "$san_cxx" -DCMAKE_BUILD_TYPE=Debug -DBTM_SANITIZE=ON
}

# --- 6. example ---------------------------------------------------------------------
example() {
    local dir="$build_root/example" out
    rm -rf "$dir"
    cmake -S examples/cpp -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$dir" -j "$jobs" || return 1
    # No LD_LIBRARY_PATH: the program finds libbtm.so.0 as a user's would
    # (CMake's build RPATH into the installed prefix).
    out=$("$dir/thumbnails" 12 4) || { echo "$out"; return 1; }
    echo "$out"
    grep -q "^gathered 12 thumbnails" <<<"$out" || { echo "example did not gather 12 thumbnails"; return 1; }
    out=$("$dir/thumbnails_static" 5 2) || { echo "$out"; return 1; }
    echo "$out" | tail -n 1
    grep -q "^gathered 5 thumbnails" <<<"$out" || return 1
    if ldd "$dir/thumbnails_static" | grep -q libbtm; then
        echo "thumbnails_static is linked against libbtm.so"
        return 1
    fi
}

# --- 7. pkg-config ------------------------------------------------------------------
pkgconfig_c() {
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    local flags libs static_libs mv
    mv=$(pkg-config --modversion btm) || return 1
    [ "$mv" = "$version" ] || { echo "pkg-config version $mv, expected $version"; return 1; }
    flags=$(pkg-config --cflags btm) && libs=$(pkg-config --libs btm) || return 1
    echo "pkg-config --cflags --libs btm: $flags $libs"
    # shellcheck disable=SC2086
    cc -std=c11 -Wall -Wextra -Wpedantic -Werror $flags tests/cpp/pkgconfig_smoke.c $libs -o "$tmp/pc_shared" &&
        LD_LIBRARY_PATH="$prefix/lib" "$tmp/pc_shared" || return 1
    # Static: the same flags with --static, libbtm.a picked explicitly.
    static_libs=$(pkg-config --static --libs btm | sed 's/-lbtm\b/-Wl,-Bstatic -lbtm -Wl,-Bdynamic/')
    # shellcheck disable=SC2086
    cc -std=c11 -Wall -Wextra -Wpedantic -Werror $flags tests/cpp/pkgconfig_smoke.c $static_libs -o "$tmp/pc_static" &&
        "$tmp/pc_static" || return 1
    if ldd "$tmp/pc_static" | grep -q libbtm; then
        echo "static link still needs libbtm.so"
        return 1
    fi
}

# --- run -----------------------------------------------------------------------------
t0=$(date +%s)
if step "system packages" packages &&
    step "cargo build --release" build_library &&
    step "install into a temporary prefix (packaging/install.sh)" install_package; then
    step "C++ tests (g++, -Werror)" tests_gcc
    step "C++ tests (ASan + UBSan)" tests_san
    step "example (find_package against the installed prefix)" example
    step "pkg-config C consumer (shared and static)" pkgconfig_c
else
    skip "C++ tests (g++, -Werror)"
    skip "C++ tests (ASan + UBSan)"
    skip "example (find_package against the installed prefix)"
    skip "pkg-config C consumer (shared and static)"
fi

echo
echo "===== C++ binding and packaging: summary ($(( $(date +%s) - t0 ))s) ====="
for line in "${summary[@]}"; do echo "  $line"; done
for f in "$logs"/C_tests*.log; do
    [ -f "$f" ] || continue
    counts=$(grep -E "tests passed, [0-9]+ tests failed out of" "$f" | tail -n1)
    skipped=$(grep -E "\(Skipped\)" "$f" | sed 's/^[[:space:]]*/      skipped: /')
    [ -n "$counts" ] && echo "  $(basename "$f" .log): $counts"
    [ -n "$skipped" ] && echo "$skipped"
done
if [ $failures -eq 0 ]; then
    echo "RESULT: PASS"
    exit 0
fi
echo "RESULT: FAIL ($failures step(s) failed)"
exit 1
