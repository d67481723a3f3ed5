// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "daemon/options.h"

namespace dsdfs::fs {

// Tells this rank's kernel to drop cached names and attributes that a change
// made elsewhere has made stale. Thread-safe.
//
// Nothing here waits for the kernel to take a notification that can block. A
// FUSE request in flight on this mount holds the inode locks of its
// directories while it waits for the RPCs it caused (a directory rename waits
// for the coordinator, which waits for every rank to apply it), and
// FUSE_NOTIFY_INVAL_ENTRY takes the parent directory's lock: a rank that waits
// for it while answering that RPC waits for itself. So:
// - names (names_changed): FUSE_NOTIFY_INC_EPOCH where the kernel has it: it
//   bumps the connection's epoch, so that every dentry cached before is looked
//   up again on its next use; it takes no lock and cannot block, and is sent
//   inline. Without it, FUSE_NOTIFY_INVAL_ENTRY per name, queued for the
//   notifier thread and never waited for.
// - directory attributes (dir_attrs_changed): FUSE_NOTIFY_INVAL_INODE without
//   a page range takes no inode or page lock; sent inline.
// - file attributes and pages (inode()): FUSE_NOTIFY_INVAL_INODE with the
//   page range, which waits for page locks; queued.
// The notifier thread can still block in the kernel (on older kernels, on a
// directory lock): stop() must only be called once the FUSE connection is
// aborted (FuseMount::abort), which ends every request holding such a lock.
class Notifier {
 public:
  Notifier();
  ~Notifier();
  // REQUIRES: before any notification that should reach the kernel.
  void set_session(struct fuse_session* se);
  // At INIT: the kernel's FUSE protocol minor chooses the method for
  // names_changed() (`wanted` kAuto) or checks the one forced; logs the choice.
  void set_method(DirNotify wanted, unsigned kernel_minor);
  DirNotify method() const { return method_.load(); }
  // Stops the thread and drops what is queued; later notifications are
  // dropped. After it returns the session is no longer used, so it may be
  // destroyed. REQUIRES: the FUSE connection is aborted or has no request in
  // flight (the thread may be inside the kernel until then).
  void stop();

  // Names under directories whose kernel node ids are given changed (renamed,
  // removed). Never blocks.
  void names_changed(const std::vector<std::pair<uint64_t, std::string>>& names);
  // The attributes of `ino` (a directory, or a file whose link count or
  // mode changed; a kernel node id, 0: unknown to the kernel, nothing to do)
  // changed. Never blocks.
  void dir_attrs_changed(uint64_t ino);
  // Queues dropping the attributes and cached pages of `ino`. With wait > 0,
  // also waits up to that long for the kernel to take it.
  void inode(uint64_t ino, std::chrono::milliseconds wait = {});

 private:
  struct Item {
    uint64_t parent;
    std::string name;  // empty: inode notification for `parent`
    std::shared_ptr<std::promise<void>> done;
  };
  void push(Item item, std::chrono::milliseconds wait);
  void run();
  // FUSE_NOTIFY_INC_EPOCH: 0 or -errno. REQUIRES: session_mu_ held (shared).
  int send_inc_epoch_locked(struct fuse_session* se);

  // Held shared while a notification is being sent inline, exclusively by
  // stop() to retire the session: so the session is never used after stop().
  SharedMutex session_mu_;
  struct fuse_session* se_ GUARDED_BY(session_mu_) = nullptr;
  std::atomic<DirNotify> method_{DirNotify::kEntry};
  Mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Item> items_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace dsdfs::fs
