// SPDX-License-Identifier: Apache-2.0
#include "rdma/endpoint_table.h"

#include <deque>
#include <string>

#include "common/log.h"
#include "rdma/status_map.h"

namespace dsdfs::rdma {
namespace {

ucs_status_t ep_create(ucp_worker_h worker, const std::vector<uint8_t>& address,
                       ucp_err_handling_mode_t mode, ucp_err_handler_cb_t err_cb, Peer* peer,
                       ucp_ep_h* ep) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  params.err_mode = mode;
  if (mode == UCP_ERR_HANDLING_MODE_PEER) {
    params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
    params.err_handler.cb = err_cb;
    params.err_handler.arg = peer;
  }
  return ucp_ep_create(worker, &params, ep);
}

// Waits for one close request; returns true when it is done.
bool close_request_done(void* request) {
  if (request == nullptr) return true;
  if (UCS_PTR_IS_ERR(request)) return true;
  ucs_status_t status = ucp_request_check_status(request);
  if (status == UCS_INPROGRESS) return false;
  if (status != UCS_OK) {
    DSDFS_DEBUG("endpoint close completed with %s", ucs_status_string(status));
  }
  ucp_request_free(request);
  return true;
}

}  // namespace

EndpointTable::EndpointTable(int self_rank, int nranks) : self_rank_(self_rank) {
  peers_.reserve(static_cast<size_t>(nranks));
  for (int r = 0; r < nranks; ++r) {
    peers_.push_back(std::make_unique<Peer>());
    peers_.back()->rank = r;
  }
}

EndpointTable::~EndpointTable() {
  for (auto& p : peers_) {
    if (p->ep != nullptr) {
      DSDFS_WARN("endpoint to rank %d was not closed before destruction", p->rank);
    }
  }
}

Status EndpointTable::connect_all(ucp_worker_h worker,
                                  const std::vector<std::vector<uint8_t>>& addresses,
                                  ucp_err_handler_cb_t err_cb, void* owner) {
  const int n = nranks();
  if (connected_) return Status::error(EALREADY, "connect_all called twice");
  if (static_cast<int>(addresses.size()) != n) {
    return Status::error(EINVAL, "connect_all: " + std::to_string(addresses.size()) +
                                     " addresses for " + std::to_string(n) + " ranks");
  }
  for (int i = 1; i <= n; ++i) {
    const int r = (self_rank_ + i) % n;
    if (auto s = connect_one(worker, r, addresses[static_cast<size_t>(r)], err_cb, owner); !s) return s;
  }
  connected_ = true;
  return Status::ok();
}

Status EndpointTable::connect_one(ucp_worker_h worker, int r, const std::vector<uint8_t>& address,
                                  ucp_err_handler_cb_t err_cb, void* owner) {
  Peer* peer = peers_[static_cast<size_t>(r)].get();
  peer->owner = owner;
  if (address.empty()) return Status::error(EINVAL, "connect: empty address for rank " + std::to_string(r));
  ucs_status_t status = ep_create(worker, address, UCP_ERR_HANDLING_MODE_PEER, err_cb, peer, &peer->ep);
  peer->peer_error_mode = status == UCS_OK;
  if (status == UCS_ERR_UNREACHABLE) {
    DSDFS_WARN(
        "rank %d: no transport with peer failure detection (%s); connecting without "
        "it, failures will show as timeouts",
        r, ucs_status_string(status));
    status = ep_create(worker, address, UCP_ERR_HANDLING_MODE_NONE, err_cb, peer, &peer->ep);
  }
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_ep_create to rank %d failed: %s", r, ucs_status_string(status));
    peer->ep = nullptr;
    return status_from_ucs(status, ("connect to rank " + std::to_string(r)).c_str());
  }
  peer->address = address;
  peer->failed = false;
  return Status::ok();
}

Status EndpointTable::reconnect(ucp_worker_h worker, int rank, const std::vector<uint8_t>& address,
                                ucp_err_handler_cb_t err_cb, void* owner) {
  if (!connected_) return Status::error(ENOTCONN, "reconnect before connect_all");
  Peer* p = peer(rank);
  if (p == nullptr || rank == self_rank_) return Status::error(EINVAL, "reconnect: bad rank " + std::to_string(rank));
  close_failed(p);  // the endpoint of the rank's last life, if still open
  return connect_one(worker, rank, address, err_cb, owner);
}

Peer* EndpointTable::find(int rank) {
  if (rank < 0 || rank >= nranks()) return nullptr;
  Peer* p = peers_[static_cast<size_t>(rank)].get();
  return p->ep != nullptr ? p : nullptr;
}

void EndpointTable::close_failed(Peer* peer) {
  if (peer->ep == nullptr) return;
  peer->rkeys.clear();
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  // FORCE is only defined for UCP_ERR_HANDLING_MODE_PEER endpoints.
  param.flags = peer->peer_error_mode ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  void* request = ucp_ep_close_nbx(peer->ep, &param);
  peer->ep = nullptr;
  if (UCS_PTR_IS_ERR(request)) {
    DSDFS_DEBUG("close of failed endpoint to rank %d: %s", peer->rank,
                ucs_status_string(UCS_PTR_STATUS(request)));
  } else if (request != nullptr) {
    // Force close completes without the peer; free the request once it has.
    // Not waiting here: we may be called from the progress loop with other work.
    ucp_request_free(request);
  }
}

void EndpointTable::close_all(ucp_worker_h worker, std::chrono::steady_clock::time_point deadline) {
  for (auto& p : peers_) p->rkeys.clear();  // rkeys die before their endpoints
  std::deque<Peer*> to_close;
  for (auto& p : peers_) {
    if (p->ep != nullptr) to_close.push_back(p.get());
  }
  std::deque<void*> outstanding;
  bool timed_out = false;
  while (!to_close.empty() || !outstanding.empty()) {
    while (!to_close.empty() && outstanding.size() < kMaxOutstandingCloses) {
      Peer* p = to_close.front();
      to_close.pop_front();
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      // Flush live peers so goodbye messages and replies get out; force the
      // failed ones (and everyone once the deadline passed).
      bool force = (p->failed || timed_out) && p->peer_error_mode;
      param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
      void* request = ucp_ep_close_nbx(p->ep, &param);
      p->ep = nullptr;
      if (UCS_PTR_IS_ERR(request)) {
        DSDFS_DEBUG("ucp_ep_close_nbx to rank %d: %s", p->rank,
                    ucs_status_string(UCS_PTR_STATUS(request)));
      } else if (request != nullptr) {
        outstanding.push_back(request);
      }
    }
    ucp_worker_progress(worker);
    for (auto it = outstanding.begin(); it != outstanding.end();) {
      it = close_request_done(*it) ? outstanding.erase(it) : it + 1;
    }
    if (!timed_out && std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      if (!outstanding.empty()) {
        DSDFS_WARN("%zu endpoint(s) did not flush before the shutdown timeout; forcing",
                   outstanding.size());
        // A flush close cannot be turned into a force close; cancel its request.
        for (void* r : outstanding) ucp_request_cancel(worker, r);
      }
    }
    if (timed_out && std::chrono::steady_clock::now() > deadline + std::chrono::seconds(1)) {
      DSDFS_WARN("abandoning %zu endpoint close request(s); ucp_worker_destroy reclaims them",
                 outstanding.size());
      break;
    }
  }
}

}  // namespace dsdfs::rdma
