// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace dsdfs::fs {

// Per-rank counters, readable by users as `getfattr -n user.dsdfs.stats MOUNTPOINT`.
// Relaxed atomics: each counter is exact, a snapshot across counters is not.
struct Stats {
  std::atomic<uint64_t> bytes_written_local{0};
  std::atomic<uint64_t> bytes_read_local{0};
  std::atomic<uint64_t> bytes_forwarded{0};    // writes of ours applied on another rank
  std::atomic<uint64_t> bytes_applied_for_peers{0};
  std::atomic<uint64_t> bytes_read_remote{0};  // fetched from owners
  std::atomic<uint64_t> bytes_served_to_peers{0};
  std::atomic<uint64_t> cache_hits{0};         // opens served by a valid cache
  std::atomic<uint64_t> cache_misses{0};
  std::atomic<uint64_t> rpcs_sent{0};
  std::atomic<uint64_t> rpc_failures{0};
  std::atomic<uint64_t> rpcs_served{0};
  std::atomic<uint64_t> slow_requests{0};  // served in half the callers' timeout or later
  std::atomic<uint64_t> listing_retries{0};  // directory listings taken again: a name moved between ranks meanwhile
  std::atomic<uint64_t> opens_of_unlinked_files{0};  // an open and its kernel retry both lost to an unlink or rename
  std::atomic<uint64_t> writebacks_redirected{0};  // dirty pages the kernel sent through a handle of another file
  std::atomic<uint64_t> writebacks_discarded{0};  // pages of a file moved away with no user's handle open here

  // "name value\n" lines, stable names (documented in docs/user-guide.md).
  std::string to_text() const;
};

inline void stats_add(std::atomic<uint64_t>& c, uint64_t n) { c.fetch_add(n, std::memory_order_relaxed); }

}  // namespace dsdfs::fs
