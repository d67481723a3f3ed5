// SPDX-License-Identifier: Apache-2.0
// main() of every e2e test program: the skip rule, the watchdog, and a final check that no
// process started by a test is left running.

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>

#include "tests/e2e/e2e_env.h"
#include "tests/e2e/mount_fixture.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (::testing::GTEST_FLAG(list_tests)) return RUN_ALL_TESTS();

  dsdfs::e2e::e2e_require_environment_or_exit(/*needs_root=*/false);
  // Orphans of a daemon (e.g. helpers it forked) become our children, so that we can see
  // and reap them instead of leaving them to whatever PID 1 is.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  umask(022);
  dsdfs::e2e::watchdog_install(std::chrono::seconds(60));

  int rc = RUN_ALL_TESTS();

  std::vector<pid_t> left = dsdfs::e2e::child_pids();
  if (!left.empty()) {
    for (pid_t pid : left) {
      std::string cmdline = dsdfs::e2e::slurp("/proc/" + std::to_string(pid) + "/cmdline");
      for (char& c : cmdline)
        if (c == '\0') c = ' ';
      fprintf(stderr, "e2e: FAIL: process %d left running after all tests: %s\n", pid,
              cmdline.c_str());
    }
    dsdfs::e2e::kill_all_children();
    rc = 1;
  }
  return rc;
}
