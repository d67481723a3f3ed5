// SPDX-License-Identifier: Apache-2.0
#include "tests/e2e/e2e_env.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace dsdfs::e2e {
namespace {

std::string find_on_path(const char* name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/bin:/bin:/usr/sbin:/sbin";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

}  // namespace

[[noreturn]] void e2e_skip_or_fail(const std::string& why) {
  const char* require = getenv("DSDFS_REQUIRE_ALL");
  if (require != nullptr && std::strcmp(require, "1") == 0) {
    fprintf(stderr, "e2e: FAIL: %s (DSDFS_REQUIRE_ALL=1 turns this skip into a failure)\n",
            why.c_str());
    fflush(stderr);
    _exit(1);
  }
  fprintf(stderr, "e2e: SKIP: %s\n", why.c_str());
  fflush(stderr);
  _exit(kExitSkip);
}

const std::string& fusermount3_path() {
  static const std::string path = find_on_path("fusermount3");
  return path;
}

const std::string& launch_path() {
  static const std::string path = getenv("DSDFS_LAUNCH") ? getenv("DSDFS_LAUNCH") : "";
  return path;
}

void e2e_require_environment_or_exit(bool needs_root) {
  std::string missing;
  struct stat st;
  if (stat("/dev/fuse", &st) != 0 || !S_ISCHR(st.st_mode)) {
    missing += "/dev/fuse is missing; ";
  } else {
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      missing += std::string("/dev/fuse cannot be opened: ") + strerror(errno) + "; ";
    } else {
      close(fd);
    }
  }
  if (fusermount3_path().empty()) missing += "fusermount3 is not installed (package fuse3); ";
  if (needs_root && geteuid() != 0) missing += "this test must run as root; ";
  if (!missing.empty()) e2e_skip_or_fail(missing.substr(0, missing.size() - 2));

  if (launch_path().empty()) {
    fprintf(stderr,
            "e2e: FAIL: DSDFS_LAUNCH is not set; run through `meson test`, which sets it to "
            "the built dsdfs-launch\n");
    _exit(1);
  }
  if (access(launch_path().c_str(), X_OK) != 0) {
    fprintf(stderr, "e2e: FAIL: DSDFS_LAUNCH=%s is not executable: %s\n", launch_path().c_str(),
            strerror(errno));
    _exit(1);
  }
}

// ---------------------------------------------------------------------------------------
// watchdog

namespace {

struct Watchdog {
  std::mutex mu;
  std::condition_variable cv;
  std::map<pid_t, std::string> daemons;  // pgid -> mount point
  bool armed = false;
  bool fired = false;
  std::chrono::steady_clock::time_point deadline;
  std::chrono::seconds per_test{60};
  std::chrono::seconds armed_for{60};  // the current deadline's length, for the message
  std::string what;  // the test (or suite) the deadline belongs to
};

Watchdog& watchdog() {
  static Watchdog* w = new Watchdog;  // never destroyed: the thread outlives main's statics
  return *w;
}

void watchdog_arm(const std::string& what, std::chrono::seconds d) {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> lock(w.mu);
  w.armed = true;
  w.fired = false;
  w.what = what;
  w.armed_for = d;
  w.deadline = std::chrono::steady_clock::now() + d;
  w.cv.notify_all();
}

void watchdog_disarm() {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> lock(w.mu);
  w.armed = false;
  w.cv.notify_all();
}

// Runs fusermount3 -u -z MOUNT without waiting on anything but its own child.
void lazy_unmount(const std::string& mount_point) {
  if (mount_point.empty()) return;
  if (umount2(mount_point.c_str(), MNT_DETACH) == 0) return;
  if (fusermount3_path().empty()) return;
  const char* argv[] = {fusermount3_path().c_str(), "-u", "-z", "-q", mount_point.c_str(),
                        nullptr};
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, const_cast<char**>(argv), environ) == 0) {
    int status;
    waitpid(pid, &status, 0);
  }
}

void watchdog_main() {
  Watchdog& w = watchdog();
  std::unique_lock<std::mutex> lock(w.mu);
  for (;;) {
    if (!w.armed) {
      w.cv.wait(lock);
      continue;
    }
    if (w.cv.wait_until(lock, w.deadline) != std::cv_status::timeout) continue;
    if (!w.armed || std::chrono::steady_clock::now() < w.deadline) continue;
    std::map<pid_t, std::string> daemons = w.daemons;
    if (!w.fired) {
      fprintf(stderr,
              "\ne2e watchdog: %s did not finish within %lld s; SIGKILL of %zu daemon "
              "process group(s), so that calls blocked on their mounts fail\n",
              w.what.c_str(), static_cast<long long>(w.armed_for.count()), daemons.size());
      w.fired = true;
      w.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      lock.unlock();
      // No unmount here: a dead daemon's mount answers ENOTCONN, whereas a detached one
      // would let the test go on writing into the directory underneath.
      for (auto& [pgid, mnt] : daemons) kill(-pgid, SIGKILL);
      lock.lock();
      continue;
    }
    fprintf(stderr, "\ne2e watchdog: %s still hung 30 s after killing the daemons; exiting\n",
            w.what.c_str());
    lock.unlock();
    for (auto& [pgid, mnt] : daemons) kill(-pgid, SIGKILL);
    for (auto& [pgid, mnt] : daemons) lazy_unmount(mnt);
    fflush(stderr);
    _exit(1);
  }
}

class WatchdogListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestSuiteStart(const ::testing::TestSuite& suite) override {
    watchdog_arm(std::string("set-up of ") + suite.name(), watchdog().per_test);
  }
  void OnTestStart(const ::testing::TestInfo& info) override {
    watchdog_arm(std::string(info.test_suite_name()) + "." + info.name(), watchdog().per_test);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    watchdog_arm(std::string("tear-down of ") + info.test_suite_name(), watchdog().per_test);
  }
  void OnTestSuiteEnd(const ::testing::TestSuite&) override { watchdog_disarm(); }
};

}  // namespace

void watchdog_register(pid_t pgid, const std::string& mount_point) {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> lock(w.mu);
  w.daemons[pgid] = mount_point;
}

void watchdog_unregister(pid_t pgid) {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> lock(w.mu);
  w.daemons.erase(pgid);
}

void watchdog_install(std::chrono::seconds per_test) {
  watchdog().per_test = per_test;
  std::thread(watchdog_main).detach();
  ::testing::UnitTest::GetInstance()->listeners().Append(new WatchdogListener);
}

void watchdog_extend_current_test(std::chrono::seconds per_test) {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> lock(w.mu);
  w.armed_for = per_test;
  w.deadline = std::chrono::steady_clock::now() + per_test;
  w.cv.notify_all();
}

}  // namespace dsdfs::e2e
