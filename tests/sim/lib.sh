# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# lib.sh: shared by the tests of the sim suite (after tests/report.sh).
#   sim_require TOOL...      skip unless root, the tools, /dev/fuse, and
#                            network/mount namespaces with veths and bridges
#                            work here; sets and exports DSDFS_LAUNCH
#   sim_own_cluster TAG BASE COUNT
#                            names a cluster of the test's own: prefix
#                            TAG<hex pid>, the first free subnet 10.77.X
#                            with X in BASE..BASE+COUNT-1, and its directory
#                            (exports DSDFS_SIM_PREFIX, DSDFS_SIM_NET,
#                            DSDFS_SIM_DIR), so a developer's cluster can stay up
#   sim_traps                runs the test's `cleanup` on exit, and exits (so
#                            cleans up) on SIGTERM (meson's timeout) and SIGINT
#   on K CMD...              CMD on node K of $SIM's cluster, bounded by 30 s;
#                            its stdout is the output
#   sh_on K SCRIPT           a shell command line on node K, the same way
#   expect_eq WHAT GOT WANT  fails unless GOT is WANT
#   sim_end_cluster RC       the end of a test's cleanup: on failure (RC != 0)
#                            the end of the job's log; then the cluster kept
#                            (DSDFS_SIM_TEST_KEEP=1) or dsdfs stopped, the
#                            test's `sim_before_down` run if it defines one,
#                            and the cluster taken down. Prints the exit
#                            status to use (1 if down failed)
#   sim_daemon_pid K         node K's dsdfs-launch (by its executable, in the
#                            node's network namespace)
#   sim_loss_on K / sim_loss_off K
#                            drop 1 % of the packets node K sends (nftables'
#                            random numgen); off prints how many were dropped
#   sim_tbf_on K RATE / sim_tbf_off K
#                            node K's link at RATE (tc tbf, e.g. 100mbit)
#   sim_delay_available      whether the delay line can run here (built, iptables)
#   sim_delay_on K US / sim_delay_off K
#                            every packet node K sends out of eth0 waits US
#                            microseconds (the delay line, delay_line.cc, through
#                            iptables' NFQUEUE: this kernel has no sch_netem); on
#                            every node, a round trip of 2 US between nodes. off
#                            prints the delay line's counts; sim_end_cluster stops
#                            any left on (by the pids it recorded)
#   sim_rtt_ms K ADDR        the average round trip from node K to ADDR (10 pings), ms

sim_require() {
  (($(id -u) == 0)) || skip "needs root (network and mount namespaces, veths, mounts)"
  local t
  for t in ip nsenter unshare setsid flock timeout "$@"; do
    command -v "$t" >/dev/null || skip "$t is not on PATH (scripts/install-deps.sh)"
  done
  [[ -c /dev/fuse ]] || skip "/dev/fuse is missing"
  # namespaces, a veth pair and a bridge, tried in a throwaway namespace
  unshare --net --mount sh -c 'ip link add t0 type veth peer name t1 && ip link add b0 type bridge' \
    >/dev/null 2>&1 || skip "cannot make network namespaces, veth pairs and bridges here"
  local launch=${DSDFS_LAUNCH:-$SRC/build-test/launcher/dsdfs-launch}
  [[ -x "$launch" ]] || fail "DSDFS_LAUNCH ('$launch') is not an executable; run through meson test"
  export DSDFS_LAUNCH=$launch
}

sim_own_cluster() {
  local tag=$1 base=$2 count=$3 i n
  export DSDFS_SIM_PREFIX
  DSDFS_SIM_PREFIX=$tag$(printf %x $$)
  DSDFS_SIM_PREFIX=${DSDFS_SIM_PREFIX:0:8}
  export DSDFS_SIM_NET=""
  for ((i = 0; i < count; i++)); do
    n="10.77.$((base + ($$ + i) % count))"
    if ! ip -4 -o addr show | awk -v net="$n." '{ if (index($4, net) == 1) found = 1 } END { exit !found }'; then
      DSDFS_SIM_NET=$n
      break
    fi
  done
  [[ -n "$DSDFS_SIM_NET" ]] || fail "no free subnet in 10.77.$base-$((base + count - 1))"
  export DSDFS_SIM_DIR=/tmp/dsdfs-simtest-$DSDFS_SIM_PREFIX
}

sim_traps() {
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
}

on() {
  local k=$1
  shift
  timeout -k 5 30 "$SIM" exec "$k" "$@"
}
sh_on() { on "$1" sh -c "$2"; }
expect_eq() {
  [[ "$2" == "$3" ]] || fail "$1: expected '$3', got '$2'"
}

sim_daemon_pid() {
  local p exe
  exe=$(readlink -f "$DSDFS_LAUNCH")
  for p in $(ip netns pids "$DSDFS_SIM_PREFIX-node$1"); do
    [[ "$(readlink "/proc/$p/exe" 2>/dev/null)" == "$exe" ]] && { echo "$p"; return 0; }
  done
  return 1
}

sim_loss_on() {
  on "$1" nft -f - <<'EOF'
table inet dsdfs_loss {
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "eth0" numgen random mod 100 < 1 counter drop
  }
}
EOF
}
sim_loss_off() {
  local d
  d=$(on "$1" nft list chain inet dsdfs_loss out | grep -o 'packets [0-9]*' | awk '{ s += $2 } END { print s + 0 }' || true)
  on "$1" nft delete table inet dsdfs_loss || return 1
  echo "${d:-0}"
}
sim_tbf_on() { on "$1" tc qdisc add dev eth0 root tbf rate "$2" burst 64kb latency 50ms; }
sim_tbf_off() { on "$1" tc qdisc del dev eth0 root; }

sim_delay_available() {
  [[ -x "${DSDFS_SIM_DELAY_LINE:-}" ]] && command -v iptables >/dev/null && command -v ping >/dev/null
}
# The queue number is the same on every node: each node has its own network namespace.
SIM_DELAY_QUEUE=7
sim_delay_on() {
  local k=$1 us=$2 out="$DSDFS_SIM_DIR/delay-line.$1" pid="" i
  "$SIM" exec "$k" "$DSDFS_SIM_DELAY_LINE" --queue "$SIM_DELAY_QUEUE" --delay-us "$us" >"$out.out" 2>&1 </dev/null &
  echo "$!" >"$out.pid"
  for ((i = 0; i < 100; i++)); do
    pid=$(sed -n 's/^ready pid=\([0-9]*\) .*/\1/p' "$out.out")
    [[ -n "$pid" ]] && break
    kill -0 "$(cat "$out.pid")" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n "$pid" ]] || { cat "$out.out" >&2; return 1; }
  on "$k" iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num "$SIM_DELAY_QUEUE"
}
sim_delay_off() {
  local k=$1 out="$DSDFS_SIM_DIR/delay-line.$1" pid
  on "$k" iptables -D OUTPUT -o eth0 -j NFQUEUE --queue-num "$SIM_DELAY_QUEUE" || return 1
  pid=$(cat "$out.pid")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$out.pid"
  grep '^delay-line:' "$out.out" || true
}
sim_rtt_ms() {
  on "$1" ping -n -q -c 10 -i 0.05 "$2" | sed -n 's|^rtt min/avg/max/mdev = \([0-9.]*\)/\([0-9.]*\)/.*|\2|p'
}

sim_end_cluster() {
  local rc=$1 dir=$DSDFS_SIM_DIR f
  for f in "$dir"/delay-line.*.pid; do
    [[ -e "$f" ]] && { kill -TERM "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
  done
  if ((rc != 0)) && [[ -r "$dir/dsdfs.log" ]]; then
    echo "----- $dir/dsdfs.log (last 60 lines) -----" >&2
    tail -n 60 "$dir/dsdfs.log" >&2
    echo "-----" >&2
  fi
  if [[ "${DSDFS_SIM_TEST_KEEP:-0}" == 1 ]]; then
    log "keeping the cluster (DSDFS_SIM_TEST_KEEP=1): DSDFS_SIM_DIR=$dir $SIM down" >&2
  else
    timeout -k 5 90 "$SIM" stop-dsdfs >/dev/null 2>&1 || true
    if declare -F sim_before_down >/dev/null; then sim_before_down >/dev/null 2>&1 || true; fi
    timeout -k 5 90 "$SIM" down >&2 || rc=1
  fi
  echo "$rc"
}
