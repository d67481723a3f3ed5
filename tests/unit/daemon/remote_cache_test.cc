// SPDX-License-Identifier: Apache-2.0
#include "daemon/remote_cache.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/unit/daemon/temp_dir_test.h"

namespace dsdfs::fs {
namespace {

class RemoteCacheTest : public testing::TempDirTest {
 protected:
  size_t files() const {
    size_t n = 0;
    if (DIR* d = opendir(dir_.c_str())) {
      while (struct dirent* e = readdir(d)) n += e->d_name[0] != '.';
      closedir(d);
    }
    return n;
  }
  // The reaper frees replaced versions in the background.
  bool wait_for_files(size_t n) {
    for (int i = 0; i < 500; ++i) {
      if (files() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return files() == n;
  }
};

// A fetch that finds the file changed drops its entry while other handles still read it;
// the next open of that same version makes a new entry. Before the fix both used one cache
// file (named by file and version), whose O_TRUNC turned the old handles' bytes into zeros:
// the torture test's torn reads of files replaced by rename ("version-content").
TEST_F(RemoteCacheTest, AnEntryStillReadKeepsItsBytesWhenItsVersionIsOpenedAgain) {
  RemoteCache cache(dir_);
  bool hit = true;
  auto a = cache.open(7, 70, 2 << 20, &hit);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  std::shared_ptr<CacheEntry> old = a.value();
  for (size_t i = 0; i < (2u << 20); i += 4096) old->data()[i] = 0x5a;
  cache.drop(7, 70);
  auto b = cache.open(7, 70, 2 << 20, &hit);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_FALSE(hit);
  EXPECT_NE(b.value(), old);
  size_t zeros = 0;
  for (size_t i = 0; i < (2u << 20); i += 4096) zeros += old->data()[i] != 0x5a;
  EXPECT_EQ(zeros, 0u) << "pages of the entry still in use lost their bytes";
  EXPECT_EQ(b.value()->data()[4096], 0) << "the new entry starts empty";
}

TEST_F(RemoteCacheTest, EntriesAreMappedAndKeyedByVersion) {
  RemoteCache cache(dir_);
  bool hit = true;
  auto a = cache.open(1, 10, 3 << 20, &hit);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_FALSE(hit);
  ASSERT_NE(a.value()->data(), nullptr);
  a.value()->data()[(3 << 20) - 1] = 42;  // the whole size is mapped, writable
  auto again = cache.open(1, 10, 3 << 20, &hit);
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(hit);
  EXPECT_EQ(again.value(), a.value());
  auto empty = cache.open(2, 1, 0, &hit);
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(empty.value()->data(), nullptr);
  // A new version replaces the old one; its file goes once nobody uses it.
  a = Status::error(ENOENT);
  again = Status::error(ENOENT);
  auto b = cache.open(1, 11, 1 << 20, &hit);
  ASSERT_TRUE(b.is_ok());
  EXPECT_FALSE(hit);
  EXPECT_TRUE(wait_for_files(2)) << files() << " cache files";
}

TEST_F(RemoteCacheTest, EvictUnusedFreesOnlyWhatNobodyHolds) {
  RemoteCache cache(dir_);
  bool hit;
  auto held = cache.open(1, 1, 4096, &hit);
  ASSERT_TRUE(held.is_ok());
  ASSERT_TRUE(cache.open(2, 1, 4096, &hit).is_ok());
  ASSERT_TRUE(cache.open(3, 1, 4096, &hit).is_ok());
  ASSERT_TRUE(cache.open(4, 1, 4096, &hit).is_ok());
  EXPECT_EQ(files(), 4u);
  // 1 is open, 4 is the one being fetched: 2 and 3 go, at once.
  EXPECT_EQ(cache.evict_unused(4), 2u);
  EXPECT_EQ(files(), 2u);
  ASSERT_TRUE(cache.open(1, 1, 4096, &hit).is_ok());
  EXPECT_TRUE(hit) << "the held entry was evicted";
  cache.open(2, 1, 4096, &hit);
  EXPECT_FALSE(hit) << "an evicted entry is still there";
}

}  // namespace
}  // namespace dsdfs::fs
