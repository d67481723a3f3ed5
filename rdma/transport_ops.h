// SPDX-License-Identifier: Apache-2.0
#pragma once

// Internal to the Transport implementation: the per-operation records whose
// addresses are handed to UCX as request user_data.

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/mutex.h"
#include "rdma/transport.h"

namespace dsdfs::rdma {

// One ucp_am_send_nbx in flight. UCX requires header and payload to stay
// valid until the send completes, so the op owns both; freed on completion.
struct Transport::SendOp {
  Transport* transport;
  int rank;
  uint64_t call_id;  // request id of our own call to fail on error, or 0
  std::vector<uint8_t> header;
  OutPayload payload;
};

// One rendezvous receive (ucp_am_recv_data_nbx) in flight; freed on completion.
// The payload goes into buffer, or into the dst of an into-call (kept valid
// by keepalive until UCX is done with it, even if the call ended first).
struct Transport::RecvOp {
  Transport* transport;
  WireHeader header;
  std::vector<uint8_t> buffer;
  size_t length = 0;
  std::shared_ptr<void> keepalive;
  bool into = false;
};

// One get. Shared by the waiting caller and the progress thread; the fields
// above the mutex belong to the progress thread.
struct Transport::PendingGet {
  Transport* transport = nullptr;
  uint64_t id = 0;
  int rank = -1;
  Clock::time_point deadline;
  void* local = nullptr;
  size_t length = 0;
  ucp_rkey_h rkey = nullptr;  // pinned in the peer's RkeyCache while in flight
  bool timed_out = false;
  // get_async: runs once on the progress thread instead of waking a waiter;
  // keepalive keeps `local` valid until then.
  std::function<void(Status)> done_cb;
  std::shared_ptr<void> keepalive;

  Mutex mu;  // leaf lock
  std::condition_variable_any cv;
  bool done = false;  // guarded by mu
  Status status;      // guarded by mu
};

}  // namespace dsdfs::rdma
