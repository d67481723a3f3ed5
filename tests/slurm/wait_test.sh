#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-wait: `dsdfs-launch --wait=S MOUNTPOINT`, run with the same layout as
# the daemons, fails after S seconds with one line from rank 0 that names
# exactly the ranks that are not ready, and why:
#   none     no dsdfs at all (srun -n 3): all three ranks named
#   dead     3 ranks under mpirun --enable-recovery, all ready (--wait
#            succeeds), then rank 2 SIGKILLed: only rank 2 named
#   failing  3 ranks under srun, rank 2's mount point is a file: rank 2 fails
#            at once, ranks 0 and 1 wait in bootstrap ("waits for the other
#            ranks to start") until --bootstrap-timeout ends them with a
#            message; nothing is left mounted and their stores are removed
. "$(dirname "$0")/lib.sh"
need_slurm
make_work
L=$DSDFS_LAUNCH
host=$(hostname -s)

# wait_fails NAME LAUNCH-CMD...: run a --wait that must fail; its stderr in
# $work/NAME.log; checks it took the whole timeout and printed one error line.
wait_fails() {
  local name=$1 rc=0 t0=$SECONDS n
  shift
  "$@" >"$work/$name.log" 2>&1 || rc=$?
  ((rc != 0)) || fail "$name: --wait succeeded although ranks are missing"
  ((SECONDS - t0 >= 2)) || fail "$name: --wait gave up after $((SECONDS - t0)) s, before its 2 s"
  n=$(grep -c 'dsdfs-launch: error: dsdfs is not ready after' "$work/$name.log" || true)
  ((n == 1)) || fail "$name: expected one 'not ready' line (from rank 0), found $n"
  log "$name: $(grep 'dsdfs-launch: error:' "$work/$name.log")"
}

# --- none: nothing started -----------------------------------------------------
wait_fails none timeout 60 srun -n 3 --mpi=pmix "$L" --wait=2 "$work/none%r"
expect_in "$work/none.log" "dsdfs is not ready after 2 s on 3 of 3 ranks"
for r in 0 1 2; do
  expect_in "$work/none.log" "rank $r ($host): no dsdfs-launch running for $work/none$r"
done

# --- dead: rank 2 killed --------------------------------------------------------
mpirun -np 3 --enable-recovery --mca odls_base_sigkill_timeout 3 \
  "$L" "$work/d%r" --store "$work/dstore%r" >"$work/dead-daemons.log" 2>&1 &
mp=$!
track_pid "$mp"
timeout 90 mpirun -np 3 "$L" --wait=60 "$work/d%r" >"$work/dead-ready.log" 2>&1 ||
  fail "dead: --wait failed although all ranks were started"
expect_in "$work/dead-ready.log" "dsdfs is mounted and ready on all 3 ranks"
if ! p2=$(rank_pid "$work/d%r" 2); then
  # what there was instead (a rank that died after --wait saw it ready?)
  for p in $(daemons_below "$work/d%r"); do
    echo "dead: dsdfs-launch pid $p: $(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep '^PMIX_RANK=')" >&2
  done
  tail -n 20 "$work/dead-daemons.log" >&2
  fail "dead: no pid for rank 2"
fi
kill -KILL "$p2"
log "dead: killed rank 2 (pid $p2)"
wait_fails dead timeout 60 mpirun -np 3 "$L" --wait=2 "$work/d%r"
expect_in "$work/dead.log" "dsdfs is not ready after 2 s on 1 of 3 ranks: rank 2 ($host): no dsdfs-launch running for $work/d2"
grep -q "rank [01] (" "$work/dead.log" && fail "dead: a ready rank was named as not ready"
kill -TERM "$mp"
wait "$mp" || true
umount -l "$work/d2" || fail "dead: rank 2's mount $work/d2 was not there to clean up"
rm -rf --one-file-system "$work/dstore2"
check_clean "$work"
for r in 0 1; do [[ ! -e "$work/dstore$r" ]] || fail "dead: rank $r left its store"; done

# --- failing: rank 2 cannot start; the others wait in bootstrap -------------------
touch "$work/s2"
srun -n 3 --mpi=pmix "$L" "$work/s%r" --store "$work/sstore%r" --bootstrap-timeout 8 \
  >"$work/failing-daemons.log" 2>&1 &
sp=$!
track_pid "$sp"
for ((i = 0; i < 100; i++)); do
  [[ -e "$work/sstore0" && -e "$work/sstore1" ]] && break
  sleep 0.1
done
wait_fails failing timeout 60 srun -n 3 --mpi=pmix "$L" --wait=2 "$work/s%r"
expect_in "$work/failing.log" "dsdfs is not ready after 2 s on 3 of 3 ranks"
expect_in "$work/failing.log" "rank 2 ($host): no dsdfs-launch running for $work/s2"
for r in 0 1; do
  grep -qE "rank $r \($host\): dsdfs-launch \(pid [0-9]+\) waits for the other ranks to start" "$work/failing.log" ||
    fail "failing: rank $r not reported as waiting in bootstrap"
done
rc=0
timeout 60 bash -c "while kill -0 $sp 2>/dev/null; do sleep 0.2; done" || fail "failing: dsdfs did not end after its bootstrap timeout"
wait "$sp" || rc=$?
((rc != 0)) || fail "failing: srun of the failed dsdfs exited 0"
expect_in "$work/failing-daemons.log" "dsdfs-launch: error: mount point $work/s2 is not a directory"
expect_in "$work/failing-daemons.log" "dsdfs-launch: error: bootstrap timed out after 8 s" 2
log "failing: $(grep -m1 'bootstrap timed out' "$work/failing-daemons.log")"
check_clean "$work"
for r in 0 1; do [[ ! -e "$work/sstore$r" ]] || fail "failing: rank $r left its store"; done
pass
