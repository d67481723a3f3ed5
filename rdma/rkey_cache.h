// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "common/status.h"

namespace dsdfs::rdma {

// Unpacked remote keys of one endpoint, keyed by the packed rkey bytes
// (Mercury's lazy per-endpoint unpacking). An entry in use by an outstanding
// get is pinned and never evicted; idle entries beyond kMaxEntries are
// destroyed least recently used first.
//
// Owner: the Peer of one endpoint. Progress thread only (not thread-safe).
// UCX contract: an rkey must be destroyed before the endpoint it was unpacked
// on, so the owner calls clear() before closing the endpoint.
class RkeyCache {
 public:
  static constexpr size_t kMaxEntries = 256;

  RkeyCache() = default;
  RkeyCache(const RkeyCache&) = delete;
  RkeyCache& operator=(const RkeyCache&) = delete;
  ~RkeyCache();

  // Unpacks (or finds) the rkey for blob on ep and pins it. Pair with unpin().
  Result<ucp_rkey_h> acquire(ucp_ep_h ep, std::span<const uint8_t> blob);
  void unpin(ucp_rkey_h rkey);
  // Destroys every unpinned rkey; pinned ones are destroyed by unpin() once
  // their last get completes (they are orphaned from the cache).
  void clear();
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    ucp_rkey_h rkey = nullptr;
    int pins = 0;
    uint64_t last_use = 0;
  };
  void evict_idle();

  std::map<std::vector<uint8_t>, Entry> entries_;
  // Pinned rkeys removed from entries_ by clear(), waiting for their last unpin().
  std::vector<Entry> orphans_;
  uint64_t clock_ = 0;
};

}  // namespace dsdfs::rdma
