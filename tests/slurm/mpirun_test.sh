#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-mpirun: dsdfs under mpirun inside an sbatch allocation (the mpirun
# recipe of docs/slurm.md), 3 ranks on the one node: --wait, write on rank 0,
# read on rank 2, SIGTERM to mpirun, every rank unmounted and its store
# removed (tests/slurm/mpirun_job.sh checks inside, this test again outside).
. "$(dirname "$0")/lib.sh"
need_slurm
make_work

out=$work/job.out
rc=0
WORK=$work PPN=3 run_batch 150 "$out" --export=ALL -N 1 -n 3 --ntasks-per-node=3 -t 3 -D "$work" \
  "$(dirname "$0")/mpirun_job.sh" || rc=$?
log "job $job ended with exit $rc"
((rc == 0)) || fail "mpirun job $job failed (exit $rc)"
expect_in "$out" "dsdfs is mounted and ready on all 3 ranks"
expect_in "$out" "written on rank 0, read on rank 2"
expect_in "$out" "all 3 ranks stopped cleanly"
check_clean "$work" "$job"
log "$(grep -o 'mpirun exit .*' "$out")"
pass
