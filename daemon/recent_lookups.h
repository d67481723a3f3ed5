// SPDX-License-Identifier: Apache-2.0
// What the owner said about another rank's file at the lookup a calling
// thread has just had answered, so that the request the kernel sends next in
// the same system call takes it instead of asking the owner again.
//
// A path walk looks every remote name up (zero entry timeout) and gets the
// owner's attributes (and a small file's bytes) with it; the kernel then
// opens the file (an OPEN, which asks the owner what the name holds now), and
// asks for the attributes once more where it could not keep the lookup's (a
// GETATTR: Filesystem::kRemoteAttrTimeout). They come microseconds after the
// lookup, from the same thread, within one system call, so the lookup's
// answer is as fresh as a second one: the call may as well have happened at
// the lookup. A request of another thread, for another inode, or later than
// kWindow asks the owner as before; the thread's next lookup (every later
// call that names a path starts with one) replaces its entry. The window
// bounds the case of a request that follows a lookup of an earlier system
// call without a lookup of its own (a reopen through /proc/self/fd of an
// O_PATH descriptor): it would see the file as it was at most kWindow before.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"

namespace dsdfs::fs {

class RecentLookups {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kWindow = std::chrono::microseconds(1000);
  static constexpr size_t kPruneAbove = 1024;  // entries; older ones go when more are kept

  struct Entry {
    uint64_t ino = 0;  // the kernel inode the lookup answered
    int owner = -1;
    uint64_t version = 0;
    struct stat st {};
    Clock::time_point at{};
    // All bytes of that version, where the owner sent them with the
    // attributes (a small file it had in memory): the open needs no fetch.
    std::shared_ptr<const std::vector<uint8_t>> data;
  };

  void note(pid_t tid, Entry e) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (by_tid_.size() > kPruneAbove) {
      const auto old = e.at - kWindow;
      for (auto it = by_tid_.begin(); it != by_tid_.end();) it = it->second.at < old ? by_tid_.erase(it) : ++it;
    }
    by_tid_[tid] = std::move(e);
  }

  // The entry thread `tid` noted for kernel inode `ino` within kWindow
  // before `now`; nothing otherwise.
  std::optional<Entry> find(pid_t tid, uint64_t ino, Clock::time_point now = Clock::now()) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    auto it = by_tid_.find(tid);
    if (it == by_tid_.end() || it->second.ino != ino) return std::nullopt;
    if (now - it->second.at > kWindow || now < it->second.at) {
      by_tid_.erase(it);
      return std::nullopt;
    }
    return it->second;
  }

 private:
  Mutex mu_;  // leaf lock
  std::unordered_map<pid_t, Entry> by_tid_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
