// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace dsdfs::rdma {

// Rate limit for log lines caused by network input (a misbehaving peer must
// not flood the log): allow() is true at most once per interval, and
// suppressed() tells how many were swallowed since the last allowed line.
// Thread-safe (lock-free); a race may let one extra line through.
class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::milliseconds interval = std::chrono::seconds(10))
      : interval_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count()) {}

  // Returns true if the caller should log now; then *suppressed is the number
  // of events dropped silently since the previous allowed one.
  bool allow(uint64_t* suppressed) {
    int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    int64_t last = last_ns_.load(std::memory_order_relaxed);
    if (last != kNever && now - last < interval_ns_) {
      count_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (!last_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
      count_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    *suppressed = count_.exchange(0, std::memory_order_relaxed);
    return true;
  }

 private:
  static constexpr int64_t kNever = INT64_MIN;
  const int64_t interval_ns_;
  std::atomic<int64_t> last_ns_{kNever};
  std::atomic<uint64_t> count_{0};
};

}  // namespace dsdfs::rdma
