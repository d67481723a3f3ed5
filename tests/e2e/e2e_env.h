// SPDX-License-Identifier: Apache-2.0
#pragma once

// Process-wide set-up shared by every e2e test program: the skip rule, the path of the
// daemon under test, and a watchdog that turns a hung file system call into a test failure
// instead of a meson timeout that leaves mounts and processes behind.

#include <sys/types.h>

#include <chrono>
#include <string>

namespace dsdfs::e2e {

// Exit code that meson reports as SKIP.
inline constexpr int kExitSkip = 77;

// The skip rule (STYLE.md, Tests): when /dev/fuse or fusermount3 is missing, print why and
// exit 77 (SKIP), unless DSDFS_REQUIRE_ALL=1, in which case print why and exit 1 (FAIL).
// `needs_root` adds "must run as root" to the requirements (the non-root test switches users).
// Also fails (exit 1) when DSDFS_LAUNCH does not name an executable: meson always sets it, so
// that is a broken build, never a reason to skip.
void e2e_require_environment_or_exit(bool needs_root);

// Same rule for one more requirement found missing later (e.g. no useradd): exits 77 or 1.
[[noreturn]] void e2e_skip_or_fail(const std::string& why);

// Path of dsdfs-launch, from DSDFS_LAUNCH.
const std::string& launch_path();

// Directory of fusermount3 found on PATH (or the usual system locations).
const std::string& fusermount3_path();

// Registry of running daemons, so that the watchdog can kill them. Thread-safe.
void watchdog_register(pid_t pgid, const std::string& mount_point);
void watchdog_unregister(pid_t pgid);

// Installs a gtest listener that arms a per-test deadline. When a test overruns, the
// watchdog SIGKILLs every registered daemon's process group and lazily unmounts its mount,
// which makes a system call blocked on the mount fail (ENOTCONN) so the test can fail and
// tear down normally; if the test still does not finish within a grace period the whole
// program exits 1 after cleaning up. REQUIRES: called once, from main, before RUN_ALL_TESTS.
void watchdog_install(std::chrono::seconds per_test);

// A test that legitimately needs longer (e.g. a 64 MiB transfer under a sanitizer) calls
// this at its start to stretch its own deadline.
void watchdog_extend_current_test(std::chrono::seconds per_test);

}  // namespace dsdfs::e2e
