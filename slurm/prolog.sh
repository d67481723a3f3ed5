#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# prolog.sh: Slurm Prolog for sites that offer dsdfs in every job. It runs as
# root (SlurmdUser) on every node of the job before the job uses it, and
# prepares the job's mount point:
#
#   $DSDFS_JOB_ROOT/$SLURM_JOB_ID     owned by the job's user, mode 0700
#
# so that the job can run `srun ... dsdfs-launch $DSDFS_JOB_ROOT/$SLURM_JOB_ID`
# (or source slurm/dsdfs-job-wrapper.sh and call dsdfs_start) as that user,
# and slurm/epilog.sh knows what to clean up when the job ends.
#
# It does NOT start dsdfs: dsdfs-launch is an MPI job across the job's nodes,
# and a Prolog can start neither srun (the step waits for the Prolog: a
# deadlock) nor anything Slurm tracks. See docs/slurm.md, "Prolog and Epilog".
#
# slurm.conf:
#   Prolog=/usr/share/dsdfs/slurm/prolog.sh
#   Epilog=/usr/share/dsdfs/slurm/epilog.sh
#   PrologFlags=Alloc     # optional: prepare every node at allocation time
#
# Settings (environment, or the file $DSDFS_SLURM_CONF
# [/etc/default/dsdfs-slurm], a shell fragment sourced if it exists):
#   DSDFS_JOB_ROOT   directory holding the per-job mount points   [/dsdfs]
#
# Exit status: 0 when the directory is ready. Anything else makes Slurm drain
# the node and requeue the job held, which is right when the node cannot
# offer what the job was promised; every failure is logged (syslog tag
# dsdfs-prolog, and stderr).
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

conf=${DSDFS_SLURM_CONF:-/etc/default/dsdfs-slurm}
# shellcheck disable=SC1090
[[ -r "$conf" ]] && . "$conf"
root=${DSDFS_JOB_ROOT:-/dsdfs}

log() {
  logger -t dsdfs-prolog -- "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null || true
  echo "dsdfs-prolog: job ${SLURM_JOB_ID:-?}: $*" >&2
}
die() {
  log "error: $*"
  exit 1
}

job=${SLURM_JOB_ID:-}
uid=${SLURM_JOB_UID:-}
gid=${SLURM_JOB_GID:-}
[[ "$job" =~ ^[0-9]+$ ]] || die "SLURM_JOB_ID '$job' is not a job id (not run by slurmd?)"
[[ "$uid" =~ ^[0-9]+$ ]] || die "SLURM_JOB_UID '$uid' is not a uid"
if [[ ! "$gid" =~ ^[0-9]+$ ]]; then
  gid=$(id -g "$uid" 2>/dev/null) || die "no group for uid $uid"
fi
[[ "$root" == /* && "$root" != / ]] || die "DSDFS_JOB_ROOT '$root' must be an absolute path other than /"

# The root must be root's alone: the epilog deletes trees below it as root.
if [[ ! -e "$root" ]]; then
  install -d -m 0755 -o 0 -g 0 "$root" || die "cannot create $root"
fi
[[ -d "$root" && ! -L "$root" ]] || die "$root is not a directory"
read -r owner mode < <(stat -c '%u %a' "$root") || die "cannot stat $root"
[[ "$owner" == 0 ]] || die "$root is owned by uid $owner, not root"
(((8#$mode & 8#022) == 0)) || die "$root is writable by group or others (mode $mode)"

dir=$root/$job
if [[ -e "$dir" || -L "$dir" ]]; then
  # Left over from an earlier job with this id (e.g. after the controller's
  # state was reset): clean it the way the epilog would.
  log "$dir exists already; cleaning it first"
  here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
  SLURM_JOB_ID=$job SLURM_JOB_UID=$uid "$here/epilog.sh" || die "cannot clean the old $dir"
fi
mkdir -m 0700 "$dir" || die "cannot create $dir"
chown "$uid:$gid" "$dir" || die "cannot hand $dir to uid $uid"
exit 0
