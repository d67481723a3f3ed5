#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-up.sh: start a real single-node Slurm (munged, slurmctld, slurmd from
# Debian's packages) on this machine, on loopback only, for CI and tests.
#
#   eval "$(scripts/slurm-up.sh)"      # start (or find running) and export
#   scripts/slurm-up.sh --check        # exit 0 if up, 1 if not; changes nothing
#   sinfo; sbatch --wait job.sh; srun -n 3 hostname
#   scripts/slurm-down.sh              # stop it again (by recorded PIDs)
#
# How it works
# - No systemd is needed or used: each daemon runs in the foreground
#   (munged -F, slurmctld -D, slurmd -D) in its own session, its PID is
#   recorded in $DSDFS_SLURM_DIR/pids/, and slurm-down.sh stops it by that PID.
# - Everything lives in a private directory, $DSDFS_SLURM_DIR (default
#   /var/tmp/dsdfs-slurm): config, munge key and socket, state, spool, logs.
#   Nothing in /etc is written, and the system's own munge (socket under
#   /run/munge) is neither used nor disturbed.
# - The config is found through SLURM_CONF. stdout carries only
#   `export SLURM_CONF=...` lines (all messages go to stderr), so
#   `eval "$(scripts/slurm-up.sh)"` sets up the calling shell; the same lines
#   are in $DSDFS_SLURM_DIR/env.sh for later shells (`. .../env.sh`). Jobs
#   inherit SLURM_CONF from sbatch/srun's environment (the default
#   --export=ALL), so srun inside a batch script finds the config too.
#   slurm.conf points Slurm at the private munge socket (AuthInfo=socket=).
# - Loopback only: SlurmctldHost=<host>(127.0.0.1), NodeAddr=127.0.0.1, and
#   when the short host name resolves to 127.x the daemons bind to it alone
#   (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny).
# - Works without cgroup delegation: ProctrackType=proctrack/linuxproc,
#   TaskPlugin=task/none, no accounting. The node claims $DSDFS_SLURM_CPUS
#   CPUs (default 8, more than the machine has, with
#   SlurmdParameters=config_overrides) so 3-4 task jobs fit on 2 cores.
# - MpiDefault=pmix: `srun ./mpi_program` uses Slurm's PMIx plugin, which
#   Open MPI 4.1 (built against the same libpmix2) uses directly.
# - Idempotent: if the daemons recorded in pids/ are alive and sinfo answers,
#   it says so and only prints the exports. A partly-running set is stopped
#   and started afresh. Each fresh start wipes the old job state.
#
# Environment (all optional):
#   DSDFS_SLURM_DIR      private directory        [/var/tmp/dsdfs-slurm]
#   DSDFS_SLURM_CPUS     CPUs the node advertises [8]
#   DSDFS_SLURM_TIMEOUT  seconds to wait for idle [60]
#   DSDFS_SLURMCTLD_PORT / DSDFS_SLURMD_PORT      [6817 / 6818]
#
# Must run as root (the daemons run as root; munged runs as user munge).
# Exit: 0 up (or already up; with --check: up), 1 failure (daemon logs are
# printed to stderr; with --check: not up), 2 usage.
# Needs a cgroup file system under /sys/fs/cgroup: slurmd 22.05 initializes
# its cgroup plugin even with linuxproc/task-none (bind-mount it in a chroot).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm-common.sh
. "$here/slurm-common.sh"

CPUS=${DSDFS_SLURM_CPUS:-8}
TIMEOUT=${DSDFS_SLURM_TIMEOUT:-60}
CTLD_PORT=${DSDFS_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${DSDFS_SLURMD_PORT:-6818}
NODE=$(hostname -s)

print_exports() {
  cat "$DSDFS_SLURM_DIR/env.sh"
}

# fail MSG: report, print the daemon logs, stop whatever this run started
fail() {
  slurm_log "ERROR: $*"
  dump_logs
  "$here/slurm-down.sh" >&2 || true
  exit 1
}

if (($# > 1)) || [[ $# == 1 && "$1" != --check ]]; then
  slurm_log "usage: $0 [--check]"
  exit 2
fi
if ((EUID != 0)); then
  slurm_log "ERROR: must run as root (it starts slurmctld, slurmd and munged)"
  exit 1
fi
for bin in munged mungekey munge unmunge slurmctld slurmd sinfo scontrol setpriv; do
  command -v "$bin" >/dev/null ||
    { slurm_log "ERROR: $bin not found; run scripts/install-deps.sh"; exit 1; }
done
id munge >/dev/null 2>&1 ||
  { slurm_log "ERROR: user munge missing; run scripts/install-deps.sh"; exit 1; }

export SLURM_CONF=$SLURM_PRIV_CONF

# Slurm 22.05's slurmd initializes a cgroup plugin even with
# proctrack/linuxproc and task/none, and fails without a cgroup file system.
if ! awk '{ for (i = 7; i < NF; i++) if ($i == "-") { fs = $(i + 1); break } }
  $5 ~ "^/sys/fs/cgroup" && (fs == "cgroup" || fs == "cgroup2") { found = 1 }
  END { exit !found }' /proc/self/mountinfo 2>/dev/null; then
  slurm_log "ERROR: no cgroup file system under /sys/fs/cgroup; slurmd 22.05 needs one" \
    "(in a chroot: mount --rbind /sys/fs/cgroup <root>/sys/fs/cgroup)"
  exit 1
fi

# --- already up? -------------------------------------------------------------
alive=0
for d in "${SLURM_DAEMONS_STOP_ORDER[@]}"; do
  [[ -n "$(pid_of "$d")" ]] && alive=$((alive + 1))
done
up=0
if ((alive == ${#SLURM_DAEMONS_STOP_ORDER[@]})) &&
  timeout 10 sinfo -h -o %T >/dev/null 2>&1; then
  up=1
fi
if [[ "${1:-}" == --check ]]; then
  ((up)) && exit 0
  exit 1
fi
if ((up)); then
  slurm_log "already up (node $NODE: $(sinfo -h -n "$NODE" -o %T 2>/dev/null)); SLURM_CONF=$SLURM_CONF"
  print_exports
  exit 0
fi
if ((alive > 0)); then
  slurm_log "found a partly-running set of daemons; stopping it first"
  "$here/slurm-down.sh" >&2
fi

# --- directories ---------------------------------------------------------------
slurm_log "starting Slurm in $DSDFS_SLURM_DIR (node $NODE, $CPUS CPUs, loopback)"
install -d -m 0755 -o root -g root "$DSDFS_SLURM_DIR"
install -d -m 0755 "$DSDFS_SLURM_DIR/etc" "$PID_DIR"
install -d -m 0700 "$LOG_DIR"
rm -rf "$DSDFS_SLURM_DIR/state" "$DSDFS_SLURM_DIR/spool"
install -d -m 0700 "$DSDFS_SLURM_DIR/state"
install -d -m 0755 "$DSDFS_SLURM_DIR/spool"
rm -f "$PID_DIR"/* "$LOG_DIR"/*
# munged insists: key readable only by its owner, directories not writable
# by group/other, socket directory readable by all (clients connect to it).
install -d -m 0755 -o root -g root "$DSDFS_SLURM_DIR/munge"
install -d -m 0700 -o munge -g munge "$DSDFS_SLURM_DIR/munge/key"
install -d -m 0700 -o munge -g munge "$DSDFS_SLURM_DIR/munge/log"
install -d -m 0755 -o munge -g munge "$DSDFS_SLURM_DIR/munge/run"
keyfile=$DSDFS_SLURM_DIR/munge/key/munge.key
if [[ ! -s "$keyfile" ]]; then
  mungekey --create --keyfile="$keyfile" --force
fi
chown munge:munge "$keyfile"
chmod 0600 "$keyfile"

# --- configuration ---------------------------------------------------------
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
real_mem=$((mem_mb * 9 / 10))
bind_params=
if getent ahostsv4 "$NODE" | awk '{print $1}' | head -n1 | grep -q '^127\.'; then
  bind_params=CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
fi

cat >"$SLURM_PRIV_CONF" <<EOF
# Written by dsdfs scripts/slurm-up.sh; rewritten at every fresh start.
ClusterName=dsdfs
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
$bind_params
StateSaveLocation=$DSDFS_SLURM_DIR/state
SlurmdSpoolDir=$DSDFS_SLURM_DIR/spool
SlurmctldPidFile=$DSDFS_SLURM_DIR/state/slurmctld.pid
SlurmdPidFile=$DSDFS_SLURM_DIR/spool/slurmd.pid
MailProg=/bin/true
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# containers without systemd or cgroup delegation
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
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$DSDFS_SLURM_DIR/etc/cgroup.conf" <<'EOF'
# Written by dsdfs scripts/slurm-up.sh. No cgroup plugin is configured in
# slurm.conf (proctrack/linuxproc, task/none); this only keeps slurmd quiet.
CgroupAutomount=no
EOF
cat >"$DSDFS_SLURM_DIR/env.sh" <<EOF
export SLURM_CONF=$SLURM_PRIV_CONF
export DSDFS_SLURM_DIR=$DSDFS_SLURM_DIR
export DSDFS_MUNGE_SOCKET=$MUNGE_SOCKET
EOF
chmod 0644 "$SLURM_PRIV_CONF" "$DSDFS_SLURM_DIR/etc/cgroup.conf" "$DSDFS_SLURM_DIR/env.sh"

# --- start ---------------------------------------------------------------------
# start_daemon NAME CMD...: run CMD in its own session with stdio on files,
# record its PID, and check it is NAME (setsid execs in place when the
# shell has no job control, so $! is the daemon itself).
start_daemon() {
  local name=$1 pid
  shift
  setsid "$@" </dev/null >>"$LOG_DIR/$name.out" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_DIR/$name"
  sleep 0.2
  [[ -n "$(pid_of "$name")" ]] || fail "$name exited at start (pid $pid)"
  slurm_log "$name started, pid $pid"
}

start_daemon munged setpriv --reuid=munge --regid=munge --init-groups \
  munged --foreground --force \
  --key-file="$keyfile" --socket="$MUNGE_SOCKET" \
  --pid-file="$DSDFS_SLURM_DIR/munge/run/munged.pid" \
  --log-file="$DSDFS_SLURM_DIR/munge/log/munged.log" \
  --seed-file="$DSDFS_SLURM_DIR/munge/key/munged.seed" \
  --origin=127.0.0.1
for ((i = 0; i < 50; i++)); do
  [[ -S "$MUNGE_SOCKET" ]] && break
  sleep 0.1
done
munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null ||
  fail "munge round trip through $MUNGE_SOCKET failed"

start_daemon slurmctld slurmctld -D -f "$SLURM_PRIV_CONF"
start_daemon slurmd slurmd -D -f "$SLURM_PRIV_CONF" -N "$NODE"

# --- wait for the node ---------------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
state=
resumed=0
while ((SECONDS < deadline)); do
  for d in "${SLURM_DAEMONS_STOP_ORDER[@]}"; do
    [[ -n "$(pid_of "$d")" ]] || fail "$d died while starting"
  done
  state=$(timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  case "$state" in
    idle | mixed | allocated) break ;;
    down* | drain* | drained*)
      # left over from an earlier run's state, or an early registration
      if ((!resumed)); then
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        resumed=1
      fi
      ;;
  esac
  sleep 0.5
done
case "$state" in
  idle | mixed | allocated) ;;
  *) fail "node $NODE not idle after ${TIMEOUT}s (state: '${state:-no answer}')" ;;
esac
slurm_log "up: node $NODE $state; SLURM_CONF=$SLURM_CONF (also in $DSDFS_SLURM_DIR/env.sh)"
print_exports
