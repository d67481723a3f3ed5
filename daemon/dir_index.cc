// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/dir_index.h"

namespace dsdfs::fs {

void DirIndex::add(uint64_t id, std::shared_ptr<UniqueFd> fd, dev_t dev, ino_t ino) {
  MutexLock lock(mu_);
  if (auto it = by_id_.find(id); it != by_id_.end()) by_src_.erase({it->second.dev, it->second.ino});
  by_id_[id] = Entry{std::move(fd), dev, ino};
  by_src_[{dev, ino}] = id;
}

void DirIndex::remove(uint64_t id) {
  std::shared_ptr<UniqueFd> doomed;  // closed outside the lock
  MutexLock lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  doomed = std::move(it->second.fd);
  auto src = by_src_.find({it->second.dev, it->second.ino});
  if (src != by_src_.end() && src->second == id) by_src_.erase(src);
  by_id_.erase(it);
}

std::shared_ptr<UniqueFd> DirIndex::fd_of(uint64_t id) const {
  MutexLock lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.fd;
}

std::shared_ptr<UniqueFd> DirIndex::fd_if(uint64_t id, dev_t dev, ino_t ino) const {
  MutexLock lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || it->second.dev != dev || it->second.ino != ino) return nullptr;
  return it->second.fd;
}

size_t DirIndex::size() const {
  MutexLock lock(mu_);
  return by_id_.size();
}

std::optional<uint64_t> DirIndex::id_of(dev_t dev, ino_t ino) const {
  MutexLock lock(mu_);
  auto it = by_src_.find({dev, ino});
  if (it == by_src_.end()) return std::nullopt;
  return it->second;
}

}  // namespace dsdfs::fs
