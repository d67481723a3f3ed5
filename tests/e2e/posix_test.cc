// SPDX-License-Identifier: Apache-2.0
// POSIX behaviour of a real dsdfs mount, one rank, through ordinary system calls.
//
// One dsdfs-launch serves the whole Posix suite (SetUpTestSuite); every test works in its
// own directory, named after the test, so tests do not see each other's files. If the
// daemon dies during a test, that test fails with the daemon's exit status and log, and the
// next test gets a fresh daemon. PosixRestart runs its own daemons (stop and start again).

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "common/hash.h"
#include "tests/e2e/e2e_env.h"
#include "tests/e2e/mount_fixture.h"

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

namespace dsdfs::e2e {
namespace {

constexpr off_t kKiB = 1024;
constexpr off_t kMiB = 1024 * kKiB;
constexpr off_t kGiB = 1024 * kMiB;

struct timespec realtime_now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

double to_seconds(const struct timespec& ts) { return ts.tv_sec + ts.tv_nsec / 1e9; }

// Timestamps of a file system may come from a coarse clock: allow this much on each side.
constexpr double kTimeSlack = 1.0;

::testing::AssertionResult time_within(const char* what, const struct timespec& t,
                                       const struct timespec& lo, const struct timespec& hi) {
  double v = to_seconds(t), a = to_seconds(lo) - kTimeSlack, b = to_seconds(hi) + kTimeSlack;
  if (v >= a && v <= b) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << " = " << std::fixed << v << " is outside ["
                                       << a << ", " << b << "]";
}

class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t m) : old_(umask(m)) {}
  ~ScopedUmask() { umask(old_); }

 private:
  mode_t old_;
};

// ---------------------------------------------------------------------------------------
// fixture

class Posix : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = std::make_unique<TempDir>("dsdfs-e2e-posix");
    chmod(tmp_->path().c_str(), 0755);  // other users reach the mount (OtherUsers...)
    start_error_.clear();
    start_daemon();
  }

  static void TearDownTestSuite() {
    if (inst_ && inst_->running()) {
      auto r = inst_->stop();
      EXPECT_TRUE(r) << "stopping the suite's dsdfs-launch: " << r.message() << "\n  log:\n"
                     << inst_->log_since(0);
      // Everything the tests left (thousands of files, a 5 GiB sparse file, odd names,
      // other users' files, sticky and read-only directories) goes with the store.
      EXPECT_FALSE(path_exists(inst_->store()))
          << "the store " << inst_->store() << " was not removed on stop\n  log:\n"
          << inst_->log_since(0);
    }
    inst_.reset();
    tmp_.reset();
  }

  static void start_daemon() {
    ++generation_;
    std::string root = tmp_->sub("run" + std::to_string(generation_));
    if (mkdir(root.c_str(), 0755) != 0) {
      start_error_ = "mkdir " + root + ": " + errno_text(errno);
      return;
    }
    DsdfsConfig config;
    config.root = root;
    inst_ = std::make_unique<DsdfsInstance>(config);
    auto r = inst_->start();
    if (!r) start_error_ = r.message();
  }

  // The daemon is usable: running and its mount in place.
  static bool daemon_healthy() {
    return inst_ && inst_->running() && is_mounted(inst_->mnt());
  }

  void SetUp() override {
    name_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    if (start_error_.empty() && !daemon_healthy()) {
      // It died or was killed during an earlier test, which was failed for it; start a
      // fresh one so that the remaining tests still say something.
      inst_.reset();
      start_daemon();
    }
    if (!start_error_.empty()) {
      if (!start_error_reported_) {
        start_error_reported_ = true;
        FAIL() << "dsdfs-launch did not start: " << start_error_;
      }
      FAIL() << "dsdfs-launch did not start (see the first failing test for its log)";
    }
    log_offset_ = inst_->log_size();
    dir_ = inst_->path(name_);
    ASSERT_SYS_OK(mkdir(dir_.c_str(), 0755));
  }

  void TearDown() override {
    if (!inst_ || !start_error_.empty()) return;
    // A failure may be the daemon dying right now: give it a moment to be seen exiting.
    if (HasFailure()) inst_->wait_exit(300ms);
    if (!daemon_healthy()) {
      bool alive = inst_->running();
      if (alive) inst_->kill_hard();
      ADD_FAILURE() << "dsdfs-launch "
                    << (alive ? "lost its mount" : describe_status(inst_->wait_status()))
                    << " during this test\n  log:\n"
                    << inst_->log_since(log_offset_);
      return;
    }
    if (HasFailure()) {
      fprintf(stderr, "---- dsdfs-launch log during %s ----\n%s---- end of log ----\n",
              name_.c_str(), inst_->log_since(log_offset_).c_str());
    }
  }

  // Path on the mount, inside this test's directory.
  std::string p(std::string_view rel) const { return dir_ + "/" + std::string(rel); }
  // Where the store keeps the same path.
  std::string sp(std::string_view rel) const {
    return inst_->store_path(name_ + "/" + std::string(rel));
  }
  static DsdfsInstance& dsdfs() { return *inst_; }

  std::string dir_;
  std::string name_;
  size_t log_offset_ = 0;

  static inline std::unique_ptr<TempDir> tmp_;
  static inline std::unique_ptr<DsdfsInstance> inst_;
  static inline std::string start_error_;
  static inline bool start_error_reported_ = false;
  static inline int generation_ = 0;
};

// ---------------------------------------------------------------------------------------
// create, read, write

TEST_F(Posix, CreateWriteReadBack) {
  const std::string data = "hello dsdfs\n";
  Fd fd = Fd::open(p("f"), O_CREAT | O_EXCL | O_WRONLY, 0640);
  ASSERT_FD(fd);
  ASSERT_EQ(write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fd.close(), 0);
  EXPECT_TRUE(file_has(p("f"), data));

  struct stat st;
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(st.st_gid, getegid());

  // Read back through the same O_RDWR descriptor after a seek.
  Fd rw = Fd::open(p("f"), O_RDWR);
  ASSERT_FD(rw);
  ASSERT_EQ(lseek(rw.get(), 6, SEEK_SET), 6);
  ASSERT_EQ(write(rw.get(), "DSDFS", 5), 5);
  ASSERT_EQ(lseek(rw.get(), 0, SEEK_SET), 0);
  char buf[64] = {};
  ASSERT_EQ(read(rw.get(), buf, sizeof buf), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(std::string(buf), "hello DSDFS\n");
}

TEST_F(Posix, CreateHonoursCallerModeAndUmask) {
  {
    ScopedUmask um(0);
    Fd fd = Fd::open(p("f0666"), O_CREAT | O_WRONLY, 0666);
    ASSERT_FD(fd);
    ASSERT_SYS_OK(mkdir(p("d0777").c_str(), 0777));
  }
  {
    ScopedUmask um(027);
    Fd fd = Fd::open(p("f0640"), O_CREAT | O_WRONLY, 0666);
    ASSERT_FD(fd);
    ASSERT_SYS_OK(mkdir(p("d0750").c_str(), 0777));
  }
  struct stat st;
  ASSERT_SYS_OK(stat(p("f0666").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0666u) << "umask 0, create mode 0666";
  ASSERT_SYS_OK(stat(p("d0777").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0777u) << "umask 0, mkdir mode 0777";
  ASSERT_SYS_OK(stat(p("f0640").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0640u) << "umask 027, create mode 0666";
  ASSERT_SYS_OK(stat(p("d0750").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0750u) << "umask 027, mkdir mode 0777";
}

TEST_F(Posix, PreadPwriteAtOffsetsAndHoles) {
  Fd fd = Fd::open(p("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_TRUE(pwrite_all(fd.get(), "AAAA", 0));
  ASSERT_TRUE(pwrite_all(fd.get(), "BBBB", 10));
  struct stat st;
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 14);
  std::string got;
  ASSERT_TRUE(pread_all(fd.get(), 100, 0, &got));
  EXPECT_EQ(got, std::string("AAAA\0\0\0\0\0\0BBBB", 14));

  ASSERT_TRUE(pwrite_all(fd.get(), "CC", 3));
  ASSERT_TRUE(pread_all(fd.get(), 6, 1, &got));
  EXPECT_EQ(got, std::string("AACC\0\0", 6));

  // Reads at and beyond the end return 0 bytes; a read across the end is short.
  char buf[16];
  EXPECT_EQ(pread(fd.get(), buf, sizeof buf, 14), 0);
  EXPECT_EQ(pread(fd.get(), buf, sizeof buf, 1000), 0);
  EXPECT_EQ(pread(fd.get(), buf, sizeof buf, 12), 2);

  // write() after lseek past the end extends with a hole.
  ASSERT_EQ(lseek(fd.get(), 20, SEEK_SET), 20);
  ASSERT_EQ(write(fd.get(), "END", 3), 3);
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_CUR), 23);
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_END), 23);
  ASSERT_TRUE(pread_all(fd.get(), 9, 14, &got));
  EXPECT_EQ(got, std::string("\0\0\0\0\0\0END", 9));
  ASSERT_EQ(fd.close(), 0);
  EXPECT_TRUE(file_has(p("f"), std::string("AAACC\0\0\0\0\0BBBB\0\0\0\0\0\0END", 23)));
}

TEST_F(Posix, AppendModeAlwaysWritesAtTheEnd) {
  ASSERT_TRUE(write_file(p("f"), "0123456789"));
  Fd a = Fd::open(p("f"), O_WRONLY | O_APPEND);
  ASSERT_FD(a);
  ASSERT_EQ(lseek(a.get(), 0, SEEK_SET), 0);
  ASSERT_EQ(write(a.get(), "ab", 2), 2);
  EXPECT_EQ(lseek(a.get(), 0, SEEK_CUR), 12);
  // On Linux, pwrite on an O_APPEND descriptor appends too (pwrite(2), BUGS).
  ASSERT_EQ(pwrite(a.get(), "cd", 2, 0), 2);

  // A second appender sees the first one's writes and vice versa.
  Fd b = Fd::open(p("f"), O_WRONLY | O_APPEND);
  ASSERT_FD(b);
  ASSERT_EQ(write(b.get(), "1", 1), 1);
  ASSERT_EQ(write(a.get(), "2", 1), 1);
  ASSERT_EQ(write(b.get(), "3", 1), 1);
  ASSERT_EQ(a.close(), 0);
  ASSERT_EQ(b.close(), 0);
  EXPECT_TRUE(file_has(p("f"), "0123456789abcd123"));
}

TEST_F(Posix, ConcurrentAppendsAreWholeAndNoneIsLost) {
  constexpr int kThreads = 4;
  constexpr int kRecords = 250;
  constexpr size_t kRecordSize = 64;
  Fd create = Fd::open(p("log"), O_CREAT | O_WRONLY, 0644);
  ASSERT_FD(create);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Fd fd = Fd::open(p("log"), O_WRONLY | O_APPEND);
      if (!fd.valid()) {
        ++failures;
        return;
      }
      for (int i = 0; i < kRecords; ++i) {
        char head[32];
        snprintf(head, sizeof head, "thread %d record %04d ", t, i);
        std::string rec = head;
        rec.resize(kRecordSize - 1, '.');
        rec += '\n';
        if (write(fd.get(), rec.data(), kRecordSize) != static_cast<ssize_t>(kRecordSize)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0) << "open or write failed in an appender thread";

  std::string all;
  ASSERT_TRUE(read_file(p("log"), &all));
  ASSERT_EQ(all.size(), kThreads * kRecords * kRecordSize) << "appends were lost or torn";
  std::map<int, std::set<int>> seen;
  int torn = 0;
  for (size_t off = 0; off < all.size(); off += kRecordSize) {
    int t, i;
    std::string rec = all.substr(off, kRecordSize);
    if (sscanf(rec.c_str(), "thread %d record %d", &t, &i) != 2 || rec.back() != '\n') {
      ++torn;
      continue;
    }
    seen[t].insert(i);
  }
  EXPECT_EQ(torn, 0) << "records interleaved inside one write";
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(seen[t].size(), static_cast<size_t>(kRecords)) << "thread " << t;
}

TEST_F(Posix, OTruncEmptiesAnExistingFile) {
  ASSERT_TRUE(write_file(p("f"), std::string(1000, 'x')));
  Fd fd = Fd::open(p("f"), O_WRONLY | O_TRUNC);
  ASSERT_FD(fd);
  struct stat st;
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 0);
  ASSERT_EQ(write(fd.get(), "y", 1), 1);
  ASSERT_EQ(fd.close(), 0);
  EXPECT_TRUE(file_has(p("f"), "y"));

  // O_CREAT|O_TRUNC on an existing file truncates too, and keeps its mode.
  ASSERT_SYS_OK(chmod(p("f").c_str(), 0600));
  Fd again = Fd::open(p("f"), O_CREAT | O_TRUNC | O_WRONLY, 0666);
  ASSERT_FD(again);
  ASSERT_EQ(again.close(), 0);
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(Posix, TruncateGrowsWithZerosAndShrinks) {
  ASSERT_TRUE(write_file(p("f"), "abcdefghij"));
  ASSERT_SYS_OK(truncate(p("f").c_str(), 4));
  EXPECT_TRUE(file_has(p("f"), "abcd"));
  // Growing after a shrink must not resurrect the old bytes.
  ASSERT_SYS_OK(truncate(p("f").c_str(), 8));
  EXPECT_TRUE(file_has(p("f"), std::string("abcd\0\0\0\0", 8)));

  EXPECT_SYS_ERRNO(truncate(p("missing").c_str(), 0), ENOENT);
  EXPECT_SYS_ERRNO(truncate(dir_.c_str(), 0), EISDIR);
}

TEST_F(Posix, FtruncateGrowsWithZerosAndShrinks) {
  Fd fd = Fd::open(p("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_TRUE(pwrite_all(fd.get(), "0123456789", 0));
  ASSERT_SYS_OK(ftruncate(fd.get(), 2));
  struct stat st;
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 2);
  ASSERT_SYS_OK(ftruncate(fd.get(), kMiB));
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, kMiB);
  std::string got;
  ASSERT_TRUE(pread_all(fd.get(), 16, 0, &got));
  EXPECT_EQ(got, std::string("01") + std::string(14, '\0'));
  ASSERT_TRUE(pread_all(fd.get(), 4096, 512 * kKiB, &got));
  EXPECT_EQ(got, std::string(4096, '\0'));
  ASSERT_EQ(fd.close(), 0);
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_size, kMiB);
  // The store holds the same size.
  auto sst = lstat_of(sp("f"));
  ASSERT_TRUE(sst.has_value()) << sp("f") << " missing in the store";
  EXPECT_EQ(sst->st_size, kMiB);

  Fd ro = Fd::open(p("f"), O_RDONLY);
  ASSERT_FD(ro);
  EXPECT_SYS_ERRNO(ftruncate(ro.get(), 0), EINVAL, EBADF);
}

TEST_F(Posix, FsyncAndFdatasyncSucceed) {
  Fd fd = Fd::open(p("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_TRUE(pwrite_all(fd.get(), "durable", 0));
  EXPECT_SYS_OK(fsync(fd.get()));
  EXPECT_SYS_OK(fdatasync(fd.get()));
  EXPECT_SYS_OK(syncfs(fd.get()));
  Fd ro = Fd::open(p("f"), O_RDONLY);
  ASSERT_FD(ro);
  EXPECT_SYS_OK(fsync(ro.get()));
  Fd dir = Fd::open(dir_, O_RDONLY | O_DIRECTORY);
  ASSERT_FD(dir);
  EXPECT_SYS_OK(fsync(dir.get()));
  // After fsync the bytes are in the store (no close needed).
  EXPECT_TRUE(file_has(sp("f"), "durable"));
}

// ---------------------------------------------------------------------------------------
// unlink

TEST_F(Posix, UnlinkRemovesTheName) {
  ASSERT_TRUE(write_file(p("f"), "data"));
  ASSERT_TRUE(write_file(p("g"), "keep"));
  ASSERT_SYS_OK(unlink(p("f").c_str()));
  EXPECT_SYS_ERRNO(access(p("f").c_str(), F_OK), ENOENT);
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(dir_, &entries));
  EXPECT_EQ(names_of(entries), std::vector<std::string>{"g"});
  EXPECT_FALSE(path_exists(sp("f"))) << "unlinked file still in the store";
  EXPECT_SYS_ERRNO(unlink(p("f").c_str()), ENOENT);
  EXPECT_SYS_ERRNO(unlink(p("nodir/f").c_str()), ENOENT);
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  EXPECT_SYS_ERRNO(unlink(p("d").c_str()), EISDIR);
  // A new file under the old name starts empty.
  Fd fd = Fd::open(p("f"), O_CREAT | O_EXCL | O_RDWR, 0644);
  ASSERT_FD(fd);
  struct stat st;
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 0);
}

TEST_F(Posix, UnlinkedOpenFileStaysReadableAndWritable) {
  Fd fd = Fd::open(p("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_TRUE(pwrite_all(fd.get(), "before", 0));
  Fd reader = Fd::open(p("f"), O_RDONLY);
  ASSERT_FD(reader);
  ASSERT_SYS_OK(unlink(p("f").c_str()));

  EXPECT_SYS_ERRNO(access(p("f").c_str(), F_OK), ENOENT);
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(dir_, &entries));
  EXPECT_TRUE(entries.empty()) << "listing still shows " << entries.size() << " entries";

  ASSERT_TRUE(pwrite_all(fd.get(), "after", 6));
  std::string got;
  ASSERT_TRUE(pread_all(fd.get(), 100, 0, &got));
  EXPECT_EQ(got, "beforeafter");
  ASSERT_TRUE(pread_all(reader.get(), 100, 0, &got));
  EXPECT_EQ(got, "beforeafter") << "second descriptor opened before the unlink";

  struct stat st;
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 11);
  EXPECT_EQ(st.st_nlink, 0u) << "fstat of an unlinked file";
  ASSERT_SYS_OK(ftruncate(fd.get(), 3));
  ASSERT_TRUE(pread_all(reader.get(), 100, 0, &got));
  EXPECT_EQ(got, "bef");

  // A new file under the same name is a different file.
  ASSERT_TRUE(write_file(p("f"), "new"));
  ASSERT_TRUE(pread_all(fd.get(), 100, 0, &got));
  EXPECT_EQ(got, "bef");
  EXPECT_TRUE(file_has(p("f"), "new"));
  EXPECT_EQ(fd.close(), 0);
  EXPECT_EQ(reader.close(), 0);
  EXPECT_TRUE(file_has(p("f"), "new"));
}

// ---------------------------------------------------------------------------------------
// rename

TEST_F(Posix, RenameMovesFileKeepingInode) {
  ASSERT_TRUE(write_file(p("a"), "content"));
  struct stat before, after;
  ASSERT_SYS_OK(stat(p("a").c_str(), &before));
  ASSERT_SYS_OK(rename(p("a").c_str(), p("b").c_str()));
  EXPECT_SYS_ERRNO(access(p("a").c_str(), F_OK), ENOENT);
  EXPECT_TRUE(file_has(p("b"), "content"));
  ASSERT_SYS_OK(stat(p("b").c_str(), &after));
  EXPECT_EQ(before.st_ino, after.st_ino) << "inode number changed by rename";
  EXPECT_TRUE(file_has(sp("b"), "content"));
  EXPECT_FALSE(path_exists(sp("a")));
  EXPECT_SYS_ERRNO(rename(p("a").c_str(), p("c").c_str()), ENOENT);
  // Renaming onto itself is a no-op.
  ASSERT_SYS_OK(rename(p("b").c_str(), p("b").c_str()));
  EXPECT_TRUE(file_has(p("b"), "content"));
}

// Handles follow the file, not the name: writes through a descriptor opened before a
// rename (of the file, or of its directory) land in the renamed file.
TEST_F(Posix, WritesThroughADescriptorFollowRenames) {
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  Fd fd = Fd::open(p("d/f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_TRUE(pwrite_all(fd.get(), "one ", 0));
  ASSERT_SYS_OK(rename(p("d/f").c_str(), p("d/g").c_str()));
  ASSERT_TRUE(pwrite_all(fd.get(), "two ", 4));
  ASSERT_SYS_OK(rename(p("d").c_str(), p("e").c_str()));
  ASSERT_TRUE(pwrite_all(fd.get(), "three", 8));
  ASSERT_SYS_OK(fsync(fd.get()));
  ASSERT_SYS_OK(ftruncate(fd.get(), 13));
  struct stat st;
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 13);
  ASSERT_EQ(fd.close(), 0);
  EXPECT_TRUE(file_has(p("e/g"), "one two three"));
  EXPECT_TRUE(file_has(sp("e/g"), "one two three"));
  EXPECT_FALSE(path_exists(sp("d")));
  EXPECT_FALSE(path_exists(sp("e/f")));
}

TEST_F(Posix, RenameReplacesAnExistingTarget) {
  ASSERT_TRUE(write_file(p("dst"), "old"));
  ASSERT_TRUE(write_file(p("src"), "new"));
  Fd old_fd = Fd::open(p("dst"), O_RDONLY);
  ASSERT_FD(old_fd);
  ASSERT_SYS_OK(rename(p("src").c_str(), p("dst").c_str()));
  EXPECT_TRUE(file_has(p("dst"), "new"));
  EXPECT_SYS_ERRNO(access(p("src").c_str(), F_OK), ENOENT);
  std::string got;
  ASSERT_TRUE(pread_all(old_fd.get(), 10, 0, &got));
  EXPECT_EQ(got, "old") << "a descriptor open on the replaced file must keep its data";
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(dir_, &entries));
  EXPECT_EQ(names_of(entries), std::vector<std::string>{"dst"});
  EXPECT_TRUE(file_has(sp("dst"), "new"));
  EXPECT_FALSE(path_exists(sp("src")));
}

// The write-temp-then-rename pattern: a reader opening the target in a loop must always
// find a complete file, never ENOENT, while a writer replaces it over and over.
TEST_F(Posix, RenameOverTargetIsAtomicForConcurrentReaders) {
  constexpr size_t kSize = 4096;
  auto version = [](int i) {
    std::string s = "version " + std::to_string(i) + "\n";
    s.resize(kSize, '.');
    return s;
  };
  ASSERT_TRUE(write_file(p("target"), version(0)));
  std::atomic<bool> stop{false};
  std::atomic<int> opens{0}, missing{0}, partial{0};
  std::string first_problem;
  std::thread reader([&] {
    while (!stop.load()) {
      Fd fd = Fd::open(p("target"), O_RDONLY);
      if (!fd.valid()) {
        if (missing++ == 0) first_problem = "open: " + fd.error_text();
        continue;
      }
      ++opens;
      std::string got;
      if (!pread_all(fd.get(), kSize + 1, 0, &got) || got.size() != kSize ||
          !got.starts_with("version ")) {
        if (partial++ == 0) first_problem = "read " + std::to_string(got.size()) + " bytes";
      }
    }
  });
  int renames_failed = 0;
  for (int i = 1; i <= 200; ++i) {
    std::string tmp = p("target.tmp");
    if (!write_file(tmp, version(i)) || rename(tmp.c_str(), p("target").c_str()) != 0)
      ++renames_failed;
  }
  stop = true;
  reader.join();
  EXPECT_EQ(renames_failed, 0);
  EXPECT_EQ(missing.load(), 0) << "target was missing during a replacing rename ("
                               << first_problem << ")";
  EXPECT_EQ(partial.load(), 0) << "reader saw an incomplete file (" << first_problem << ")";
  EXPECT_GT(opens.load(), 0);
  EXPECT_TRUE(file_has(p("target"), version(200)));
}

TEST_F(Posix, RenameNoreplaceRefusesAnExistingTarget) {
  ASSERT_TRUE(write_file(p("a"), "A"));
  ASSERT_TRUE(write_file(p("b"), "B"));
  EXPECT_SYS_ERRNO(renameat2(AT_FDCWD, p("a").c_str(), AT_FDCWD, p("b").c_str(),
                             RENAME_NOREPLACE),
                   EEXIST);
  EXPECT_TRUE(file_has(p("a"), "A"));
  EXPECT_TRUE(file_has(p("b"), "B"));
  EXPECT_SYS_OK(
      renameat2(AT_FDCWD, p("a").c_str(), AT_FDCWD, p("c").c_str(), RENAME_NOREPLACE));
  EXPECT_TRUE(file_has(p("c"), "A"));
  EXPECT_SYS_ERRNO(access(p("a").c_str(), F_OK), ENOENT);
}

TEST_F(Posix, RenameExchangeSwapsOrIsRefusedWithEinval) {
  ASSERT_TRUE(write_file(p("a"), "A"));
  ASSERT_TRUE(write_file(p("b"), "B"));
  int rc = renameat2(AT_FDCWD, p("a").c_str(), AT_FDCWD, p("b").c_str(), RENAME_EXCHANGE);
  int err = errno;
  if (rc != 0) {
    ASSERT_EQ(err, EINVAL) << "RENAME_EXCHANGE must either work or fail with EINVAL, got "
                           << errno_text(err);
    RecordProperty("rename_exchange", "EINVAL");
    EXPECT_TRUE(file_has(p("a"), "A"));
    EXPECT_TRUE(file_has(p("b"), "B"));
    return;
  }
  EXPECT_TRUE(file_has(p("a"), "B"));
  EXPECT_TRUE(file_has(p("b"), "A"));
  EXPECT_TRUE(file_has(sp("a"), "B"));
  EXPECT_TRUE(file_has(sp("b"), "A"));
  EXPECT_SYS_ERRNO(
      renameat2(AT_FDCWD, p("a").c_str(), AT_FDCWD, p("missing").c_str(), RENAME_EXCHANGE),
      ENOENT);
  // A file and a directory can be exchanged too.
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  ASSERT_TRUE(write_file(p("d/inner"), "I"));
  ASSERT_SYS_OK(
      renameat2(AT_FDCWD, p("a").c_str(), AT_FDCWD, p("d").c_str(), RENAME_EXCHANGE));
  EXPECT_TRUE(file_has(p("d"), "B"));
  EXPECT_TRUE(file_has(p("a/inner"), "I"));
}

TEST_F(Posix, RenameDirectoryMovesTheSubtree) {
  ASSERT_SYS_OK(mkdir(p("d1").c_str(), 0755));
  ASSERT_SYS_OK(mkdir(p("d1/sub").c_str(), 0755));
  ASSERT_TRUE(write_file(p("d1/sub/f"), "deep"));
  ASSERT_SYS_OK(rename(p("d1").c_str(), p("d2").c_str()));
  EXPECT_SYS_ERRNO(access(p("d1").c_str(), F_OK), ENOENT);
  EXPECT_TRUE(file_has(p("d2/sub/f"), "deep"));

  // A descriptor opened on a directory before it moves keeps naming that directory.
  Fd sub = Fd::open(p("d2/sub"), O_RDONLY | O_DIRECTORY);
  ASSERT_FD(sub);
  ASSERT_SYS_OK(mkdir(p("other").c_str(), 0755));
  ASSERT_SYS_OK(rename(p("d2").c_str(), p("other/d3").c_str()));
  {
    Fd f = Fd::openat(sub.get(), "via-old-fd", O_CREAT | O_WRONLY, 0644);
    ASSERT_FD(f);
    ASSERT_TRUE(pwrite_all(f.get(), "fd", 0));
  }
  EXPECT_TRUE(file_has(p("other/d3/sub/via-old-fd"), "fd"));
  EXPECT_TRUE(file_has(sp("other/d3/sub/via-old-fd"), "fd"));
  ASSERT_SYS_OK(unlinkat(sub.get(), "via-old-fd", 0));
  EXPECT_TRUE(file_has(p("other/d3/sub/f"), "deep"));
  // New files in the moved directory land in the right place.
  ASSERT_TRUE(write_file(p("other/d3/sub/g"), "later"));
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(p("other/d3/sub"), &entries));
  EXPECT_EQ(names_of(entries), (std::vector<std::string>{"f", "g"}));
  EXPECT_TRUE(file_has(sp("other/d3/sub/f"), "deep"));
  EXPECT_TRUE(file_has(sp("other/d3/sub/g"), "later"));
  EXPECT_FALSE(path_exists(sp("d1")));
  EXPECT_FALSE(path_exists(sp("d2")));
}

TEST_F(Posix, RenameDirectoryErrors) {
  ASSERT_SYS_OK(mkdir(p("a").c_str(), 0755));
  ASSERT_SYS_OK(mkdir(p("a/child").c_str(), 0755));
  ASSERT_SYS_OK(mkdir(p("full").c_str(), 0755));
  ASSERT_TRUE(write_file(p("full/x"), "x"));
  ASSERT_SYS_OK(mkdir(p("empty").c_str(), 0755));
  ASSERT_TRUE(write_file(p("file"), "f"));

  EXPECT_SYS_ERRNO(rename(p("a").c_str(), p("full").c_str()), ENOTEMPTY, EEXIST);
  EXPECT_SYS_ERRNO(rename(p("a").c_str(), p("a/child/inside").c_str()), EINVAL);
  EXPECT_SYS_ERRNO(rename(p("file").c_str(), p("empty").c_str()), EISDIR);
  EXPECT_SYS_ERRNO(rename(p("a").c_str(), p("file").c_str()), ENOTDIR);
  EXPECT_SYS_ERRNO(rename(p("nope").c_str(), p("x").c_str()), ENOENT);
  // Onto an empty directory: replaces it.
  ASSERT_SYS_OK(rename(p("a").c_str(), p("empty").c_str()));
  struct stat st;
  EXPECT_SYS_OK(stat(p("empty/child").c_str(), &st));
  EXPECT_SYS_ERRNO(access(p("a").c_str(), F_OK), ENOENT);
  EXPECT_TRUE(file_has(p("full/x"), "x"));
}

// ---------------------------------------------------------------------------------------
// directories

TEST_F(Posix, MkdirAndRmdir) {
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0750));
  struct stat st;
  ASSERT_SYS_OK(stat(p("d").c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_TRUE(lstat_of(sp("d")).has_value() && S_ISDIR(lstat_of(sp("d"))->st_mode))
      << "directory missing in the store";

  ASSERT_TRUE(write_file(p("file"), "f"));
  EXPECT_SYS_ERRNO(mkdir(p("d").c_str(), 0755), EEXIST);
  EXPECT_SYS_ERRNO(mkdir(p("file").c_str(), 0755), EEXIST);
  EXPECT_SYS_ERRNO(mkdir(p("missing/d").c_str(), 0755), ENOENT);
  EXPECT_SYS_ERRNO(mkdir(p("file/d").c_str(), 0755), ENOTDIR);

  ASSERT_TRUE(write_file(p("d/inner"), "i"));
  EXPECT_SYS_ERRNO(rmdir(p("d").c_str()), ENOTEMPTY);
  EXPECT_SYS_ERRNO(rmdir(p("missing").c_str()), ENOENT);
  EXPECT_SYS_ERRNO(rmdir(p("file").c_str()), ENOTDIR);
  EXPECT_SYS_ERRNO(opendir(p("file").c_str()) == nullptr ? -1 : 0, ENOTDIR);
  ASSERT_SYS_OK(unlink(p("d/inner").c_str()));
  ASSERT_SYS_OK(rmdir(p("d").c_str()));
  EXPECT_SYS_ERRNO(stat(p("d").c_str(), &st), ENOENT);
  EXPECT_FALSE(path_exists(sp("d")));
  // The name can be reused, as a directory or as a file.
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  ASSERT_SYS_OK(rmdir(p("d").c_str()));
  EXPECT_TRUE(write_file(p("d"), "now a file"));
}

TEST_F(Posix, ReaddirReportsTypesAndInodes) {
  ASSERT_TRUE(write_file(p("file"), "f"));
  ASSERT_SYS_OK(mkdir(p("dir").c_str(), 0755));
  ASSERT_SYS_OK(symlink("file", p("link").c_str()));
  std::vector<DirEntry> entries;
  bool dots = false;
  ASSERT_TRUE(list_dir(dir_, &entries, &dots));
  EXPECT_TRUE(dots) << "\".\" and \"..\" must be listed";
  std::map<std::string, DirEntry> by_name;
  for (auto& e : entries) by_name[e.name] = e;
  ASSERT_EQ(by_name.size(), 3u) << ::testing::PrintToString(names_of(entries));
  EXPECT_EQ(by_name["file"].type, DT_REG);
  EXPECT_EQ(by_name["dir"].type, DT_DIR);
  EXPECT_EQ(by_name["link"].type, DT_LNK);
  for (auto& [name, e] : by_name) {
    struct stat st;
    ASSERT_SYS_OK(lstat(p(name).c_str(), &st));
    EXPECT_EQ(e.ino, st.st_ino) << "d_ino of " << name << " differs from st_ino";
  }
}

TEST_F(Posix, ReaddirListsTwoThousandEntriesExactlyOnce) {
  constexpr int kFiles = 2000;
  std::set<std::string> expected;
  for (int i = 0; i < kFiles; ++i) {
    char name[32];
    snprintf(name, sizeof name, "file-%04d", i);
    Fd fd = Fd::open(p(name), O_CREAT | O_EXCL | O_WRONLY, 0644);
    ASSERT_FD(fd);
    expected.insert(name);
  }

  auto check_listing = [&](const std::set<std::string>& want, const char* what) {
    std::vector<DirEntry> entries;
    ASSERT_TRUE(list_dir(dir_, &entries));
    std::map<std::string, int> count;
    for (auto& e : entries) ++count[e.name];
    int dups = 0, extra = 0;
    for (auto& [n, c] : count) {
      if (c > 1) ++dups;
      if (!want.count(n)) ++extra;
    }
    int missing = 0;
    for (auto& n : want)
      if (!count.count(n)) ++missing;
    EXPECT_EQ(entries.size(), want.size()) << what;
    EXPECT_EQ(dups, 0) << what << ": names listed more than once";
    EXPECT_EQ(missing, 0) << what << ": names not listed";
    EXPECT_EQ(extra, 0) << what << ": names listed that do not exist";
  };
  check_listing(expected, "readdir(3)");

  // Raw getdents64 with a small buffer: many calls, each resuming at the last offset.
  {
    Fd d = Fd::open(dir_, O_RDONLY | O_DIRECTORY);
    ASSERT_FD(d);
    std::map<std::string, int> count;
    char buf[1024];
    int calls = 0;
    for (;;) {
      long n = syscall(SYS_getdents64, d.get(), buf, sizeof buf);
      ASSERT_GE(n, 0) << "getdents64: " << errno_text(errno);
      if (n == 0) break;
      ++calls;
      for (long off = 0; off < n;) {
        auto* e = reinterpret_cast<struct dirent64*>(buf + off);
        std::string nm = e->d_name;
        if (nm != "." && nm != "..") ++count[nm];
        off += e->d_reclen;
      }
    }
    EXPECT_GT(calls, 10);
    EXPECT_EQ(count.size(), expected.size()) << "getdents64 with a 1 KiB buffer";
    int dups = 0;
    for (auto& [n, c] : count) dups += c > 1;
    EXPECT_EQ(dups, 0) << "getdents64 with a 1 KiB buffer listed names twice";
  }

  // telldir/seekdir: going back to a remembered position lists the same names again.
  {
    DIR* d = opendir(dir_.c_str());
    ASSERT_NE(d, nullptr) << errno_text(errno);
    for (int i = 0; i < 1000; ++i) ASSERT_NE(readdir(d), nullptr);
    long pos = telldir(d);
    std::vector<std::string> first, second;
    for (int i = 0; i < 10; ++i) {
      struct dirent* e = readdir(d);
      ASSERT_NE(e, nullptr);
      first.push_back(e->d_name);
    }
    seekdir(d, pos);
    for (int i = 0; i < 10; ++i) {
      struct dirent* e = readdir(d);
      ASSERT_NE(e, nullptr);
      second.push_back(e->d_name);
    }
    closedir(d);
    EXPECT_EQ(first, second) << "seekdir(telldir()) did not return to the same place";
  }

  // Remove every other file: the listing follows.
  std::set<std::string> remaining;
  int i = 0;
  for (auto& n : expected) {
    if (i++ % 2 == 0) {
      ASSERT_SYS_OK(unlink(p(n).c_str()));
    } else {
      remaining.insert(n);
    }
  }
  check_listing(remaining, "after unlinking half");
}

// ---------------------------------------------------------------------------------------
// attributes

TEST_F(Posix, StatReportsSizeTimesAndStableInodes) {
  struct timespec t0 = realtime_now();
  ASSERT_TRUE(write_file(p("f"), pattern_bytes(12345, 1)));
  ASSERT_TRUE(write_file(p("g"), "g"));
  struct timespec t1 = realtime_now();
  struct stat st, st2, g, root;
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_size, 12345);
  EXPECT_GT(st.st_blocks, 0);
  EXPECT_GT(st.st_blksize, 0);
  EXPECT_NE(st.st_ino, 0u);
  EXPECT_TRUE(time_within("mtime", st.st_mtim, t0, t1));
  EXPECT_TRUE(time_within("ctime", st.st_ctim, t0, t1));
  EXPECT_TRUE(time_within("atime", st.st_atim, t0, t1));
  ASSERT_SYS_OK(stat(p("f").c_str(), &st2));
  EXPECT_EQ(st.st_ino, st2.st_ino) << "inode number not stable";
  ASSERT_SYS_OK(stat(p("g").c_str(), &g));
  EXPECT_NE(st.st_ino, g.st_ino) << "two files share an inode number";
  ASSERT_SYS_OK(stat(dsdfs().mnt().c_str(), &root));
  EXPECT_EQ(st.st_dev, root.st_dev);

  // A write moves mtime forward from an old value.
  struct timespec old[2] = {{978307200, 0}, {978307200, 0}};  // 2001-01-01
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("f").c_str(), old, 0));
  struct timespec t2 = realtime_now();
  {
    Fd fd = Fd::open(p("f"), O_WRONLY);
    ASSERT_FD(fd);
    ASSERT_TRUE(pwrite_all(fd.get(), "x", 0));
    ASSERT_EQ(fd.close(), 0);
  }
  struct timespec t3 = realtime_now();
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_TRUE(time_within("mtime after write", st.st_mtim, t2, t3));

  // chmod moves ctime.
  struct timespec t4 = realtime_now();
  ASSERT_SYS_OK(chmod(p("f").c_str(), 0600));
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_TRUE(time_within("ctime after chmod", st.st_ctim, t4, realtime_now()));

  // Creating and removing entries moves the directory's mtime.
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("d").c_str(), old, 0));
  struct timespec t5 = realtime_now();
  ASSERT_TRUE(write_file(p("d/new"), "n"));
  ASSERT_SYS_OK(stat(p("d").c_str(), &st));
  EXPECT_TRUE(time_within("directory mtime after create", st.st_mtim, t5, realtime_now()));
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("d").c_str(), old, 0));
  struct timespec t6 = realtime_now();
  ASSERT_SYS_OK(unlink(p("d/new").c_str()));
  ASSERT_SYS_OK(stat(p("d").c_str(), &st));
  EXPECT_TRUE(time_within("directory mtime after unlink", st.st_mtim, t6, realtime_now()));
}

TEST_F(Posix, ChmodChangesModeHereAndInTheStore) {
  ASSERT_TRUE(write_file(p("f"), "f"));
  ASSERT_SYS_OK(chmod(p("f").c_str(), 0600));
  struct stat st;
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto sst = lstat_of(sp("f"));
  ASSERT_TRUE(sst.has_value());
  EXPECT_EQ(sst->st_mode & 07777, 0600u) << "store file mode";

  Fd fd = Fd::open(p("f"), O_RDONLY);
  ASSERT_FD(fd);
  ASSERT_SYS_OK(fchmod(fd.get(), 0751));
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0751u);
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0751u);

  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  ASSERT_SYS_OK(chmod(p("d").c_str(), 01777));
  ASSERT_SYS_OK(stat(p("d").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_SYS_ERRNO(chmod(p("missing").c_str(), 0644), ENOENT);
}

TEST_F(Posix, ChownAsRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  ASSERT_TRUE(write_file(p("f"), "f"));
  ASSERT_SYS_OK(chown(p("f").c_str(), 1234, 5678));
  struct stat st;
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  auto sst = lstat_of(sp("f"));
  ASSERT_TRUE(sst.has_value());
  EXPECT_EQ(sst->st_uid, 1234u) << "store file owner";
  EXPECT_EQ(sst->st_gid, 5678u) << "store file group";

  Fd fd = Fd::open(p("f"), O_RDONLY);
  ASSERT_FD(fd);
  ASSERT_SYS_OK(fchown(fd.get(), 4321, static_cast<gid_t>(-1)));
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 5678u) << "gid -1 must leave the group alone";

  ASSERT_SYS_OK(symlink("f", p("l").c_str()));
  ASSERT_SYS_OK(lchown(p("l").c_str(), 2222, 3333));
  ASSERT_SYS_OK(lstat(p("l").c_str(), &st));
  EXPECT_EQ(st.st_uid, 2222u) << "lchown changes the link";
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_uid, 4321u) << "lchown must not change the target";

  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  ASSERT_SYS_OK(chown(p("d").c_str(), 1111, 1111));
  ASSERT_SYS_OK(stat(p("d").c_str(), &st));
  EXPECT_EQ(st.st_uid, 1111u);
}

TEST_F(Posix, UtimensSetsNanosecondsAndHonoursOmitAndNow) {
  ASSERT_TRUE(write_file(p("f"), "f"));
  struct timespec ts[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("f").c_str(), ts, 0));
  struct stat st;
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
  auto sst = lstat_of(sp("f"));
  ASSERT_TRUE(sst.has_value());
  EXPECT_EQ(sst->st_mtim.tv_sec, 1500000000) << "store file mtime";
  EXPECT_EQ(sst->st_mtim.tv_nsec, 987654321) << "store file mtime";

  // UTIME_OMIT keeps atime; a new mtime is set.
  struct timespec omit[2] = {{0, UTIME_OMIT}, {1600000000, 5}};
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("f").c_str(), omit, 0));
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 5);

  // UTIME_NOW for mtime, UTIME_OMIT for atime, through a descriptor.
  Fd fd = Fd::open(p("f"), O_RDWR);
  ASSERT_FD(fd);
  struct timespec t0 = realtime_now();
  struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_SYS_OK(futimens(fd.get(), now));
  struct timespec t1 = realtime_now();
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_TRUE(time_within("mtime after UTIME_NOW", st.st_mtim, t0, t1));

  // NULL times: both now.
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("f").c_str(), nullptr, 0));
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_TRUE(time_within("atime after utimensat(NULL)", st.st_atim, t0, realtime_now()));
  EXPECT_TRUE(time_within("mtime after utimensat(NULL)", st.st_mtim, t0, realtime_now()));

  // On a directory too.
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("d").c_str(), ts, 0));
  ASSERT_SYS_OK(stat(p("d").c_str(), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
}

TEST_F(Posix, UtimensNofollowChangesTheSymlinkItself) {
  ASSERT_TRUE(write_file(p("f"), "f"));
  struct timespec keep[2] = {{1100000000, 0}, {1100000000, 0}};
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("f").c_str(), keep, 0));
  ASSERT_SYS_OK(symlink("f", p("l").c_str()));
  struct timespec ts[2] = {{1200000000, 1}, {1300000000, 2}};
  ASSERT_SYS_OK(utimensat(AT_FDCWD, p("l").c_str(), ts, AT_SYMLINK_NOFOLLOW));
  struct stat st;
  ASSERT_SYS_OK(lstat(p("l").c_str(), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1300000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 2);
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1100000000) << "the target must not change";
}

// ---------------------------------------------------------------------------------------
// symlinks

TEST_F(Posix, SymlinkAndReadlink) {
  ASSERT_TRUE(write_file(p("target"), "through the link"));
  ASSERT_SYS_OK(symlink("target", p("rel").c_str()));
  ASSERT_SYS_OK(symlink("some/where/else", p("dangling").c_str()));
  std::string long_target(1000, 'x');
  ASSERT_SYS_OK(symlink(long_target.c_str(), p("long").c_str()));
  std::string abs_target = p("target");
  ASSERT_SYS_OK(symlink(abs_target.c_str(), p("abs").c_str()));

  char buf[4096];
  ssize_t n = readlink(p("rel").c_str(), buf, sizeof buf);
  ASSERT_EQ(n, 6) << errno_text(errno);
  EXPECT_EQ(std::string(buf, n), "target");
  n = readlink(p("dangling").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0) << errno_text(errno);
  EXPECT_EQ(std::string(buf, n), "some/where/else");
  n = readlink(p("long").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0) << errno_text(errno);
  EXPECT_EQ(std::string(buf, n), long_target);
  // A short buffer truncates.
  EXPECT_EQ(readlink(p("dangling").c_str(), buf, 4), 4);
  EXPECT_EQ(std::string(buf, 4), "some");

  struct stat st;
  ASSERT_SYS_OK(lstat(p("rel").c_str(), &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 6) << "lstat size of a symlink is its target's length";
  ASSERT_SYS_OK(stat(p("rel").c_str(), &st));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_TRUE(file_has(p("rel"), "through the link"));
  EXPECT_TRUE(file_has(p("abs"), "through the link"));
  EXPECT_SYS_ERRNO(stat(p("dangling").c_str(), &st), ENOENT);
  EXPECT_SYS_OK(lstat(p("dangling").c_str(), &st));

  EXPECT_SYS_ERRNO(readlink(p("target").c_str(), buf, sizeof buf), EINVAL);
  EXPECT_SYS_ERRNO(symlink("x", p("rel").c_str()), EEXIST);
  EXPECT_SYS_ERRNO(open(p("rel").c_str(), O_RDONLY | O_NOFOLLOW), ELOOP);

  // Renaming and removing the link leaves the target alone.
  ASSERT_SYS_OK(rename(p("rel").c_str(), p("rel2").c_str()));
  EXPECT_TRUE(file_has(p("rel2"), "through the link"));
  ASSERT_SYS_OK(unlink(p("rel2").c_str()));
  EXPECT_TRUE(file_has(p("target"), "through the link"));
}

// ---------------------------------------------------------------------------------------
// statfs

TEST_F(Posix, StatfsReportsTheStoreFileSystem) {
  struct statvfs mnt, store;
  ASSERT_SYS_OK(statvfs(dir_.c_str(), &mnt));
  ASSERT_SYS_OK(statvfs(dsdfs().store().c_str(), &store));
  EXPECT_EQ(mnt.f_bsize, store.f_bsize);
  EXPECT_EQ(mnt.f_blocks * mnt.f_frsize, store.f_blocks * store.f_frsize)
      << "total size differs from the store's file system";
  EXPECT_EQ(mnt.f_blocks, store.f_blocks);
  EXPECT_GT(mnt.f_bavail, 0u);
  EXPECT_EQ(mnt.f_namemax, 255u);
  struct statfs sf;
  ASSERT_SYS_OK(statfs(dir_.c_str(), &sf));
  EXPECT_EQ(static_cast<unsigned long>(sf.f_type), static_cast<unsigned long>(FUSE_SUPER_MAGIC));
  ASSERT_TRUE(write_file(p("f"), "f"));
  Fd fd = Fd::open(p("f"), O_RDONLY);
  ASSERT_FD(fd);
  struct statvfs viafd;
  ASSERT_SYS_OK(fstatvfs(fd.get(), &viafd));
  EXPECT_EQ(viafd.f_blocks, mnt.f_blocks);
}

// ---------------------------------------------------------------------------------------
// xattrs

// A directory lists only the user's attributes: none after mkdir, the one set after
// setxattr, never dsdfs's own (the store keeps each directory's id in user.dsdfs.dir).
TEST_F(Posix, ADirectoryListsOnlyTheUsersXattrs) {
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  const std::string d = p("d");
  char buf[4096];
  EXPECT_EQ(listxattr(d.c_str(), nullptr, 0), 0) << "size query: " << errno_text(errno);
  EXPECT_EQ(listxattr(d.c_str(), buf, sizeof buf), 0) << errno_text(errno);
  if (setxattr(d.c_str(), "user.e2e.dir", "v", 1, 0) != 0) {
    ASSERT_EQ(errno, ENOTSUP) << errno_text(errno);
    return;
  }
  const std::string expected("user.e2e.dir\0", 13);
  EXPECT_EQ(listxattr(d.c_str(), nullptr, 0), static_cast<ssize_t>(expected.size()));
  ssize_t n = listxattr(d.c_str(), buf, sizeof buf);
  EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), expected);
  EXPECT_SYS_ERRNO(listxattr(d.c_str(), buf, 5), ERANGE);
}

// Names avoid user.dsdfs.*, which dsdfs reserves for its own read-only attributes.
TEST_F(Posix, UserXattrsRoundTripOrAreCleanlyUnsupported) {
  ASSERT_TRUE(write_file(p("f"), "f"));
  const std::string f = p("f");
  int rc = setxattr(f.c_str(), "user.e2e.test", "value-1", 7, 0);
  int err = errno;
  if (rc != 0) {
    ASSERT_EQ(err, ENOTSUP) << "setxattr(user.*) must work or fail with ENOTSUP, got "
                            << errno_text(err);
    char b[16];
    EXPECT_SYS_ERRNO(getxattr(f.c_str(), "user.e2e.test", b, sizeof b), ENOTSUP, ENODATA);
    ssize_t l = listxattr(f.c_str(), b, sizeof b);
    EXPECT_TRUE(l == 0 || (l < 0 && errno == ENOTSUP)) << "listxattr: " << errno_text(errno);
    RecordProperty("xattr", "ENOTSUP");
    return;
  }
  char buf[4096];
  EXPECT_EQ(getxattr(f.c_str(), "user.e2e.test", nullptr, 0), 7) << "size query";
  ssize_t n = getxattr(f.c_str(), "user.e2e.test", buf, sizeof buf);
  ASSERT_EQ(n, 7) << errno_text(errno);
  EXPECT_EQ(std::string(buf, n), "value-1");
  EXPECT_SYS_ERRNO(getxattr(f.c_str(), "user.e2e.test", buf, 3), ERANGE);

  n = listxattr(f.c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0) << errno_text(errno);
  std::vector<std::string> names;
  for (ssize_t i = 0; i < n; i += strlen(buf + i) + 1) names.emplace_back(buf + i);
  EXPECT_NE(std::find(names.begin(), names.end(), "user.e2e.test"), names.end())
      << ::testing::PrintToString(names);
  EXPECT_EQ(listxattr(f.c_str(), nullptr, 0), n) << "size query of listxattr";

  EXPECT_SYS_ERRNO(setxattr(f.c_str(), "user.e2e.test", "x", 1, XATTR_CREATE), EEXIST);
  EXPECT_SYS_ERRNO(setxattr(f.c_str(), "user.e2e.other", "x", 1, XATTR_REPLACE), ENODATA);
  ASSERT_SYS_OK(setxattr(f.c_str(), "user.e2e.test", "v2", 2, XATTR_REPLACE));
  n = getxattr(f.c_str(), "user.e2e.test", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), "v2");

  // Binary values with NUL bytes, larger values, through a descriptor.
  std::string binary = pattern_bytes(2000, 7);
  binary[10] = '\0';
  Fd fd = Fd::open(f, O_RDONLY);
  ASSERT_FD(fd);
  ASSERT_SYS_OK(fsetxattr(fd.get(), "user.e2e.bin", binary.data(), binary.size(), 0));
  n = fgetxattr(fd.get(), "user.e2e.bin", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), binary);

  // The store holds them (user.* passes through).
  n = getxattr(sp("f").c_str(), "user.e2e.test", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), "v2") << "xattr in the store file";

  ASSERT_SYS_OK(removexattr(f.c_str(), "user.e2e.test"));
  EXPECT_SYS_ERRNO(getxattr(f.c_str(), "user.e2e.test", buf, sizeof buf), ENODATA);
  EXPECT_SYS_ERRNO(removexattr(f.c_str(), "user.e2e.test"), ENODATA);
  EXPECT_SYS_ERRNO(getxattr(f.c_str(), "user.never.set", buf, sizeof buf), ENODATA);

  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  EXPECT_SYS_OK(setxattr(p("d").c_str(), "user.dir", "dv", 2, 0));
  n = getxattr(p("d").c_str(), "user.dir", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), "dv") << "xattr on a directory";
}

// ---------------------------------------------------------------------------------------
// large and sparse files

TEST_F(Posix, SparseFileBeyondFourGiB) {
  const off_t kFar = 5 * kGiB;
  const std::string data = pattern_bytes(kMiB, 5);
  Fd fd = Fd::open(p("sparse"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_TRUE(pwrite_all(fd.get(), data, kFar));
  // A write straddling the 4 GiB boundary (32-bit offset overflow).
  ASSERT_TRUE(pwrite_all(fd.get(), "edge", 4 * kGiB - 2));

  struct stat st;
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, kFar + kMiB);
  EXPECT_LT(st.st_blocks * 512, 64 * kMiB) << "the file is not sparse";

  std::string got;
  ASSERT_TRUE(pread_all(fd.get(), kMiB, kFar, &got));
  EXPECT_TRUE(got == data) << "data at 5 GiB differs";
  ASSERT_TRUE(pread_all(fd.get(), 4, 4 * kGiB - 2, &got));
  EXPECT_EQ(got, "edge");
  ASSERT_TRUE(pread_all(fd.get(), 64 * kKiB, kGiB, &got));
  EXPECT_EQ(got, std::string(64 * kKiB, '\0')) << "a hole must read as zeros";
  ASSERT_TRUE(pread_all(fd.get(), 8192, kFar - 4096, &got));
  EXPECT_EQ(got, std::string(4096, '\0') + data.substr(0, 4096));
  EXPECT_EQ(pread(fd.get(), &got[0], 1, kFar + kMiB), 0) << "read at end of file";

  // SEEK_DATA/SEEK_HOLE: either the real layout, or the generic fallback
  // (data at the offset, hole at the end of file).
  off_t data_at = lseek(fd.get(), 0, SEEK_DATA);
  ASSERT_GE(data_at, 0) << "lseek(SEEK_DATA): " << errno_text(errno);
  EXPECT_TRUE(data_at == 0 || (data_at <= 4 * kGiB - 2 && data_at >= 4 * kGiB - 2 - kMiB))
      << "SEEK_DATA from 0 returned " << data_at;
  off_t hole_at = lseek(fd.get(), 0, SEEK_HOLE);
  ASSERT_GE(hole_at, 0) << "lseek(SEEK_HOLE): " << errno_text(errno);
  EXPECT_TRUE(hole_at == 0 || hole_at == st.st_size) << "SEEK_HOLE from 0 returned " << hole_at;
  EXPECT_SYS_ERRNO(lseek(fd.get(), st.st_size, SEEK_DATA), ENXIO);

  ASSERT_EQ(fd.close(), 0);
  ASSERT_SYS_OK(stat(p("sparse").c_str(), &st));
  EXPECT_EQ(st.st_size, kFar + kMiB);
  auto sst = lstat_of(sp("sparse"));
  ASSERT_TRUE(sst.has_value()) << "missing in the store";
  EXPECT_EQ(sst->st_size, kFar + kMiB) << "store file size";
  EXPECT_LT(sst->st_blocks * 512, 64 * kMiB) << "the store file is not sparse";

  // Grow and shrink around the large size.
  ASSERT_SYS_OK(truncate(p("sparse").c_str(), 6 * kGiB));
  ASSERT_SYS_OK(stat(p("sparse").c_str(), &st));
  EXPECT_EQ(st.st_size, 6 * kGiB);
  ASSERT_SYS_OK(truncate(p("sparse").c_str(), kFar + 10));
  Fd again = Fd::open(p("sparse"), O_RDONLY);
  ASSERT_FD(again);
  ASSERT_TRUE(pread_all(again.get(), 100, kFar, &got));
  EXPECT_EQ(got, data.substr(0, 10));
}

TEST_F(Posix, SixtyFourMiBWriteAndReadBackWithChecksum) {
  watchdog_extend_current_test(std::chrono::seconds(120));
  constexpr size_t kChunk = kMiB;
  constexpr int kChunks = 64;
  uint64_t written = 0xcbf29ce484222325ULL;
  {
    Fd fd = Fd::open(p("big"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_FD(fd);
    for (int i = 0; i < kChunks; ++i) {
      std::string chunk = pattern_bytes(kChunk, 100 + i);
      ssize_t n = write(fd.get(), chunk.data(), chunk.size());
      ASSERT_EQ(n, static_cast<ssize_t>(chunk.size())) << "write " << i << ": "
                                                        << errno_text(errno);
      written = dsdfs::fnv1a64(chunk, written);
    }
    ASSERT_SYS_OK(fsync(fd.get()));
    ASSERT_EQ(fd.close(), 0);
  }
  struct stat st;
  ASSERT_SYS_OK(stat(p("big").c_str(), &st));
  EXPECT_EQ(st.st_size, static_cast<off_t>(kChunks * kChunk));

  auto checksum_of = [&](const std::string& path, size_t read_size, uint64_t* out) {
    Fd fd = Fd::open(path, O_RDONLY);
    ASSERT_FD(fd);
    std::string buf(read_size, '\0');
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t total = 0;
    for (;;) {
      ssize_t n = read(fd.get(), buf.data(), buf.size());
      ASSERT_GE(n, 0) << errno_text(errno);
      if (n == 0) break;
      h = dsdfs::fnv1a64(std::string_view(buf.data(), n), h);
      total += n;
    }
    EXPECT_EQ(total, kChunks * kChunk) << path;
    *out = h;
  };
  uint64_t via_mount = 0, via_store = 0;
  checksum_of(p("big"), kChunk, &via_mount);
  EXPECT_EQ(via_mount, written) << "data read through the mount differs";
  checksum_of(p("big"), 4096 + 17, &via_mount);  // odd-sized reads
  EXPECT_EQ(via_mount, written) << "data read in odd-sized pieces differs";
  checksum_of(sp("big"), kChunk, &via_store);
  EXPECT_EQ(via_store, written) << "data in the store differs";

  // One 8 MiB write() and one 8 MiB read(): the kernel splits them into many requests.
  std::string eight = pattern_bytes(8 * kMiB, 42);
  {
    Fd fd = Fd::open(p("eight"), O_CREAT | O_RDWR, 0644);
    ASSERT_FD(fd);
    ASSERT_EQ(write(fd.get(), eight.data(), eight.size()), static_cast<ssize_t>(eight.size()));
    std::string back(eight.size(), '\0');
    ASSERT_EQ(pread(fd.get(), back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
    EXPECT_TRUE(back == eight) << "8 MiB read-back differs";
  }
}

// ---------------------------------------------------------------------------------------
// mmap

TEST_F(Posix, MmapReadSeesFileContents) {
  const size_t size = 3 * 4096 + 100;
  const std::string data = pattern_bytes(size, 9);
  ASSERT_TRUE(write_file(p("f"), data));
  Fd fd = Fd::open(p("f"), O_RDONLY);
  ASSERT_FD(fd);
  void* m = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(m, MAP_FAILED) << "mmap(PROT_READ, MAP_SHARED): " << errno_text(errno);
  EXPECT_EQ(std::memcmp(m, data.data(), size), 0);
  // The rest of the last page reads as zeros.
  EXPECT_EQ(static_cast<const char*>(m)[size + 10], '\0');
  munmap(m, size);
  void* priv = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
  ASSERT_NE(priv, MAP_FAILED) << "mmap(MAP_PRIVATE): " << errno_text(errno);
  EXPECT_EQ(std::memcmp(priv, data.data(), size), 0);
  static_cast<char*>(priv)[0] ^= 1;  // private: must not reach the file
  munmap(priv, size);
  EXPECT_TRUE(file_has(p("f"), data));
}

TEST_F(Posix, SharedWritableMmapAndReadWriteSeeEachOther) {
  const size_t size = 4 * 4096;
  Fd fd = Fd::open(p("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_SYS_OK(ftruncate(fd.get(), size));
  char* m = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED,
                                    fd.get(), 0));
  ASSERT_NE(m, MAP_FAILED) << "mmap(PROT_WRITE, MAP_SHARED): " << errno_text(errno);
  const std::string page = pattern_bytes(4096, 11);
  std::memcpy(m + 4096, page.data(), page.size());
  ASSERT_SYS_OK(msync(m, size, MS_SYNC));

  std::string got;
  ASSERT_TRUE(pread_all(fd.get(), 4096, 4096, &got));
  EXPECT_TRUE(got == page) << "read() through the same descriptor after msync";
  {
    Fd other = Fd::open(p("f"), O_RDONLY);
    ASSERT_FD(other);
    ASSERT_TRUE(pread_all(other.get(), 4096, 4096, &got));
    EXPECT_TRUE(got == page) << "read() through a new descriptor after msync";
  }
  // And the other way: write() shows in the mapping.
  ASSERT_TRUE(pwrite_all(fd.get(), "written by pwrite", 2 * 4096));
  EXPECT_EQ(std::string(m + 2 * 4096, 17), "written by pwrite");
  ASSERT_SYS_OK(munmap(m, size));
  ASSERT_EQ(fd.close(), 0);

  std::string expected(size, '\0');
  expected.replace(4096, 4096, page);
  expected.replace(2 * 4096, 17, "written by pwrite");
  EXPECT_TRUE(file_has(p("f"), expected));
  EXPECT_TRUE(file_has(sp("f"), expected)) << "the store must hold the mmap-written bytes";
}

// ---------------------------------------------------------------------------------------
// fallocate

TEST_F(Posix, FallocateModesWorkOrReportEopnotsupp) {
  Fd fd = Fd::open(p("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  std::vector<std::string> unsupported;
  struct stat st;

  // Mode 0: allocates and extends.
  if (fallocate(fd.get(), 0, 0, kMiB) == 0) {
    ASSERT_SYS_OK(fstat(fd.get(), &st));
    EXPECT_EQ(st.st_size, kMiB);
    std::string got;
    ASSERT_TRUE(pread_all(fd.get(), 4096, 512 * kKiB, &got));
    EXPECT_EQ(got, std::string(4096, '\0'));
    auto sst = lstat_of(sp("f"));
    ASSERT_TRUE(sst.has_value());
    EXPECT_EQ(sst->st_size, kMiB) << "store file size after fallocate";
  } else {
    ASSERT_EQ(errno, EOPNOTSUPP) << "fallocate(0): " << errno_text(errno);
    unsupported.push_back("default");
    ASSERT_SYS_OK(ftruncate(fd.get(), kMiB));
  }

  // KEEP_SIZE beyond the end: size unchanged.
  if (fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, kMiB, kMiB) == 0) {
    ASSERT_SYS_OK(fstat(fd.get(), &st));
    EXPECT_EQ(st.st_size, kMiB) << "FALLOC_FL_KEEP_SIZE changed the size";
  } else {
    ASSERT_EQ(errno, EOPNOTSUPP) << "fallocate(KEEP_SIZE): " << errno_text(errno);
    unsupported.push_back("KEEP_SIZE");
  }

  // PUNCH_HOLE: zeros in the range, the rest intact, size unchanged.
  const std::string data = pattern_bytes(256 * kKiB, 3);
  ASSERT_TRUE(pwrite_all(fd.get(), data, 0));
  if (fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * kKiB, 64 * kKiB) ==
      0) {
    std::string got;
    ASSERT_TRUE(pread_all(fd.get(), 256 * kKiB, 0, &got));
    std::string expected = data;
    std::fill(expected.begin() + 64 * kKiB, expected.begin() + 128 * kKiB, '\0');
    EXPECT_TRUE(got == expected) << "PUNCH_HOLE did not zero exactly the range";
    ASSERT_SYS_OK(fstat(fd.get(), &st));
    EXPECT_EQ(st.st_size, kMiB);
  } else {
    ASSERT_EQ(errno, EOPNOTSUPP) << "fallocate(PUNCH_HOLE): " << errno_text(errno);
    unsupported.push_back("PUNCH_HOLE");
  }
  if (!unsupported.empty())
    RecordProperty("fallocate_unsupported", ::testing::PrintToString(unsupported));
}

// ---------------------------------------------------------------------------------------
// refused operations and name limits

TEST_F(Posix, HardLinksShareOneFileUntilTheLastNameGoes) {
  ASSERT_TRUE(write_file(p("f"), "f"));
  ASSERT_SYS_OK(mkdir(p("sub").c_str(), 0755));
  ASSERT_SYS_OK(link(p("f").c_str(), p("g").c_str()));
  ASSERT_SYS_OK(linkat(AT_FDCWD, p("f").c_str(), AT_FDCWD, p("sub/h").c_str(), 0));
  EXPECT_SYS_ERRNO(link(p("f").c_str(), p("g").c_str()), EEXIST);
  EXPECT_SYS_ERRNO(link(p("sub").c_str(), p("sub2").c_str()), EPERM);
  struct stat f, g, h;
  ASSERT_SYS_OK(stat(p("f").c_str(), &f));
  ASSERT_SYS_OK(stat(p("g").c_str(), &g));
  ASSERT_SYS_OK(stat(p("sub/h").c_str(), &h));
  EXPECT_EQ(f.st_nlink, 3u);
  EXPECT_EQ(g.st_nlink, 3u);
  EXPECT_EQ(f.st_ino, g.st_ino);
  EXPECT_EQ(f.st_ino, h.st_ino);
  // One file: a write through one name shows through the others.
  ASSERT_TRUE(pwrite_all(Fd::open(p("g"), O_WRONLY | O_APPEND).get(), "+g", 0));
  EXPECT_TRUE(file_has(p("f"), "f+g"));
  EXPECT_TRUE(file_has(p("sub/h"), "f+g"));
  // Unlinking a name keeps the others; renaming one moves only that name.
  ASSERT_SYS_OK(unlink(p("f").c_str()));
  ASSERT_SYS_OK(stat(p("g").c_str(), &g));
  EXPECT_EQ(g.st_nlink, 2u);
  ASSERT_SYS_OK(rename(p("sub/h").c_str(), p("h2").c_str()));
  EXPECT_TRUE(file_has(p("h2"), "f+g"));
  ASSERT_SYS_OK(unlink(p("g").c_str()));
  ASSERT_SYS_OK(stat(p("h2").c_str(), &h));
  EXPECT_EQ(h.st_nlink, 1u);
  EXPECT_TRUE(file_has(sp("h2"), "f+g")) << "the store holds the last name";
  EXPECT_FALSE(path_exists(sp("g")));
  // The tools users run: cp -al, and ln.
  ASSERT_SYS_OK(mkdir(p("tree").c_str(), 0755));
  ASSERT_TRUE(write_file(p("tree/a"), "a"));
  TempDir scratch("dsdfs-e2e-links");
  CommandResult r = run_command(
      {"/bin/sh", "-c", "cp -al " + p("tree") + " " + p("tree2") + " && ln " + p("tree/a") + " " + p("lnk")},
      scratch.path());
  ASSERT_EQ(r.exit_code(), 0) << r.out << r.err;
  struct stat a1, a2;
  ASSERT_SYS_OK(stat(p("tree/a").c_str(), &a1));
  ASSERT_SYS_OK(stat(p("tree2/a").c_str(), &a2));
  EXPECT_EQ(a1.st_ino, a2.st_ino);
  EXPECT_EQ(a2.st_nlink, 3u);
}

TEST_F(Posix, NamesLongerThan255BytesAreRejected) {
  const std::string n255(255, 'n');
  const std::string n256(256, 'n');
  ASSERT_TRUE(write_file(p("f"), "f"));
  EXPECT_SYS_ERRNO(open(p(n256).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), ENAMETOOLONG);
  EXPECT_SYS_ERRNO(mkdir(p(n256).c_str(), 0755), ENAMETOOLONG);
  EXPECT_SYS_ERRNO(symlink("f", p(n256).c_str()), ENAMETOOLONG);
  EXPECT_SYS_ERRNO(rename(p("f").c_str(), p(n256).c_str()), ENAMETOOLONG);
  struct stat st;
  EXPECT_SYS_ERRNO(lstat(p(n256).c_str(), &st), ENAMETOOLONG);

  // 255 bytes is fine.
  ASSERT_TRUE(write_file(p(n255), "max"));
  EXPECT_TRUE(file_has(p(n255), "max"));
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(dir_, &entries));
  EXPECT_EQ(names_of(entries), (std::vector<std::string>{"f", n255}));
  EXPECT_TRUE(file_has(sp(n255), "max"));
  ASSERT_SYS_OK(unlink(p(n255).c_str()));
  ASSERT_SYS_OK(mkdir(p(n255).c_str(), 0755));
  ASSERT_SYS_OK(rmdir(p(n255).c_str()));
}

// Paths longer than PATH_MAX exist on every local file system: build one with *at() calls.
TEST_F(Posix, PathsLongerThanPathMaxWorkThroughRelativeCalls) {
  const std::string component(200, 'd');
  constexpr int kDepth = 25;  // about 5000 bytes below the mount
  std::vector<Fd> dirs;
  dirs.push_back(Fd::open(dir_, O_RDONLY | O_DIRECTORY));
  ASSERT_FD(dirs.back());
  for (int i = 0; i < kDepth; ++i) {
    ASSERT_SYS_OK(mkdirat(dirs.back().get(), component.c_str(), 0755)) << "depth " << i;
    dirs.push_back(Fd::openat(dirs.back().get(), component, O_RDONLY | O_DIRECTORY));
    ASSERT_FD(dirs.back()) << "depth " << i;
  }
  {
    Fd f = Fd::openat(dirs.back().get(), "leaf", O_CREAT | O_RDWR, 0644);
    ASSERT_FD(f);
    ASSERT_TRUE(pwrite_all(f.get(), "deep data", 0));
    ASSERT_EQ(f.close(), 0);
  }
  {
    Fd f = Fd::openat(dirs.back().get(), "leaf", O_RDONLY);
    ASSERT_FD(f);
    std::string got;
    ASSERT_TRUE(pread_all(f.get(), 100, 0, &got));
    EXPECT_EQ(got, "deep data");
  }
  // Clean up through the mount, deepest first (so the store can be removed afterwards).
  ASSERT_SYS_OK(unlinkat(dirs.back().get(), "leaf", 0));
  for (int i = kDepth; i > 0; --i) {
    dirs.pop_back();
    ASSERT_SYS_OK(unlinkat(dirs.back().get(), component.c_str(), AT_REMOVEDIR)) << "depth " << i;
  }
}

TEST_F(Posix, OpenFlagsExclCreatDirectory) {
  ASSERT_TRUE(write_file(p("f"), "keep me"));
  ASSERT_SYS_OK(mkdir(p("d").c_str(), 0755));
  ASSERT_SYS_OK(symlink("nowhere", p("dangling").c_str()));
  EXPECT_SYS_ERRNO(open(p("f").c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644), EEXIST);
  EXPECT_SYS_ERRNO(open(p("d").c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644), EEXIST);
  EXPECT_SYS_ERRNO(open(p("dangling").c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644),
                   EEXIST);
  EXPECT_FALSE(path_exists(p("nowhere"))) << "O_EXCL must not follow a dangling symlink";
  {
    // O_CREAT without O_EXCL opens the existing file without truncating it.
    Fd fd = Fd::open(p("f"), O_CREAT | O_WRONLY, 0600);
    ASSERT_FD(fd);
  }
  EXPECT_TRUE(file_has(p("f"), "keep me"));
  EXPECT_SYS_ERRNO(open(p("missing").c_str(), O_RDONLY | O_CLOEXEC), ENOENT);
  EXPECT_SYS_ERRNO(open(p("f").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), ENOTDIR);
  EXPECT_SYS_ERRNO(open(p("d").c_str(), O_WRONLY | O_CLOEXEC), EISDIR);
  EXPECT_SYS_ERRNO(open(p("f/x").c_str(), O_RDONLY | O_CLOEXEC), ENOTDIR);
}

// O_DIRECT (databases staging bulk loads use it): aligned I/O works, or open says EINVAL.
TEST_F(Posix, ODirectWorksOrIsRefusedWithEinval) {
  Fd fd = Fd::open(p("direct"), O_CREAT | O_RDWR | O_DIRECT, 0644);
  if (!fd.valid()) {
    ASSERT_EQ(fd.error(), EINVAL) << "open(O_DIRECT): " << fd.error_text();
    RecordProperty("o_direct", "EINVAL");
    return;
  }
  constexpr size_t kLen = 64 * 1024;
  void* mem = nullptr;
  ASSERT_EQ(posix_memalign(&mem, 4096, kLen), 0);
  std::unique_ptr<void, decltype(&free)> buf(mem, &free);
  const std::string data = pattern_bytes(kLen, 17);
  std::memcpy(buf.get(), data.data(), kLen);
  ASSERT_EQ(pwrite(fd.get(), buf.get(), kLen, 4096), static_cast<ssize_t>(kLen))
      << errno_text(errno);
  std::memset(buf.get(), 0, kLen);
  ASSERT_EQ(pread(fd.get(), buf.get(), kLen, 4096), static_cast<ssize_t>(kLen))
      << errno_text(errno);
  EXPECT_EQ(std::memcmp(buf.get(), data.data(), kLen), 0);
  ASSERT_EQ(fd.close(), 0);
  // Buffered readers see what O_DIRECT wrote.
  EXPECT_TRUE(file_has(p("direct"), std::string(4096, '\0') + data));
  EXPECT_TRUE(file_has(sp("direct"), std::string(4096, '\0') + data));
}

// Names are bytes: spaces, control characters, UTF-8, and %r/%h (which must not be
// expanded in file names) all round-trip, on the mount and in the store.
TEST_F(Posix, UnusualNamesRoundTrip) {
  const std::vector<std::string> names = {
      "with space",   "tab\tname",  "new\nline", "\xc3\xbcn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9",
      "-leading-dash", "...",       ".hidden",   "percent%r%h%%",
      "back\\slash",  "quote'\"",   "star*?[x]", std::string("\x01\x7f\xff", 3)};
  for (const auto& n : names) {
    ASSERT_TRUE(write_file(p(n), "name: " + n)) << ::testing::PrintToString(n);
  }
  ASSERT_SYS_OK(mkdir(p("dir with space").c_str(), 0755));
  ASSERT_TRUE(write_file(p("dir with space/inner %r"), "inner"));
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(dir_, &entries));
  std::vector<std::string> want = names;
  want.push_back("dir with space");
  std::sort(want.begin(), want.end());
  EXPECT_EQ(names_of(entries), want);
  for (const auto& n : names) {
    EXPECT_TRUE(file_has(p(n), "name: " + n)) << ::testing::PrintToString(n);
    EXPECT_TRUE(file_has(sp(n), "name: " + n)) << "in the store: " << ::testing::PrintToString(n);
  }
  EXPECT_TRUE(file_has(sp("dir with space/inner %r"), "inner"));
  ASSERT_SYS_OK(rename(p("new\nline").c_str(), p("renamed\nline").c_str()));
  EXPECT_TRUE(file_has(p("renamed\nline"), "name: new\nline"));
}

// With the kernel's write cache, sizes and truncation must stay coherent before close.
TEST_F(Posix, SizeAndTruncateAreCoherentBeforeClose) {
  Fd fd = Fd::open(p("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_FD(fd);
  ASSERT_TRUE(pwrite_all(fd.get(), std::string(4096, 'a'), 0));
  struct stat st;
  ASSERT_SYS_OK(stat(p("f").c_str(), &st));
  EXPECT_EQ(st.st_size, 4096) << "stat by path while the writer is still open";
  ASSERT_SYS_OK(truncate(p("f").c_str(), 100));
  ASSERT_SYS_OK(fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 100) << "fstat after truncate by path";
  std::string got;
  ASSERT_TRUE(pread_all(fd.get(), 8192, 0, &got));
  EXPECT_EQ(got, std::string(100, 'a'));
  ASSERT_TRUE(pwrite_all(fd.get(), "z", 200));
  ASSERT_EQ(fd.close(), 0);
  EXPECT_TRUE(file_has(p("f"), std::string(100, 'a') + std::string(100, '\0') + "z"));
  EXPECT_TRUE(file_has(sp("f"), std::string(100, 'a') + std::string(100, '\0') + "z"));
}

// Device nodes (made by root, as on the store's file system) and FIFOs are used through
// this node's kernel (docs/user-guide.md).
TEST_F(Posix, DeviceNodesAndFifosWork) {
  ASSERT_SYS_OK(mknod(p("null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
  struct stat dev;
  ASSERT_SYS_OK(lstat(p("null").c_str(), &dev));
  EXPECT_TRUE(S_ISCHR(dev.st_mode));
  EXPECT_EQ(dev.st_rdev, makedev(1, 3));
  {
    Fd null = Fd::open(p("null"), O_WRONLY);
    ASSERT_FD(null);
    EXPECT_EQ(write(null.get(), "gone", 4), 4) << "a write to our /dev/null";
  }
  ASSERT_SYS_OK(mknod(p("blk").c_str(), S_IFBLK | 0600, makedev(7, 200)));
  ASSERT_SYS_OK(lstat(p("blk").c_str(), &dev));
  EXPECT_TRUE(S_ISBLK(dev.st_mode));
  ASSERT_SYS_OK(lstat(sp("null").c_str(), &dev));
  EXPECT_TRUE(S_ISCHR(dev.st_mode)) << "the store holds the device node";
  ASSERT_SYS_OK(unlink(p("null").c_str()));
  ASSERT_SYS_OK(unlink(p("blk").c_str()));
  ASSERT_SYS_OK(mkfifo(p("fifo").c_str(), 0644));
  struct stat st;
  ASSERT_SYS_OK(lstat(p("fifo").c_str(), &st));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  // Both ends open on this node: bytes pass.
  Fd r = Fd::open(p("fifo"), O_RDONLY | O_NONBLOCK);
  ASSERT_FD(r);
  Fd w = Fd::open(p("fifo"), O_WRONLY | O_NONBLOCK);
  ASSERT_FD(w);
  ASSERT_EQ(write(w.get(), "pipe", 4), 4);
  char buf[8];
  EXPECT_EQ(read(r.get(), buf, sizeof buf), 4);
  EXPECT_EQ(std::string(buf, 4), "pipe");
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(dir_, &entries));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].type, DT_FIFO);
}

// Locks are local to the node (documented); on one node they must exclude each other.
TEST_F(Posix, FlockAndFcntlLocksExcludeOtherHolders) {
  ASSERT_TRUE(write_file(p("f"), "locked"));
  Fd a = Fd::open(p("f"), O_RDWR);
  Fd b = Fd::open(p("f"), O_RDWR);
  ASSERT_FD(a);
  ASSERT_FD(b);
  ASSERT_SYS_OK(flock(a.get(), LOCK_EX));
  EXPECT_SYS_ERRNO(flock(b.get(), LOCK_EX | LOCK_NB), EWOULDBLOCK);
  ASSERT_SYS_OK(flock(a.get(), LOCK_UN));
  EXPECT_SYS_OK(flock(b.get(), LOCK_EX | LOCK_NB));
  ASSERT_SYS_OK(flock(b.get(), LOCK_UN));

  // POSIX record locks conflict between processes: the child may not take ours.
  struct flock lk = {};
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  lk.l_start = 0;
  lk.l_len = 3;
  ASSERT_SYS_OK(fcntl(a.get(), F_SETLK, &lk));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Async-signal-safe calls only (the parent has threads).
    struct flock mine = {};
    mine.l_type = F_WRLCK;
    mine.l_whence = SEEK_SET;
    mine.l_start = 1;
    mine.l_len = 1;
    int rc = fcntl(b.get(), F_SETLK, &mine);
    int conflict = rc != 0 && (errno == EAGAIN || errno == EACCES);
    mine.l_start = 10;  // outside the parent's range: must work
    int free_ok = fcntl(b.get(), F_SETLK, &mine) == 0;
    _exit(conflict && free_ok ? 0 : (conflict ? 2 : 1));
  }
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << describe_status(st)
      << " (1: another process took a byte range we hold; 2: a free range was refused)";
}

// dsdfs's own read-only attributes (docs/user-guide.md): owner of a file, reserved names.
TEST_F(Posix, DsdfsOwnerAttributeAndReservedNamespace) {
  ASSERT_TRUE(write_file(p("f"), "f"));
  char buf[256];
  ssize_t n = getxattr(p("f").c_str(), "user.dsdfs.owner", buf, sizeof buf);
  ASSERT_GT(n, 0) << "getxattr(user.dsdfs.owner): " << errno_text(errno);
  std::string owner(buf, n);
  EXPECT_TRUE(owner.starts_with("0 ")) << "owner of a file made by rank 0: " << owner;
  EXPECT_NE(owner.find(short_hostname()), std::string::npos) << owner;
  EXPECT_SYS_ERRNO(setxattr(p("f").c_str(), "user.dsdfs.owner", "1", 1, 0), EPERM);
  EXPECT_SYS_ERRNO(setxattr(p("f").c_str(), "user.dsdfs.mine", "1", 1, 0), EPERM);
}

// A root daemon serves every user of the node (allow_other): other users get the ordinary
// permission checks, own what they create, and lose setuid bits when they write.
TEST_F(Posix, OtherUsersGetOrdinaryPermissionChecks) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  auto mounts = mounts_at(dsdfs().mnt());
  ASSERT_FALSE(mounts.empty());
  if (mounts.back().super_options.find("allow_other") == std::string::npos)
    GTEST_SKIP() << "this daemon does not serve other users (no allow_other)";
  auto nobody = run_as_user("nobody");
  ASSERT_TRUE(nobody.has_value()) << "no user 'nobody'";
  ASSERT_SYS_OK(chmod(dir_.c_str(), 0777));
  ASSERT_TRUE(write_file(p("roots"), "root's"));
  ASSERT_TRUE(write_file(p("secret"), "s", 0600));
  ASSERT_SYS_OK(mkdir(p("closed").c_str(), 0755));
  ASSERT_TRUE(write_file(p("suid"), "#"));
  ASSERT_SYS_OK(chmod(p("suid").c_str(), 06777));
  ASSERT_SYS_OK(mkdir(p("sticky").c_str(), 0777));
  ASSERT_SYS_OK(chmod(p("sticky").c_str(), 01777));
  ASSERT_TRUE(write_file(p("sticky/roots"), "r"));
  TempDir scratch("dsdfs-e2e-nobody");
  CommandResult r = run_command(
      {"/bin/sh", "-c",
       "cd '" + dir_ + "' || exit 9\n"
       "echo mine > mine || echo 'FAIL: cannot create in a 0777 directory'\n"
       "stat -c 'owner %u' mine\n"
       "if echo x >> roots 2>/dev/null; then echo 'FAIL: wrote root 0644 file'; fi\n"
       "if cat secret >/dev/null 2>&1; then echo 'FAIL: read root 0600 file'; fi\n"
       "if touch closed/x 2>/dev/null; then echo 'FAIL: created in root 0755 dir'; fi\n"
       "rm -f sticky/roots 2>/dev/null\n"
       "if [ ! -e sticky/roots ]; then echo 'FAIL: removed root file in sticky dir'; fi\n"
       "if chown 0 mine 2>/dev/null; then echo 'FAIL: gave a file away'; fi\n"
       "if chmod 644 roots 2>/dev/null; then echo 'FAIL: chmod of root file'; fi\n"
       "echo more >> suid || echo 'FAIL: cannot append to a 06777 file'\n"
       "stat -c 'suid %a' suid\n"},
      scratch.path(), 30s, nobody);
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.out, "owner " + std::to_string(nobody->uid) + "\nsuid 777\n")
      << "as nobody (FAIL lines are permission checks that did not hold; suid must drop "
         "S_ISUID and S_ISGID after a write by another user)\n  stderr: "
      << r.err;
  auto st = lstat_of(sp("mine"));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->st_uid, nobody->uid) << "owner of nobody's file in the store";
  st = lstat_of(sp("suid"));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->st_mode & 07777, 0777u) << "mode of the written setuid file in the store";
  EXPECT_TRUE(file_has(p("roots"), "root's"));
  EXPECT_TRUE(file_has(p("suid"), "#more\n"));
}

// ---------------------------------------------------------------------------------------
// the store

TEST_F(Posix, TheStoreHoldsTheBytesAtTheSamePath) {
  ASSERT_SYS_OK(mkdir(p("a").c_str(), 0755));
  ASSERT_SYS_OK(mkdir(p("a/b").c_str(), 0755));
  const std::string data = pattern_bytes(100 * kKiB, 21);
  ASSERT_TRUE(write_file(p("a/b/file"), data));
  auto sst = lstat_of(sp("a/b/file"));
  ASSERT_TRUE(sst.has_value()) << sp("a/b/file") << " does not exist";
  EXPECT_TRUE(S_ISREG(sst->st_mode));
  EXPECT_EQ(sst->st_size, static_cast<off_t>(data.size()));
  EXPECT_TRUE(file_has(sp("a/b/file"), data));
  auto sdir = lstat_of(sp("a/b"));
  ASSERT_TRUE(sdir.has_value());
  EXPECT_TRUE(S_ISDIR(sdir->st_mode));

  // Appends reach the store by close.
  {
    Fd fd = Fd::open(p("a/b/file"), O_WRONLY | O_APPEND);
    ASSERT_FD(fd);
    ASSERT_EQ(write(fd.get(), "tail", 4), 4);
    ASSERT_EQ(fd.close(), 0);
  }
  EXPECT_TRUE(file_has(sp("a/b/file"), data + "tail"));
}

TEST_F(Posix, ParallelWritersOnDistinctFiles) {
  constexpr int kThreads = 4;
  constexpr int kFilesEach = 50;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kFilesEach; ++i) {
        char base[32];
        snprintf(base, sizeof base, "t%d-%d", t, i);
        std::string name = p(base);
        std::string data = pattern_bytes(8192 + i, t * 1000 + i);
        if (!write_file(name, data) || !file_has(name, data)) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(dir_, &entries));
  EXPECT_EQ(entries.size(), static_cast<size_t>(kThreads * kFilesEach));
}

// ---------------------------------------------------------------------------------------
// tests that need a daemon of their own (they would disturb the others)

class PosixOwnDaemon : public ::testing::Test {
 protected:
  void start(unsigned long nofile_limit = 0) {
    DsdfsConfig config;
    config.root = tmp_.path();
    config.nofile_limit = nofile_limit;
    inst_ = std::make_unique<DsdfsInstance>(config);
    ASSERT_TRUE(inst_->start());
  }
  void TearDown() override {
    if (HasFailure() && inst_) {
      fprintf(stderr, "---- dsdfs-launch log ----\n%s---- end of log ----\n",
              inst_->log_since(0).c_str());
    }
    if (inst_ && inst_->running()) {
      auto stopped = inst_->stop();
      EXPECT_TRUE(stopped) << stopped.message();
      EXPECT_FALSE(path_exists(inst_->store())) << "store not removed on stop";
    }
    inst_.reset();
  }
  TempDir tmp_{"dsdfs-e2e-own"};
  std::unique_ptr<DsdfsInstance> inst_;
};

// A job can create more files than the daemon may hold descriptors. Every file must stay
// reachable: creating, listing and reading them must not fail with EMFILE or ENFILE. The
// daemon runs with "ulimit -n 4096" (soft = hard), common on cluster nodes.
//
// A daemon that keeps a descriptor per inode the kernel remembers fails here unless the
// kernel happens to evict inodes (memory pressure) during the test; a correct daemon
// always passes.
TEST_F(PosixOwnDaemon, MoreFilesThanTheDaemonsDescriptorLimit) {
  constexpr unsigned long kLimit = 4096;
  ASSERT_NO_FATAL_FAILURE(start(kLimit));
  std::string limits = slurp("/proc/" + std::to_string(inst_->pid()) + "/limits");
  ASSERT_NE(limits.find("Max open files            4096                 4096"),
            std::string::npos)
      << limits;
  const int files = static_cast<int>(kLimit) + 2000;
  RecordProperty("files", files);
  int failed_at = -1;
  std::string why;
  for (int i = 0; i < files; ++i) {
    char name[32];
    snprintf(name, sizeof name, "n%06d", i);
    Fd fd = Fd::open(inst_->path(name), O_CREAT | O_WRONLY, 0644);
    if (!fd.valid()) {
      failed_at = i;
      why = fd.error_text();
      break;
    }
  }
  ASSERT_EQ(failed_at, -1) << "creating file " << failed_at << " of " << files
                           << " failed: " << why << " (daemon descriptor limit " << kLimit
                           << ")";
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(inst_->mnt(), &entries));
  EXPECT_EQ(entries.size(), static_cast<size_t>(files));
  // Read a spread of them back, first ones included (their inodes are the oldest).
  for (int i = 0; i < files; i += files / 50) {
    char name[32];
    snprintf(name, sizeof name, "n%06d", i);
    EXPECT_TRUE(file_has(inst_->path(name), "")) << name;
  }
  EXPECT_TRUE(write_file(inst_->path("after"), "still works"));
  EXPECT_TRUE(file_has(inst_->path("after"), "still works"));
}

// An unpacked source tree: thousands of directories with a few files each, under the same
// "ulimit -n 4096". Every directory of the job costs the daemon a descriptor it never
// closes; the files' handles must make room for them. (A daemon that held two descriptors
// per directory, one for its replica and one for the kernel's inode, and kept half of its
// limit for files failed here with EMFILE at about the 1,000th directory, as `tar -xf` of a
// kernel source tree did.)
TEST_F(PosixOwnDaemon, ManyDirectoriesWithFilesUnderTheDaemonsDescriptorLimit) {
  constexpr unsigned long kLimit = 4096;
  ASSERT_NO_FATAL_FAILURE(start(kLimit));
  const int dirs = 2500;
  RecordProperty("directories", dirs);
  for (int d = 0; d < dirs; ++d) {
    const std::string dir = "d" + std::to_string(d / 50) + "/s" + std::to_string(d);
    if (d % 50 == 0) {
      ASSERT_SYS_OK(::mkdir(inst_->path("d" + std::to_string(d / 50)).c_str(), 0755));
    }
    ASSERT_SYS_OK(::mkdir(inst_->path(dir).c_str(), 0755)) << "directory " << d << " of " << dirs;
    for (int f = 0; f < 2; ++f) {
      const std::string file = dir + "/f" + std::to_string(f);
      ASSERT_TRUE(write_file(inst_->path(file), file)) << file;
    }
  }
  for (int d = 0; d < dirs; d += 97) {
    const std::string dir = "d" + std::to_string(d / 50) + "/s" + std::to_string(d);
    std::vector<DirEntry> entries;
    ASSERT_TRUE(list_dir(inst_->path(dir), &entries)) << dir;
    EXPECT_EQ(entries.size(), 2u) << dir;
    EXPECT_TRUE(file_has(inst_->path(dir + "/f1"), dir + "/f1")) << dir;
  }
  EXPECT_TRUE(write_file(inst_->path("after"), "still works"));
  EXPECT_TRUE(file_has(inst_->path("after"), "still works"));
}

// With a small descriptor limit a daemon may close and later reopen its handles of files
// it has not used for a while. Whatever it does, every call must still act on the file the
// caller means: the one an open descriptor refers to, or the one a name refers to *now*
// (after renames, replacements and exchanges), never a file that happens to have had
// that name before.
TEST_F(PosixOwnDaemon, FilesStayIdentifiedCorrectlyUnderDescriptorPressure) {
  ASSERT_NO_FATAL_FAILURE(start(4096));
  auto m = [&](const std::string& rel) { return inst_->path(rel); };
  auto fill = [&](const std::string& dir, int count) {
    ASSERT_SYS_OK(mkdir(m(dir).c_str(), 0755));
    for (int i = 0; i < count; ++i) {
      char name[32];
      snprintf(name, sizeof name, "/f%05d", i);
      Fd fd = Fd::open(m(dir) + name, O_CREAT | O_WRONLY, 0644);
      ASSERT_FD(fd) << "filler " << i;
    }
  };
  ASSERT_SYS_OK(mkdir(m("d").c_str(), 0755));
  ASSERT_TRUE(write_file(m("d/a"), "AAAA"));
  ASSERT_TRUE(write_file(m("d/b"), "BBBBBBBB"));
  ASSERT_TRUE(write_file(m("d/x"), "xxx"));
  ASSERT_TRUE(write_file(m("d/y"), "yyyyyy"));
  ASSERT_TRUE(write_file(m("d/keep"), "keep"));
  ASSERT_TRUE(write_file(m("d/gone"), "gone"));
  struct stat st;
  ASSERT_SYS_OK(stat(m("d/keep").c_str(), &st));
  const ino_t keep_ino = st.st_ino;
  ASSERT_SYS_OK(stat(m("d/x").c_str(), &st));
  const ino_t x_ino = st.st_ino;
  ASSERT_SYS_OK(stat(m("d/y").c_str(), &st));
  const ino_t y_ino = st.st_ino;
  Fd old_a = Fd::open(m("d/a"), O_RDONLY);
  ASSERT_FD(old_a);
  Fd gone = Fd::open(m("d/gone"), O_RDWR);
  ASSERT_FD(gone);
  ASSERT_SYS_OK(unlink(m("d/gone").c_str()));
  // An unlinked open file whose name is taken by a new file.
  ASSERT_TRUE(write_file(m("d/reused"), "old"));
  Fd reused = Fd::open(m("d/reused"), O_RDWR);
  ASSERT_FD(reused);
  ASSERT_SYS_OK(unlink(m("d/reused").c_str()));
  ASSERT_TRUE(write_file(m("d/reused"), "the new file", 0644));

  // Push the daemon well past half its descriptor limit, so old handles are dropped.
  ASSERT_NO_FATAL_FAILURE(fill("fill1", 3000));

  // 1. Replace a while a descriptor of the old a is open.
  ASSERT_SYS_OK(rename(m("d/b").c_str(), m("d/a").c_str()));
  ASSERT_SYS_OK(fstat(old_a.get(), &st));
  EXPECT_EQ(st.st_size, 4) << "fstat of the replaced file's descriptor shows another file";
  std::string got;
  ASSERT_TRUE(pread_all(old_a.get(), 100, 0, &got));
  EXPECT_EQ(got, "AAAA");
  ASSERT_SYS_OK(fchmod(old_a.get(), 0600));
  ASSERT_SYS_OK(stat(m("d/a").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0644u) << "fchmod of the replaced file changed the new d/a";
  EXPECT_EQ(st.st_size, 8);
  EXPECT_TRUE(file_has(m("d/a"), "BBBBBBBB"));

  // 2. The unlinked open file is still itself.
  EXPECT_TRUE(pwrite_all(gone.get(), "+more", 4));
  if (fstat(gone.get(), &st) == 0) {
    EXPECT_EQ(st.st_size, 9);
  } else {
    ADD_FAILURE() << "fstat of an unlinked open file failed: " << errno_text(errno);
  }
  EXPECT_TRUE(pread_all(gone.get(), 100, 0, &got));
  EXPECT_EQ(got, "gone+more");
  EXPECT_SYS_OK(ftruncate(gone.get(), 2)) << "unlinked open file";
  EXPECT_SYS_OK(fchmod(gone.get(), 0600)) << "unlinked open file";

  if (fstat(reused.get(), &st) == 0) {
    EXPECT_EQ(st.st_size, 3) << "fstat of an unlinked file shows the new file of that name";
  } else {
    ADD_FAILURE() << "fstat of an unlinked open file failed: " << errno_text(errno);
  }
  EXPECT_SYS_OK(fchmod(reused.get(), 0600)) << "unlinked open file";
  EXPECT_SYS_OK(ftruncate(reused.get(), 1)) << "unlinked open file";
  ASSERT_SYS_OK(stat(m("d/reused").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0644u) << "fchmod of the unlinked file changed the new one";
  EXPECT_TRUE(file_has(m("d/reused"), "the new file"))
      << "ftruncate of the unlinked file changed the new one";

  // 3. Exchange (if supported), then more pressure, then use both names.
  bool exchanged =
      renameat2(AT_FDCWD, m("d/x").c_str(), AT_FDCWD, m("d/y").c_str(), RENAME_EXCHANGE) == 0;
  ASSERT_NO_FATAL_FAILURE(fill("fill2", 3000));
  EXPECT_TRUE(file_has(m("d/x"), exchanged ? "yyyyyy" : "xxx"));
  EXPECT_TRUE(file_has(m("d/y"), exchanged ? "xxx" : "yyyyyy"));
  ASSERT_SYS_OK(stat(m("d/x").c_str(), &st));
  EXPECT_EQ(st.st_ino, exchanged ? y_ino : x_ino) << "inode number does not follow the file";
  ASSERT_SYS_OK(chmod(m("d/x").c_str(), 0600));
  ASSERT_SYS_OK(stat(m("d/y").c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0644u) << "chmod of d/x changed d/y";
  ASSERT_TRUE(pwrite_all(Fd::open(m("d/x"), O_WRONLY | O_APPEND).get(), "!", 0));
  EXPECT_TRUE(file_has(m("d/x"), exchanged ? "yyyyyy!" : "xxx!"));
  EXPECT_TRUE(file_has(m("d/y"), exchanged ? "xxx" : "yyyyyy"));

  // 4. Move the directory, more pressure, then use its old files by their new names.
  ASSERT_SYS_OK(rename(m("d").c_str(), m("e").c_str()));
  ASSERT_NO_FATAL_FAILURE(fill("fill3", 3000));
  EXPECT_TRUE(file_has(m("e/keep"), "keep"));
  ASSERT_SYS_OK(stat(m("e/keep").c_str(), &st));
  EXPECT_EQ(st.st_ino, keep_ino) << "inode number changed";
  ASSERT_SYS_OK(truncate(m("e/keep").c_str(), 2));
  EXPECT_TRUE(file_has(m("e/keep"), "ke"));
  EXPECT_SYS_OK(setxattr(m("e/keep").c_str(), "user.e2e", "v", 1, 0));
  EXPECT_TRUE(file_has(inst_->store_path("e/keep"), "ke"));
  EXPECT_TRUE(file_has(inst_->store_path("e/a"), "BBBBBBBB"));
  EXPECT_FALSE(path_exists(inst_->store_path("d")));
}

// ---------------------------------------------------------------------------------------
// restart with --keep-store

class PosixRestart : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && last_) {
      fprintf(stderr, "---- dsdfs-launch log ----\n%s---- end of log ----\n",
              last_->log_since(0).c_str());
    }
  }
  TempDir tmp_{"dsdfs-e2e-restart"};
  DsdfsInstance* last_ = nullptr;
};

TEST_F(PosixRestart, DataSurvivesARestartWithKeepStore) {
  DsdfsConfig config;
  config.root = tmp_.path();
  config.keep_store = true;
  const std::string big = pattern_bytes(300 * kKiB, 77);
  struct timespec ts[2] = {{1400000000, 111}, {1400000001, 222}};
  bool have_xattr = false;
  {
    DsdfsInstance first(config);
    last_ = &first;
    ASSERT_TRUE(first.start());
    ASSERT_SYS_OK(mkdir(first.path("d").c_str(), 0750));
    ASSERT_SYS_OK(mkdir(first.path("d/e").c_str(), 0755));
    ASSERT_TRUE(write_file(first.path("d/a"), big));
    ASSERT_TRUE(write_file(first.path("d/e/b"), "bee"));
    ASSERT_TRUE(write_file(first.path("c"), "sea", 0600));
    ASSERT_TRUE(write_file(first.path("empty"), ""));
    ASSERT_SYS_OK(symlink("d/a", first.path("l").c_str()));
    ASSERT_SYS_OK(utimensat(AT_FDCWD, first.path("d/a").c_str(), ts, 0));
    {
      Fd fd = Fd::open(first.path("sparse"), O_CREAT | O_WRONLY, 0644);
      ASSERT_FD(fd);
      ASSERT_TRUE(pwrite_all(fd.get(), "far", kGiB));
    }
    have_xattr = setxattr(first.path("c").c_str(), "user.keep", "kv", 2, 0) == 0;
    auto stopped = first.stop();
    ASSERT_TRUE(stopped) << stopped.message() << "\n  log:\n" << first.log_since(0);
    last_ = nullptr;
    ASSERT_TRUE(path_exists(first.store())) << "--keep-store: the store was removed";
    EXPECT_TRUE(file_has(first.store_path("d/a"), big)) << "store after the first run";
  }
  {
    DsdfsInstance second(config);
    last_ = &second;
    ASSERT_TRUE(second.start());
    std::vector<DirEntry> entries;
    ASSERT_TRUE(list_dir(second.mnt(), &entries));
    EXPECT_EQ(names_of(entries),
              (std::vector<std::string>{"c", "d", "empty", "l", "sparse"}))
        << "root listing after restart (nothing else may show)";
    EXPECT_TRUE(file_has(second.path("d/a"), big));
    EXPECT_TRUE(file_has(second.path("d/e/b"), "bee"));
    EXPECT_TRUE(file_has(second.path("c"), "sea"));
    EXPECT_TRUE(file_has(second.path("empty"), ""));
    EXPECT_TRUE(file_has(second.path("l"), big));
    char buf[64];
    ssize_t n = readlink(second.path("l").c_str(), buf, sizeof buf);
    EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), "d/a");
    struct stat st;
    ASSERT_SYS_OK(stat(second.path("c").c_str(), &st));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    ASSERT_SYS_OK(stat(second.path("d").c_str(), &st));
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    ASSERT_SYS_OK(stat(second.path("d/a").c_str(), &st));
    EXPECT_EQ(st.st_mtim.tv_sec, 1400000001);
    EXPECT_EQ(st.st_mtim.tv_nsec, 222);
    ASSERT_SYS_OK(stat(second.path("sparse").c_str(), &st));
    EXPECT_EQ(st.st_size, kGiB + 3);
    if (have_xattr) {
      n = getxattr(second.path("c").c_str(), "user.keep", buf, sizeof buf);
      EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), "kv") << "xattr after restart";
    }
    // The restarted daemon accepts changes to the old files.
    {
      Fd fd = Fd::open(second.path("c"), O_WRONLY | O_APPEND);
      ASSERT_FD(fd);
      ASSERT_EQ(write(fd.get(), "+", 1), 1);
    }
    ASSERT_SYS_OK(unlink(second.path("empty").c_str()));
    ASSERT_TRUE(write_file(second.path("d/e/new"), "new"));
    auto stopped = second.stop();
    ASSERT_TRUE(stopped) << stopped.message() << "\n  log:\n" << second.log_since(0);
    last_ = nullptr;
    EXPECT_TRUE(file_has(second.store_path("c"), "sea+"));
    EXPECT_TRUE(file_has(second.store_path("d/e/new"), "new"));
    EXPECT_FALSE(path_exists(second.store_path("empty")));
  }
}

}  // namespace
}  // namespace dsdfs::e2e
