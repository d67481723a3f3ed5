// SPDX-License-Identifier: Apache-2.0
#include "rdma/rma_probe.h"

#include <gtest/gtest.h>

namespace dsdfs::rdma {
namespace {

// Captured from ucp_ep_print_info() of UCX 1.13.1 on this platform.
constexpr const char* kSharedMemory = R"(#
# UCP endpoint
#
#               peer: <no debug data>
#                 lane[0]:  2:sysv/memory.0 md[2]           -> md[2]/sysv/sysdev[255] am am_bw#0
#                 lane[1]:  3:posix/memory.0 md[3]          -> md[3]/posix/sysdev[255]
#                 lane[2]:  4:cma/memory.0 md[4]            -> md[4]/cma/sysdev[255] rma_bw#0
#
#                 am_send: 0..<egr/short>..93..<egr/bcopy>..8256..<rndv>..(inf)
#                  put[0]: 0..<short>..4294967296..<bcopy>..(inf)
#                  get[0]: 0..<bcopy>..(inf)
#                  put[1]: 0..<short>..4294967296..<bcopy>..(inf)
#                  get[1]: 0..<bcopy>..(inf)
#
#                  rma_bw: mds rndv_rkey_size 9
)";

// Only cma (UCX_TLS=cma,self): gets are zero-copy process_vm_readv.
constexpr const char* kCmaOnly = R"(#
#                 lane[0]:  1:cma/memory.0 md[1]            -> md[1]/cma/sysdev[255] rma_bw#0
#                  get[0]: 0..<zcopy>..(inf)
)";

constexpr const char* kTcpWithRmaLane = R"(#
#                 lane[0]:  0:tcp/lo.0 md[0]                -> md[0]/tcp/sysdev[255] rma_bw#0 am am_bw#0 wireup
#
#                  rma_bw: mds [0] rndv_rkey_size 10
)";

constexpr const char* kTcpPeerMode = R"(#
#                 lane[0]:  1:tcp/lo.0 md[1]                -> md[1]/tcp/sysdev[255] am am_bw#0 keepalive wireup
#
#                  rma_bw: mds rndv_rkey_size 9
)";

constexpr const char* kVerbsAndTcp = R"(#
#                 lane[0]:  1:rc_mlx5/mlx5_0:1.0 md[1]      -> md[1]/ib/sysdev[255] rma_bw#0 am am_bw#0
#                 lane[1]:  3:tcp/eth0.0 md[3]              -> md[3]/tcp/sysdev[255] rma_bw#1
)";

TEST(RmaProbe, SharedMemoryWithGetsByCopyIsEmulated) {
  EXPECT_FALSE(ep_info_rma_is_native(kSharedMemory));
}

TEST(RmaProbe, SharedMemoryWithZeroCopyGetsIsNative) {
  EXPECT_TRUE(ep_info_rma_is_native(kCmaOnly));
  EXPECT_TRUE(ep_info_rma_is_native(
      "#  lane[0]:  1:rc_mlx5/mlx5_0:1.0 md[1] -> md[1]/ib/sysdev[255] rma_bw#0 am\n"
      "#   get[0]: 0..<bcopy>..8256..<zcopy>..(inf)\n"));
}

TEST(RmaProbe, VerbsLaneIsNative) {
  EXPECT_TRUE(ep_info_rma_is_native(
      "#  lane[0]:  1:rc_verbs/mlx5_0:1.0 md[1] -> md[1]/ib/sysdev[255] rma_bw#0 am\n"));
}

TEST(RmaProbe, TcpIsEmulated) {
  EXPECT_FALSE(ep_info_rma_is_native(kTcpWithRmaLane));
  EXPECT_FALSE(ep_info_rma_is_native(kTcpPeerMode));
}

TEST(RmaProbe, AnyEmulatedRmaLaneMakesItEmulated) {
  EXPECT_FALSE(ep_info_rma_is_native(kVerbsAndTcp));
}

TEST(RmaProbe, GarbageAndEmptyAreNotNative) {
  EXPECT_FALSE(ep_info_rma_is_native(""));
  EXPECT_FALSE(ep_info_rma_is_native("lane[ rma_bw\nlane[0]: rma_bw\n"));
  EXPECT_FALSE(ep_info_rma_is_native("#  lane[0]:  1:weird/dev md -> rma_bw#0\n"));
  // "rma_bw" must be a whole usage word.
  EXPECT_FALSE(ep_info_rma_is_native("#  lane[0]:  1:cma/memory md -> xrma_bw am\n"));
}

}  // namespace
}  // namespace dsdfs::rdma
