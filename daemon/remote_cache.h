// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

// The local copy of one version of a remote file: a sparse file in
// STORE/cache, mapped shared so that fetched bytes land in its pages without
// a copy, plus the record of which chunks are present. Thread-safe.
class CacheEntry {
 public:
  static constexpr uint64_t kChunk = 1 << 20;

  CacheEntry(uint64_t gino, uint64_t version, uint64_t size, UniqueFd fd, std::string path);
  ~CacheEntry();

  uint64_t gino() const { return gino_; }
  uint64_t version() const { return version_; }
  uint64_t size() const { return size_; }
  int fd() const { return fd_.get(); }
  // The file mapped read-write (null for an empty file). Chunks being
  // fetched are written there by the transport.
  uint8_t* data() const { return map_; }

  // The first chunk in [first, last] that is not present, or -1.
  int64_t first_missing(uint64_t first, uint64_t last) const;
  // Marks up to max consecutive missing chunks from `first` as being fetched
  // by the caller and returns how many; 0 if `first` is present or another
  // thread is fetching it (then wait_fetched()). The caller must finish_with().
  uint64_t claim_run(uint64_t first, uint64_t max);
  // Waits until chunk c is no longer being fetched; false on timeout.
  bool wait_fetched(uint64_t c, std::chrono::milliseconds timeout);
  bool present(uint64_t c) const;
  // Ends a claim: the chunks are present (err == 0) or missing again, and
  // err is what last_error() reports to threads that waited for them.
  void finish_with(uint64_t first, uint64_t count, int err);
  int last_error() const;
  bool complete() const;
  // One-sided gets from the owner failed: fetch with active messages.
  bool rma_failed() const { return rma_failed_.load(); }
  void set_rma_failed() { rma_failed_.store(true); }
  // Unlinks the file when the last user is gone (the version is obsolete).
  void discard() { discard_ = true; }

 private:
  friend class RemoteCache;
  const uint64_t gino_;
  const uint64_t version_;
  const uint64_t size_;
  const UniqueFd fd_;
  const std::string path_;
  uint8_t* map_ = nullptr;
  std::atomic<bool> rma_failed_{false};
  bool discard_ = false;
  enum State : uint8_t { kMissing = 0, kFetching = 1, kPresent = 2 };
  mutable Mutex mu_;
  std::condition_variable_any fetched_;
  std::vector<uint8_t> present_ GUARDED_BY(mu_);  // State per chunk
  uint64_t npresent_ GUARDED_BY(mu_) = 0;
  int last_error_ GUARDED_BY(mu_) = 0;
};

// All cached remote files of this rank, one version per file: a newer
// version replaces (and discards) the older one. Freeing a discarded cache
// file (unmapping it, the last close of an unlinked file of up to many GiB)
// is left to a background thread, so that the open of the new version does
// not wait for it. Thread-safe.
class RemoteCache {
 public:
  explicit RemoteCache(std::string dir);
  ~RemoteCache();
  // The entry for (gino, version), created empty if needed; *hit tells
  // whether an entry of that version already existed.
  Result<std::shared_ptr<CacheEntry>> open(uint64_t gino, uint64_t version, uint64_t size, bool* hit);
  void drop(uint64_t gino);
  // The version gino's copy is of, and whether all of it is here (nullopt:
  // no copy).
  std::optional<std::pair<uint64_t, bool>> peek(uint64_t gino);
  // Drops the entry of gino only if it is of this version.
  void drop(uint64_t gino, uint64_t version);
  // The cache's disk is full: frees, now, the cache files that no open file
  // and no fetch uses (except gino's); how many.
  size_t evict_unused(uint64_t keep_gino);

 private:
  // Hands a displaced entry to the reaper (it may still be in use).
  void retire(std::shared_ptr<CacheEntry> entry) REQUIRES(mu_);
  void reaper_main();

  const std::string dir_;
  Mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<CacheEntry>> entries_ GUARDED_BY(mu_);
  std::vector<std::shared_ptr<CacheEntry>> retired_ GUARDED_BY(mu_);
  uint64_t files_made_ GUARDED_BY(mu_) = 0;  // cache file names
  bool stopping_ GUARDED_BY(mu_) = false;
  std::condition_variable_any reap_;
  std::thread reaper_;
};

}  // namespace dsdfs::fs
