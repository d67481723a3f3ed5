# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# dsdfs-job-wrapper.sh: start and stop dsdfs from a batch script in two lines.
# Source it (bash) inside the job; it defines functions and runs nothing:
#
#   . /usr/share/dsdfs/slurm/dsdfs-job-wrapper.sh   # the Debian package's
#   dsdfs_start || exit 1        # dsdfs on every node of the job, mounted and ready
#   srun ./train --ckpt-dir "$DSDFS_MOUNT"
#   dsdfs_stop                   # optional: also done when the script exits
#
# This is the supported way to get dsdfs "in every job": a Prolog cannot start
# it (see docs/slurm.md). With slurm/prolog.sh installed, the default mount
# point $DSDFS_JOB_ROOT/$SLURM_JOB_ID already exists and belongs to the job's
# user, and slurm/epilog.sh cleans up whatever a failed job leaves behind.
#
# Functions
#   dsdfs_start [MOUNTPOINT [dsdfs-launch options...]]
#       srun one dsdfs-launch per node in the background (--mpi=pmix,
#       --overlap, --kill-on-bad-exit=0), then `dsdfs-launch --wait` with the
#       same layout. Exports DSDFS_MOUNT. Installs an EXIT trap that calls
#       dsdfs_stop (replacing an EXIT trap of the caller). Returns 0 when
#       every rank is ready; otherwise stops what it started and returns 1
#       (rank 0's message names the ranks that are not ready).
#   dsdfs_stop [--stage-out SRC DEST]
#       With --stage-out: first `dsdfs stage-out SRC DEST` (every rank copies
#       the files it owns under SRC to DEST, a directory on the parallel file
#       system); its failure is dsdfs_stop's, but dsdfs is stopped anyway.
#       Then `dsdfs stop` on this node's mount (every rank unmounts, removes its
#       store and exits 0); where that cannot reach the job (no `dsdfs`
#       command, no rank on this node), SIGTERM to the dsdfs tasks through
#       `scancel --signal=TERM JOB.STEP`. Then waits for the srun. Returns
#       srun's exit status (0 when every rank stopped cleanly).
#   dsdfs_cmd ARGS...
#       runs the dsdfs command (DSDFS_CLI, else dsdfs beside DSDFS_LAUNCH, else
#       dsdfs on PATH), e.g. `dsdfs_cmd stage-in /lustre/me/data "$DSDFS_MOUNT" --spread`
#       or `dsdfs_cmd status`.
#   dsdfs_task_mount
#       prints the mount point of the calling task (%r and %h expanded with
#       SLURM_PROCID, 0 in the batch script, and the host name); exported, so
#       usable inside srun steps when several ranks share a node.
#   dsdfs_check_unmounted
#       a step on every rank's node that fails if that rank's mount point is
#       still mounted.
#
# Environment
#   DSDFS_LAUNCH          dsdfs-launch to run                [dsdfs-launch]
#   DSDFS_CLI             the dsdfs command                  [dsdfs beside DSDFS_LAUNCH, else on PATH]
#   DSDFS_JOB_ROOT        where the prolog makes job dirs    [/dsdfs]
#   DSDFS_MOUNT           mount point                        [$DSDFS_JOB_ROOT/$SLURM_JOB_ID]
#   DSDFS_TASKS_PER_NODE  dsdfs ranks per node               [1]
#   DSDFS_WAIT            seconds to wait for every rank     [120]

dsdfs_task_mount() {
  # (The batch script itself has no SLURM_PROCID: it runs beside rank 0.)
  local m=${DSDFS_MOUNT//%r/${SLURM_PROCID:-0}}
  echo "${m//%h/$(hostname -s)}"
}

dsdfs_check_unmounted() {
  local m
  m=$(dsdfs_task_mount)
  # mountinfo, not stat: a stale FUSE mount fails stat with ENOTCONN.
  if awk -v m="$m" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "dsdfs: rank $SLURM_PROCID on $(hostname -s): $m is still mounted" >&2
    return 1
  fi
}
export -f dsdfs_task_mount dsdfs_check_unmounted

_dsdfs_layout() {
  echo "--nodes=${SLURM_JOB_NUM_NODES:-1} --ntasks-per-node=${DSDFS_TASKS_PER_NODE:-1}"
}

dsdfs_start() {
  if [[ -z "${SLURM_JOB_ID:-}" ]]; then
    echo "dsdfs_start: not inside a Slurm job" >&2
    return 1
  fi
  if [[ -n "${_dsdfs_srun:-}" ]]; then
    echo "dsdfs_start: dsdfs already started (srun pid $_dsdfs_srun)" >&2
    return 1
  fi
  export DSDFS_MOUNT=${1:-${DSDFS_MOUNT:-${DSDFS_JOB_ROOT:-/dsdfs}/$SLURM_JOB_ID}}
  (($# > 0)) && shift
  local launch=${DSDFS_LAUNCH:-dsdfs-launch}
  local -a layout
  read -r -a layout <<<"$(_dsdfs_layout)"
  # --overlap: share the job's CPUs and memory with the application steps.
  # --kill-on-bad-exit=0: one rank ending badly does not end the others.
  # --job-name: dsdfs_stop finds the step by this name.
  srun "${layout[@]}" --mpi=pmix --overlap --kill-on-bad-exit=0 --job-name=dsdfs \
    "$launch" "$DSDFS_MOUNT" "$@" &
  _dsdfs_srun=$!
  trap 'dsdfs_stop' EXIT
  if ! srun "${layout[@]}" --mpi=pmix --overlap "$launch" --wait="${DSDFS_WAIT:-120}" "$DSDFS_MOUNT"; then
    echo "dsdfs_start: dsdfs did not become ready; stopping it" >&2
    dsdfs_stop || true
    return 1
  fi
}

_dsdfs_cli() {
  local launch=${DSDFS_LAUNCH:-dsdfs-launch} dir
  if [[ -n "${DSDFS_CLI:-}" ]]; then echo "$DSDFS_CLI"; return; fi
  dir=$(dirname "$(command -v "$launch" 2>/dev/null || echo "$launch")")
  if [[ -x "$dir/dsdfs" ]]; then echo "$dir/dsdfs"; else command -v dsdfs; fi
}

dsdfs_cmd() {
  local cli
  cli=$(_dsdfs_cli)
  if [[ -z "$cli" ]]; then
    echo "dsdfs_cmd: no dsdfs command (set DSDFS_CLI)" >&2
    return 2
  fi
  "$cli" "$@"
}

dsdfs_stop() {
  local step rc=0 i cli m stage_rc=0
  [[ -n "${_dsdfs_srun:-}" ]] || return 0
  cli=$(_dsdfs_cli)
  if [[ "${1:-}" == --stage-out ]]; then
    if (($# != 3)); then
      echo "dsdfs_stop: --stage-out needs SRC and DEST" >&2
      stage_rc=2
    elif [[ -z "$cli" ]]; then
      echo "dsdfs_stop: no dsdfs command for --stage-out (set DSDFS_CLI)" >&2
      stage_rc=2
    else
      "$cli" stage-out "$2" "$3" || stage_rc=$?
    fi
  fi
  # Every rank stops as on SIGTERM, asked through this node's daemon.
  m=$(dsdfs_task_mount)
  if [[ -n "$cli" ]] && awk -v m="$m" '$5 == m && / - fuse\.dsdfs / { found = 1 } END { exit !found }' \
      /proc/self/mountinfo && "$cli" stop "$m"; then
    wait "$_dsdfs_srun" || rc=$?
    unset _dsdfs_srun
    trap - EXIT
    ((stage_rc == 0)) || return "$stage_rc"
    return "$rc"
  fi
  # The step appears in squeue a moment after srun starts.
  for ((i = 0; i < 50; i++)); do
    step=$(squeue -h -s -j "$SLURM_JOB_ID" -o '%i %j' 2>/dev/null | awk '$2 == "dsdfs" { print $1; exit }')
    [[ -n "$step" ]] || ! kill -0 "$_dsdfs_srun" 2>/dev/null || { sleep 0.1; continue; }
    break
  done
  # Not `kill $_dsdfs_srun`: srun answers SIGTERM with SIGKILL to its tasks.
  if [[ -n "$step" ]]; then scancel --signal=TERM "$step" || true; fi
  wait "$_dsdfs_srun" || rc=$?
  unset _dsdfs_srun
  trap - EXIT
  ((stage_rc == 0)) || return "$stage_rc"
  return "$rc"
}
