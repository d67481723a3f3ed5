#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# sim-rejoin: a crashed daemon rejoins (issue 12 item 5), on an emulated cluster of 3
# nodes with dsdfs at /shared on each (mpirun through the launch agent):
#   - node2 writes a checkpoint and a log in a directory; node3 reads the checkpoint;
#   - node2's dsdfs-launch is killed with SIGKILL (its /shared is now a dead mount);
#   - meanwhile: node1 and node3 get an error (no hang) for node2's checkpoint within
#     twice the timeout, node1 renames the directory, node3 makes a new one;
#   - on node2: `dsdfs-launch --rejoin /shared`, as a user would start it, without
#     mpirun; it reconnects over eth0 from the addresses in its store;
#   - then every node reads node2's checkpoint with the same sha256 and its log under the
#     renamed directory, node2 sees the directories the others made, an append from node3
#     to node2's log lands on node2, and a file node2 makes reads on node1;
#   - SIGTERM to the rejoined daemon: it exits 0, unmounts and removes its store;
#     stop-dsdfs stops the rest (no mount, no process left); down leaves nothing.
# Exit 0 pass, 1 fail, 77 skip (no root, tools or namespaces). About 25 s.
#
# Environment: DSDFS_LAUNCH, DSDFS_SOURCE_ROOT, DSDFS_SIM_TEST_KEEP=1 (keep the cluster).
set -euo pipefail

T=sim-rejoin
SRC=${DSDFS_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SIM=$SRC/scripts/cluster-sim.sh
TIMEOUT_S=3
t_start=$SECONDS

# shellcheck source=../report.sh
. "$SRC/tests/report.sh"
# shellcheck source=lib.sh
. "$SRC/tests/sim/lib.sh"
sim_require getfattr mpirun sha256sum
LAUNCH=$DSDFS_LAUNCH

sim_own_cluster tr 130 60
export DSDFS_SIM_NODES=3
DIR=$DSDFS_SIM_DIR
up=0
rejoined=""

cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  set +e  # every step runs, whatever one of them returns
  if [[ -n "$rejoined" ]] && kill -0 "$rejoined" 2>/dev/null; then
    kill -TERM "$rejoined" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$rejoined" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$rejoined" 2>/dev/null || true
  fi
  if ((rc != 0)) && [[ -r "$DIR/rejoin.log" ]]; then
    echo "----- node2's rejoined daemon (last 30 lines) -----" >&2
    tail -n 30 "$DIR/rejoin.log" >&2
  fi
  if ((up)); then
    rc=$(sim_end_cluster "$rc")
  fi
  exit "$rc"
}
sim_traps

log "cluster: 3 nodes, prefix $DSDFS_SIM_PREFIX, subnet $DSDFS_SIM_NET.0/24"
up=1
timeout -k 5 60 "$SIM" up || fail "cluster-sim.sh up failed"
timeout -k 5 120 "$SIM" start-dsdfs -t 90 -- --timeout "$TIMEOUT_S" || fail "start-dsdfs failed"

# --- node2's files -----------------------------------------------------------------------
sh_on 1 'mkdir /shared/run' || fail "node 1: mkdir /shared/run failed"
sum=$(sh_on 2 'head -c 3145728 /dev/urandom > /shared/ckpt && sha256sum < /shared/ckpt') ||
  fail "node 2: writing /shared/ckpt failed"
sh_on 2 'echo "step 1" > /shared/run/log' || fail "node 2: writing /shared/run/log failed"
expect_eq "sha256 of /shared/ckpt on node 3" "$(sh_on 3 'sha256sum < /shared/ckpt')" "$sum"
ino=$(on 3 stat -c %i /shared/ckpt)
log "node2 wrote /shared/ckpt (3 MiB) and /shared/run/log; node3 reads the checkpoint"

# --- node2's daemon dies ---------------------------------------------------------------------
pid=$(sim_daemon_pid 2) || fail "no dsdfs-launch on node 2"
kill -KILL "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$pid" 2>/dev/null || fail "node 2's daemon (pid $pid) survived SIGKILL"
limit=$((2 * TIMEOUT_S + 4))
for k in 1 3; do
  rc=0
  timeout -k 2 "$limit" "$SIM" exec "$k" cat /shared/ckpt >/dev/null 2>"$DIR/err" || rc=$?
  ((rc != 124 && rc != 137)) || fail "node $k: cat of node2's checkpoint did not end within $limit s"
  ((rc != 0)) || fail "node $k: cat of the dead node2's checkpoint succeeded"
done
sh_on 1 'mv /shared/run /shared/run2' || fail "node 1: mv /shared/run /shared/run2 failed"
sh_on 3 'mkdir /shared/made' || fail "node 3: mkdir /shared/made failed"
log "node2's daemon killed (pid $pid): nodes 1 and 3 get an error for its checkpoint, rename run to run2, make made"

# --- node2 rejoins, as a user would restart it ---------------------------------------------------
# With the UCX settings of the job's ranks (the nodes' eth0): `cluster-sim.sh env`.
(
  eval "$("$SIM" env)"
  exec "$SIM" exec 2 "$LAUNCH" --rejoin /shared --timeout "$TIMEOUT_S" --log-level info
) >"$DIR/rejoin.log" 2>&1 &
rejoined=$!
t=$SECONDS
ready=0
for _ in $(seq 150); do
  kill -0 "$rejoined" 2>/dev/null || fail "dsdfs-launch --rejoin on node 2 exited: $(tail -n 5 "$DIR/rejoin.log")"
  if on 2 getfattr --absolute-names -n user.dsdfs.ready /shared >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
((ready)) || fail "node 2 did not serve /shared within 30 s of --rejoin"
expect_eq "file system at /shared on node 2" "$(on 2 findmnt -n -o FSTYPE /shared)" "fuse.dsdfs"
t_rejoin=$((SECONDS - t))
# its files are claimed again while it serves: wait for them (bounded)
for _ in $(seq 50); do
  [[ "$(sh_on 1 'sha256sum < /shared/ckpt' 2>/dev/null)" == "$sum" ]] && break
  sleep 0.2
done
for k in 1 2 3; do
  expect_eq "sha256 of /shared/ckpt on node $k after the rejoin" "$(sh_on "$k" 'sha256sum < /shared/ckpt')" "$sum"
  expect_eq "inode number of /shared/ckpt on node $k" "$(on "$k" stat -c %i /shared/ckpt)" "$ino"
  expect_eq "/shared/run2/log on node $k" "$(on "$k" cat /shared/run2/log)" "step 1"
  expect_eq "ls /shared on node $k" "$(on "$k" ls /shared | tr '\n' ' ')" "ckpt made run2 "
done
grep -q "is back in the job" "$DIR/rejoin.log" || fail "the rejoined daemon did not report its catch-up"
log "node2 rejoined in ${t_rejoin} s: every node reads its checkpoint (same sha256 and inode number) and run2/log"

sh_on 3 'echo "step 2" >> /shared/run2/log' || fail "node 3: >> /shared/run2/log failed"
expect_eq "node2's store after >> from node3" "$(cat "$DIR/node2/store/files/run2/log")" $'step 1\nstep 2'
sh_on 2 'echo "after" > /shared/made/x' || fail "node 2: writing /shared/made/x failed"
expect_eq "/shared/made/x on node 1" "$(on 1 cat /shared/made/x)" "after"
log "node3's >> to node2's log lands on node2; node2's new file reads on node1"

# --- stop ---------------------------------------------------------------------------------------------
kill -TERM "$rejoined"
rc=0
for _ in $(seq 100); do kill -0 "$rejoined" 2>/dev/null || break; sleep 0.2; done
! kill -0 "$rejoined" 2>/dev/null || fail "the rejoined daemon did not stop within 20 s of SIGTERM"
wait "$rejoined" || rc=$?
rejoined=""
expect_eq "exit status of the rejoined daemon" "$rc" 0
if m=$(on 2 findmnt -n -o FSTYPE /shared); then fail "node 2: /shared is still mounted ($m)"; fi
[[ ! -e "$DIR/node2/store" ]] || fail "node 2's store is still there"
timeout -k 5 90 "$SIM" stop-dsdfs || fail "stop-dsdfs failed"
log "the rejoined daemon stopped on SIGTERM (exit 0, unmounted, store removed); stop-dsdfs stopped the rest"

if [[ "${DSDFS_SIM_TEST_KEEP:-0}" == 1 ]]; then
  log "PASS (cluster kept: DSDFS_SIM_DIR=$DIR $SIM down)"
  exit 0
fi
timeout -k 5 90 "$SIM" down || fail "cluster-sim.sh down failed"
up=0
log "PASS in $((SECONDS - t_start)) s"
