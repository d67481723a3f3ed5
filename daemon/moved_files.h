// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/mutex.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <unordered_map>

namespace dsdfs::fs {

// A bounded record of what happened to files of this rank, by global inode
// number: the newest value per file; the oldest records are forgotten first.
// Thread-safe; leaf lock.
template <typename V>
class RecentByFile {
 public:
  static constexpr size_t kMax = 4096;

  void put(uint64_t gino, V value) {
    MutexLock lock(mu_);
    if (to_.insert_or_assign(gino, std::move(value)).second) order_.push_back(gino);
    while (order_.size() > kMax) {
      to_.erase(order_.front());
      order_.pop_front();
    }
  }
  std::optional<V> get(uint64_t gino) const {
    MutexLock lock(mu_);
    auto it = to_.find(gino);
    if (it == to_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable Mutex mu_;
  std::unordered_map<uint64_t, V> to_ GUARDED_BY(mu_);
  std::deque<uint64_t> order_ GUARDED_BY(mu_);  // oldest first
};

// Files this rank gave away to another rank by an ownership move (O_TRUNC
// elsewhere): the rank they went to. A rank that still writes through a
// handle opened before the move asks the old owner, learns the new owner,
// and follows the name there, as its writes would land in the truncated file
// on a local file system. (Forgotten beyond kMax: such a late writer then
// gets EIO.)
using MovedFiles = RecentByFile<int>;

// Files of this rank renamed here: the directory and name they got last. A
// rank writing through a handle opened before the rename asks (kFileFind)
// and follows the file to its new name, also in another directory (logrotate's
// `olddir`). A record is only a hint: the caller checks that the name still
// holds the file.
using RenamedFiles = RecentByFile<std::pair<uint64_t, std::string>>;

}  // namespace dsdfs::fs
