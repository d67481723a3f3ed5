// SPDX-License-Identifier: Apache-2.0
// main() of the multi-rank test program: the skip rule, the per-test watchdog, and a final
// check that no process started by a test (mpirun, a rank, a shell) is left running.

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>

#include "tests/e2e/e2e_env.h"
#include "tests/e2e/mount_fixture.h"
#include "tests/mpi/cluster_fixture.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (::testing::GTEST_FLAG(list_tests)) return RUN_ALL_TESTS();

  dsdfs::mpitest::cluster_require_environment_or_exit();
  fprintf(stderr, "mpi: UCX transport variant: %s\n",
          dsdfs::mpitest::ucx_tls_variant().c_str());
  // Ranks orphaned by mpirun become our children, so that we can see and reap them instead
  // of leaving them to whatever PID 1 is.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  umask(022);
  // Generous: a test starts and stops a whole job; the large-file test extends its own.
  dsdfs::e2e::watchdog_install(std::chrono::seconds(120));

  int rc = RUN_ALL_TESTS();

  std::vector<pid_t> left = dsdfs::e2e::child_pids();
  if (!left.empty()) {
    for (pid_t pid : left) {
      std::string cmdline = dsdfs::e2e::slurp("/proc/" + std::to_string(pid) + "/cmdline");
      for (char& c : cmdline)
        if (c == '\0') c = ' ';
      fprintf(stderr, "mpi: FAIL: process %d left running after all tests: %s\n", pid,
              cmdline.c_str());
    }
    dsdfs::e2e::kill_all_children();
    rc = 1;
  }
  return rc;
}
