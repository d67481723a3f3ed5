# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# lib.sh: shared by the tests of the slurm suite. Sourced; it sets strict mode,
# checks what the test needs (exit 77 = SKIP, or a failure when
# DSDFS_REQUIRE_ALL=1), makes a private work directory and installs an EXIT
# trap that cleans up everything the test started, by id and by PID:
#   - Slurm jobs it submitted (scancel JOBID),
#   - background processes it started (SIGTERM, then SIGKILL),
#   - dsdfs-launch processes whose command line names the work directory,
#   - mounts below the work directory (lazy unmount),
#   - the default-named stores of its jobs (/tmp/dsdfs-<user>-job<id>-r*),
#   - then whatever it registered with at_exit,
# and on failure prints the job outputs and logs kept in the work directory.
#
# Environment (from tests/slurm/meson.build):
#   DSDFS_LAUNCH        dsdfs-launch under test (required)
#   DSDFS_SOURCE_ROOT   the source tree (slurm/, scripts/)
#   DSDFS_REQUIRE_ALL=1 turn every skip into a failure (CI)
#   SLURM_CONF          the Slurm to use; default: $DSDFS_SLURM_DIR/env.sh
#                       (DSDFS_SLURM_DIR defaults to /var/tmp/dsdfs-slurm)
#   DSDFS_KEEP_TEST_DIR=1  keep the work directory (it is named in the log)

set -euo pipefail

T=${T:-$(basename "$0" .sh)}
export DSDFS_SOURCE_ROOT=${DSDFS_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SRC=$DSDFS_SOURCE_ROOT
work=
_pids=()
_jobs=()
_hooks=()

# shellcheck source=../report.sh
. "$SRC/tests/report.sh"

# need_slurm: every tool, FUSE and a Slurm that answers; else skip.
need_slurm() {
  local t env_file state
  [[ -n "${DSDFS_LAUNCH:-}" && -x "${DSDFS_LAUNCH}" ]] ||
    fail "DSDFS_LAUNCH ('${DSDFS_LAUNCH:-}') is not an executable; run through meson test"
  [[ -c /dev/fuse ]] || skip "/dev/fuse is missing"
  for t in fusermount3 mpirun srun sbatch squeue scancel sinfo scontrol; do
    command -v "$t" >/dev/null || skip "$t is not on PATH (scripts/install-deps.sh)"
  done
  if [[ -z "${SLURM_CONF:-}" ]]; then
    env_file=${DSDFS_SLURM_DIR:-/var/tmp/dsdfs-slurm}/env.sh
    [[ -r "$env_file" ]] || skip "Slurm is not up: no SLURM_CONF and no $env_file (run scripts/slurm-up.sh)"
    # shellcheck disable=SC1090
    . "$env_file"
  fi
  state=$(timeout 15 sinfo -h -o %T 2>/dev/null | head -n1 || true)
  case "$state" in
    idle* | mixed* | allocated* | completing*) ;;
    *) skip "Slurm at $SLURM_CONF does not answer or has no usable node (state '${state:-none}'; run scripts/slurm-up.sh)" ;;
  esac
  # shellcheck source=../../scripts/loopback-env.sh
  . "$SRC/scripts/loopback-env.sh"
}

# make_work: the private work directory, readable by Slurm job users.
make_work() {
  work=$(mktemp -d /tmp/dsdfs-slurm-test.XXXXXX)
  chmod 0755 "$work"
  log "work directory $work"
  trap _cleanup EXIT
  # meson's timeout sends SIGTERM: still clean up
  trap 'exit 143' TERM
  trap 'exit 130' INT
}

# track_pid PID / track_job JOBID: clean these up at exit.
# at_exit COMMAND: run COMMAND (a string, eval'ed) last at exit.
track_pid() { _pids+=("$1"); }
track_job() { _jobs+=("$1"); }
at_exit() { _hooks+=("$1"); }

# mounts_below DIR: mount points at or below DIR (from mountinfo, no stat).
mounts_below() {
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
}

# daemons_below DIR: PIDs of dsdfs-launch processes whose command line names DIR.
# procs_below DIR: PIDs of any process (srun, mpirun, ...) whose command line
# names DIR (a private mktemp directory, so they are this test's).
daemons_below() {
  local p
  for p in /proc/[0-9]*; do
    [[ "$(cat "$p/comm" 2>/dev/null)" == dsdfs-launch ]] || continue
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$1"; then echo "${p#/proc/}"; fi
  done
}
procs_below() {
  local p
  for p in /proc/[0-9]*; do
    [[ "${p#/proc/}" != "$$" ]] || continue
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$1"; then echo "${p#/proc/}"; fi
  done
}

# rank_pid DIR RANK: PID of the live dsdfs-launch of MPI rank RANK (PMIX_RANK
# in its environment, set under srun and mpirun) whose command line names DIR.
# (Not from the launchers' status files: old ones name dead PIDs that may have
# been reused.)
rank_pid() {
  local p
  for p in $(daemons_below "$1"); do
    if tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "PMIX_RANK=$2"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# job_stores JOBID: default-named stores of a job that still exist (of user
# $STORE_USER, default: this user).
job_stores() {
  local s
  for s in "${TMPDIR:-/tmp}/dsdfs-${STORE_USER:-$(id -un)}-job$1-r"*; do
    [[ -e "$s" ]] && echo "$s"
  done
  return 0
}

# run_batch TIMEOUT OUTFILE SBATCH-ARGS...: submit a batch job and wait for
# it (polling squeue every 0.3 s: sbatch --wait polls after 2, 10, 42 s);
# sets $job to the job id (tracked for cleanup) and returns the job's exit
# status. Returns once the job's epilog has run. Not for $(...): the tracking
# must reach this shell. With BATCH_WAIT=1 it uses sbatch --wait instead.
job=
run_batch() {
  local timeout=$1 out=$2 rc=0 state deadline code sig
  shift 2
  job=
  deadline=$((SECONDS + timeout))
  if [[ "${BATCH_WAIT:-0}" == 1 ]]; then
    timeout "$timeout" sbatch --wait --parsable -o "$out" "$@" >"$work/.jobid" || rc=$?
  else
    sbatch --parsable -o "$out" "$@" >"$work/.jobid" || fail "sbatch $* failed"
  fi
  job=$(cut -d';' -f1 <"$work/.jobid")
  [[ "$job" =~ ^[0-9]+$ ]] || fail "sbatch printed no job id (exit $rc)"
  track_job "$job"
  ((rc != 124)) || fail "job $job did not finish within $timeout s"
  while :; do
    state=$(squeue -h -j "$job" -t all -o %T 2>/dev/null || true)
    case "$state" in
      PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | "") ;;
      *) break ;;
    esac
    ((SECONDS < deadline)) || fail "job $job not finished within $timeout s (state ${state:-unknown})"
    sleep 0.3
  done
  if [[ "${BATCH_WAIT:-0}" != 1 ]]; then
    rc=$(scontrol show job "$job" | sed -n 's/.* ExitCode=\([0-9]*\):\([0-9]*\).*/\1 \2/p')
    read -r code sig <<<"$rc"
    rc=${code:-1}
    ((${sig:-0} == 0)) || rc=$((128 + sig))
  fi
  return "$rc"
}

# check_clean DIR JOBID...: nothing of dsdfs left: no mount below DIR, no
# dsdfs-launch naming DIR, no default store of the jobs.
check_clean() {
  local dir=$1 j left
  shift
  left=$(mounts_below "$dir")
  [[ -z "$left" ]] || fail "still mounted after the job: $(echo "$left" | tr '\n' ' ')"
  left=$(daemons_below "$dir")
  [[ -z "$left" ]] || fail "dsdfs-launch still running after the job: pids $(echo "$left" | tr '\n' ' ')"
  for j in "$@"; do
    left=$(job_stores "$j")
    [[ -z "$left" ]] || fail "stores of job $j left behind: $(echo "$left" | tr '\n' ' ')"
  done
}

# expect_in FILE TEXT [COUNT]: FILE holds TEXT (at least COUNT times).
expect_in() {
  local n
  n=$(grep -cF -- "$2" "$1" || true)
  ((n >= ${3:-1})) || fail "expected '$2' ${3:-1} time(s) in $(basename "$1"), found $n"
}

pass() {
  log "PASS"
  exit 0
}

_cleanup() {
  local rc=$? p j m s i f h
  set +e
  if ((rc != 0 && rc != 77)) && [[ -n "$work" ]]; then
    for f in "$work"/*.out "$work"/*.log; do
      [[ -s "$f" ]] || continue
      echo "----- $f -----" >&2
      tail -n 80 "$f" >&2
    done
  fi
  for j in "${_jobs[@]}"; do
    if [[ -n "$(squeue -h -j "$j" -t RUNNING,PENDING -o %i 2>/dev/null)" ]]; then
      echo "[$T] cleanup: cancelling job $j" >&2
      scancel "$j" 2>/dev/null
      # give its dsdfs ranks the SIGTERM path (unmount, remove the store)
      for ((i = 0; i < 50; i++)); do
        [[ -z "$(squeue -h -j "$j" -t RUNNING,COMPLETING -o %i 2>/dev/null)" ]] && break
        sleep 0.2
      done
    fi
  done
  for p in "${_pids[@]}"; do
    kill -0 "$p" 2>/dev/null || continue
    echo "[$T] cleanup: stopping pid $p ($(cat "/proc/$p/comm" 2>/dev/null))" >&2
    kill -TERM "$p" 2>/dev/null
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [[ -n "$work" ]]; then
    for p in $(procs_below "$work"); do
      echo "[$T] cleanup: killing pid $p ($(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-100))" >&2
      kill -KILL "$p" 2>/dev/null
    done
    sleep 0.2
    for m in $(mounts_below "$work" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-); do
      echo "[$T] cleanup: lazy unmount $m" >&2
      umount -l "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null
    done
    for j in "${_jobs[@]}"; do
      for s in $(job_stores "$j"); do
        [[ -e "$s/.dsdfs-store" ]] && rm -rf --one-file-system "$s"
      done
    done
    if [[ "${DSDFS_KEEP_TEST_DIR:-0}" == 1 ]]; then
      echo "[$T] kept $work" >&2
    else
      rm -rf --one-file-system "$work"
    fi
  fi
  for h in "${_hooks[@]}"; do eval "$h"; done
  exit "$rc"
}
