// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <string>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

// Where a file owned by another rank lives: its owner, its name, and the
// version (of the owner's size and mtime) this inode shows.
struct RemoteRef {
  int owner = -1;
  uint64_t dir = 0;       // cluster-wide id of the parent directory
  std::string name;
  uint64_t gino = 0;      // global inode number (the owner's)
  uint64_t version = 0;
};

// One file system object the kernel knows about (it holds a lookup count on it).
// Immutable after creation except where noted. Shared by FUSE threads through
// shared_ptr; the table's map is the only long-lived reference.
//
// A local inode (a replicated directory or a file this rank owns) holds an
// O_PATH handle on the store. A remote inode names a file of another rank at
// one version: when the owner's version changes, a lookup yields a new
// inode, so the kernel never mixes the sizes and pages of two versions
// (with the writeback cache the kernel ignores sizes the server reports for
// an inode it already has).
struct Inode {
  Inode(uint64_t id, std::shared_ptr<UniqueFd> fd, dev_t dev, ino_t ino, mode_t type, uint64_t dir_id)
      : id(id), src_dev(dev), src_ino(ino), type(type), dir_id(dir_id), fd_(std::move(fd)) {}
  Inode(uint64_t id, UniqueFd fd, dev_t dev, ino_t ino, mode_t type, uint64_t dir_id)
      : Inode(id, std::make_shared<UniqueFd>(std::move(fd)), dev, ino, type, dir_id) {}
  Inode(uint64_t id, RemoteRef ref, mode_t type)
      : id(id), src_dev(0), src_ino(0), type(type), dir_id(0), remote(true), ref(std::move(ref)) {}

  // The O_PATH handle of a local directory (never evicted).
  // Unlocked: a directory's handle is set once and never replaced.
  int dir_fd() const NO_THREAD_SAFETY_ANALYSIS { return fd_->get(); }
  // The O_PATH handle of a local object, or nullptr if it was evicted to stay
  // within the descriptor budget (files only; see Filesystem::object_fd).
  std::shared_ptr<UniqueFd> handle() const {
    MutexLock lock(mu_);
    return fd_;
  }
  void set_handle(std::shared_ptr<UniqueFd> fd) {
    MutexLock lock(mu_);
    fd_ = std::move(fd);
  }
  std::shared_ptr<UniqueFd> drop_handle() {
    MutexLock lock(mu_);
    return std::move(fd_);
  }
  // Where a local file is in the store, to reopen an evicted handle.
  void set_place(uint64_t dir, std::string name) {
    MutexLock lock(mu_);
    place_dir_ = dir;
    place_name_ = std::move(name);
  }
  std::pair<uint64_t, std::string> place() const {
    MutexLock lock(mu_);
    return {place_dir_, place_name_};
  }
  // Remote: the attributes of the version this inode shows, as last seen.
  void set_remote_attr(const struct stat& st) {
    MutexLock lock(mu_);
    remote_attr_ = st;
  }
  struct stat remote_attr() const {
    MutexLock lock(mu_);
    return remote_attr_;
  }
  // Local: cut off from its store number (released), with st (the store's
  // stat of the file, untranslated) kept as what it was, for a stat of it
  // after (fstat of a handle whose inode this is, without its handle).
  void release(const struct stat& st) {
    {
      MutexLock lock(mu_);
      remote_attr_ = st;
    }
    released.store(true);
  }
  // release(st), unless an open's lookup holds the file (hold_for_open).
  bool release_unless_held(const struct stat& st) {
    MutexLock lock(mu_);
    if (std::chrono::steady_clock::now() < held_until_) return false;
    remote_attr_ = st;
    released.store(true);
    return true;
  }
  // The kernel's retry of an open that lost a race (LostOpens) looked this
  // file up: it is held for `d` (not let go when unlinked, so that the open
  // can take effect on it). False if it was let go already.
  bool hold_for_open(std::chrono::steady_clock::duration d) {
    MutexLock lock(mu_);
    if (released.load()) return false;
    held_until_ = std::max(held_until_, std::chrono::steady_clock::now() + d);
    return true;
  }

  const uint64_t id;     // FUSE node id; never reused, so no generation is needed
  const dev_t src_dev;   // local: identity in the store
  const ino_t src_ino;
  const mode_t type;     // S_IFMT bits
  const uint64_t dir_id; // local directories: cluster-wide directory id
  const bool remote = false;
  const RemoteRef ref;   // remote only
  // Set when this rank's copy was dropped because another rank took the file
  // over (O_TRUNC elsewhere): open handles fail instead of serving old bytes.
  std::atomic<bool> gone{false};
  // Set while this rank offers the file to a rank that opened it with
  // O_TRUNC (Filesystem::on_file_truncate): an open here either sees it and
  // follows the name, or is counted in open_files first and keeps the file
  // here (both sides write, then read: sequentially consistent atomics).
  std::atomic<bool> giving{false};
  // Open files of this inode: its handle is never evicted while there are
  // any (an unlinked open file could not be reopened by name).
  std::atomic<int> open_files{0};
  // Set when this daemon let go of the handle of a file without a name left
  // (Filesystem::let_go_if_unlinked): its store inode number may belong to
  // another file from then on, so it is never reopened by name and never
  // matched to a store identity again.
  std::atomic<bool> released{false};
  // Set when another rank's request took this file's last name here (an
  // unlink, a rename over it, a drop after its name moved on). The kernel
  // learns of it by a notification that comes later, so until then a path
  // walk can still reach this inode by its old name: an open of it opens
  // what the name holds now (Filesystem::open_moved; close-to-open), not
  // the file that had it. A stat of it without a handle answers what it was.
  std::atomic<bool> unlinked_elsewhere{false};
  // Of those, opened for writing: while there are any, this kernel may hold
  // dirty pages of the file (writeback cache) that the store does not have
  // yet, so another rank's stat first has them written back (on_file_stat).
  std::atomic<int> open_writers{0};
  // Remote: the end of the furthest write made through this kernel inode.
  // The kernel extends the inode's size to it after the write, beyond the
  // size of the version the inode shows (remote writes set no size: the
  // owner places them), and then reads pages up to there (remote_read).
  std::atomic<uint64_t> kernel_extent{0};
  uint64_t nlookup = 0;  // GUARDED_BY(InodeTable::mu_)

 private:
  mutable Mutex mu_;  // leaf lock
  std::shared_ptr<UniqueFd> fd_ GUARDED_BY(mu_);
  uint64_t place_dir_ GUARDED_BY(mu_) = 0;
  std::string place_name_ GUARDED_BY(mu_);
  struct stat remote_attr_ GUARDED_BY(mu_) {};
  std::chrono::steady_clock::time_point held_until_ GUARDED_BY(mu_);  // hold_for_open
};

// Maps FUSE node ids to inodes, and store identities (dev, ino) to node ids.
// Thread-safe: one mutex guards both maps and every nlookup, so a lookup that
// finds an inode and a forget that drops its last reference cannot interleave
// (the forget/lookup race in passthrough_hp's history).
class InodeTable {
 public:
  InodeTable();

  // Makes `root_fd` (an O_PATH handle on the store's files/ directory) node 1.
  void set_root(UniqueFd root_fd, const struct stat& st);

  // Returns the inode with this node id, or nullptr.
  std::shared_ptr<Inode> get(uint64_t id) const;

  // Counts one lookup of the object `st` describes, opened as `fd`. If the
  // object is already known, `fd` is closed and the existing inode returned.
  // `shared`: a directory's handle held elsewhere (DirIndex) that a new
  // inode of it takes instead of `fd`.
  std::shared_ptr<Inode> lookup(UniqueFd fd, const struct stat& st, uint64_t dir_id = 0,
                                std::shared_ptr<UniqueFd> shared = nullptr);
  // Counts one lookup of a remote file at ref.version, whose attributes were `st`.
  std::shared_ptr<Inode> lookup_remote(const RemoteRef& ref, mode_t type, const struct stat& st);
  // The node id the kernel knows for a store object, or 0.
  uint64_t find_local(dev_t dev, ino_t ino) const;

  // An owner-side handler that changes a store file the kernel has no inode
  // for changes it in the store directly (Filesystem::open_in_mount): there
  // is no page or size in the kernel to keep right, and reaching the file
  // through the mount would take the directory's lock, which a local rename
  // or link may hold while it waits for a file's lock that a request of the
  // same kernel holds, and that request may be what the handler serves.
  // While such a change is in flight, a lookup that makes a kernel inode for
  // the file waits for it (wait_direct), so that the kernel's first size is
  // the store's after the change. Empty (false) when the kernel knows the file.
  class DirectHold {
   public:
    DirectHold() = default;
    DirectHold(InodeTable& table, dev_t dev, ino_t ino);
    DirectHold(DirectHold&& o) noexcept : table_(std::exchange(o.table_, nullptr)), key_(o.key_) {}
    DirectHold& operator=(DirectHold&& o) noexcept {
      if (this != &o) {
        release();
        table_ = std::exchange(o.table_, nullptr);
        key_ = o.key_;
      }
      return *this;
    }
    DirectHold(const DirectHold&) = delete;
    DirectHold& operator=(const DirectHold&) = delete;
    ~DirectHold() { release(); }
    explicit operator bool() const { return table_ != nullptr; }

   private:
    void release();
    InodeTable* table_ = nullptr;
    std::pair<dev_t, ino_t> key_{};
  };
  // Waits until no direct change of the store object is in flight; true if
  // one was (the caller's attributes of it are then out of date).
  bool wait_direct(dev_t dev, ino_t ino);
  // Every inode (local or remote) that shows global inode gino... remote ones only.
  std::vector<std::shared_ptr<Inode>> find_remote(uint64_t gino) const;

  // Forgets that `inode` is the store object (src_dev, src_ino), so that a
  // new file that reuses the number gets an inode of its own.
  void release_source(const Inode& inode);
  // Drops n lookups; erases the inode when none are left.
  void forget(uint64_t id, uint64_t n);

  size_t size() const;

  // Descriptor budget for the O_PATH handles of local files and directories:
  // past it, the oldest file handles are closed (and reopened on demand by
  // name). Directory handles are never closed: pinned() says how many are
  // held, and the files get what they leave, but never fewer than
  // kMinFileHandles.
  static constexpr size_t kMinFileHandles = 64;
  void set_handle_budget(size_t budget, std::function<size_t()> pinned = {}) {
    budget_ = budget;
    pinned_ = std::move(pinned);
  }
  // Counts a (re)opened file handle; evicts the oldest beyond the budget.
  void note_file_handle(const std::shared_ptr<Inode>& inode);

 private:
  size_t budget_ = SIZE_MAX;
  std::function<size_t()> pinned_;
  Mutex evict_mu_;                       // leaf lock
  std::deque<std::weak_ptr<Inode>> open_order_ GUARDED_BY(evict_mu_);
  mutable Mutex mu_;
  uint64_t next_id_ GUARDED_BY(mu_) = 2;  // 1 is FUSE_ROOT_ID
  std::unordered_map<uint64_t, std::shared_ptr<Inode>> by_id_ GUARDED_BY(mu_);
  std::map<std::pair<dev_t, ino_t>, uint64_t> by_src_ GUARDED_BY(mu_);
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> by_remote_ GUARDED_BY(mu_);
  std::map<std::pair<dev_t, ino_t>, int> direct_ GUARDED_BY(mu_);  // DirectHolds in flight
  std::condition_variable_any direct_done_;                          // (with mu_)
};

}  // namespace dsdfs::fs
