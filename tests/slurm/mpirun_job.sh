#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Batch job of the slurm-mpirun test: the docs/slurm.md mpirun recipe inside an
# sbatch allocation. 3 dsdfs ranks on this node (own mount points and stores
# below $WORK), --wait, a file written on rank 0 and read (sha256) on rank 2,
# then mpirun gets SIGTERM and every rank must unmount and remove its store.
# Environment: DSDFS_LAUNCH, WORK, PPN (ranks per node).
set -euo pipefail
L=$DSDFS_LAUNCH
M=$WORK/mnt%r
np=$((SLURM_JOB_NUM_NODES * PPN))
say() { echo "[$(date +%T)] $*"; }

# --enable-recovery: a rank that dies does not make mpirun end the others.
# odls_base_sigkill_timeout: mpirun's SIGTERM reaches the ranks and its SIGKILL
# follows this many seconds later (default 1: little time to remove a store).
mpirun -np "$np" --map-by "ppr:$PPN:node" --enable-recovery --mca odls_base_sigkill_timeout 3 \
  "$L" "$M" --store "$WORK/store%r" --log-level info >"$WORK/dsdfs.log" 2>&1 &
mp=$!
# On an early exit, stop mpirun: a process whose parent is gone escapes
# proctrack/linuxproc and would outlive the job.
trap 'kill -TERM "$mp" 2>/dev/null && wait "$mp"' EXIT
mpirun -np "$np" --map-by "ppr:$PPN:node" "$L" --wait=60 "$M"

dd if=/dev/urandom of="$WORK/mnt0/data" bs=1M count=8 status=none
want=$(sha256sum <"$WORK/mnt0/data" | cut -d' ' -f1)
got=$(sha256sum <"$WORK/mnt2/data" | cut -d' ' -f1)
[[ "$got" == "$want" ]] || { say "rank 2 read sha256 $got, rank 0 wrote $want"; exit 1; }
say "written on rank 0, read on rank 2: sha256 $got matches"
if command -v getfattr >/dev/null; then
  say "owner seen from rank 2: $(getfattr --absolute-names --only-values -n user.dsdfs.owner "$WORK/mnt2/data")"
fi

say "stopping: SIGTERM to mpirun"
t0=$SECONDS
rc=0
trap - EXIT
kill -TERM "$mp"
wait "$mp" || rc=$?
# Open MPI 4.1's mpirun exits 1 after a SIGTERM even when every rank stopped cleanly.
say "mpirun exit $rc after $((SECONDS - t0)) s"
for r in $(seq 0 $((np - 1))); do
  if awk -v m="$WORK/mnt$r" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; then
    say "rank $r: $WORK/mnt$r is STILL MOUNTED"
    exit 1
  fi
  [[ ! -e "$WORK/store$r" ]] || { say "rank $r: store $WORK/store$r left behind"; exit 1; }
done
# (The ranks' own "stopped on a signal" lines are not checked: mpirun stops
# forwarding their output once it has the SIGTERM. A removed store is the
# proof: removing it is the last step of a clean stop.)
say "all $np ranks stopped cleanly: unmounted, stores removed"
