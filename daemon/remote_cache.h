// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

// The local copy of one version of a remote file: a sparse file in
// STORE/cache plus the record of which chunks are present. Thread-safe.
class CacheEntry {
 public:
  static constexpr uint64_t kChunk = 1 << 20;

  CacheEntry(uint64_t gino, uint64_t version, uint64_t size, UniqueFd fd, std::string path);
  ~CacheEntry();

  uint64_t gino() const { return gino_; }
  uint64_t version() const { return version_; }
  uint64_t size() const { return size_; }
  int fd() const { return fd_.get(); }

  // The first missing chunk in [first, last], or -1 if all are present.
  int64_t first_missing(uint64_t first, uint64_t last) const;
  // How many consecutive chunks from `first` (at most max) are missing.
  uint64_t missing_run(uint64_t first, uint64_t max) const;
  void mark_present(uint64_t first, uint64_t count);
  bool complete() const;
  // Unlinks the file when the last user is gone (the version is obsolete).
  void discard() { discard_ = true; }

 private:
  const uint64_t gino_;
  const uint64_t version_;
  const uint64_t size_;
  const UniqueFd fd_;
  const std::string path_;
  bool discard_ = false;
  mutable std::mutex mu_;
  std::vector<bool> present_;  // GUARDED_BY(mu_)
  uint64_t npresent_ = 0;      // GUARDED_BY(mu_)
};

// All cached remote files of this rank, one version per file: a newer
// version replaces (and discards) the older one. Thread-safe.
class RemoteCache {
 public:
  explicit RemoteCache(std::string dir) : dir_(std::move(dir)) {}
  // The entry for (gino, version), created empty if needed; *hit tells
  // whether an entry of that version already existed.
  Result<std::shared_ptr<CacheEntry>> open(uint64_t gino, uint64_t version, uint64_t size, bool* hit);
  void drop(uint64_t gino);

 private:
  const std::string dir_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<CacheEntry>> entries_;  // GUARDED_BY(mu_)
};

}  // namespace dsdfs::fs
