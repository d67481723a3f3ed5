// SPDX-License-Identifier: Apache-2.0
// What the owner said about another rank's file at the lookup a calling
// thread has just had answered, so that the request the kernel sends next in
// the same system call takes it instead of asking the owner again.
//
// A path walk looks every remote name up (zero entry timeout) and gets the
// owner's attributes with it; the kernel then asks for them once more (zero
// attribute timeout: a GETATTR for stat(2), or for the permission check of a
// root daemon's default_permissions) and opens the file (an OPEN, which asks
// the owner what the name holds now). They come microseconds after the
// lookup, from the same thread, within one system call, so the lookup's
// answer is as fresh as a second one: the call may as well have happened at
// the lookup. A request of another thread, for another inode, or later than
// kWindow asks the owner as before; the thread's next lookup (every later
// call that names a path starts with one) replaces its entry. The window
// bounds the case of a request that follows a lookup of an earlier system
// call without a lookup of its own (a reopen through /proc/self/fd of an
// O_PATH descriptor): it would see the file as it was at most kWindow before.
//
// The same holds for the kernel's second lookup of a name in one path walk.
// A remote inode shows one version of its file (Inode), so once the file has
// changed, the kernel's revalidation of its cached dentry (a LOOKUP) gets a
// new inode back; the kernel then drops the dentry and at once looks the name
// up afresh (another LOOKUP, same thread, same system call). When a lookup's
// answer superseded an inode of the same file that the kernel still holds,
// a LOOKUP of that name that is the thread's very next request, within
// kRelookupWindow, takes the answer (relookup()), once: open + append +
// close of another rank's file costs one lookup RPC, not two. Any other
// request of the thread ends that chance (other_request(), find()), so a
// later system call (a stat, an open, an unlink: each sends a request after
// its lookup) asks the owner again. What is left is a system call that
// sends nothing after its lookup (access(F_OK), an O_PATH open) followed
// within kRelookupWindow by a lookup of the same name in the same thread:
// that one sees the file as it was at most kRelookupWindow before, the
// bound kWindow sets for a reopen above.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"
#include "daemon/inode_table.h"

namespace dsdfs::fs {

class RecentLookups {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kWindow = std::chrono::microseconds(1000);
  // The kernel's fresh lookup follows its failed revalidation within one
  // path walk: microseconds, unless the thread is preempted in between
  // (then the lookup asks the owner, as before).
  static constexpr auto kRelookupWindow = std::chrono::microseconds(500);
  static constexpr size_t kPruneAbove = 1024;  // entries; older ones go when more are kept

  struct Entry {
    uint64_t ino = 0;  // the kernel inode the lookup answered
    RemoteRef ref;     // its file: owner, name, version
    struct stat st {};
    Clock::time_point at{};
    // The answer superseded an inode of the same file and name (another
    // version) that the kernel holds: the thread's next request may be the
    // kernel's fresh LOOKUP after a failed revalidation.
    bool superseded = false;
  };

  void note(pid_t tid, Entry e) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (by_tid_.size() > kPruneAbove) {
      const auto old = e.at - kWindow;
      for (auto it = by_tid_.begin(); it != by_tid_.end();) {
        if (it->second.at < old) {
          unmark(it->second);
          it = by_tid_.erase(it);
        } else {
          ++it;
        }
      }
    }
    Entry& slot = by_tid_[tid];
    unmark(slot);
    slot = std::move(e);
    if (slot.superseded) marked_.fetch_add(1, std::memory_order_relaxed);
  }

  // The entry thread `tid` noted for kernel inode `ino` within kWindow
  // before `now`; nothing otherwise.
  std::optional<Entry> find(pid_t tid, uint64_t ino, Clock::time_point now = Clock::now()) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    auto it = by_tid_.find(tid);
    if (it == by_tid_.end() || it->second.ino != ino) return std::nullopt;
    unmark(it->second);  // this call went on past its lookups
    if (now - it->second.at > kWindow || now < it->second.at) {
      by_tid_.erase(it);
      return std::nullopt;
    }
    return it->second;
  }

  // For thread `tid`'s LOOKUP of (dir, name): the entry of the thread's
  // previous request, a lookup of that name within kRelookupWindow before
  // `now` whose answer superseded an older inode of the file (see above);
  // once.
  std::optional<Entry> relookup(pid_t tid, uint64_t dir, std::string_view name, Clock::time_point now = Clock::now())
      EXCLUDES(mu_) {
    if (marked_.load(std::memory_order_relaxed) == 0) return std::nullopt;
    MutexLock lock(mu_);
    auto it = by_tid_.find(tid);
    if (it == by_tid_.end() || !it->second.superseded) return std::nullopt;
    unmark(it->second);
    if (it->second.ref.dir != dir || it->second.ref.name != name) return std::nullopt;
    if (now - it->second.at > kRelookupWindow || now < it->second.at) return std::nullopt;
    return it->second;
  }

  // Thread `tid` sent a request other than a LOOKUP: its system call went on
  // (or a new one began), so its next LOOKUP is not a revalidation's retry.
  void other_request(pid_t tid) EXCLUDES(mu_) {
    if (marked_.load(std::memory_order_relaxed) == 0) return;  // the common case: no lock
    MutexLock lock(mu_);
    if (auto it = by_tid_.find(tid); it != by_tid_.end()) unmark(it->second);
  }

 private:
  void unmark(Entry& e) REQUIRES(mu_) {
    if (!e.superseded) return;
    e.superseded = false;
    marked_.fetch_sub(1, std::memory_order_relaxed);
  }

  Mutex mu_;  // leaf lock
  std::unordered_map<pid_t, Entry> by_tid_ GUARDED_BY(mu_);
  std::atomic<int> marked_{0};  // entries with superseded set
};

}  // namespace dsdfs::fs
