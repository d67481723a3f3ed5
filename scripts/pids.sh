# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# pids.sh: processes recorded by PID and start time, so that a recorded PID
# reused by another process is never signalled (sourced by cluster-sim.sh and
# cluster-sim-slurm.sh).

# starttime PID: field 22 of /proc/PID/stat (clock ticks after boot), or nothing.
starttime() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo "${20}"
}
# alive "PID START": the process recorded is still the same one and not a zombie.
alive() {
  local pid=${1%% *} start=${1##* } s
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(starttime "$pid")" == "$start" ]] || return 1
  s=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [[ "${s:0:1}" != Z ]]
}
# close_extra_fds: in a subshell that becomes a long-lived process (holder,
# mpirun, a daemon): close every descriptor but 0-2, so that it keeps no
# caller's pipe or lock open.
close_extra_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}
