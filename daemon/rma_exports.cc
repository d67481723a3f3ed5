// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/rma_exports.h"

#include <sys/mman.h>

#include "daemon/peers.h"

namespace dsdfs::fs {

struct RmaExports::Entry {
  void* map = MAP_FAILED;
  size_t length = 0;
  std::unique_ptr<RmaRegion> region;  // deregistered before the unmap
  ~Entry() {
    region.reset();
    if (map != MAP_FAILED) ::munmap(map, length);
  }
};

RmaExports::~RmaExports() {
  MutexLock lock(mu_);
  by_key_.clear();
}

Result<RmaExports::Export> RmaExports::get_or_create(uint64_t gino, uint64_t version, int fd, uint64_t size) {
  if (size == 0) return Status::error(EINVAL, "empty file");
  const std::pair<uint64_t, uint64_t> key{gino, version};
  {
    MutexLock lock(mu_);
    if (auto it = by_key_.find(key); it != by_key_.end()) {
      lru_.remove(key);
      lru_.push_front(key);
      auto& e = *it->second;
      return Export{e.region->remote_address(), e.length, std::vector<uint8_t>(e.region->rkey().begin(), e.region->rkey().end())};
    }
  }
  auto entry = std::make_shared<Entry>();
  entry->length = size;
  entry->map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (entry->map == MAP_FAILED) return Status::from_errno("mmap for RMA");
  auto region = peers_->export_region(entry->map, size);
  if (!region) return region.status();
  entry->region = std::move(region).value();
  Export out{entry->region->remote_address(), size,
             std::vector<uint8_t>(entry->region->rkey().begin(), entry->region->rkey().end())};
  std::vector<std::shared_ptr<Entry>> evicted;  // released outside the lock
  {
    MutexLock lock(mu_);
    // Older versions of the same file are obsolete.
    for (auto it = by_key_.lower_bound({gino, 0}); it != by_key_.end() && it->first.first == gino;) {
      lru_.remove(it->first);
      evicted.push_back(std::move(it->second));
      it = by_key_.erase(it);
    }
    by_key_[key] = entry;
    lru_.push_front(key);
    while (lru_.size() > kMaxExports) {
      auto victim = lru_.back();
      lru_.pop_back();
      evicted.push_back(std::move(by_key_[victim]));
      by_key_.erase(victim);
    }
  }
  return out;
}

void RmaExports::drop(uint64_t gino) {
  std::vector<std::shared_ptr<Entry>> evicted;
  MutexLock lock(mu_);
  for (auto it = by_key_.lower_bound({gino, 0}); it != by_key_.end() && it->first.first == gino;) {
    lru_.remove(it->first);
    evicted.push_back(std::move(it->second));
    it = by_key_.erase(it);
  }
}

}  // namespace dsdfs::fs
