#!/usr/bin/env bash
# Builds and tests the C# binding of btm under Mono, in one go:
#   1. installs mono-mcs and mono-runtime if missing (apt-get as root, else sudo)
#   2. builds libbtm (cargo build --release) and the libbtm.so.0 soname link
#   3. drift check: DllImport names in NativeMethods.cs == btm_* exports of libbtm.so
#   4. compiles the binding (Btm.dll) and the tests (mcs -langversion:7.2 -unsafe)
#   5. runs the tests (self-made runner; closing line "N passed, N failed")
#   6. compiles and runs the console example
#   7. compiles the Unity sample against examples/csharp/unity-stub and plays it
# Outputs go to build/csharp (git-ignored). Exits non-zero if any step fails.
# Non-interactive; usable from a clean clone. Usage: tests/csharp/run.sh [test-name-filter...]
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/build/csharp"
LIB_DIR="$ROOT/target/release"
MCS_FLAGS=(-langversion:7.2 -unsafe -debug -nologo)
FAILED=()

cd "$ROOT"
mkdir -p "$OUT"

log() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; FAILED+=("$*"); }

# ---------------------------------------------------------------- 1. Mono
install_mono() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo -n)
        else
            echo "mono-mcs/mono-runtime are missing and neither root nor sudo is available" >&2
            return 1
        fi
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    "${apt[@]}" install -y --no-install-recommends mono-mcs mono-runtime </dev/null \
        || { "${apt[@]}" update </dev/null && "${apt[@]}" install -y --no-install-recommends mono-mcs mono-runtime </dev/null; }
}

log "Mono"
if ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
    echo "installing mono-mcs and mono-runtime"
    install_mono || { fail "installing Mono"; exit 1; }
fi
mono --version | head -n 1
mcs --version

# ---------------------------------------------------------------- 2. libbtm
log "libbtm (cargo build --release)"
if ! cargo build --release; then
    fail "cargo build --release"
    exit 1
fi
ln -sf libbtm.so "$LIB_DIR/libbtm.so.0"

# ---------------------------------------------------------------- 3. drift check
log "drift check: NativeMethods.cs DllImports vs libbtm.so exports"
# Entry point of every [DllImport]: its EntryPoint = "..." if given, else the
# name of the extern method that follows it.
awk '
    /\[DllImport/ { pending = 1; entry = ""
                    if (match($0, /EntryPoint *= *"[^"]+"/)) { entry = substr($0, RSTART, RLENGTH); sub(/^EntryPoint *= *"/, "", entry); sub(/"$/, "", entry) } }
    pending && / extern / { line = $0; sub(/\(.*/, "", line); n = split(line, w, /[ \t]+/)
                            print (entry != "" ? entry : w[n]); pending = 0 }
' bindings/csharp/NativeMethods.cs | sort -u > "$OUT/declared.txt"
nm -D --defined-only "$LIB_DIR/libbtm.so" | awk '$2 ~ /^[TtWw]$/ && $3 ~ /^btm_/ { print $3 }' | sort -u > "$OUT/exported.txt"
missing_in_cs=$(comm -13 "$OUT/declared.txt" "$OUT/exported.txt")
missing_in_lib=$(comm -23 "$OUT/declared.txt" "$OUT/exported.txt")
echo "$(wc -l < "$OUT/declared.txt") DllImport entry points, $(wc -l < "$OUT/exported.txt") btm_* exports"
if [ -n "$missing_in_cs" ]; then
    echo "exported by libbtm.so but not declared in NativeMethods.cs:"; echo "$missing_in_cs" | sed 's/^/  /'
    fail "drift check: undeclared exports"
fi
if [ -n "$missing_in_lib" ]; then
    echo "declared in NativeMethods.cs but not exported by libbtm.so:"; echo "$missing_in_lib" | sed 's/^/  /'
    fail "drift check: declarations without an export"
fi
[ -z "$missing_in_cs$missing_in_lib" ] && echo "ok: the sets are equal"

# ---------------------------------------------------------------- 4. compile
log "compile: binding (Btm.dll), struct layout probe, tests (BtmTests.exe)"
if ! mcs "${MCS_FLAGS[@]}" -warnaserror -target:library -out:"$OUT/Btm.dll" bindings/csharp/*.cs; then
    fail "compiling the binding"
fi
# The C compiler's view of every struct the binding mirrors (checked by InteropTests).
if cc -std=c11 -Wall -Wextra -Werror -I"$ROOT/include" tests/csharp/layout.c -o "$OUT/layout" \
    && "$OUT/layout" > "$OUT/layout.txt"; then
    echo "struct layouts written to build/csharp/layout.txt"
else
    fail "building tests/csharp/layout.c"
fi
# The tests are compiled together with the binding's sources to reach its internals.
if ! mcs "${MCS_FLAGS[@]}" -out:"$OUT/BtmTests.exe" bindings/csharp/*.cs tests/csharp/*.cs; then
    fail "compiling the tests"
fi

# ---------------------------------------------------------------- 5. tests
log "tests"
if [ -f "$OUT/BtmTests.exe" ]; then
    if ! BTM_ROOT="$ROOT" BTM_LAYOUT_FILE="$OUT/layout.txt" LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        mono --debug "$OUT/BtmTests.exe" "$@" </dev/null; then
        fail "C# tests"
    fi
else
    fail "C# tests (not built)"
fi

# ---------------------------------------------------------------- 6. console example
log "console example"
if mcs "${MCS_FLAGS[@]}" -r:"$OUT/Btm.dll" -out:"$OUT/ConsoleExample.exe" examples/csharp/ConsoleExample.cs; then
    if ! LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" mono --debug "$OUT/ConsoleExample.exe" </dev/null; then
        fail "console example run"
    fi
else
    fail "compiling the console example"
fi

# ---------------------------------------------------------------- 7. Unity sample
log "Unity sample (against examples/csharp/unity-stub)"
U="$OUT/unity"
mkdir -p "$U"
# As Unity would: UNITY_5_3_OR_NEWER defined, AOT.MonoPInvokeCallbackAttribute from UnityEngine.dll.
if mcs "${MCS_FLAGS[@]}" -target:library -out:"$U/UnityEngine.dll" examples/csharp/unity-stub/UnityEngine.cs \
    && mcs "${MCS_FLAGS[@]}" -warnaserror -target:library -define:UNITY_5_3_OR_NEWER -define:UNITY_STANDALONE_LINUX \
        -r:"$U/UnityEngine.dll" -out:"$U/BtmUnitySample.dll" bindings/csharp/*.cs examples/csharp/unity/*.cs \
    && mcs "${MCS_FLAGS[@]}" -r:"$U/UnityEngine.dll" -r:"$U/BtmUnitySample.dll" -out:"$U/UnityStubPlayer.exe" \
        examples/csharp/unity-stub/UnityStubPlayer.cs; then
    echo "the Unity sample compiles against the stub; playing it:"
    if ! LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" mono --debug "$U/UnityStubPlayer.exe" </dev/null; then
        fail "Unity sample (stub player)"
    fi
else
    fail "compiling the Unity sample against the stub"
fi

# ---------------------------------------------------------------- summary
echo
if [ ${#FAILED[@]} -ne 0 ]; then
    printf 'C# binding: %d step(s) failed:\n' "${#FAILED[@]}"
    printf '  - %s\n' "${FAILED[@]}"
    exit 1
fi
echo "C# binding: all steps passed"
