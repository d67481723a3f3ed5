// SPDX-License-Identifier: Apache-2.0
#include "daemon/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/unit/daemon/temp_dir_test.h"

namespace dsdfs::fs {
namespace {

using StoreTest = testing::TempDirTest;

TEST_F(StoreTest, CreatesPrivateStoreWithLayout) {
  auto s = Store::open(dir_ + "/a/store", dir_ + "/mnt");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/a/store").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(stat((dir_ + "/a/store/files").c_str(), &st), 0);
  EXPECT_EQ(stat((dir_ + "/a/store/cache").c_str(), &st), 0);
  EXPECT_EQ(stat((dir_ + "/a/store/.dsdfs-store").c_str(), &st), 0);
}

TEST_F(StoreTest, RefusesStoreInsideMountPoint) {
  auto s = Store::open(dir_ + "/mnt/store", dir_ + "/mnt");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().context().find("inside the mount point"), std::string::npos);
}

TEST_F(StoreTest, RefusesFile) {
  std::string f = dir_ + "/file";
  close(open(f.c_str(), O_CREAT | O_WRONLY, 0600));
  auto s = Store::open(f, dir_ + "/mnt");
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.err(), ENOTDIR);
}

TEST_F(StoreTest, RefusesForeignNonEmptyDirectory) {
  std::string d = dir_ + "/home";
  mkdir(d.c_str(), 0700);
  close(open((d + "/precious").c_str(), O_CREAT | O_WRONLY, 0600));
  auto s = Store::open(d, dir_ + "/mnt");
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.err(), ENOTEMPTY);
  EXPECT_EQ(access((d + "/precious").c_str(), F_OK), 0);
}

TEST_F(StoreTest, ReopensOwnStoreAndRemovesOnlyWhatItOwns) {
  {
    auto s = Store::open(dir_ + "/store", dir_ + "/mnt");
    ASSERT_TRUE(s.is_ok());
    close(open((dir_ + "/store/files/x").c_str(), O_CREAT | O_WRONLY, 0600));
  }
  auto again = Store::open(dir_ + "/store", dir_ + "/mnt");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(access((dir_ + "/store/files/x").c_str(), F_OK), 0);
  EXPECT_TRUE(again->remove().is_ok());
  EXPECT_NE(access((dir_ + "/store").c_str(), F_OK), 0);
}

TEST_F(StoreTest, RemoveKeepsForeignFilesInStoreDirectory) {
  auto s = Store::open(dir_ + "/store", dir_ + "/mnt");
  ASSERT_TRUE(s.is_ok());
  close(open((dir_ + "/store/user-note").c_str(), O_CREAT | O_WRONLY, 0600));
  EXPECT_FALSE(s->remove().is_ok());
  EXPECT_EQ(access((dir_ + "/store/user-note").c_str(), F_OK), 0);
}

TEST_F(StoreTest, RefusesUnwritableStore) {
  std::string d = dir_ + "/ro";
  mkdir(d.c_str(), 0500);
  if (geteuid() != 0) {
    EXPECT_EQ(Store::open(d, dir_ + "/mnt").err(), EACCES);
    return;
  }
  // Root may write anywhere: check as an ordinary user, in a child.
  chmod(dir_.c_str(), 0755);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(2);
    _exit(Store::open(d, dir_ + "/mnt").err() == EACCES ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace dsdfs::fs
