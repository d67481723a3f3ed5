// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "rdma/submit_queue.h"

#include "common/log.h"

namespace dsdfs::rdma {

bool SubmitQueue::push(Task* task) {
  MutexLock lock(mu_);
  if (closed_) return false;
  tasks_.push_back(std::move(*task));
  // Signal under the lock: close() cannot complete (and the worker cannot be
  // destroyed) between our closed_ check and this call. ucp_worker_signal is
  // documented as safe from any thread, whatever the worker's thread mode.
  ucs_status_t status = ucp_worker_signal(worker_);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_worker_signal failed: %s", ucs_status_string(status));
  }
  return true;
}

std::deque<SubmitQueue::Task> SubmitQueue::take_all() {
  MutexLock lock(mu_);
  std::deque<Task> out;
  out.swap(tasks_);
  return out;
}

void SubmitQueue::close() {
  MutexLock lock(mu_);
  closed_ = true;
}

}  // namespace dsdfs::rdma
