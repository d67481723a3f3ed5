// SPDX-License-Identifier: Apache-2.0
// Transport: one-sided gets and the native-RMA probe.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/mutex.h"
#include "common/log.h"
#include "common/noexcept_boundary.h"
#include "rdma/rma_probe.h"
#include "rdma/status_map.h"
#include "rdma/transport.h"
#include "rdma/transport_ops.h"

namespace dsdfs::rdma {

Status Transport::get_precheck(int rank, const void* local, size_t len,
                               std::span<const uint8_t> rkey) const {
  if (rank < 0 || rank >= options_.nranks) {
    return Status::error(EIO, "get: unknown rank " + std::to_string(rank));
  }
  if (peer_dead_[static_cast<size_t>(rank)].load()) {
    return Status::error(EIO, "get: rank " + std::to_string(rank) + " is down");
  }
  if (len != 0 && (local == nullptr || rkey.empty())) {
    return Status::error(EINVAL, "get: no buffer or rkey");
  }
  return Status::ok();
}

bool Transport::queue_get(const std::shared_ptr<PendingGet>& op, uint64_t remote_addr,
                          std::span<const uint8_t> rkey) {
  return submit([this, op, remote_addr, blob = std::vector<uint8_t>(rkey.begin(), rkey.end())] {
    start_get(op, remote_addr, blob);
  });
}

std::shared_ptr<Transport::PendingGet> Transport::new_get(int rank, void* local, size_t len,
                                                          std::chrono::milliseconds timeout) {
  auto op = std::make_shared<PendingGet>();
  op->transport = this;
  op->rank = rank;
  op->deadline = Clock::now() + timeout;
  op->local = local;
  op->length = len;
  return op;
}

Status Transport::get(int rank, uint64_t remote_addr, std::span<const uint8_t> rkey, void* local,
                      size_t len, std::chrono::milliseconds timeout) {
  if (on_progress_thread()) {
    DSDFS_ERROR("INTERNAL ERROR: blocking get() on the progress thread");
    return Status::error(EDEADLK, "blocking get on the progress thread");
  }
  if (Status s = get_precheck(rank, local, len, rkey); !s || len == 0) return s;
  auto op = new_get(rank, local, len, timeout);
  if (!queue_get(op, remote_addr, rkey)) return Status::error(EIO, "get: transport is shut down");

  UniqueMutexLock lock(op->mu);
  if (!op->cv.wait_for(lock, timeout + kWaitGrace, [&] { return op->done; })) {
    // Only reachable if UCX did not complete the get after its endpoint was
    // force-closed (or the progress thread is stuck). UCX may still write
    // into local: say so loudly.
    DSDFS_ERROR(
        "get of %zu bytes from rank %d did not complete; the buffer at %p may still be "
        "written by UCX",
        len, rank, local);
    return Status::error(ETIMEDOUT, "get from rank " + std::to_string(rank) + " timed out");
  }
  return op->status;
}

void Transport::get_async(int rank, uint64_t remote_addr, std::span<const uint8_t> rkey,
                          void* local, size_t len, std::shared_ptr<void> keepalive,
                          std::chrono::milliseconds timeout, std::function<void(Status)> done) {
  if (Status s = get_precheck(rank, local, len, rkey); !s || len == 0) return done(std::move(s));
  auto op = new_get(rank, local, len, timeout);
  op->done_cb = std::move(done);
  op->keepalive = std::move(keepalive);
  if (!queue_get(op, remote_addr, rkey)) {
    auto cb = std::move(op->done_cb);
    cb(Status::error(EIO, "get: transport is shut down"));
  }
}

void Transport::start_get(const std::shared_ptr<PendingGet>& op, uint64_t remote_addr,
                          const std::vector<uint8_t>& blob) {
  auto finish_now = [&](Status s) { complete_get(*op, std::move(s)); };
  if (shutting_down_) return finish_now(Status::error(EIO, "get: transport is shut down"));
  Peer* peer = endpoints_.find(op->rank);
  if (peer == nullptr || peer->failed) {
    return finish_now(Status::error(EIO, "get: rank " + std::to_string(op->rank) + " is down"));
  }
  Result<ucp_rkey_h> rkey = peer->rkeys.acquire(peer->ep, blob);
  if (!rkey) return finish_now(rkey.status());
  op->rkey = *rkey;
  op->id = next_request_id_++;
  pending_gets_.emplace(op->id, op);
  push_deadline(op->deadline, op->id);

  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = &Transport::get_done_cb;
  param.user_data = op.get();  // kept alive by pending_gets_ until finish_get
  void* request = ucp_get_nbx(peer->ep, op->local, op->length, remote_addr, op->rkey, &param);
  if (request == nullptr) {
    finish_get(op.get(), UCS_OK);
  } else if (UCS_PTR_IS_ERR(request)) {
    finish_get(op.get(), UCS_PTR_STATUS(request));
  }
  // else: get_done_cb calls finish_get and frees the request.
}

void Transport::get_done_cb(void* request, ucs_status_t status, void* user_data) noexcept {
  auto* op = static_cast<PendingGet*>(user_data);
  run_at_boundary("rdma get completion", [&] { op->transport->finish_get(op, status); });
  ucp_request_free(request);
}

void Transport::finish_get(PendingGet* op, ucs_status_t status) {
  // Keep op alive past the erase below.
  std::shared_ptr<PendingGet> keep;
  if (auto it = pending_gets_.find(op->id); it != pending_gets_.end()) {
    keep = it->second;
    pending_gets_.erase(it);
  }
  // If the endpoint was closed meanwhile, the rkey was orphaned by
  // RkeyCache::clear() and this last unpin destroys it.
  if (Peer* peer = endpoints_.peer(op->rank); peer != nullptr && op->rkey != nullptr) {
    peer->rkeys.unpin(op->rkey);
    op->rkey = nullptr;
  }
  Status s;
  if (op->timed_out) {
    s = Status::error(ETIMEDOUT, "get from rank " + std::to_string(op->rank) + " timed out");
  } else if (status != UCS_OK) {
    DSDFS_WARN("get of %zu bytes from rank %d failed: %s", op->length, op->rank,
               ucs_status_string(status));
    // Transport failures reach the file system as EIO.
    s = Status::error(EIO, std::string("get from rank ") + std::to_string(op->rank) + ": " +
                               ucs_status_string(status));
  }
  complete_get(*op, std::move(s));
}

void Transport::complete_get(PendingGet& op, Status s) {
  if (op.done_cb) {
    auto cb = std::move(op.done_cb);
    op.keepalive.reset();
    run_at_boundary("rdma get callback", [&] { cb(std::move(s)); });
    return;
  }
  MutexLock lock(op.mu);
  op.status = std::move(s);
  op.done = true;
  op.cv.notify_all();
}

bool Transport::rma_is_native(int rank) {
  if (rank < 0 || rank >= options_.nranks) return false;
  auto result = std::make_shared<bool>(false);
  Status s = run_on_progress_thread([this, rank, result] {
    Peer* peer = endpoints_.find(rank);
    if (peer == nullptr || peer->failed) return;
    char* buf = nullptr;
    size_t size = 0;
    FILE* f = open_memstream(&buf, &size);
    if (f == nullptr) return;
    ucp_ep_print_info(peer->ep, f);
    std::fclose(f);
    std::string info(buf, size);
    std::free(buf);
    *result = ep_info_rma_is_native(info);
    DSDFS_DEBUG("rank %d: RMA %s; endpoint:\n%s", rank, *result ? "native" : "emulated",
                info.c_str());
  });
  return s && *result;
}

bool Transport::bulk_uses_rma(int rank) {
  switch (options_.bulk_mode) {
    case BulkMode::kRma:
      return true;
    case BulkMode::kAm:
      return false;
    case BulkMode::kAuto:
      break;
  }
  return rma_is_native(rank);
}

}  // namespace dsdfs::rdma
