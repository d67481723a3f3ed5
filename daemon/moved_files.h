// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/mutex.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace dsdfs::fs {

// Files this rank gave away to another rank by an ownership move (O_TRUNC
// elsewhere), by global inode number: where they went. A rank that still
// writes through a handle opened before the move asks the old owner, learns
// the new owner, and follows the name there, as its writes would land in the
// truncated file on a local file system. Bounded: the oldest moves are
// forgotten first (such a late writer then gets EIO). Thread-safe; leaf lock.
class MovedFiles {
 public:
  static constexpr size_t kMax = 4096;

  void put(uint64_t gino, int new_owner) {
    MutexLock lock(mu_);
    if (to_.insert_or_assign(gino, new_owner).second) order_.push_back(gino);
    while (order_.size() > kMax) {
      to_.erase(order_.front());
      order_.pop_front();
    }
  }
  std::optional<int> get(uint64_t gino) const {
    MutexLock lock(mu_);
    auto it = to_.find(gino);
    if (it == to_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable Mutex mu_;
  std::unordered_map<uint64_t, int> to_ GUARDED_BY(mu_);
  std::deque<uint64_t> order_ GUARDED_BY(mu_);  // oldest first
};

}  // namespace dsdfs::fs
