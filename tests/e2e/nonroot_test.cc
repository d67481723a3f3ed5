// SPDX-License-Identifier: Apache-2.0
// dsdfs run by an unprivileged user, as on a cluster: the daemon runs as that user (so
// libfuse mounts and unmounts through the setuid fusermount3), the user works on the mount
// with ordinary shell tools, the store's files belong to the user, and a stop by pid leaves
// no mount. The program starts as root only to create the user (dsdfs-e2e, a system user
// without a home, left in place: harmless) and to switch to it.

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "tests/e2e/e2e_env.h"
#include "tests/e2e/mount_fixture.h"

namespace dsdfs::e2e {
namespace {

constexpr const char* kUser = "dsdfs-e2e";

class NonRoot : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0)
      e2e_skip_or_fail("the non-root test must be started as root (it switches to " +
                       std::string(kUser) + ")");
    setup_error_.clear();
    user_ = run_as_user(kUser);
    if (!user_) {
      TempDir scratch("dsdfs-e2e-useradd");
      CommandResult r = run_command({"/usr/sbin/useradd", "--system", "--user-group",
                                     "--no-create-home", "--home-dir", "/nonexistent",
                                     "--shell", "/usr/sbin/nologin", kUser},
                                    scratch.path(), 30s);
      user_ = run_as_user(kUser);
      if (!user_) {
        setup_error_ = "cannot create the user " + std::string(kUser) + " with useradd: " +
                       describe_status(r.wait_status) + "\n" + r.err;
        return;
      }
    }
    // The daemon binary must be reachable by the user: every directory on its path needs
    // search permission for "other". A build tree under a private directory (e.g. /root)
    // is not; then run a copy of the same binary from a world-readable directory (it links
    // no library from the build tree), and say so.
    launch_ = launch_path();
    std::string unreachable = first_unreachable(launch_);
    if (!unreachable.empty()) {
      if (!copy_for_user(launch_path(), "dsdfs-launch", &launch_)) return;
      fprintf(stderr,
              "e2e: note: %s cannot reach %s (no o+x on %s); running a copy from %s\n",
              kUser, launch_path().c_str(), unreachable.c_str(), launch_.c_str());
      if (std::string still = first_unreachable(launch_); !still.empty()) {
        setup_error_ = "user " + std::string(kUser) + " cannot reach " + still +
                       " (needs o+x on every directory of " + launch_ + ")";
        return;
      }
    }
    // The dsdfs command (DSDFS_CLI, set by meson test), reachable by the user the same way.
    const char* cli = std::getenv("DSDFS_CLI");
    cli_ = cli ? cli : "";
    if (!cli_.empty() && !first_unreachable(cli_).empty()) copy_for_user(cli_, "dsdfs", &cli_);
  }

  // Copies the program `from` (it links no library from the build tree) into a world-readable
  // directory as `name`; sets *to to the copy, or setup_error_ and returns false.
  static bool copy_for_user(const std::string& from, const char* name, std::string* to) {
    if (!bin_dir_) {
      bin_dir_ = std::make_unique<TempDir>("dsdfs-e2e-bin");
      chmod(bin_dir_->path().c_str(), 0755);
    }
    std::string copy = bin_dir_->path() + "/" + name;
    std::string bytes = slurp(from);
    if (bytes.empty() || !write_file(copy, bytes, 0755) || chmod(copy.c_str(), 0755) != 0) {
      setup_error_ = "cannot copy " + from + " to " + copy;
      return false;
    }
    *to = copy;
    return true;
  }

  static void TearDownTestSuite() { bin_dir_.reset(); }

  // The first component of `path` the user may not search/execute, or "" if none.
  static std::string first_unreachable(const std::string& path) {
    TempDir scratch("dsdfs-e2e-access");
    size_t pos = 0;
    while (pos != std::string::npos) {
      size_t next = path.find('/', pos + 1);
      std::string prefix = path.substr(0, next);
      if (!prefix.empty()) {
        CommandResult r = run_command({"/usr/bin/test", "-x", prefix}, scratch.path(), 10s, user_);
        if (r.exit_code() != 0) return prefix;
      }
      pos = next;
    }
    return {};
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    ASSERT_TRUE(user_.has_value());
    tmp_ = std::make_unique<TempDir>("dsdfs-e2e-nonroot");
    ASSERT_SYS_OK(chown(tmp_->path().c_str(), user_->uid, user_->gid));
    ASSERT_SYS_OK(chmod(tmp_->path().c_str(), 0700));
  }

  void TearDown() override {
    if (HasFailure() && inst_) {
      fprintf(stderr, "---- dsdfs-launch log ----\n%s---- end of log ----\n",
              inst_->log_since(0).c_str());
    }
    inst_.reset();
    tmp_.reset();
  }

  DsdfsConfig user_config() {
    DsdfsConfig c;
    c.root = tmp_->path();
    c.run_as = user_;
    c.launch = launch_;
    return c;
  }

  // Runs a shell script as the user; returns the result (stdout, stderr, status).
  CommandResult as_user(const std::string& script) {
    return run_command({"/bin/sh", "-c", script}, tmp_->path(), 30s, user_);
  }

  static uid_t uid_of_process(pid_t pid) {
    std::string status = slurp("/proc/" + std::to_string(pid) + "/status");
    size_t at = status.find("\nUid:");
    if (at == std::string::npos) return static_cast<uid_t>(-1);
    unsigned real, effective, saved, fs;
    if (sscanf(status.c_str() + at + 5, "%u %u %u %u", &real, &effective, &saved, &fs) != 4)
      return static_cast<uid_t>(-1);
    if (real != effective || real != saved || real != fs) return static_cast<uid_t>(-2);
    return real;
  }

  static inline std::optional<RunAs> user_;
  static inline std::string setup_error_;
  static inline std::string launch_;  // what the user runs (launch_path() or a copy)
  static inline std::string cli_;     // the dsdfs command the user runs (DSDFS_CLI or a copy)
  static inline std::unique_ptr<TempDir> bin_dir_;
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<DsdfsInstance> inst_;
};

TEST_F(NonRoot, UserRunsTheDaemonAndWorksOnTheMountWithShellTools) {
  inst_ = std::make_unique<DsdfsInstance>(user_config());
  ASSERT_TRUE(inst_->start());
  const std::string mnt = inst_->mnt();

  EXPECT_EQ(uid_of_process(inst_->pid()), user_->uid) << "the daemon must run as " << kUser;
  auto mounts = mounts_at(mnt);
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].fstype, "fuse.dsdfs");
  EXPECT_NE(mounts[0].super_options.find("user_id=" + std::to_string(user_->uid)),
            std::string::npos)
      << "super options: " << mounts[0].super_options;

  CommandResult r = as_user(
      "set -eu\n"
      "cd '" + mnt + "'\n"
      "mkdir dir\n"
      "printf 'hello from the user\\n' > dir/file\n"
      "test \"$(cat dir/file)\" = 'hello from the user'\n"
      "echo more >> dir/file\n"
      "test \"$(wc -l < dir/file)\" -eq 2\n"
      "ls dir | grep -qx file\n"
      "echo scratch > tmpfile\n"
      "mv tmpfile dir/renamed\n"
      "rm dir/renamed\n"
      "test ! -e dir/renamed\n"
      "ln -s dir/file link\n"
      "cat link > /dev/null\n"
      "printf kept > kept\n"
      "dd if=/dev/zero of=zeros bs=64k count=16 2>/dev/null\n"
      "test \"$(stat -c %s zeros)\" -eq 1048576\n"
      "rm zeros link\n"
      "printf x > private\n"
      "chmod 000 private\n"
      "if cat private 2>/dev/null; then echo 'FAIL: read a mode 000 file'; fi\n"
      "chmod 600 private\n"
      "mkdir ro && chmod 555 ro\n"
      "if touch ro/x 2>/dev/null; then echo 'FAIL: created in a 0555 directory'; fi\n"
      "printf '#!' > setid && chmod 6755 setid && echo more >> setid\n"
      "m=$(stat -c %a setid); test $m = 755 || echo \"FAIL: mode $m after a write to a 6755 file\"\n"
      "printf x > setid2 && chmod 6755 setid2 && truncate -s 0 setid2\n"
      "m=$(stat -c %a setid2); test $m = 755 || echo \"FAIL: mode $m after truncating a 6755 file\"\n"
      "stat -c '%u:%g' dir/file\n");
  ASSERT_FALSE(r.timed_out) << "the user's shell commands hung";
  EXPECT_EQ(r.exit_code(), 0) << "shell commands as " << kUser << " failed ("
                              << describe_status(r.wait_status) << ")\n  stderr:\n"
                              << r.err << "  stdout:\n" << r.out;
  EXPECT_EQ(r.out, std::to_string(user_->uid) + ":" + std::to_string(user_->gid) + "\n")
      << "owner of a file the user created, seen through the mount";

  // In the store (read as root): the files belong to the user.
  for (const char* rel : {"dir/file", "kept", "dir"}) {
    auto st = lstat_of(inst_->store_path(rel));
    ASSERT_TRUE(st.has_value()) << inst_->store_path(rel) << " missing in the store";
    EXPECT_EQ(st->st_uid, user_->uid) << rel << " in the store";
    EXPECT_EQ(st->st_gid, user_->gid) << rel << " in the store";
  }
  EXPECT_TRUE(file_has(inst_->store_path("dir/file"), "hello from the user\nmore\n"));
  EXPECT_TRUE(file_has(inst_->store_path("kept"), "kept"));
  auto store = lstat_of(inst_->store());
  ASSERT_TRUE(store.has_value());
  EXPECT_EQ(store->st_uid, user_->uid) << "the store directory belongs to the user";

  // The dsdfs command as the user: the job's status; a stage-out into a directory the user
  // may not write gets one line naming it and exit 2, and copies nothing.
  ASSERT_FALSE(cli_.empty()) << "DSDFS_CLI is not set (meson test sets it)";
  {
    TempDir pfs("dsdfs-e2e-pfs");
    ASSERT_SYS_OK(chmod(pfs.path().c_str(), 0755));  // root's: the user may look, not write
    r = as_user("'" + cli_ + "' status '" + mnt + "' >/dev/null; echo status=$?\n'" + cli_ + "' stage-out '" + mnt +
                "/dir' '" + pfs.path() + "'; echo stage=$?\n");
    ASSERT_FALSE(r.timed_out) << "the dsdfs command hung";
    EXPECT_NE(r.out.find("status=0\n"), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.out.find("stage=2\n"), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.err.find(pfs.path() + ": Permission denied"), std::string::npos) << r.err;
    EXPECT_FALSE(path_exists(pfs.path() + "/dir")) << "a refused stage-out copied something";
  }

  // Stop by pid: exit 0, the mount is gone (fusermount3 -u as the user), store removed.
  auto stopped = inst_->stop();
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_FALSE(is_mounted(mnt));
  EXPECT_FALSE(path_exists(inst_->store())) << "store not removed on stop";
}

TEST_F(NonRoot, StaleMountIsCleanedUpByTheUser) {
  inst_ = std::make_unique<DsdfsInstance>(user_config());
  ASSERT_TRUE(inst_->start());
  const std::string mnt = inst_->mnt();
  inst_->kill_hard();
  CommandResult r = as_user("stat '" + mnt + "'");
  EXPECT_NE(r.exit_code(), 0);
  ASSERT_NE(r.err.find("not connected"), std::string::npos)
      << "expected a stale mount (ENOTCONN) after SIGKILL; stat said: " << r.err;
  ASSERT_TRUE(is_mounted(mnt));

  // The user cannot umount(2); the daemon must use fusermount3 -u for the stale mount.
  DsdfsConfig c = user_config();
  c.store = c.root + "/store2";
  c.ready_file = c.root + "/ready2";
  c.log_file = c.root + "/daemon2.log";
  auto next = std::make_unique<DsdfsInstance>(c);
  auto started = next->start();
  if (!started) inst_ = std::move(next);  // print its log in TearDown
  ASSERT_TRUE(started) << "restart over a stale mount as " << kUser;
  EXPECT_EQ(mounts_at(mnt).size(), 1u);
  r = as_user("set -e; echo ok > '" + mnt + "/f'; cat '" + mnt + "/f'");
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
  auto stopped = next->stop();
  EXPECT_TRUE(stopped) << stopped.message();
  EXPECT_FALSE(is_mounted(mnt));
}

TEST_F(NonRoot, StoreTheUserCannotWriteIsRejected) {
  const std::string mnt = tmp_->path() + "/mnt";
  const std::string locked = tmp_->path() + "/locked";
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));
  ASSERT_SYS_OK(chown(mnt.c_str(), user_->uid, user_->gid));
  ASSERT_SYS_OK(mkdir(locked.c_str(), 0755));  // root's, not writable by the user
  for (const std::string& store : {locked, locked + "/store"}) {
    CommandResult r = run_command({launch_, mnt, "--store", store}, tmp_->path(), 20s,
                                  user_);
    ASSERT_FALSE(r.timed_out) << "--store " << store << ": did not exit within 20 s";
    EXPECT_EQ(r.exit_code(), 1) << "--store " << store << ": " << describe_status(r.wait_status)
                                << "\n" << r.err;
    auto lines = split_lines(r.err);
    EXPECT_EQ(lines.size(), 1u) << "--store " << store << ": stderr:\n" << r.err;
    if (!lines.empty()) {
      EXPECT_TRUE(lines[0].starts_with("dsdfs-launch: error: ")) << lines[0];
    }
    EXPECT_FALSE(is_mounted(mnt));
  }
}

TEST_F(NonRoot, MountPointTheUserCannotWriteIsRejectedWithOneLine) {
  const std::string mnt = tmp_->path() + "/roots-dir";
  ASSERT_SYS_OK(mkdir(mnt.c_str(), 0755));  // root's: fusermount3 refuses to mount on it
  CommandResult r = run_command(
      {launch_, mnt, "--store", tmp_->path() + "/store"}, tmp_->path(), 20s, user_);
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 1) << describe_status(r.wait_status) << "\n" << r.err;
  auto lines = split_lines(r.err);
  EXPECT_EQ(lines.size(), 1u) << "stderr:\n" << r.err;
  if (!lines.empty()) {
    EXPECT_TRUE(lines[0].starts_with("dsdfs-launch: error: ")) << lines[0];
  }
  EXPECT_FALSE(is_mounted(mnt));
  EXPECT_FALSE(path_exists(tmp_->path() + "/store")) << "store left behind after a failed start";
}

}  // namespace
}  // namespace dsdfs::e2e
