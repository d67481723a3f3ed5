// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "common/unique_fd.h"

namespace dsdfs::fs {

// The owner's open files for writes forwarded by other ranks, one per (file,
// append or not), kept between writes so that a stream of remote appends
// costs one write on the owner's mount instead of an open, a write and a
// close each. Holding one keeps the store file (and so its inode number)
// alive, which is what makes (gino -> fd) safe to reuse; the caller still
// checks before each use that the name refers to that gino. Entries unused
// for kIdle, beyond kMax, or of a file that is truncated, unlinked or given
// away (drop()) are closed. Closing happens outside the lock. Thread-safe.
class WriteFds {
 public:
  static constexpr size_t kMax = 64;
  static constexpr std::chrono::seconds kIdle{10};
  using Fd = std::shared_ptr<UniqueFd>;

  Fd get(uint64_t gino, bool append) {
    std::vector<Fd> closing;
    std::lock_guard lock(mu_);
    sweep(&closing);
    auto it = fds_.find({gino, append});
    if (it == fds_.end()) return nullptr;
    it->second.last_used = Clock::now();
    return it->second.fd;
  }

  void put(uint64_t gino, bool append, Fd fd) {
    std::vector<Fd> closing;
    std::lock_guard lock(mu_);
    auto& e = fds_[{gino, append}];
    if (e.fd) closing.push_back(std::move(e.fd));
    e = Entry{std::move(fd), Clock::now()};
    while (fds_.size() > kMax) {
      auto oldest = fds_.begin();
      for (auto i = fds_.begin(); i != fds_.end(); ++i) {
        if (i->second.last_used < oldest->second.last_used) oldest = i;
      }
      closing.push_back(std::move(oldest->second.fd));
      fds_.erase(oldest);
    }
  }

  void drop(uint64_t gino) {
    std::vector<Fd> closing;
    std::lock_guard lock(mu_);
    for (bool append : {false, true}) {
      if (auto it = fds_.find({gino, append}); it != fds_.end()) {
        closing.push_back(std::move(it->second.fd));
        fds_.erase(it);
      }
    }
  }

  void clear() {
    std::map<std::pair<uint64_t, bool>, Entry> all;
    std::lock_guard lock(mu_);
    all.swap(fds_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Fd fd;
    Clock::time_point last_used;
  };
  void sweep(std::vector<Fd>* closing) {
    const auto now = Clock::now();
    for (auto it = fds_.begin(); it != fds_.end();) {
      if (now - it->second.last_used > kIdle) {
        closing->push_back(std::move(it->second.fd));
        it = fds_.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::mutex mu_;
  std::map<std::pair<uint64_t, bool>, Entry> fds_;  // GUARDED_BY(mu_)
};

}  // namespace dsdfs::fs
