// SPDX-License-Identifier: Apache-2.0
#include "rdma/responder.h"

#include <cerrno>
#include <utility>
#include <vector>

#include "common/log.h"
#include "rdma/transport.h"

namespace dsdfs::rdma {

Responder::Responder(Responder&& o) noexcept
    : queue_(std::move(o.queue_)),
      transport_(o.transport_),
      rank_(o.rank_),
      op_(o.op_),
      request_id_(o.request_id_) {
  o.queue_.reset();
}

Responder& Responder::operator=(Responder&& o) noexcept {
  if (this != &o) {
    if (pending()) {
      DSDFS_WARN("Responder for op %u from rank %d overwritten unreplied; answering EIO", op_,
                 rank_);
      send(EIO, {});
    }
    queue_ = std::move(o.queue_);
    o.queue_.reset();
    transport_ = o.transport_;
    rank_ = o.rank_;
    op_ = o.op_;
    request_id_ = o.request_id_;
  }
  return *this;
}

Responder::~Responder() {
  if (pending()) {
    DSDFS_WARN("Responder for op %u from rank %d dropped unreplied; answering EIO", op_, rank_);
    send(EIO, {});
  }
}

void Responder::reply(std::span<const uint8_t> payload) {
  send(0, std::vector<uint8_t>(payload.begin(), payload.end()));
}

void Responder::reply(std::vector<uint8_t>&& payload) { send(0, std::move(payload)); }

void Responder::reply(std::span<const uint8_t> payload, std::shared_ptr<const void> keepalive) {
  send(0, OutPayload(payload, std::move(keepalive)));
}

void Responder::reply_error(int err) {
  send(err > 0 && err <= kWireMaxErrno ? err : EIO, {});
}

void Responder::send(int err, OutPayload payload) {
  if (!pending()) {
    DSDFS_ERROR("INTERNAL ERROR: second reply to op %u from rank %d ignored", op_, rank_);
    return;
  }
  std::shared_ptr<SubmitQueue> queue = std::move(queue_);
  queue_.reset();
  // Always queued, even on the progress thread: one path, and the reply goes
  // out after the handler returned.
  SubmitQueue::Task task = [t = transport_, rank = rank_, op = op_, id = request_id_, err,
                            data = std::move(payload)]() mutable {
    t->send_reply(rank, op, id, err, std::move(data));
  };
  if (!queue->push(&task)) {
    DSDFS_DEBUG("reply to op %u from rank %d dropped: transport is shut down", op_, rank_);
  }
}

}  // namespace dsdfs::rdma
