#!/usr/bin/env bash
# Installs btm (C library, C header, C++ header, CMake package, pkg-config
# file) under a prefix:
#
#   packaging/install.sh PREFIX
#
#   PREFIX/lib/libbtm.so.X.Y.Z            the shared library (soname libbtm.so.X)
#   PREFIX/lib/libbtm.so.X -> libbtm.so.X.Y.Z
#   PREFIX/lib/libbtm.so   -> libbtm.so.X
#   PREFIX/lib/libbtm.a                   the static library
#   PREFIX/include/btm.h, btm.hpp
#   PREFIX/lib/cmake/btm/btmConfig.cmake, btmConfigVersion.cmake
#   PREFIX/lib/pkgconfig/btm.pc
#
# The installed tree is relocatable: nothing in it names PREFIX (the CMake
# package finds itself through CMAKE_CURRENT_LIST_DIR, btm.pc through
# ${pcfiledir}), so it can be moved or copied anywhere after installation.
#
# The version comes from Cargo.toml. The library is built with
# `cargo build --release` when cargo is available (a no-op when up to date);
# set BTM_NO_BUILD=1 to use the existing target/release artifacts as they are.
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

die() { echo "install.sh: error: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 PREFIX" >&2; exit 2; }
prefix_arg=$1

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pkg="$repo/packaging"

# --- version and description from Cargo.toml ([package] section) -------------
package_field() {
    awk -v key="$1" '
        /^\[/ { in_pkg = ($0 == "[package]") ; next }
        in_pkg && $0 ~ "^" key "[ \t]*=" {
            sub(/^[^=]*=[ \t]*"/, ""); sub(/"[ \t]*$/, ""); print; exit
        }' "$repo/Cargo.toml"
}
version=$(package_field version)
description=$(package_field description)
[[ $version =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || die "cannot read a MAJOR.MINOR.PATCH version from Cargo.toml (got '$version')"
major=${BASH_REMATCH[1]}
[ -n "$description" ] || description="Background task manager with a stable C ABI"

# The generated header must carry the same version.
grep -q "^#define BTM_VERSION \"$version\"" "$repo/include/btm.h" ||
    die "include/btm.h does not define BTM_VERSION \"$version\" (regenerate the header)"

# --- build --------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case $target_dir in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
release="$target_dir/release"
if [ "${BTM_NO_BUILD:-0}" != 1 ] && command -v cargo >/dev/null 2>&1; then
    echo "install.sh: cargo build --release"
    (cd "$repo" && cargo build --release --lib) || die "cargo build --release failed"
fi
for f in libbtm.so libbtm.a; do
    [ -f "$release/$f" ] || die "$release/$f is missing (build with: cargo build --release)"
done

# The shared library must carry the versioned soname.
if command -v readelf >/dev/null 2>&1; then
    soname=$(readelf -d "$release/libbtm.so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
    [ "$soname" = "libbtm.so.$major" ] || die "libbtm.so has soname '$soname', expected libbtm.so.$major"
fi

# --- lay out ------------------------------------------------------------------
mkdir -p "$prefix_arg"
prefix=$(cd "$prefix_arg" && pwd)
libdir="$prefix/lib"
mkdir -p "$libdir/cmake/btm" "$libdir/pkgconfig" "$prefix/include"

install -m 0755 "$release/libbtm.so" "$libdir/libbtm.so.$version"
ln -sfn "libbtm.so.$version" "$libdir/libbtm.so.$major"
ln -sfn "libbtm.so.$major" "$libdir/libbtm.so"
install -m 0644 "$release/libbtm.a" "$libdir/libbtm.a"
install -m 0644 "$repo/include/btm.h" "$repo/bindings/cpp/btm.hpp" "$prefix/include/"

# Fills @VAR@ placeholders. Values are escaped for sed (\, & and the | delimiter).
sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
static_libs="-lpthread -ldl -lm -lrt -lutil -lgcc_s"
render() {
    sed -e "s|@BTM_VERSION@|$(sed_escape "$version")|g" \
        -e "s|@BTM_VERSION_MAJOR@|$major|g" \
        -e "s|@BTM_SOVERSION@|$major|g" \
        -e "s|@BTM_DESCRIPTION@|$(sed_escape "$description")|g" \
        -e "s|@BTM_STATIC_LIBS@|$static_libs|g" \
        "$1" >"$2.tmp"
    if grep -q '@BTM_[A-Z_]*@' "$2.tmp"; then
        rm -f "$2.tmp"
        die "unfilled placeholder in $1"
    fi
    mv "$2.tmp" "$2"
    chmod 0644 "$2"
}
render "$pkg/btmConfig.cmake.in" "$libdir/cmake/btm/btmConfig.cmake"
render "$pkg/btmConfigVersion.cmake.in" "$libdir/cmake/btm/btmConfigVersion.cmake"
render "$pkg/btm.pc.in" "$libdir/pkgconfig/btm.pc"

echo "install.sh: installed btm $version into $prefix"
