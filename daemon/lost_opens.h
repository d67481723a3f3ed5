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

  // after_lookup: the kernel's retry is known by the lookup it makes first.
  // An open's retry looks the name up afresh (LOOKUP_REVAL revalidates
  // every cached entry), and its open follows a lookup that found a file;
  // without that, an open of the same thread and name is a new system call
  // (a cached entry of a file this node made, no lookup at all), not the
  // retry. A link's retry looks up its old name, not the new one this is
  // keyed by: links go without (after_lookup false).
  explicit LostOpens(bool after_lookup) : after_lookup_(after_lookup) {}

  // The open by thread `tid` of dir/name found the file gone. True if the
  // same thread's previous open of that name lost too, within the window
  // (and, with after_lookup, the thread has looked the name up since and
  // found a file): this is the kernel's retry, and ESTALE would reach the
  // application. Otherwise records the loss and returns false (answer
  // ESTALE: the kernel looks the name up afresh and opens again).
  bool lost_again(pid_t tid, uint64_t dir, const std::string& name) EXCLUDES(mu_) {
    const auto now = Clock::now();
    MutexLock lock(mu_);
    auto key = std::make_tuple(tid, dir, name);
    auto it = lost_.find(key);
    if (it != lost_.end() && is_retry(it->second, now)) {
      lost_.erase(it);
      entries_.store(lost_.size(), std::memory_order_relaxed);
      return true;
    }
    if (it != lost_.end()) {
      it->second = Loss{now};  // a new system call's first loss
      return false;
    }
    if (lost_.size() >= kMaxEntries) prune(now);
    if (lost_.size() < kMaxEntries) lost_[std::move(key)] = Loss{now};
    entries_.store(lost_.size(), std::memory_order_relaxed);
    return false;
  }

  // An open by `tid` of dir/name now would be the kernel's retry (see
  // lost_again), which this does not end.
  bool retrying(pid_t tid, uint64_t dir, const std::string& name) EXCLUDES(mu_) {
    if (!any()) return false;
    const auto now = Clock::now();
    MutexLock lock(mu_);
    auto it = lost_.find(std::make_tuple(tid, dir, name));
    return it != lost_.end() && is_retry(it->second, now);
  }

  // A loss of `tid` for dir/name is recorded, within the window: a lookup
  // of the name by that thread may be the kernel's retry looking.
  bool pending(pid_t tid, uint64_t dir, const std::string& name) EXCLUDES(mu_) {
    if (!any()) return false;  // the common case: no lock
    const auto now = Clock::now();
    MutexLock lock(mu_);
    auto it = lost_.find(std::make_tuple(tid, dir, name));
    return it != lost_.end() && now - it->second.at < kRetryWindow;
  }

  // `tid` looked dir/name up, and found a file or found nothing. After a
  // lookup that found a file, the thread's next open of the name is the
  // kernel's retry. The retry of an open whose name has gone looks it up
  // twice and finds nothing (revalidation, then a fresh lookup) and ends
  // with ENOENT, or creates the name (which ends the record, see opened):
  // two lookups in a row that find nothing end the record.
  void looked_up(pid_t tid, uint64_t dir, const std::string& name, bool found) EXCLUDES(mu_) {
    if (!any()) return;  // the common case: no lock
    const auto now = Clock::now();
    MutexLock lock(mu_);
    auto it = lost_.find(std::make_tuple(tid, dir, name));
    if (it == lost_.end() || now - it->second.at >= kRetryWindow) return;
    if (found) {
      it->second.found = true;
      it->second.misses = 0;
      return;
    }
    it->second.found = false;
    if (++it->second.misses >= 2) {
      lost_.erase(it);
      entries_.store(lost_.size(), std::memory_order_relaxed);
    }
  }

  // Any losses recorded (a hint, read without the lock).
  bool any() const { return entries_.load(std::memory_order_relaxed) != 0; }

  // The open or create by `tid` of dir/name succeeded: a later loss is a
  // first one.
  void opened(pid_t tid, uint64_t dir, const std::string& name) EXCLUDES(mu_) {
    if (entries_.load(std::memory_order_relaxed) == 0) return;  // the common case: no lock
    MutexLock lock(mu_);
    lost_.erase(std::make_tuple(tid, dir, name));
    entries_.store(lost_.size(), std::memory_order_relaxed);
  }

 private:
  struct Loss {
    Clock::time_point at;
    bool found = false;  // the thread's last lookup of the name since the loss found a file
    int misses = 0;      // lookups since the loss that found nothing, in a row
  };
  static constexpr size_t kMaxEntries = 4096;
  bool is_retry(const Loss& l, Clock::time_point now) const {
    return now - l.at < kRetryWindow && (!after_lookup_ || l.found);
  }
  void prune(Clock::time_point now) REQUIRES(mu_) {
    for (auto it = lost_.begin(); it != lost_.end();) {
      it = now - it->second.at >= kRetryWindow ? lost_.erase(it) : std::next(it);
    }
  }

  const bool after_lookup_;
  Mutex mu_;
  std::map<std::tuple<pid_t, uint64_t, std::string>, Loss> lost_ GUARDED_BY(mu_);
  std::atomic<size_t> entries_{0};  // lost_.size(), read without the lock
};

}  // namespace dsdfs::fs
