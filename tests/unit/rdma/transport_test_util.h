// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "rdma/transport.h"

namespace dsdfs::rdma::testing {

constexpr uint64_t kJobKey = 0x6473646673ULL;

// Bytes 0, 1, 2, ... (mod 251, so that no power-of-two offset repeats).
std::vector<uint8_t> pattern(size_t n, uint8_t seed = 0);
std::span<const uint8_t> as_bytes(const std::vector<uint8_t>& v);

// n Transports in this process, connected to each other (and themselves) by
// exchanging address blobs, as the launcher's allgather would. setup(rank, t)
// registers handlers. job_keys (optional) overrides the key per rank.
std::vector<std::unique_ptr<Transport>> make_connected(
    int n, const std::function<void(int, Transport&)>& setup,
    const std::vector<uint64_t>& job_keys = {},
    std::chrono::milliseconds default_timeout = std::chrono::seconds(10),
    std::chrono::milliseconds dead_after = std::chrono::milliseconds(0));

void shutdown_all(std::vector<std::unique_ptr<Transport>>& ts);

// Milliseconds since start.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

}  // namespace dsdfs::rdma::testing
