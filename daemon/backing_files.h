// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <unordered_map>

#include "common/mutex.h"

namespace dsdfs::fs {

// The kernel passthrough state of this mount's open files (FUSE passthrough,
// Linux >= 6.9): for each kernel inode with open handles of its owned file,
// the backing id that the kernel reads and writes through, and for each
// owned file, how many writable handles do so.
//
// The kernel keeps all open files of one inode in one mode: once one passes
// through, an open of that inode without passthrough, or with another
// backing id, fails with EIO; once one is open through the page cache (a
// registration that failed), a passthrough open fails the same way. So every
// open of a kernel inode takes the backing id of the inode's first open
// while any handle of it is open, and an open that cannot pass through (its
// name holds another file now) learns of the conflict (conflicts()) and is
// answered ESTALE: the kernel looks the path up again and opens the file the
// name holds through its own inode. An id is released with the inode's last
// handle, when the kernel is done with it (RELEASE comes after the kernel
// let go of the backing file). Thread-safe; leaf lock.
class BackingFiles {
 public:
  // Registers a store file's fd with the kernel: the backing id, or <= 0.
  using Register = std::function<int(int fd)>;
  using Unregister = std::function<void(int backing_id)>;

  // An open handle of kernel inode `ino` whose file (global inode `gino`)
  // can pass through to `fd`: the backing id to answer the open with, or 0
  // (registration failed: the handle and every other one of the inode go
  // through the daemon until the last is released). Each call is matched by
  // one release().
  int acquire(uint64_t ino, uint64_t gino, bool writable, int fd, const Register& reg) {
    MutexLock lock(mu_);
    auto [it, fresh] = inodes_.try_emplace(ino);
    Entry& e = it->second;
    if (fresh) e.id = std::max(reg(fd), 0);
    ++e.refs;
    if (e.id > 0 && writable) ++writers_[gino];
    return e.id;
  }

  // The matching release: the last handle of the inode unregisters its id.
  void release(uint64_t ino, uint64_t gino, bool writable, const Unregister& unreg) {
    MutexLock lock(mu_);
    auto it = inodes_.find(ino);
    if (it == inodes_.end()) return;
    if (it->second.id > 0 && writable) {
      auto w = writers_.find(gino);
      if (w != writers_.end() && --w->second == 0) writers_.erase(w);
    }
    if (--it->second.refs > 0) return;
    if (it->second.id > 0) unreg(it->second.id);
    inodes_.erase(it);
  }

  // A handle of `ino` open through the kernel's page cache or with another
  // file would fail in the kernel (EIO): the inode has passthrough handles.
  bool conflicts(uint64_t ino) const {
    MutexLock lock(mu_);
    auto it = inodes_.find(ino);
    return it != inodes_.end() && it->second.id > 0;
  }

  // Writes may reach the file without the daemon seeing them.
  bool written_through(uint64_t gino) const {
    MutexLock lock(mu_);
    return writers_.count(gino) != 0;
  }

 private:
  struct Entry {
    int id = 0;
    unsigned refs = 0;
  };
  mutable Mutex mu_;
  std::unordered_map<uint64_t, Entry> inodes_ GUARDED_BY(mu_);   // by kernel inode
  std::unordered_map<uint64_t, unsigned> writers_ GUARDED_BY(mu_);  // by global inode
};

}  // namespace dsdfs::fs
