#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# install-deps.sh: install every Debian package dsdfs needs to build, test and
# run (compiler, meson, FUSE 3, UCX, Open MPI, hwloc, rdma-core, GoogleTest,
# Slurm + munge + PMIx, and the tools the tests and scripts call).
#
# Idempotent. If every package is already installed (checked with dpkg-query)
# it does nothing and returns in well under a second; otherwise it runs
# `apt-get update` once and `apt-get install` of the missing packages only.
#
# While apt runs, a temporary /usr/sbin/policy-rc.d (exit 101) stops package
# scripts from starting munge/slurmctld/slurmd through init scripts: the
# project starts those itself (scripts/slurm-up.sh) and stops them by PID.
#
# Usage: scripts/install-deps.sh        (as root, or with sudo available)
# Env:   DSDFS_DEPS_PRINT=1  print the package list and exit
set -euo pipefail

PACKAGES=(
  # build (clang: the compile-time lock check, scripts/check-locks.sh)
  build-essential pkg-config meson ninja-build python3 clang
  # libraries the code links against
  libfuse3-dev libucx-dev libopenmpi-dev libhwloc-dev libibverbs-dev
  librdmacm-dev libgtest-dev libpmix-dev
  # run time and test tools
  fuse3 ucx-utils openmpi-bin hwloc ibverbs-utils rdma-core fio bindfs attr
  # a real single-node Slurm (slurm-wlm brings slurmctld, slurmd, slurm-client)
  slurm-wlm slurmctld slurmd slurm-client munge
  # system tools used by the scripts (ip, tc, modprobe, ps/pgrep, fuser, mount;
  # nft: packet loss on the emulated cluster's links, tests/sim/faults.sh;
  # iptables' NFQUEUE target and libnetfilter-queue: its added latency, the
  # delay line tests/sim/delay_line.cc; ping: the round trip it gives)
  iproute2 kmod procps psmisc util-linux passwd nftables iptables
  libnetfilter-queue-dev iputils-ping
  # the Debian package (scripts/build-deb.sh)
  dpkg-dev debhelper
)

if [[ "${DSDFS_DEPS_PRINT:-0}" == 1 ]]; then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != ii* ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if ((EUID != 0)); then
  SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"

policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
  if ((made_policy)); then
    "${SUDO[@]}" rm -f "$policy"
  fi
}
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# temporary, from dsdfs scripts/install-deps.sh\nexit 101\n' |
    "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  made_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}"
echo "install-deps: done"
