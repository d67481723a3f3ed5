// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

// The owner's open files for writes forwarded by other ranks, one per (file,
// append or not), kept between writes so that a stream of remote appends
// costs one write on the owner's mount instead of an open, a write and a
// close each. Holding one keeps the store file (and so its inode number)
// alive, which is what makes (gino -> fd) safe to reuse; the caller still
// checks before each use that the name refers to that gino.
//
// These are fds on the daemon's own mount, so they must not outlive their
// use: a background thread closes those unused for kIdle (so that an idle
// daemon holds none, and an unmount is not kept busy for long), and
// close_all() closes them while the FUSE loop still serves the FLUSH and
// RELEASE that a close sends, and stops caching (a stop calls it before
// ending the loop). Also closed: beyond kMax, and drop() of a file that is
// truncated, unlinked, replaced or given away. Closing happens outside the
// lock. Thread-safe.
class WriteFds {
 public:
  static constexpr size_t kMax = 64;
  static constexpr std::chrono::seconds kIdle{2};
  using Fd = std::shared_ptr<UniqueFd>;

  explicit WriteFds(std::chrono::milliseconds idle = kIdle) : idle_(idle), sweeper_([this] { sweeper_main(); }) {}
  ~WriteFds() {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    sweeper_.join();
  }
  WriteFds(const WriteFds&) = delete;
  WriteFds& operator=(const WriteFds&) = delete;

  // The fd of gino in that mode, if it is of the file with that identity
  // (file_identity; 0 where the writer or the file system knows none).
  Fd get(uint64_t gino, bool append, uint16_t identity = 0) {
    MutexLock lock(mu_);
    auto it = fds_.find({gino, append});
    if (it == fds_.end()) return nullptr;
    if (identity != 0 && it->second.identity != 0 && identity != it->second.identity) return nullptr;
    it->second.last_used = Clock::now();
    return it->second.fd;
  }

  // Either mode's fd of gino (without touching its last use), or null.
  Fd get_any(uint64_t gino) {
    MutexLock lock(mu_);
    for (bool append : {true, false}) {
      if (auto it = fds_.find({gino, append}); it != fds_.end()) return it->second.fd;
    }
    return nullptr;
  }

  void put(uint64_t gino, bool append, Fd fd, uint16_t identity = 0) {
    std::vector<Fd> closing;
    MutexLock lock(mu_);
    if (!caching_) return;
    auto& e = fds_[{gino, append}];
    if (e.fd) closing.push_back(std::move(e.fd));
    e = Entry{std::move(fd), Clock::now(), identity};
    while (fds_.size() > kMax) {
      auto oldest = fds_.begin();
      for (auto i = fds_.begin(); i != fds_.end(); ++i) {
        if (i->second.last_used < oldest->second.last_used) oldest = i;
      }
      closing.push_back(std::move(oldest->second.fd));
      fds_.erase(oldest);
    }
    cv_.notify_all();  // the sweeper has something to watch
  }

  // Forgets gino's fds at once (no new user gets them); they are closed
  // later, on the sweeper thread. drop() is called while a FUSE request on
  // this very file is in flight (a truncate holds the kernel's write barrier
  // for the inode): closing there would wait for the inode's writeback,
  // which waits for that request: a deadlock.
  void drop(uint64_t gino) {
    MutexLock lock(mu_);
    for (bool append : {false, true}) {
      if (auto it = fds_.find({gino, append}); it != fds_.end()) {
        to_close_.push_back(std::move(it->second.fd));
        fds_.erase(it);
      }
    }
    cv_.notify_all();
  }

  // Stops caching and closes every fd, waiting (up to `wait`) for writes
  // still using one to finish, so that the closes happen now.
  void close_all(std::chrono::milliseconds wait = std::chrono::seconds(2)) {
    std::map<std::pair<uint64_t, bool>, Entry> all;
    std::vector<Fd> dropped;
    {
      MutexLock lock(mu_);
      caching_ = false;
      all.swap(fds_);
      dropped.swap(to_close_);
    }
    dropped.clear();
    const auto deadline = Clock::now() + wait;
    for (auto& [key, e] : all) {
      while (e.fd.use_count() > 1 && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }

  size_t size() {
    MutexLock lock(mu_);
    return fds_.size();
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Fd fd;
    Clock::time_point last_used;
    uint16_t identity = 0;  // of the file fd has open
  };

  void sweeper_main() {
    UniqueMutexLock lock(mu_);
    while (!stopping_) {
      if (!to_close_.empty()) {
        std::vector<Fd> dropped;
        dropped.swap(to_close_);
        lock.unlock();
        dropped.clear();  // the closes, outside the lock (each may wait for writeback)
        lock.lock();
        continue;
      }
      if (fds_.empty()) {
        cv_.wait(lock);  // nothing cached: sleep until something is (no timer when idle)
        continue;
      }
      cv_.wait_for(lock, idle_ / 2);
      if (!to_close_.empty()) continue;
      std::vector<Fd> closing;
      const auto now = Clock::now();
      for (auto it = fds_.begin(); it != fds_.end();) {
        if (now - it->second.last_used >= idle_) {
          closing.push_back(std::move(it->second.fd));
          it = fds_.erase(it);
        } else {
          ++it;
        }
      }
      lock.unlock();
      closing.clear();
      lock.lock();
    }
  }

  const std::chrono::milliseconds idle_;
  Mutex mu_;
  std::condition_variable_any cv_;
  std::map<std::pair<uint64_t, bool>, Entry> fds_ GUARDED_BY(mu_);
  std::vector<Fd> to_close_ GUARDED_BY(mu_);  // dropped, closed by the sweeper
  bool caching_ GUARDED_BY(mu_) = true;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread sweeper_;  // last: starts once the members above exist
};

}  // namespace dsdfs::fs
