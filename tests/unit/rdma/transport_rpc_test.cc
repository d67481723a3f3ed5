// SPDX-License-Identifier: Apache-2.0
// Transport RPC: several Transports in one process over UCX loopback
// (meson sets UCX_NET_DEVICES=lo UCX_TLS=self,sm,tcp).
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>

#include "rdma/transport.h"
#include "tests/unit/rdma/transport_test_util.h"

namespace dsdfs::rdma {
namespace {

using namespace std::chrono_literals;
using testing::as_bytes;
using testing::make_connected;
using testing::ms_since;
using testing::pattern;

enum Op : uint16_t {
  kEcho = 1,
  kErrno = 2,     // replies with the errno in payload[0]
  kNever = 3,     // keeps the Responder and never replies
  kCount = 4,     // counts and replies empty
  kDeferred = 5,  // replies from another thread after 50 ms
  kDrop = 6,      // drops the Responder without replying
  kRank = 7,      // replies with the handler's rank
  kSlow = 8,      // replies from another thread after payload[0] * 10 ms
};

// Handlers shared by every rank of a test.
struct Handlers {
  std::atomic<int> count{0};
  std::mutex mu;
  std::vector<Responder> parked;  // guarded by mu
  std::vector<std::thread> threads;

  void install(int rank, Transport& t) {
    ASSERT_TRUE(t.register_handler(kEcho, [](int, std::span<const uint8_t> p, Responder r) {
                   r.reply(p);
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kErrno, [](int, std::span<const uint8_t> p, Responder r) {
                   r.reply_error(p.empty() ? EINVAL : p[0]);
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kNever, [this](int, std::span<const uint8_t>, Responder r) {
                   std::lock_guard<std::mutex> lock(mu);
                   parked.push_back(std::move(r));
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kCount, [this](int, std::span<const uint8_t>, Responder r) {
                   count++;
                   r.reply(std::span<const uint8_t>());
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kDeferred, [this](int, std::span<const uint8_t> p, Responder r) {
                   std::vector<uint8_t> copy(p.begin(), p.end());
                   std::lock_guard<std::mutex> lock(mu);
                   threads.emplace_back([r = std::move(r), copy]() mutable {
                     std::this_thread::sleep_for(50ms);
                     r.reply(copy);
                   });
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kSlow, [this](int, std::span<const uint8_t> p, Responder r) {
                   const auto delay = std::chrono::milliseconds(10 * (p.empty() ? 0 : p[0]));
                   std::lock_guard<std::mutex> lock(mu);
                   threads.emplace_back([r = std::move(r), delay]() mutable {
                     std::this_thread::sleep_for(delay);
                     r.reply(std::span<const uint8_t>());
                   });
                 }).is_ok());
    ASSERT_TRUE(t.register_handler(kDrop, [](int, std::span<const uint8_t>, Responder) {}).is_ok());
    ASSERT_TRUE(t.register_handler(kRank, [rank](int, std::span<const uint8_t>, Responder r) {
                   uint8_t b = static_cast<uint8_t>(rank);
                   r.reply(std::span<const uint8_t>(&b, 1));
                 }).is_ok());
  }
  ~Handlers() {
    for (auto& th : threads) th.join();
  }
};

class TransportRpc : public ::testing::Test {
 protected:
  void SetUp() override {
    ts_ = make_connected(3, [this](int r, Transport& t) { h_.install(r, t); });
    ASSERT_EQ(ts_.size(), 3u);
  }
  void TearDown() override { testing::shutdown_all(ts_); }

  Handlers h_;
  std::vector<std::unique_ptr<Transport>> ts_;
};

TEST_F(TransportRpc, EchoRoundTrip) {
  auto msg = pattern(100);
  auto r = ts_[0]->call(1, kEcho, msg);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(*r, msg);
}

TEST_F(TransportRpc, ZeroOneAndEightMiBPayloads) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{8} << 20}) {
    auto msg = pattern(n, 7);
    auto r = ts_[1]->call(2, kEcho, msg, 20s);
    ASSERT_TRUE(r.is_ok()) << n << ": " << r.status().to_string();
    EXPECT_EQ(r->size(), n);
    EXPECT_TRUE(*r == msg) << "payload of " << n << " bytes corrupted";
  }
}

TEST_F(TransportRpc, CallToSelfWorks) {
  auto r = ts_[2]->call(2, kRank, {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0], 2);
}

TEST_F(TransportRpc, RemoteErrnoComesBackUnchanged) {
  uint8_t e = ENOENT;
  auto r = ts_[0]->call(1, kErrno, std::span<const uint8_t>(&e, 1));
  EXPECT_EQ(r.err(), ENOENT);
  e = EEXIST;
  r = ts_[0]->call(2, kErrno, std::span<const uint8_t>(&e, 1));
  EXPECT_EQ(r.err(), EEXIST);
}

TEST_F(TransportRpc, UnknownOpIsENOSYS) {
  auto r = ts_[0]->call(1, 999, {});
  EXPECT_EQ(r.err(), ENOSYS);
}

TEST_F(TransportRpc, UnknownRankIsEIO) {
  EXPECT_EQ(ts_[0]->call(3, kEcho, {}).err(), EIO);
  EXPECT_EQ(ts_[0]->call(-1, kEcho, {}).err(), EIO);
}

TEST_F(TransportRpc, HandlerThatNeverRepliesTimesOut) {
  auto start = std::chrono::steady_clock::now();
  auto r = ts_[0]->call(1, kNever, {}, 300ms);
  long long ms = ms_since(start);
  EXPECT_EQ(r.err(), ETIMEDOUT);
  EXPECT_GE(ms, 300);
  EXPECT_LT(ms, 300 + 500);
  // The transport still works after a timeout.
  EXPECT_TRUE(ts_[0]->call(1, kEcho, {}).is_ok());
}

TEST_F(TransportRpc, DroppedResponderAnswersEIO) {
  auto start = std::chrono::steady_clock::now();
  auto r = ts_[0]->call(2, kDrop, {}, 5s);
  EXPECT_EQ(r.err(), EIO);
  EXPECT_LT(ms_since(start), 2000);
}

TEST_F(TransportRpc, ReplyFromAnotherThread) {
  auto msg = pattern(33);
  auto r = ts_[2]->call(0, kDeferred, msg);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(*r, msg);
}

TEST_F(TransportRpc, ManyConcurrentCallsFromSeveralThreads) {
  constexpr int kThreads = 8;
  constexpr int kCalls = 150;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int c = 0; c < kCalls; ++c) {
        int from = i % 3;
        int to = (i + c) % 3;
        auto msg = pattern(static_cast<size_t>((c * 997) % 20000), static_cast<uint8_t>(c));
        auto r = ts_[static_cast<size_t>(from)]->call(to, kEcho, msg);
        if (r.is_ok() && *r == msg) ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kCalls);
}

TEST_F(TransportRpc, AsyncCallsAndFanOut) {
  std::vector<int> ranks = {0, 1, 2};
  auto results = ts_[1]->call_many(ranks, kRank, {}, 5s);
  ASSERT_EQ(results.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(results[static_cast<size_t>(r)].is_ok());
    EXPECT_EQ(results[static_cast<size_t>(r)].value()[0], r);
  }
  std::atomic<int> done{0};
  for (int i = 0; i < 50; ++i) {
    ts_[0]->call_async(i % 3, kCount, {}, 5s, [&](Transport::CallResult r) {
      if (r.is_ok()) done++;
    });
  }
  for (int i = 0; i < 500 && done.load() < 50; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(done.load(), 50);
}

TEST_F(TransportRpc, FanOutReportsEachFailureSeparately) {
  std::vector<int> ranks = {1, 2};
  uint8_t e = EACCES;
  auto results = ts_[0]->call_many(ranks, kErrno, std::span<const uint8_t>(&e, 1), 5s);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].err(), EACCES);
  EXPECT_EQ(results[1].err(), EACCES);
}

TEST_F(TransportRpc, RegisterHandlerAfterConnectIsRefused) {
  Status s = ts_[0]->register_handler(42, [](int, std::span<const uint8_t>, Responder) {});
  EXPECT_EQ(s.err(), EBUSY);
}

TEST_F(TransportRpc, MalformedMessagesAreDroppedWithoutHarm) {
  WireHeader good;
  good.op = kCount;
  good.source_rank = 0;
  good.request_id = 12345;
  good.job_key = testing::kJobKey;
  std::array<uint8_t, kWireHeaderSize> b{};

  // Truncated header.
  wire_header_encode(good, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, std::span<const uint8_t>(b.data(), 10), {}).is_ok());
  // No header at all, some data.
  auto junk = pattern(64);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, {}, junk).is_ok());
  // Bad magic.
  b[0] ^= 0xff;
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, {}).is_ok());
  // Wrong version.
  WireHeader h = good;
  h.version = kWireVersion + 7;
  wire_header_encode(h, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, {}).is_ok());
  // Length field disagrees with the data.
  h = good;
  h.payload_length = 5;
  wire_header_encode(h, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, junk).is_ok());
  // Source rank out of range.
  h = good;
  h.source_rank = 77;
  wire_header_encode(h, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, {}).is_ok());
  // Wrong job key.
  h = good;
  h.job_key = 1;
  wire_header_encode(h, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, {}).is_ok());
  // A reply nobody asked for.
  h = good;
  h.flags = kWireFlagReply;
  h.request_id = 987654321;
  wire_header_encode(h, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, {}).is_ok());
  // Large malformed message (rendezvous path) with a bad header.
  auto big = pattern(1 << 20);
  h = good;
  h.payload_length = 3;
  wire_header_encode(h, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, big).is_ok());

  // None of them reached a handler, and rank 1 still serves.
  auto r = ts_[0]->call(1, kEcho, junk);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(*r, junk);
  EXPECT_EQ(h_.count.load(), 0);
  // A well-formed raw request does reach the handler (the test is not vacuous).
  wire_header_encode(good, b);
  EXPECT_TRUE(ts_[0]->send_raw_for_testing(1, b, {}).is_ok());
  for (int i = 0; i < 200 && h_.count.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(h_.count.load(), 1);
}

TEST(TransportJobKey, WrongJobKeyIsDroppedAndNeverHandled) {
  std::atomic<int> handled{0};
  auto ts = make_connected(
      2,
      [&](int, Transport& t) {
        ASSERT_TRUE(t.register_handler(kCount, [&](int, std::span<const uint8_t>, Responder r) {
                       handled++;
                       r.reply(std::span<const uint8_t>());
                     }).is_ok());
      },
      {111, 222});
  ASSERT_EQ(ts.size(), 2u);
  auto start = std::chrono::steady_clock::now();
  auto r = ts[0]->call(1, kCount, {}, 300ms);
  EXPECT_EQ(r.err(), ETIMEDOUT);
  EXPECT_LT(ms_since(start), 800);
  EXPECT_EQ(handled.load(), 0);
  // Same-key calls (to self) work.
  EXPECT_TRUE(ts[0]->call(0, kCount, {}).is_ok());
  EXPECT_EQ(handled.load(), 1);
  testing::shutdown_all(ts);
}

TEST(TransportPeerLoss, PeerShutdownFailsOutstandingAndNewCallsFast) {
  Handlers h;
  auto ts = make_connected(3, [&](int r, Transport& t) { h.install(r, t); });
  ASSERT_EQ(ts.size(), 3u);
  std::atomic<int> err{0};
  std::atomic<long long> elapsed{0};
  auto start = std::chrono::steady_clock::now();
  std::thread caller([&] {
    auto r = ts[0]->call(1, kNever, {}, 20s);
    err = r.err();
    elapsed = ms_since(start);
  });
  // Wait until rank 1 holds the request.
  for (int i = 0; i < 400; ++i) {
    {
      std::lock_guard<std::mutex> lock(h.mu);
      if (!h.parked.empty()) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  ts[1]->shutdown();
  caller.join();
  EXPECT_EQ(err.load(), EIO);
  EXPECT_LT(elapsed.load(), 5000);

  start = std::chrono::steady_clock::now();
  EXPECT_EQ(ts[0]->call(1, kEcho, {}, 10s).err(), EIO);
  EXPECT_EQ(ts[2]->call(1, kEcho, {}, 10s).err(), EIO);
  EXPECT_LT(ms_since(start), 1000);
  EXPECT_FALSE(ts[0]->peer_alive(1));
  EXPECT_TRUE(ts[0]->peer_alive(2));
  // The survivors still talk to each other.
  EXPECT_TRUE(ts[0]->call(2, kEcho, {}).is_ok());
  EXPECT_TRUE(ts[2]->call(0, kEcho, {}).is_ok());
  // A call on the shut-down transport itself fails at once.
  EXPECT_EQ(ts[1]->call(0, kEcho, {}).err(), EIO);
  {
    std::lock_guard<std::mutex> lock(h.mu);
    h.parked.clear();  // replies after shutdown are dropped quietly
  }
  testing::shutdown_all(ts);
}

TEST(TransportPeerLoss, DestroyedPeerFailsCallsFast) {
  Handlers h;
  auto ts = make_connected(2, [&](int r, Transport& t) { h.install(r, t); });
  ASSERT_EQ(ts.size(), 2u);
  ts[1].reset();  // the destructor shuts down (and warns)
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ts[0]->call(1, kEcho, {}, 10s).err(), EIO);
  EXPECT_LT(ms_since(start), 1000);
  ts[0]->shutdown();
}

TEST(TransportPeerLoss, CrashedPeerFailsOutstandingCallsBeforeTheTimeout) {
  // No goodbye: only the UCX endpoint error callback can tell rank 0.
  Handlers h;
  auto ts = make_connected(2, [&](int r, Transport& t) { h.install(r, t); });
  ASSERT_EQ(ts.size(), 2u);
  std::atomic<int> err{0};
  auto start = std::chrono::steady_clock::now();
  std::thread caller([&] { err = ts[0]->call(1, kNever, {}, 20s).err(); });
  for (int i = 0; i < 400; ++i) {
    {
      std::lock_guard<std::mutex> lock(h.mu);
      if (!h.parked.empty()) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  ts[1]->crash_for_testing();
  caller.join();
  EXPECT_EQ(err.load(), EIO);
  EXPECT_LT(ms_since(start), 5000);  // well before the 20 s timeout
  EXPECT_FALSE(ts[0]->peer_alive(1));
  EXPECT_EQ(ts[0]->call(1, kEcho, {}, 10s).err(), EIO);
  {
    std::lock_guard<std::mutex> lock(h.mu);
    h.parked.clear();
  }
  testing::shutdown_all(ts);
}

TEST(TransportIdle, IdleProgressThreadUsesAlmostNoCpu) {
  Handlers h;
  auto ts = make_connected(2, [&](int r, Transport& t) { h.install(r, t); });
  ASSERT_EQ(ts.size(), 2u);
  ASSERT_TRUE(ts[0]->call(1, kEcho, {}).is_ok());
  std::this_thread::sleep_for(100ms);
  auto before0 = ts[0]->progress_thread_cpu_time();
  auto before1 = ts[1]->progress_thread_cpu_time();
  std::this_thread::sleep_for(1s);
  auto used0 = ts[0]->progress_thread_cpu_time() - before0;
  auto used1 = ts[1]->progress_thread_cpu_time() - before1;
  EXPECT_LT(used0, 20ms) << std::chrono::duration_cast<std::chrono::microseconds>(used0).count()
                         << " us";
  EXPECT_LT(used1, 20ms) << std::chrono::duration_cast<std::chrono::microseconds>(used1).count()
                         << " us";
  // And it wakes up for work after sleeping.
  EXPECT_TRUE(ts[1]->call(0, kEcho, {}).is_ok());
  testing::shutdown_all(ts);
}

}  // namespace

// A peer that answers nothing at all while calls to it time out (a node cut
// off, or frozen) is declared dead after Options::dead_after, as if UCX had
// reported its endpoint failed; what it sends later is dropped. A peer that
// is slow but still sends something is not.
TEST(TransportSilence, APeerSilentPastDeadAfterIsDeclaredDeadAndABusyOneIsNot) {
  Handlers h;
  auto ts = make_connected(
      3, [&h](int r, Transport& t) { h.install(r, t); }, {}, std::chrono::seconds(10), 600ms);
  ASSERT_EQ(ts.size(), 3u);
  // Rank 1 keeps every request of rank 0 unanswered: timeouts of 150 ms, and
  // nothing from rank 1 in between.
  auto start = std::chrono::steady_clock::now();
  int calls = 0;
  while (ts[0]->peer_alive(1) && ms_since(start) < 5000) {
    auto r = ts[0]->call(1, kNever, {}, 150ms);
    EXPECT_FALSE(r.is_ok());
    ++calls;
  }
  EXPECT_FALSE(ts[0]->peer_alive(1)) << "rank 1 silent for 5 s is still alive";
  EXPECT_GE(ms_since(start), 600) << "declared dead before dead_after";
  EXPECT_GE(calls, 4);
  EXPECT_EQ(ts[0]->call(1, kEcho, {}).err(), EIO) << "calls to a dead rank fail at once";
  // Rank 2 answers slowly (each call times out) but answers: it stays alive.
  start = std::chrono::steady_clock::now();
  while (ms_since(start) < 1200) {
    auto r = ts[0]->call(2, kDeferred, pattern(8), 20ms);  // the reply comes 50 ms later
    EXPECT_EQ(r.err(), ETIMEDOUT);
    std::this_thread::sleep_for(40ms);
  }
  EXPECT_TRUE(ts[0]->peer_alive(2)) << "a slow rank that still answers was declared dead";
  {
    std::lock_guard<std::mutex> lock(h.mu);
    h.parked.clear();  // rank 1's late answers (EIO) are dropped by rank 0
  }
  testing::shutdown_all(ts);
}

// A rank that is alive but slow to answer (its store waits for the disk,
// its handler for a lock) tells the caller so (progress notices), and the
// caller waits for the answer past its timeout, up to kMaxStretch times it;
// a handler that never answers still fails the call within that limit.
TEST(TransportProgress, ASlowButLiveRankIsWaitedForWithinTheStretchLimit) {
  Handlers h;
  auto ts = make_connected(2, [&h](int r, Transport& t) { h.install(r, t); }, {}, 200ms);
  ASSERT_EQ(ts.size(), 2u);
  uint8_t tenths = 60;  // 600 ms: three times the call's timeout
  auto start = std::chrono::steady_clock::now();
  auto r = ts[0]->call(1, kSlow, std::span<const uint8_t>(&tenths, 1), 200ms);
  EXPECT_TRUE(r.is_ok()) << "a slow answer of a live rank was given up on: " << r.status().to_string();
  EXPECT_GE(ms_since(start), 600);
  start = std::chrono::steady_clock::now();
  r = ts[0]->call(1, kNever, {}, 200ms);
  const long long ms = ms_since(start);
  EXPECT_EQ(r.err(), ETIMEDOUT);
  EXPECT_GE(ms, 200 * (Transport::kMaxStretch - 1)) << "gave up before the stretch limit";
  EXPECT_LT(ms, 200 * Transport::kMaxStretch + 500) << "waited past the stretch limit";
  EXPECT_TRUE(ts[0]->peer_alive(1));
  {
    std::lock_guard<std::mutex> lock(h.mu);
    h.parked.clear();
  }
  testing::shutdown_all(ts);
}

}  // namespace dsdfs::rdma
