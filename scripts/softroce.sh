#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# softroce.sh: set up a soft-RoCE (rdma_rxe) device on the loopback interface,
# so UCX's verbs transports can be exercised on a machine without RDMA
# hardware. Loopback only: the device is always bound to `lo`, never to a
# real network interface.
#
#   scripts/softroce.sh          create rxe0 on lo (or find it) and print it
#   scripts/softroce.sh --down   delete the rxe device on lo, if any
#
# Exit codes (stdout carries one line that says what happened):
#   0  the device exists; its name is printed (`rdma link` line, then
#      ibv_devinfo's summary where ibverbs-utils is installed)
#   3  soft-RoCE unavailable: the kernel has no rdma_rxe module (neither
#      built in nor loadable) -- callers treat this as "skip the verbs path"
#   4  rdma_rxe is there but the device could not be created on lo
#   1  usage error or not root
# Environment: DSDFS_RXE_NAME  device name [rxe0]
set -euo pipefail

NAME=${DSDFS_RXE_NAME:-rxe0}
NETDEV=lo

if (($# > 1)) || [[ "${1:---up}" != --up && "${1:-}" != --down ]]; then
  echo "usage: $0 [--up|--down]" >&2
  exit 1
fi
action=${1:---up}

# rxe device already bound to lo, if any: prints its name
rxe_on_lo() {
  rdma link show 2>/dev/null | awk -v nd="$NETDEV" '
    { for (i = 1; i <= NF; i++) if ($i == "netdev" && $(i + 1) == nd) { split($2, a, "/"); print a[1]; exit } }' || true
}

show() {
  local dev=$1
  echo "softroce: $dev on $NETDEV: $(rdma link show "$dev/1" 2>/dev/null || echo "$dev")"
  if command -v ibv_devinfo >/dev/null; then
    ibv_devinfo -d "$dev" 2>/dev/null | grep -E 'hca_id|transport|state|link_layer' >&2 || true
  fi
}

if [[ "$action" == --down ]]; then
  dev=$(rxe_on_lo)
  if [[ -z "$dev" ]]; then
    echo "softroce: no rxe device on $NETDEV"
    exit 0
  fi
  rdma link delete "$dev"
  echo "softroce: deleted $dev"
  exit 0
fi

if ((EUID != 0)); then
  echo "softroce: must run as root" >&2
  exit 1
fi

# Built in (or already loaded) shows up in /sys/module; loadable shows up
# to modinfo / modprobe -n. Anything else: no soft-RoCE on this kernel.
if [[ ! -d /sys/module/rdma_rxe ]]; then
  if ! modinfo rdma_rxe >/dev/null 2>&1 && ! modprobe -n rdma_rxe >/dev/null 2>&1; then
    echo "softroce: soft-RoCE unavailable (kernel $(uname -r) has no rdma_rxe module)"
    exit 3
  fi
  if ! modprobe rdma_rxe >/dev/null 2>&1; then
    echo "softroce: soft-RoCE unavailable (modprobe rdma_rxe failed on kernel $(uname -r))"
    exit 3
  fi
fi

dev=$(rxe_on_lo)
if [[ -n "$dev" ]]; then
  show "$dev"
  exit 0
fi
if ! err=$(rdma link add "$NAME" type rxe netdev "$NETDEV" 2>&1); then
  echo "softroce: rdma_rxe present but 'rdma link add $NAME type rxe netdev $NETDEV' failed: ${err//$'\n'/ }"
  exit 4
fi
dev=$(rxe_on_lo)
if [[ -z "$dev" ]]; then
  echo "softroce: created $NAME but rdma link shows no rxe device on $NETDEV"
  exit 4
fi
show "$dev"
