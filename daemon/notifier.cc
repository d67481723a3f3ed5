// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/notifier.h"

#include <linux/fuse.h>
#include <sys/uio.h>

#include <cerrno>

#include "common/log.h"
#include "common/noexcept_boundary.h"

namespace dsdfs::fs {

namespace {

// FUSE_NOTIFY_INC_EPOCH (Linux 6.16, FUSE protocol 7.44): no payload. The
// kernel headers of the build machine may be older than the kernel we run on.
constexpr int32_t kNotifyIncEpoch = 8;
constexpr unsigned kIncEpochMinor = 44;

}  // namespace

Notifier::Notifier() : thread_([this] { run_at_boundary("notifier", [this] { run(); }); }) {}

Notifier::~Notifier() { stop(); }

void Notifier::set_session(struct fuse_session* se) {
  WriterLock lock(session_mu_);
  se_ = se;
}

void Notifier::set_method(DirNotify wanted, unsigned kernel_minor) {
  DirNotify m = wanted;
  if (m == DirNotify::kAuto) m = kernel_minor >= kIncEpochMinor ? DirNotify::kEpoch : DirNotify::kEntry;
  method_.store(m);
  if (m == DirNotify::kEpoch) {
    DSDFS_INFO("directory changes of other ranks reach this kernel by FUSE_NOTIFY_INC_EPOCH (kernel FUSE 7.%u%s)",
               kernel_minor, wanted == DirNotify::kEpoch ? ", forced by --dir-notify" : "");
  } else {
    DSDFS_INFO("directory changes of other ranks reach this kernel by queued FUSE_NOTIFY_INVAL_ENTRY (kernel "
               "FUSE 7.%u%s): another rank may see an old directory name for a moment after the call returns",
               kernel_minor,
               wanted == DirNotify::kEntry ? ", forced by --dir-notify" : ", no FUSE_NOTIFY_INC_EPOCH before 7.44");
  }
}

void Notifier::stop() {
  {
    MutexLock lock(mu_);
    if (stop_) return;
    stop_ = true;
    items_.clear();
  }
  cv_.notify_all();
  {
    // Waits for inline notifications in progress (they cannot block) and for
    // the thread's (it cannot block once the connection is aborted).
    WriterLock lock(session_mu_);
    se_ = nullptr;
  }
  thread_.join();
}

int Notifier::send_inc_epoch_locked(struct fuse_session* se) {
  // A notification is a write of an out header with unique 0 and the code in
  // `error` (plus a payload, none here) to the session's /dev/fuse fd.
  struct fuse_out_header out = {};
  out.len = sizeof out;
  out.error = kNotifyIncEpoch;
  out.unique = 0;
  struct iovec iov = {&out, sizeof out};
  ssize_t n = ::writev(fuse_session_fd(se), &iov, 1);
  if (n == static_cast<ssize_t>(sizeof out)) return 0;
  return n < 0 ? -errno : -EIO;
}

void Notifier::names_changed(const std::vector<std::pair<uint64_t, std::string>>& names) {
  if (method_.load() == DirNotify::kEpoch) {
    int rc;
    {
      ReaderLock lock(session_mu_);
      if (!se_) return;
      rc = send_inc_epoch_locked(se_);
    }
    if (rc == 0) return;
    if (rc != -EINVAL && rc != -ENOSYS) {
      // ENODEV/ENOTCONN: the connection is gone, nothing is cached any more.
      DSDFS_DEBUG("FUSE_NOTIFY_INC_EPOCH failed: %d", rc);
      return;
    }
    // The kernel said 7.44 but does not know the code: fall back for good.
    if (method_.exchange(DirNotify::kEntry) == DirNotify::kEpoch) {
      DSDFS_WARN("this kernel refuses FUSE_NOTIFY_INC_EPOCH (%d); using queued FUSE_NOTIFY_INVAL_ENTRY: another "
                 "rank may see an old directory name for a moment after the call returns",
                 rc);
    }
  }
  for (const auto& [parent, name] : names) {
    if (parent != 0) push({parent, name, nullptr}, {});
  }
}

void Notifier::dir_attrs_changed(uint64_t ino) {
  if (ino == 0) return;
  ReaderLock lock(session_mu_);
  if (!se_) return;
  // A negative offset: attributes only. The kernel then takes no inode lock
  // and no page lock (fuse_reverse_inval_inode), so this cannot block.
  int rc = fuse_lowlevel_notify_inval_inode(se_, ino, -1, 0);
  if (rc != 0 && rc != -ENOENT) DSDFS_DEBUG("kernel notification failed: %d", rc);
}

void Notifier::inode(uint64_t ino, std::chrono::milliseconds wait) {
  if (ino == 0) return;
  push({ino, {}, nullptr}, wait);
}

void Notifier::push(Item item, std::chrono::milliseconds wait) {
  std::future<void> done;
  if (wait.count() > 0) {
    item.done = std::make_shared<std::promise<void>>();
    done = item.done->get_future();
  }
  {
    MutexLock lock(mu_);
    if (stop_) return;
    items_.push_back(std::move(item));
  }
  cv_.notify_one();
  if (done.valid()) done.wait_for(wait);
}

void Notifier::run() {
  while (true) {
    Item item;
    {
      UniqueMutexLock lock(mu_);
      cv_.wait(lock, [this] {
        mu_.assert_held();
        return stop_ || !items_.empty();
      });
      if (stop_) return;
      item = std::move(items_.front());
      items_.pop_front();
    }
    int rc = 0;
    {
      ReaderLock lock(session_mu_);
      if (se_) {
        // Either can wait in the kernel: the entry for the parent directory's
        // lock, the inode for page locks (see the class comment).
        rc = item.name.empty()
                 ? fuse_lowlevel_notify_inval_inode(se_, item.parent, 0, 0)
                 : fuse_lowlevel_notify_inval_entry(se_, item.parent, item.name.c_str(), item.name.size());
      }
    }
    // ENOENT: the kernel did not know it any more, which is what we wanted.
    if (rc != 0 && rc != -ENOENT) DSDFS_DEBUG("kernel notification failed: %d", rc);
    if (item.done) item.done->set_value();
  }
}

}  // namespace dsdfs::fs
