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
#   3. node2 writes /shared/part2; its dsdfs-launch is SIGKILLed (by the pid in its status
#      file); the documented rejoin, `srun --overlap -N1 -n1 -w node2 dsdfs-launch --rejoin
#      /shared`, brings it back: node3 reads part2 with its sha256 again;
#   4. the documented stop (scancel --signal=TERM JOB.STEP of the dsdfs step and of the
#      rejoin step), and every node checks that nothing is mounted on /shared any more.
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
rejoin_srun=""
killed=0
dsdfs_stop() {
  local step name rc=0 rc2=0
  ((dsdfs_stopped)) && return 0
  dsdfs_stopped=1
  for name in dsdfs dsdfs-rejoin; do
    step=$(squeue -h -s -j "$SLURM_JOB_ID" -o '%i %j' | awk -v n="$name" '$2 == n { print $1; exit }')
    if [[ -n "$step" ]]; then
      say "stopping $name (scancel --signal=TERM $step)"
      scancel --signal=TERM "$step" || true
    fi
  done
  wait "$dsdfs_srun" || rc=$?
  say "dsdfs step ended (srun exit $rc)"
  if [[ -n "$rejoin_srun" ]]; then
    wait "$rejoin_srun" || rc2=$?
    say "dsdfs-rejoin step ended (srun exit $rc2)"
  fi
  # The step whose task was SIGKILLed ends with that task's status (137).
  ((killed && rc == 137)) && rc=0
  ((rc == 0)) && return "$rc2"
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

# A node's daemon dies; it rejoins in a step of its own (docs/slurm.md, "Bringing it back").
sum2=$(srun -N1 -n1 -w node2 --overlap sh -c 'head -c 1048576 /dev/urandom > /shared/part2 && sha256sum < /shared/part2')
# shellcheck disable=SC2016
victim=$(srun -N1 -n1 -w node2 --overlap sh -c \
  'awk '\''$1 == "pid" { print $2 }'\'' "${TMPDIR:-/tmp}/.dsdfs-$(id -u)-$(hostname)-"*.status')
[[ "$victim" =~ ^[0-9]+$ ]] || { echo "no pid of node2's dsdfs-launch in its status file: '$victim'" >&2; exit 1; }
killed=1
srun -N1 -n1 -w node2 --overlap kill -KILL "$victim"
say "node2 wrote /shared/part2; its dsdfs-launch (pid $victim) SIGKILLed"
for _ in $(seq 40); do
  srun -N1 -n1 -w node3 --overlap cat /shared/part2 >/dev/null 2>&1 || break
  sleep 0.5
done
if srun -N1 -n1 -w node3 --overlap cat /shared/part2 >/dev/null 2>&1; then
  echo "node3 still reads part2 20 s after node2's daemon died" >&2
  exit 1
fi
srun -N1 -n1 -w node2 --overlap --kill-on-bad-exit=0 --job-name=dsdfs-rejoin "$L" --rejoin /shared --timeout 5 &
rejoin_srun=$!
back=0
for _ in $(seq 60); do
  if srun -N1 -n1 -w node3 --overlap sh -c 'sha256sum < /shared/part2' 2>/dev/null | grep -qx -- "$sum2"; then
    back=1
    break
  fi
  sleep 0.5
done
((back)) || { echo "node3 does not read node2's part2 again 30 s after the rejoin" >&2; exit 1; }
say "rejoin verified: node2 rejoined (srun --overlap --rejoin) and node3 reads its part2 with the same sha256"

dsdfs_stop
# shellcheck disable=SC2016
srun --nodes="$nodes" --ntasks-per-node=1 sh -c \
  'if awk '\''$5 == "/shared" { f = 1 } END { exit !f }'\'' /proc/self/mountinfo; then echo "$(hostname): /shared STILL MOUNTED"; exit 1; fi; echo "$(hostname): /shared unmounted"'
trap - EXIT
say "job $SLURM_JOB_ID: done"
