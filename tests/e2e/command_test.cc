// SPDX-License-Identifier: Apache-2.0
// The `dsdfs` command (launcher/dsdfs_cli.cc) against one running daemon: what it prints,
// what it exits with, and one clear line for every bad input. The multi-rank view (ranks
// up and down, remote owners, copies) is tested in tests/mpi/cluster_test.cc.

#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/e2e/e2e_env.h"
#include "tests/e2e/mount_fixture.h"

namespace dsdfs::e2e {
namespace {

std::string cli_path() {
  const char* p = std::getenv("DSDFS_CLI");
  return p ? p : "";
}

class Command : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cli_path().empty()) GTEST_FAIL() << "DSDFS_CLI is not set (meson test sets it)";
    DsdfsConfig c;
    c.root = tmp_.sub("job");
    ::mkdir(c.root.c_str(), 0755);
    inst_ = std::make_unique<DsdfsInstance>(c);
    ASSERT_TRUE(inst_->start());
  }
  void TearDown() override {
    if (inst_) {
      if (HasFailure()) fprintf(stderr, "---- daemon log ----\n%s---- end ----\n", inst_->log_since(0).c_str());
      EXPECT_TRUE(inst_->stop());
    }
  }
  CommandResult dsdfs(std::vector<std::string> args) {
    args.insert(args.begin(), cli_path());
    return run_command(args, tmp_.path(), 60s);
  }
  // The counter `name` of the daemon's own user.dsdfs.stats.
  long long own_counter(const std::string& name) {
    char buf[4096];
    ssize_t n = ::getxattr(inst_->mnt().c_str(), "user.dsdfs.stats", buf, sizeof buf - 1);
    if (n < 0) return -1;
    for (const auto& line : split_lines(std::string(buf, static_cast<size_t>(n))))
      if (line.starts_with(name + " ")) return std::atoll(line.c_str() + name.size() + 1);
    return -1;
  }

  TempDir tmp_{"dsdfs-e2e-command"};
  std::unique_ptr<DsdfsInstance> inst_;
};

TEST_F(Command, StatusListsTheOneRankUpWithWhatItOwns) {
  ASSERT_TRUE(write_file(inst_->path("a"), std::string(5000, 'a')));
  ASSERT_EQ(::mkdir(inst_->path("d").c_str(), 0755), 0);
  ASSERT_TRUE(write_file(inst_->path("d/b"), std::string(3000, 'b')));
  auto r = dsdfs({"status", inst_->mnt()});
  ASSERT_EQ(r.exit_code(), 0) << r.out << r.err;
  auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(lines[0].starts_with("RANK")) << r.out;
  EXPECT_TRUE(lines[1].starts_with("0 ")) << r.out;
  EXPECT_NE(lines[1].find(" up "), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");

  auto j = dsdfs({"status", inst_->mnt(), "--json"});
  ASSERT_EQ(j.exit_code(), 0) << j.out << j.err;
  EXPECT_NE(j.out.find("\"state\": \"up\""), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("\"files\": 2"), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("\"bytes\": 8000"), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("\"down\": 0"), std::string::npos) << j.out;

  // From inside the mount, without naming it.
  auto here = run_command({"/bin/sh", "-c", "cd '" + inst_->path("d") + "' && exec '" + cli_path() + "' status"},
                          tmp_.path(), 60s);
  EXPECT_EQ(here.exit_code(), 0) << here.out << here.err;
  EXPECT_NE(here.out.find(" up "), std::string::npos) << here.out;
}

TEST_F(Command, StatsAreTheRanksOwnCounters) {
  ASSERT_TRUE(write_file(inst_->path("a"), std::string(12345, 'a')));
  // Bytes written through kernel passthrough never reach the daemon, so its
  // byte counters leave them out; the create is counted either way.
  const bool passed_through = own_counter("passthrough_opens") > 0;
  const std::string counter = passed_through ? "fuse_create" : "bytes_written_local";
  const long long written = own_counter(counter);
  ASSERT_GE(written, passed_through ? 1 : 12345);
  auto r = dsdfs({"stats", inst_->mnt(), "--json", "--per-rank"});
  ASSERT_EQ(r.exit_code(), 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\"" + counter + "\": " + std::to_string(written)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"per_rank\""), std::string::npos) << r.out;
  auto t = dsdfs({"stats", inst_->mnt()});
  ASSERT_EQ(t.exit_code(), 0) << t.out << t.err;
  bool found = false;
  for (const auto& line : split_lines(t.out)) {
    if (!line.starts_with(counter + " ")) continue;
    found = true;
    EXPECT_NE(line.find(" " + std::to_string(written)), std::string::npos) << line;
  }
  EXPECT_TRUE(found) << t.out;
}

TEST_F(Command, WhereNamesTheOwnerAndThisNodesCopy) {
  ASSERT_TRUE(write_file(inst_->path("a"), "x"));
  ASSERT_EQ(::mkdir(inst_->path("d").c_str(), 0755), 0);
  auto r = dsdfs({"where", inst_->path("a"), inst_->path("d")});
  ASSERT_EQ(r.exit_code(), 0) << r.out << r.err;
  auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(lines[0].starts_with(inst_->path("a") + ": rank 0 on ")) << lines[0];
  EXPECT_NE(lines[0].find("copy here: local"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("a directory"), std::string::npos) << lines[1];
}

TEST_F(Command, BadInputGetsOneClearLineAndANonZeroExit) {
  struct Case {
    std::vector<std::string> args;
    int exit;
    std::string says;
  };
  const std::string outside = tmp_.sub("outside");
  ASSERT_TRUE(write_file(outside, "not in dsdfs"));
  const std::vector<Case> cases = {
      {{"frobnicate"}, 2, "unknown command 'frobnicate'"},
      {{"status", "--bogus"}, 2, "unknown option '--bogus'"},
      {{"status", tmp_.path()}, 2, "is not in a dsdfs mount"},
      {{"status", inst_->path("missing")}, 2, "No such file or directory"},
      {{"status", inst_->mnt(), inst_->mnt()}, 2, "one mount at most"},
      {{"where"}, 2, "name at least one file"},
      {{"where", outside}, 1, "is not in a dsdfs mount"},
      {{"where", inst_->path("missing")}, 1, "No such file or directory"},
  };
  for (const auto& c : cases) {
    auto r = dsdfs(c.args);
    std::string cmd;
    for (const auto& a : c.args) cmd += " " + a;
    EXPECT_EQ(r.exit_code(), c.exit) << "dsdfs" << cmd << "\n" << r.err;
    ASSERT_FALSE(r.err.empty()) << "dsdfs" << cmd;
    const std::string first = split_lines(r.err)[0];
    EXPECT_TRUE(first.starts_with("dsdfs: ")) << "dsdfs" << cmd << ": " << first;
    EXPECT_NE(first.find(c.says), std::string::npos) << "dsdfs" << cmd << ": " << first;
  }
  auto none = dsdfs({});
  EXPECT_EQ(none.exit_code(), 2);
  EXPECT_NE(none.err.find("usage: dsdfs status"), std::string::npos) << none.err;
  auto help = dsdfs({"--help"});
  EXPECT_EQ(help.exit_code(), 0);
  EXPECT_NE(help.out.find("usage: dsdfs status"), std::string::npos) << help.out;
}

TEST_F(Command, StopUnmountsRemovesTheStoreAndTheDaemonExitsZero) {
  ASSERT_TRUE(write_file(inst_->path("a"), "x"));
  auto r = dsdfs({"stop", inst_->mnt()});
  EXPECT_EQ(r.exit_code(), 0) << r.out << r.err;
  EXPECT_NE(r.out.find("stopping 1 of 1 ranks"), std::string::npos) << r.out;
  EXPECT_FALSE(is_mounted(inst_->mnt())) << "dsdfs stop returned before the mount was gone";
  ASSERT_TRUE(inst_->wait_exit(20s)) << "the daemon still runs 20 s after dsdfs stop";
  EXPECT_TRUE(WIFEXITED(inst_->wait_status()) && WEXITSTATUS(inst_->wait_status()) == 0)
      << describe_status(inst_->wait_status());
  EXPECT_FALSE(path_exists(inst_->store())) << "the store was left behind";
  inst_.reset();
}

TEST_F(Command, TheControlSocketIsTheUsersOnly) {
  int err = 0;
  char buf[4096];
  ssize_t n = ::getxattr(inst_->mnt().c_str(), "user.dsdfs.control", buf, sizeof buf - 1);
  err = errno;
  ASSERT_GT(n, 0) << errno_text(err);
  const std::string sock(buf, static_cast<size_t>(n));
  struct stat st;
  ASSERT_EQ(::stat(sock.c_str(), &st), 0) << sock << ": " << errno_text(errno);
  EXPECT_TRUE(S_ISSOCK(st.st_mode)) << sock;
  EXPECT_EQ(st.st_mode & 0777, 0600u) << sock;
  EXPECT_EQ(st.st_uid, ::geteuid()) << sock;
  // Gone with the daemon.
  EXPECT_TRUE(inst_->stop());
  inst_.reset();
  EXPECT_NE(::stat(sock.c_str(), &st), 0) << sock << " left behind";
}

}  // namespace
}  // namespace dsdfs::e2e
