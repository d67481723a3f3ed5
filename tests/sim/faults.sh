#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# sim-faults: what the user guide promises when the network or a node misbehaves,
# on an emulated cluster of 4 nodes (scripts/cluster-sim.sh) with dsdfs at /shared
# (--timeout 2):
#   - a workload of ordinary tools (every node writes a 1 MiB file that the next node
#     reads back with the same sha256; 4 nodes append 100 records each with `>>` to one
#     log, every record exactly once; `ls /shared` the same on every node) stays correct
#     on a clean network, with 1 % of the packets each node sends dropped (nftables,
#     random), with every node's link limited to 100 Mbit/s (tc tbf), and with added
#     latency (below); the time of
#     each run is reported beside the clean one;
#   - a node whose store's disk is full (node3's store on a 24 MiB tmpfs): its writes
#     fail with ENOSPC, its earlier files keep their bytes (an append to one from another
#     node fails with ENOSPC and adds nothing), other nodes write on, and
#     once a file is removed (from another node) node3 writes again;
#   - a node whose daemon is frozen (SIGSTOP) for longer than the timeout: commands on
#     the survivors end within the bound (a frozen rank's files give EIO, the others'
#     files read), a directory change is made everywhere or nowhere, and after SIGCONT
#     the frozen node's file reads back with its bytes and new directories appear on
#     every node;
#   - a node cut off (its link down): nothing hangs; the others declare it dead after
#     10 timeouts of silence and go on (mkdir works again, its files are gone); the cut-off
#     node never changes the namespace alone, and stays out once the link is back.
# Every command is bounded by `timeout` (a command that hangs fails the test). Exit 0
# pass, 1 fail, 77 skip (no root, tools or namespaces; a failure with
# DSDFS_REQUIRE_ALL=1). DSDFS_SIM_TEST_KEEP=1 keeps the cluster up at the end.
#   - the same workload with round trips of 0.2 ms and 2 ms added between nodes (each node
#     holds the packets it sends for half of that: tests/sim/delay_line.cc through
#     iptables' NFQUEUE), and ping's round trip checked to be at least that.
# tc netem is not in this kernel (CONFIG_NET_SCH_NETEM unset): loss comes from nftables'
# random numgen instead, and latency from the delay line.
set -euo pipefail

T=sim-faults
SRC=${DSDFS_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SIM=$SRC/scripts/cluster-sim.sh
NODES=4
TIMEOUT_S=2
t_start=$SECONDS

# shellcheck source=../report.sh
. "$SRC/tests/report.sh"
# shellcheck source=lib.sh
. "$SRC/tests/sim/lib.sh"
sim_require mpirun sha256sum nft tc

sim_own_cluster tf 150 50
export DSDFS_SIM_NODES=$NODES
DIR=$DSDFS_SIM_DIR
NET=$DSDFS_SIM_NET
up=0
frozen=""

# node3's small disk, before the cluster goes down
sim_before_down() { timeout -k 5 30 "$SIM" exec 3 umount -l "$DIR/node3/store"; }
cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  set +e  # every step runs, whatever one of them returns
  [[ -n "$frozen" ]] && kill -CONT "$frozen" 2>/dev/null
  if ((up)); then
    rc=$(sim_end_cluster "$rc")
  fi
  exit "$rc"
}
sim_traps
# bounded LIMIT K SCRIPT: SCRIPT on node K; its status, 124 (a failure of the test)
# if it did not end within LIMIT seconds
bounded() {
  local limit=$1 k=$2 rc=0
  timeout -k 2 "$limit" "$SIM" exec "$k" sh -c "$3" >"$DIR/out" 2>"$DIR/err" || rc=$?
  ((rc != 124 && rc != 137)) || fail "node $k: '$3' did not end within $limit s (the timeout is $TIMEOUT_S s)"
  return "$rc"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# workload TAG: every node writes /shared/TAG.K, the next node reads it back; all
# nodes append to /shared/TAG.log; every node lists the same names. Prints seconds.
workload() {
  local tag=$1 k next t0 sum pids=()
  t0=$(now_ms)
  for ((k = 1; k <= NODES; k++)); do
    sh_on "$k" "head -c 1048576 /dev/urandom > /shared/$tag.$k && sha256sum < /shared/$tag.$k" \
      >"$DIR/sum.$k" || fail "$tag: node $k could not write /shared/$tag.$k"
  done
  for ((k = 1; k <= NODES; k++)); do
    next=$((k % NODES + 1))
    sum=$(sh_on "$next" "sha256sum < /shared/$tag.$k") || fail "$tag: node $next could not read /shared/$tag.$k"
    expect_eq "$tag: sha256 of /shared/$tag.$k on node $next" "$sum" "$(cat "$DIR/sum.$k")"
  done
  sh_on 1 ": > /shared/$tag.log" || fail "$tag: node 1 could not create /shared/$tag.log"
  for ((k = 1; k <= NODES; k++)); do
    timeout -k 5 60 "$SIM" exec "$k" sh -c \
      "i=0; while [ \$i -lt 100 ]; do i=\$((i+1)); echo \"node$k record \$i\" >> /shared/$tag.log || exit 1; done" &
    pids+=($!)
  done
  for k in "${!pids[@]}"; do
    wait "${pids[$k]}" || fail "$tag: the appends of node $((k + 1)) failed"
  done
  local n dups
  n=$(sh_on 3 "wc -l < /shared/$tag.log")
  dups=$(sh_on 3 "sort /shared/$tag.log | uniq -d | head -3")
  expect_eq "$tag: records in /shared/$tag.log" "$n" "$((NODES * 100))"
  expect_eq "$tag: records appended twice" "$dups" ""
  local first
  first=$(on 1 ls /shared | tr '\n' ' ')
  for ((k = 2; k <= NODES; k++)); do
    expect_eq "$tag: ls /shared on node $k" "$(on "$k" ls /shared | tr '\n' ' ')" "$first"
  done
  local ms=$(($(now_ms) - t0))
  printf '%d.%02d\n' $((ms / 1000)) $((ms % 1000 / 10))
}

log "cluster: $NODES nodes, prefix $DSDFS_SIM_PREFIX, subnet $NET.0/24, directory $DIR"
up=1
timeout -k 5 60 "$SIM" up || fail "cluster-sim.sh up failed"
# node3's store on a small disk of its own (a tmpfs in its mount namespace)
mkdir -p "$DIR/node3/store"
on 3 mount -t tmpfs -o size=24m,mode=0700 dsdfs-small-disk "$DIR/node3/store" ||
  fail "cannot mount a tmpfs for node3's store"
timeout -k 5 120 "$SIM" start-dsdfs -t 90 -- --timeout "$TIMEOUT_S" ${DSDFS_SIM_EXTRA_ARGS:-} || fail "start-dsdfs failed"
log "dsdfs at /shared on $NODES nodes (--timeout $TIMEOUT_S); node3's store on a 24 MiB disk"

# --- a lossy and a slow network ------------------------------------------------------------
t_clean=$(workload clean)
log "clean network: the workload is correct, in $t_clean s"
for ((k = 1; k <= NODES; k++)); do
  sim_loss_on "$k" || fail "node $k: nft rule for 1 % loss failed"
done
t_loss=$(workload loss)
dropped=0
for ((k = 1; k <= NODES; k++)); do
  d=$(sim_loss_off "$k") || fail "node $k: cannot remove the loss rule"
  dropped=$((dropped + d))
done
log "1 % of sent packets dropped: the workload is correct, in $t_loss s (clean: $t_clean s)"

for ((k = 1; k <= NODES; k++)); do
  sim_tbf_on "$k" 100mbit || fail "node $k: tc tbf failed"
done
t_slow=$(workload slow)
for ((k = 1; k <= NODES; k++)); do sim_tbf_off "$k" || fail "node $k: cannot remove tbf"; done
log "every link at 100 Mbit/s: the workload is correct, in $t_slow s (clean: $t_clean s)"

# added round trips of 0.2 ms and 2 ms: every node holds what it sends for half of it
t_delay=""
if sim_delay_available; then
  for us in 100 1000; do
    for ((k = 1; k <= NODES; k++)); do
      sim_delay_on "$k" "$us" || fail "node $k: the delay line did not start"
    done
    rtt=$(sim_rtt_ms 1 "$NET.2")
    awk -v r="$rtt" -v us="$us" 'BEGIN { exit !(r + 0 >= 2 * us / 1000) }' ||
      fail "a delay of $us us per node gave a round trip of '$rtt' ms from node1 to node2"
    t=$(workload "delay$us")
    for ((k = 1; k <= NODES; k++)); do
      sim_delay_off "$k" >"$DIR/delay-stats.$k" || fail "node $k: cannot remove the delay line"
    done
    log "round trip $rtt ms ($us us added on each node): the workload is correct, in $t s (clean: $t_clean s); node1's delay line: $(cat "$DIR/delay-stats.1")"
    t_delay+="${t_delay:+, }rtt $rtt ms $t s"
  done
elif [[ "${DSDFS_REQUIRE_ALL:-0}" == 1 ]]; then
  fail "no delay line (dsdfs-sim-delay-line needs libnetfilter-queue-dev, iptables and ping: scripts/install-deps.sh)"
else
  log "added latency not tested: no delay line here (libnetfilter-queue-dev, iptables, ping)"
fi

# --- a full disk --------------------------------------------------------------------------------
sum_keep=$(sh_on 3 'head -c 1048576 /dev/urandom > /shared/keep.3 && sha256sum < /shared/keep.3') ||
  fail "node 3: cannot write /shared/keep.3"
rc=0
bounded 60 3 'head -c 64M /dev/zero > /shared/fill.3' || rc=$?
((rc != 0)) || fail "node 3 wrote 64 MiB to a 24 MiB store"
grep -q "No space left on device" "$DIR/err" || fail "node 3's full disk did not give ENOSPC: $(cat "$DIR/err")"
expect_eq "sha256 of node3's /shared/keep.3 on node 1 (disk full)" "$(sh_on 1 'sha256sum < /shared/keep.3')" "$sum_keep"
# `>>` from another node to a file on the full store: ENOSPC, and no byte of it anywhere
rc=0
bounded 30 1 '/bin/echo more >> /shared/keep.3' || rc=$?
((rc != 0)) || fail "node 1 appended to node3's file on a full store"
grep -q "No space left on device" "$DIR/err" || fail "node 1's append to a full store did not give ENOSPC: $(cat "$DIR/err")"
expect_eq "sha256 of /shared/keep.3 on node 3 after a refused append" "$(sh_on 3 'sha256sum < /shared/keep.3')" "$sum_keep"
expect_eq "size of /shared/keep.3 on node 2 after a refused append" "$(on 2 stat -c %s /shared/keep.3)" 1048576
sh_on 1 'head -c 8M /dev/zero > /shared/big.1' || fail "node 1 could not write while node 3's disk was full"
on 2 rm /shared/fill.3 || fail "node 2: rm /shared/fill.3 (node3's file) failed"
sh_on 3 'head -c 8M /dev/zero > /shared/again.3' || fail "node 3 could not write after the file was removed"
on 3 rm /shared/again.3 /shared/big.1 || fail "node 3: rm failed"
log "node3's store full: ENOSPC there and for >> from node1, its files intact, node1 writes on; after rm from node2, node3 writes again"

# --- a frozen daemon ---------------------------------------------------------------------------------
sum_frozen=$(sh_on 4 'head -c 65536 /dev/urandom > /shared/frozen.4 && sha256sum < /shared/frozen.4') ||
  fail "node 4: cannot write /shared/frozen.4"
sum_alive=$(sh_on 2 'head -c 65536 /dev/urandom > /shared/alive.2 && sha256sum < /shared/alive.2') ||
  fail "node 2: cannot write /shared/alive.2"
frozen=$(sim_daemon_pid 4) || fail "cannot find node4's dsdfs-launch"
kill -STOP "$frozen"
t0=$SECONDS
limit=$((6 * TIMEOUT_S + 5))
bounded "$limit" 1 'sha256sum < /shared/alive.2' || fail "node 1: node2's file unreadable while node4 is frozen: $(cat "$DIR/err")"
expect_eq "sha256 of node2's file on node 1 (node4 frozen)" "$(cat "$DIR/out")" "$sum_alive"
rc=0
bounded "$limit" 1 'cat /shared/frozen.4 > /dev/null' || rc=$?
((rc != 0)) || fail "node 1 read node4's file while node4's daemon was frozen"
err_frozen=$(cat "$DIR/err")
rc=0
bounded "$limit" 1 'mkdir /shared/during' || rc=$?
mkdir_rc=$rc
rc=0
bounded "$limit" 2 'ls /shared > /dev/null' || rc=$?
ls_rc=$rc
t_frozen=$((SECONDS - t0))
kill -CONT "$frozen"
frozen=""
log "node4 frozen for $t_frozen s: node2's file read on node1, node4's file failed ($err_frozen), mkdir status $mkdir_rc, ls status $ls_rc; nothing hung"
expect_eq "sha256 of node4's file on node 1 after SIGCONT" "$(sh_on 1 'sha256sum < /shared/frozen.4')" "$sum_frozen"
seen=""
for ((k = 1; k <= NODES; k++)); do
  if on "$k" test -d /shared/during; then seen+="$k"; fi
done
[[ -z "$seen" || "$seen" == 1234 ]] || fail "mkdir during the freeze is on nodes $seen only (split)"
on 3 mkdir /shared/after || fail "node 3: mkdir after SIGCONT failed"
for ((k = 1; k <= NODES; k++)); do
  on "$k" test -d /shared/after || fail "node $k: /shared/after missing after SIGCONT"
done
log "after SIGCONT: node4's file reads back with its bytes; /shared/during is on ${seen:-no} node(s) of 1234; a new mkdir is on every node"

# --- a node cut off -----------------------------------------------------------------------
# node4's link goes down. After 10 timeouts of silence (20 s here) the others declare it
# dead and tell each other (RankDown); node4 finds them silent too and, with no more than
# half of the job left, fences itself. The link comes back: node4 stays out.
sh_on 4 'echo "node4 before the cut" > /shared/cut.4' || fail "node 4: cannot write /shared/cut.4"
on 4 ip link set eth0 down || fail "cannot take node 4's link down"
t0=$SECONDS
recovered=0
i=0
while ((SECONDS - t0 < 90)); do
  i=$((i + 1))
  rc=0
  bounded "$limit" 4 "mkdir /shared/alone$i" || rc=$?
  ((rc != 0)) || fail "node 4, cut off, made /shared/alone$i (a split namespace)"
  rc=0
  bounded "$limit" 1 "mkdir /shared/cut$i" || rc=$?
  if ((rc == 0)); then recovered=$((SECONDS - t0)); break; fi
done
((recovered > 0)) || fail "the nodes left did not get directory changes back within 90 s of the cut"
bounded "$limit" 2 'cat /shared/alive.2' >/dev/null || fail "node 2's file unreadable on node 2 after the cut"
expect_eq "sha256 of node2's file on node 3 after the cut" "$(sh_on 3 'sha256sum < /shared/alive.2')" "$sum_alive"
rc=0
bounded "$limit" 1 'cat /shared/cut.4' || rc=$?
((rc != 0)) || fail "node 1 read node 4's file although node 4 is out of the job"
log "node4 cut off: node1's mkdir works again after $recovered s (10 timeouts of silence); node4's file is gone for the others; node4 never changed the namespace alone"
on 4 ip link set eth0 up || fail "cannot bring node 4's link back"
rc=0
bounded "$limit" 4 'mkdir /shared/after-heal' || rc=$?
((rc != 0)) || fail "node 4 made a directory after the link came back (it must stay fenced)"
bounded "$limit" 3 'mkdir /shared/healed' || fail "node 3: mkdir after the link came back failed: $(cat "$DIR/err")"
first=$(on 1 ls /shared | tr '\n' ' ')
for ((k = 2; k <= 3; k++)); do
  expect_eq "ls /shared on node $k after the cut" "$(on "$k" ls /shared | tr '\n' ' ')" "$first"
done
[[ "$first" != *alone* && "$first" != *after-heal* && "$first" != *cut.4* ]] ||
  fail "node 4's names reached the others after the cut: $first"
grep -q "rank 3 sees only" "$DIR/dsdfs.log" && fenced_msg=yes || fenced_msg=no
log "link back: node4 stays out (mkdir fails there; fenced message in its log: $fenced_msg); nodes 1-3 agree on /shared"

timeout -k 5 90 "$SIM" stop-dsdfs || fail "stop-dsdfs failed"
for ((k = 1; k <= NODES; k++)); do
  if m=$(on "$k" findmnt -n -o FSTYPE /shared); then fail "node $k: /shared is still mounted ($m)"; fi
done
on 3 umount "$DIR/node3/store" || fail "cannot unmount node3's small disk"
if [[ "${DSDFS_SIM_TEST_KEEP:-0}" != 1 ]]; then
  timeout -k 5 90 "$SIM" down || fail "cluster-sim.sh down failed"
  up=0
fi
log "PASS in $((SECONDS - t_start)) s (workload: clean $t_clean s, 1 % loss $t_loss s ($dropped packets dropped), 100 Mbit/s $t_slow s${t_delay:+, $t_delay}; frozen node $t_frozen s; cut-off node out after $recovered s)"
