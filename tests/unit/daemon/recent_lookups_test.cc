// SPDX-License-Identifier: Apache-2.0
#include "daemon/recent_lookups.h"

#include <gtest/gtest.h>

namespace dsdfs::fs {
namespace {

using Clock = RecentLookups::Clock;

RecentLookups::Entry entry(uint64_t ino, Clock::time_point at, off_t size = 10, bool superseded = false) {
  RecentLookups::Entry e;
  e.ino = ino;
  e.ref = RemoteRef{1, 3, "log", 77, 7};
  e.st.st_size = size;
  e.at = at;
  e.superseded = superseded;
  return e;
}

TEST(RecentLookups, OnlyTheSameThreadAndInodeWithinTheWindow) {
  RecentLookups r;
  const auto t0 = Clock::now();
  r.note(100, entry(5, t0, 42));
  auto got = r.find(100, 5, t0 + std::chrono::microseconds(50));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->st.st_size, 42);
  EXPECT_EQ(got->ref.version, 7u);
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

// The kernel's fresh lookup after its revalidation failed on a new version:
// once, for the same thread and name, within the window, and only as the
// thread's very next request.
TEST(RecentLookups, ASecondLookupTakesASupersedingAnswerOnce) {
  using std::chrono::microseconds;
  RecentLookups r;
  const auto t0 = Clock::now();
  r.note(100, entry(5, t0, 42, /*superseded=*/true));
  EXPECT_FALSE(r.relookup(101, 3, "log", t0 + microseconds(5)).has_value()) << "another thread";
  r.other_request(101);  // another thread's request changes nothing for thread 100
  auto got = r.relookup(100, 3, "log", t0 + microseconds(10));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->ino, 5u);
  EXPECT_EQ(got->st.st_size, 42);
  EXPECT_FALSE(r.relookup(100, 3, "log", t0 + microseconds(20)).has_value()) << "only once";
  EXPECT_TRUE(r.find(100, 5, t0 + microseconds(30)).has_value()) << "the GETATTR after it still takes the entry";

  r.note(100, entry(6, t0, 1, /*superseded=*/false));
  EXPECT_FALSE(r.relookup(100, 3, "log", t0 + microseconds(10)).has_value()) << "nothing superseded";

  r.note(100, entry(7, t0, 1, /*superseded=*/true));
  EXPECT_FALSE(r.relookup(100, 4, "log", t0 + microseconds(10)).has_value()) << "another directory";
  EXPECT_FALSE(r.relookup(100, 3, "log", t0 + microseconds(20)).has_value()) << "a lookup of another name came between";

  r.note(100, entry(7, t0, 1, /*superseded=*/true));
  EXPECT_TRUE(r.find(100, 7, t0 + microseconds(10)).has_value());
  EXPECT_FALSE(r.relookup(100, 3, "log", t0 + microseconds(20)).has_value()) << "the call went on to a GETATTR";

  r.note(100, entry(8, t0, 1, /*superseded=*/true));
  r.other_request(100);  // an UNLINK, a LINK, a RENAME of the name...
  EXPECT_FALSE(r.relookup(100, 3, "log", t0 + microseconds(20)).has_value()) << "another request came between";

  r.note(100, entry(9, t0, 1, /*superseded=*/true));
  EXPECT_FALSE(r.relookup(100, 3, "log", t0 + RecentLookups::kRelookupWindow + microseconds(1)).has_value())
      << "older than the window";
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
