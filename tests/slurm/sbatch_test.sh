#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-sbatch: slurm/example-ml.sbatch as a real batch job (sbatch --wait) on
# the one node with 3 dsdfs ranks started by srun (through the job wrapper),
# each with its own mount point (%r) and the default store: 8 inputs with a
# MANIFEST are staged in with --spread (at least two ranks own some, as the
# job's `dsdfs where` of them shows), every rank reads and
# checks every input, writes a checkpoint, reads another rank's and checks
# its sha256, and the checkpoints are staged out by dsdfs_stop --stage-out,
# which then stops dsdfs with `dsdfs stop`. Afterwards this test checks from
# outside: exit 0, the 3 checkpoints in the results directory with the sha256
# each rank computed while writing, no mount left (mountinfo), no
# dsdfs-launch left, the default stores /tmp/dsdfs-<user>-job<id>-r* removed.
. "$(dirname "$0")/lib.sh"
need_slurm
make_work

export DSDFS_LAUNCH DSDFS_MOUNT=$work/mnt%r DSDFS_TASKS_PER_NODE=3 DSDFS_CKPT_MB=4 DSDFS_WAIT=60
export DSDFS_WRAPPER=$SRC/slurm/dsdfs-job-wrapper.sh DSDFS_CLI
export DSDFS_INPUT=$work/input DSDFS_RESULTS=$work/results
mkdir -p "$DSDFS_INPUT"
for i in 0 1 2 3 4 5 6 7; do head -c $((100000 + i * 4099)) /dev/urandom >"$DSDFS_INPUT/in$i.dat"; done
(cd "$DSDFS_INPUT" && sha256sum in*.dat >MANIFEST)
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
expect_in "$out" "stage-in: 9 files"
owners=$(sed -n 's/.*inputs per owner:\(.*\)$/\1/p' "$out" | grep -o 'rank [0-9]*:' | wc -l)
((owners >= 2)) || fail "stage-in --spread: the inputs have $owners owner(s), want at least 2"
for r in 0 1 2; do expect_in "$out" "rank $r on $(hostname -s): 8 inputs read and verified"; done
expect_in "$out" "stage-out: 6 files"
expect_in "$out" "dsdfs step ended (dsdfs_stop exit 0)"
expect_in "$out" "3 checkpoints in $work/results/ckpt, sha256 verified"
expect_in "$out" "job $job: done"
# from outside the job: what arrived is what each rank wrote
for r in 0 1 2; do
  want=$(sed -n "s/^.*rank $r on .*: wrote .*(\([0-9a-f]*\))$/\1/p" "$out")
  got=$(sha256sum <"$work/results/ckpt/rank$r.bin" | cut -d' ' -f1)
  [[ -n "$want" && "$got" == "$want" ]] || fail "staged-out checkpoint of rank $r: sha256 $got, written as ${want:-?}"
done
check_clean "$work" "$job"
log "3 ranks: 8 inputs staged in spread and read by all, checkpoints written and cross-read, staged out whole, clean stop, stores removed"
pass
