// SPDX-License-Identifier: Apache-2.0
// The dsdfs-launch command line and life cycle: --help/--version, every documented bad
// input (exactly one "dsdfs-launch: error: " line, the documented exit code, no mount left
// behind, the user's files untouched), signals, --keep-store, stale mounts of a killed
// daemon, and the %r/%h placeholders. Every test has its own directory and daemons.

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include "tests/e2e/e2e_env.h"
#include "tests/e2e/mount_fixture.h"

namespace dsdfs::e2e {
namespace {

constexpr const char* kErrorPrefix = "dsdfs-launch: error: ";

class Cli : public ::testing::Test {
 protected:
  void TearDown() override {
    // Nothing this test started may stay mounted anywhere in its directory.
    for (const auto& m : mounts_under_tmp()) {
      ADD_FAILURE() << "mount left behind at " << m;
      force_unmount(m);
    }
  }

  std::vector<std::string> mounts_under_tmp() const {
    std::vector<std::string> out;
    std::string mi = slurp("/proc/self/mountinfo");
    for (const auto& line : split_lines(mi)) {
      // Fifth field is the mount point; a prefix check is enough for our private paths.
      size_t pos = 0;
      for (int i = 0; i < 4 && pos != std::string::npos; ++i) pos = line.find(' ', pos + 1);
      if (pos == std::string::npos) continue;
      size_t end = line.find(' ', pos + 1);
      std::string mp = line.substr(pos + 1, end - pos - 1);
      if (mp.starts_with(tmp_.path() + "/")) out.push_back(mp);
    }
    return out;
  }

  // Runs dsdfs-launch with `args`, expecting a startup failure.
  void expect_error(const std::vector<std::string>& args, int expected_exit,
                    const std::string& mount_point_to_check = {}) {
    std::vector<std::string> argv = {launch_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string cmd;
    for (auto& a : argv) cmd += a + " ";
    CommandResult r = run_command(argv, tmp_.path(), 20s);
    ASSERT_FALSE(r.timed_out) << "did not exit within 20 s (killed): " << cmd
                              << "\n  stderr:\n" << r.err;
    EXPECT_EQ(r.exit_code(), expected_exit)
        << cmd << "\n  " << describe_status(r.wait_status) << "\n  stderr:\n" << r.err;
    auto lines = split_lines(r.err);
    EXPECT_EQ(lines.size(), 1u) << cmd << "\n  expected exactly one stderr line, got:\n"
                                << r.err;
    if (!lines.empty()) {
      EXPECT_TRUE(lines[0].starts_with(kErrorPrefix))
          << cmd << "\n  first stderr line: " << lines[0];
      EXPECT_GT(lines[0].size(), std::strlen(kErrorPrefix) + 5) << "the error says nothing";
    }
    if (!r.err.empty()) {
      EXPECT_EQ(r.err.back(), '\n') << "stderr line is not terminated";
    }
    if (!mount_point_to_check.empty()) {
      EXPECT_FALSE(is_mounted(mount_point_to_check))
          << "a mount was left at " << mount_point_to_check;
    }
    last_stderr_ = r.err;
  }

  DsdfsConfig config(const std::string& sub = "a") {
    std::string root = tmp_.sub(sub);
    mkdir(root.c_str(), 0755);
    DsdfsConfig c;
    c.root = root;
    return c;
  }

  TempDir tmp_{"dsdfs-e2e-cli"};
  std::string last_stderr_;
};

// Prints the daemon log when the test fails while the instance is alive.
class LogOnFailure {
 public:
  explicit LogOnFailure(const DsdfsInstance& inst) : inst_(inst) {}
  ~LogOnFailure() {
    if (::testing::Test::HasFailure())
      fprintf(stderr, "---- dsdfs-launch log (%s) ----\n%s---- end of log ----\n",
              inst_.config().log_file.c_str(), inst_.log_since(0).c_str());
  }

 private:
  const DsdfsInstance& inst_;
};

// ---------------------------------------------------------------------------------------
// --help, --version

TEST_F(Cli, HelpListsEveryOptionAndExitsZero) {
  CommandResult r = run_command({launch_path(), "--help"}, tmp_.path());
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << describe_status(r.wait_status) << "\n" << r.err;
  for (const char* opt : {"--store", "--ready-file", "--keep-store", "--threads", "--log-level",
                          "--timeout", "--passthrough", "--help", "--version", "%r", "%h"}) {
    EXPECT_NE(r.out.find(opt), std::string::npos) << "--help (stdout) does not mention " << opt
                                                  << "\n  stdout:\n" << r.out;
  }
  EXPECT_NE(r.out.find("MOUNTPOINT"), std::string::npos);
  EXPECT_EQ(r.err, "") << "--help wrote to stderr";
}

TEST_F(Cli, VersionPrintsTheProjectVersion) {
  CommandResult r = run_command({launch_path(), "--version"}, tmp_.path());
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << describe_status(r.wait_status) << "\n" << r.err;
  const char* want = getenv("DSDFS_VERSION");
  ASSERT_NE(want, nullptr) << "meson sets DSDFS_VERSION to the project version";
  EXPECT_NE(r.out.find(want), std::string::npos) << "stdout: " << r.out;
  EXPECT_EQ(split_lines(r.out).size(), 1u) << "stdout: " << r.out;
  EXPECT_EQ(r.err, "");
}

// ---------------------------------------------------------------------------------------
// usage errors: exit 2

TEST_F(Cli, UnknownOptionIsAUsageError) {
  std::string mnt = tmp_.sub("mnt");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  expect_error({mnt, "--no-such-option"}, 2, mnt);
  expect_error({"--bogus", mnt}, 2, mnt);
}

TEST_F(Cli, MissingMountPointIsAUsageError) {
  expect_error({}, 2);
  expect_error({"--store", tmp_.sub("store")}, 2);
  EXPECT_FALSE(path_exists(tmp_.sub("store"))) << "a usage error must not create the store";
}

TEST_F(Cli, OptionWithoutItsValueIsAUsageError) {
  std::string mnt = tmp_.sub("mnt");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  expect_error({mnt, "--store"}, 2, mnt);
  expect_error({mnt, "--ready-file"}, 2, mnt);
  expect_error({mnt, "--threads"}, 2, mnt);
}

// Malformed values are usage errors too (our reading of "usage errors such as ...").
TEST_F(Cli, MalformedOptionValuesAreUsageErrors) {
  std::string mnt = tmp_.sub("mnt");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  expect_error({mnt, "--log-level", "verbose"}, 2, mnt);
  expect_error({mnt, "--threads", "many"}, 2, mnt);
  expect_error({mnt, "--threads", "-3"}, 2, mnt);
  expect_error({mnt, "--timeout", "soon"}, 2, mnt);
}

TEST_F(Cli, TwoMountPointsAreAUsageError) {
  std::string a = tmp_.sub("m1"), b = tmp_.sub("m2");
  ASSERT_SYS_OK(mkdir(a.c_str(), 0755));
  ASSERT_SYS_OK(mkdir(b.c_str(), 0755));
  expect_error({a, b}, 2, a);
  EXPECT_FALSE(is_mounted(b));
}

// ---------------------------------------------------------------------------------------
// bad stores and mount points: exit 1, nothing mounted, user data untouched

TEST_F(Cli, StoreInsideTheMountPointIsRejected) {
  std::string mnt = tmp_.sub("mnt");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  expect_error({mnt, "--store", mnt + "/store"}, 1, mnt);
  expect_error({mnt, "--store", mnt}, 1, mnt);
}

TEST_F(Cli, StoreThatIsAFileIsRejectedAndKept) {
  std::string mnt = tmp_.sub("mnt"), store = tmp_.sub("store");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  ASSERT_TRUE(write_file(store, "not a directory"));
  expect_error({mnt, "--store", store}, 1, mnt);
  EXPECT_TRUE(file_has(store, "not a directory"));
}

TEST_F(Cli, ForeignNonEmptyDirectoryAsStoreIsRejectedAndKept) {
  std::string mnt = tmp_.sub("mnt"), store = tmp_.sub("precious");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  ASSERT_SYS_OK(mkdir(store.c_str(), 0755));
  ASSERT_TRUE(write_file(store + "/thesis.tex", "years of work"));
  ASSERT_SYS_OK(mkdir((store + "/data").c_str(), 0755));
  ASSERT_TRUE(write_file(store + "/data/results.csv", "1,2,3"));
  expect_error({mnt, "--store", store}, 1, mnt);
  // The same with --keep-store absent and present: nothing may be deleted.
  expect_error({mnt, "--store", store, "--keep-store"}, 1, mnt);
  EXPECT_TRUE(file_has(store + "/thesis.tex", "years of work"));
  EXPECT_TRUE(file_has(store + "/data/results.csv", "1,2,3"));
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(store, &entries));
  EXPECT_EQ(names_of(entries), (std::vector<std::string>{"data", "thesis.tex"}))
      << "dsdfs-launch added or removed entries in a directory that is not its store";
}

// Root ignores permission bits, so "not writable" is a read-only file system here.
TEST_F(Cli, StoreOnReadOnlyFileSystemIsRejected) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mounts a read-only tmpfs)";
  std::string mnt = tmp_.sub("mnt"), ro = tmp_.sub("ro");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  ASSERT_SYS_OK(mkdir(ro.c_str(), 0755));
  ASSERT_SYS_OK(mount("dsdfs-e2e-ro", ro.c_str(), "tmpfs", MS_RDONLY, "size=1m,mode=0755"));
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{ro};
  expect_error({mnt, "--store", ro}, 1, mnt);         // exists, empty, not writable
  expect_error({mnt, "--store", ro + "/store"}, 1, mnt);  // cannot be created
  EXPECT_TRUE(is_mounted(ro)) << "the read-only file system must stay mounted";
}

TEST_F(Cli, MountPointThatIsAFileIsRejectedAndKept) {
  std::string mnt = tmp_.sub("file");
  ASSERT_TRUE(write_file(mnt, "a regular file"));
  expect_error({mnt, "--store", tmp_.sub("store")}, 1, mnt);
  EXPECT_TRUE(file_has(mnt, "a regular file"));
}

TEST_F(Cli, MountPointAlreadyMountedByDsdfsIsRejectedAndTheFirstKeepsWorking) {
  DsdfsInstance first(config("first"));
  LogOnFailure log(first);
  ASSERT_TRUE(first.start());
  ASSERT_TRUE(write_file(first.path("before"), "first instance"));

  expect_error({first.mnt(), "--store", tmp_.sub("second-store"), "--ready-file",
                tmp_.sub("second-ready")},
               1);
  EXPECT_FALSE(path_exists(tmp_.sub("second-ready")));
  auto mounts = mounts_at(first.mnt());
  EXPECT_EQ(mounts.size(), 1u) << "the second instance stacked a mount or removed the first";
  ASSERT_TRUE(first.running()) << "the first instance died: " << describe_status(first.wait_status());
  EXPECT_TRUE(file_has(first.path("before"), "first instance"))
      << "the first instance's mount must keep working";
  EXPECT_TRUE(write_file(first.path("after"), "still fine"));
  EXPECT_TRUE(first.stop());
}

TEST_F(Cli, MountPointWithAnotherFileSystemMountedIsRejectedAndLeftAlone) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mounts a tmpfs)";
  std::string mnt = tmp_.sub("mnt");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  ASSERT_SYS_OK(mount("dsdfs-e2e-busy", mnt.c_str(), "tmpfs", 0, "size=1m"));
  ASSERT_TRUE(write_file(mnt + "/users-file", "mine"));
  expect_error({mnt, "--store", tmp_.sub("store")}, 1);
  auto mounts = mounts_at(mnt);
  ASSERT_EQ(mounts.size(), 1u) << "dsdfs-launch unmounted or stacked on a live tmpfs";
  EXPECT_EQ(mounts[0].fstype, "tmpfs");
  EXPECT_TRUE(file_has(mnt + "/users-file", "mine"));
  ASSERT_SYS_OK(umount2(mnt.c_str(), MNT_DETACH));
}

// ---------------------------------------------------------------------------------------
// stale mounts

TEST_F(Cli, StaleMountOfAKilledDaemonIsCleanedUpOnTheNextStart) {
  DsdfsConfig c = config("stale");
  std::string mnt;
  {
    DsdfsInstance victim(c);
    LogOnFailure log(victim);
    ASSERT_TRUE(victim.start());
    mnt = victim.mnt();
    ASSERT_TRUE(write_file(victim.path("f"), "x"));
    victim.kill_hard();  // SIGKILL of the process group: no chance to unmount
    struct stat st;
    ASSERT_SYS_ERRNO(stat(mnt.c_str(), &st), ENOTCONN)
        << "expected a stale mount (Transport endpoint is not connected) after SIGKILL";
    ASSERT_TRUE(is_mounted(mnt));
    // The next instance starts while `victim` is still in scope: a DsdfsInstance detaches
    // its mount point only when destroyed, and `next` is destroyed (and stopped) first.
    DsdfsConfig c2 = c;
    c2.store = c.root + "/store2";
    c2.ready_file = c.root + "/ready2";
    c2.log_file = c.root + "/daemon2.log";
    DsdfsInstance next(c2);
    LogOnFailure log2(next);
    ASSERT_TRUE(next.start()) << "a stale mount must be cleaned up automatically";
    auto mounts = mounts_at(mnt);
    EXPECT_EQ(mounts.size(), 1u) << "the stale mount must be replaced, not stacked upon";
    ASSERT_SYS_OK(stat(mnt.c_str(), &st));
    EXPECT_TRUE(write_file(next.path("g"), "works"));
    EXPECT_TRUE(file_has(next.path("g"), "works"));
    std::string log_text = next.log_since(0);
    std::string lower = log_text;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    EXPECT_NE(lower.find("warn"), std::string::npos)
        << "cleaning up a stale mount should log a warning; log:\n" << log_text;
    EXPECT_TRUE(next.stop());
  }
  EXPECT_FALSE(is_mounted(mnt));
}

// --rejoin (a multi-rank job's daemon that died) refuses what it cannot rejoin, with one
// line, touching nothing: no daemon ever ran there, one that still runs (and keeps
// working), a one-rank file system; and the usage errors.
TEST_F(Cli, RejoinUsageErrors) {
  std::string mnt = tmp_.sub("mnt");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  expect_error({"--rejoin", tmp_.sub("mnt%r")}, 2);
  EXPECT_NE(last_stderr_.find("without %r"), std::string::npos) << last_stderr_;
  expect_error({"--rejoin", "--wait", mnt}, 2, mnt);
}

TEST_F(Cli, RejoinWhereNoDaemonRanIsRejected) {
  std::string mnt = tmp_.sub("never");
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  expect_error({"--rejoin", mnt}, 1, mnt);
  EXPECT_NE(last_stderr_.find("no dsdfs daemon of a job ran at"), std::string::npos) << last_stderr_;
}

TEST_F(Cli, RejoinOfARunningDaemonIsRejectedAndItKeepsWorking) {
  DsdfsInstance first(config("running"));
  LogOnFailure log(first);
  ASSERT_TRUE(first.start());
  ASSERT_TRUE(write_file(first.path("f"), "alive"));
  expect_error({"--rejoin", first.mnt()}, 1);
  EXPECT_NE(last_stderr_.find("still runs"), std::string::npos) << last_stderr_;
  ASSERT_TRUE(first.running());
  EXPECT_TRUE(file_has(first.path("f"), "alive"));
  EXPECT_EQ(mounts_at(first.mnt()).size(), 1u);
  EXPECT_TRUE(first.stop());
}

TEST_F(Cli, RejoinOfAOneRankFileSystemIsRejected) {
  DsdfsConfig c = config("single");
  DsdfsInstance victim(c);
  LogOnFailure log(victim);
  ASSERT_TRUE(victim.start());
  const std::string mnt = victim.mnt();
  victim.kill_hard();
  expect_error({"--rejoin", mnt}, 1);
  EXPECT_NE(last_stderr_.find("one-rank"), std::string::npos) << last_stderr_;
  EXPECT_TRUE(is_mounted(mnt)) << "a refused rejoin must leave the dead daemon's mount as it was";
  EXPECT_TRUE(force_unmount(mnt));
}

// ---------------------------------------------------------------------------------------
// normal life cycle

TEST_F(Cli, SigtermUnmountsRemovesTheStoreAndExitsZero) {
  DsdfsInstance inst(config());
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  auto m = mounts_at(inst.mnt());
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].fstype, "fuse.dsdfs");
  ASSERT_TRUE(write_file(inst.path("f"), "data"));
  ASSERT_TRUE(path_exists(inst.store_path("f")));
  auto stopped = inst.stop(SIGTERM);
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_FALSE(is_mounted(inst.mnt()));
  EXPECT_FALSE(path_exists(inst.store())) << "the store must be removed without --keep-store";
}

TEST_F(Cli, SigintStopsCleanlyToo) {
  DsdfsInstance inst(config());
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  auto stopped = inst.stop(SIGINT);
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_FALSE(is_mounted(inst.mnt()));
  EXPECT_FALSE(path_exists(inst.store()));
}

TEST_F(Cli, KeepStoreKeepsTheFilesAfterStop) {
  DsdfsConfig c = config();
  c.keep_store = true;
  DsdfsInstance inst(c);
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  ASSERT_SYS_OK(mkdir(inst.path("dir").c_str(), 0755));
  ASSERT_TRUE(write_file(inst.path("dir/f"), "kept"));
  auto stopped = inst.stop();
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_TRUE(file_has(inst.store_path("dir/f"), "kept"));
}

TEST_F(Cli, FreshMountIsEmptyAndHidesTheStoreInternals) {
  DsdfsInstance inst(config());
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  std::vector<DirEntry> entries;
  bool dots = false;
  ASSERT_TRUE(list_dir(inst.mnt(), &entries, &dots));
  EXPECT_TRUE(entries.empty()) << "a new dsdfs shows: "
                               << ::testing::PrintToString(names_of(entries));
  EXPECT_TRUE(dots);
  struct stat st;
  ASSERT_SYS_OK(stat(inst.mnt().c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(inst.stop());
}

TEST_F(Cli, MissingMountPointIsCreated) {
  DsdfsConfig c = config();
  c.mount_point = c.root + "/not/yet/there";
  c.create_mount_point = false;
  DsdfsInstance inst(c);
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  EXPECT_TRUE(write_file(inst.path("f"), "ok"));
  EXPECT_TRUE(inst.stop());
}

TEST_F(Cli, ExistingEmptyStoreDirectoryIsAccepted) {
  DsdfsConfig c = config();
  c.store = c.root + "/empty-store";
  ASSERT_SYS_OK(mkdir(c.store.c_str(), 0700));
  DsdfsInstance inst(c);
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  EXPECT_TRUE(write_file(inst.path("f"), "ok"));
  EXPECT_TRUE(file_has(inst.store_path("f"), "ok"));
  EXPECT_TRUE(inst.stop());
}

TEST_F(Cli, AcceptsEveryDocumentedOption) {
  DsdfsConfig c = config();
  c.keep_store = true;
  c.extra_args = {"--threads", "2", "--log-level", "debug", "--timeout", "7"};
  DsdfsInstance inst(c);
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  EXPECT_TRUE(write_file(inst.path("f"), "ok"));
  EXPECT_TRUE(file_has(inst.path("f"), "ok"));
  EXPECT_GT(inst.log_size(), 0u) << "--log-level debug printed nothing";
  EXPECT_TRUE(inst.stop());
  EXPECT_TRUE(path_exists(inst.store()));
}

// The job ends while a program still has files open on the mount: the daemon must still
// unmount and exit 0, and the program's calls must not hang. (Reads and writes through open
// descriptors may still be served by the kernel's page cache; creating a file cannot.)
TEST_F(Cli, StopWithFilesStillOpenUnmountsAndExits) {
  DsdfsInstance inst(config());
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  ASSERT_TRUE(write_file(inst.path("open"), "busy"));
  Fd reader = Fd::open(inst.path("open"), O_RDONLY);
  ASSERT_FD(reader);
  Fd writer = Fd::open(inst.path("new"), O_CREAT | O_WRONLY, 0644);
  ASSERT_FD(writer);
  Fd dir = Fd::open(inst.mnt(), O_RDONLY | O_DIRECTORY);
  ASSERT_FD(dir);
  auto stopped = inst.stop();
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_FALSE(is_mounted(inst.mnt()));
  char buf[8];
  ssize_t ignored = pread(reader.get(), buf, sizeof buf, 0);  // must return, either way
  ignored = write(writer.get(), "x", 1);
  (void)ignored;
  EXPECT_SYS_ERRNO(openat(dir.get(), "created-after-stop", O_CREAT | O_WRONLY | O_CLOEXEC, 0644),
                   ENOTCONN, EIO, ECONNABORTED);
}

// SIGTERM while clients are busy: the daemon still exits 0 in time, and every client call
// returns (with data or an error) instead of hanging.
TEST_F(Cli, StopWhileClientsAreBusy) {
  DsdfsInstance inst(config());
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  std::atomic<bool> stop{false};
  std::atomic<long> ops{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      const std::string data = pattern_bytes(256 * 1024, t);
      for (int i = 0; !stop.load(); ++i) {
        char base[32];
        snprintf(base, sizeof base, "c%d-%d", t, i % 8);
        std::string name = inst.path(base);
        if (!write_file(name, data)) continue;  // fails once the mount is gone
        std::string got;
        (void)read_file(name, &got);
        std::vector<DirEntry> entries;
        (void)list_dir(inst.mnt(), &entries);
        ++ops;
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return ops.load() >= 30; }, 20s)) << "clients made no progress";
  auto stopped = inst.stop();
  stop = true;
  for (auto& c : clients) c.join();  // the watchdog fails the test if a call hangs
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_FALSE(is_mounted(inst.mnt()));
}

// One FUSE thread must still serve several clients at once, mmap write-back included.
TEST_F(Cli, SingleThreadServesConcurrentClients) {
  DsdfsConfig c = config();
  c.extra_args = {"--threads", "1"};
  DsdfsInstance inst(c);
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  std::atomic<int> bad{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        char base[32];
        snprintf(base, sizeof base, "t%d-%d", t, i);
        std::string name = inst.path(base);
        std::string data = pattern_bytes(64 * 1024 + i, t * 100 + i);
        if (!write_file(name, data) || !file_has(name, data)) ++bad;
      }
    });
  }
  {
    Fd fd = Fd::open(inst.path("mapped"), O_CREAT | O_RDWR, 0644);
    ASSERT_FD(fd);
    ASSERT_SYS_OK(ftruncate(fd.get(), 1 << 20));
    void* m = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(m, MAP_FAILED) << errno_text(errno);
    memset(m, 'm', 1 << 20);
    EXPECT_SYS_OK(msync(m, 1 << 20, MS_SYNC));
    munmap(m, 1 << 20);
  }
  for (auto& th : clients) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_TRUE(file_has(inst.path("mapped"), std::string(1 << 20, 'm')));
  EXPECT_TRUE(inst.stop());
}

TEST_F(Cli, TwoIndependentInstancesSideBySide) {
  DsdfsInstance a(config("a")), b(config("b"));
  LogOnFailure log_a(a), log_b(b);
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  ASSERT_TRUE(write_file(a.path("only-a"), "A"));
  ASSERT_TRUE(write_file(b.path("only-b"), "B"));
  std::vector<DirEntry> entries;
  ASSERT_TRUE(list_dir(a.mnt(), &entries));
  EXPECT_EQ(names_of(entries), std::vector<std::string>{"only-a"});
  ASSERT_TRUE(list_dir(b.mnt(), &entries));
  EXPECT_EQ(names_of(entries), std::vector<std::string>{"only-b"});
  EXPECT_TRUE(a.stop());
  EXPECT_TRUE(file_has(b.path("only-b"), "B")) << "stopping one instance disturbed the other";
  EXPECT_TRUE(b.stop());
}

// Without --store: a private store (mode 0700) under $TMPDIR, removed again on stop.
TEST_F(Cli, DefaultStoreLivesUnderTmpdirAndIsRemoved) {
  DsdfsConfig c = config();
  c.default_store = true;
  const std::string tmpdir = c.root + "/tmpdir";
  ASSERT_SYS_OK(mkdir(tmpdir.c_str(), 01777));
  c.env = {"TMPDIR=" + tmpdir};
  DsdfsInstance inst(c);
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start());
  ASSERT_TRUE(write_file(inst.path("f"), "default store"));
  // $TMPDIR is shared with Open MPI (its session directory): look for dsdfs's entries.
  auto dsdfs_entries = [&] {
    std::vector<DirEntry> entries, ours;
    EXPECT_TRUE(list_dir(tmpdir, &entries));
    for (auto& e : entries)
      if (e.name.starts_with("dsdfs") || e.name.starts_with(".dsdfs")) ours.push_back(e);
    return ours;
  };
  std::vector<DirEntry> stores;
  for (auto& e : dsdfs_entries())
    if (e.type == DT_DIR) stores.push_back(e);
  ASSERT_EQ(stores.size(), 1u) << "expected one store directory in $TMPDIR, found "
                               << ::testing::PrintToString(names_of(dsdfs_entries()));
  const std::string store = tmpdir + "/" + stores[0].name;
  auto st = lstat_of(store);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(S_ISDIR(st->st_mode));
  EXPECT_EQ(st->st_mode & 07777, 0700u) << "the default store must be private";
  EXPECT_TRUE(file_has(store + "/files/f", "default store"));
  auto stopped = inst.stop();
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_FALSE(path_exists(store)) << "default store not removed on stop";
  EXPECT_TRUE(dsdfs_entries().empty()) << "left in $TMPDIR after stop: "
                                       << ::testing::PrintToString(names_of(dsdfs_entries()));
}

TEST_F(Cli, PlaceholdersExpandToRankAndShortHostName) {
  DsdfsConfig c = config();
  c.mount_point = c.root + "/mnt%r";
  c.store = c.root + "/store-%h-%r";
  c.expected_mount = c.root + "/mnt0";
  DsdfsInstance inst(c);
  LogOnFailure log(inst);
  ASSERT_TRUE(inst.start()) << "expected the mount at " << c.expected_mount;
  const std::string store = c.root + "/store-" + short_hostname() + "-0";
  EXPECT_TRUE(path_exists(store)) << store << " (from --store .../store-%h-%r)";
  EXPECT_FALSE(path_exists(c.root + "/store-%h-%r"));
  EXPECT_FALSE(is_mounted(c.root + "/mnt%r"));
  ASSERT_TRUE(write_file(inst.path("f"), "rank zero"));
  EXPECT_TRUE(file_has(store + "/files/f", "rank zero"));
  EXPECT_TRUE(inst.stop());
  EXPECT_FALSE(path_exists(store)) << "store removed on stop";
}

}  // namespace
}  // namespace dsdfs::e2e
