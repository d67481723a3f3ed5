// SPDX-License-Identifier: Apache-2.0
// The randomized multi-rank torture test (issue 8, item 8): random operations from several
// workers on every rank of a real job for a bounded time, every result checked by an oracle.
// How it works and what it checks: torture.h and torture_rules.h; how to run and read it:
// tests/mpi/README.md.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "tests/e2e/e2e_env.h"
#include "tests/mpi/cluster_fixture.h"
#include "tests/mpi/torture.h"

namespace dsdfs::mpitest::torture {
namespace {

TEST(Torture, RandomOperationsFromEveryRankKeepThePromises) {
  const Config cfg = Config::from_env();
  e2e::watchdog_extend_current_test(
      std::chrono::seconds(static_cast<long>(cfg.seconds + 2 * cfg.hang_limit) + 180));
  fprintf(stderr, "torture: %s\n", cfg.describe().c_str());
  Cluster c(with_ranks(cfg.ranks));
  ASSERT_TRUE(c.start());
  ClusterJob job(&c);
  Torture t(cfg, &job);
  t.report.set_slow_threshold(static_cast<int64_t>(c.options().rpc_timeout_s * 1e9));
  ASSERT_TRUE(t.setup());
  t.run();
  if (!t.aborted())
    t.run_guarded("the final checks", std::chrono::seconds(120), [&] { t.final_checks(); });
  fprintf(stderr, "%s", t.report.summary(t.elapsed()).c_str());
  if (t.report.violations() && !t.aborted())
    fprintf(stderr, "torture: job log (%s variant):\n%s", ucx_tls_variant().c_str(),
            c.log().c_str());
  EXPECT_EQ(t.report.violations(), 0u)
      << "the oracle found violations (summary above); " << cfg.describe()
      << t.report.first_violations(3);
  if (!t.aborted()) {
    // A rank stuck in the kernel on its own mount outlives SIGKILL (and can block the
    // stop's own diagnostics): free it, or it and its mount stay behind for good.
    ::testing::AssertionResult stopped = ::testing::AssertionSuccess();
    t.run_guarded("stopping the job", std::chrono::seconds(90), [&] { stopped = c.stop(); });
    EXPECT_TRUE(stopped);
    if (!stopped) fprintf(stderr, "torture: %s\n", t.abort_connections().c_str());
  }
}

// The soak run of the emulated cluster (tests/sim/soak.sh, docs/cluster-sim.md): the same
// workload and oracle on a job started outside this program, one rank per emulated node,
// while the script injects network faults. Runs only with DSDFS_TORTURE_ATTACH set.
// DSDFS_TORTURE_TIMEOUT_S: the job's --timeout (calls that took that long are listed).
TEST(TortureSoak, RandomOperationsOnAnAttachedJobKeepThePromises) {
  if (getenv("DSDFS_TORTURE_ATTACH") == nullptr) GTEST_SKIP() << "no DSDFS_TORTURE_ATTACH (tests/sim/soak.sh sets it)";
  std::string err;
  AttachedJob job(&err);
  ASSERT_TRUE(err.empty()) << err;
  Config cfg = Config::from_env();
  cfg.ranks = job.size();
  e2e::watchdog_extend_current_test(
      std::chrono::seconds(static_cast<long>(cfg.seconds + 2 * cfg.hang_limit) + 180));
  fprintf(stderr, "torture: attached to a job of %d ranks: %s\n", job.size(), cfg.describe().c_str());
  Torture t(cfg, &job);
  t.report.set_slow_threshold(env_long("DSDFS_TORTURE_TIMEOUT_S", 5, 1, 3600) * 1000000000L);
  ASSERT_TRUE(t.setup());
  t.run();
  if (!t.aborted())
    t.run_guarded("the final checks", std::chrono::seconds(120), [&] { t.final_checks(); });
  fprintf(stderr, "%s", t.report.summary(t.elapsed()).c_str());
  if (t.report.violations() && !t.aborted()) fprintf(stderr, "torture: job log:\n%s", job.log().c_str());
  EXPECT_EQ(t.report.violations(), 0u) << "the oracle found violations (summary above); " << cfg.describe()
                                       << t.report.first_violations(3);
}

// The same workload on one directory of the local file system, every "rank" in it: the
// oracle must find nothing there, or it is the oracle that is wrong (the store and owner
// checks are left out). Once per build: in the tcp variant only. DSDFS_TORTURE_LOCAL_SECONDS
// (default 10) sets its length, DSDFS_TORTURE_LOCAL_DIR the file system (default /tmp's).
TEST(TortureOracle, FindsNothingOnALocalFileSystem) {
  if (ucx_tls_variant() != "tcp") GTEST_SKIP() << "runs in the tcp variant only";
  Config cfg = Config::from_env();
  cfg.seconds = static_cast<double>(env_long("DSDFS_TORTURE_LOCAL_SECONDS", 10, 1, 24 * 3600));
  e2e::watchdog_extend_current_test(
      std::chrono::seconds(static_cast<long>(cfg.seconds + 2 * cfg.hang_limit) + 60));
  // DSDFS_TORTURE_LOCAL_DIR: the file system to run on (default /tmp's)
  const char* parent = getenv("DSDFS_TORTURE_LOCAL_DIR");
  std::string templ = std::string(parent && *parent ? parent : "/tmp") + "/dsdfs-torture-XXXXXX";
  ASSERT_NE(mkdtemp(templ.data()), nullptr) << templ << ": " << e2e::errno_text(errno);
  struct RemoveAtEnd {
    std::string path;
    ~RemoveAtEnd() { e2e::remove_tree(path); }
  } remove_at_end{templ};
  fprintf(stderr, "torture: on the local file system under %s: %s\n", templ.c_str(),
          cfg.describe().c_str());
  Torture t(cfg, nullptr, templ);
  ASSERT_TRUE(t.setup());
  t.run();
  if (!t.aborted()) t.final_checks();
  fprintf(stderr, "%s", t.report.summary(t.elapsed()).c_str());
  EXPECT_EQ(t.report.violations(), 0u)
      << "the oracle reports violations on a local file system: a bug of the test (summary "
         "above); "
      << cfg.describe();
  EXPECT_EQ(t.report.limits(), 0u) << "a local file system hit a documented dsdfs limit";
}

}  // namespace
}  // namespace dsdfs::mpitest::torture
