// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "daemon/options.h"

namespace dsdfs::launcher {

// `dsdfs-launch --info`: what this node would use. UCX transports and
// devices (honouring UCX_TLS / UCX_NET_DEVICES), RDMA devices from
// libibverbs (name, port state, link layer), and where hwloc places the NIC
// and the progress thread. Returns the exit code.
int print_info(const fs::Options& options);

// Binds the calling thread to the CPUs near the NIC UCX will use (hwloc), so
// a thread it creates next (the UCX progress thread) starts there; returns a
// description, or why it did not bind. restore_binding() undoes it for the
// caller.
std::string bind_near_nic();
void restore_binding();

}  // namespace dsdfs::launcher
