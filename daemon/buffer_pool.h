// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/mutex.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace dsdfs::fs {

// Reusable I/O buffers of one size, handed out as shared_ptrs that give the
// buffer back when the last reference goes (for a reply: once the transport
// has sent it). Buffers are not zeroed and keep their pages, so a reused
// buffer costs neither a memset nor page faults. At most `keep` free buffers
// are kept. Thread-safe; buffers may outlive the pool.
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static std::shared_ptr<BufferPool> create(size_t buffer_size, size_t keep) {
    return std::shared_ptr<BufferPool>(new BufferPool(buffer_size, keep));
  }
  size_t buffer_size() const { return size_; }

  std::shared_ptr<uint8_t> get() {
    uint8_t* p = nullptr;
    {
      MutexLock lock(mu_);
      if (!free_.empty()) {
        p = free_.back().release();
        free_.pop_back();
      }
    }
    if (p == nullptr) p = new uint8_t[size_];
    return std::shared_ptr<uint8_t>(p, [pool = weak_from_this()](uint8_t* b) {
      if (auto self = pool.lock()) return self->put(b);
      delete[] b;
    });
  }

 private:
  BufferPool(size_t size, size_t keep) : size_(size), keep_(keep) {}
  void put(uint8_t* b) {
    std::unique_ptr<uint8_t[]> owned(b);
    MutexLock lock(mu_);
    if (free_.size() < keep_) free_.push_back(std::move(owned));
  }

  const size_t size_;
  const size_t keep_;
  Mutex mu_;
  std::vector<std::unique_ptr<uint8_t[]>> free_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
