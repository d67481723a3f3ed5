// SPDX-License-Identifier: Apache-2.0
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "daemon/buffer_pool.h"
#include "daemon/write_fds.h"

namespace dsdfs::fs {
namespace {

TEST(BufferPool, ReusesReturnedBuffers) {
  auto pool = BufferPool::create(1 << 20, 1);
  auto a = pool->get();
  auto b = pool->get();
  EXPECT_NE(a.get(), b.get());
  a.get()[(1 << 20) - 1] = 7;  // the whole size is usable
  uint8_t* kept = b.get();
  b.reset();  // back to the pool
  EXPECT_EQ(pool->get().get(), kept);
}

TEST(BufferPool, BuffersMayOutliveThePool) {
  auto pool = BufferPool::create(4096, 4);
  auto a = pool->get();
  pool.reset();
  a.get()[0] = 1;
  a.reset();  // freed, not returned to a dead pool
}

UniqueFd open_devnull() { return UniqueFd(::open("/dev/null", O_WRONLY | O_CLOEXEC)); }

TEST(WriteFds, KeepsOneFdPerFileAndModeUntilDropped) {
  WriteFds fds;
  EXPECT_EQ(fds.get(1, true), nullptr);
  auto a = std::make_shared<UniqueFd>(open_devnull());
  std::weak_ptr<UniqueFd> weak = a;
  fds.put(1, true, a);
  a.reset();
  EXPECT_EQ(fds.get(1, false), nullptr) << "append and plain writes have separate fds";
  auto again = fds.get(1, true);
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->valid());
  again.reset();
  fds.drop(1);
  EXPECT_EQ(fds.get(1, true), nullptr);
  // Closed on the sweeper thread (a close inside a FUSE request could wait
  // for that very request), promptly.
  for (int i = 0; i < 500 && !weak.expired(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_TRUE(weak.expired()) << "a dropped fd stays open";
}

// A writer whose file was unlinked, and whose inode number another file got, never gets the
// fd that a write to the new file left cached (see
// InProcessClusterTest.AForwardedWriteNeverLandsInANewFileThatGotTheWritersInodeNumber).
TEST(WriteFds, AnFdIsForTheFileWithItsIdentityOnly) {
  WriteFds fds;
  fds.put(1, true, std::make_shared<UniqueFd>(open_devnull()), 0x1234);
  EXPECT_NE(fds.get(1, true, 0x1234), nullptr);
  EXPECT_EQ(fds.get(1, true, 0x4321), nullptr) << "another file that had inode number 1";
  EXPECT_NE(fds.get(1, true), nullptr) << "a writer that knows no identity";
  fds.put(2, true, std::make_shared<UniqueFd>(open_devnull()));
  EXPECT_NE(fds.get(2, true, 0x4321), nullptr) << "a file system that gives no identity";
}

TEST(WriteFds, EvictsTheLeastRecentlyUsedBeyondTheLimit) {
  WriteFds fds;
  for (uint64_t g = 0; g <= WriteFds::kMax; ++g) {
    fds.put(g, false, std::make_shared<UniqueFd>(open_devnull()));
    if (g == 0) continue;
    EXPECT_NE(fds.get(0, false), nullptr) << "the one in use was evicted at " << g;  // keeps 0 recent
  }
  EXPECT_NE(fds.get(0, false), nullptr);
  EXPECT_EQ(fds.get(1, false), nullptr) << "the least recently used stays";
  fds.close_all();
  EXPECT_EQ(fds.get(0, false), nullptr);
  fds.put(5, false, std::make_shared<UniqueFd>(open_devnull()));
  EXPECT_EQ(fds.get(5, false), nullptr) << "cached after close_all";
}

TEST(WriteFds, UnusedFdsAreClosedByTheSweeper) {
  WriteFds fds(std::chrono::milliseconds(100));
  auto a = std::make_shared<UniqueFd>(open_devnull());
  std::weak_ptr<UniqueFd> weak = a;
  fds.put(1, false, std::move(a));
  for (int i = 0; i < 200 && !weak.expired(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(weak.expired()) << "an unused fd stayed open";
  EXPECT_EQ(fds.size(), 0u);
}

}  // namespace
}  // namespace dsdfs::fs
