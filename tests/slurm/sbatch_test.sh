#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-sbatch: slurm/example-ml.sbatch as a real batch job (sbatch --wait) on
# the one node with 3 dsdfs ranks started by srun, each with its own mount
# point (%r) and the default store: every rank writes a checkpoint, reads
# another rank's and checks its sha256, dsdfs is stopped with
# `scancel --signal=TERM JOB.STEP`, and the job checks its mounts are gone.
# Afterwards this test checks from outside: exit 0, no mount left (mountinfo),
# no dsdfs-launch left, the default stores /tmp/dsdfs-<user>-job<id>-r* removed.
. "$(dirname "$0")/lib.sh"
need_slurm
make_work

export DSDFS_LAUNCH DSDFS_MOUNT=$work/mnt%r DSDFS_TASKS_PER_NODE=3 DSDFS_CKPT_MB=4 DSDFS_WAIT=60
out=$work/job.out
rc=0
BATCH_WAIT=1 run_batch 150 "$out" -N 1 -n 3 --ntasks-per-node=3 -t 3 -D "$work" \
  "$SRC/slurm/example-ml.sbatch" || rc=$?
log "job $job ended with exit $rc"
((rc == 0)) || fail "example-ml.sbatch job $job failed (exit $rc)"
expect_in "$out" "dsdfs is mounted and ready on all 3 ranks"
expect_in "$out" ": wrote $work/mnt" 3
for r in 0 1 2; do
  expect_in "$out" "rank $r on $(hostname -s): checkpoint of rank $(((r + 1) % 3)) verified"
  expect_in "$out" "rank $r on $(hostname -s): $work/mnt$r unmounted"
done
expect_in "$out" "dsdfs step ended (srun exit 0)"
expect_in "$out" "job $job: done"
check_clean "$work" "$job"
log "3 ranks, checkpoints written and cross-read with matching sha256, clean stop, stores removed"
pass
