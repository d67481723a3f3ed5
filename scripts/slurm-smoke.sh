#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-smoke.sh: prove the MPI launch paths dsdfs relies on work on this
# machine, before any dsdfs test runs. With the private Slurm up
# (scripts/slurm-up.sh), it builds slurm/ci/mpi_hello.c in a temporary
# directory and runs it three ways, each with 3 ranks:
#   1. mpirun -np 3 ./mpi_hello                        (Open MPI's own launcher)
#   2. srun --mpi=pmix -n 3 ./mpi_hello                (direct launch, PMIx)
#   3. sbatch --wait slurm/ci/hello.sbatch             (batch job -> srun)
# and, when DSDFS_SMOKE_USER=name is set, step 3 again as that unprivileged
# user (created with useradd if missing).
#
# Every check must print three "allgather ok" lines. Exit 0 when all pass,
# 1 otherwise (with the output of the failing check). Takes a few seconds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=loopback-env.sh
. "$here/loopback-env.sh"
if [[ -z "${SLURM_CONF:-}" ]]; then
  env_file=${DSDFS_SLURM_DIR:-/var/tmp/dsdfs-slurm}/env.sh
  [[ -r "$env_file" ]] || { echo "slurm-smoke: no SLURM_CONF and no $env_file; run scripts/slurm-up.sh" >&2; exit 1; }
  # shellcheck disable=SC1090
  . "$env_file"
fi

work=$(mktemp -d /tmp/dsdfs-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
mpicc -O2 -o "$work/mpi_hello" "$root/slurm/ci/mpi_hello.c"
cp "$root/slurm/ci/hello.sbatch" "$work/"

failed=0
# check NAME EXPECTED_RANKS CMD...: run CMD in $work, count "allgather ok"
check() {
  local name=$1 want=$2 out rc=0 got
  shift 2
  if [[ "$(type -t "$1")" == function ]]; then
    out=$(cd "$work" && "$@" 2>&1) || rc=$?
  else
    out=$(cd "$work" && timeout 120 "$@" 2>&1) || rc=$?
  fi
  got=$(grep -c 'allgather ok' <<<"$out" || true)
  if ((rc == 0 && got == want)); then
    echo "slurm-smoke: ok    $name"
  else
    echo "slurm-smoke: FAIL  $name (exit $rc, $got of $want ranks ok)"
    sed 's/^/    /' <<<"$out"
    failed=1
  fi
}

# run_batch [USER]: sbatch --wait the hello job, print the job's output
run_batch() {
  local user=${1:-} out_dir=$work
  local -a as=()
  if [[ -n "$user" ]]; then
    out_dir=$work/$user
    install -d -o "$user" -m 0755 "$out_dir"
    cp "$work/mpi_hello" "$work/hello.sbatch" "$out_dir/"
    chown "$user" "$out_dir"/*
    as=(runuser -u "$user" --)
  fi
  (cd "$out_dir" && timeout 120 "${as[@]}" env SLURM_CONF="$SLURM_CONF" \
    sbatch --wait --quiet -o "$out_dir/hello-%j.out" "$out_dir/hello.sbatch") || {
    cat "$out_dir"/hello-*.out 2>/dev/null
    return 1
  }
  cat "$out_dir"/hello-*.out
}

check "mpirun -np 3" 3 mpirun -np 3 ./mpi_hello
check "srun --mpi=pmix -n 3" 3 srun --mpi=pmix -n 3 ./mpi_hello
check "sbatch --wait (root)" 3 run_batch
if [[ -n "${DSDFS_SMOKE_USER:-}" ]]; then
  id "$DSDFS_SMOKE_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$DSDFS_SMOKE_USER"
  check "sbatch --wait (user $DSDFS_SMOKE_USER)" 3 run_batch "$DSDFS_SMOKE_USER"
fi
exit "$failed"
