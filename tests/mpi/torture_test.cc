// SPDX-License-Identifier: Apache-2.0
// The randomized multi-rank torture test (issue 8, item 8): random operations from several
// workers on every rank of a real job for a bounded time, every result checked by an oracle.
// How it works and what it checks: torture.h and torture_rules.h; how to run and read it:
// tests/mpi/README.md.

#include <gtest/gtest.h>

#include <cstdio>

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
  Torture t(cfg, c);
  t.report.set_slow_threshold(static_cast<int64_t>(c.options().rpc_timeout_s * 1e9));
  ASSERT_TRUE(t.setup());
  t.run();
  if (!t.aborted()) t.final_checks();
  fprintf(stderr, "%s", t.report.summary(t.elapsed()).c_str());
  if (t.report.violations() && !t.aborted())
    fprintf(stderr, "torture: job log (%s variant):\n%s", ucx_tls_variant().c_str(),
            c.log().c_str());
  EXPECT_EQ(t.report.violations(), 0u)
      << "the oracle found violations (summary above); " << cfg.describe();
  if (!t.aborted()) {
    EXPECT_TRUE(c.stop());
  }
}

}  // namespace
}  // namespace dsdfs::mpitest::torture
