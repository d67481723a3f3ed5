#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# epilog.sh: Slurm Epilog that leaves no dsdfs of a job behind on a node.
# It runs as root (SlurmdUser) on every node of the job after the job's
# processes have been killed, and:
#
#  1. stops dsdfs-launch processes of the job that are still alive (found
#     through /proc/PID/environ SLURM_JOB_ID; they escaped Slurm's process
#     tracking): SIGTERM, so they unmount and remove their stores, and SIGKILL
#     after DSDFS_EPILOG_STOP_TIMEOUT seconds;
#  2. lazily unmounts (umount -l) every mount at or below the job's directory
#     $DSDFS_JOB_ROOT/$SLURM_JOB_ID, deepest first: stale dsdfs mounts of
#     ranks that died (SIGKILL, OOM killer) and any other FUSE mount the job
#     left there;
#  3. removes the job's dsdfs stores left by ranks that died: directories
#     DIR/dsdfs-<user>-job<id>-r<rank> (dsdfs's default store name) in each
#     DIR of DSDFS_STORE_DIRS that carry dsdfs's marker file .dsdfs-store and
#     belong to the job's user;
#  4. removes the status files of dead dsdfs-launch processes of the user
#     (DIR/.dsdfs-<uid>-*.status) and the job's directory itself.
#
# Mounts outside $DSDFS_JOB_ROOT/$SLURM_JOB_ID whose daemon died cannot be
# told apart from other jobs' mounts and are left alone (the next dsdfs-launch
# on that mount point, or `umount -l`, removes them). Stores given with
# --store outside the job directory are the job's business.
#
# slurm.conf: Epilog=/usr/share/dsdfs/slurm/epilog.sh (with slurm/prolog.sh as
# Prolog). Settings (environment, or the file $DSDFS_SLURM_CONF
# [/etc/default/dsdfs-slurm], sourced if it exists):
#   DSDFS_JOB_ROOT              per-job mount point directories   [/dsdfs]
#   DSDFS_STORE_DIRS            where default stores live         ["/tmp /var/tmp"]
#   DSDFS_EPILOG_STOP_TIMEOUT   seconds from SIGTERM to SIGKILL    [10]
#
# Exit status: 0 when nothing of the job is left; 1 when a mount of the job
# survives (Slurm then drains the node: it is not clean). Everything done is
# logged (syslog tag dsdfs-epilog, and stderr).
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

conf=${DSDFS_SLURM_CONF:-/etc/default/dsdfs-slurm}
# shellcheck disable=SC1090
[[ -r "$conf" ]] && . "$conf"
root=${DSDFS_JOB_ROOT:-/dsdfs}
store_dirs=${DSDFS_STORE_DIRS:-/tmp /var/tmp}
stop_timeout=${DSDFS_EPILOG_STOP_TIMEOUT:-10}

log() {
  logger -t dsdfs-epilog -- "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null || true
  echo "dsdfs-epilog: job ${SLURM_JOB_ID:-?}: $*" >&2
}

job=${SLURM_JOB_ID:-}
uid=${SLURM_JOB_UID:-}
if [[ ! "$job" =~ ^[0-9]+$ || ! "$uid" =~ ^[0-9]+$ ]]; then
  log "error: SLURM_JOB_ID '$job' / SLURM_JOB_UID '$uid' missing (not run by slurmd?)"
  exit 1
fi
user=${SLURM_JOB_USER:-$(getent passwd "$uid" | cut -d: -f1)}
[[ "$root" == /* && "$root" != / ]] || { log "error: DSDFS_JOB_ROOT '$root' is not absolute"; exit 1; }
dir=$root/$job

# --- 1. live dsdfs-launch processes of the job -----------------------------
job_daemons() {
  local p comm
  for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    [[ "$comm" == dsdfs-launch ]] || continue
    if tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx -e "SLURM_JOB_ID=$job" -e "SLURM_JOBID=$job"; then
      echo "${p#/proc/}"
    fi
  done
}
alive() {
  local p
  for p in "$@"; do
    # a zombie has exited already
    if [[ -e /proc/$p && "$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)" != Z ]]; then echo "$p"; fi
  done
}
mapfile -t pids < <(job_daemons)
if ((${#pids[@]})); then
  log "stopping dsdfs-launch processes of the job: ${pids[*]} (SIGTERM)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  while ((SECONDS < deadline)); do
    mapfile -t pids < <(alive "${pids[@]}")
    ((${#pids[@]})) || break
    sleep 0.2
  done
  mapfile -t pids < <(alive "${pids[@]}")
  if ((${#pids[@]})); then
    log "dsdfs-launch processes ${pids[*]} ignored SIGTERM for ${stop_timeout}s; SIGKILL"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  fi
fi

# --- 2. mounts at or below the job directory --------------------------------
# mountinfo field 5 is the mount point, with space, tab, newline and
# backslash written as octal escapes.
job_mounts() {
  awk -v d="$dir" '{ print $5 }' /proc/self/mountinfo |
    while IFS= read -r m; do
      m=$(printf '%b' "$m")
      if [[ "$m" == "$dir" || "$m" == "$dir"/* ]]; then echo "$m"; fi
    done | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}
mapfile -t mounts < <(job_mounts)
for m in "${mounts[@]}"; do
  type=$(awk -v m="$m" '{ mp = $5; for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
                        mp == m { print t }' /proc/self/mountinfo | tail -n1)
  # -c: do not follow symlinks in a directory the job's user owns
  if umount -l -c "$m" 2>/dev/null; then
    log "unmounted ${type:-mount} at $m (lazy)"
  else
    log "error: cannot unmount ${type:-mount} at $m"
  fi
done

# --- 3. stores of the job (default names) -----------------------------------
for d in $store_dirs; do
  for s in "$d/dsdfs-$user-job$job-r"*; do
    [[ -d "$s" && ! -L "$s" && -e "$s/.dsdfs-store" ]] || continue
    [[ "$(stat -c %u "$s")" == "$uid" ]] || continue
    if rm -rf --one-file-system -- "$s"; then
      log "removed store $s"
    else
      log "error: cannot remove store $s"
    fi
  done
  # --- 4a. status files of dead dsdfs-launch processes of the user ---------
  for f in "$d/.dsdfs-$uid-"*.status; do
    [[ -f "$f" && ! -L "$f" ]] || continue
    p=$(awk '$1 == "pid" { print $2 }' "$f" 2>/dev/null)
    if [[ "$p" =~ ^[0-9]+$ ]] && [[ -z "$(alive "$p")" ]]; then rm -f -- "$f"; fi
  done
done

# --- 4b. the job directory --------------------------------------------------
rc=0
mapfile -t mounts < <(job_mounts)
if ((${#mounts[@]})); then
  log "error: still mounted after cleanup: ${mounts[*]}"
  rc=1
elif [[ -e "$dir" || -L "$dir" ]]; then
  rm -rf --one-file-system -- "$dir" || { log "error: cannot remove $dir"; rc=1; }
fi
exit "$rc"
