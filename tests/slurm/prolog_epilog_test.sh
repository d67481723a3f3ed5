#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# slurm-prolog-epilog: slurm/prolog.sh and slurm/epilog.sh installed as
# Prolog and Epilog (PrologFlags=Alloc) of a second private Slurm started with
# scripts/slurm-up.sh in its own directory and ports (so the shared CI Slurm's
# configuration is never touched), jobs run as an unprivileged user
# (tests/slurm/prolog_job.sh):
#   clean  the prolog made $DSDFS_JOB_ROOT/<job> for the user (mode 700),
#          dsdfs_start/dsdfs_stop from slurm/dsdfs-job-wrapper.sh work as that
#          user, and the epilog removes the job directory
#   crash  rank 1 SIGKILLed, a dsdfs-launch escaped from the job, the job ends
#          without stopping dsdfs: after the epilog nothing is mounted below
#          the job root, no dsdfs-launch of the job runs, the default stores
#          of the job are gone and so is the job directory
# Needs root (it starts Slurm daemons and switches users). The user is
# $DSDFS_SLURM_TEST_USER (default dsdfs-e2e, created as a system user if
# missing). The second Slurm uses $DSDFS_SLURM_PROLOG_DIR
# [/var/tmp/dsdfs-slurm-prolog-test] and ports 6837/6838
# ($DSDFS_SLURM_PROLOG_PORT: slurmctld, +1 slurmd).
. "$(dirname "$0")/lib.sh"
need_slurm
((EUID == 0)) || skip "needs root (starts a second private Slurm and runs jobs as another user)"
command -v useradd >/dev/null || skip "useradd is missing"
make_work

user=${DSDFS_SLURM_TEST_USER:-dsdfs-e2e}
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /bin/bash "$user" || fail "cannot create user $user"
  log "created system user $user"
fi
export STORE_USER=$user

# Copies of dsdfs-launch and dsdfs the user can run whatever the build tree's modes
# (side by side, as installed: the wrapper's dsdfs_stop finds dsdfs there).
install -d -m 0755 "$work/bin" "$work/jobs"
install -m 0755 "$DSDFS_LAUNCH" "$work/bin/dsdfs-launch"
install -m 0755 "${DSDFS_CLI:?DSDFS_CLI is not set (meson test sets it)}" "$work/bin/dsdfs"
install -d -m 0777 "$work/out"
rmdir "$work/jobs" # the prolog creates the job root itself

# --- the second Slurm, with our Prolog and Epilog -----------------------------
export DSDFS_SLURM_DIR=${DSDFS_SLURM_PROLOG_DIR:-/var/tmp/dsdfs-slurm-prolog-test}
port=${DSDFS_SLURM_PROLOG_PORT:-6837}
export DSDFS_SLURMCTLD_PORT=$port DSDFS_SLURMD_PORT=$((port + 1))
at_exit "DSDFS_SLURM_DIR=$DSDFS_SLURM_DIR '$SRC/scripts/slurm-down.sh' >/dev/null 2>&1"
exports=$("$SRC/scripts/slurm-up.sh" 2>"$work/slurm-up.log") || fail "scripts/slurm-up.sh failed: $(cat "$work/slurm-up.log")"
eval "$exports"
for s in prolog epilog; do
  cat >"$work/$s" <<EOF
#!/bin/sh
# the site's settings for slurm/$s.sh
export DSDFS_JOB_ROOT=$work/jobs DSDFS_STORE_DIRS=/tmp DSDFS_EPILOG_STOP_TIMEOUT=5
export DSDFS_SLURM_CONF=/nonexistent
exec $SRC/slurm/$s.sh 2>>$work/$s.log
EOF
  chmod 0755 "$work/$s"
done
sed -i '/^Prolog=/d; /^Epilog=/d; /^PrologFlags=/d' "$SLURM_CONF"
printf 'Prolog=%s\nEpilog=%s\nPrologFlags=Alloc\n' "$work/prolog" "$work/epilog" >>"$SLURM_CONF"
scontrol reconfigure || fail "scontrol reconfigure failed"
for ((i = 0; i < 50; i++)); do
  scontrol show config 2>/dev/null | grep -q "^Epilog *= $work/epilog" && break
  sleep 0.2
done
scontrol show config | grep -q "^Prolog *= $work/prolog" || fail "Slurm did not take the Prolog"
log "second Slurm up ($SLURM_CONF) with Prolog=$work/prolog, Epilog=$work/epilog, PrologFlags=Alloc"

submit() { # submit MODE: the job as $user; sets $job, returns its exit status
  MODE=$1 DSDFS_LAUNCH=$work/bin/dsdfs-launch DSDFS_JOB_ROOT=$work/jobs \
    run_batch 150 "$work/out/$1.out" --export=ALL --uid="$user" --gid="$(id -g "$user")" \
    -N 1 -n 3 --ntasks-per-node=3 -t 3 -D "$work/out" "$(dirname "$0")/prolog_job.sh"
}
# run_mode MODE: submits the job, keeps its output as $work/MODE.out; the job must succeed.
run_mode() {
  local rc=0
  submit "$1" || rc=$?
  cp "$work/out/$1.out" "$work/$1.out" 2>/dev/null || true
  ((rc == 0)) || fail "$1 job $job failed (exit $rc)"
}

# --- clean --------------------------------------------------------------------
run_mode clean
expect_in "$work/clean.out" "job dir $work/jobs/$job: owner=$user mode=700"
expect_in "$work/clean.out" "running as $user"
expect_in "$work/clean.out" "dsdfs is mounted and ready on all 3 ranks"
expect_in "$work/clean.out" "rank 2 reads: from rank 0"
expect_in "$work/clean.out" "dsdfs: stopping 3 of 3 ranks"  # dsdfs_stop's `dsdfs stop`, not its scancel fallback
expect_in "$work/clean.out" "dsdfs_stop exit 0"
expect_in "$work/clean.out" "staged out: from rank 0"
expect_in "$work/clean.out" "all ranks unmounted"
[[ ! -e "$work/jobs/$job" ]] || fail "clean: the epilog left $work/jobs/$job"
check_clean "$work" "$job"
log "clean: job dir prepared for $user and removed after the job"

# --- crash --------------------------------------------------------------------
run_mode crash
expect_in "$work/crash.out" "SIGKILL to rank 1"
expect_in "$work/crash.out" "escaped dsdfs-launch mounted $work/jobs/$job/solo"
expect_in "$work/epilog.log" "job $job: stopping dsdfs-launch processes of the job"
grep -q "job $job: unmounted fuse.dsdfs at $work/jobs/$job/mnt1" "$work/epilog.log" ||
  fail "crash: the epilog did not unmount rank 1's stale mount"
grep -q "job $job: removed store /tmp/dsdfs-$user-job$job-r1" "$work/epilog.log" ||
  fail "crash: the epilog did not remove rank 1's store"
[[ ! -e "$work/jobs/$job" ]] || fail "crash: the epilog left $work/jobs/$job"
check_clean "$work" "$job"
log "crash: epilog: $(grep -c "job $job:" "$work/epilog.log") actions:"
grep "job $job:" "$work/epilog.log" | sed 's/^/    /'
pass
