// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "rdma/payload.h"

namespace dsdfs::rdma {

class SubmitQueue;
class Transport;

// The right (and duty) to answer one request exactly once. Move-only.
// A handler may reply at once or move the Responder to another thread and
// reply later; replies are queued to the progress thread, so reply() may be
// called from any thread and never blocks on the network. Dropping a
// Responder that has not replied sends EIO (and logs), so a forgotten reply
// costs the caller an error, not a timeout.
//
// Thread-safety: one Responder is used by one thread at a time. It may
// outlive its Transport; replies after shutdown() are dropped.
class Responder {
 public:
  Responder() = default;
  Responder(Responder&& o) noexcept;
  Responder& operator=(Responder&& o) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  // Success with a payload (copied).
  void reply(std::span<const uint8_t> payload);
  // Success with a payload handed over (not copied).
  void reply(std::vector<uint8_t>&& payload);
  // Success with bytes borrowed (not copied): keepalive keeps them valid and
  // unchanged until they are sent.
  void reply(std::span<const uint8_t> payload, std::shared_ptr<const void> keepalive);
  // Failure: err is a positive errno (clamped to EIO if not in 1..4095).
  void reply_error(int err);
  // True until a reply was sent (or the Responder was moved from).
  bool pending() const { return queue_ != nullptr; }
  int source_rank() const { return rank_; }

 private:
  friend class Transport;
  Responder(std::shared_ptr<SubmitQueue> queue, Transport* transport, int rank, uint16_t op,
            uint64_t request_id)
      : queue_(std::move(queue)),
        transport_(transport),
        rank_(rank),
        op_(op),
        request_id_(request_id) {}
  void send(int err, OutPayload payload);

  std::shared_ptr<SubmitQueue> queue_;  // null once replied or moved from
  Transport* transport_ = nullptr;      // used only on the progress thread
  int rank_ = -1;
  uint16_t op_ = 0;
  uint64_t request_id_ = 0;
};

}  // namespace dsdfs::rdma
