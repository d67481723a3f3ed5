// SPDX-License-Identifier: Apache-2.0
#pragma once

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
      std::lock_guard lock(mu_);
      ++pending_[k];
    }
    return Guard(this, std::move(k));
  }

  // Waits while (dir, name) is being created, at most `limit`. True if it
  // was pending at the call (the caller should look again).
  bool wait_while_pending(uint64_t dir, std::string_view name, std::chrono::milliseconds limit) {
    std::string k = key(dir, name);
    std::unique_lock lock(mu_);
    if (pending_.find(k) == pending_.end()) return false;
    cv_.wait_for(lock, limit, [&] { return pending_.find(k) == pending_.end(); });
    return true;
  }

  bool pending(uint64_t dir, std::string_view name) const {
    std::lock_guard lock(mu_);
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
      std::lock_guard lock(mu_);
      auto it = pending_.find(k);
      if (it != pending_.end() && --it->second == 0) pending_.erase(it);
    }
    cv_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, int> pending_;  // GUARDED_BY(mu_): creates in flight per name
};

}  // namespace dsdfs::fs
