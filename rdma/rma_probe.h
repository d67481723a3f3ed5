// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string_view>

namespace dsdfs::rdma {

// Decides from the text of ucp_ep_print_info() whether one-sided RMA on that
// endpoint runs natively (hardware or shared memory) or would be emulated.
//
// UCX 1.13 has no API that names the transports of an endpoint; its lane
// table is printed as lines like
//   "#  lane[2]:  4:cma/memory.0 md[4]  -> md[4]/cma/sysdev[255] rma_bw#0"
// We collect the transport name ("cma") of every lane used for "rma_bw".
// Native means: at least one rma_bw lane, and every rma_bw lane is a
// transport in the allow list (rc/dc verbs and mlx5 variants, self, and
// the shared-memory transports cma, knem, xpmem, sysv, posix, and GPU IPC).
// tcp lanes, or no rma_bw lane at all (UCX then emulates RMA over active
// messages), mean not native. Unknown transports count as not native: a
// false "no" costs speed, a false "yes" would cost far more.
// The protocol table that follows the lanes ("get[0]: 0..<bcopy>..(inf)")
// must also show a zero-copy get on every get line: UCX 1.13 over shared
// memory routes gets to sysv/posix, which copy from their own segments and
// cannot read registered user memory (an mmap'd file), although the
// rma_bw lane is cma.
bool ep_info_rma_is_native(std::string_view ep_info);

}  // namespace dsdfs::rdma
