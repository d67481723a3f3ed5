#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# sim-slurm: Slurm across the emulated nodes (issue 12, item 3). scripts/cluster-sim.sh
# makes 4 nodes, scripts/cluster-sim-slurm.sh starts a Slurm of its own for them (a
# slurmctld and a munged in this machine's namespace, listening on the cluster's head
# address, and one slurmd inside each node's namespaces: NodeName=node[1-4] with the
# nodes' addresses), and then `sbatch -N 4 tests/sim/slurm_job.sh` from this machine:
#   - srun --ntasks-per-node=1 starts dsdfs-launch /shared on every node (each task in
#     its node's namespaces, because its slurmd runs there); dsdfs-launch --wait;
#   - node1 writes a checkpoint to /shared, node3 reads it: same sha256, owner node1;
#   - node2's dsdfs-launch SIGKILLed and brought back with srun --overlap ... --rejoin:
#     node3 reads node2's file again with its sha256;
#   - the documented stop (scancel --signal=TERM JOB.STEP); every node checks in the job
#     that /shared is no longer mounted;
# and from outside: the job ran on node[1-4] and exited 0, no node has a mount on
# /shared (cluster-sim.sh exec K findmnt), every store is removed, no dsdfs-launch is
# left in a node; the Slurm and the cluster go down leaving nothing.
# Every step is bounded by timeout; an EXIT trap takes the Slurm and the cluster down.
# Exit 0 pass, 1 fail, 77 skip (no root, namespaces or Slurm/munge binaries; a failure
# with DSDFS_REQUIRE_ALL=1).
#
# Environment: DSDFS_LAUNCH (default build-test/launcher/dsdfs-launch), DSDFS_SOURCE_ROOT,
# DSDFS_SIM_TEST_KEEP=1 (keep everything up at the end). The cluster has names, a subnet,
# a directory and a slurmctld port of its own (prefix tl<hex pid>, 10.77.2xx, port
# 17000-26999), so the single-node test Slurm of scripts/slurm-up.sh (6817/6818, its own
# munge) and other clusters keep running meanwhile.
set -euo pipefail

T=sim-slurm
SRC=${DSDFS_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SIM=$SRC/scripts/cluster-sim.sh
SSLURM=$SRC/scripts/cluster-sim-slurm.sh
NODES=4
t_start=$SECONDS

# shellcheck source=../report.sh
. "$SRC/tests/report.sh"

# --- what it needs -------------------------------------------------------------------
# shellcheck source=lib.sh
. "$SRC/tests/sim/lib.sh"
sim_require setfattr getfattr mpirun ss munged mungekey munge unmunge setpriv slurmctld slurmd \
  sbatch srun squeue scancel sinfo scontrol
id munge >/dev/null 2>&1 || skip "user munge missing (scripts/install-deps.sh)"
LAUNCH=$DSDFS_LAUNCH

# --- a cluster and a Slurm of its own -------------------------------------------------
sim_own_cluster tl 200 50
export DSDFS_SIM_SLURMCTLD_PORT=""
for ((i = 0; i < 100; i++)); do
  p=$((17000 + ($$ * 7 + i) % 10000))
  if ! ss -Hltn "sport = :$p" | grep -q .; then
    DSDFS_SIM_SLURMCTLD_PORT=$p
    break
  fi
done
[[ -n "$DSDFS_SIM_SLURMCTLD_PORT" ]] || fail "no free port for slurmctld"
export DSDFS_SIM_SLURMD_PORT=$((DSDFS_SIM_SLURMCTLD_PORT + 1))
export DSDFS_SIM_NODES=$NODES
DIR=$DSDFS_SIM_DIR
up=0 slurm_up=0 job=""

cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  set +e  # every step runs, whatever one of them returns
  if ((rc != 0)); then
    for f in "$DIR/job.out" "$DIR"/slurm/log/slurmctld.log "$DIR"/slurm/log/slurmd.node*.log; do
      [[ -s "$f" ]] || continue
      echo "----- $f (last 40 lines) -----"
      tail -n 40 "$f"
    done
  fi
  if [[ "${DSDFS_SIM_TEST_KEEP:-0}" == 1 ]] && ((up)); then
    log "keeping everything (DSDFS_SIM_TEST_KEEP=1): DSDFS_SIM_DIR=$DIR $SSLURM down; DSDFS_SIM_DIR=$DIR $SIM down"
    exit "$rc"
  fi
  if ((slurm_up)); then
    timeout -k 5 60 "$SSLURM" down || rc=1
  fi
  if ((up)); then
    timeout -k 5 90 "$SIM" down || rc=1
  fi
  exit "$rc"
}
sim_traps

log "cluster: $NODES nodes, prefix $DSDFS_SIM_PREFIX, subnet $DSDFS_SIM_NET.0/24, slurmctld port $DSDFS_SIM_SLURMCTLD_PORT, directory $DIR"
t=$SECONDS
up=1
timeout -k 5 60 "$SIM" up || fail "cluster-sim.sh up failed"
t_up=$((SECONDS - t))

t=$SECONDS
slurm_up=1
export DSDFS_SIM_SLURM_TIMEOUT=30
timeout -k 5 45 "$SSLURM" up >/dev/null || fail "cluster-sim-slurm.sh up failed"
t_slurm=$((SECONDS - t))
# shellcheck disable=SC1091
. "$DIR/slurm/env.sh"
nodelist=$(timeout 15 sinfo -h -N -o '%N %T' | sort | tr '\n' ' ')
[[ "$nodelist" == "node1 idle node2 idle node3 idle node4 idle " ]] || fail "sinfo: $nodelist"
for ((k = 1; k <= NODES; k++)); do
  # each slurmd runs inside its node's namespaces: its host name is nodeK
  pid=$(cut -d' ' -f1 "$DIR/slurm/pids/slurmd.$k")
  [[ "$(cat "/proc/$pid/comm")" == slurmd ]] || fail "slurmd of node$k: pid $pid is $(cat "/proc/$pid/comm")"
  [[ "$(readlink "/proc/$pid/ns/net")" == "$(on "$k" readlink /proc/self/ns/net)" ]] ||
    fail "slurmd of node$k is not in node$k's network namespace"
done
log "Slurm up in ${t_slurm} s: $nodelist(one slurmd in each node's namespaces)"

# --- the job --------------------------------------------------------------------------
t=$SECONDS
out=$DIR/job.out
cd "$DIR"
job=$(sbatch --parsable -N "$NODES" -o "$out" "$SRC/tests/sim/slurm_job.sh") || fail "sbatch failed"
job=${job%%;*}
deadline=$((SECONDS + 60))
while :; do
  state=$(squeue -h -j "$job" -t all -o %T 2>/dev/null || true)
  case "$state" in
    PENDING | CONFIGURING | RUNNING | COMPLETING | "") ;;
    *) break ;;
  esac
  ((SECONDS < deadline)) || fail "job $job not finished within 60 s (state ${state:-unknown})"
  sleep 0.3
done
t_job=$((SECONDS - t))
info=$(scontrol show job "$job")
exitcode=$(sed -n 's/.* ExitCode=\([0-9]*:[0-9]*\).*/\1/p' <<<"$info")
nl=$(sed -n 's/^ *NodeList=\(.*\)$/\1/p' <<<"$info")
[[ "$state" == COMPLETED && "$exitcode" == 0:0 ]] || fail "job $job: state $state, exit $exitcode"
[[ "$nl" == "node[1-4]" ]] || fail "job $job ran on '$nl', not node[1-4]"
for s in "dsdfs is mounted and ready on all 4 ranks" "checkpoint verified: node3 read node1's" \
  "rejoin verified: node2 rejoined" "dsdfs step ended (srun exit" "dsdfs-rejoin step ended (srun exit 0)" \
  "job $job: done"; do
  grep -qF -- "$s" "$out" || fail "job output lacks '$s'"
done
for ((k = 1; k <= NODES; k++)); do
  grep -qx "node$k: /shared unmounted" "$out" || fail "job output lacks 'node$k: /shared unmounted'"
done
log "job $job (sbatch -N 4) in ${t_job} s: $(grep -F 'checkpoint verified' "$out" | cut -d' ' -f2-)"
log "$(grep -F 'rejoin verified' "$out" | cut -d' ' -f2-); $(grep -F 'step ended' "$out" | cut -d' ' -f2- | tr '\n' ' ')"

# --- nothing left on the nodes -----------------------------------------------------------
for ((k = 1; k <= NODES; k++)); do
  if m=$(on "$k" findmnt -n -o FSTYPE /shared); then fail "node $k: /shared is still mounted ($m)"; fi
  [[ ! -e "$DIR/node$k/store" ]] || fail "node $k's store $DIR/node$k/store is still there"
  # shellcheck disable=SC2016
  left=$(on "$k" sh -c 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = dsdfs-launch ] && echo ${p#/proc/}; done; true')
  [[ -z "$left" ]] || fail "node $k: dsdfs-launch still running: $left"
done
log "after the job: no node has a mount on /shared, every store removed, no dsdfs-launch left"

if [[ "${DSDFS_SIM_TEST_KEEP:-0}" == 1 ]]; then
  log "PASS (kept: DSDFS_SIM_DIR=$DIR $SSLURM down; DSDFS_SIM_DIR=$DIR $SIM down)"
  exit 0
fi
cd /
t=$SECONDS
slurmpids=$(cat "$DIR"/slurm/pids/*)
timeout -k 5 60 "$SSLURM" down || fail "cluster-sim-slurm.sh down failed"
slurm_up=0
while read -r p start; do
  # gone, a zombie not yet reaped by init, or another process with that PID
  st=$(cat "/proc/$p/stat" 2>/dev/null || true)
  st=${st##*) }
  [[ -z "$st" || "${st:0:1}" == Z || "$(cut -d' ' -f20 <<<"$st")" != "$start" ]] ||
    fail "$(cat "/proc/$p/comm") ($p) still running after cluster-sim-slurm.sh down"
done <<<"$slurmpids"
timeout -k 5 90 "$SIM" down || fail "cluster-sim.sh down failed"
up=0
[[ ! -e "$DIR" ]] || fail "$DIR left after down"
log "Slurm and cluster down in $((SECONDS - t)) s"
log "PASS in $((SECONDS - t_start)) s (cluster up ${t_up} s, Slurm up ${t_slurm} s, job ${t_job} s)"
