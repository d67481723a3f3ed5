#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-rank-death-{srun,mpirun}: a dsdfs rank SIGKILLed (by pid) in the
# middle of a batch job. The other ranks must keep serving their own and each
# other's files for the rest of the job and still stop cleanly at its end
# (tests/slurm/rank_death_job.sh). The dead rank's mount is stale and its
# store is left (it had no chance to clean up): this test checks that, and
# removes both (the job's epilog does that on a real cluster, slurm/epilog.sh).
#
# Usage: rank_death_test.sh srun|mpirun
#   srun:   srun --mpi=pmix --kill-on-bad-exit=0. Slurm's PMIx plugin kills
#           the whole step when a rank that is still connected to PMIx dies;
#           dsdfs-launch must have left MPI after bootstrap to survive this.
#   mpirun: mpirun --enable-recovery.
. "$(dirname "$0")/lib.sh"
LAUNCHER=${1:-}
[[ "$LAUNCHER" == srun || "$LAUNCHER" == mpirun ]] || fail "usage: $0 srun|mpirun"
T="rank_death_test $LAUNCHER" # the name in log lines (lib.sh)
export T
need_slurm
make_work

out=$work/job.out
rc=0
WORK=$work LAUNCHER=$LAUNCHER run_batch 150 "$out" --export=ALL -N 1 -n 3 --ntasks-per-node=3 -t 3 \
  -D "$work" "$(dirname "$0")/rank_death_job.sh" || rc=$?
log "job $job ended with exit $rc"
if ((rc != 0)); then
  if grep -q "_errhandler.*Error handler invoked" "$out" "$work/dsdfs.log" 2>/dev/null; then
    fail "Slurm's PMIx plugin killed the whole dsdfs step when rank 1 died" \
      "(slurmstepd: mpi/pmix _errhandler -> SIGKILL to the step): dsdfs-launch is still" \
      "connected to PMIx after bootstrap; it must MPI_Finalize once every rank is ready"
  fi
  fail "rank death job $job failed (exit $rc); see the checks in job.out"
fi
expect_in "$out" "0 check(s) failed"
expect_in "$out" "ok:   rank 0 stopped cleanly"
expect_in "$out" "ok:   rank 2 stopped cleanly"

# The killed rank: its mount is stale (ENOTCONN) and its store is still there.
m1=$work/mnt1
if [[ -n "$(mounts_below "$m1")" ]]; then
  err=$(stat "$m1" 2>&1 >/dev/null || true)
  log "rank 1's mount is stale as expected (${err:-stat succeeded}); lazy unmount"
  umount -l "$m1" || fail "cannot unmount rank 1's stale mount $m1"
else
  log "rank 1's mount point is not mounted any more"
fi
[[ -e "$work/store1/.dsdfs-store" ]] && log "rank 1's store is left, as a SIGKILLed rank leaves it; removing it"
rm -rf --one-file-system "$work/store1"
check_clean "$work" "$job"
log "rank 1 killed: ranks 0 and 2 served for 6 s and stopped cleanly under $LAUNCHER"
pass
