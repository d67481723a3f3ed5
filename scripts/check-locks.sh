#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# check-locks.sh: builds the daemon, the transport and the launcher with clang
# and -Wthread-safety (errors), so that every GUARDED_BY, REQUIRES and
# EXCLUDES of common/mutex.h is checked at compile time. The tests are not
# built (the gcc build of scripts/test.sh runs them).
#
#   scripts/check-locks.sh [BUILD_DIR]        default build-clang
#
# Needs clang++ (Debian package clang; scripts/install-deps.sh installs it).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build-clang}
cd "$root"
if ! command -v clang++ >/dev/null; then
  echo "check-locks: clang++ is not installed (apt-get install clang)" >&2
  exit 1
fi
flags="-Wthread-safety -Werror=thread-safety"
if [[ -d "$build/meson-private" ]]; then
  CXX=clang++ CXXFLAGS="$flags" meson setup --reconfigure "$build" -Dtests=false -Dbuildtype=debug >/dev/null
else
  CXX=clang++ CXXFLAGS="$flags" meson setup "$build" -Dtests=false -Dbuildtype=debug >/dev/null
fi
ninja -C "$build"
echo "check-locks: the lock annotations hold (clang $(clang++ -dumpversion), -Wthread-safety)"
