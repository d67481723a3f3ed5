// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/mutex.h"

#include <cstdint>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <unordered_map>

namespace dsdfs::fs {

// Which owned files have handles open on this rank, and which this rank has
// offered to another rank's O_TRUNC open (Filesystem::on_file_truncate: "not
// open here, take it") until their drop arrives (the other rank took the
// name: the file goes here) or the offer is settled otherwise (the file left
// the store another way). By global inode number (the store's inode number),
// whether or not the kernel has an inode for the file
// (a create, or an open after the kernel forgot the inode, makes one only
// after the store's file is open). One lock orders the two: a file with an
// open handle is never offered (it is truncated in place instead), and an
// offered file gets no new handle (the open waits for the offer to settle,
// then follows the name), so no handle here is left on a file that moved.
// Thread-safe; a leaf lock.
class OfferedFiles {
 public:
  using Clock = std::chrono::steady_clock;

  // A handle's count on its file (released with the handle). Empty when the
  // file was offered (try_hold).
  class Hold {
   public:
    Hold() = default;
    Hold(OfferedFiles* owner, uint64_t ino) : owner_(owner), ino_(ino) {}
    Hold(Hold&& o) noexcept : owner_(o.owner_), ino_(o.ino_) { o.owner_ = nullptr; }
    Hold& operator=(Hold&& o) noexcept {
      if (this != &o) {
        release();
        owner_ = o.owner_;
        ino_ = o.ino_;
        o.owner_ = nullptr;
      }
      return *this;
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { release(); }
    explicit operator bool() const { return owner_ != nullptr; }
    void release() {
      if (owner_) owner_->unhold(ino_);
      owner_ = nullptr;
    }

   private:
    OfferedFiles* owner_ = nullptr;
    uint64_t ino_ = 0;
  };

  // Counts a handle of ino, unless ino is offered (then an empty Hold).
  Hold try_hold(uint64_t ino) {
    MutexLock lock(mu_);
    if (live(ino)) return Hold();
    ++open_[ino];
    return Hold(this, ino);
  }

  // Offers ino until settle(ino) or `until`, unless a handle of it is open
  // here (then false: it stays, to be truncated in place).
  bool offer_unless_open(uint64_t ino, Clock::time_point until) {
    MutexLock lock(mu_);
    if (open_.count(ino) != 0) return false;
    auto& e = offered_[ino];
    e = std::max(e, until);
    return true;
  }

  // The file moved (dropped here) or stays after all: opens go on.
  void settle(uint64_t ino) {
    {
      MutexLock lock(mu_);
      if (offered_.erase(ino) == 0) return;
    }
    cv_.notify_all();
  }

  // Whether a user's handle of ino is open here.
  bool held(uint64_t ino) {
    MutexLock lock(mu_);
    return open_.count(ino) != 0;
  }

  bool offered(uint64_t ino) {
    MutexLock lock(mu_);
    return live(ino);
  }

  // Waits while ino is offered (at most until the offer's deadline).
  void wait(uint64_t ino) {
    UniqueMutexLock lock(mu_);
    while (live(ino)) {
      const Clock::time_point until = offered_.at(ino);
      cv_.wait_until(lock, until);
    }
  }

 private:
  bool live(uint64_t ino) REQUIRES(mu_) {
    auto it = offered_.find(ino);
    if (it == offered_.end()) return false;
    if (Clock::now() < it->second) return true;
    offered_.erase(it);  // never settled (the other rank did not take it): it stays here
    return false;
  }
  void unhold(uint64_t ino) {
    MutexLock lock(mu_);
    auto it = open_.find(ino);
    if (it != open_.end() && --it->second == 0) open_.erase(it);
  }

  Mutex mu_;
  std::condition_variable_any cv_;
  std::unordered_map<uint64_t, Clock::time_point> offered_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, int> open_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
