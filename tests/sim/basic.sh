#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# sim-basic: the README's basic scenario on an emulated cluster, as a user would
# run it with ordinary tools. scripts/cluster-sim.sh makes 4 nodes (own network,
# mount and UTS namespaces, addresses on a private bridge), a real mpirun from this
# machine's namespace starts one dsdfs per node at /shared through the launch agent,
# and then:
#   - every node is nodeK with eth0 = NET.K, and reaches no address outside the
#     cluster; /shared is a dsdfs mount on every node and not on this machine;
#   - node1: echo ... > /shared/a; node2: ls /shared, cat /shared/a (same bytes);
#   - node2: echo more >> /shared/a: applied on the owner, node1 (its store has it);
#   - node2: echo new > /shared/a: node2 owns a new file; node1 reads "new";
#   - a 4 MiB file written on node3 is read on node4 with the same sha256, and the
#     bytes came in over node4's eth0 (its receive counter), not over loopback;
#   - stop-dsdfs: mpirun ends on SIGTERM, no node has a mount on /shared, the
#     stores are gone; down: no namespace, link, process or directory left.
# Every step is bounded by `timeout`; an EXIT trap stops dsdfs and takes the cluster
# down on any failure. Exit 0 pass, 1 fail, 77 skip (no root, tools or namespaces;
# a failure with DSDFS_REQUIRE_ALL=1).
#
# Environment: DSDFS_LAUNCH (dsdfs-launch; default build-test/launcher/dsdfs-launch),
# DSDFS_SOURCE_ROOT (the source tree), DSDFS_SIM_TEST_NODES (4),
# DSDFS_SIM_TEST_KEEP=1 (keep the cluster up at the end, for a look; `down` yourself).
# The cluster has names and a subnet of its own (prefix ts<hex pid>, 10.77.1xx), so a
# developer's cluster (prefix dsim, 10.77.0) can stay up meanwhile.
set -euo pipefail

T=sim-basic
SRC=${DSDFS_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SIM=$SRC/scripts/cluster-sim.sh
NODES=${DSDFS_SIM_TEST_NODES:-4}
t_start=$SECONDS

# shellcheck source=../report.sh
. "$SRC/tests/report.sh"

# --- what it needs -------------------------------------------------------------------
((NODES >= 2)) || fail "DSDFS_SIM_TEST_NODES must be at least 2"
# shellcheck source=lib.sh
. "$SRC/tests/sim/lib.sh"
sim_require setfattr getfattr mpirun sha256sum
LAUNCH=$DSDFS_LAUNCH

# --- a cluster of its own ----------------------------------------------------------------
sim_own_cluster ts 100 100
export DSDFS_SIM_NODES=$NODES
DIR=$DSDFS_SIM_DIR
NET=$DSDFS_SIM_NET
up=0

cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  set +e  # every step runs, whatever one of them returns
  if ((up)); then
    rc=$(sim_end_cluster "$rc")
  fi
  exit "$rc"
}
sim_traps
rx_bytes() { on "$1" cat "/sys/class/net/$2/statistics/rx_bytes"; }

log "cluster: $NODES nodes, prefix $DSDFS_SIM_PREFIX, subnet $NET.0/24, directory $DIR, dsdfs-launch $LAUNCH"
t=$SECONDS
up=1
timeout -k 5 60 "$SIM" up || fail "cluster-sim.sh up failed"
t_up=$((SECONDS - t))

# --- the nodes ---------------------------------------------------------------------------
for ((k = 1; k <= NODES; k++)); do
  expect_eq "host name of node $k" "$(on "$k" cat /proc/sys/kernel/hostname)" "node$k"
  addr=$(on "$k" ip -4 -o addr show dev eth0 | awk '{ print $4 }')
  expect_eq "address of node $k" "$addr" "$NET.$k/24"
  # no route out of the cluster: a node reaches only the nodes and this machine's end
  if on "$k" ip route get 192.0.2.1 >/dev/null 2>&1; then
    fail "node $k has a route to 192.0.2.1 (outside the cluster): $(on "$k" ip route)"
  fi
done
out=$(on 2 bash -c "exec 3<>/dev/tcp/$NET.1/1" 2>&1 || true)
[[ "$out" == *[Rr]efused* ]] || fail "node 2 cannot reach node 1 ($NET.1): $out"
log "nodes up in ${t_up} s: node1..node$NODES, each its own host name, address and routes"

# --- dsdfs on every node, by mpirun ------------------------------------------------------------
t=$SECONDS
timeout -k 5 120 "$SIM" start-dsdfs -t 90 -- --timeout 5 || fail "start-dsdfs failed"
t_start_dsdfs=$((SECONDS - t))
for ((k = 1; k <= NODES; k++)); do
  type=$(on "$k" findmnt -n -o FSTYPE /shared) || fail "node $k: nothing mounted on /shared"
  expect_eq "file system at /shared on node $k" "$type" "fuse.dsdfs"
done
if findmnt -n /shared >/dev/null 2>&1; then
  fail "/shared is a mount point in this machine's own namespace: $(findmnt -n /shared)"
fi
log "dsdfs mounted at /shared on every node in ${t_start_dsdfs} s (one mpirun, $NODES orteds started by the agent)"

# --- the basic scenario --------------------------------------------------------------------
sh_on 1 'echo "written on node1" > /shared/a' || fail "node 1: echo > /shared/a failed"
listing=$(on 2 ls /shared) || fail "node 2: ls /shared failed"
expect_eq "ls /shared on node 2" "$listing" "a"
expect_eq "cat /shared/a on node 2" "$(on 2 cat /shared/a)" "written on node1"
owner=$(on 2 getfattr --absolute-names --only-values -n user.dsdfs.owner /shared/a)
expect_eq "owner of /shared/a" "$owner" "0 node1"
log "node1 wrote /shared/a; node2 lists it and reads the same bytes; its owner is rank 0 on node1"

sh_on 2 'echo more >> /shared/a' || fail "node 2: echo more >> /shared/a failed"
expected=$'written on node1\nmore'
expect_eq "cat /shared/a on node 1 after >> on node 2" "$(on 1 cat /shared/a)" "$expected"
expect_eq "cat /shared/a on node 2 after >> on node 2" "$(on 2 cat /shared/a)" "$expected"
expect_eq "owner of /shared/a after >>" "$(on 1 getfattr --absolute-names --only-values -n user.dsdfs.owner /shared/a)" \
  "0 node1"
expect_eq "node1's store after >>" "$(cat "$DIR/node1/store/files/a" 2>&1)" "$expected"
log "node2's >> was applied on the owner: node1 sees it, and its store has it"

sh_on 2 'echo new > /shared/a' || fail "node 2: echo new > /shared/a failed"
expect_eq "cat /shared/a on node 1 after > on node 2" "$(on 1 cat /shared/a)" "new"
expect_eq "owner of /shared/a after >" "$(on 1 getfattr --absolute-names --only-values -n user.dsdfs.owner /shared/a)" \
  "1 node2"
expect_eq "node2's store after >" "$(cat "$DIR/node2/store/files/a" 2>&1)" "new"
[[ ! -e "$DIR/node1/store/files/a" ]] || fail "node1's store still has a after node2's >"
log "node2's > made a new file there (owner rank 1 on node2); node1 reads 'new'"

# bytes between nodes go over the nodes' eth0
src=$(on 3 sh -c 'head -c 4194304 /dev/urandom > /shared/big && sha256sum < /shared/big') ||
  fail "node 3: writing /shared/big failed"
rx_eth0=$(rx_bytes 4 eth0)
rx_lo=$(rx_bytes 4 lo)
sum=$(on 4 sh -c 'sha256sum < /shared/big') || fail "node 4: reading /shared/big failed"
expect_eq "sha256 of /shared/big on node 4" "$sum" "$src"
d_eth0=$(($(rx_bytes 4 eth0) - rx_eth0))
d_lo=$(($(rx_bytes 4 lo) - rx_lo))
((d_eth0 >= 4194304)) || fail "node 4 read 4 MiB from node 3 but its eth0 received only $d_eth0 bytes"
((d_lo < 1048576)) || fail "node 4's loopback received $d_lo bytes while it read from node 3"
for ((k = 1; k <= NODES; k++)); do
  expect_eq "ls /shared on node $k" "$(on "$k" ls /shared | tr '\n' ' ')" "a big "
done
log "a 4 MiB file from node3 reads back on node4 with the same sha256; node4's eth0 received $d_eth0 bytes, its lo $d_lo"

# --- stop, then down -----------------------------------------------------------------------------
t=$SECONDS
timeout -k 5 90 "$SIM" stop-dsdfs || fail "stop-dsdfs failed"
t_stop=$((SECONDS - t))
for ((k = 1; k <= NODES; k++)); do
  if m=$(on "$k" findmnt -n -o FSTYPE /shared); then fail "node $k: /shared is still mounted ($m)"; fi
  [[ ! -e "$DIR/node$k/store" ]] || fail "node $k's store $DIR/node$k/store is still there"
done
log "stop-dsdfs in ${t_stop} s: no node has a mount on /shared, every store removed"

if [[ "${DSDFS_SIM_TEST_KEEP:-0}" == 1 ]]; then
  log "PASS (cluster kept: DSDFS_SIM_DIR=$DIR $SIM down)"
  exit 0
fi
holders=$(cat "$DIR"/state/holder.* | cut -d' ' -f1)
t=$SECONDS
timeout -k 5 90 "$SIM" down || fail "cluster-sim.sh down failed"
up=0
t_down=$((SECONDS - t))
left=$(ip netns list | awk -v p="$DSDFS_SIM_PREFIX-" 'index($1, p) == 1 { print $1 }')
[[ -z "$left" ]] || fail "network namespaces left after down: $left"
! ip link show "$DSDFS_SIM_PREFIX-head" >/dev/null 2>&1 || fail "link $DSDFS_SIM_PREFIX-head left after down"
[[ ! -e "$DIR" ]] || fail "$DIR left after down"
for p in $holders; do
  # gone, a zombie not yet reaped by init, or a new process with that PID
  st=$(cat "/proc/$p/stat" 2>/dev/null || true)
  [[ -z "$st" || "${st##*) }" == Z* || "$st" != *"(sleep)"* ]] || fail "holder $p still running after down"
done
log "down in ${t_down} s: no namespace, link, holder or directory left"
log "PASS in $((SECONDS - t_start)) s (up ${t_up} s, start-dsdfs ${t_start_dsdfs} s, stop-dsdfs ${t_stop} s, down ${t_down} s)"
