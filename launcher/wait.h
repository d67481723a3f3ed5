// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "daemon/options.h"

namespace dsdfs::launcher {

// `dsdfs-launch --wait[=S] MOUNTPOINT`: run once per node, like the daemons
// (same srun/mpirun layout, so rank r waits for daemon rank r's mount). Waits
// until this node's dsdfs is mounted and has seen every rank, then compares
// notes with the other waiters (one allgather). Returns 0 when every rank is
// ready; otherwise prints one line naming the ranks that are not, with what
// each is doing, and returns 1.
int run_wait(int argc, char** argv, const fs::Options& options);

}  // namespace dsdfs::launcher
