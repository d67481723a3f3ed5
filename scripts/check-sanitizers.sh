#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# check-sanitizers.sh: builds the unit tests with AddressSanitizer and
# UndefinedBehaviorSanitizer, and again with ThreadSanitizer, and runs them
# (every unit test, the transport's included: UCX over shared memory and TCP on
# loopback). Any report fails.
#
#   scripts/check-sanitizers.sh [asan|tsan]...   default: both
#
# Build directories: build-asan, build-tsan.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
export UCX_NET_DEVICES=lo UCX_TLS=self,sm,tcp

build_unit() {  # DIR SANITIZERS
  local args=(-Db_sanitize="$2" -Db_lundef=false -Dbuildtype=debug)
  if [[ -d "$1/meson-private" ]]; then
    meson setup --reconfigure "$1" "${args[@]}" >/dev/null
  else
    meson setup "$1" "${args[@]}" >/dev/null
  fi
  ninja -C "$1" tests/unit/dsdfs-unit-tests
}

asan() {
  build_unit build-asan address,undefined
  # UCX keeps some allocations for the life of the process: leak checking off;
  # every other report (overflow, use after free, undefined behaviour) fails.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    build-asan/tests/unit/dsdfs-unit-tests --gtest_brief=1
  echo "check-sanitizers: unit tests clean under ASan and UBSan"
}

tsan() {
  build_unit build-tsan thread
  # UCX's memory hooks (libucm intercepting madvise and mmap) crash under
  # ThreadSanitizer: off. TSan needs the classic address layout on kernels
  # with high mmap randomisation (setarch -R).
  UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no UCX_MEM_EVENTS=no \
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    setarch "$(uname -m)" -R build-tsan/tests/unit/dsdfs-unit-tests --gtest_brief=1
  echo "check-sanitizers: unit tests clean under TSan"
}

modes=("$@")
((${#modes[@]})) || modes=(asan tsan)
for m in "${modes[@]}"; do
  case "$m" in
    asan) asan ;;
    tsan) tsan ;;
    *) echo "check-sanitizers: unknown mode $m (asan, tsan)" >&2; exit 2 ;;
  esac
done
