// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <sys/types.h>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "daemon/peers.h"
#include "daemon/stats.h"
#include "rdma/responder.h"

namespace dsdfs::rdma {
class Transport;
}

namespace dsdfs::fs {

// Peers over UCX (rdma::Transport).
// Requests run on a pool of worker threads (never on the UCX progress
// thread, since they do file I/O) that grows while every worker is busy; a call to this rank itself runs the
// handler in the calling thread without touching the network. With one rank
// there is no transport at all. Thread-safe.
class Cluster final : public Peers {
 public:
  // transport may be null only when nranks == 1.
  Cluster(int rank, int nranks, rdma::Transport* transport, std::chrono::milliseconds timeout,
          unsigned workers, Stats* stats);
  ~Cluster() override;

  void register_handler(Op op, Handler handler) override;
  void register_inline_handler(Op op, Handler handler) override;
  void register_split_handler(Op op, QuickHandler quick, Handler handler) override;
  void register_ordered_handler(Op op, Handler handler) override;
  void register_lending_handler(Op op, LendingHandler handler) override;
  // Hands the handlers to the transport and starts the workers.
  // REQUIRES: before the transport connects.
  Status start();
  // Stops the workers; requests still queued are answered with EIO.
  void stop();
  // Requests from other ranks wait in their queues (inline ones still run)
  // until release_requests(): a rejoining daemon holds them until its
  // directories have caught up with the job's.
  void hold_requests();
  void release_requests();

  // Short host names by rank (from bootstrap). REQUIRES: before start().
  void set_hosts(std::vector<std::string> hosts) { hosts_ = std::move(hosts); }
  std::string host_of(int rank) const override {
    return rank >= 0 && rank < static_cast<int>(hosts_.size()) ? hosts_[rank] : "?";
  }
  bool alive(int rank) const override;
  bool is_worker_thread(pid_t tid) const override;

  using Peers::call;
  Reply call(int rank, Op op, std::span<const uint8_t> payload, std::chrono::milliseconds timeout) override;
  std::vector<Reply> call_all(Op op, std::span<const uint8_t> payload) override;
  void call_into_async(int rank, Op op, std::span<const uint8_t> payload, std::span<uint8_t> dst,
                       std::shared_ptr<void> keepalive, std::function<void(Result<size_t>)> done) override;

  Status readmit(int rank, std::span<const uint8_t> address) override;
  std::vector<uint8_t> address_of(int rank) const override;
  void declare_dead(int rank) override;

  bool bulk_uses_rma(int rank) override;
  Result<std::unique_ptr<RmaRegion>> export_region(void* addr, size_t length) override;
  void get_async(int rank, uint64_t remote_addr, std::span<const uint8_t> rkey, void* dst, size_t len,
                 std::shared_ptr<void> keepalive, std::function<void(Status)> done) override;

 private:
  struct Task {
    int source;
    Op op;
    std::vector<uint8_t> payload;
    rdma::Responder responder;
    std::chrono::steady_clock::time_point queued;
  };
  Reply run_handler(int source, Op op, std::span<const uint8_t> payload);
  // Runs op's handler (lending or not) for a request and answers it.
  // queued: when the request arrived (a request that waited or ran for
  // half the callers' timeout is logged: its caller may have given up).
  void serve(int source, Op op, std::span<const uint8_t> payload, rdma::Responder responder,
             std::chrono::steady_clock::time_point queued);
  // ordered: the thread of the ordered ops' queue (one), else a pool worker.
  void worker_main(bool ordered);
  // On the progress thread: answers with `quick` if it can (true), else leaves
  // the request (and responder) to a worker.
  bool serve_quick(const QuickHandler& quick, int source, std::span<const uint8_t> payload,
                   rdma::Responder& responder);

  rdma::Transport* const transport_;
  const unsigned nworkers_;
  Stats* const stats_;
  std::unordered_map<uint16_t, Handler> handlers_;  // immutable after start()
  std::unordered_map<uint16_t, LendingHandler> lending_handlers_;  // immutable after start()
  std::unordered_set<uint16_t> inline_ops_;                // immutable after start()
  std::unordered_map<uint16_t, QuickHandler> quick_handlers_;  // immutable after start()
  std::unordered_set<uint16_t> ordered_ops_;               // immutable after start()
  std::vector<std::string> hosts_;                  // immutable after start()

  Mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Task> tasks_ GUARDED_BY(mu_);
  std::deque<Task> ordered_tasks_ GUARDED_BY(mu_);  // ordered ops, run by one thread
  std::condition_variable_any ordered_cv_;           // for ordered_tasks_ (cv_: tasks_)
  bool stopping_ GUARDED_BY(mu_) = false;
  bool held_ GUARDED_BY(mu_) = false;  // hold_requests()
  std::vector<std::thread> workers_ GUARDED_BY(mu_);  // nworkers_, more while all are busy
  unsigned idle_ GUARDED_BY(mu_) = 0;  // workers waiting for a task
  // At most this many workers: far more than requests that can wait on
  // other ranks at once (each holds one of another rank's FUSE or RPC threads).
  static constexpr size_t kMaxWorkers = 512;
  mutable Mutex tids_mu_;    // leaf lock
  std::vector<pid_t> worker_tids_ GUARDED_BY(tids_mu_);
};

}  // namespace dsdfs::fs
