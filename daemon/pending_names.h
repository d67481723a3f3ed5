// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/mutex.h"

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace dsdfs::fs {

// The names this rank has claimed at their locator shard and is creating in
// its store right now. Between the claim and the create, the shard already
// names this rank as the owner, so another rank that opens the name asks us
// for a file that is not there yet: its stat waits here for the create to
// finish instead of answering ENOENT (which would be wrong: the name exists).
// Thread-safe; a leaf lock.
class PendingNames {
 public:
  // Marks (dir, name) as being created until the guard is released or dropped.
  class Guard {
   public:
    Guard() = default;
    Guard(PendingNames* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    Guard(Guard&& o) noexcept : owner_(o.owner_), key_(std::move(o.key_)) { o.owner_ = nullptr; }
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        release();
        owner_ = o.owner_;
        key_ = std::move(o.key_);
        o.owner_ = nullptr;
      }
      return *this;
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { release(); }
    void release() {
      if (owner_) owner_->end(key_);
      owner_ = nullptr;
    }

   private:
    PendingNames* owner_ = nullptr;
    std::string key_;
  };

  Guard hold(uint64_t dir, std::string_view name) {
    std::string k = key(dir, name);
    {
      MutexLock lock(mu_);
      ++pending_[k];
    }
    return Guard(this, std::move(k));
  }

  // Waits while (dir, name) is being created, at most `limit`. True if it
  // was pending at the call (the caller should look again).
  bool wait_while_pending(uint64_t dir, std::string_view name, std::chrono::milliseconds limit) {
    std::string k = key(dir, name);
    UniqueMutexLock lock(mu_);
    if (pending_.find(k) == pending_.end()) return false;
    cv_.wait_for(lock, limit, [&] {
      mu_.assert_held();
      return pending_.find(k) == pending_.end();
    });
    return true;
  }

  // Looks a name up for another rank that was sent here by the name's shard:
  // look() is 0 or an errno (an fstatat in the store). ENOENT while the name
  // is being created here waits for the create (at most `limit`); either way
  // it looks once more, because the create may have ended between look() and
  // this check: the file then exists although nothing is pending any more.
  // (Answering ENOENT there made the asking rank replace this rank's claim
  // and create a second file of the same name.)
  template <typename Look>
  int look_past_create(uint64_t dir, std::string_view name, std::chrono::milliseconds limit, Look look) {
    int err = look();
    if (err != ENOENT) return err;
    wait_while_pending(dir, name, limit);
    return look();
  }

  bool pending(uint64_t dir, std::string_view name) const {
    MutexLock lock(mu_);
    return pending_.find(key(dir, name)) != pending_.end();
  }

 private:
  static std::string key(uint64_t dir, std::string_view name) {
    std::string k(reinterpret_cast<const char*>(&dir), sizeof dir);
    k.append(name);
    return k;
  }
  void end(const std::string& k) {
    {
      MutexLock lock(mu_);
      auto it = pending_.find(k);
      if (it != pending_.end() && --it->second == 0) pending_.erase(it);
    }
    cv_.notify_all();
  }

  mutable Mutex mu_;
  std::condition_variable_any cv_;
  std::unordered_map<std::string, int> pending_ GUARDED_BY(mu_);  // creates in flight per name
};

// Serialises, per name on this rank, a change that makes this rank a name's
// owner (a local rename onto it, an O_TRUNC take-over: the store change and
// the claim at the shard) against another rank's request to drop this rank's
// copy of that name (kFileDrop): the drop then asks the shard whether the name
// is still another rank's, and cannot remove a file that has just become ours
// again. Striped: names that share a stripe wait for each other briefly. No
// RPC that can wait for another rank's NameLocks is made while one is held
// (claims are answered in memory by the shard). Leaf locks. Outside the
// compile-time lock analysis (common/mutex.h): the stripe is chosen at run
// time, which it cannot follow.
using NameLock = std::unique_lock<std::mutex>;
class NameLocks {
 public:
  NameLock lock(uint64_t dir, std::string_view name) {
    uint64_t h = 0xcbf29ce484222325ULL ^ dir;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ULL;
    return NameLock(stripes_[h % kStripes]);
  }

 private:
  static constexpr size_t kStripes = 64;
  std::mutex stripes_[kStripes];
};

}  // namespace dsdfs::fs
