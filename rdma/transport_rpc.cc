// SPDX-License-Identifier: Apache-2.0
// Transport: RPC over active messages (calls, replies, receive path).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <condition_variable>
#include <optional>
#include <string>

#include "common/mutex.h"
#include "common/log.h"
#include "common/noexcept_boundary.h"
#include "rdma/status_map.h"
#include "rdma/transport.h"
#include "rdma/transport_ops.h"

namespace dsdfs::rdma {
namespace {

std::string call_name(int rank, uint16_t op) {
  return "rank " + std::to_string(rank) + " op " + std::to_string(op);
}

}  // namespace

Status Transport::register_handler(uint16_t op, Handler handler) {
  auto result = std::make_shared<Status>();
  Status s = run_on_progress_thread([this, op, h = std::move(handler), result]() mutable {
    if (endpoints_.connected()) {
      *result = Status::error(EBUSY, "register_handler after connect_all");
      return;
    }
    handlers_[op] = std::move(h);
  });
  return s ? *result : s;
}

Status Transport::connect_all(const std::vector<std::vector<uint8_t>>& addresses_by_rank) {
  if (on_progress_thread()) return Status::error(EDEADLK, "connect_all on the progress thread");
  auto result = std::make_shared<Status>();
  Status s = run_on_progress_thread([this, addresses = addresses_by_rank, result] {
    *result = endpoints_.connect_all(worker_.get(), addresses, &Transport::ep_error_cb, this);
    if (result->is_ok()) {
      MutexLock lock(addresses_mu_);
      addresses_ = addresses;
    }
  });
  if (!s) return s;
  if (result->is_ok()) connected_.store(true);
  return *result;
}

Status Transport::readmit(int rank, std::vector<uint8_t> address) {
  if (rank < 0 || rank >= options_.nranks || rank == options_.rank) {
    return Status::error(EINVAL, "readmit: bad rank " + std::to_string(rank));
  }
  if (address.empty()) return Status::error(EINVAL, "readmit: empty address");
  auto result = std::make_shared<Status>();
  auto work = [this, rank, address = std::move(address), result] {
    Peer* peer = endpoints_.peer(rank);
    if (!peer_dead_[static_cast<size_t>(rank)].load() && peer->ep != nullptr && !peer->failed &&
        peer->address == address) {
      return;  // alive at that address already
    }
    // Calls to the rank's last life are not answered by the new one.
    fail_calls_to(rank, EIO);
    *result = endpoints_.reconnect(worker_.get(), rank, address, &Transport::ep_error_cb, this);
    if (!result->is_ok()) return;
    {
      MutexLock lock(addresses_mu_);
      addresses_[static_cast<size_t>(rank)] = address;
    }
    last_heard_[static_cast<size_t>(rank)] = Clock::now();
    silent_since_[static_cast<size_t>(rank)] = Clock::time_point{};
    peer_dead_[static_cast<size_t>(rank)].store(false);
    DSDFS_INFO("rank %d is back (its daemon was restarted); connected to its new worker", rank);
  };
  if (!connected_.load()) return Status::error(ENOTCONN, "readmit before connect_all");
  if (on_progress_thread()) {
    work();
    return *result;
  }
  Status s = run_on_progress_thread(std::move(work));
  return s ? *result : s;
}

std::vector<uint8_t> Transport::address_of(int rank) const {
  MutexLock lock(addresses_mu_);
  if (rank < 0 || static_cast<size_t>(rank) >= addresses_.size()) return {};
  return addresses_[static_cast<size_t>(rank)];
}

WireHeader Transport::make_header(uint16_t op, uint16_t flags, uint64_t request_id, int32_t status,
                                  size_t payload_length) const {
  WireHeader h;
  h.op = op;
  h.flags = flags;
  h.source_rank = static_cast<uint32_t>(options_.rank);
  h.status = status;
  h.payload_length = static_cast<uint32_t>(payload_length);
  h.request_id = request_id;
  h.job_key = options_.job_key;
  return h;
}

void Transport::call_async(int rank, uint16_t op, std::span<const uint8_t> payload,
                           std::chrono::milliseconds timeout, CallCallback done) {
  PendingCall call{};
  call.done = std::move(done);
  call_async_impl(rank, op, payload, timeout, std::move(call));
}

void Transport::call_into_async(int rank, uint16_t op, std::span<const uint8_t> payload,
                                std::span<uint8_t> dst, std::shared_ptr<void> keepalive,
                                std::chrono::milliseconds timeout, IntoCallback done) {
  PendingCall call{};
  call.done_into = std::move(done);
  call.dst = dst.data();
  call.dst_capacity = dst.size();
  call.keepalive = std::move(keepalive);
  call_async_impl(rank, op, payload, timeout, std::move(call));
}

void Transport::call_async_impl(int rank, uint16_t op, std::span<const uint8_t> payload,
                                std::chrono::milliseconds timeout, PendingCall call) {
  auto fail = [&](Status s) { call.fail(std::move(s)); };
  if (rank < 0 || rank >= options_.nranks) {
    return fail(Status::error(EIO, "unknown rank " + std::to_string(rank)));
  }
  if (payload.size() > kWireMaxPayload) {
    return fail(Status::error(EMSGSIZE, call_name(rank, op) + ": payload too large"));
  }
  if (peer_dead_[static_cast<size_t>(rank)].load()) {
    return fail(Status::error(EIO, call_name(rank, op) + ": peer is down"));
  }
  auto shared = std::make_shared<PendingCall>(std::move(call));
  Clock::time_point deadline = Clock::now() + timeout;
  bool queued = submit([this, rank, op, data = std::vector<uint8_t>(payload.begin(), payload.end()),
                        deadline, shared]() mutable {
    start_call(rank, op, std::move(data), deadline, std::move(*shared));
  });
  if (!queued) {
    shared->fail(Status::error(EIO, call_name(rank, op) + ": transport is shut down"));
  }
}

Transport::CallResult Transport::call(int rank, uint16_t op, std::span<const uint8_t> payload,
                                      std::chrono::milliseconds timeout) {
  if (on_progress_thread()) {
    DSDFS_ERROR("INTERNAL ERROR: blocking call(%s) on the progress thread",
                call_name(rank, op).c_str());
    return Status::error(EDEADLK, "blocking call on the progress thread");
  }
  struct Waiter {
    Mutex mu;  // leaf lock
    std::condition_variable_any cv;
    std::optional<CallResult> result;
    std::atomic<bool> done{false};
  };
  auto w = std::make_shared<Waiter>();
  call_async(rank, op, payload, timeout, [w](CallResult r) {
    MutexLock lock(w->mu);
    w->result.emplace(std::move(r));
    w->done.store(true, std::memory_order_release);
    w->cv.notify_all();
  });
  // Most replies come within tens of microseconds: look for a while before
  // sleeping, which saves the wake-up (see kSpinAfterActivity).
  for (auto spin_end = Clock::now() + kSpinAfterActivity;
       !w->done.load(std::memory_order_acquire) && Clock::now() < spin_end;) {
    std::this_thread::yield();
  }
  UniqueMutexLock lock(w->mu);
  // The progress thread enforces the timeout; the grace only guards against
  // a progress thread that is itself stuck.
  if (!w->cv.wait_for(lock, wait_bound(timeout), [&] { return w->result.has_value(); })) {
    DSDFS_ERROR("call(%s): no completion from the progress thread", call_name(rank, op).c_str());
    return Status::error(ETIMEDOUT, call_name(rank, op) + ": progress thread unresponsive");
  }
  return std::move(*w->result);
}

std::vector<Transport::CallResult> Transport::call_many(std::span<const int> ranks, uint16_t op,
                                                        std::span<const uint8_t> payload,
                                                        std::chrono::milliseconds timeout) {
  if (on_progress_thread()) {
    return std::vector<CallResult>(ranks.size(),
                                   Status::error(EDEADLK, "blocking call on the progress thread"));
  }
  struct Waiter {
    Mutex mu;  // leaf lock
    std::condition_variable_any cv;
    std::vector<std::optional<CallResult>> results;
    size_t remaining = 0;
  };
  auto w = std::make_shared<Waiter>();
  w->results.resize(ranks.size());
  w->remaining = ranks.size();
  for (size_t i = 0; i < ranks.size(); ++i) {
    call_async(ranks[i], op, payload, timeout, [w, i](CallResult r) {
      MutexLock lock(w->mu);
      w->results[i].emplace(std::move(r));
      if (--w->remaining == 0) w->cv.notify_all();
    });
  }
  UniqueMutexLock lock(w->mu);
  if (!w->cv.wait_for(lock, wait_bound(timeout), [&] { return w->remaining == 0; })) {
    DSDFS_ERROR("call_many(op %u): no completion from the progress thread", op);
  }
  std::vector<CallResult> out;
  out.reserve(ranks.size());
  for (auto& r : w->results) {
    out.push_back(r.has_value()
                      ? std::move(*r)
                      : CallResult(Status::error(ETIMEDOUT, "progress thread unresponsive")));
  }
  return out;
}

void Transport::start_call(int rank, uint16_t op, std::vector<uint8_t> payload,
                           Clock::time_point deadline, PendingCall call) {
  call.rank = rank;
  call.op = op;
  call.deadline = deadline;
  call.sent = Clock::now();
  call.timeout = std::max<Clock::duration>(deadline - call.sent, Clock::duration::zero());
  uint64_t id = next_request_id_++;
  pending_calls_.emplace(id, std::move(call));
  auto fail = [&](int err, const char* why) {
    complete_call(id, Status::error(err, call_name(rank, op) + ": " + why));
  };
  if (shutting_down_) return fail(EIO, "transport is shut down");
  Peer* peer = endpoints_.find(rank);
  if (peer == nullptr) return fail(EIO, "not connected");
  if (peer->failed) return fail(EIO, "peer is down");
  size_t length = payload.size();
  push_deadline(deadline, id);
  if (!send_message(peer, make_header(op, 0, id, 0, length), std::move(payload))) {
    fail(EIO, "send failed");
  }
}

void Transport::complete_call(uint64_t request_id, CallResult result) {
  auto it = pending_calls_.find(request_id);
  if (it == pending_calls_.end()) return;  // already completed (timeout, failure)
  PendingCall call = std::move(it->second);
  pending_calls_.erase(it);
  // A receive still writing into dst holds its own reference (RecvOp).
  call.keepalive.reset();
  run_at_boundary("rdma call callback", [&] {
    if (!call.done_into) return call.done(std::move(result));
    // An into-call's payload never arrives here (see receive_into()).
    call.fail(result ? Status::error(EPROTO, "reply payload not received into the buffer") : result.status());
  });
}

void Transport::complete_into(uint64_t request_id, size_t length) {
  auto it = pending_calls_.find(request_id);
  if (it == pending_calls_.end()) return;
  PendingCall call = std::move(it->second);
  pending_calls_.erase(it);
  call.keepalive.reset();
  run_at_boundary("rdma call callback", [&] { call.done_into(length); });
}

bool Transport::send_message(Peer* peer, const WireHeader& header, OutPayload payload) {
  std::vector<uint8_t> bytes(kWireHeaderSize);
  wire_header_encode(header, std::span<uint8_t, kWireHeaderSize>(bytes.data(), kWireHeaderSize));
  bool is_call = (header.flags & (kWireFlagReply | kWireFlagGoodbye | kWireFlagProgress)) == 0;
  return send_bytes(peer, std::move(bytes), std::move(payload), is_call ? header.request_id : 0);
}

bool Transport::send_bytes(Peer* peer, std::vector<uint8_t> header, OutPayload payload,
                           uint64_t call_id) {
  auto* op = new SendOp{this, peer->rank, call_id, std::move(header), std::move(payload)};
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = &Transport::send_done_cb;
  param.user_data = op;
  void* request = ucp_am_send_nbx(peer->ep, kAmId, op->header.data(), op->header.size(),
                                  op->payload.bytes().data(), op->payload.size(), &param);
  if (request == nullptr) {  // completed in place; the callback will not run
    delete op;
    return true;
  }
  if (UCS_PTR_IS_ERR(request)) {
    DSDFS_WARN("ucp_am_send_nbx to rank %d failed: %s", peer->rank,
               ucs_status_string(UCS_PTR_STATUS(request)));
    delete op;
    return false;
  }
  return true;  // send_done_cb frees op and the request
}

void Transport::send_done_cb(void* request, ucs_status_t status, void* user_data) noexcept {
  auto* op = static_cast<SendOp*>(user_data);
  run_at_boundary("rdma send completion", [&] {
    if (status != UCS_OK) {
      if (status != UCS_ERR_CANCELED) {
        DSDFS_WARN("active message to rank %d failed: %s", op->rank, ucs_status_string(status));
      }
      if (op->call_id != 0) {
        op->transport->complete_call(
            op->call_id, Status::error(EIO, "send to rank " + std::to_string(op->rank) + ": " +
                                                ucs_status_string(status)));
      }
    }
  });
  ucp_request_free(request);
  delete op;
}

void Transport::send_reply(int rank, uint16_t op, uint64_t request_id, int err,
                           OutPayload payload) {
  serving_.erase({rank, request_id});
  if (shutting_down_) return;
  Peer* peer = endpoints_.find(rank);
  if (peer == nullptr || peer->failed) {
    DSDFS_DEBUG("dropping reply to %s: peer is down", call_name(rank, op).c_str());
    return;
  }
  if (payload.size() > kWireMaxPayload) {
    DSDFS_ERROR("reply to %s: %zu-byte payload too large; sending EMSGSIZE",
                call_name(rank, op).c_str(), payload.size());
    payload.clear();
    err = EMSGSIZE;
  }
  if (err < 0 || err > kWireMaxErrno) err = EIO;
  if (err != 0) payload.clear();
  // Take the length before the payload is moved (argument order is unspecified).
  const WireHeader header = make_header(op, kWireFlagReply, request_id, err, payload.size());
  send_message(peer, header, std::move(payload));
}

Status Transport::send_raw_for_testing(int rank, std::span<const uint8_t> header,
                                       std::span<const uint8_t> payload) {
  auto result = std::make_shared<Status>();
  Status s = run_on_progress_thread([this, rank, result,
                                     h = std::vector<uint8_t>(header.begin(), header.end()),
                                     p = std::vector<uint8_t>(payload.begin(), payload.end())] {
    Peer* peer = endpoints_.find(rank);
    if (peer == nullptr || peer->failed) {
      *result = Status::error(EIO, "peer is down");
      return;
    }
    if (!send_bytes(peer, h, OutPayload(p), 0)) *result = Status::error(EIO, "send failed");
  });
  return s ? *result : s;
}

// ---- receive path ----

ucs_status_t Transport::am_recv_cb(void* arg, const void* header, size_t header_length, void* data,
                                   size_t length, const ucp_am_recv_param_t* param) noexcept {
  ucs_status_t ret = UCS_OK;
  run_at_boundary("rdma AM receive", [&] {
    ret = static_cast<Transport*>(arg)->on_am(header, header_length, data, length, param);
  });
  return ret;
}

// Runs inside ucp_worker_progress: validate, then queue for dispatch_inbox()
// (UCX iodemo: callbacks only queue work). Never acts on unvalidated input.
ucs_status_t Transport::on_am(const void* header, size_t header_length, void* data, size_t length,
                              const ucp_am_recv_param_t* param) {
  WireHeader h;
  std::span<const uint8_t> hbytes(static_cast<const uint8_t*>(header),
                                  header == nullptr ? 0 : header_length);
  WireCheck check = wire_header_decode(hbytes, length, options_.job_key, options_.nranks, &h);
  if (check != WireCheck::kOk) {
    LogLimiter& limiter = check == WireCheck::kBadJobKey ? job_key_log_ : bad_header_log_;
    uint64_t suppressed = 0;
    if (limiter.allow(&suppressed)) {
      DSDFS_WARN(
          "dropping active message (%zu-byte header, %zu-byte data): %s "
          "(%llu similar dropped silently)",
          header_length, length, wire_check_name(check),
          static_cast<unsigned long long>(suppressed));
    }
    return UCS_OK;  // for rendezvous data UCX drops the descriptor
  }
  if (shutting_down_) return UCS_OK;
  const int source = static_cast<int>(h.source_rank);
  if (peer_dead_[static_cast<size_t>(source)].load() &&
      !(accept_from_dead_op_ != 0 && h.op == accept_from_dead_op_ && (h.flags & kWireFlagReply) == 0)) {
    // Declared dead (its endpoint failed, or it was silent too long): this
    // side went on without it, and a rank cut off that long fenced itself.
    // What it sends after coming back is not applied.
    uint64_t suppressed = 0;
    if (dead_peer_log_.allow(&suppressed)) {
      DSDFS_INFO("dropping a message from rank %d, declared dead (%llu similar dropped silently)", source,
                 static_cast<unsigned long long>(suppressed));
    }
    return UCS_OK;
  }
  heard_from(source);
  const bool is_reply = (h.flags & kWireFlagReply) != 0;
  if ((h.flags & kWireFlagGoodbye) != 0) {
    failed_peers_.emplace_back(static_cast<int>(h.source_rank), UCS_OK);
    return UCS_OK;
  }
  if ((h.flags & kWireFlagProgress) != 0) {
    stretch_call(h.request_id, source);
    return UCS_OK;
  }
  if (is_reply) {
    auto it = pending_calls_.find(h.request_id);
    if (it == pending_calls_.end() || it->second.rank != static_cast<int>(h.source_rank)) {
      uint64_t suppressed = 0;
      if (stale_reply_log_.allow(&suppressed)) {
        DSDFS_INFO(
            "dropping reply from rank %u for unknown or expired request %llu "
            "(%llu similar dropped silently)",
            h.source_rank, static_cast<unsigned long long>(h.request_id),
            static_cast<unsigned long long>(suppressed));
      }
      return UCS_OK;
    }
    if (it->second.done_into && h.status == 0) {
      return receive_into(h, it->second, data, length,
                          (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0);
    }
  }

  const uint64_t attr = param->recv_attr;
  if ((attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
    // Rendezvous: data is a descriptor; pull the payload into our buffer.
    auto* op = new RecvOp{this, h, std::vector<uint8_t>(length), length, nullptr, false};
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.recv_am = &Transport::recv_done_cb;
    rp.user_data = op;
    void* request = ucp_am_recv_data_nbx(worker_.get(), data, op->buffer.data(), length, &rp);
    if (request == nullptr) {  // completed in place; the callback will not run
      inbox_.push_back(InMessage{h, std::move(op->buffer), nullptr, 0});
      delete op;
    } else if (UCS_PTR_IS_ERR(request)) {
      DSDFS_WARN("ucp_am_recv_data_nbx from rank %u failed: %s", h.source_rank,
                 ucs_status_string(UCS_PTR_STATUS(request)));
      if (is_reply) complete_call(h.request_id, Status::error(EIO, "receive of reply failed"));
      delete op;
    }
    // UCX owns the descriptor once ucp_am_recv_data_nbx was called.
    return UCS_OK;
  }
  if ((attr & UCP_AM_RECV_ATTR_FLAG_DATA) != 0) {
    // Persistent data: keep it (UCS_INPROGRESS) until dispatch_inbox()
    // releases it with ucp_am_data_release.
    inbox_.push_back(InMessage{h, {}, data, length});
    return UCS_INPROGRESS;
  }
  // Eager data valid only during this callback: copy it.
  const auto* p = static_cast<const uint8_t*>(data);
  inbox_.push_back(InMessage{h, std::vector<uint8_t>(p, p + length), nullptr, 0});
  return UCS_OK;
}

// A reply to call_into_async(): its payload goes into the call's dst. Eager
// data is copied at once; rendezvous data is received there by UCX, and the
// RecvOp holds the keepalive until UCX is done (the call may end first).
ucs_status_t Transport::receive_into(const WireHeader& h, PendingCall& call, void* data,
                                     size_t length, bool rndv) {
  if (length > call.dst_capacity) {
    complete_call(h.request_id, Status::error(EMSGSIZE, "reply larger than the buffer"));
    return UCS_OK;  // UCX drops the data (or the rendezvous descriptor)
  }
  InMessage done{h, {}, nullptr, length, true};
  if (!rndv) {
    if (length > 0) std::memcpy(call.dst, data, length);
    inbox_.push_back(std::move(done));
    return UCS_OK;
  }
  auto* op = new RecvOp{this, h, {}, length, call.keepalive, true};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &Transport::recv_done_cb;
  rp.user_data = op;
  void* request = ucp_am_recv_data_nbx(worker_.get(), data, call.dst, length, &rp);
  if (request == nullptr) {
    inbox_.push_back(std::move(done));
    delete op;
  } else if (UCS_PTR_IS_ERR(request)) {
    DSDFS_WARN("ucp_am_recv_data_nbx from rank %u failed: %s", h.source_rank,
               ucs_status_string(UCS_PTR_STATUS(request)));
    complete_call(h.request_id, Status::error(EIO, "receive of reply failed"));
    delete op;
  }
  return UCS_OK;
}

void Transport::recv_done_cb(void* request, ucs_status_t status, size_t length,
                             void* user_data) noexcept {
  auto* op = static_cast<RecvOp*>(user_data);
  run_at_boundary("rdma rendezvous completion", [&] {
    Transport* t = op->transport;
    const bool is_reply = (op->header.flags & kWireFlagReply) != 0;
    const bool into = op->into;
    const size_t expected = op->length;
    if (status == UCS_OK && length == expected) {
      if (into) {
        t->inbox_.push_back(InMessage{op->header, {}, nullptr, length, true});
      } else {
        t->inbox_.push_back(InMessage{op->header, std::move(op->buffer), nullptr, 0});
      }
      return;
    }
    DSDFS_WARN("rendezvous receive from rank %u failed: %s (%zu of %zu bytes)",
               op->header.source_rank, ucs_status_string(status), length, expected);
    if (is_reply) t->complete_call(op->header.request_id, Status::error(EIO, "receive failed"));
  });
  ucp_request_free(request);
  delete op;
}

bool Transport::dispatch_inbox() {
  if (inbox_.empty()) return false;
  std::deque<InMessage> batch;
  batch.swap(inbox_);
  for (InMessage& m : batch) {
    if (!shutting_down_) {
      run_at_boundary("rdma dispatch", [&] {
        if ((m.header.flags & kWireFlagReply) != 0) {
          dispatch_reply(m);
        } else {
          dispatch_request(m);
        }
      });
    }
    if (m.ucx_data != nullptr) ucp_am_data_release(worker_.get(), m.ucx_data);
  }
  return true;
}

void Transport::dispatch_request(InMessage& m) {
  const int rank = static_cast<int>(m.header.source_rank);
  Peer* peer = endpoints_.find(rank);
  const bool joining = accept_from_dead_op_ != 0 && m.header.op == accept_from_dead_op_;
  if ((peer == nullptr || peer->failed) && !joining) {
    // We cannot answer a rank we have no endpoint to (the launcher's barrier
    // after connect_all prevents this in normal operation). A restarted
    // rank's join is answered once its handler has connected to it again.
    uint64_t suppressed = 0;
    if (stale_reply_log_.allow(&suppressed)) {
      DSDFS_INFO("dropping request op %u from unconnected or failed rank %d", m.header.op, rank);
    }
    return;
  }
  auto it = handlers_.find(m.header.op);
  if (it == handlers_.end()) {
    send_reply(rank, m.header.op, m.header.request_id, ENOSYS, {});
    return;
  }
  // Until its reply, its caller hears that it is being worked on (send_progress_notices).
  serving_[{rank, m.header.request_id}] = Serving{m.header.op, Clock::now()};
  // If the handler throws, the Responder it got is destroyed while unwinding
  // and answers EIO.
  it->second(rank, m.bytes(), Responder(queue_, this, rank, m.header.op, m.header.request_id));
}

void Transport::dispatch_reply(InMessage& m) {
  const uint64_t id = m.header.request_id;
  auto it = pending_calls_.find(id);
  // Re-checked: the call may have timed out since on_am() queued the reply.
  if (it == pending_calls_.end() || it->second.rank != static_cast<int>(m.header.source_rank)) {
    return;
  }
  if (m.header.status != 0) {
    complete_call(id, Status::error(m.header.status,
                                    call_name(it->second.rank, it->second.op) + " (remote)"));
    return;
  }
  if (m.into) {
    complete_into(id, m.length);
  } else if (m.ucx_data == nullptr) {
    complete_call(id, std::move(m.owned));
  } else {
    auto b = m.bytes();
    complete_call(id, std::vector<uint8_t>(b.begin(), b.end()));
  }
}

void Transport::ep_error_cb(void* arg, ucp_ep_h ep, ucs_status_t status) noexcept {
  auto* peer = static_cast<Peer*>(arg);
  // An endpoint of a rank's earlier life (closed by readmit) says nothing
  // about the new one.
  if (ep != peer->ep) return;
  run_at_boundary("rdma endpoint error", [&] {
    auto* t = static_cast<Transport*>(peer->owner);
    // Inside ucp_worker_progress: only record; handle_failed_peers() fails
    // the calls and closes the endpoint right after progress returns.
    t->failed_peers_.emplace_back(peer->rank, status);
  });
}

}  // namespace dsdfs::rdma
