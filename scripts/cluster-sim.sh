#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# cluster-sim.sh: a small cluster on this one machine. Every emulated node has
# its own network namespace (address NET.K on a private bridge), its own mount
# namespace (where dsdfs mounts at the literal path /shared) and its own host
# name (nodeK). Open MPI's mpirun, run from this machine's own namespace,
# starts one process per node through a launch agent that enters the node.
# docs/cluster-sim.md explains it; in short, as root:
#
#   scripts/cluster-sim.sh up                  # 4 nodes (--nodes N)
#   scripts/cluster-sim.sh start-dsdfs         # mpirun: one dsdfs per node at /shared
#   scripts/cluster-sim.sh exec 1 sh -c 'echo hi > /shared/a'
#   scripts/cluster-sim.sh exec 2 cat /shared/a
#   scripts/cluster-sim.sh exec 3              # a shell on node 3
#   scripts/cluster-sim.sh mpirun hostname     # any MPI program, one rank per node
#   scripts/cluster-sim.sh stop-dsdfs          # SIGTERM to mpirun; no /shared mount left
#   scripts/cluster-sim.sh down                # nothing left behind
#
# Commands
#   up                 make the nodes (fails if a cluster with this --dir or
#                      --prefix is up; a failed up removes what it made)
#   down [--force]     stop the cluster's Slurm (scripts/cluster-sim-slurm.sh),
#                      the dsdfs job and every process in the nodes (by PID),
#                      remove the namespaces, veths, bridge, /shared (if a
#                      cluster made it and no cluster uses it any more) and DIR.
#                      Idempotent; works after a partial or failed up. Touches
#                      only namespaces and links that carry this cluster's token
#                      (their link alias); --force: any of this prefix, also
#                      without a state directory
#   status             nodes, addresses, holders, /shared mounts, the dsdfs job
#   exec NODE [CMD...] run CMD on node NODE (K or nodeK) in the caller's
#                      directory (or / if the node has no such directory), with
#                      the caller's environment and stdio; no CMD: a shell.
#                      Exits with CMD's status
#   start-dsdfs [-t S] [-- DSDFS-LAUNCH-OPTIONS...]
#                      mpirun -np N --map-by ppr:1:node dsdfs-launch /shared on
#                      the nodes, in the background (log: DIR/dsdfs.log), and
#                      wait up to S seconds (default 60) until every node has it
#                      mounted. Store: DIR/nodeK/store (--store DIR/%h/store)
#   stop-dsdfs         SIGTERM to that mpirun, wait for it, and check that no
#                      node still has a mount on /shared and no dsdfs-launch or
#                      orted is left in a node (exit 1 if one was)
#   mpirun [ARGS...]   mpirun with the cluster's hostfile, launch agent and
#                      network settings, in the foreground (one slot per node)
#   env                print the exports that make a plain `mpirun` use the
#                      nodes: eval "$(scripts/cluster-sim.sh env)"
#   agent HOST CMD...  Open MPI's launch agent (plm_rsh_agent): runs the
#                      command line CMD with /bin/sh inside node HOST, as ssh
#                      would. Not for direct use
#
# Options (before the command; for up, down and status also after it) and environment
#   --nodes N    DSDFS_SIM_NODES    nodes made by up               [4; 1-200]
#   --dir DIR    DSDFS_SIM_DIR      state and node scratch         [/tmp/dsdfs-sim]
#   --prefix P   DSDFS_SIM_PREFIX   names of namespaces and links  [dsim]
#   --net A.B.C  DSDFS_SIM_NET      the nodes' /24: node K is A.B.C.K,
#                                   this machine's end A.B.C.254   [10.77.0]
#                DSDFS_SIM_UCX_TLS  UCX_TLS for dsdfs in the nodes [tcp];
#                                   'default' leaves UCX_TLS unset
#                DSDFS_LAUNCH       dsdfs-launch for start-dsdfs
#                                   [build-test/, else build/launcher/dsdfs-launch]
# Everything after `up` reads --nodes, --prefix and --net from DIR/state, so
# only --dir (or DSDFS_SIM_DIR) must be repeated for a cluster not in the default
# directory.
#
# Layout (K = 1..N; P = prefix)
#   network namespace P-nodeK: lo, eth0 = NET.K/24 (a veth), no default route:
#     a node reaches the other nodes and this machine's NET.254, nothing else
#   network namespace P-switch: bridge br0 with the nodes' peers nK and `head`,
#     whose peer P-head (NET.254/24) is the one link in this machine's namespace
#   mount namespace of node K (private): DIR/hosts over /etc/hosts (localhost,
#     node1..N, head), the sysfs of its own network namespace on /sys; the rest
#     as on this machine, /tmp too. /shared is a plain, empty directory of this
#     machine (dsdfs-launch refuses a mount point that is itself a mount); each
#     node's dsdfs mounts on it in the node's own mount namespace only
#   UTS namespace of node K: host name nodeK
#   the namespaces live as long as a holder process (`sleep infinity`) whose
#     PID and start time are in DIR/state/holder.K; processes run "on node K"
#     join it with nsenter
#   DIR/nodeK/store: node K's dsdfs store (start-dsdfs)
#
# Exit: 0 success, 1 failure (with a message), 2 usage. Needs root, iproute2,
# util-linux (unshare, nsenter, setsid, flock), attr (setfattr, getfattr) and, for
# start-dsdfs and mpirun, Open MPI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
repo=$(cd "$here/.." && pwd)

NODES=${DSDFS_SIM_NODES:-4}
DIR=${DSDFS_SIM_DIR:-/tmp/dsdfs-sim}
PREFIX=${DSDFS_SIM_PREFIX:-dsim}
NET=${DSDFS_SIM_NET:-10.77.0}

say() { echo "cluster-sim: $*" >&2; }
die() {
  echo "cluster-sim: error: $*" >&2
  exit 1
}
usage() {
  sed -n '/^# cluster-sim.sh:/,/^set -euo/p' "$self" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# --- options -----------------------------------------------------------------------
# parse_opts ARGS...: the options above (before the command; after it too for up,
# down and status); the other words are left in `args`.
FORCE=0
args=()
notours=()
parse_opts() {
  while (($#)); do
    case "$1" in
      --nodes) (($# >= 2)) || usage; NODES=$2; shift 2 ;;
      --nodes=*) NODES=${1#*=}; shift ;;
      --dir) (($# >= 2)) || usage; DIR=$2; shift 2 ;;
      --dir=*) DIR=${1#*=}; shift ;;
      --prefix) (($# >= 2)) || usage; PREFIX=$2; shift 2 ;;
      --prefix=*) PREFIX=${1#*=}; shift ;;
      --net) (($# >= 2)) || usage; NET=$2; shift 2 ;;
      --net=*) NET=${1#*=}; shift ;;
      --force) FORCE=1; shift ;;
      -h | --help | help) usage ;;
      -*) echo "cluster-sim: unknown option $1" >&2; usage ;;
      *) args+=("$1"); shift ;;
    esac
  done
}
while (($#)) && [[ "$1" == -* ]]; do
  case "$1" in
    --nodes | --dir | --prefix | --net) (($# >= 2)) || usage; parse_opts "$1" "$2"; shift 2 ;;
    *) parse_opts "$1"; shift ;;
  esac
done
(($#)) || usage
cmd=$1
shift
case "$cmd" in
  up | down | status)
    parse_opts "$@"
    ((${#args[@]} == 0)) || { echo "cluster-sim: $cmd takes no argument '${args[0]}'" >&2; usage; }
    ;;
esac

[[ "$DIR" == /* ]] || DIR="$PWD/$DIR"
DIR=${DIR%/}
STATE=$DIR/state
MARK=$DIR/.dsdfs-cluster-sim

check_config() {
  [[ "$NODES" =~ ^[0-9]+$ ]] && ((NODES >= 1 && NODES <= 200)) ||
    die "--nodes must be a number from 1 to 200, not '$NODES'"
  # names: P-switch (P-head on this machine) must fit in 15 characters
  [[ "$PREFIX" =~ ^[a-z][a-z0-9]{0,7}$ ]] ||
    die "--prefix must be 1-8 lower-case letters or digits, starting with a letter, not '$PREFIX'"
  [[ "$NET" =~ ^(10|172|192)\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
    die "--net must be the first three numbers of a private /24 (e.g. 10.77.0), not '$NET'"
  [[ "$DIR" != *[[:space:]]* && "$DIR" != "/" ]] ||
    die "--dir must be a directory path without spaces, not '$DIR'"
  [[ "$self" != *[[:space:]]* ]] ||
    die "this script's path has a space ($self); Open MPI's launch agent cannot be named by such a path"
}

# The cluster that `up` made: its configuration is in DIR/state/config.
load_state() {
  [[ -r "$STATE/config" ]] || return 1
  local key val
  while IFS='=' read -r key val; do
    case "$key" in
      NODES) NODES=$val ;;
      PREFIX) PREFIX=$val ;;
      NET) NET=$val ;;
      TOKEN) TOKEN=$val ;;
    esac
  done <"$STATE/config"
  check_config
}
need_up() {
  load_state || die "no simulated cluster in $DIR (run: scripts/cluster-sim.sh up)"
}
need_root() {
  (($(id -u) == 0)) || die "must run as root (namespaces, veths, mounts)"
}
need_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || die "$t is not on PATH (Debian: iproute2, util-linux, openmpi-bin; scripts/install-deps.sh)"
  done
}

# --- what is ours ------------------------------------------------------------------
# up writes a token (this directory and the time) into the config and sets it as the
# alias of the links it makes (br0 in P-switch, P-head, eth0 in every P-nodeK).
# Namespaces and links are only touched when they carry this cluster's token, so a
# stale state directory cannot take down another cluster that uses the same names;
# `down --force` (and a failed up, cleaning what it made) skip the check.
TOKEN=""
link_alias() {
  # link_alias NS DEV ("" for this machine's namespace)
  local nsopt=()
  [[ -z "$1" ]] || nsopt=(-n "$1")
  ip "${nsopt[@]}" link show dev "$2" 2>/dev/null | awk '$1 == "alias" { sub(/^[ \t]*alias /, ""); print; exit }'
}
ours() {
  ((FORCE)) || [[ -n "$TOKEN" && "$(link_alias "$1" "$2")" == "$TOKEN" ]]
}
node_ns_ours() { [[ -e "/run/netns/$PREFIX-node$1" ]] && ours "$PREFIX-node$1" eth0; }

# --- processes, by PID and start time ---------------------------------------------------
# shellcheck source=pids.sh
. "$(dirname "${BASH_SOURCE[0]}")/pids.sh"
# record_pid PID: "PID START"
record_pid() { echo "$1 $(starttime "$1")"; }
# wait_gone "PID START" SECONDS: 0 once it has exited.
wait_gone() {
  local rec=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$rec" || return 0
    sleep 0.1
  done
  ! alive "$rec"
}
holder() { cat "$STATE/holder.$1" 2>/dev/null || true; }
holder_pid() {
  local rec
  rec=$(holder "$1")
  alive "$rec" || return 1
  echo "${rec%% *}"
}

# ns_procs K: PIDs of processes in node K's network or mount namespace, other than
# its holder and this script.
ns_procs() {
  local k=$1 netid="-" mntid hold
  if node_ns_ours "$k"; then
    netid="net:[$(stat -L -c %i "/run/netns/$PREFIX-node$k" 2>/dev/null || true)]"
  fi
  hold=$(holder "$k")
  # the mount namespace only while its holder lives: the number of a namespace that
  # ended is reused (a stale state directory must not name another cluster's node)
  mntid=""
  if alive "$hold"; then mntid=$(cat "$STATE/mntns.$k" 2>/dev/null || true); fi
  # (find fails for processes that end meanwhile)
  { find /proc/[0-9]*/ns -maxdepth 1 \( -name net -o -name mnt \) -printf '%p %l\n' 2>/dev/null || true; } |
    awk -v net="$netid" -v mnt="${mntid:--}" -v skip=" $$ $BASHPID ${hold%% *} " '
      { split($1, f, "/"); pid = f[3] }
      ($2 == net || $2 == mnt) && index(skip, " " pid " ") == 0 && !(pid in seen) { seen[pid]; print pid }'
}
describe() {
  local c
  c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | cut -c1-100 || true)
  echo "$1 (${c% })"
}

# shared_mounts K: file-system types mounted at /shared in node K, top last.
shared_mounts() {
  local pid
  pid=$(holder_pid "$1") || return 0
  awk '$5 == "/shared" { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); break } }' \
    "/proc/$pid/mountinfo" 2>/dev/null || true
}
# fuse_at_shared K: the FUSE mounts at /shared in node K ("TYPE MAJ:MIN" each).
fuse_at_shared() {
  local pid
  pid=$(holder_pid "$1") || return 0
  awk '$5 == "/shared" { for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) ~ /^fuse/) print $(i + 1), $3; break } }' \
    "/proc/$pid/mountinfo" 2>/dev/null || true
}

node_index() {
  local n=$1
  n=${n#node}
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= NODES)) ||
    die "no node '$1' (nodes are 1..$NODES or node1..node$NODES)"
  echo "$((10#$n))"
}

# --- up ----------------------------------------------------------------------------
# The holder's first steps, inside the new mount and UTS namespaces ($0 = node name).
# `ip netns exec` has already mounted the sysfs of the node's network namespace on /sys.
# It sets the host name, drops this namespace's copies of other jobs' FUSE mounts and
# of named network namespaces (a copy would keep them alive), binds the cluster's
# hosts file over /etc/hosts, and becomes `sleep infinity` in /shared.
# shellcheck disable=SC2016
holder_init='set -euo pipefail
name=$0 dir=$1
# the holder stays in /shared: a sign for other clusters that this one uses it
cd /shared
echo "$name" >/proc/sys/kernel/hostname
awk '\''{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) ~ /^(fuse|fuse\..*|fuseblk|nsfs)$/) print $5; break } }'\'' \
  /proc/self/mountinfo | sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
mount --bind "$dir/hosts" /etc/hosts
exec sleep infinity'

up() {
  need_root
  check_config
  need_tools ip nsenter unshare setsid awk stat
  [[ ! -e "$STATE" ]] || die "a simulated cluster is already up in $DIR (scripts/cluster-sim.sh --dir $DIR down)"
  # down removes DIR: it must be new, empty or a leftover of this script
  if [[ -e "$DIR" && ! -e "$MARK" ]]; then
    [[ -d "$DIR" && -z "$(ls -A "$DIR")" ]] ||
      die "$DIR exists and is not empty; choose a new directory with --dir (down removes it)"
  fi
  local ns k
  for ns in "$PREFIX-switch" $(for ((k = 1; k <= NODES; k++)); do echo "$PREFIX-node$k"; done); do
    [[ ! -e "/run/netns/$ns" ]] ||
      die "network namespace $ns exists already (an earlier cluster with prefix '$PREFIX'?); remove it with: scripts/cluster-sim.sh --prefix $PREFIX down"
  done
  ! ip link show "$PREFIX-head" >/dev/null 2>&1 ||
    die "link $PREFIX-head exists already; remove it with: scripts/cluster-sim.sh --prefix $PREFIX down"
  if ip -4 -o addr show | awk -v net="$NET." '{ if (index($4, net) == 1) found = 1 } END { exit !found }'; then
    die "this machine already has an address in $NET.0/24; choose another subnet with --net"
  fi
  [[ -d /shared || ! -e /shared ]] || die "/shared exists and is not a directory"
  need_tools flock setfattr getfattr
  # a second check that unshare works here, with a clear message
  unshare --net --mount true 2>/dev/null ||
    die "cannot make network and mount namespaces here (unshare --net --mount fails)"

  mkdir -p "$STATE"
  touch "$MARK"
  TOKEN="cluster-sim $DIR $(date +%s.%N)"
  printf 'NODES=%s\nPREFIX=%s\nNET=%s\nTOKEN=%s\n' "$NODES" "$PREFIX" "$NET" "$TOKEN" >"$STATE/config"
  up_ok=0
  # everything of this prefix was made by this up (it checked that none existed)
  trap 'if ((up_ok == 0)); then say "up failed; removing what it made"; unlock_shared; FORCE=1; down_all || true; fi' EXIT
  local t0=$SECONDS

  # /shared: a plain directory of this machine (dsdfs-launch refuses a mount point
  # that is itself a mount), on which each node's dsdfs mounts in its own namespace.
  # Held under a lock until this cluster's holders sit in it (see remove_shared).
  lock_shared
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    echo "$NET.254 head"
    for ((k = 1; k <= NODES; k++)); do echo "$NET.$k node$k"; done
  } >"$DIR/hosts"
  for ((k = 1; k <= NODES; k++)); do echo "node$k slots=1"; done >"$DIR/hostfile"

  # the switch, and this machine's end of it
  local sw="$PREFIX-switch"
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 alias "$TOKEN"
  ip -n "$sw" link set br0 up
  ip link add "$PREFIX-head" type veth peer name head netns "$sw"
  ip link set "$PREFIX-head" alias "$TOKEN"
  ip -n "$sw" link set head master br0
  ip -n "$sw" link set head up
  ip addr add "$NET.254/24" dev "$PREFIX-head"
  ip link set "$PREFIX-head" up

  local k ns pid i out
  for ((k = 1; k <= NODES; k++)); do
    ns="$PREFIX-node$k"
    mkdir -p "$DIR/node$k"
    ip netns add "$ns"
    # the holder: ip netns exec (sysfs of the netns on /sys) -> unshare (mount, UTS)
    # -> bash (holder_init) -> sleep; every step execs, so $! is the holder's PID
    (
      close_extra_fds
      exec setsid ip netns exec "$ns" unshare --mount --uts --propagation private \
        bash -c "$holder_init" "node$k" "$DIR"
    ) </dev/null >"$DIR/node$k/holder.log" 2>&1 &
    pid=$!
    disown "$pid"
    for ((i = 0; i < 100; i++)); do
      [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == sleep ]] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != sleep ]]; then
      kill -KILL "$pid" 2>/dev/null || true
      die "node$k's namespaces could not be set up: $(cat "$DIR/node$k/holder.log")"
    fi
    record_pid "$pid" >"$STATE/holder.$k"
    readlink "/proc/$pid/ns/mnt" >"$STATE/mntns.$k"

    ip -n "$sw" link add "n$k" type veth peer name eth0 netns "$ns"
    ip -n "$ns" link set eth0 alias "$TOKEN"
    ip -n "$sw" link set "n$k" master br0
    ip -n "$sw" link set "n$k" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$NET.$k/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  unlock_shared

  # every node reaches every other one (and this machine) before up returns
  for ((k = 1; k <= NODES; k++)); do
    pid=$(holder_pid "$k") || die "node$k's holder died"
    for ((i = 0; i < 50; i++)); do
      # "connection refused" is an answer from NET.254: the path works
      out=$(nsenter --target "$pid" --net -- bash -c "exec 3<>/dev/tcp/$NET.254/1" 2>&1 || true)
      [[ "$out" != *[Rr]efused* ]] || break
      sleep 0.1
    done
    ((i < 50)) || die "node$k cannot reach $NET.254 over its eth0"
  done
  # shellcheck disable=SC2034 # read by the EXIT trap
  up_ok=1
  trap - EXIT
  say "$NODES nodes up in $((SECONDS - t0)) s: node1..node$NODES = $NET.1..$NET.$NODES, this machine $NET.254 ($PREFIX-head); state in $DIR"
}

# --- down --------------------------------------------------------------------------
# kill_pids SIGNAL PID...: by PID, ignoring ones that are gone.
kill_pids() {
  local sig=$1 p
  shift
  for p in "$@"; do kill "-$sig" "$p" 2>/dev/null || true; done
}

# stop_node_procs K GRACE: every process in node K's namespaces but its holder:
# SIGTERM, GRACE seconds, abort its FUSE connections, SIGKILL. Prints what it killed.
stop_node_procs() {
  local k=$1 grace=$2 pids i left
  mapfile -t pids < <(ns_procs "$k")
  ((${#pids[@]})) || return 0
  for p in "${pids[@]}"; do say "node$k: stopping $(describe "$p")"; done
  kill_pids TERM "${pids[@]}"
  for ((i = 0; i < grace * 10; i++)); do
    mapfile -t left < <(ns_procs "$k")
    ((${#left[@]})) || return 0
    sleep 0.1
  done
  # a process blocked on a FUSE mount whose daemon hangs: abort the connection
  abort_fuse "$k"
  mapfile -t left < <(ns_procs "$k")
  kill_pids KILL "${left[@]}"
  for ((i = 0; i < 50; i++)); do
    mapfile -t left < <(ns_procs "$k")
    ((${#left[@]})) || return 0
    sleep 0.1
  done
  say "node$k: processes still there after SIGKILL: ${left[*]}"
}

abort_fuse() {
  local k=$1 dev maj min
  while read -r _ dev; do
    [[ -n "$dev" ]] || continue
    maj=${dev%%:*} min=${dev##*:}
    [[ -w "/sys/fs/fuse/connections/$(((maj << 20) | min))/abort" ]] &&
      echo 1 >"/sys/fs/fuse/connections/$(((maj << 20) | min))/abort" 2>/dev/null || true
  done < <(fuse_at_shared "$k")
}

# /shared is shared by every cluster on this machine. The one that made it marks it
# (extended attribute trusted.dsdfs_cluster_sim); whichever cluster goes down last
# removes it if it is marked, empty and unused: no process has it as its working
# directory (every holder of a cluster that is up does) and no mount namespace has a
# mount on it. Deciding, making and removing happen under a lock on the directory.
shared_fd=""
lock_shared() {
  local i made
  need_tools flock setfattr getfattr
  for ((i = 0; i < 20; i++)); do
    made=0
    if [[ ! -e /shared ]]; then
      mkdir /shared 2>/dev/null && made=1
    fi
    [[ -d /shared ]] || die "/shared exists and is not a directory"
    exec {shared_fd}</shared
    flock -w 60 "$shared_fd" || die "cannot lock /shared within 60 s"
    # a cluster going down may have removed it meanwhile: then start again
    if [[ "$(stat -L -c %d:%i /shared 2>/dev/null)" == "$(stat -L -c %d:%i "/proc/self/fd/$shared_fd")" ]]; then
      if ((made)); then
        setfattr -n trusted.dsdfs_cluster_sim -v made /shared ||
          say "cannot mark /shared (no extended attributes?): it will stay after down"
      fi
      return 0
    fi
    unlock_shared
  done
  die "cannot lock /shared"
}
unlock_shared() {
  if [[ -n "$shared_fd" ]]; then
    exec {shared_fd}<&-
    shared_fd=""
  fi
}
shared_in_use() {
  local pid cwds
  cwds=$(find /proc/[0-9]*/cwd -maxdepth 0 -printf '%l\n' 2>/dev/null || true)
  [[ $'\n'"$cwds"$'\n' != *$'\n/shared\n'* ]] || return 0
  # one process of each mount namespace
  while read -r pid; do
    if awk '$5 == "/shared" { found = 1 } END { exit !found }' "/proc/$pid/mountinfo" 2>/dev/null; then
      return 0
    fi
  done < <({ find /proc/[0-9]*/ns/mnt -maxdepth 0 -printf '%p %l\n' 2>/dev/null || true; } |
    awk '!($2 in seen) { seen[$2]; split($1, f, "/"); print f[3] }')
  return 1
}
remove_shared() {
  [[ -d /shared ]] || return 0
  [[ "$(getfattr --absolute-names --only-values -n trusted.dsdfs_cluster_sim /shared 2>/dev/null)" == made ]] ||
    return 0
  exec {shared_fd}</shared
  flock -w 60 "$shared_fd" || { say "cannot lock /shared within 60 s; leaving it"; unlock_shared; return 0; }
  if shared_in_use; then
    say "leaving /shared: another cluster on this machine uses it"
  elif [[ -n "$(ls -A /shared 2>/dev/null)" ]]; then
    say "leaving /shared: it is not empty (something wrote there while dsdfs was not mounted)"
  else
    rmdir /shared || say "cannot remove /shared"
  fi
  unlock_shared
}

down_all() {
  local k rec ns
  # a Slurm of scripts/cluster-sim-slurm.sh for this cluster: its daemons by their PIDs
  # (slurmctld and munged run in this machine's namespace; their files are in DIR)
  if [[ -d "$DIR/slurm/pids" && -x "$here/cluster-sim-slurm.sh" ]]; then
    "$here/cluster-sim-slurm.sh" --dir "$DIR" down || say "cluster-sim-slurm.sh down failed"
  fi
  # the dsdfs job first, so that the daemons stop cleanly (unmount, remove stores)
  if [[ -r "$STATE/job" ]] && alive "$(cat "$STATE/job")"; then
    stop_job 30 || true
  fi
  rm -f "$STATE/job"
  for ((k = 1; k <= NODES; k++)); do
    stop_node_procs "$k" 5
    rec=$(holder "$k")
    if alive "$rec"; then
      kill -KILL "${rec%% *}" 2>/dev/null || true
      wait_gone "$rec" 5 || say "node$k's holder ${rec%% *} does not end"
    fi
    rm -f "$STATE/holder.$k" "$STATE/mntns.$k"
  done
  # namespaces and links of this prefix that carry this cluster's token
  notours=()
  while read -r ns _; do
    if [[ "$ns" =~ ^$PREFIX-node[0-9]+$ ]]; then
      if ours "$ns" eth0; then
        ip netns del "$ns" || say "cannot delete network namespace $ns"
      else
        notours+=("$ns")
      fi
    fi
  done < <(ip netns list 2>/dev/null)
  if ip link show "$PREFIX-head" >/dev/null 2>&1; then
    if ours "" "$PREFIX-head"; then
      ip link del "$PREFIX-head" || say "cannot delete link $PREFIX-head"
    else
      notours+=("$PREFIX-head")
    fi
  fi
  if [[ -e "/run/netns/$PREFIX-switch" ]]; then
    if ours "$PREFIX-switch" br0; then
      ip netns del "$PREFIX-switch" || say "cannot delete network namespace $PREFIX-switch"
    else
      notours+=("$PREFIX-switch")
    fi
  fi
  if ((${#notours[@]})); then
    say "not touched: ${notours[*]} (not made by the cluster of $DIR; another cluster's, or use down --force)"
  fi
  remove_shared
  if [[ -e "$MARK" ]]; then
    rm -rf --one-file-system "$DIR"
  fi
  # nothing of ours may be left
  local left=()
  while read -r ns _; do
    if [[ "$ns" =~ ^$PREFIX-(node[0-9]+|switch)$ && " ${notours[*]} " != *" $ns "* ]]; then
      left+=("netns $ns")
    fi
  done < <(ip netns list 2>/dev/null)
  if ip link show "$PREFIX-head" >/dev/null 2>&1 && [[ " ${notours[*]} " != *" $PREFIX-head "* ]]; then
    left+=("link $PREFIX-head")
  fi
  [[ ! -e "$DIR" ]] || left+=("directory $DIR")
  if ((${#left[@]})); then
    say "left behind: ${left[*]}"
    return 1
  fi
}

down() {
  need_root
  if ! load_state; then
    # No state: nothing is up here (up writes the state before it makes anything).
    # Namespaces of this prefix then belong to a cluster of another --dir, or to one
    # whose state directory was removed: only --force removes them.
    check_config
    [[ ! -e "$DIR" || -e "$MARK" ]] ||
      die "$DIR exists but is not a cluster-sim directory; not touching it"
    local ns found=()
    while read -r ns _; do
      [[ "$ns" =~ ^$PREFIX-(node[0-9]+|switch)$ ]] && found+=("$ns")
    done < <(ip netns list 2>/dev/null)
    ! ip link show "$PREFIX-head" >/dev/null 2>&1 || found+=("$PREFIX-head")
    if ((${#found[@]})); then
      ((FORCE)) || die "no cluster state in $DIR, but ${found[*]} exist: a cluster of prefix '$PREFIX' in another --dir, or one whose state was removed. Name its --dir, or remove them (and every process in them) with: down --force"
      NODES=$(ip netns list | awk -v p="$PREFIX-node" 'index($1, p) == 1 { n = substr($1, length(p) + 1) + 0; if (n > m) m = n } END { print m + 0 }')
      ((NODES >= 1)) || NODES=1
    fi
  fi
  local t0=$SECONDS
  down_all
  if ((${#notours[@]})); then
    say "down in $((SECONDS - t0)) s; the cluster of $DIR is gone, the names above were left alone"
  else
    say "down in $((SECONDS - t0)) s: no namespace, link, process or directory of prefix '$PREFIX' left"
  fi
}

# --- status ------------------------------------------------------------------------
status() {
  if ! load_state; then
    echo "no simulated cluster in $DIR"
    return 0
  fi
  echo "cluster in $DIR: $NODES nodes, prefix $PREFIX, subnet $NET.0/24, this machine $NET.254 ($PREFIX-head)"
  local k pid m procs
  for ((k = 1; k <= NODES; k++)); do
    if pid=$(holder_pid "$k"); then
      m=$(shared_mounts "$k" | tail -n1)
      procs=$(ns_procs "$k" | wc -l)
      printf 'node%-3s %-15s holder %-8s /shared: %-12s processes: %s\n' "$k" "$NET.$k" "$pid" \
        "${m:-none}" "$procs"
    else
      printf 'node%-3s %-15s holder gone (run down, then up)\n' "$k" "$NET.$k"
    fi
  done
  if [[ -r "$STATE/job" ]] && alive "$(cat "$STATE/job")"; then
    echo "dsdfs job: mpirun $(cut -d' ' -f1 "$STATE/job") (log $DIR/dsdfs.log)"
  else
    echo "dsdfs job: none"
  fi
}

# --- exec, agent ------------------------------------------------------------------
node_exec() {
  need_root
  need_up
  (($#)) || die "usage: exec NODE [CMD...]"
  local k pid
  k=$(node_index "$1")
  shift
  pid=$(holder_pid "$k") || die "node$k is not running (its holder died); run down, then up"
  (($#)) || set -- "${SHELL:-/bin/bash}"
  # shellcheck disable=SC2016
  exec nsenter --target "$pid" --mount --net --uts -- \
    /bin/sh -c 'cd -- "$0" 2>/dev/null || cd /; exec "$@"' "$PWD" "$@"
}

# Open MPI calls `AGENT HOST CMDLINE...` as it would call ssh: the words of CMDLINE are
# one shell command line, run with /bin/sh in the home directory (here /).
agent() {
  need_up
  (($# >= 2)) || die "agent: usage: agent HOST COMMAND..."
  local host=$1 k pid
  shift
  case "$host" in
    "$NET".*) k=${host##*.} ;;
    *) k=$host ;;
  esac
  k=$(node_index "$k")
  pid=$(holder_pid "$k") || die "agent: node$k is not running"
  exec nsenter --target "$pid" --mount --net --uts -- /bin/sh -c "cd / && $*"
}

# --- MPI across the nodes ------------------------------------------------------------
# mpi_env: Open MPI, PMIx and UCX on the nodes' network. The interface settings are
# forced (a caller's loopback-env.sh would keep them on lo); the rest comes from
# loopback-env.sh unless the caller set it.
mpi_env() {
  export DSDFS_SIM_DIR=$DIR
  export OMPI_MCA_orte_default_hostfile=$DIR/hostfile
  export OMPI_MCA_plm_rsh_agent="$self agent"
  # mpirun starts every orted itself (no orted starts another through the agent)
  export OMPI_MCA_plm_rsh_no_tree_spawn=1
  export OMPI_MCA_btl_tcp_if_include=$NET.0/24
  export OMPI_MCA_oob_tcp_if_include=$NET.0/24
  export UCX_NET_DEVICES=eth0
  local tls=${DSDFS_SIM_UCX_TLS:-tcp}
  if [[ "$tls" == default ]]; then unset UCX_TLS; else export UCX_TLS=$tls; fi
  # shellcheck source=loopback-env.sh
  . "$here/loopback-env.sh"
}

env_cmd() {
  need_up
  mpi_env
  local v
  for v in DSDFS_SIM_DIR OMPI_MCA_orte_default_hostfile OMPI_MCA_plm_rsh_agent \
    OMPI_MCA_plm_rsh_no_tree_spawn OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include \
    UCX_NET_DEVICES UCX_TLS; do
    if [[ -n "${!v+set}" ]]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
  done
  [[ -n "${UCX_TLS+set}" ]] || echo "unset UCX_TLS"
  echo ". $here/loopback-env.sh"
}

mpirun_cmd() {
  need_root
  need_up
  need_tools mpirun
  mpi_env
  exec mpirun "$@"
}

find_launch() {
  local c
  for c in "${DSDFS_LAUNCH:-}" "$repo/build-test/launcher/dsdfs-launch" "$repo/build/launcher/dsdfs-launch"; do
    if [[ -n "$c" && -x "$c" ]]; then
      echo "$c"
      return 0
    fi
  done
  die "no dsdfs-launch: set DSDFS_LAUNCH or build it (ninja -C build launcher/dsdfs-launch)"
}

start_dsdfs() {
  need_root
  need_up
  need_tools mpirun
  local wait_s=60
  while (($#)); do
    case "$1" in
      -t | --timeout) (($# >= 2)) || die "start-dsdfs: $1 needs seconds"; wait_s=$2; shift 2 ;;
      --) shift; break ;;
      *) die "start-dsdfs: unknown argument '$1' (dsdfs-launch options go after --)" ;;
    esac
  done
  [[ "$wait_s" =~ ^[0-9]+$ ]] || die "start-dsdfs: --timeout needs whole seconds"
  if [[ -r "$STATE/job" ]] && alive "$(cat "$STATE/job")"; then
    die "a dsdfs job is running already (mpirun $(cut -d' ' -f1 "$STATE/job")); stop-dsdfs first"
  fi
  local k launch pid m
  launch=$(find_launch)
  for ((k = 1; k <= NODES; k++)); do
    holder_pid "$k" >/dev/null || die "node$k is not running; run down, then up"
    m=$(fuse_at_shared "$k")
    [[ -z "$m" ]] || die "node$k has a FUSE mount on /shared already ($m); stop-dsdfs or down first"
    rm -f "$DIR/node$k/ready"
  done
  mpi_env
  # %h is the node's host name (nodeK): store and ready file in that node's directory
  local args=(-np "$NODES" --map-by ppr:1:node --enable-recovery
    "$launch" /shared --store "$DIR/%h/store" --ready-file "$DIR/%h/ready"
    --log-level info "$@")
  echo "mpirun ${args[*]}" >"$DIR/dsdfs.log"
  (
    close_extra_fds
    exec setsid mpirun "${args[@]}"
  ) </dev/null >>"$DIR/dsdfs.log" 2>&1 &
  pid=$!
  record_pid "$pid" >"$STATE/job"
  local t0=$SECONDS all
  while true; do
    all=1
    for ((k = 1; k <= NODES; k++)); do
      [[ -e "$DIR/node$k/ready" ]] || { all=0; break; }
    done
    ((all)) && break
    if ! alive "$(cat "$STATE/job")"; then
      tail -n 40 "$DIR/dsdfs.log" >&2
      rm -f "$STATE/job"
      die "mpirun ended before dsdfs was mounted on every node (log above, $DIR/dsdfs.log)"
    fi
    if ((SECONDS - t0 >= wait_s)); then
      tail -n 40 "$DIR/dsdfs.log" >&2
      say "dsdfs not mounted on every node within $wait_s s; stopping the job"
      stop_job 30 || true
      die "start-dsdfs failed (log above, $DIR/dsdfs.log)"
    fi
    sleep 0.1
  done
  for ((k = 1; k <= NODES; k++)); do
    [[ "$(fuse_at_shared "$k")" == fuse.dsdfs* ]] ||
      die "node$k wrote its ready file but has no fuse.dsdfs mount on /shared"
  done
  say "dsdfs mounted at /shared on node1..node$NODES in $((SECONDS - t0)) s (mpirun $pid, log $DIR/dsdfs.log)"
}

# stop_job GRACE: SIGTERM to mpirun, up to GRACE s for it to end, then what is left of the
# job in the nodes (dsdfs-launch, orted) by PID. 0 if everything ended on its own and no
# node has a mount on /shared.
stop_job() {
  local grace=$1 rec k ok=0 m p left i
  rec=$(cat "$STATE/job" 2>/dev/null || true)
  if alive "$rec"; then
    kill -TERM "${rec%% *}"
    if ! wait_gone "$rec" "$grace"; then
      say "mpirun ${rec%% *} did not end within $grace s of SIGTERM; SIGKILL"
      kill -KILL "${rec%% *}" 2>/dev/null || true
      wait_gone "$rec" 5 || true
      ok=1
    fi
  fi
  rm -f "$STATE/job"
  for ((k = 1; k <= NODES; k++)); do
    holder_pid "$k" >/dev/null || continue
    # orted and the ranks end within a few seconds of mpirun
    for ((i = 0; i < 100; i++)); do
      left=""
      for p in $(ns_procs "$k"); do
        case "$(cat "/proc/$p/comm" 2>/dev/null)" in
          orted | dsdfs-launch) left+=" $p" ;;
        esac
      done
      [[ -n "$left" ]] || break
      sleep 0.1
    done
    if [[ -n "$left" ]]; then
      for p in $left; do say "node$k: $(describe "$p") outlived mpirun; SIGKILL"; done
      # shellcheck disable=SC2086
      kill_pids KILL $left
      abort_fuse "$k"
      ok=1
    fi
    m=$(fuse_at_shared "$k")
    if [[ -n "$m" ]]; then
      say "node$k: /shared is still mounted ($m); unmounting it"
      abort_fuse "$k"
      nsenter --target "$(holder_pid "$k")" --mount -- umount -l /shared || true
      ok=1
    fi
  done
  return "$ok"
}

stop_dsdfs() {
  need_root
  need_up
  if ! [[ -r "$STATE/job" ]] || ! alive "$(cat "$STATE/job")"; then
    say "no dsdfs job running"
    rm -f "$STATE/job"
  fi
  local t0=$SECONDS k
  stop_job 60 || die "the dsdfs job did not stop cleanly (see above; log $DIR/dsdfs.log)"
  for ((k = 1; k <= NODES; k++)); do
    if [[ -e "$DIR/node$k/store" ]]; then
      say "node$k: its store $DIR/node$k/store is still there"
    fi
  done
  say "dsdfs stopped in $((SECONDS - t0)) s; no node has a mount on /shared"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  exec) node_exec "$@" ;;
  agent) agent "$@" ;;
  start-dsdfs) start_dsdfs "$@" ;;
  stop-dsdfs) stop_dsdfs ;;
  mpirun) mpirun_cmd "$@" ;;
  env) env_cmd ;;
  *) echo "cluster-sim: unknown command '$cmd'" >&2; usage ;;
esac
