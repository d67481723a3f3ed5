#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test.sh: the project's whole test run, as CI does it (.ci/run calls this).
#
#   1. scripts/install-deps.sh         Debian packages (fast no-op when present)
#   2. scripts/loopback-env.sh         Open MPI / PMIx / UCX on loopback only
#   3. scripts/slurm-up.sh             private single-node Slurm (stopped again
#                                      on exit unless it was already up)
#   4. scripts/slurm-smoke.sh          mpirun, srun --mpi=pmix and sbatch work
#   5. meson setup/reconfigure build-test --werror -Dbuildtype=debugoptimized
#   6. ninja -C build-test
#   7. DSDFS_REQUIRE_ALL=1 meson test -C build-test --print-errorlogs
#      --num-processes 1               (suites unit, e2e, mpi, slurm, sim)
#   8. scripts/check-locks.sh          clang -Wthread-safety build (build-clang)
#   9. scripts/check-sanitizers.sh     unit tests under ASan + UBSan, and TSan
#                                      (build-asan, build-tsan)
#  10. scripts/check-package.sh        the Debian package (scripts/build-deb.sh)
#                                      built, installed, and the demo run from
#                                      the installed programs; removed again
#  11. the passthrough build           scripts/build-libfuse.sh (libfuse 3.17
#                                      from Debian 13's source package, static),
#                                      build-pt, and the default build's
#                                      e2e-passthrough, e2e-posix and the
#                                      multi-rank programs over shared memory
#                                      (the cluster tests of files' bytes)
#                                      against its dsdfs-launch (the meson run
#                                      leaves those variants out: --no-suite
#                                      mpi-default)
#
# The run fails if the build fails, if any test fails, times out or is
# SKIPPED (build-test/meson-logs/testlog.json, read by testlog-summary.py),
# if no test ran at all, or if the Slurm smoke check fails. The last line is the plain summary
# `N passed, M failed, K skipped` over the meson tests plus the smoke check.
#
# Environment (optional):
#   DSDFS_BUILD_DIR      build directory                     [build-test]
#   DSDFS_TEST_TIMEOUT   seconds allowed for `meson test`    [1500]
#   DSDFS_SKIP_DEPS=1    do not run install-deps.sh
#   DSDFS_SKIP_PASSTHROUGH=1  no passthrough build (meson test then runs mpi-default)
#   DSDFS_SMOKE_USER     also run the sbatch smoke check as this user
#   extra arguments are passed to `meson test` (e.g. --suite unit)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

BUILD=${DSDFS_BUILD_DIR:-build-test}
TEST_TIMEOUT=${DSDFS_TEST_TIMEOUT:-1500}
passed=0
failed=0
skipped=0

# (each line with the time, so that a CI log shows how long each step took)
say() { echo "test.sh: [$(date +%T)] $*"; }
failures=()
summary() { echo "$passed passed, $failed failed, $skipped skipped"; }
# the names of what failed, again at the end, where a truncated CI log still shows them
list_failures() {
  local name tails=$BUILD/meson-logs/failed-tails.txt
  if ((${#failures[@]} > 0)) && [[ -s "$tails" ]]; then cat "$tails"; fi
  for name in "${failures[@]}"; do say "FAILED: $name"; done
}

# --- dependencies and environment ----------------------------------------------
if [[ "${DSDFS_SKIP_DEPS:-0}" != 1 ]]; then
  "$here/install-deps.sh"
fi
# shellcheck source=loopback-env.sh
. "$here/loopback-env.sh"
export DSDFS_REQUIRE_ALL=1

# --- Slurm -----------------------------------------------------------------------
started_slurm=0
stop_slurm() {
  if ((started_slurm)); then
    started_slurm=0
    "$here/slurm-down.sh" || true
  fi
}
# finish OK: stop what we started, then print the summary as the last line
finish() {
  stop_slurm
  list_failures
  summary
  if (($1)); then exit 0; fi
  exit 1
}
if "$here/slurm-up.sh" --check 2>/dev/null; then
  say "Slurm already up; leaving it running afterwards"
else
  started_slurm=1
  # on an unexpected exit (set -e, a signal) still stop it
  trap stop_slurm EXIT
  trap 'exit 130' INT TERM
fi
slurm_env=$("$here/slurm-up.sh")
eval "$slurm_env"

if "$here/slurm-smoke.sh"; then
  passed=$((passed + 1))
else
  say "Slurm/MPI smoke check FAILED (see above); running the test suites anyway"
  failures+=(slurm-smoke)
  failed=$((failed + 1))
fi

# --- build -------------------------------------------------------------------------
say "step: build ($BUILD)"
setup_args=(--werror -Dbuildtype=debugoptimized)
if [[ -d "$BUILD/meson-private" ]]; then
  build_ok=0
  meson setup --reconfigure "$BUILD" "${setup_args[@]}" && build_ok=1
else
  build_ok=0
  meson setup "$BUILD" "${setup_args[@]}" && build_ok=1
fi
if ((build_ok)); then
  ninja -C "$BUILD" || build_ok=0
fi
if ((!build_ok)); then
  say "build FAILED"
  failures+=(build)
  failed=$((failed + 1))
  finish 0
fi

# --- tests ---------------------------------------------------------------------------
log=$BUILD/meson-logs/testlog.json
rm -f "$log" "$BUILD/meson-logs/failed-tails.txt"
rc=0
meson_ran=0
say "step: meson test"
# Without arguments, the multi-rank suites' shared-memory variants
# (mpi-default) run in the passthrough step below, against the passthrough
# build: each program runs once per transport and once per build.
meson_args=("$@")
if (($# == 0)) && [[ "${DSDFS_SKIP_PASSTHROUGH:-0}" != 1 ]]; then
  meson_args=(--no-suite mpi-default)
fi
timeout -k 30 "$TEST_TIMEOUT" \
  meson test -C "$BUILD" --print-errorlogs --num-processes 1 "${meson_args[@]}" || rc=$?
if ((rc == 124 || rc == 137)); then
  say "meson test did not finish within ${TEST_TIMEOUT}s"
fi

if [[ -s "$log" ]]; then
  counts=$(python3 "$here/testlog-summary.py" "$log" "$BUILD/meson-logs/failed-tails.txt" \
    2>"$BUILD/meson-logs/failed.txt") || counts="0 1 0"
  cat "$BUILD/meson-logs/failed.txt" >&2
  while read -r _ result name; do
    [[ -n "${name:-}" ]] && failures+=("$name (${result%:})")
  done <"$BUILD/meson-logs/failed.txt"
  read -r p f s <<<"$counts"
  meson_ran=$((p + f + s))
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
else
  say "no $log: meson test ran no test"
fi

# --- compile-time lock check, sanitizers, the Debian package ------------------------------
# clang -Wthread-safety over every annotated lock (common/mutex.h), the unit
# tests under AddressSanitizer + UndefinedBehaviorSanitizer and under
# ThreadSanitizer, and the Debian package built, installed and running the
# demo (scripts/check-package.sh). One result each.
for check in check-locks check-sanitizers check-package; do
  say "step: $check"
  if timeout -k 30 900 "$here/$check.sh"; then
    passed=$((passed + 1))
  else
    say "FAIL: $check"
    failures+=("$check")
    failed=$((failed + 1))
  fi
done

# --- the passthrough build ------------------------------------------------------------
# dsdfs linked against libfuse 3.17 (scripts/build-libfuse.sh, from Debian
# 13's source package), whose root daemon passes owned files' reads and
# writes through the kernel. The default build's test programs run against
# its dsdfs-launch: e2e-passthrough (which must see passthrough used where
# the kernel has it), e2e-posix, and the race, cluster and torture programs
# over shared memory. One result each.
if [[ "${DSDFS_SKIP_PASSTHROUGH:-0}" != 1 ]]; then
  say "step: passthrough build (build-pt)"
  pt_ok=0
  if fuse_prefix=$("$here/build-libfuse.sh"); then
    pt_args=(--werror -Dbuildtype=debugoptimized -Dtests=false -Dfuse_prefix="$fuse_prefix")
    if [[ -d build-pt/meson-private ]]; then
      meson setup --reconfigure build-pt "${pt_args[@]}" >/dev/null && ninja -C build-pt && pt_ok=1
    else
      meson setup build-pt "${pt_args[@]}" >/dev/null && ninja -C build-pt && pt_ok=1
    fi
  fi
  if ((!pt_ok)); then
    say "FAIL: passthrough build"
    failures+=(passthrough-build)
    failed=$((failed + 1))
  else
    expect=""
    kver=$(uname -r)
    kmaj=${kver%%.*}
    kmin=${kver#*.}
    kmin=${kmin%%.*}
    if [[ $(id -u) -eq 0 ]] && ((kmaj > 6 || (kmaj == 6 && kmin >= 9))); then expect=on; fi
    say "passthrough build: expecting passthrough ${expect:-on or off (not root, or Linux < 6.9)}"
    pt_env=(DSDFS_LAUNCH="$root/build-pt/launcher/dsdfs-launch" DSDFS_CLI="$root/build-pt/launcher/dsdfs"
      DSDFS_VERSION="$(meson introspect --projectinfo "$BUILD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')"
      DSDFS_EXPECT_PASSTHROUGH="$expect" DSDFS_LOOPBACK_ENV="$here/loopback-env.sh" DSDFS_TEST_UCX_TLS=default)
    # The cluster tests of files' bytes only: those of directories, of
    # job stops and of rank deaths and rejoins take no path that passthrough
    # changes (the meson run has them on both transports).
    pt_cluster_filter='-Command.*:JobStopInFlight.*:How/JobStop.*:Victim/*:DirectoryRaces.*:DirVisibility.*'
    for t in "e2e-passthrough 300 * tests/e2e/dsdfs-e2e-passthrough" "e2e-posix 300 * tests/e2e/dsdfs-e2e-posix" \
             "race-default 300 * tests/mpi/dsdfs-mpi-race-tests" \
             "mpi-default 600 $pt_cluster_filter tests/mpi/dsdfs-mpi-cluster-tests" \
             "torture-default 420 * tests/mpi/dsdfs-mpi-torture"; do
      read -r name limit filter prog <<<"$t"
      log_pt="$BUILD/meson-logs/passthrough-$name.txt"
      say "passthrough: $name"
      if env "${pt_env[@]}" GTEST_FILTER="$filter" timeout -k 30 "$limit" "$BUILD/$prog" >"$log_pt" 2>&1; then
        passed=$((passed + 1))
      else
        tail -n 60 "$log_pt"
        say "FAIL: passthrough-$name (log: $log_pt)"
        failures+=("passthrough-$name")
        failed=$((failed + 1))
      fi
    done
  fi
fi

# --- the RDMA variant ------------------------------------------------------------------
# The multi-rank tests once more over verbs, where libibverbs lists a device
# (soft-RoCE on loopback where the kernel has rdma_rxe). Reported as not run,
# never as passed, where there is none.
rdma_dev=""
if softroce_out=$("$here/softroce.sh" 2>&1); then
  rdma_dev=$(ibv_devices 2>/dev/null | awk 'NR > 2 && $1 != "" {print $1; exit}')
fi
if [[ -n "$rdma_dev" ]]; then
  say "RDMA variant: the multi-rank tests over verbs on $rdma_dev"
  if DSDFS_TEST_UCX_TLS=verbs DSDFS_TEST_RDMA_DEVICE="$rdma_dev:1" \
     DSDFS_LOOPBACK_ENV="$here/loopback-env.sh" DSDFS_LAUNCH="$root/$BUILD/launcher/dsdfs-launch" \
     timeout -k 30 900 "$BUILD/tests/mpi/dsdfs-mpi-cluster-tests"; then
    passed=$((passed + 1))
  else
    say "FAIL: mpi-verbs"
    failures+=(mpi-verbs)
    failed=$((failed + 1))
  fi
else
  say "RDMA variant: not run (${softroce_out:-no RDMA device})"
fi

ok=1
if ((rc != 0)); then
  say "meson test exited with $rc"
  ok=0
fi
if ((failed > 0)); then ok=0; fi
if ((skipped > 0)); then
  say "$skipped test(s) skipped: every test must run (DSDFS_REQUIRE_ALL=1)"
  ok=0
fi
if ((meson_ran == 0)); then
  say "meson test ran no test"
  ok=0
fi
if ((ok)); then
  say "all tests passed"
fi
# a failure found only through meson's exit code still counts as one
if ((!ok && failed == 0 && skipped == 0)); then
  failed=1
fi
finish "$ok"
