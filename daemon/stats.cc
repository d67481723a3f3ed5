// SPDX-License-Identifier: Apache-2.0
#include "daemon/stats.h"

#include <iterator>

namespace dsdfs::fs {

const char* fuse_op_name(FuseOp op) {
  static constexpr const char* kNames[] = {
#define DSDFS_FUSE_OP_NAME(name) #name,
      DSDFS_FUSE_OPS(DSDFS_FUSE_OP_NAME)
#undef DSDFS_FUSE_OP_NAME
  };
  static_assert(std::size(kNames) == kFuseOpCount);
  return kNames[static_cast<size_t>(op)];
}

const char* rpc_op_name(size_t op) {
  // Indexed by the op's number (daemon/peers.h); 0 and 17 name no op.
  static constexpr const char* kNames[] = {
      nullptr,       "dir_mutate", "dir_apply",     "loc_claim",  "loc_lookup",   "loc_remove",
      "own_find",    "file_stat",  "file_read",     "file_write", "dir_list",     "file_unlink",
      "file_rename", "file_drop",  "file_readlink", "file_map",   "file_setattr", nullptr,
      "file_truncate", "file_link", "file_find",    "rank_down",  "rank_join",    "rank_up",
      "shard_fill",  "rank_info",  "job_stop",      "stage_start", "stage_status"};
  static_assert(std::size(kNames) <= kRpcOpSlots);
  return op < std::size(kNames) ? kNames[op] : nullptr;
}

std::string Stats::to_text() const {
  std::string out;
  auto line = [&out](const char* name, const std::atomic<uint64_t>& v) {
    out += name;
    out += ' ';
    out += std::to_string(v.load(std::memory_order_relaxed));
    out += '\n';
  };
  line("bytes_written_local", bytes_written_local);
  line("bytes_read_local", bytes_read_local);
  line("bytes_forwarded", bytes_forwarded);
  line("bytes_applied_for_peers", bytes_applied_for_peers);
  line("bytes_read_remote", bytes_read_remote);
  line("bytes_served_to_peers", bytes_served_to_peers);
  line("bytes_served_inline", bytes_served_inline);
  line("cache_hits", cache_hits);
  line("cache_misses", cache_misses);
  line("rpcs_sent", rpcs_sent);
  line("rpc_failures", rpc_failures);
  line("rpcs_served", rpcs_served);
  line("rpcs_served_on_arrival", rpcs_served_on_arrival);
  line("slow_requests", slow_requests);
  line("listing_retries", listing_retries);
  line("owner_hint_hits", owner_hint_hits);
  line("owner_hint_misses", owner_hint_misses);
  line("opens_of_unlinked_files", opens_of_unlinked_files);
  line("renames_followed", renames_followed);
  line("writebacks_redirected", writebacks_redirected);
  line("writebacks_discarded", writebacks_discarded);
  line("passthrough_opens", passthrough_opens);
  for (size_t k = 0; k < kFuseOpCount; ++k) {
    line(("fuse_" + std::string(fuse_op_name(static_cast<FuseOp>(k)))).c_str(), fuse_requests[k]);
  }
  for (size_t k = 0; k < kRpcOpSlots; ++k) {
    if (const char* name = rpc_op_name(k)) line(("rpc_" + std::string(name)).c_str(), rpcs_sent_by_op[k]);
  }
  return out;
}

}  // namespace dsdfs::fs
