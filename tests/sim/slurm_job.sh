#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# The batch job of tests/sim/slurm.sh (sim-slurm), submitted with `sbatch -N 4` to the
# Slurm of scripts/cluster-sim-slurm.sh. It runs on node1, and every srun below starts
# its tasks inside the emulated nodes (their slurmd runs there), so /shared is each
# node's own dsdfs mount:
#   1. srun --ntasks-per-node=1: one dsdfs-launch per node at /shared, in the background
#      (the recipe of docs/slurm.md), then `dsdfs-launch --wait` until every node is ready;
#   2. node1 writes a checkpoint /shared/ckpt; node3 reads it and its sha256 must match;
#      its owner must be rank 0 on node1;
#   3. the documented stop (scancel --signal=TERM JOB.STEP), and every node checks that
#      nothing is mounted on /shared any more.
# Environment (from sbatch's caller): DSDFS_LAUNCH, DSDFS_SIM_DIR (stores go to
# DIR/nodeK/store), DSDFS_CKPT_MB [8], and the cluster's MPI/UCX settings.
#SBATCH --job-name=sim-slurm
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:05:00
set -euo pipefail

L=${DSDFS_LAUNCH:?}
DIR=${DSDFS_SIM_DIR:?}
MB=${DSDFS_CKPT_MB:-8}
nodes=${SLURM_JOB_NUM_NODES:?not inside a Slurm job}
say() { echo "[$(date +%T)] $*"; }

say "job $SLURM_JOB_ID on $(hostname) ($SLURM_JOB_NODELIST): dsdfs on $nodes nodes at /shared"
srun --nodes="$nodes" --ntasks-per-node=1 --mpi=pmix --overlap --kill-on-bad-exit=0 --job-name=dsdfs \
  "$L" /shared --store "$DIR/%h/store" --timeout 5 &
dsdfs_srun=$!

dsdfs_stopped=0
dsdfs_stop() {
  local step rc=0
  ((dsdfs_stopped)) && return 0
  dsdfs_stopped=1
  step=$(squeue -h -s -j "$SLURM_JOB_ID" -o '%i %j' | awk '$2 == "dsdfs" { print $1; exit }')
  if [[ -n "$step" ]]; then
    say "stopping dsdfs (scancel --signal=TERM $step)"
    scancel --signal=TERM "$step" || true
  fi
  wait "$dsdfs_srun" || rc=$?
  say "dsdfs step ended (srun exit $rc)"
  return "$rc"
}
trap 'rc=$?; dsdfs_stop || true; exit $rc' EXIT

srun --nodes="$nodes" --ntasks-per-node=1 --mpi=pmix --overlap "$L" --wait=60 /shared
say "mounted on every node"

sum1=$(srun -N1 -n1 -w node1 --overlap sh -c \
  "head -c $((MB << 20)) /dev/urandom > /shared/ckpt && sha256sum < /shared/ckpt && hostname")
say "node1 wrote /shared/ckpt: $(echo "$sum1" | tr '\n' ' ')"
sum3=$(srun -N1 -n1 -w node3 --overlap sh -c 'sha256sum < /shared/ckpt && hostname')
say "node3 read /shared/ckpt: $(echo "$sum3" | tr '\n' ' ')"
[[ "$(sed -n 2p <<<"$sum1")" == node1 && "$(sed -n 2p <<<"$sum3")" == node3 ]] ||
  { echo "the steps did not run on node1 and node3" >&2; exit 1; }
[[ "$(head -n1 <<<"$sum1")" == "$(head -n1 <<<"$sum3")" ]] ||
  { echo "checkpoint CORRUPT: node3 read another sha256" >&2; exit 1; }
owner=$(srun -N1 -n1 -w node3 --overlap getfattr --absolute-names --only-values -n user.dsdfs.owner /shared/ckpt)
[[ "$owner" == "0 node1" ]] || { echo "owner of /shared/ckpt is '$owner', not '0 node1'" >&2; exit 1; }
say "checkpoint verified: node3 read node1's $MB MiB with the same sha256 (owner: $owner)"

dsdfs_stop
# shellcheck disable=SC2016
srun --nodes="$nodes" --ntasks-per-node=1 sh -c \
  'if awk '\''$5 == "/shared" { f = 1 } END { exit !f }'\'' /proc/self/mountinfo; then echo "$(hostname): /shared STILL MOUNTED"; exit 1; fi; echo "$(hostname): /shared unmounted"'
trap - EXIT
say "job $SLURM_JOB_ID: done"
