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
