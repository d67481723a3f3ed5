// SPDX-License-Identifier: Apache-2.0
#include "common/status.h"

#include <gtest/gtest.h>

namespace dsdfs {
namespace {

TEST(Status, OkHasNoErrno) {
  Status s;
  EXPECT_TRUE(s.is_ok());
  EXPECT_EQ(s.err(), 0);
  EXPECT_EQ(s.to_string(), "ok");
}

TEST(Status, ErrorCarriesErrnoAndContext) {
  Status s = Status::error(ENOENT, "open /x");
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.err(), ENOENT);
  EXPECT_EQ(s.to_string(), "open /x: No such file or directory");
}

TEST(Status, ErrorWithZeroErrnoBecomesEio) {
  // An error must never look like success.
  EXPECT_EQ(Status::error(0, "x").err(), EIO);
}

TEST(Result, HoldsValueOrStatus) {
  Result<int> good(42);
  ASSERT_TRUE(good.is_ok());
  EXPECT_EQ(good.value(), 42);
  Result<int> bad(Status::error(EACCES, "y"));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.err(), EACCES);
}

}  // namespace
}  // namespace dsdfs
