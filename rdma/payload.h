// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace dsdfs::rdma {

// The bytes of an outgoing message: a vector handed over, or bytes borrowed
// from a buffer that `keepalive` keeps valid and unchanged until the send
// has completed, so that large replies go out without a copy. Copies share
// the bytes.
class OutPayload {
 public:
  OutPayload() = default;
  OutPayload(std::vector<uint8_t> owned)  // NOLINT: implicit by design
      : keepalive_(owned.empty() ? nullptr : std::make_shared<std::vector<uint8_t>>(std::move(owned))) {
    if (keepalive_) bytes_ = *static_cast<const std::vector<uint8_t>*>(keepalive_.get());
  }
  OutPayload(std::span<const uint8_t> borrowed, std::shared_ptr<const void> keepalive)
      : keepalive_(std::move(keepalive)), bytes_(borrowed) {}

  std::span<const uint8_t> bytes() const { return bytes_; }
  size_t size() const { return bytes_.size(); }
  // Drops the bytes (an error reply carries none).
  void clear() { *this = OutPayload(); }

 private:
  std::shared_ptr<const void> keepalive_;
  std::span<const uint8_t> bytes_;
};

}  // namespace dsdfs::rdma
