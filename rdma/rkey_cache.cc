// SPDX-License-Identifier: Apache-2.0
#include "rdma/rkey_cache.h"

#include <algorithm>

#include "common/log.h"
#include "rdma/status_map.h"

namespace dsdfs::rdma {

RkeyCache::~RkeyCache() {
  if (!entries_.empty() || !orphans_.empty()) {
    // The owner must clear() before closing the endpoint; leaking is safer than
    // destroying an rkey whose endpoint may be gone.
    DSDFS_WARN("rkey cache destroyed with %zu cached and %zu pinned rkeys; leaking them",
               entries_.size(), orphans_.size());
  }
}

Result<ucp_rkey_h> RkeyCache::acquire(ucp_ep_h ep, std::span<const uint8_t> blob) {
  if (blob.empty()) return Status::error(EINVAL, "empty rkey");
  std::vector<uint8_t> key(blob.begin(), blob.end());
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= kMaxEntries) evict_idle();
    ucp_rkey_h rkey = nullptr;
    // The blob is network input; UCX checks its structure as far as it can.
    ucs_status_t status = ucp_ep_rkey_unpack(ep, blob.data(), &rkey);
    if (status != UCS_OK) {
      DSDFS_WARN("ucp_ep_rkey_unpack of a %zu-byte rkey failed: %s", blob.size(),
                 ucs_status_string(status));
      return status_from_ucs(status, "ucp_ep_rkey_unpack");
    }
    it = entries_.emplace(std::move(key), Entry{rkey, 0, 0}).first;
  }
  it->second.pins++;
  it->second.last_use = ++clock_;
  return it->second.rkey;
}

void RkeyCache::unpin(ucp_rkey_h rkey) {
  for (auto& [blob, e] : entries_) {
    if (e.rkey == rkey) {
      e.pins--;
      return;
    }
  }
  for (auto it = orphans_.begin(); it != orphans_.end(); ++it) {
    if (it->rkey == rkey) {
      if (--it->pins == 0) {
        ucp_rkey_destroy(it->rkey);
        orphans_.erase(it);
      }
      return;
    }
  }
  DSDFS_ERROR("INTERNAL ERROR: unpin of an rkey the cache does not know");
}

void RkeyCache::clear() {
  for (auto& [blob, e] : entries_) {
    if (e.pins == 0) {
      ucp_rkey_destroy(e.rkey);
    } else {
      orphans_.push_back(e);
    }
  }
  entries_.clear();
}

void RkeyCache::evict_idle() {
  // Drop the older half of the idle entries: amortised O(1) per insert.
  std::vector<uint64_t> ages;
  for (auto& [blob, e] : entries_) {
    if (e.pins == 0) ages.push_back(e.last_use);
  }
  if (ages.empty()) return;
  std::nth_element(ages.begin(), ages.begin() + ages.size() / 2, ages.end());
  uint64_t cutoff = ages[ages.size() / 2];
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.pins == 0 && it->second.last_use <= cutoff) {
      ucp_rkey_destroy(it->second.rkey);
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace dsdfs::rdma
