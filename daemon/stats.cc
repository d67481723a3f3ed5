// SPDX-License-Identifier: Apache-2.0
#include "daemon/stats.h"

namespace dsdfs::fs {

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
  line("cache_hits", cache_hits);
  line("cache_misses", cache_misses);
  line("rpcs_sent", rpcs_sent);
  line("rpc_failures", rpc_failures);
  line("rpcs_served", rpcs_served);
  line("slow_requests", slow_requests);
  line("listing_retries", listing_retries);
  line("opens_of_unlinked_files", opens_of_unlinked_files);
  line("writebacks_redirected", writebacks_redirected);
  line("writebacks_discarded", writebacks_discarded);
  return out;
}

}  // namespace dsdfs::fs
