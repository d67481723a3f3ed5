// SPDX-License-Identifier: Apache-2.0
// Kernel passthrough of a node's own files (docs/architecture.md, "Kernel passthrough"): a
// daemon that can (a build with libfuse >= 3.17, Linux >= 6.9, root) has the kernel read and
// write its files straight from the store, so not one READ or WRITE request reaches it; one
// that cannot says why in one log line and serves them itself. The daemon's own request
// counters (fuse_read, fuse_write, passthrough_opens) show which path the bytes took.
// DSDFS_EXPECT_PASSTHROUGH=on|off says which the run must show (CI runs the passthrough
// build with "on"; meson sets "off" for a build with Debian 12's libfuse); unset, each test
// checks that the counters agree with the mode the daemon logged.
// The rest of the promises on passthrough files (unlink and rename while open, setuid
// dropping, appends, ownership moves, remote readers) are the e2e-posix, race, cluster and
// torture suites, which CI runs against the passthrough build too.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/e2e/e2e_env.h"
#include "tests/e2e/mount_fixture.h"

namespace dsdfs::e2e {
namespace {

std::string expected_mode() {
  const char* e = std::getenv("DSDFS_EXPECT_PASSTHROUGH");
  return e ? e : "";
}

class Passthrough : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra_args = {}) {
    DsdfsConfig c;
    c.root = tmp_.sub("job");
    ::mkdir(c.root.c_str(), 0755);
    c.extra_args = std::move(extra_args);
    c.extra_args.insert(c.extra_args.end(), {"--log-level", "info"});
    inst_ = std::make_unique<DsdfsInstance>(c);
    ASSERT_TRUE(inst_->start());
    // The line comes with the kernel's INIT, which may follow the ready file.
    std::string log = inst_->log_since(0);
    for (int i = 0; i < 100 && log.find("FUSE passthrough: ") == std::string::npos; ++i) {
      ::usleep(50 * 1000);
      log = inst_->log_since(0);
    }
    const size_t at = log.find("FUSE passthrough: ");
    ASSERT_NE(at, std::string::npos) << "no 'FUSE passthrough:' line in the daemon log:\n" << log;
    mode_line_ = log.substr(at, log.find('\n', at) - at);
    on_ = mode_line_.starts_with("FUSE passthrough: on");
  }
  void TearDown() override {
    if (inst_) {
      if (HasFailure()) fprintf(stderr, "---- daemon log ----\n%s---- end ----\n", inst_->log_since(0).c_str());
      EXPECT_TRUE(inst_->stop());
    }
  }
  // The counter `name` of the daemon's own user.dsdfs.stats.
  long long counter(const std::string& name) {
    char buf[8192];
    ssize_t n = ::getxattr(inst_->mnt().c_str(), "user.dsdfs.stats", buf, sizeof buf - 1);
    if (n < 0) return -1;
    for (const auto& line : split_lines(std::string(buf, static_cast<size_t>(n))))
      if (line.starts_with(name + " ")) return std::atoll(line.c_str() + name.size() + 1);
    return -1;
  }

  TempDir tmp_{"dsdfs-e2e-passthrough"};
  std::unique_ptr<DsdfsInstance> inst_;
  std::string mode_line_;
  bool on_ = false;
};

TEST_F(Passthrough, OwnedFileBytesBypassTheDaemonOrItSaysWhyNot) {
  start();
  if (expected_mode() == "on") {
    ASSERT_TRUE(on_) << mode_line_;
  }
  if (expected_mode() == "off") {
    ASSERT_FALSE(on_) << mode_line_;
  }
  if (!on_) {
    EXPECT_NE(mode_line_.find("off ("), std::string::npos) << "no reason given: " << mode_line_;
  }

  const std::string data = pattern_bytes(4 << 20, 7);
  const long long writes = counter("fuse_write"), reads = counter("fuse_read");
  const long long opens = counter("passthrough_opens");
  {
    Fd fd = Fd::open(inst_->path("big"), O_CREAT | O_RDWR | O_TRUNC);
    ASSERT_TRUE(fd.valid()) << fd.error_text();
    for (size_t off = 0; off < data.size(); off += 1 << 20) {
      ASSERT_TRUE(pwrite_all(fd.get(), std::string_view(data).substr(off, 1 << 20), static_cast<off_t>(off)));
    }
    ASSERT_EQ(::fsync(fd.get()), 0);
  }
  // Cold for the mount: the read must come from the store either way.
  std::string back;
  ASSERT_TRUE(read_file(inst_->path("big"), &back));
  EXPECT_EQ(checksum(back), checksum(data));
  ASSERT_TRUE(file_has(inst_->store_path("big"), data)) << "the store file holds the bytes";
  const auto st = lstat_of(inst_->path("big"));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->st_size, static_cast<off_t>(data.size()));

  if (on_) {
    EXPECT_EQ(counter("fuse_write"), writes) << "WRITE requests reached the daemon of a passthrough mount";
    EXPECT_EQ(counter("fuse_read"), reads) << "READ requests reached the daemon of a passthrough mount";
    EXPECT_GE(counter("passthrough_opens"), opens + 2);
  } else {
    EXPECT_GT(counter("fuse_write"), writes) << "the daemon served no write, yet passthrough is off";
    EXPECT_EQ(counter("passthrough_opens"), opens);
  }
}

TEST_F(Passthrough, HandlesOfOneFileShareItsBytesAndItOpensAgainAfterTheLastClose) {
  start();
  // Every open of one kernel inode takes the backing file of its first
  // open; the last close gives it back, and the next open registers anew.
  for (int round = 0; round < 3; ++round) {
    Fd w = Fd::open(inst_->path("shared"), O_CREAT | O_RDWR);
    ASSERT_TRUE(w.valid()) << "round " << round << ": " << w.error_text();
    Fd r = Fd::open(inst_->path("shared"), O_RDONLY);
    ASSERT_TRUE(r.valid()) << "round " << round << ": " << r.error_text();
    Fd a = Fd::open(inst_->path("shared"), O_WRONLY | O_APPEND);
    ASSERT_TRUE(a.valid()) << "round " << round << ": " << a.error_text();
    const std::string block = pattern_bytes(8192, 100 + static_cast<uint64_t>(round));
    ASSERT_TRUE(pwrite_all(w.get(), block, 0));
    std::string seen;
    ASSERT_TRUE(pread_all(r.get(), block.size(), 0, &seen));
    EXPECT_EQ(seen, block) << "round " << round << ": a reader's handle sees the writer's bytes";
    ASSERT_EQ(::write(a.get(), "tail", 4), 4);
    struct stat st;
    ASSERT_EQ(::fstat(r.get(), &st), 0);
    EXPECT_EQ(st.st_size, static_cast<off_t>(block.size() + 4 + 4 * round)) << "round " << round;
  }
  if (on_) {
    EXPECT_GE(counter("passthrough_opens"), 9);
  }
}

TEST_F(Passthrough, MmapWritesReachTheStoreFile) {
  start();
  const size_t len = 1 << 20;
  {
    Fd fd = Fd::open(inst_->path("mapped"), O_CREAT | O_RDWR | O_TRUNC);
    ASSERT_TRUE(fd.valid()) << fd.error_text();
    ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(len)), 0);
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED) << errno_text(errno);
    const std::string data = pattern_bytes(len, 3);
    std::memcpy(p, data.data(), len);
    ASSERT_EQ(::msync(p, len, MS_SYNC), 0) << errno_text(errno);
    ASSERT_EQ(::munmap(p, len), 0);
    ASSERT_TRUE(file_has(inst_->store_path("mapped"), data));
  }
  std::string back;
  ASSERT_TRUE(read_file(inst_->path("mapped"), &back));
  EXPECT_EQ(checksum(back), checksum(pattern_bytes(len, 3)));
}

TEST_F(Passthrough, OffByOptionServesEveryWriteItself) {
  start({"--passthrough", "off"});
  EXPECT_EQ(mode_line_, "FUSE passthrough: off (--passthrough off)");
  const long long writes = counter("fuse_write");
  ASSERT_TRUE(write_file(inst_->path("f"), pattern_bytes(1 << 20, 1)));
  {
    Fd fd = Fd::open(inst_->path("f"), O_RDWR);
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::fsync(fd.get()), 0);
  }
  EXPECT_GT(counter("fuse_write"), writes);
  EXPECT_EQ(counter("passthrough_opens"), 0);
}

}  // namespace
}  // namespace dsdfs::e2e
