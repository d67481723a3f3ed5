// SPDX-License-Identifier: Apache-2.0
// BackingFiles (daemon/backing_files.h): one backing id per kernel inode while any of its
// handles is open, given back with the last; conflicts and passthrough writers.
#include "daemon/backing_files.h"

#include <gtest/gtest.h>

#include <vector>

namespace dsdfs::fs {
namespace {

struct FakeKernel {
  int next = 1;
  std::vector<int> registered;  // fds, in order
  std::vector<int> closed;      // ids, in order
  BackingFiles::Register reg() {
    return [this](int fd) {
      registered.push_back(fd);
      return next++;
    };
  }
  BackingFiles::Unregister unreg() {
    return [this](int id) { closed.push_back(id); };
  }
};

TEST(BackingFiles, EveryHandleOfAnInodeSharesTheFirstOnesIdUntilTheLastCloses) {
  BackingFiles b;
  FakeKernel k;
  EXPECT_EQ(b.acquire(10, 1000, /*writable=*/true, 5, k.reg()), 1);
  EXPECT_EQ(b.acquire(10, 1000, /*writable=*/false, 6, k.reg()), 1);  // not registered again
  EXPECT_EQ(k.registered, std::vector<int>{5});
  EXPECT_TRUE(b.conflicts(10));
  EXPECT_FALSE(b.conflicts(11));
  EXPECT_TRUE(b.written_through(1000));
  b.release(10, 1000, /*writable=*/true, k.unreg());
  EXPECT_FALSE(b.written_through(1000));  // the reader is left
  EXPECT_TRUE(k.closed.empty());
  b.release(10, 1000, /*writable=*/false, k.unreg());
  EXPECT_EQ(k.closed, std::vector<int>{1});
  EXPECT_FALSE(b.conflicts(10));
  // The next open registers anew.
  EXPECT_EQ(b.acquire(10, 1000, false, 7, k.reg()), 2);
  b.release(10, 1000, false, k.unreg());
}

TEST(BackingFiles, ARefusedRegistrationKeepsTheInodeOffPassthroughUntilItsLastClose) {
  BackingFiles b;
  int calls = 0;
  auto refuse = [&](int) {
    ++calls;
    return 0;
  };
  FakeKernel k;
  EXPECT_EQ(b.acquire(20, 2000, true, 5, refuse), 0);
  EXPECT_EQ(b.acquire(20, 2000, true, 6, k.reg()), 0);  // stays in the kernel's cached mode
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(k.registered.empty());
  EXPECT_FALSE(b.conflicts(20));
  EXPECT_FALSE(b.written_through(2000));
  b.release(20, 2000, true, k.unreg());
  b.release(20, 2000, true, k.unreg());
  EXPECT_TRUE(k.closed.empty());  // nothing was registered
  EXPECT_EQ(b.acquire(20, 2000, true, 8, k.reg()), 1);
  b.release(20, 2000, true, k.unreg());
  EXPECT_EQ(k.closed, std::vector<int>{1});
}

TEST(BackingFiles, WritersAreCountedPerFileAcrossItsKernelInodes) {
  BackingFiles b;
  FakeKernel k;
  b.acquire(30, 3000, true, 5, k.reg());
  b.acquire(31, 3000, true, 6, k.reg());  // another kernel inode of the same file
  b.release(30, 3000, true, k.unreg());
  EXPECT_TRUE(b.written_through(3000));
  b.release(31, 3000, true, k.unreg());
  EXPECT_FALSE(b.written_through(3000));
  b.release(31, 3000, true, k.unreg());  // an unknown release changes nothing
  EXPECT_EQ(k.closed.size(), 2u);
}

}  // namespace
}  // namespace dsdfs::fs
