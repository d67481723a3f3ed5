// SPDX-License-Identifier: Apache-2.0
// Peers without a network: several ranks of one job inside one process.
// Each request runs its handler on a thread of its own, as a worker of the
// target rank would, and the caller waits for it no longer than its timeout,
// so a rank that waits on a rank that waits on it ends in a timeout as on a
// real job instead of a deadlock. Ranks can be killed (calls fail at once,
// as after UCX reported the peer down) or silenced (calls get no answer and
// end by their timeout, as across a cut link) or held (requests wait, their
// callers time out, and they all run when the rank is released, as in a
// process stopped with SIGSTOP and continued).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <list>
#include <memory>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/mutex.h"
#include "daemon/peers.h"

namespace dsdfs::fs::testing {

class InProcessNet {
 public:
  explicit InProcessNet(int nranks);
  ~InProcessNet();  // shutdown()
  InProcessNet(const InProcessNet&) = delete;
  InProcessNet& operator=(const InProcessNet&) = delete;

  int size() const { return nranks_; }
  // Rank r is down: calls to it fail at once (EIO), alive(r) is false everywhere.
  void kill(int r);
  // Rank r is alive again (a restarted daemon let in again: Peers::readmit).
  void revive(int r);
  // Rank r gets no request any more (nor sends replies): calls to it end by
  // their timeout (ETIMEDOUT); alive(r) stays true, as across a cut link
  // before the transport notices.
  void silence(int r, bool silent);
  bool alive(int r) const;
  // Splits the job: ranks on different sides see each other as dead (calls
  // fail at once), as when a link was down long enough for the transport to
  // declare the peers on the other side failed. sides[r]: rank r's side.
  void partition(std::vector<int> sides);
  // Whether `observer` sees rank r alive (not killed, on its side).
  bool alive_from(int observer, int r) const;
  // Rank r is frozen: requests to it are kept, undelivered, and their callers
  // time out (ETIMEDOUT). release(r) runs them, one after the other, before it
  // returns: ordered ops (Peers::register_ordered_handler) in the order they
  // were sent, the others last first (the worst order a pool of workers may
  // pick). Their answers are lost: their callers gave up. REQUIRES: no
  // request is sent to r while release(r) runs.
  void hold(int r);
  void release(int r);
  // hook(from, op, payload, after) runs on rank r's worker before (after =
  // false) and after (true) the handler of each request there: a test that
  // needs one request to wait for another. An empty function: none.
  using Hook = std::function<void(int from, Op op, std::span<const uint8_t> payload, bool after)>;
  void set_hook(int r, Hook hook);
  // Requests are refused from now on (EIO); waits for the threads running
  // requests. REQUIRES: no handler waits for something only the test does.
  void shutdown();

 private:
  friend class InProcessPeers;
  struct Rank {
    std::unordered_map<uint16_t, Peers::Handler> handlers;
    std::unordered_map<uint16_t, Peers::LendingHandler> lending;
    std::atomic<bool> dead{false};
    std::atomic<bool> silent{false};
    std::atomic<int> side{0};
    std::unordered_set<uint16_t> ordered;  // immutable once requests flow
    // Ordered ops run in ticket order (taken when the request arrives).
    Mutex order_mu;
    std::condition_variable_any order_cv;
    uint64_t next_ticket GUARDED_BY(order_mu) = 0;
    uint64_t serving GUARDED_BY(order_mu) = 0;
    struct Held {
      int from;
      Op op;
      std::vector<uint8_t> payload;
    };
    Mutex held_mu;
    bool holding GUARDED_BY(held_mu) = false;
    std::vector<Held> held GUARDED_BY(held_mu);
    mutable Mutex tids_mu;
    std::unordered_set<pid_t> tids GUARDED_BY(tids_mu);
    Mutex hook_mu;  // leaf lock
    Hook hook GUARDED_BY(hook_mu);
  };
  struct Thread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  // Runs fn on a new thread, a worker of rank `to` (none if -1). false if
  // the net is shut down.
  bool spawn(int to, std::function<void()> fn);
  // A request from `from` to `to`, answered by its handler on a thread of
  // `to`, or an error by the deadline.
  Peers::Reply request(int from, int to, Op op, std::span<const uint8_t> payload, std::chrono::milliseconds timeout);
  // Runs op's handler of rank `to` in this thread (lending ones too if
  // `lending`: their bytes are copied).
  Peers::Reply serve(int from, int to, Op op, std::span<const uint8_t> payload, bool lending);
  Peers::Reply serve_handler(int from, int to, Op op, std::span<const uint8_t> payload, bool lending);
  // serve() of a request that arrived with `ticket` (ordered ops: after
  // every earlier ticket of that rank; others: at once).
  Peers::Reply serve_in_turn(int from, int to, Op op, std::span<const uint8_t> payload, uint64_t ticket);
  // A ticket for a request of op arriving at `to` now (0 for unordered ops).
  uint64_t take_ticket(int to, Op op);

  const int nranks_;
  std::vector<std::unique_ptr<Rank>> ranks_;  // handlers: immutable once requests flow
  Mutex threads_mu_;
  std::condition_variable_any stop_cv_;
  bool stopping_ GUARDED_BY(threads_mu_) = false;
  std::atomic<bool> down_{false};  // stopping_, for waits under other locks
  std::list<Thread> threads_ GUARDED_BY(threads_mu_);
};

// One rank's view of an InProcessNet.
class InProcessPeers final : public Peers {
 public:
  InProcessPeers(InProcessNet* net, int rank, std::chrono::milliseconds timeout)
      : Peers(rank, net->size(), timeout), net_(net) {}

  void register_handler(Op op, Handler handler) override;
  // Inline ops run on Cluster's progress thread, one at a time in the order
  // of arrival: here they are ordered ops.
  void register_inline_handler(Op op, Handler handler) override { register_ordered_handler(op, std::move(handler)); }
  // The quick part first, then the handler if it declines, in the one call.
  void register_split_handler(Op op, QuickHandler quick, Handler handler) override {
    register_handler(op, [quick = std::move(quick), handler = std::move(handler)](
                             int source, std::span<const uint8_t> payload) -> Reply {
      if (auto reply = quick(source, payload)) return std::move(*reply);
      return handler(source, payload);
    });
  }
  void register_ordered_handler(Op op, Handler handler) override;
  void register_lending_handler(Op op, LendingHandler handler) override;

  bool alive(int r) const override { return net_->alive_from(rank(), r); }
  // A rank's "address" is its number: a restarted rank is let in again.
  Status readmit(int r, std::span<const uint8_t>) override {
    net_->revive(r);
    return Status::ok();
  }
  std::vector<uint8_t> address_of(int r) const override { return {static_cast<uint8_t>(r + 1)}; }
  std::string host_of(int r) const override { return "node" + std::to_string(r + 1); }
  bool is_worker_thread(pid_t tid) const override;

  using Peers::call;
  Reply call(int r, Op op, std::span<const uint8_t> payload, std::chrono::milliseconds timeout) override;
  std::vector<Reply> call_all(Op op, std::span<const uint8_t> payload) override;
  void call_into_async(int r, Op op, std::span<const uint8_t> payload, std::span<uint8_t> dst,
                       std::shared_ptr<void> keepalive, std::function<void(Result<size_t>)> done) override;

 private:
  InProcessNet* const net_;
};

}  // namespace dsdfs::fs::testing
