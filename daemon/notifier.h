// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
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
  // Queue a notification. With wait > 0, also wait up to that long for the
  // kernel to take it: long enough in the normal case for "visible everywhere
  // when the call returns", short enough that a notification blocked on a
  // directory lock cannot stall the cluster.
  void entry(uint64_t parent, const std::string& name, std::chrono::milliseconds wait = {});
  void inode(uint64_t ino, std::chrono::milliseconds wait = {});

 private:
  struct Item {
    uint64_t parent;
    std::string name;  // empty: inode notification for `parent`
    std::shared_ptr<std::promise<void>> done;
  };
  void push(Item item, std::chrono::milliseconds wait);
  void run();
  std::atomic<struct fuse_session*> se_{nullptr};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;  // GUARDED_BY(mu_)
  bool stop_ = false;       // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace dsdfs::fs
