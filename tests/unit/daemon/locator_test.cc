// SPDX-License-Identifier: Apache-2.0
#include "daemon/locator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "daemon/pending_names.h"

namespace dsdfs::fs {
namespace {

using Result = LocatorShard::ClaimResult;

LocatorShard all_alive() {
  return LocatorShard([](int) { return true; });
}

TEST(LocatorShard, FirstClaimCreatesLaterClaimsSeeTheOwner) {
  auto s = all_alive();
  auto a = s.claim(0, "f", 1, 0);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->result, Result::kNew);
  auto b = s.claim(0, "f", 2, 0);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->result, Result::kExists);
  EXPECT_EQ(b->prev_owner, 1);
  auto c = s.claim(0, "f", 2, LocatorShard::kExclusive);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.err(), EEXIST);
}

TEST(LocatorShard, ReplaceIfTakesTheNameOnlyFromTheExpectedOwner) {
  auto s = all_alive();
  ASSERT_TRUE(s.claim(0, "f", 1, 0));
  // Expected owner 3 does not hold it: a plain claim answer (exists, owner 1).
  auto a = s.claim(0, "f", 2, LocatorShard::kReplaceIf, 3);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->result, Result::kExists);
  EXPECT_EQ(a->prev_owner, 1);
  // Expected owner 1 holds it: moved to 2.
  auto b = s.claim(0, "f", 2, LocatorShard::kReplaceIf, 1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->result, Result::kMoved);
  EXPECT_EQ(b->prev_owner, 1);
  EXPECT_EQ(s.lookup(0, "f").value(), 2);
  // The old owner's late remove no longer touches the name.
  EXPECT_FALSE(s.remove(0, "f", 1));
  EXPECT_EQ(s.lookup(0, "f").value(), 2);
  // A free name is simply claimed.
  auto c = s.claim(0, "g", 2, LocatorShard::kReplaceIf, 1);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->result, Result::kNew);
}

TEST(LocatorShard, ReplaceIfNeverTakesADirectoryName) {
  auto s = all_alive();
  ASSERT_TRUE(s.claim(0, "d", 0, LocatorShard::kIsDir));
  auto a = s.claim(0, "d", 2, LocatorShard::kReplaceIf, LocatorShard::kDirectory);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.err(), EISDIR);
}

TEST(LocatorShard, ReplaceIfWithAGenerationSparesANewEntryOfTheSameOwner) {
  // Rank 2 found rank 1's entry stale (rank 1 said it has no file: it was
  // unlinking it). Rank 1 then removed the name and created it again: a new
  // entry of the same owner, which rank 2 must not take (two files).
  auto s = all_alive();
  auto first = s.claim(0, "f", 1, 0);
  ASSERT_TRUE(first);
  auto seen = s.claim(0, "f", 2, 0);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->result, Result::kExists);
  EXPECT_EQ(seen->gen, first->gen);
  ASSERT_TRUE(s.remove(0, "f", 1));
  auto again = s.claim(0, "f", 1, 0);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->result, Result::kNew);
  EXPECT_NE(again->gen, first->gen);
  auto late = s.claim(0, "f", 2, LocatorShard::kReplaceIf, 1, seen->gen);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->result, Result::kExists) << "took a newer entry than the stale one";
  EXPECT_EQ(late->prev_owner, 1);
  EXPECT_EQ(late->gen, again->gen);
  // With the current generation, the replace happens.
  auto now = s.claim(0, "f", 2, LocatorShard::kReplaceIf, 1, late->gen);
  ASSERT_TRUE(now);
  EXPECT_EQ(now->result, Result::kMoved);
  EXPECT_EQ(s.lookup(0, "f").value(), 2);
}

TEST(PendingNames, WaitReturnsWhenTheCreateEnds) {
  PendingNames p;
  EXPECT_FALSE(p.wait_while_pending(1, "f", std::chrono::milliseconds(1)));
  auto guard = p.hold(1, "f");
  EXPECT_TRUE(p.pending(1, "f"));
  EXPECT_FALSE(p.pending(1, "g"));
  std::atomic<bool> released{false};
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    released.store(true);
    guard.release();
  });
  EXPECT_TRUE(p.wait_while_pending(1, "f", std::chrono::seconds(10)));
  EXPECT_TRUE(released.load());
  EXPECT_FALSE(p.pending(1, "f"));
  t.join();
}

TEST(PendingNames, NestedHoldsOfOneNameEndWithTheLast) {
  PendingNames p;
  auto a = p.hold(1, "f");
  {
    auto b = p.hold(1, "f");
  }
  EXPECT_TRUE(p.pending(1, "f"));
  a.release();
  EXPECT_FALSE(p.pending(1, "f"));
}

// The owner's answer to another rank's stat of a name it has claimed: the
// create ends between the owner's look in its store (no file yet) and its
// check of the pending creates (none any more). Before the fix that answer was
// ENOENT, the asking rank then replaced the claim and created a second file of
// the same name (InProcessClusterTest.ConcurrentCreatesOfOneNameOpenOneFile
// and the race test SameName.SharedFileCreatedByEveryRankAtOnce..., rarely).
TEST(PendingNames, ACreateThatEndsBetweenTheLookAndTheCheckIsFound) {
  PendingNames p;
  auto creating = p.hold(1, "f");
  bool exists = false;
  int looks = 0;
  int err = p.look_past_create(1, "f", std::chrono::seconds(10), [&] {
    ++looks;
    if (looks == 1) {
      // The creator runs exactly here: makes the file, then ends its hold.
      exists = true;
      creating.release();
      return ENOENT;
    }
    return exists ? 0 : ENOENT;
  });
  EXPECT_EQ(err, 0);
  EXPECT_EQ(looks, 2);
}

TEST(PendingNames, LookPastCreateWaitsForAPendingCreateAndDeniesAnAbsentName) {
  PendingNames p;
  std::atomic<bool> exists{false};
  auto look = [&] { return exists.load() ? 0 : ENOENT; };
  EXPECT_EQ(p.look_past_create(1, "absent", std::chrono::seconds(10), look), ENOENT);
  EXPECT_EQ(p.look_past_create(1, "other", std::chrono::seconds(10), [] { return EACCES; }), EACCES);
  auto creating = p.hold(1, "f");
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    exists.store(true);
    creating.release();
  });
  EXPECT_EQ(p.look_past_create(1, "f", std::chrono::seconds(10), look), 0);
  t.join();
}

}  // namespace
}  // namespace dsdfs::fs
