// SPDX-License-Identifier: Apache-2.0
#include "tests/unit/rdma/transport_test_util.h"

#include <gtest/gtest.h>

namespace dsdfs::rdma::testing {

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i + seed) % 251);
  return v;
}

std::span<const uint8_t> as_bytes(const std::vector<uint8_t>& v) {
  return v;
}

std::vector<std::unique_ptr<Transport>> make_connected(
    int n, const std::function<void(int, Transport&)>& setup, const std::vector<uint64_t>& job_keys,
    std::chrono::milliseconds default_timeout, std::chrono::milliseconds dead_after) {
  std::vector<std::unique_ptr<Transport>> ts;
  std::vector<std::vector<uint8_t>> addresses;
  for (int r = 0; r < n; ++r) {
    Options o;
    o.rank = r;
    o.nranks = n;
    o.job_key = job_keys.empty() ? kJobKey : job_keys[static_cast<size_t>(r)];
    o.default_timeout = default_timeout;
    o.dead_after = dead_after;
    o.shutdown_timeout = std::chrono::milliseconds(1000);
    auto t = Transport::create(o);
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    if (!t.is_ok()) return {};
    if (setup) setup(r, **t);
    addresses.push_back((*t)->local_address());
    ts.push_back(std::move(*t));
  }
  for (auto& t : ts) {
    Status s = t->connect_all(addresses);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  }
  return ts;
}

void shutdown_all(std::vector<std::unique_ptr<Transport>>& ts) {
  for (auto& t : ts) t->shutdown();
}

}  // namespace dsdfs::rdma::testing
