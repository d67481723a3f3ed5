// SPDX-License-Identifier: Apache-2.0
#include "daemon/protocol.h"

#include <gtest/gtest.h>

namespace dsdfs::fs {
namespace {

TEST(DirChange, RoundTripKeepsEveryFieldAndTheOrigin) {
  DirChange c;
  c.kind = DirChange::kRename;
  c.dir = 7;
  c.name = "a";
  c.dir2 = 9;
  c.name2 = "b";
  c.mode = 0755;
  c.uid = 1;
  c.gid = 2;
  c.flags = 4;
  c.atime_s = 10;
  c.atime_ns = 11;
  c.mtime_s = 12;
  c.mtime_ns = 13;
  c.origin = 2;
  c.locator = 1;
  DirChange d;
  ASSERT_TRUE(d.decode(c.encode()));
  EXPECT_EQ(d.kind, c.kind);
  EXPECT_EQ(d.dir, 7u);
  EXPECT_EQ(d.name, "a");
  EXPECT_EQ(d.dir2, 9u);
  EXPECT_EQ(d.name2, "b");
  EXPECT_EQ(d.mode, 0755u);
  EXPECT_EQ(d.flags, 4u);
  EXPECT_EQ(d.mtime_ns, 13);
  EXPECT_EQ(d.origin, 2);
  EXPECT_EQ(d.locator, 1);
  DirChange unset;
  unset.kind = DirChange::kMkdir;
  unset.name = "x";
  ASSERT_TRUE(d.decode(unset.encode()));
  EXPECT_EQ(d.origin, -1);
  EXPECT_EQ(d.locator, -1);
}

TEST(DirChange, BadRankKindOrLengthIsRefused) {
  DirChange c;
  c.kind = DirChange::kSetattr;
  c.origin = -2;
  DirChange d;
  EXPECT_FALSE(d.decode(c.encode()));
  c.origin = 0;
  c.locator = -5;
  EXPECT_FALSE(d.decode(c.encode()));
  c.locator = -1;
  auto bytes = c.encode();
  EXPECT_TRUE(d.decode(bytes));
  bytes.resize(bytes.size() - 8);  // without origin and locator: protocol 1
  EXPECT_FALSE(d.decode(bytes));
  c.kind = 0;
  EXPECT_FALSE(d.decode(c.encode()));
}

}  // namespace
}  // namespace dsdfs::fs
