#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Batch job of the slurm-rank-death-* tests. 3 dsdfs ranks on this node,
# started by $LAUNCHER (srun or mpirun) as docs/slurm.md says; every rank
# writes a file; rank 1 is killed with SIGKILL (by pid); for the next seconds
# ranks 0 and 2 must keep serving: their own files, each other's files, new
# files; rank 1's file must be gone (ENOENT) or fail (EIO). Then dsdfs is
# stopped the documented way and ranks 0 and 2 must unmount and remove their
# stores. Rank 1's stale mount and store are left for the test to inspect.
# Environment: DSDFS_LAUNCH, WORK, LAUNCHER.
set -uo pipefail
L=$DSDFS_LAUNCH
M=$WORK/mnt%r
say() { echo "[$(date +%T.%3N)] $*"; }
bad=0
check() { # check DESCRIPTION COMMAND...: run, report, count failures
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    say "ok:   $what${out:+ ($out)}"
  else
    say "FAIL: $what: $out"
    bad=$((bad + 1))
  fi
}
gone() { # gone FILE: reading FILE fails (ENOENT or EIO), as a dead owner's file must
  if out=$(cat "$1" 2>&1); then
    echo "still readable: $out"
    return 1
  fi
  echo "$out"
}

case $LAUNCHER in
  srun)
    srun -n 3 --mpi=pmix --overlap --kill-on-bad-exit=0 --job-name=dsdfs \
      "$L" "$M" --store "$WORK/store%r" --log-level info >"$WORK/dsdfs.log" 2>&1 &
    ;;
  mpirun)
    mpirun -np 3 --map-by ppr:3:node --enable-recovery --mca odls_base_sigkill_timeout 3 \
      "$L" "$M" --store "$WORK/store%r" --log-level info >"$WORK/dsdfs.log" 2>&1 &
    ;;
  *) echo "LAUNCHER must be srun or mpirun" >&2; exit 2 ;;
esac
launcher_pid=$!
# On an early exit, stop the launcher: a process whose parent is gone escapes
# proctrack/linuxproc and would outlive the job.
trap 'kill -TERM "$launcher_pid" 2>/dev/null && wait "$launcher_pid"' EXIT
if [[ $LAUNCHER == srun ]]; then
  srun -n 3 --mpi=pmix --overlap "$L" --wait=60 "$M" || exit 1
else
  mpirun -np 3 --map-by ppr:3:node "$L" --wait=60 "$M" || exit 1
fi

for r in 0 1 2; do echo "data of rank $r" >"$WORK/mnt$r/f$r"; done
rank_pid() { # the dsdfs-launch of MPI rank $1 (PMIX_RANK, under srun and mpirun)
  local d
  for d in /proc/[0-9]*; do
    [[ "$(cat "$d/comm" 2>/dev/null)" == dsdfs-launch ]] || continue
    tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF "$WORK/" || continue
    if tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qx "PMIX_RANK=$1"; then
      echo "${d#/proc/}"
      return 0
    fi
  done
  return 1
}
# Looked up a few times: one scan of /proc can miss a process (seen once in
# about ten runs under mpirun).
found=0
for ((i = 0; i < 25; i++)); do
  if p0=$(rank_pid 0) && p1=$(rank_pid 1) && p2=$(rank_pid 2); then
    found=1
    break
  fi
  sleep 0.2
done
if ((!found)); then
  say "cannot find the ranks' pids (dsdfs-launch processes under $WORK with PMIX_RANK 0, 1, 2)"
  exit 1
fi
say "ranks: 0 pid $p0, 1 pid $p1, 2 pid $p2; killing rank 1 with SIGKILL"
echo "$p1" >"$WORK/killed.pid"
kill -KILL "$p1"

for t in 1 3 6; do
  sleep $((t == 1 ? 1 : t == 3 ? 2 : 3))
  say "--- ${t} s after the kill"
  check "rank 0 pid $p0 alive" kill -0 "$p0"
  check "rank 2 pid $p2 alive" kill -0 "$p2"
  check "rank 0 reads its own file" cat "$WORK/mnt0/f0"
  check "rank 2 reads its own file" cat "$WORK/mnt2/f2"
  check "rank 0 reads rank 2's file" cat "$WORK/mnt0/f2"
  check "rank 2 reads rank 0's file" cat "$WORK/mnt2/f0"
  check "rank 0 creates a file, rank 2 reads it" \
    bash -c "echo new-$t >'$WORK/mnt0/new$t' && cat '$WORK/mnt2/new$t'"
  check "rank 1's file is gone for rank 0" gone "$WORK/mnt0/f1"
  check "rank 2 lists the root" bash -c "ls '$WORK/mnt2' | tr '\n' ' '"
done

say "stopping dsdfs"
trap - EXIT
rc=0
if [[ $LAUNCHER == srun ]]; then
  step=$(squeue -h -s -j "$SLURM_JOB_ID" -o '%i %j' | awk '$2 == "dsdfs" { print $1; exit }')
  if [[ -n "$step" ]]; then scancel --signal=TERM "$step"; else say "FAIL: dsdfs step is gone"; bad=$((bad + 1)); fi
else
  kill -TERM "$launcher_pid"
fi
wait "$launcher_pid" || rc=$?
say "$LAUNCHER exit $rc"
for r in 0 2; do
  if awk -v m="$WORK/mnt$r" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; then
    say "FAIL: rank $r: $WORK/mnt$r is still mounted"
    bad=$((bad + 1))
  elif [[ -e "$WORK/store$r" ]]; then
    say "FAIL: rank $r: store $WORK/store$r left behind"
    bad=$((bad + 1))
  else
    say "ok:   rank $r stopped cleanly (unmounted, store removed)"
  fi
done
say "$bad check(s) failed"
((bad == 0))
