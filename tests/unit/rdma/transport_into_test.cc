// SPDX-License-Identifier: Apache-2.0
// Zero-copy paths of the transport: replies received into the caller's
// buffer (call_into_async), replies sent from borrowed bytes, and get_async.
#include <gtest/gtest.h>

#include <algorithm>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "rdma/memory.h"
#include "rdma/transport.h"
#include "tests/unit/rdma/transport_test_util.h"

namespace dsdfs::rdma {
namespace {

using namespace std::chrono_literals;
using testing::make_connected;
using testing::pattern;

enum Op : uint16_t {
  kSized = 1,     // replies with pattern(n) for n = the u32 in the payload, from borrowed bytes
  kErrno = 2,     // replies with the errno in payload[0]
  kNever = 3,     // keeps the Responder and never replies
};

// Keepalives of the borrowed replies sent so far (to see them released).
struct Borrowed {
  std::mutex mu;
  std::vector<std::weak_ptr<const void>> sent;  // guarded by mu
  std::vector<Responder> parked;                // guarded by mu
};

std::vector<std::unique_ptr<Transport>> make_pair_with_handlers(Borrowed* b) {
  return make_connected(2, [b](int, Transport& t) {
    ASSERT_TRUE(t.register_handler(kSized, [b](int, std::span<const uint8_t> p, Responder r) {
                   uint32_t n = 0;
                   std::memcpy(&n, p.data(), std::min<size_t>(p.size(), 4));
                   auto bytes = std::make_shared<std::vector<uint8_t>>(pattern(n, 9));
                   {
                     std::lock_guard lock(b->mu);
                     b->sent.push_back(bytes);
                   }
                   std::span<const uint8_t> view(*bytes);
                   r.reply(view, std::move(bytes));
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kErrno, [](int, std::span<const uint8_t> p, Responder r) {
                   r.reply_error(p.empty() ? EINVAL : p[0]);
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kNever, [b](int, std::span<const uint8_t>, Responder r) {
                   std::lock_guard lock(b->mu);
                   b->parked.push_back(std::move(r));
                 }).is_ok());
  });
}

// call_into_async made blocking for the tests.
Result<size_t> call_into(Transport& t, int rank, uint16_t op, std::span<const uint8_t> payload,
                         std::span<uint8_t> dst, std::shared_ptr<void> keepalive,
                         std::chrono::milliseconds timeout = 20s) {
  std::promise<Result<size_t>> done;
  auto f = done.get_future();
  t.call_into_async(rank, op, payload, dst, std::move(keepalive), timeout,
                    [&done](Result<size_t> r) { done.set_value(std::move(r)); });
  return f.get();
}

std::vector<uint8_t> u32_payload(uint32_t n) {
  std::vector<uint8_t> p(4);
  std::memcpy(p.data(), &n, 4);
  return p;
}

TEST(TransportInto, RepliesLandInTheCallersBuffer) {
  Borrowed b;
  auto ts = make_pair_with_handlers(&b);
  ASSERT_EQ(ts.size(), 2u);
  // 0 and 100 bytes come eagerly; 4 MiB by rendezvous, straight into dst.
  for (uint32_t n : {0u, 100u, 4u << 20}) {
    auto dst = std::make_shared<std::vector<uint8_t>>(n + 16, 0xee);
    auto r = call_into(*ts[0], 1, kSized, u32_payload(n), std::span<uint8_t>(*dst), dst);
    ASSERT_TRUE(r.is_ok()) << n << ": " << r.status().to_string();
    EXPECT_EQ(r.value(), n);
    auto want = pattern(n, 9);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), dst->begin())) << n << " bytes corrupted";
    EXPECT_EQ((*dst)[n], 0xee) << "written past the reply";
  }
  testing::shutdown_all(ts);
  // Every borrowed reply buffer was released once sent.
  std::lock_guard lock(b.mu);
  for (auto& w : b.sent) EXPECT_TRUE(w.expired());
}

TEST(TransportInto, ReplyLargerThanTheBufferIsEMSGSIZE) {
  Borrowed b;
  auto ts = make_pair_with_handlers(&b);
  for (uint32_t n : {64u, 2u << 20}) {
    std::vector<uint8_t> dst(n / 2, 0xee);
    auto r = call_into(*ts[0], 1, kSized, u32_payload(n), std::span<uint8_t>(dst), nullptr);
    EXPECT_EQ(r.err(), EMSGSIZE) << n;
    EXPECT_EQ(dst.front(), 0xee) << "a refused reply was written";
  }
  // The transport keeps working.
  std::vector<uint8_t> dst(10);
  EXPECT_TRUE(call_into(*ts[0], 1, kSized, u32_payload(10), std::span<uint8_t>(dst), nullptr).is_ok());
  testing::shutdown_all(ts);
}

TEST(TransportInto, ErrorsAndTimeoutsReachTheCallback) {
  Borrowed b;
  auto ts = make_pair_with_handlers(&b);
  std::vector<uint8_t> dst(16);
  uint8_t e = ESTALE;
  EXPECT_EQ(call_into(*ts[0], 1, kErrno, std::span<const uint8_t>(&e, 1), std::span<uint8_t>(dst), nullptr).err(),
            ESTALE);
  auto keep = std::make_shared<int>(1);
  std::weak_ptr<int> weak = keep;
  EXPECT_EQ(call_into(*ts[0], 1, kNever, {}, std::span<uint8_t>(dst), std::move(keep), 200ms).err(), ETIMEDOUT);
  EXPECT_TRUE(weak.expired()) << "the keepalive of a finished call is still held";
  EXPECT_EQ(call_into(*ts[0], 7, kSized, {}, std::span<uint8_t>(dst), nullptr).err(), EIO);
  {
    std::lock_guard lock(b.mu);
    b.parked.clear();  // answers EIO to a call that is gone
  }
  testing::shutdown_all(ts);
}

TEST(TransportInto, GetAsyncFillsTheBufferAndReportsFailures) {
  auto ts = make_connected(2, nullptr);
  ASSERT_EQ(ts.size(), 2u);
  auto src = pattern(3u << 20, 5);
  {
    auto region = MemoryRegion::map(*ts[1], src.data(), src.size());
    ASSERT_TRUE(region.is_ok()) << region.status().to_string();
    auto dst = std::make_shared<std::vector<uint8_t>>(src.size(), 0);
    std::weak_ptr<std::vector<uint8_t>> weak = dst;
    std::promise<Status> done;
    ts[0]->get_async(1, region->remote_address(), region->rkey(), dst->data(), dst->size(), dst, 20s,
                     [&done](Status s) { done.set_value(std::move(s)); });
    Status s = done.get_future().get();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_TRUE(*dst == src);
    dst.reset();
    EXPECT_TRUE(weak.expired()) << "get_async still holds the keepalive";

    std::promise<Status> bad;
    uint8_t byte = 0;
    ts[0]->get_async(9, region->remote_address(), region->rkey(), &byte, 1, nullptr, 1s,
                     [&bad](Status st) { bad.set_value(std::move(st)); });
    EXPECT_EQ(bad.get_future().get().err(), EIO);
  }
  testing::shutdown_all(ts);
}

}  // namespace
}  // namespace dsdfs::rdma
