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

void Notifier::push(Item item, std::chrono::milliseconds wait) {
  std::future<void> done;
  if (wait.count() > 0) {
    item.done = std::make_shared<std::promise<void>>();
    done = item.done->get_future();
  }
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    items_.push_back(std::move(item));
  }
  cv_.notify_one();
  if (done.valid()) done.wait_for(wait);
}

void Notifier::entry(uint64_t parent, const std::string& name, std::chrono::milliseconds wait) {
  if (parent == 0) return;
  push({parent, name, nullptr}, wait);
}

void Notifier::inode(uint64_t ino, std::chrono::milliseconds wait) {
  if (ino == 0) return;
  push({ino, {}, nullptr}, wait);
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
    if (item.done) item.done->set_value();
  }
}

}  // namespace dsdfs::fs
