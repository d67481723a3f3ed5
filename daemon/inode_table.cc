// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/inode_table.h"

#include <fcntl.h>
#include <sys/stat.h>

namespace dsdfs::fs {

namespace {
constexpr uint64_t kRootId = 1;  // FUSE_ROOT_ID
}

InodeTable::InodeTable() = default;

void InodeTable::set_root(UniqueFd root_fd, const struct stat& st) {
  auto root = std::make_shared<Inode>(kRootId, std::move(root_fd), st.st_dev, st.st_ino,
                                      st.st_mode & S_IFMT, 0);
  MutexLock lock(mu_);
  root->nlookup = 1;  // the kernel never forgets the root
  by_id_[kRootId] = root;
  by_src_[{st.st_dev, st.st_ino}] = kRootId;
}

std::shared_ptr<Inode> InodeTable::get(uint64_t id) const {
  MutexLock lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::shared_ptr<Inode> InodeTable::lookup(UniqueFd fd, const struct stat& st, uint64_t dir_id,
                                          std::shared_ptr<UniqueFd> shared) {
  const std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
  // A store inode number can be reused by a new file while the kernel still
  // holds the old, unlinked one (open-unlinked files). Reuse a known inode only
  // if its handle is still linked; check outside the lock (no syscalls under it).
  std::shared_ptr<Inode> candidate;
  {
    MutexLock lock(mu_);
    if (auto it = by_src_.find(key); it != by_src_.end()) candidate = by_id_.at(it->second);
  }
  bool candidate_live = false;
  if (candidate && !candidate->released.load()) {
    struct stat cst;
    auto h = candidate->handle();
    if (!h) {
      candidate->set_handle(std::make_shared<UniqueFd>(std::move(fd)));  // reuse the fresh handle
      h = candidate->handle();
      fd = UniqueFd(::dup(h->get()));
    }
    candidate_live = ::fstatat(h->get(), "", &cst, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
                     (cst.st_nlink > 0 || S_ISDIR(cst.st_mode));
  }
  std::shared_ptr<Inode> inode;
  {
    MutexLock lock(mu_);
    auto it = by_src_.find(key);
    if (it != by_src_.end() && candidate_live && candidate && it->second == candidate->id &&
        by_id_.count(candidate->id)) {
      inode = candidate;
      ++inode->nlookup;
    } else {
      uint64_t id = next_id_++;
      inode = shared ? std::make_shared<Inode>(id, std::move(shared), st.st_dev, st.st_ino,
                                               st.st_mode & S_IFMT, dir_id)
                     : std::make_shared<Inode>(id, std::move(fd), st.st_dev, st.st_ino,
                                               st.st_mode & S_IFMT, dir_id);
      inode->nlookup = 1;
      by_id_.emplace(id, inode);
      by_src_[key] = id;  // a stale, unlinked holder of this key keeps its id until forgotten
    }
  }
  // A duplicate `fd` (still owned here if the inode existed) closes outside the lock.
  if (inode != candidate) note_file_handle(inode);
  return inode;
}

std::shared_ptr<Inode> InodeTable::lookup_remote(const RemoteRef& ref, mode_t type, const struct stat& st) {
  const std::pair<uint64_t, uint64_t> key{ref.gino, ref.version};
  MutexLock lock(mu_);
  if (auto it = by_remote_.find(key); it != by_remote_.end()) {
    auto& inode = by_id_.at(it->second);
    if (inode->ref.owner == ref.owner && inode->ref.dir == ref.dir && inode->ref.name == ref.name) {
      ++inode->nlookup;
      inode->set_remote_attr(st);
      return inode;
    }
  }
  uint64_t id = next_id_++;
  auto inode = std::make_shared<Inode>(id, ref, type & S_IFMT);
  inode->set_remote_attr(st);
  inode->nlookup = 1;
  by_id_.emplace(id, inode);
  by_remote_[key] = id;
  return inode;
}

uint64_t InodeTable::find_local(dev_t dev, ino_t ino) const {
  MutexLock lock(mu_);
  auto it = by_src_.find({dev, ino});
  return it == by_src_.end() ? 0 : it->second;
}

InodeTable::DirectHold::DirectHold(InodeTable& table, dev_t dev, ino_t ino) {
  MutexLock lock(table.mu_);
  if (table.by_src_.count({dev, ino}) != 0) return;  // the kernel knows it: through the mount
  ++table.direct_[{dev, ino}];
  table_ = &table;
  key_ = {dev, ino};
}

void InodeTable::DirectHold::release() {
  if (!table_) return;
  {
    MutexLock lock(table_->mu_);
    if (auto it = table_->direct_.find(key_); it != table_->direct_.end() && --it->second == 0) {
      table_->direct_.erase(it);
    }
  }
  table_->direct_done_.notify_all();
  table_ = nullptr;
}

bool InodeTable::wait_direct(dev_t dev, ino_t ino) {
  UniqueMutexLock lock(mu_);
  bool waited = false;
  direct_done_.wait(lock, [&] {
    mu_.assert_held();
    if (direct_.count({dev, ino}) == 0) return true;
    waited = true;
    return false;
  });
  return waited;
}

std::vector<std::shared_ptr<Inode>> InodeTable::find_remote(uint64_t gino) const {
  std::vector<std::shared_ptr<Inode>> out;
  MutexLock lock(mu_);
  for (auto it = by_remote_.lower_bound({gino, 0}); it != by_remote_.end() && it->first.first == gino; ++it) {
    out.push_back(by_id_.at(it->second));
  }
  return out;
}

void InodeTable::release_source(const Inode& inode) {
  MutexLock lock(mu_);
  auto src = by_src_.find({inode.src_dev, inode.src_ino});
  if (src != by_src_.end() && src->second == inode.id) by_src_.erase(src);
}

void InodeTable::forget(uint64_t id, uint64_t n) {
  std::shared_ptr<Inode> doomed;
  {
    MutexLock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return;
    Inode& inode = *it->second;
    inode.nlookup = n >= inode.nlookup ? 0 : inode.nlookup - n;
    if (inode.nlookup == 0 && id != kRootId) {
      doomed = std::move(it->second);
      if (inode.remote) {
        auto rem = by_remote_.find({inode.ref.gino, inode.ref.version});
        if (rem != by_remote_.end() && rem->second == id) by_remote_.erase(rem);
      } else {
        auto src = by_src_.find({inode.src_dev, inode.src_ino});
        if (src != by_src_.end() && src->second == id) by_src_.erase(src);
      }
      by_id_.erase(it);
    }
  }
  // The last reference may be dropped here or by a FUSE thread still using the
  // inode; either way its fd closes outside the lock.
}

void InodeTable::note_file_handle(const std::shared_ptr<Inode>& inode) {
  if (budget_ == SIZE_MAX || S_ISDIR(inode->type)) return;
  size_t budget = budget_;
  if (pinned_) {  // (its lock is not taken under evict_mu_, a leaf)
    const size_t pinned = pinned_();
    budget = budget_ > pinned + kMinFileHandles ? budget_ - pinned : kMinFileHandles;
  }
  std::vector<std::shared_ptr<UniqueFd>> closing;  // closed last, outside the locks
  std::vector<std::shared_ptr<Inode>> unlinked;    // victims without a name left
  {
    MutexLock lock(evict_mu_);
    open_order_.push_back(inode);
    // An inode with open files keeps its handle and goes to the back of the
    // queue, so that it is evicted once closed (one pass at most).
    for (size_t pass = open_order_.size(); open_order_.size() > budget && pass > 0; --pass) {
      auto victim = open_order_.front().lock();
      open_order_.pop_front();
      if (!victim || victim == inode) continue;
      if (victim->open_files.load() != 0) {
        open_order_.push_back(victim);
        continue;
      }
      auto h = victim->drop_handle();
      if (!h) continue;
      // Without a name, the file's number may go to a new file once this
      // handle closes: the inode is cut off from it first (as in
      // Filesystem::let_go_if_unlinked), never reopened by name.
      struct stat st;
      if (::fstat(h->get(), &st) == 0 && st.st_nlink == 0) {
        victim->release(st);
        unlinked.push_back(victim);
      }
      closing.push_back(std::move(h));
    }
  }
  for (auto& victim : unlinked) release_source(*victim);
}

size_t InodeTable::size() const {
  MutexLock lock(mu_);
  return by_id_.size();
}

}  // namespace dsdfs::fs
