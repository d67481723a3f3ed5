#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libfuse that kernel passthrough needs (3.17, the API
# fuse_passthrough_open) from Debian 13's own source package, as a static
# library in a private prefix, and prints that prefix. Debian 12's libfuse
# (3.14) stays the system's; dsdfs links this one only when asked:
#
#   scripts/build-libfuse.sh                       # prints e.g. /path/to/repo/build-libfuse/prefix
#   meson setup build-pt -Dfuse_prefix=$(scripts/build-libfuse.sh)
#
# Needs root once, to add a deb-src entry for trixie
# (/etc/apt/sources.list.d/dsdfs-trixie-src.sources, source packages only:
# nothing from Debian 13 is installed) and to fetch the package through apt,
# which checks its signature. The result is kept: a second run only prints
# the prefix. Environment: DSDFS_LIBFUSE_DIR (default build-libfuse in the
# repository), DSDFS_LIBFUSE_SUITE (default trixie).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
dir=${DSDFS_LIBFUSE_DIR:-$root/build-libfuse}
suite=${DSDFS_LIBFUSE_SUITE:-trixie}
prefix=$dir/prefix
lib_glob=("$prefix"/lib/*/libfuse3.a "$prefix"/lib/libfuse3.a)

say() { echo "build-libfuse: $*" >&2; }

for lib in "${lib_glob[@]}"; do
  if [[ -f "$lib" && -f "$prefix/include/fuse3/fuse_lowlevel.h" ]] &&
    grep -q fuse_passthrough_open "$prefix/include/fuse3/fuse_lowlevel.h"; then
    echo "$prefix"
    exit 0
  fi
done

if ! command -v dpkg-source >/dev/null || ! command -v meson >/dev/null; then
  say "needs dpkg-dev and meson (scripts/install-deps.sh installs both)"
  exit 1
fi

list=/etc/apt/sources.list.d/dsdfs-$suite-src.sources
if ! apt-cache showsrc "fuse3/$suite" 2>/dev/null | grep -q "^Version: "; then
  if [[ $(id -u) -ne 0 ]]; then
    say "no deb-src entry for $suite yet, and adding one needs root"
    exit 1
  fi
  say "adding $list (source packages of Debian $suite only)"
  cat >"$list" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -qq >&2
fi

rm -rf "$dir/src" "$dir/build" "$prefix"
mkdir -p "$dir/src"
say "fetching fuse3/$suite with apt-get source"
(cd "$dir/src" && apt-get source -qq "fuse3/$suite" >&2 2>&1) || {
  say "apt-get source fuse3/$suite failed"
  exit 1
}
src=$(find "$dir/src" -maxdepth 1 -mindepth 1 -type d -name 'fuse3-*' | head -n 1)
[[ -n "$src" ]] || { say "no unpacked fuse3 source under $dir/src"; exit 1; }
say "building $(basename "$src") (static, library only) into $prefix"
meson setup "$dir/build" "$src" --prefix "$prefix" --libdir lib -Ddefault_library=static \
  -Dbuildtype=release -Dutils=false -Dexamples=false -Dtests=false -Dinitscriptdir= \
  -Dudevrulesdir="$dir/unused-udev" >&2
ninja -C "$dir/build" >&2
ninja -C "$dir/build" install >&2
grep -q fuse_passthrough_open "$prefix/include/fuse3/fuse_lowlevel.h" || {
  say "$(basename "$src") has no fuse_passthrough_open"
  exit 1
}
echo "$prefix"
