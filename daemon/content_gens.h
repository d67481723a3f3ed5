// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/mutex.h"

#include <cstdint>
#include <unordered_map>

namespace dsdfs::fs {

// How many times the bytes or the size of each owned file changed since
// another rank first learned a version of it, by global inode number. A
// remote reader keys its cache and its kernel inode by the owner's version of
// a file, and a version of size, mtime and inode number alone stays the same
// when a file is rewritten in place at the same size within one tick of the
// clock that sets its mtime: with the writeback cache, the kernel sets the
// store file's mtime at close from its coarse clock (FUSE inodes have no
// fine-grained timestamps), so two versions closed within a few milliseconds
// could be one version to every other rank (the torture test's grow-stale).
// The count is part of the version (Filesystem::version_of).
//
// Only files another rank has seen are counted (seen() before the stat whose
// version it hands out): a file no rank has seen has no version anywhere to
// keep apart from its next one. A change counts once its bytes are in the
// store (changed() after the write): a version handed out in between shows
// the new bytes under the old count, and the count moves on after. Entries
// go with the file's last name (forget()). Thread-safe; leaf lock.
class ContentGens {
 public:
  // A peer is about to learn the version of this file: its changes count
  // from now on. Call before the stat the version is made of.
  void seen(uint64_t gino) {
    MutexLock lock(mu_);
    gens_.try_emplace(gino, 0);
  }
  // The count that goes into the version, read after the stat (0 for a file
  // no peer has seen).
  uint64_t get(uint64_t gino) const {
    MutexLock lock(mu_);
    auto it = gens_.find(gino);
    return it == gens_.end() ? 0 : it->second;
  }
  // The file's bytes or size changed (a write, a truncation, an allocation
  // that grew it), and the change is in the store.
  void changed(uint64_t gino) {
    MutexLock lock(mu_);
    if (auto it = gens_.find(gino); it != gens_.end()) ++it->second;
  }
  // The file lost its last name: its number may be another file's next.
  void forget(uint64_t gino) {
    MutexLock lock(mu_);
    gens_.erase(gino);
  }

 private:
  mutable Mutex mu_;
  std::unordered_map<uint64_t, uint64_t> gens_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
