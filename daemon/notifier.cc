// SPDX-License-Identifier: Apache-2.0
#include "daemon/notifier.h"

#include "common/log.h"
#include "common/noexcept_boundary.h"

namespace dsdfs::fs {

Notifier::Notifier() : thread_([this] { run_at_boundary("notifier", [this] { run(); }); }) {}

Notifier::~Notifier() { stop(); }

void Notifier::stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Notifier::entry(uint64_t parent, const std::string& name) {
  if (parent == 0) return;
  std::lock_guard lock(mu_);
  items_.push_back({parent, name});
  cv_.notify_one();
}

void Notifier::inode(uint64_t ino) {
  if (ino == 0) return;
  std::lock_guard lock(mu_);
  items_.push_back({ino, {}});
  cv_.notify_one();
}

void Notifier::run() {
  while (true) {
    Item item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !items_.empty(); });
      if (stop_) return;
      item = std::move(items_.front());
      items_.pop_front();
    }
    struct fuse_session* se = se_.load();
    if (!se) continue;
    int rc;
    if (item.name.empty()) {
      rc = fuse_lowlevel_notify_inval_inode(se, item.parent, 0, 0);
    } else {
      rc = fuse_lowlevel_notify_inval_entry(se, item.parent, item.name.c_str(), item.name.size());
    }
    // ENOENT: the kernel did not know it any more, which is what we wanted.
    if (rc != 0 && rc != -ENOENT) DSDFS_DEBUG("kernel notification failed: %d", rc);
  }
}

}  // namespace dsdfs::fs
