// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace dsdfs::fs {

// Tells this rank's kernel to drop cached entries and attributes that a
// change made elsewhere has made stale. Asynchronous on its own thread: a
// notification can block on a directory lock that a FUSE request holds while
// it waits for the very RPC that caused the notification. Thread-safe.
class Notifier {
 public:
  Notifier();
  ~Notifier();
  // REQUIRES: before any notification that should reach the kernel.
  void set_session(struct fuse_session* se) { se_.store(se); }
  void stop();
  void entry(uint64_t parent, const std::string& name);
  void inode(uint64_t ino);

 private:
  struct Item {
    uint64_t parent;
    std::string name;  // empty: inode notification for `parent`
  };
  void run();
  std::atomic<struct fuse_session*> se_{nullptr};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;  // GUARDED_BY(mu_)
  bool stop_ = false;       // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace dsdfs::fs
