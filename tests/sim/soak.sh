#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# soak.sh (sim-soak): the randomized multi-rank torture test and its oracle
# (tests/mpi/torture_*.cc, tests/mpi/README.md) on the emulated cluster: one dsdfs
# rank per node at /shared, started by mpirun across the nodes, while network
# faults come and go. The test program runs on this machine and reaches each
# node's /shared through /proc/PID/root/shared of that node's daemon.
#
# Faults, in turn, each for a few seconds with a clean pause after it:
#   - 1 % of the packets every node sends dropped (nftables);
#   - every link at 100 Mbit/s (tc tbf);
#   - one node's daemon frozen (SIGSTOP) for 1 s, under the 5 s timeout;
#   - a round trip of 2 ms added between nodes (the delay line, tests/sim/delay_line.cc;
#     left out, and said so, where it cannot run here).
# No node dies, so every rule of the oracle holds, as on a quiet network: nothing
# lost (log-lost: a record whose write succeeded is there), nothing torn or
# duplicated, no transport errno, no hang; errors are counted by kind.
# Reports operations, faults injected (and packets dropped), errors by kind and
# records lost. Exit 0 pass, 1 fail, 77 skip.
#
#   DSDFS_SOAK_SECONDS  length of the torture run (default 30; the documented
#                       long run is 600)
#   DSDFS_SOAK_NODES    nodes (default 3)
#   DSDFS_TORTURE       the torture program (default: the build's)
#   DSDFS_SIM_TEST_KEEP=1 keeps the cluster up at the end
set -euo pipefail

T=sim-soak
SRC=${DSDFS_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SIM=$SRC/scripts/cluster-sim.sh
NODES=${DSDFS_SOAK_NODES:-3}
RUN_S=${DSDFS_SOAK_SECONDS:-30}
TIMEOUT_S=5
t_start=$SECONDS

# shellcheck source=../report.sh
. "$SRC/tests/report.sh"
# shellcheck source=lib.sh
. "$SRC/tests/sim/lib.sh"
sim_require mpirun nft tc
TORTURE=${DSDFS_TORTURE:-$(dirname "$DSDFS_LAUNCH")/../tests/mpi/dsdfs-mpi-torture}
[[ -x "$TORTURE" ]] || fail "the torture program ('$TORTURE') is not built; run through meson test"

sim_own_cluster tk 50 50
export DSDFS_SIM_NODES=$NODES
DIR=$DSDFS_SIM_DIR
up=0
frozen=""
lossy=0
slow=0
delayed=0
torture_pid=""

cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  set +e  # every step runs, whatever one of them returns
  [[ -n "$frozen" ]] && kill -CONT "$frozen" 2>/dev/null
  [[ -n "$torture_pid" ]] && kill -TERM "$torture_pid" 2>/dev/null && wait "$torture_pid" 2>/dev/null
  if ((up)); then
    local k
    for ((k = 1; k <= NODES; k++)); do
      ((lossy)) && sim_loss_off "$k" >/dev/null 2>&1
      ((slow)) && sim_tbf_off "$k" >/dev/null 2>&1
      ((delayed)) && sim_delay_off "$k" >/dev/null 2>&1
    done
    rc=$(sim_end_cluster "$rc")
  fi
  exit "$rc"
}
sim_traps

log "cluster: $NODES nodes, prefix $DSDFS_SIM_PREFIX, subnet $DSDFS_SIM_NET.0/24, directory $DIR"
up=1
timeout -k 5 60 "$SIM" up || fail "cluster-sim.sh up failed"
timeout -k 5 120 "$SIM" start-dsdfs -t 90 -- --timeout "$TIMEOUT_S" || fail "start-dsdfs failed"
# in rank order (the oracle compares owners with its rank numbers): each daemon's rank is in
# its environment
declare -a by_rank
for ((k = 1; k <= NODES; k++)); do
  pid=$(sim_daemon_pid "$k") || fail "cannot find node$k's dsdfs-launch"
  r=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
  [[ "$r" =~ ^[0-9]+$ ]] && ((r < NODES)) || fail "node$k's dsdfs-launch ($pid) has no rank in its environment"
  by_rank[r]="$pid:/proc/$pid/root/shared:$DIR/node$k/store"
done
attach=""
for ((r = 0; r < NODES; r++)); do
  [[ -n "${by_rank[r]:-}" ]] || fail "no node runs rank $r"
  attach+="${attach:+,}${by_rank[r]}"
done
log "dsdfs at /shared on $NODES nodes (--timeout $TIMEOUT_S); the torture test attaches: $attach"

DSDFS_TORTURE_ATTACH=$attach DSDFS_TORTURE_ATTACH_LOG=$DIR/dsdfs.log \
  DSDFS_TORTURE_SECONDS=$RUN_S DSDFS_TORTURE_TIMEOUT_S=$TIMEOUT_S \
  DSDFS_LOOPBACK_ENV=$SRC/scripts/loopback-env.sh TMPDIR=$DIR \
  timeout -k 10 $((RUN_S + 300)) "$TORTURE" --gtest_filter='TortureSoak.*' >"$DIR/torture.log" 2>&1 &
torture_pid=$!

# the faults, in turn, until the run is over
losses=0 slows=0 freezes=0 delays=0 dropped=0
kinds=3
if sim_delay_available; then
  kinds=4
elif [[ "${DSDFS_REQUIRE_ALL:-0}" == 1 ]]; then
  fail "no delay line (dsdfs-sim-delay-line needs libnetfilter-queue-dev, iptables and ping: scripts/install-deps.sh)"
else
  log "no added latency among the faults: no delay line here (libnetfilter-queue-dev, iptables, ping)"
fi
t0=$SECONDS
i=0
while kill -0 "$torture_pid" 2>/dev/null && ((SECONDS - t0 < RUN_S)); do
  sleep 2
  case $((i % kinds)) in
    0)
      lossy=1
      for ((k = 1; k <= NODES; k++)); do sim_loss_on "$k" || fail "node $k: nft rule for 1 % loss failed"; done
      sleep 4
      for ((k = 1; k <= NODES; k++)); do
        d=$(sim_loss_off "$k") || fail "node $k: cannot remove the loss rule"
        dropped=$((dropped + d))
      done
      lossy=0
      losses=$((losses + 1))
      ;;
    1)
      slow=1
      for ((k = 1; k <= NODES; k++)); do sim_tbf_on "$k" 100mbit || fail "node $k: tc tbf failed"; done
      sleep 4
      for ((k = 1; k <= NODES; k++)); do sim_tbf_off "$k" || fail "node $k: cannot remove tbf"; done
      slow=0
      slows=$((slows + 1))
      ;;
    2)
      k=$((i / 3 % NODES + 1))
      frozen=$(sim_daemon_pid "$k") || fail "cannot find node$k's dsdfs-launch"
      kill -STOP "$frozen"
      sleep 1
      kill -CONT "$frozen"
      frozen=""
      freezes=$((freezes + 1))
      ;;
    3)
      delayed=1
      for ((k = 1; k <= NODES; k++)); do sim_delay_on "$k" 1000 || fail "node $k: the delay line did not start"; done
      sleep 4
      for ((k = 1; k <= NODES; k++)); do sim_delay_off "$k" >/dev/null || fail "node $k: cannot remove the delay line"; done
      delayed=0
      delays=$((delays + 1))
      ;;
  esac
  i=$((i + 1))
done
rc=0
wait "$torture_pid" || rc=$?
torture_pid=""
faults="$losses times 1 % loss ($dropped packets dropped), $slows times 100 Mbit/s links, $freezes daemons frozen for 1 s, $delays times a 2 ms round trip"

# What the oracle said: its summary (operations, errors by kind, violations), as printed.
sed -n '/^torture: summary of/,$p' "$DIR/torture.log" | grep -v '^\[' || true
ops=$(sed -n 's/^torture: summary of seed [^:]*: \([0-9]*\) operations.*/\1/p' "$DIR/torture.log" | tail -1)
lost=$(grep -c 'log-lost' "$DIR/torture.log" || true)
if ((rc != 0)); then
  grep -E 'VIOLATION|Failure|FAILED' "$DIR/torture.log" | head -20 || true
  fail "the torture test failed under faults (status $rc; $faults; log $DIR/torture.log)"
fi
[[ -n "$ops" ]] || fail "the torture test printed no summary (log $DIR/torture.log)"
log "PASS in $((SECONDS - t_start)) s: ${ops} operations in ${RUN_S} s on $NODES nodes; faults: $faults; records lost: $lost"
