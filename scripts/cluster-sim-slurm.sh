#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# cluster-sim-slurm.sh: a Slurm for the emulated cluster of scripts/cluster-sim.sh:
# one slurmd per emulated node, started inside that node's namespaces (so every job
# step runs "on" its node: its network, its /shared, host name nodeK), and a
# slurmctld and a munged of their own in this machine's namespace, slurmctld
# listening on the cluster's head address NET.254. docs/cluster-sim.md ("Slurm
# across the nodes") explains it; in short, as root:
#
#   scripts/cluster-sim.sh up
#   eval "$(scripts/cluster-sim-slurm.sh up)"     # exports SLURM_CONF and the MPI/UCX settings
#   sinfo                                         # node[1-4] idle
#   sbatch -N 4 job.sh                            # srun in the job runs on node1..node4
#   scripts/cluster-sim-slurm.sh down
#   scripts/cluster-sim.sh down                   # (also runs this script's down)
#
# Commands
#   up      write the config, start munged, slurmctld and one slurmd per node, wait
#           until every node is idle, and print the exports (also in SDIR/env.sh).
#           Fails if this cluster's Slurm is up already
#   down    cancel the jobs, stop the slurmds, slurmctld and munged by their recorded
#           PIDs (and start times); idempotent. Leaves the logs in SDIR
#   env     print the exports again
#   status  the daemons and sinfo
#
# Options and environment (the cluster is found as cluster-sim.sh finds it)
#   --dir DIR  DSDFS_SIM_DIR                 the cluster's directory [/tmp/dsdfs-sim]
#              DSDFS_SIM_SLURMCTLD_PORT      slurmctld's port [6827]
#              DSDFS_SIM_SLURMD_PORT         every slurmd's port (each in its node's own
#                                            network namespace) [6828]
#              DSDFS_SIM_SLURM_CPUS          CPUs each node claims [4]
#              DSDFS_SIM_SLURM_TIMEOUT       seconds to wait for idle nodes [60]
# The single-node test Slurm of scripts/slurm-up.sh (ports 6817/6818, munge socket
# in /var/tmp/dsdfs-slurm) is neither used nor disturbed: this one has its own ports,
# munge key and socket, config, state and spool (SDIR = DIR/slurm).
#
# Layout of SDIR
#   etc/slurm.conf etc/cgroup.conf env.sh
#   tmp/nodeK/ (node K's TmpFS, bound on node-tmp/ in node K's mount namespace: the
#   PMIx plugin names its per-step directories there by job and step alone)
#   munge/{key,run,log}/   state/ (slurmctld)   spool/nodeK/ (slurmd of node K)
#   log/slurmctld.log log/slurmd.nodeK.log log/*.out   pids/{munged,slurmctld,slurmd.K}
# Each slurmd's node has its own cgroup2 file system mounted on /sys/fs/cgroup in its
# mount namespace (slurmd 22.05 needs one; the node's /sys is its own sysfs).
#
# Exit: 0 success, 1 failure (daemon logs on stderr), 2 usage. Needs root, Slurm
# (slurmctld, slurmd, sinfo, scontrol), munge and a cluster that is up.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SIM=$here/cluster-sim.sh
DIR=${DSDFS_SIM_DIR:-/tmp/dsdfs-sim}
CTLD_PORT=${DSDFS_SIM_SLURMCTLD_PORT:-6827}
SLURMD_PORT=${DSDFS_SIM_SLURMD_PORT:-6828}
CPUS=${DSDFS_SIM_SLURM_CPUS:-4}
TIMEOUT=${DSDFS_SIM_SLURM_TIMEOUT:-60}

say() { echo "cluster-sim-slurm: $*" >&2; }
die() {
  echo "cluster-sim-slurm: error: $*" >&2
  exit 1
}
usage() {
  sed -n '/^# cluster-sim-slurm.sh:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

args=()
while (($#)); do
  case "$1" in
    --dir) (($# >= 2)) || usage; DIR=$2; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    -h | --help | help) usage ;;
    -*) echo "cluster-sim-slurm: unknown option $1" >&2; usage ;;
    *) args+=("$1"); shift ;;
  esac
done
((${#args[@]} == 1)) || usage
cmd=${args[0]}
[[ "$DIR" == /* ]] || DIR="$PWD/$DIR"
DIR=${DIR%/}
export DSDFS_SIM_DIR=$DIR
SDIR=$DIR/slurm
CONF=$SDIR/etc/slurm.conf
MUNGE_SOCKET=$SDIR/munge/run/munge.socket
PIDS=$SDIR/pids
LOGS=$SDIR/log

NODES="" NET=""
load_cluster() {
  [[ -r "$DIR/state/config" ]] || die "no simulated cluster in $DIR (scripts/cluster-sim.sh up first)"
  NODES=$(sed -n 's/^NODES=//p' "$DIR/state/config")
  NET=$(sed -n 's/^NET=//p' "$DIR/state/config")
  [[ "$NODES" =~ ^[0-9]+$ && -n "$NET" ]] || die "cannot read $DIR/state/config"
}

# --- processes, by PID and start time ---------------------------------------------------
# shellcheck source=pids.sh
. "$(dirname "${BASH_SOURCE[0]}")/pids.sh"
rec_of() { cat "$PIDS/$1" 2>/dev/null || true; }
# stop_rec NAME GRACE: SIGTERM the recorded process, GRACE s, then SIGKILL.
stop_rec() {
  local rec i
  rec=$(rec_of "$1")
  if alive "$rec"; then
    kill -TERM "${rec%% *}" 2>/dev/null || true
    for ((i = 0; i < $2 * 10; i++)); do
      alive "$rec" || break
      sleep 0.1
    done
    if alive "$rec"; then
      say "$1 (pid ${rec%% *}) ignored SIGTERM for $2 s; SIGKILL"
      kill -KILL "${rec%% *}" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$rec" || break; sleep 0.1; done
    fi
  fi
  rm -f "$PIDS/$1"
}
any_alive() {
  local f
  for f in "$PIDS"/*; do
    [[ -e "$f" ]] || continue
    alive "$(cat "$f")" && return 0
  done
  return 1
}
# start NAME CMD...: CMD in its own session, stdio on LOGS/NAME.out, recorded.
start() {
  local name=$1 pid
  shift
  (
    close_extra_fds
    exec setsid "$@"
  ) </dev/null >>"$LOGS/$name.out" 2>&1 &
  pid=$!
  disown "$pid"
  sleep 0.1
  echo "$pid $(starttime "$pid")" >"$PIDS/$name"
  alive "$(rec_of "$name")" || fail "$name exited at start (pid $pid)"
}

dump_logs() {
  local f
  for f in "$LOGS"/*.log "$SDIR"/munge/log/munged.log "$LOGS"/*.out; do
    [[ -s "$f" ]] || continue
    echo "----- $f (last 25 lines) -----" >&2
    tail -n 25 "$f" >&2
  done
}
fail() {
  say "ERROR: $*"
  dump_logs
  down >&2 || true
  exit 1
}

mpi_exports() {
  # the cluster's MPI and UCX settings (eth0, the nodes' subnet), for the jobs' steps
  "$SIM" env
}

# --- up ------------------------------------------------------------------------------
up() {
  (($(id -u) == 0)) || die "must run as root"
  local b
  for b in munged mungekey munge unmunge slurmctld slurmd sinfo scontrol squeue setpriv nsenter; do
    command -v "$b" >/dev/null || die "$b is not on PATH (scripts/install-deps.sh)"
  done
  id munge >/dev/null 2>&1 || die "user munge missing (scripts/install-deps.sh)"
  load_cluster
  [[ "$CTLD_PORT" =~ ^[0-9]+$ && "$SLURMD_PORT" =~ ^[0-9]+$ ]] || die "ports must be numbers"
  if [[ -d "$PIDS" ]] && any_alive; then
    die "this cluster's Slurm is up already (scripts/cluster-sim-slurm.sh --dir $DIR down)"
  fi
  if ss -Hltn "sport = :$CTLD_PORT" 2>/dev/null | grep -q .; then
    die "port $CTLD_PORT is in use on this machine (DSDFS_SIM_SLURMCTLD_PORT)"
  fi
  local k
  for ((k = 1; k <= NODES; k++)); do
    "$SIM" exec "$k" true || die "node$k is not running"
  done

  rm -rf "$SDIR"
  install -d -m 0755 "$SDIR" "$SDIR/etc" "$PIDS" "$SDIR/spool"
  install -d -m 0700 "$LOGS" "$SDIR/state"
  install -d -m 0755 "$SDIR/node-tmp"
  for ((k = 1; k <= NODES; k++)); do
    install -d -m 0755 "$SDIR/spool/node$k"
    install -d -m 1777 "$SDIR/tmp/node$k"
  done
  install -d -m 0755 -o root -g root "$SDIR/munge"
  install -d -m 0700 -o munge -g munge "$SDIR/munge/key" "$SDIR/munge/log"
  install -d -m 0755 -o munge -g munge "$SDIR/munge/run"
  local key=$SDIR/munge/key/munge.key
  mungekey --create --keyfile="$key" --force
  chown munge:munge "$key"
  chmod 0600 "$key"

  local mem
  mem=$(awk '/^MemTotal:/ { print int($2 / 1024 / 10) }' /proc/meminfo)
  cat >"$CONF" <<EOF
# Written by dsdfs scripts/cluster-sim-slurm.sh for the emulated cluster in $DIR.
ClusterName=dsdfssim
SlurmctldHost=$(hostname -s)($NET.254)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET

StateSaveLocation=$SDIR/state
# a directory of each node's own (bound there in the node's mount namespace)
TmpFS=$SDIR/node-tmp
SlurmdSpoolDir=$SDIR/spool/%n
SlurmctldPidFile=$SDIR/state/slurmctld.pid
SlurmdPidFile=$SDIR/spool/%n/slurmd.pid
MailProg=/bin/true
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=pmix
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=120
SlurmdTimeout=300
MessageTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
UnkillableStepTimeout=60
NodeName=node[1-$NODES] NodeAddr=$NET.[1-$NODES] CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=sim Nodes=node[1-$NODES] Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$SDIR/etc/cgroup.conf" <<'EOF'
# Written by dsdfs scripts/cluster-sim-slurm.sh: no cgroup plugin is used.
CgroupAutomount=no
EOF
  {
    echo "export SLURM_CONF=$CONF"
    mpi_exports
  } >"$SDIR/env.sh"
  chmod 0644 "$CONF" "$SDIR/etc/cgroup.conf" "$SDIR/env.sh"
  export SLURM_CONF=$CONF

  start munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --force --key-file="$key" --socket="$MUNGE_SOCKET" \
    --pid-file="$SDIR/munge/run/munged.pid" --log-file="$SDIR/munge/log/munged.log" \
    --seed-file="$SDIR/munge/key/munged.seed" --origin=127.0.0.1
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -S "$MUNGE_SOCKET" ]] && break
    sleep 0.1
  done
  munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null ||
    fail "munge round trip through $MUNGE_SOCKET failed"

  start slurmctld slurmctld -D -f "$CONF"
  # this machine's cgroup mounts (fs type, mount point, super options), top first
  local cgroup_mounts
  cgroup_mounts=$(awk '$5 == "/sys/fs/cgroup" || index($5, "/sys/fs/cgroup/") == 1 {
      for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1), $5, $(i + 3); break } }' /proc/self/mountinfo |
    awk '{ printf "mkdir -p %s && mount -t %s -o %s %s %s || exit 1\n", $2, $1, $3, $1, $2 }')
  [[ -n "$cgroup_mounts" ]] || fail "no cgroup file system under /sys/fs/cgroup here; slurmd 22.05 needs one"
  cgroup_mounts="awk '\$5 == \"/sys/fs/cgroup\" { f = 1 } END { exit !f }' /proc/self/mountinfo && exit 0
$cgroup_mounts"
  for ((k = 1; k <= NODES; k++)); do
    # slurmd 22.05 needs a cgroup file system, and the node's /sys is its own sysfs
    # (the same hierarchies as this machine's: slurmd refuses a v1/v2 mix)
    "$SIM" exec "$k" sh -c "$cgroup_mounts" || fail "node$k: cannot mount the cgroup file systems on /sys/fs/cgroup"
    # the PMIx plugin's per-step directories (TmpFS) are named by job and step only:
    # every node needs its own, and /tmp is this machine's on every node
    "$SIM" exec "$k" mount --bind "$SDIR/tmp/node$k" "$SDIR/node-tmp" ||
      fail "node$k: cannot bind $SDIR/tmp/node$k on $SDIR/node-tmp"
    start "slurmd.$k" "$SIM" exec "$k" slurmd -D -N "node$k" -f "$CONF"
  done

  local deadline=$((SECONDS + TIMEOUT)) states resumed=0 n
  while :; do
    for f in munged slurmctld $(for ((k = 1; k <= NODES; k++)); do echo "slurmd.$k"; done); do
      alive "$(rec_of "$f")" || fail "$f died while starting"
    done
    states=$(timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null || true)
    n=$(awk '$2 ~ /^(idle|mixed|allocated)/' <<<"$states" | wc -l)
    ((n == NODES)) && break
    if ((!resumed)) && grep -qE ' (down|drain)' <<<"$states"; then
      scontrol update NodeName="node[1-$NODES]" State=RESUME >/dev/null 2>&1 || true
      resumed=1
    fi
    ((SECONDS < deadline)) || fail "not every node idle after $TIMEOUT s: $(tr '\n' ' ' <<<"$states")"
    sleep 0.3
  done
  say "up: node[1-$NODES] idle; slurmctld on $NET.254:$CTLD_PORT; SLURM_CONF=$CONF (exports in $SDIR/env.sh)"
  cat "$SDIR/env.sh"
}

# --- down ----------------------------------------------------------------------------
down() {
  [[ -d "$PIDS" ]] || { say "no Slurm in $SDIR"; return 0; }
  export SLURM_CONF=$CONF
  local k f i n=0
  [[ -r "$DIR/state/config" ]] && load_cluster
  for f in "$PIDS"/slurmd.*; do
    [[ -e "$f" ]] && n=$((n > ${f##*.} ? n : ${f##*.}))
  done
  if alive "$(rec_of slurmctld)"; then
    if [[ -n "$(timeout 10 squeue -h -o %i 2>/dev/null || true)" ]]; then
      say "cancelling the remaining jobs"
      timeout 10 scancel --full --quiet --user=ALL 2>/dev/null || true
      for ((i = 0; i < 40; i++)); do
        [[ -z "$(timeout 5 squeue -h -t running,completing,pending -o %i 2>/dev/null || true)" ]] && break
        sleep 0.5
      done
    fi
  fi
  # step processes are in the nodes' namespaces; cluster-sim.sh down ends what is left
  for ((k = 1; k <= n; k++)); do
    # the recorded PID: setsid, cluster-sim.sh exec, nsenter and sh each exec the next
    stop_rec "slurmd.$k" 15
  done
  stop_rec slurmctld 15
  stop_rec munged 15
  say "down: slurmds, slurmctld and munged of $SDIR stopped"
}

status() {
  [[ -d "$PIDS" ]] || { echo "no Slurm in $SDIR"; return 0; }
  local f
  for f in "$PIDS"/*; do
    [[ -e "$f" ]] || continue
    if alive "$(cat "$f")"; then echo "${f##*/}: pid $(cut -d' ' -f1 "$f")"; else echo "${f##*/}: gone"; fi
  done
  SLURM_CONF=$CONF timeout 10 sinfo -N 2>/dev/null || echo "sinfo: no answer"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  env) cat "$SDIR/env.sh" ;;
  status) status ;;
  *) usage ;;
esac
