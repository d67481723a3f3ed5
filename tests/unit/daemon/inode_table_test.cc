// SPDX-License-Identifier: Apache-2.0
#include "daemon/inode_table.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/daemon/temp_dir_test.h"

namespace dsdfs::fs {
namespace {

class InodeTableTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    struct stat st;
    UniqueFd root(open(dir_.c_str(), O_PATH | O_DIRECTORY));
    ASSERT_EQ(fstat(root.get(), &st), 0);
    table_.set_root(std::move(root), st);
  }
  std::pair<UniqueFd, struct stat> open_path(const std::string& name) {
    UniqueFd fd(open((dir_ + "/" + name).c_str(), O_PATH));
    struct stat st{};
    fstat(fd.get(), &st);
    return {std::move(fd), st};
  }
  InodeTable table_;
};

TEST_F(InodeTableTest, SameObjectSameIdAndCountsLookups) {
  close(open((dir_ + "/f").c_str(), O_CREAT | O_WRONLY, 0600));
  auto [fd1, st1] = open_path("f");
  auto a = table_.lookup(std::move(fd1), st1);
  auto [fd2, st2] = open_path("f");
  auto b = table_.lookup(std::move(fd2), st2);
  EXPECT_EQ(a->id, b->id);
  EXPECT_NE(a->id, 1u);
  table_.forget(a->id, 1);
  EXPECT_NE(table_.get(a->id), nullptr);
  table_.forget(a->id, 1);
  EXPECT_EQ(table_.get(a->id), nullptr);
}

TEST_F(InodeTableTest, ForgetOfLastReferenceErasesAndIdsAreNeverReused) {
  close(open((dir_ + "/f").c_str(), O_CREAT | O_WRONLY, 0600));
  auto [fd1, st1] = open_path("f");
  uint64_t first = table_.lookup(std::move(fd1), st1)->id;
  table_.forget(first, 1);
  auto [fd2, st2] = open_path("f");
  uint64_t second = table_.lookup(std::move(fd2), st2)->id;
  EXPECT_NE(first, second);
}

TEST_F(InodeTableTest, UnlinkedHolderIsNotReusedForANewFileWithTheSameStoreInode) {
  close(open((dir_ + "/f").c_str(), O_CREAT | O_WRONLY, 0600));
  auto [fd1, st1] = open_path("f");
  auto old_inode = table_.lookup(std::move(fd1), st1);
  unlink((dir_ + "/f").c_str());
  // Pretend the file system reused the inode number for a new file.
  close(open((dir_ + "/f").c_str(), O_CREAT | O_WRONLY, 0600));
  auto [fd2, st2] = open_path("f");
  st2.st_ino = st1.st_ino;
  st2.st_dev = st1.st_dev;
  auto fresh = table_.lookup(std::move(fd2), st2);
  EXPECT_NE(fresh->id, old_inode->id);
  // The old id stays valid until the kernel forgets it.
  EXPECT_NE(table_.get(old_inode->id), nullptr);
  table_.forget(old_inode->id, 1);
  EXPECT_EQ(table_.get(old_inode->id), nullptr);
  EXPECT_NE(table_.get(fresh->id), nullptr);
}

TEST_F(InodeTableTest, AnUnlinkedFileWhoseHandleIsEvictedIsCutOffItsStoreNumber) {
  // Past the descriptor budget, the oldest handle is closed. For a file with
  // no name left, its store inode number may then go to a new file: the old
  // inode must never be matched to that number again (nor reopened by name).
  table_.set_handle_budget(1);
  close(open((dir_ + "/gone").c_str(), O_CREAT | O_WRONLY, 0600));
  auto [fd1, st1] = open_path("gone");
  auto old_inode = table_.lookup(std::move(fd1), st1);
  ASSERT_EQ(unlink((dir_ + "/gone").c_str()), 0);
  close(open((dir_ + "/other").c_str(), O_CREAT | O_WRONLY, 0600));
  auto [fd2, st2] = open_path("other");
  table_.lookup(std::move(fd2), st2);  // evicts the handle of "gone"
  EXPECT_EQ(old_inode->handle(), nullptr);
  EXPECT_TRUE(old_inode->released.load());
  EXPECT_EQ(table_.find_local(st1.st_dev, st1.st_ino), 0u);
  // A new file that got the same number is a new inode.
  close(open((dir_ + "/new").c_str(), O_CREAT | O_WRONLY, 0600));
  auto [fd3, st3] = open_path("new");
  st3.st_dev = st1.st_dev;
  st3.st_ino = st1.st_ino;
  EXPECT_NE(table_.lookup(std::move(fd3), st3)->id, old_inode->id);
}

TEST_F(InodeTableTest, RootIsNeverForgotten) {
  table_.forget(1, 1000);
  EXPECT_NE(table_.get(1), nullptr);
}

}  // namespace
}  // namespace dsdfs::fs
