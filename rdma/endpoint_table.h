// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "rdma/rkey_cache.h"

namespace dsdfs::rdma {

// One remote rank: its endpoint and the rkeys unpacked on it.
// Progress thread only.
struct Peer {
  int rank = -1;
  void* owner = nullptr;  // the Transport, for the endpoint error callback
  ucp_ep_h ep = nullptr;
  // UCP_ERR_HANDLING_MODE_PEER was granted (else NONE, see connect_all).
  bool peer_error_mode = false;
  // The endpoint reported an error or the peer said goodbye; never used again.
  bool failed = false;
  std::vector<uint8_t> address;  // the worker address ep was made from
  RkeyCache rkeys;
};

// Endpoints by rank. Owner: Transport. Progress thread only (not thread-safe);
// the error callback receives a Peer*, so peers never move.
class EndpointTable {
 public:
  static constexpr size_t kMaxOutstandingCloses = 16;

  EndpointTable(int self_rank, int nranks);
  EndpointTable(const EndpointTable&) = delete;
  EndpointTable& operator=(const EndpointTable&) = delete;
  ~EndpointTable();

  // Connects to every rank (self included, last) in rotated order starting at
  // self_rank + 1, so that N ranks do not all hit rank 0 first. Endpoints use
  // UCP_ERR_HANDLING_MODE_PEER with err_cb(arg = Peer*). UCX 1.13 refuses
  // that mode on transports without peer failure detection (sysv/posix shared
  // memory, "no peer failure handler"); for such a peer we retry with
  // UCP_ERR_HANDLING_MODE_NONE and warn: failures are then detected only by
  // call timeouts and goodbye messages.
  Status connect_all(ucp_worker_h worker, const std::vector<std::vector<uint8_t>>& addresses,
                     ucp_err_handler_cb_t err_cb, void* owner);
  bool connected() const { return connected_; }
  // Connects rank again at a new worker address (its daemon restarted): the
  // old endpoint, if still open, is force-closed first. REQUIRES: connected,
  // not inside a UCX callback, rank is not self.
  Status reconnect(ucp_worker_h worker, int rank, const std::vector<uint8_t>& address,
                   ucp_err_handler_cb_t err_cb, void* owner);

  // The peer of rank, or nullptr if rank is out of range or not connected.
  Peer* find(int rank);
  // The peer of rank even if its endpoint is closed; nullptr if out of range.
  Peer* peer(int rank) {
    return rank >= 0 && rank < nranks() ? peers_[static_cast<size_t>(rank)].get() : nullptr;
  }
  int nranks() const { return static_cast<int>(peers_.size()); }

  // Destroys the peer's rkeys and force-closes its endpoint (failed peers).
  void close_failed(Peer* peer);
  // Closes every endpoint: rkeys first, then ucp_ep_close_nbx (flush for live
  // peers, force for failed ones) with at most kMaxOutstandingCloses
  // outstanding (Open MPI pml ucx), progressing the worker until all are
  // closed or the deadline passes. REQUIRES: not inside a UCX callback.
  void close_all(ucp_worker_h worker, std::chrono::steady_clock::time_point deadline);

 private:
  Status connect_one(ucp_worker_h worker, int rank, const std::vector<uint8_t>& address,
                     ucp_err_handler_cb_t err_cb, void* owner);

  const int self_rank_;
  std::vector<std::unique_ptr<Peer>> peers_;
  bool connected_ = false;
};

}  // namespace dsdfs::rdma
