// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "common/unique_fd.h"

namespace dsdfs::fs {

// One file system object the kernel knows about (it holds a lookup count on it).
// Immutable after creation except where noted. Shared by FUSE threads through
// shared_ptr; the table's map is the only long-lived reference.
struct Inode {
  Inode(uint64_t id, UniqueFd fd, dev_t dev, ino_t ino, mode_t type)
      : id(id), fd(std::move(fd)), src_dev(dev), src_ino(ino), type(type) {}

  const uint64_t id;     // FUSE node id; never reused, so no generation is needed
  const UniqueFd fd;     // O_PATH handle on the object in the store
  const dev_t src_dev;   // identity in the store
  const ino_t src_ino;
  const mode_t type;     // S_IFMT bits
  uint64_t nlookup = 0;  // GUARDED_BY(InodeTable::mu_)
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
  std::shared_ptr<Inode> lookup(UniqueFd fd, const struct stat& st);

  // Drops n lookups; erases the inode when none are left.
  void forget(uint64_t id, uint64_t n);

  size_t size() const;

 private:
  mutable std::mutex mu_;
  uint64_t next_id_ = 2;  // GUARDED_BY(mu_); 1 is FUSE_ROOT_ID
  std::unordered_map<uint64_t, std::shared_ptr<Inode>> by_id_;       // GUARDED_BY(mu_)
  std::map<std::pair<dev_t, ino_t>, uint64_t> by_src_;               // GUARDED_BY(mu_)
};

}  // namespace dsdfs::fs
