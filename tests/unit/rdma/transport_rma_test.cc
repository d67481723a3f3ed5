// SPDX-License-Identifier: Apache-2.0
// One-sided gets from registered memory, and the native-RMA decision.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "common/hash.h"
#include "rdma/memory.h"
#include "rdma/transport.h"
#include "tests/unit/rdma/transport_test_util.h"

namespace dsdfs::rdma {
namespace {

using namespace std::chrono_literals;
using testing::make_connected;
using testing::pattern;

uint64_t checksum(const void* p, size_t n) {
  return fnv1a64(std::string_view(static_cast<const char*>(p), n));
}

// Sets an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(TransportRma, GetOfRegisteredFourMiBRegion) {
  auto ts = make_connected(2, nullptr);
  ASSERT_EQ(ts.size(), 2u);
  constexpr size_t kSize = 4u << 20;
  auto src = pattern(kSize, 42);
  {
    auto region = MemoryRegion::map(*ts[1], src.data(), src.size());
    ASSERT_TRUE(region.is_ok()) << region.status().to_string();
    EXPECT_EQ(region->remote_address(), reinterpret_cast<uintptr_t>(src.data()));
    EXPECT_FALSE(region->rkey().empty());

    std::vector<uint8_t> dst(kSize, 0);
    Status s = ts[0]->get(1, region->remote_address(), region->rkey(), dst.data(), dst.size(), 20s);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(checksum(dst.data(), dst.size()), checksum(src.data(), src.size()));

    // A sub-range at an odd offset, reusing the cached rkey.
    std::vector<uint8_t> part(1000, 0);
    s = ts[0]->get(1, region->remote_address() + 12345, region->rkey(), part.data(), part.size());
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(0, std::memcmp(part.data(), src.data() + 12345, part.size()));
  }
  testing::shutdown_all(ts);
}

TEST(TransportRma, GetOfUcxAllocatedRegion) {
  auto ts = make_connected(2, nullptr);
  ASSERT_EQ(ts.size(), 2u);
  {
    auto region = MemoryRegion::allocate(*ts[0], 1 << 16);
    ASSERT_TRUE(region.is_ok()) << region.status().to_string();
    auto src = pattern(1 << 16, 9);
    std::memcpy(region->data(), src.data(), src.size());
    std::vector<uint8_t> dst(src.size());
    Status s = ts[1]->get(0, region->remote_address(), region->rkey(), dst.data(), dst.size());
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(dst, src);
  }
  testing::shutdown_all(ts);
}

TEST(TransportRma, GetFromDeadPeerFailsFast) {
  auto ts = make_connected(2, nullptr);
  ASSERT_EQ(ts.size(), 2u);
  std::vector<uint8_t> src(4096, 1), dst(4096);
  std::vector<uint8_t> rkey;
  uint64_t addr = 0;
  {
    auto region = MemoryRegion::map(*ts[1], src.data(), src.size());
    ASSERT_TRUE(region.is_ok());
    rkey.assign(region->rkey().begin(), region->rkey().end());
    addr = region->remote_address();
  }
  ts[1]->shutdown();
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ts[0]->get(1, addr, rkey, dst.data(), dst.size(), 10s).err(), EIO);
  EXPECT_LT(testing::ms_since(start), 1000);
  EXPECT_EQ(ts[0]->get(5, addr, rkey, dst.data(), dst.size()).err(), EIO);
  testing::shutdown_all(ts);
}

TEST(TransportRma, RmaOverTcpIsNotNative) {
  // UCX reads UCX_* when the context is created.
  ScopedEnv tls("UCX_TLS", "tcp");
  auto ts = make_connected(2, nullptr);
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_FALSE(ts[0]->rma_is_native(1));
  EXPECT_FALSE(ts[1]->rma_is_native(0));
  EXPECT_FALSE(ts[0]->rma_is_native(7));  // unknown rank
  EXPECT_FALSE(ts[0]->bulk_uses_rma(1));  // auto follows the probe
  // Emulated RMA still works: a get over tcp.
  auto src = pattern(100000, 3);
  {
    auto region = MemoryRegion::map(*ts[1], src.data(), src.size());
    ASSERT_TRUE(region.is_ok());
    std::vector<uint8_t> dst(src.size());
    Status s = ts[0]->get(1, region->remote_address(), region->rkey(), dst.data(), dst.size());
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(dst, src);
  }
  testing::shutdown_all(ts);
}

TEST(TransportRma, BulkModeCanBeForced) {
  for (BulkMode mode : {BulkMode::kRma, BulkMode::kAm}) {
    Options o;
    o.bulk_mode = mode;
    auto t = Transport::create(o);
    ASSERT_TRUE(t.is_ok());
    EXPECT_EQ((*t)->bulk_uses_rma(0), mode == BulkMode::kRma);
    (*t)->shutdown();
  }
}

}  // namespace
}  // namespace dsdfs::rdma
