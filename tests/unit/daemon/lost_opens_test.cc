// SPDX-License-Identifier: Apache-2.0
// LostOpens decides which open is the kernel's one retry of an open answered
// ESTALE. Mistaking a new system call's first open for the retry, or the
// retry for a first open, lets ESTALE reach the application (see
// SameName.OpensOfANameThatOtherRanksCreateAndUnlinkNeverFailWithESTALE).
#include "daemon/lost_opens.h"

#include <gtest/gtest.h>

namespace dsdfs::fs {
namespace {

constexpr pid_t kTid = 100;
constexpr uint64_t kDir = 7;
const std::string kName = "lock";

TEST(LostOpens, TheRetryLooksTheNameUpAndFindsAFileThenLosesAgain) {
  LostOpens l(/*after_lookup=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName)) << "the first loss";
  EXPECT_TRUE(l.pending(kTid, kDir, kName));
  l.looked_up(kTid, kDir, kName, /*found=*/true);
  EXPECT_TRUE(l.retrying(kTid, kDir, kName));
  EXPECT_TRUE(l.lost_again(kTid, kDir, kName)) << "the retry";
  EXPECT_FALSE(l.any()) << "the retry ends the record";
}

TEST(LostOpens, AnOpenWithoutALookupSinceTheLossIsANewCallNotTheRetry) {
  // The failure this guards against: an open lost, its retry found nothing
  // (ENOENT to the application); the thread's next open of the name found a
  // cached entry (a file this node created: no lookup at all) and lost too.
  // Taken for the retry, it got the retry's treatment, and the kernel's
  // real retry that followed was answered as a first loss: ESTALE reached
  // the application.
  LostOpens l(/*after_lookup=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
  l.looked_up(kTid, kDir, kName, /*found=*/false);  // the retry: nothing there (ENOENT)
  EXPECT_FALSE(l.retrying(kTid, kDir, kName));
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName)) << "a new call's first loss";
  l.looked_up(kTid, kDir, kName, /*found=*/true);  // its retry looks and finds a file
  EXPECT_TRUE(l.lost_again(kTid, kDir, kName)) << "its retry";
}

TEST(LostOpens, AnOpenRightAfterTheLossWithNoLookupIsAFirstLossAgain) {
  LostOpens l(/*after_lookup=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName)) << "no lookup in between: not the retry";
  l.looked_up(kTid, kDir, kName, /*found=*/true);
  EXPECT_TRUE(l.lost_again(kTid, kDir, kName));
}

TEST(LostOpens, TheRetryMayFindNothingOnceThenAFile) {
  // Revalidation finds the name empty, the fresh lookup that follows finds
  // a file another rank has just made: that is still the retry.
  LostOpens l(/*after_lookup=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
  l.looked_up(kTid, kDir, kName, /*found=*/false);
  l.looked_up(kTid, kDir, kName, /*found=*/true);
  EXPECT_TRUE(l.lost_again(kTid, kDir, kName));
}

TEST(LostOpens, TwoLookupsThatFindNothingEndTheRecord) {
  // The retry found nothing twice: it ended with ENOENT (or a create). The
  // thread's next call that looks up a file and loses is a first loss.
  LostOpens l(/*after_lookup=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
  l.looked_up(kTid, kDir, kName, /*found=*/false);
  l.looked_up(kTid, kDir, kName, /*found=*/false);
  EXPECT_FALSE(l.pending(kTid, kDir, kName));
  l.looked_up(kTid, kDir, kName, /*found=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName)) << "a first loss";
}

TEST(LostOpens, OnlyTheSameThreadAndName) {
  LostOpens l(/*after_lookup=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
  l.looked_up(kTid + 1, kDir, kName, /*found=*/true);
  l.looked_up(kTid, kDir, "other", /*found=*/true);
  EXPECT_FALSE(l.retrying(kTid, kDir, kName)) << "lookups by other threads or of other names";
  EXPECT_FALSE(l.lost_again(kTid + 1, kDir, kName)) << "another thread's first loss";
  EXPECT_FALSE(l.lost_again(kTid, kDir, "other")) << "another name's first loss";
}

TEST(LostOpens, ASuccessfulOpenEndsTheRecord) {
  LostOpens l(/*after_lookup=*/true);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
  l.looked_up(kTid, kDir, kName, /*found=*/true);
  l.opened(kTid, kDir, kName);
  EXPECT_FALSE(l.any());
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
}

TEST(LostOpens, LinksNeedNoLookup) {
  // A link's retry looks up its old name; the record is keyed by the new one.
  LostOpens l(/*after_lookup=*/false);
  EXPECT_FALSE(l.lost_again(kTid, kDir, kName));
  EXPECT_TRUE(l.lost_again(kTid, kDir, kName));
}

}  // namespace
}  // namespace dsdfs::fs
