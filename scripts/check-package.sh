#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# check-package.sh: the Debian package, as a site would use it. Builds it
# (scripts/build-deb.sh), installs it with apt, checks that it holds both
# programs, their man pages, the Slurm scripts and the guides, runs the
# demo from the installed programs (scripts/demo.sh --installed: write, read,
# append and take over across 3 ranks, dsdfs status, where, stats, a
# stage-out, dsdfs stop), and removes the package again (unless it was
# installed before this script ran). scripts/test.sh runs it as one check.
# Run as root.
#
#   scripts/check-package.sh [DEB]     (DEB: check this package instead of building one)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=$root/build-deb
say() { echo "check-package: $*"; }
fail() {
  say "FAIL: $*" >&2
  exit 1
}

was_installed=0
if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' dsdfs 2>/dev/null || true)" == ii* ]]; then
  was_installed=1
fi
remove() {
  if ((!was_installed)); then dpkg -r dsdfs >/dev/null 2>&1 || true; fi
}
trap remove EXIT

if [[ -n "${1:-}" ]]; then
  deb=$1 # a package built already
else
  "$here/build-deb.sh" "$out"
  deb=$(ls "$out"/dsdfs_*.deb)
fi
say "installing $deb"
apt-get install -y -q "$(realpath "$deb")" >"$out/install.log" 2>&1 || { tail -20 "$out/install.log" >&2; fail "apt-get install"; }

for f in /usr/bin/dsdfs-launch /usr/bin/dsdfs \
  /usr/share/man/man1/dsdfs.1.gz /usr/share/man/man1/dsdfs-launch.1.gz \
  /usr/share/dsdfs/slurm/dsdfs-job-wrapper.sh /usr/share/dsdfs/slurm/prolog.sh \
  /usr/share/dsdfs/slurm/epilog.sh /usr/share/dsdfs/slurm/example-ml.sbatch \
  /usr/share/doc/dsdfs/user-guide.md.gz /usr/share/doc/dsdfs/slurm.md.gz /usr/share/doc/dsdfs/copyright; do
  dpkg -L dsdfs | grep -qx "$f" || fail "the package has no $f"
  [[ -e "$f" ]] || fail "$f is listed but not installed"
done
[[ -x /usr/share/dsdfs/slurm/prolog.sh && -x /usr/share/dsdfs/slurm/epilog.sh ]] || fail "prolog/epilog not executable"
/usr/bin/dsdfs --help >/dev/null 2>&1 || fail "dsdfs --help"
/usr/bin/dsdfs-launch --version | grep -q '^dsdfs' || fail "dsdfs-launch --version"
say "the package holds both programs, man pages, Slurm scripts and guides"

demo_log=$out/demo.log
if ! "$here/demo.sh" --installed >"$demo_log" 2>&1; then
  tail -40 "$demo_log" >&2
  fail "demo.sh --installed"
fi
for want in "demo.sh: running /usr/bin/dsdfs-launch" "rank 1 on" "up" "stage-out: 2 files" \
  "verified" "demo.sh: mpirun exited 0" "demo.sh: stopped; every mount is gone"; do
  grep -qF -- "$want" "$demo_log" || { cat "$demo_log" >&2; fail "demo output lacks '$want'"; }
done
say "demo from the installed programs: OK"
