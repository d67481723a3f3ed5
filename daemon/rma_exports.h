// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"

namespace dsdfs::fs {

class Peers;

// Owned files exposed for one-sided reads: each one mmap'd read-only and
// registered (Peers::export_region) once per version, so readers on fabrics with native RMA
// pull the bytes with ucp_get_nbx and the owner's CPU does nothing.
// An export is dropped before the owner shrinks, truncates or unlinks the
// file (a get into a vanished page must never happen), and evicted
// least-recently-used beyond kMaxExports. Thread-safe.
class RmaExports {
 public:
  static constexpr size_t kMaxExports = 256;

  struct Export {
    uint64_t address;
    uint64_t length;
    std::vector<uint8_t> rkey;
  };

  explicit RmaExports(Peers* peers) : peers_(peers) {}
  ~RmaExports();

  // Maps and registers `fd` (the file gino at version) if not already.
  Result<Export> get_or_create(uint64_t gino, uint64_t version, int fd, uint64_t size);
  // Drops every export of gino.
  void drop(uint64_t gino);

 private:
  struct Entry;
  Peers* const peers_;
  Mutex mu_;
  std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<Entry>> by_key_ GUARDED_BY(mu_);
  std::list<std::pair<uint64_t, uint64_t>> lru_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
