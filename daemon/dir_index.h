// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/mutex.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

// This rank's replicas of the job's directories, by cluster-wide directory id
// (0 is the root). Ids are given by the coordinator at mkdir and are the same
// on every rank, so (directory id, name) names a file everywhere, whatever
// renames of its ancestors happen. Directories found in a kept store get
// ids from a hash of their path (top bit set). Thread-safe.
class DirIndex {
 public:
  void add(uint64_t id, std::shared_ptr<UniqueFd> fd, dev_t dev, ino_t ino);
  void remove(uint64_t id);
  // The O_PATH handle of the replica, or nullptr.
  std::shared_ptr<UniqueFd> fd_of(uint64_t id) const;
  std::optional<uint64_t> id_of(dev_t dev, ino_t ino) const;
  // The handle of replica `id` if it is the store directory (dev, ino), so
  // that the kernel's inode of the directory shares it (one descriptor per
  // directory, not two); else nullptr.
  std::shared_ptr<UniqueFd> fd_if(uint64_t id, dev_t dev, ino_t ino) const;
  // Replicas held, each with an open handle.
  size_t size() const;

 private:
  struct Entry {
    std::shared_ptr<UniqueFd> fd;
    dev_t dev;
    ino_t ino;
  };
  mutable Mutex mu_;
  std::unordered_map<uint64_t, Entry> by_id_ GUARDED_BY(mu_);
  std::map<std::pair<dev_t, ino_t>, uint64_t> by_src_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
