// SPDX-License-Identifier: Apache-2.0
#include "common/hash.h"

#include <gtest/gtest.h>

namespace dsdfs {
namespace {

TEST(Fnv1a64, MatchesPublishedVectors) {
  // Reference values of FNV-1a 64: placement depends on them never changing.
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
}

}  // namespace
}  // namespace dsdfs
