#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# demo.sh: the README's first quick-start command. Installs what dsdfs needs
# (Debian 12 packages), builds it, and runs a short demo on real mounts:
# three ranks on this one machine (mpirun, loopback only), each with its own
# mount point /tmp/dsdfs-demo/mnt<rank> standing for /shared on three nodes.
# It writes on rank 1, lists and reads on rank 2, appends from rank 2 (the
# bytes land on rank 1), overwrites from rank 2 (rank 2 becomes the owner),
# shows the job with the dsdfs command (status, where, stats), stages the
# results out (every rank copies its own files to a directory standing for
# the parallel file system), and stops it with `dsdfs stop`, which unmounts
# everything. Run as root (for apt).
#
#   scripts/demo.sh               build from this tree (build/) and run it
#   scripts/demo.sh --installed   run the installed programs (the Debian
#                                 package of scripts/build-deb.sh): no build
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

installed=0
case "${1:-}" in
  "") ;;
  --installed) installed=1 ;;
  *) echo "usage: demo.sh [--installed]" >&2; exit 2 ;;
esac
if ((installed)); then
  launch=$(command -v dsdfs-launch) || { echo "demo.sh: no dsdfs-launch installed" >&2; exit 1; }
  cli=$(command -v dsdfs) || { echo "demo.sh: no dsdfs command installed" >&2; exit 1; }
else
  "$here/install-deps.sh"
  if [[ ! -d build ]]; then meson setup build >/dev/null; fi
  ninja -C build launcher/dsdfs-launch launcher/dsdfs >/dev/null
  launch=$root/build/launcher/dsdfs-launch
  cli=$root/build/launcher/dsdfs
fi
echo "demo.sh: running $launch"
# shellcheck source=loopback-env.sh
. "$here/loopback-env.sh"

demo=/tmp/dsdfs-demo
if grep -q " $demo/" /proc/mounts; then
  echo "demo.sh: $demo still has mounts from an earlier run; unmount them first" >&2
  exit 1
fi
rm -rf "$demo"
mkdir -p "$demo"
mpirun -np 3 --enable-recovery "$launch" "$demo/mnt%r" \
  --store "$demo/store%r" --ready-file "$demo/ready%r" >"$demo/log" 2>&1 &
job=$!
stop() {
  kill -TERM "$job" 2>/dev/null || true
  wait "$job" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 200); do
  [[ -f $demo/ready0 && -f $demo/ready1 && -f $demo/ready2 ]] && break
  if ! kill -0 "$job" 2>/dev/null; then cat "$demo/log" >&2; exit 1; fi
  sleep 0.1
done
[[ -f $demo/ready2 ]] || { echo "demo.sh: dsdfs did not come up" >&2; cat "$demo/log" >&2; exit 1; }

run() { echo "\$ $*"; eval "$@"; }
dsdfs() { "$cli" "$@"; }
cd "$demo"
run "echo 'written on rank 1' > mnt1/somefile"
run "ls -l mnt2/"
run "cat mnt2/somefile"
run "getfattr --absolute-names -n user.dsdfs.owner mnt2/somefile"
run "dsdfs where mnt2/somefile"
run "echo 'appended from rank 2' >> mnt2/somefile"
run "cat mnt0/somefile"
run "echo 'rank 2 takes it over' > mnt2/somefile"
run "getfattr --absolute-names -n user.dsdfs.owner mnt0/somefile"
run "ls store1/files store2/files"
run "mkdir mnt0/results && echo ok > mnt1/results/part1 && seq 100000 > mnt2/results/part2 && ls mnt0/results"
run "dsdfs status mnt2"
run "dsdfs stats mnt2 | head -8"
run "mkdir -p pfs && dsdfs stage-out mnt0/results $demo/pfs --verify"
run "ls -l pfs/results"
run "dsdfs stop mnt0"
rc=0
wait "$job" || rc=$?
trap - EXIT
cd "$root"
echo "demo.sh: mpirun exited $rc"
if grep -q " $demo/" /proc/mounts; then
  echo "demo.sh: a mount was left behind" >&2
  exit 1
fi
echo "demo.sh: stopped; every mount is gone"
