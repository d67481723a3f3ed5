# SPDX-License-Identifier: Apache-2.0
#
# slurm-common.sh: shared settings for scripts/slurm-up.sh and
# scripts/slurm-down.sh. Sourced, not run.
#
# Everything of the private Slurm lives under one directory:
#   $DSDFS_SLURM_DIR            (default /var/tmp/dsdfs-slurm)
#     etc/slurm.conf etc/cgroup.conf
#     munge/key/munge.key munge/run/munge.socket.2 munge/log/munged.log
#     state/ (slurmctld StateSaveLocation)  spool/ (SlurmdSpoolDir)
#     log/slurmctld.log log/slurmd.log log/*.out (daemon stdout/stderr)
#     pids/munged pids/slurmctld pids/slurmd   (PIDs recorded at start)
#     env.sh                    (export SLURM_CONF=...; source it)

DSDFS_SLURM_DIR=${DSDFS_SLURM_DIR:-/var/tmp/dsdfs-slurm}
SLURM_PRIV_CONF=$DSDFS_SLURM_DIR/etc/slurm.conf
MUNGE_SOCKET=$DSDFS_SLURM_DIR/munge/run/munge.socket.2
PID_DIR=$DSDFS_SLURM_DIR/pids
LOG_DIR=$DSDFS_SLURM_DIR/log
# Daemons in stop order (reverse of start order).
SLURM_DAEMONS_STOP_ORDER=(slurmd slurmctld munged)

slurm_log() { echo "${0##*/}: $*" >&2; }

# pid_of NAME: print the recorded PID of daemon NAME if that process is
# still alive and still runs the expected program; nothing otherwise.
pid_of() {
  local name=$1 pid comm
  [[ -r "$PID_DIR/$name" ]] || return 0
  pid=$(<"$PID_DIR/$name")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  if [[ "$comm" == "$name" ]]; then
    echo "$pid"
  fi
}

# stop_pid NAME PID: SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == "$name" ]] || return 0
    # a zombie child of ours counts as gone
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
    sleep 0.1
  done
  slurm_log "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

dump_logs() {
  local f
  # *.out is the daemons' stdout/stderr: it repeats the log file and holds
  # what was printed before the log file was opened.
  for f in "$LOG_DIR"/*.log "$DSDFS_SLURM_DIR"/munge/log/munged.log "$LOG_DIR"/*.out; do
    [[ -s "$f" ]] || continue
    echo "----- $f (last 30 lines) -----" >&2
    tail -n 30 "$f" >&2
  done
}
