// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/remote_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>

namespace dsdfs::fs {

CacheEntry::CacheEntry(uint64_t gino, uint64_t version, uint64_t size, UniqueFd fd, std::string path)
    : gino_(gino), version_(version), size_(size), fd_(std::move(fd)), path_(std::move(path)),
      present_((size + kChunk - 1) / kChunk, kMissing) {}

CacheEntry::~CacheEntry() {
  if (map_ != nullptr) ::munmap(map_, size_);
  if (discard_) ::unlink(path_.c_str());
}

int64_t CacheEntry::first_missing(uint64_t first, uint64_t last) const {
  MutexLock lock(mu_);
  for (uint64_t c = first; c <= last && c < present_.size(); ++c) {
    if (present_[c] != kPresent) return static_cast<int64_t>(c);
  }
  return -1;
}

uint64_t CacheEntry::claim_run(uint64_t first, uint64_t max) {
  MutexLock lock(mu_);
  uint64_t n = 0;
  while (n < max && first + n < present_.size() && present_[first + n] == kMissing) {
    present_[first + n] = kFetching;
    ++n;
  }
  return n;
}

bool CacheEntry::present(uint64_t c) const {
  MutexLock lock(mu_);
  return c >= present_.size() || present_[c] == kPresent;
}

int CacheEntry::last_error() const {
  MutexLock lock(mu_);
  return last_error_;
}

void CacheEntry::finish_with(uint64_t first, uint64_t count, int err) {
  const bool ok = err == 0;
  {
    MutexLock lock(mu_);
    if (!ok) last_error_ = err;
    for (uint64_t c = first; c < first + count && c < present_.size(); ++c) {
      if (ok && present_[c] != kPresent) ++npresent_;
      if (present_[c] != kPresent) present_[c] = ok ? kPresent : kMissing;
    }
  }
  fetched_.notify_all();
}

bool CacheEntry::wait_fetched(uint64_t c, std::chrono::milliseconds timeout) {
  UniqueMutexLock lock(mu_);
  return fetched_.wait_for(lock, timeout, [&] {
    mu_.assert_held();
    return c >= present_.size() || present_[c] != kFetching;
  });
}

bool CacheEntry::complete() const {
  MutexLock lock(mu_);
  return npresent_ == present_.size();
}

RemoteCache::RemoteCache(std::string dir) : dir_(std::move(dir)), reaper_([this] { reaper_main(); }) {}

RemoteCache::~RemoteCache() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  reap_.notify_all();
  reaper_.join();
}

void RemoteCache::retire(std::shared_ptr<CacheEntry> entry) {
  retired_.push_back(std::move(entry));
  reap_.notify_one();
}

void RemoteCache::reaper_main() {
  UniqueMutexLock lock(mu_);
  for (;;) {
    reap_.wait(lock, [this] {
      mu_.assert_held();
      return stopping_ || !retired_.empty();
    });
    std::vector<std::shared_ptr<CacheEntry>> batch;
    batch.swap(retired_);
    lock.unlock();
    batch.clear();  // the last reference (unless a reader still has it open) frees the file
    lock.lock();
    if (stopping_ && retired_.empty()) return;
  }
}

std::optional<std::pair<uint64_t, bool>> RemoteCache::peek(uint64_t gino) {
  std::shared_ptr<CacheEntry> e;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(gino);
    if (it == entries_.end()) return std::nullopt;
    e = it->second;
  }
  return std::pair{e->version(), e->complete()};
}

Result<std::shared_ptr<CacheEntry>> RemoteCache::open(uint64_t gino, uint64_t version, uint64_t size,
                                                      bool* hit) {
  MutexLock lock(mu_);
  auto it = entries_.find(gino);
  if (it != entries_.end()) {
    if (it->second->version() == version && it->second->size() == size) {
      *hit = true;
      return it->second;
    }
    it->second->discard();
    retire(std::move(it->second));
    entries_.erase(it);
  }
  *hit = false;
  // A name of its own: an entry of the same version that was dropped (a
  // fetch found the file changed) may still be read by open handles, and
  // reusing its file (O_TRUNC) would turn the bytes they read into zeros.
  char name[80];
  std::snprintf(name, sizeof name, "/%016" PRIx64 "-%016" PRIx64 "-%" PRIu64, gino, version, ++files_made_);
  std::string path = dir_ + name;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::from_errno("cannot create cache file " + path);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return Status::from_errno("cache file size");
  void* map = nullptr;
  if (size > 0) {
    map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) return Status::from_errno("cannot map cache file " + path);
  }
  auto entry = std::make_shared<CacheEntry>(gino, version, size, std::move(fd), path);
  entry->map_ = static_cast<uint8_t*>(map);
  entry->discard();  // a cache file never outlives its entry (and never a restart)
  entries_[gino] = entry;
  return entry;
}

void RemoteCache::drop(uint64_t gino) {
  MutexLock lock(mu_);
  if (auto it = entries_.find(gino); it != entries_.end()) {
    retire(std::move(it->second));
    entries_.erase(it);
  }
}

size_t RemoteCache::evict_unused(uint64_t keep_gino) {
  std::vector<std::shared_ptr<CacheEntry>> evicted;
  {
    MutexLock lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->first != keep_gino && it->second.use_count() == 1) {
        evicted.push_back(std::move(it->second));
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }
  return evicted.size();  // freed here, by this thread: the caller wants the space now
}

void RemoteCache::drop(uint64_t gino, uint64_t version) {
  MutexLock lock(mu_);
  if (auto it = entries_.find(gino); it != entries_.end() && it->second->version() == version) {
    retire(std::move(it->second));
    entries_.erase(it);
  }
}

}  // namespace dsdfs::fs
