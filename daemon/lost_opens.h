// SPDX-License-Identifier: Apache-2.0
// Opens that lost a race against another rank's unlink or rename, per caller
// thread and name: the kernel retries an open answered ESTALE once (with a
// fresh lookup of every path component), and never again, so the daemon must
// know when it answers the retry.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "common/mutex.h"

namespace dsdfs::fs {

class LostOpens {
 public:
  using Clock = std::chrono::steady_clock;
  // Longer than the kernel ever takes from an ESTALE answer to its retry's
  // open (a lookup per path component, each a round trip at most).
  static constexpr auto kRetryWindow = std::chrono::seconds(2);
  // How long a file that a retry's lookup found is held for that open
  // (Inode::hold_for_open): longer than one open takes, RPC timeouts
  // included. A file unlinked meanwhile is let go when the hold ends
  // (Filesystem::let_go_later).
  static constexpr auto kHold = std::chrono::seconds(10);

  // The open by thread `tid` of dir/name found the file gone. True if the
  // same thread's previous open of that name lost too, within the window:
  // this is the kernel's retry, and ESTALE would reach the application.
  // Otherwise records the loss and returns false (answer ESTALE: the
  // kernel looks the name up afresh and opens again).
  bool lost_again(pid_t tid, uint64_t dir, const std::string& name) EXCLUDES(mu_) {
    const auto now = Clock::now();
    MutexLock lock(mu_);
    auto key = std::make_tuple(tid, dir, name);
    auto it = lost_.find(key);
    if (it != lost_.end() && now - it->second < kRetryWindow) {
      lost_.erase(it);
      entries_.store(lost_.size(), std::memory_order_relaxed);
      return true;
    }
    if (lost_.size() >= kMaxEntries) prune(now);
    if (lost_.size() < kMaxEntries) lost_[std::move(key)] = now;
    entries_.store(lost_.size(), std::memory_order_relaxed);
    return false;
  }

  // A loss of `tid` for dir/name is recorded: its kernel is retrying.
  bool retrying(pid_t tid, uint64_t dir, const std::string& name) EXCLUDES(mu_) {
    if (!any()) return false;
    const auto now = Clock::now();
    MutexLock lock(mu_);
    auto it = lost_.find(std::make_tuple(tid, dir, name));
    return it != lost_.end() && now - it->second < kRetryWindow;
  }

  // Any losses recorded (a hint, read without the lock).
  bool any() const { return entries_.load(std::memory_order_relaxed) != 0; }

  // The open or create by `tid` of dir/name succeeded: a later loss is a
  // first one. (Not a negative lookup: the retry revalidates the name, and
  // may find nothing there, then a file when it looks up again to open.)
  void opened(pid_t tid, uint64_t dir, const std::string& name) EXCLUDES(mu_) {
    if (entries_.load(std::memory_order_relaxed) == 0) return;  // the common case: no lock
    MutexLock lock(mu_);
    lost_.erase(std::make_tuple(tid, dir, name));
    entries_.store(lost_.size(), std::memory_order_relaxed);
  }

 private:
  static constexpr size_t kMaxEntries = 4096;
  void prune(Clock::time_point now) REQUIRES(mu_) {
    for (auto it = lost_.begin(); it != lost_.end();) {
      it = now - it->second >= kRetryWindow ? lost_.erase(it) : std::next(it);
    }
  }

  Mutex mu_;
  std::map<std::tuple<pid_t, uint64_t, std::string>, Clock::time_point> lost_ GUARDED_BY(mu_);
  std::atomic<size_t> entries_{0};  // lost_.size(), read without the lock
};

}  // namespace dsdfs::fs
