// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "common/mutex.h"

#include <ucp/api/ucp.h>

#include <deque>
#include <functional>
#include <mutex>

namespace dsdfs::rdma {

// Work handed from any thread to the progress thread (UCX iodemo style: other
// threads never touch the worker; they queue a closure and wake the worker).
//
// Owner: Transport, shared with every Responder (which may outlive the
// Transport). Thread-safe. Lock order: mu_ is a leaf lock; no other lock is
// taken while holding it, and tasks never run under it.
//
// Contract with Transport: close() is called before the worker is destroyed
// and before the progress thread drains the queue for the last time, so a
// successful push() guarantees the task runs on a live progress thread and
// that ucp_worker_signal() is called on a live worker.
class SubmitQueue {
 public:
  using Task = std::function<void()>;

  explicit SubmitQueue(ucp_worker_h worker) : worker_(worker) {}
  SubmitQueue(const SubmitQueue&) = delete;
  SubmitQueue& operator=(const SubmitQueue&) = delete;

  // Moves *task into the queue and wakes the progress thread. Returns false
  // (and leaves *task untouched) once the queue is closed.
  bool push(Task* task);
  // Called by the progress thread only.
  std::deque<Task> take_all();
  // Refuses later pushes. Tasks already queued stay for take_all().
  void close();

 private:
  Mutex mu_;
  std::deque<Task> tasks_;  // guarded by mu_
  bool closed_ = false;     // guarded by mu_
  ucp_worker_h const worker_;
};

}  // namespace dsdfs::rdma
