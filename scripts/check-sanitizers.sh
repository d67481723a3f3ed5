#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# check-sanitizers.sh: builds the unit tests with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs them (every unit test, the transport's
# included: UCX over shared memory and TCP on loopback). Any report fails.
#
#   scripts/check-sanitizers.sh [BUILD_DIR]   default build-asan
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build-asan}
cd "$root"
args=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug)
if [[ -d "$build/meson-private" ]]; then
  meson setup --reconfigure "$build" "${args[@]}" >/dev/null
else
  meson setup "$build" "${args[@]}" >/dev/null
fi
ninja -C "$build" tests/unit/dsdfs-unit-tests
# UCX keeps some allocations for the life of the process: leak checking off;
# every other report (overflow, use after free, undefined behaviour) fails.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export UCX_NET_DEVICES=lo UCX_TLS=self,sm,tcp
"$build/tests/unit/dsdfs-unit-tests" --gtest_brief=1
echo "check-sanitizers: unit tests clean under ASan and UBSan"
