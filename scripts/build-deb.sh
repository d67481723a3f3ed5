#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# build-deb.sh: build the Debian package of dsdfs with Debian's own tools
# (dpkg-buildpackage, debhelper's meson build system) from this source tree.
#
#   scripts/build-deb.sh [OUTDIR]          -> OUTDIR/dsdfs_<version>_<arch>.deb
#                                             (default OUTDIR: build-deb)
#   apt-get install ./build-deb/dsdfs_*.deb
#
# The package holds /usr/bin/dsdfs-launch and /usr/bin/dsdfs, their man pages,
# the Slurm scripts in /usr/share/dsdfs/slurm (job wrapper, prolog, epilog,
# example-ml.sbatch) and the guides in /usr/share/doc/dsdfs. The packaging
# (control, rules, copyright) lives in scripts/debian/; this script copies the
# tree (git's tracked and untracked, not ignored, files: what a commit of it
# would hold) into a private directory, adds debian/ with a changelog entry
# for this version, and runs `dpkg-buildpackage -b`. The version is the meson
# project's, with +git<commits>.<hash> when the tree is a git checkout
# (+dirty when it has changes). The test suites are not built (-Dtests=false):
# scripts/test.sh runs them on the source tree.
#
# Needs: dpkg-dev, debhelper and the build dependencies of scripts/debian/control
# (scripts/install-deps.sh installs them all).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/build-deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
say() { echo "build-deb: $*"; }

for tool in dpkg-buildpackage dh dpkg-checkbuilddeps; do
  command -v "$tool" >/dev/null || { say "$tool is missing (run scripts/install-deps.sh)" >&2; exit 1; }
done

version=$(sed -n "s/^  version: '\([^']*\)',$/\1/p" "$root/meson.build" | head -1)
[[ -n "$version" ]] || { say "no version in meson.build" >&2; exit 1; }
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  version+="+git$(git -C "$root" rev-list --count HEAD).$(git -C "$root" rev-parse --short=10 HEAD)"
  if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]]; then version+=".dirty"; fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dsdfs-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/dsdfs-$version
mkdir -p "$src"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -C "$src" -xf -
else
  tar -C "$root" --exclude='./build*' -cf - . | tar -C "$src" -xf -
fi
cp -r "$here/debian" "$src/debian"
cat >"$src/debian/changelog" <<EOF
dsdfs ($version) unstable; urgency=medium

  * Built from the dsdfs source tree by scripts/build-deb.sh.

 -- dsdfs developers <dsdfs@localhost.localdomain>  $(date -R)
EOF

(cd "$src" && dpkg-checkbuilddeps) || { say "build dependencies missing (run scripts/install-deps.sh)" >&2; exit 1; }
say "building dsdfs $version in $src"
jobs=$(nproc)
(cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$jobs" dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2
  say "dpkg-buildpackage failed (log above)" >&2
  exit 1
}
deb=$(ls "$work"/dsdfs_"$version"_*.deb)
rm -f "$out"/dsdfs_*.deb
cp "$deb" "$out/"
say "$out/$(basename "$deb")"
