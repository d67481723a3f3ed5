// SPDX-License-Identifier: Apache-2.0
#include "daemon/inode_table.h"

#include <fcntl.h>

namespace dsdfs::fs {

namespace {
constexpr uint64_t kRootId = 1;  // FUSE_ROOT_ID
}

InodeTable::InodeTable() = default;

void InodeTable::set_root(UniqueFd root_fd, const struct stat& st) {
  auto root = std::make_shared<Inode>(kRootId, std::move(root_fd), st.st_dev, st.st_ino,
                                      st.st_mode & S_IFMT);
  std::lock_guard lock(mu_);
  root->nlookup = 1;  // the kernel never forgets the root
  by_id_[kRootId] = root;
  by_src_[{st.st_dev, st.st_ino}] = kRootId;
}

std::shared_ptr<Inode> InodeTable::get(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::shared_ptr<Inode> InodeTable::lookup(UniqueFd fd, const struct stat& st) {
  const std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
  // A store inode number can be reused by a new file while the kernel still
  // holds the old, unlinked one (open-unlinked files). Reuse a known inode only
  // if its handle is still linked; check outside the lock (no syscalls under it).
  std::shared_ptr<Inode> candidate;
  {
    std::lock_guard lock(mu_);
    if (auto it = by_src_.find(key); it != by_src_.end()) candidate = by_id_.at(it->second);
  }
  bool candidate_live = false;
  if (candidate) {
    struct stat cst;
    candidate_live = ::fstatat(candidate->fd.get(), "", &cst, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
                     (cst.st_nlink > 0 || S_ISDIR(cst.st_mode));
  }
  std::shared_ptr<Inode> inode;
  {
    std::lock_guard lock(mu_);
    auto it = by_src_.find(key);
    if (it != by_src_.end() && candidate_live && candidate && it->second == candidate->id &&
        by_id_.count(candidate->id)) {
      inode = candidate;
      ++inode->nlookup;
    } else {
      uint64_t id = next_id_++;
      inode = std::make_shared<Inode>(id, std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT);
      inode->nlookup = 1;
      by_id_.emplace(id, inode);
      by_src_[key] = id;  // a stale, unlinked holder of this key keeps its id until forgotten
    }
  }
  // A duplicate `fd` (still owned here if the inode existed) closes outside the lock.
  return inode;
}

void InodeTable::forget(uint64_t id, uint64_t n) {
  std::shared_ptr<Inode> doomed;
  {
    std::lock_guard lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return;
    Inode& inode = *it->second;
    inode.nlookup = n >= inode.nlookup ? 0 : inode.nlookup - n;
    if (inode.nlookup == 0 && id != kRootId) {
      doomed = std::move(it->second);
      auto src = by_src_.find({inode.src_dev, inode.src_ino});
      if (src != by_src_.end() && src->second == id) by_src_.erase(src);
      by_id_.erase(it);
    }
  }
  // The last reference may be dropped here or by a FUSE thread still using the
  // inode; either way its fd closes outside the lock.
}

size_t InodeTable::size() const {
  std::lock_guard lock(mu_);
  return by_id_.size();
}

}  // namespace dsdfs::fs
