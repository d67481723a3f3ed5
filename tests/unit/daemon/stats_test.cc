// SPDX-License-Identifier: Apache-2.0
#include "daemon/stats.h"

#include <gtest/gtest.h>

#include <string>

#include "daemon/peers.h"

namespace dsdfs::fs {
namespace {

TEST(Stats, EveryRpcOpHasANameAndItsOwnCounterLine) {
  // Each op number of the protocol names its counter; the unused 17 has none.
  for (uint16_t op = 1; op <= static_cast<uint16_t>(Op::kStageStatus); ++op) {
    if (op == 17) {
      EXPECT_EQ(rpc_op_name(op), nullptr);
      continue;
    }
    ASSERT_NE(rpc_op_name(op), nullptr) << "op " << op;
  }
  EXPECT_STREQ(rpc_op_name(static_cast<size_t>(Op::kFileStat)), "file_stat");
  EXPECT_STREQ(rpc_op_name(static_cast<size_t>(Op::kLocLookup)), "loc_lookup");
  EXPECT_STREQ(rpc_op_name(static_cast<size_t>(Op::kFileWrite)), "file_write");
  EXPECT_STREQ(rpc_op_name(static_cast<size_t>(Op::kStageStatus)), "stage_status");
  EXPECT_EQ(rpc_op_name(kRpcOpSlots), nullptr);

  Stats s;
  s.count_rpc(static_cast<uint16_t>(Op::kFileStat));
  s.count_rpc(static_cast<uint16_t>(Op::kFileStat), 2);
  s.count_rpc(kRpcOpSlots + 5);  // out of range: ignored, never a crash
  const std::string text = s.to_text();
  EXPECT_NE(text.find("\nrpc_file_stat 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nrpc_loc_lookup 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nfuse_lookup 0\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace dsdfs::fs
