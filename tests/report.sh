# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# report.sh: how the shell tests (tests/slurm, tests/sim) speak. Sourced after
# T (the test's name) is set. log: a timestamped line; fail: a failure, exit 1;
# skip: exit 77 (meson's SKIP), or a failure when DSDFS_REQUIRE_ALL=1 (CI).

log() { echo "[$T $(date +%T)] $*"; }
fail() {
  echo "[$T $(date +%T)] FAIL: $*" >&2
  exit 1
}
skip() {
  if [[ "${DSDFS_REQUIRE_ALL:-0}" == 1 ]]; then
    fail "$* (DSDFS_REQUIRE_ALL=1 turns this skip into a failure)"
  fi
  echo "[$T] SKIP: $*"
  exit 77
}
