// SPDX-License-Identifier: Apache-2.0
#include "daemon/recent_lookups.h"

#include <gtest/gtest.h>

namespace dsdfs::fs {
namespace {

using Clock = RecentLookups::Clock;

RecentLookups::Entry entry(uint64_t ino, Clock::time_point at, off_t size = 10) {
  RecentLookups::Entry e;
  e.ino = ino;
  e.owner = 1;
  e.version = 7;
  e.st.st_size = size;
  e.at = at;
  return e;
}

TEST(RecentLookups, OnlyTheSameThreadAndInodeWithinTheWindow) {
  RecentLookups r;
  const auto t0 = Clock::now();
  r.note(100, entry(5, t0, 42));
  auto got = r.find(100, 5, t0 + std::chrono::microseconds(50));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->st.st_size, 42);
  EXPECT_EQ(got->version, 7u);
  // The GETATTR and the OPEN of one call both find it.
  EXPECT_TRUE(r.find(100, 5, t0 + std::chrono::microseconds(80)).has_value());
  EXPECT_FALSE(r.find(101, 5, t0 + std::chrono::microseconds(50)).has_value()) << "another thread";
  EXPECT_FALSE(r.find(100, 6, t0 + std::chrono::microseconds(50)).has_value()) << "another inode";
  EXPECT_FALSE(r.find(100, 5, t0 + RecentLookups::kWindow + std::chrono::microseconds(1)).has_value())
      << "older than the window";
  EXPECT_FALSE(r.find(100, 5, t0 + std::chrono::microseconds(10)).has_value()) << "gone once expired";
}

TEST(RecentLookups, TheThreadsNextLookupReplacesItsEntry) {
  RecentLookups r;
  const auto t0 = Clock::now();
  r.note(100, entry(5, t0, 1));
  r.note(100, entry(9, t0 + std::chrono::microseconds(10), 2));
  EXPECT_FALSE(r.find(100, 5, t0 + std::chrono::microseconds(20)).has_value());
  auto got = r.find(100, 9, t0 + std::chrono::microseconds(20));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->st.st_size, 2);
}

TEST(RecentLookups, OldEntriesOfOtherThreadsArePruned) {
  RecentLookups r;
  const auto t0 = Clock::now();
  for (pid_t tid = 1; tid <= static_cast<pid_t>(RecentLookups::kPruneAbove) + 10; ++tid) r.note(tid, entry(1, t0));
  const auto later = t0 + 2 * RecentLookups::kWindow;
  r.note(99999, entry(2, later));
  EXPECT_FALSE(r.find(1, 1, later).has_value());
  EXPECT_TRUE(r.find(99999, 2, later).has_value());
}

}  // namespace
}  // namespace dsdfs::fs
