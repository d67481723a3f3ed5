#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-down.sh: stop the private single-node Slurm started by slurm-up.sh.
#
# Cancels every job still known to slurmctld and waits (up to 20 s) for
# them to end, kills by PID any job-step process slurmd still lists
# (`scontrol listpids`), then stops slurmd, slurmctld and munged by the PIDs
# recorded in $DSDFS_SLURM_DIR/pids/ (SIGTERM, then SIGKILL after 15 s).
# A recorded PID is only signalled while /proc/PID/comm still names the
# daemon, so a reused PID is never hit. Nothing is killed by name.
#
# Idempotent: with nothing running it says so and exits 0. State and logs stay
# in $DSDFS_SLURM_DIR for inspection; slurm-up.sh wipes the job state.
# Environment: DSDFS_SLURM_DIR as for slurm-up.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm-common.sh
. "$here/slurm-common.sh"

export SLURM_CONF=$SLURM_PRIV_CONF

any=0
for d in "${SLURM_DAEMONS_STOP_ORDER[@]}"; do
  [[ -n "$(pid_of "$d")" ]] && any=1
done
if ((!any)); then
  slurm_log "nothing running (no live daemon recorded in $PID_DIR)"
  rm -f "$PID_DIR"/* 2>/dev/null || true
  exit 0
fi

# End the jobs while slurmctld and slurmd can still do it cleanly.
if [[ -n "$(pid_of slurmctld)" && -n "$(pid_of slurmd)" ]]; then
  if [[ -n "$(timeout 10 squeue -h -o %i 2>/dev/null || true)" ]]; then
    slurm_log "cancelling remaining jobs"
    timeout 10 scancel --full --quiet --user=ALL 2>/dev/null ||
      timeout 10 scancel --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
      [[ -z "$(timeout 5 squeue -h -t running,completing,pending -o %i 2>/dev/null || true)" ]] && break
      sleep 0.5
    done
  fi
  # Step processes slurmd still tracks (slurmstepd daemonizes away from
  # slurmd, so stopping slurmd alone would leave them behind).
  leftover=$(timeout 10 scontrol listpids 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}' || true)
  for pid in $leftover; do
    slurm_log "killing leftover job process $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo gone))"
    kill -KILL "$pid" 2>/dev/null || true
  done
fi

for d in "${SLURM_DAEMONS_STOP_ORDER[@]}"; do
  pid=$(pid_of "$d")
  if [[ -n "$pid" ]]; then
    slurm_log "stopping $d (pid $pid)"
    stop_pid "$d" "$pid"
  fi
  rm -f "$PID_DIR/$d"
done
slurm_log "stopped"
