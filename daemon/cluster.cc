// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/cluster.h"

#include <unistd.h>

#include <algorithm>

#include <cstring>
#include <memory>
#include <optional>

#include "common/log.h"
#include "common/noexcept_boundary.h"
#include "daemon/messages.h"
#include "rdma/memory.h"
#include "rdma/transport.h"

namespace dsdfs::fs {

Cluster::Cluster(int rank, int nranks, rdma::Transport* transport, std::chrono::milliseconds timeout,
                 unsigned workers, Stats* stats)
    : Peers(rank, nranks, timeout), transport_(transport), nworkers_(workers), stats_(stats) {}

Cluster::~Cluster() { stop(); }

void Cluster::register_handler(Op op, Handler handler) {
  handlers_[static_cast<uint16_t>(op)] = std::move(handler);
}

void Cluster::register_inline_handler(Op op, Handler handler) {
  inline_ops_.insert(static_cast<uint16_t>(op));
  register_handler(op, std::move(handler));
}

void Cluster::register_split_handler(Op op, QuickHandler quick, Handler handler) {
  quick_handlers_[static_cast<uint16_t>(op)] = std::move(quick);
  register_handler(op, std::move(handler));
}

void Cluster::register_ordered_handler(Op op, Handler handler) {
  ordered_ops_.insert(static_cast<uint16_t>(op));
  register_handler(op, std::move(handler));
}

void Cluster::register_lending_handler(Op op, LendingHandler handler) {
  lending_handlers_[static_cast<uint16_t>(op)] = std::move(handler);
}

Status Cluster::start() {
  if (transport_) {
    // Membership: a rank this one finds dead is announced to every other live
    // rank, which declares it dead too (kRankDown), so that the ranks that
    // can still talk agree on who is in the job: one coordinator, one shard
    // per name, and a rank cut off from them fenced (Peers::quorate).
    register_inline_handler(Op::kRankDown, [this](int source, std::span<const uint8_t> p) -> Reply {
      msg::RankDown m;
      if (!msg::decode(p, &m) || m.rank >= nranks()) return Status::error(EPROTO, "RankDown");
      if (m.rank != rank()) transport_->declare_dead(m.rank, "rank " + std::to_string(source) + " found it dead");
      return std::vector<uint8_t>();
    });
    // A restarted daemon's request to be let in again comes from a rank this
    // one declared dead.
    transport_->accept_from_dead(static_cast<uint16_t>(Op::kRankJoin));
    transport_->set_on_peer_failed([this](int dead) {
      auto notice = msg::encode(msg::RankDown{dead});
      for (int r = 0; r < nranks(); ++r) {
        if (r == rank() || r == dead || !transport_->peer_alive(r)) continue;
        transport_->call_async(r, static_cast<uint16_t>(Op::kRankDown), notice, timeout(), [](rdma::Transport::CallResult) {});
      }
    });
    std::vector<uint16_t> ops;
    for (auto& [op_id, unused] : handlers_) ops.push_back(op_id);
    for (auto& [op_id, unused] : lending_handlers_) ops.push_back(op_id);
    for (uint16_t op_id : ops) {
      Op op = static_cast<Op>(op_id);
      // Runs on the progress thread: only queue the work (UCX iodemo pattern).
      auto quick_it = quick_handlers_.find(op_id);
      const QuickHandler* quick = quick_it == quick_handlers_.end() ? nullptr : &quick_it->second;
      auto status = transport_->register_handler(
          op_id, [this, op, quick, inline_op = inline_ops_.count(op_id) != 0, ordered = ordered_ops_.count(op_id) != 0](
                     int source, std::span<const uint8_t> payload, rdma::Responder responder) {
            const auto now = std::chrono::steady_clock::now();
            if (inline_op) return serve(source, op, payload, std::move(responder), now);
            if (quick && serve_quick(*quick, source, payload, responder)) return;
            Task t{source, op, std::vector<uint8_t>(payload.begin(), payload.end()), std::move(responder), now};
            MutexLock lock(mu_);
            if (stopping_) return;  // the dropped Responder answers EIO
            if (ordered) {
              // One thread, in the order of arrival (the progress thread's).
              ordered_tasks_.push_back(std::move(t));
              ordered_cv_.notify_one();
              return;
            }
            tasks_.push_back(std::move(t));
            // Every worker busy: another one, so that a request never waits
            // for requests that may themselves wait for it (a handler can
            // wait for another rank, which can wait for this rank).
            if (idle_ == 0 && workers_.size() < kMaxWorkers) workers_.emplace_back([this] { worker_main(false); });
            else cv_.notify_one();
          });
      if (!status) return status;
    }
  }
  MutexLock lock(mu_);
  for (unsigned i = 0; i < nworkers_; ++i) workers_.emplace_back([this] { worker_main(false); });
  if (!ordered_ops_.empty()) workers_.emplace_back([this] { worker_main(true); });
  return Status::ok();
}

void Cluster::stop() {
  std::deque<Task> left;
  {
    MutexLock lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    left.swap(tasks_);
    for (auto& t : ordered_tasks_) left.push_back(std::move(t));
    ordered_tasks_.clear();
  }
  cv_.notify_all();
  ordered_cv_.notify_all();
  for (auto& t : left) t.responder.reply_error(EIO);
  // No worker is added once stopping_ is set.
  std::vector<std::thread> workers;
  {
    MutexLock lock(mu_);
    workers.swap(workers_);
  }
  for (auto& w : workers) w.join();
}

void Cluster::hold_requests() {
  MutexLock lock(mu_);
  held_ = true;
}

void Cluster::release_requests() {
  {
    MutexLock lock(mu_);
    held_ = false;
  }
  cv_.notify_all();
  ordered_cv_.notify_all();
}

Status Cluster::readmit(int rank, std::span<const uint8_t> address) {
  if (!transport_) return Status::error(EINVAL, "one rank: nobody to readmit");
  return transport_->readmit(rank, std::vector<uint8_t>(address.begin(), address.end()));
}

std::vector<uint8_t> Cluster::address_of(int rank) const {
  return transport_ ? transport_->address_of(rank) : std::vector<uint8_t>();
}

void Cluster::declare_dead(int rank) {
  if (transport_) transport_->declare_dead(rank, "the job says it is down");
}

bool Cluster::is_worker_thread(pid_t tid) const {
  MutexLock lock(tids_mu_);
  return std::find(worker_tids_.begin(), worker_tids_.end(), tid) != worker_tids_.end();
}

void Cluster::worker_main(bool ordered) {
  {
    MutexLock lock(tids_mu_);
    worker_tids_.push_back(static_cast<pid_t>(::gettid()));
  }
  run_at_boundary("rpc worker", [this, ordered] {
    std::deque<Task>& queue = ordered ? ordered_tasks_ : tasks_;
    // Its own condition variable: a notify_one for the pool must never wake
    // the ordered thread instead of a pool worker (a lost wake-up).
    std::condition_variable_any& cv = ordered ? ordered_cv_ : cv_;
    while (true) {
      Task task;
      {
        UniqueMutexLock lock(mu_);
        if (!ordered) ++idle_;
        cv.wait(lock, [&] {
          mu_.assert_held();
          return stopping_ || (!held_ && !queue.empty());
        });
        if (!ordered) --idle_;
        if (queue.empty()) return;
        task = std::move(queue.front());
        queue.pop_front();
      }
      serve(task.source, task.op, task.payload, std::move(task.responder), task.queued);
    }
  });
}

void Cluster::serve(int source, Op op, std::span<const uint8_t> payload, rdma::Responder responder,
                    std::chrono::steady_clock::time_point queued) {
  stats_add(stats_->rpcs_served, 1);
  const auto started = std::chrono::steady_clock::now();
  // A request whose caller may have timed out: say where the time went.
  struct SlowCheck {
    Cluster* self;
    int source;
    Op op;
    std::chrono::steady_clock::time_point queued, started;
    ~SlowCheck() {
      using Secs = std::chrono::duration<double>;
      const auto done = std::chrono::steady_clock::now();
      const double waited = Secs(started - queued).count(), ran = Secs(done - started).count();
      const double limit = Secs(self->timeout()).count() / 2;
      if (waited + ran < limit) return;
      stats_add(self->stats_->slow_requests, 1);
      DSDFS_WARN("request op %u from rank %d took %.2f s (%.2f s queued, %.2f s in its handler); "
                 "the caller, told it was in progress, waits up to %.0f s",
                 static_cast<unsigned>(op), source, waited + ran, waited, ran,
                 2 * limit * rdma::Transport::kMaxStretch);
    }
  } slow_check{this, source, op, queued, started};
  if (auto lend = lending_handlers_.find(static_cast<uint16_t>(op)); lend != lending_handlers_.end()) {
    Result<Lent> lent = Status::error(EIO);
    int err = run_at_boundary("rpc handler", [&] { lent = lend->second(source, payload); });
    if (err) return responder.reply_error(err);
    if (!lent) return responder.reply_error(lent.err());
    return responder.reply(lent->bytes, std::move(lent->keepalive));
  }
  Reply reply = Status::error(EIO);
  int err = run_at_boundary("rpc handler", [&] { reply = run_handler(source, op, payload); });
  if (err) reply = Status::error(err, "handler failed");
  if (reply) responder.reply(std::move(reply).value());
  else responder.reply_error(reply.err());
}

bool Cluster::serve_quick(const QuickHandler& quick, int source, std::span<const uint8_t> payload,
                          rdma::Responder& responder) {
  {
    MutexLock lock(mu_);
    if (held_ || stopping_) return false;
  }
  std::optional<Reply> reply;
  if (run_at_boundary("rpc handler, quick part", [&] { reply = quick(source, payload); }) != 0 || !reply) return false;
  stats_add(stats_->rpcs_served, 1);
  stats_add(stats_->rpcs_served_on_arrival, 1);
  if (*reply) responder.reply(std::move(*reply).value());
  else responder.reply_error(reply->err());
  return true;
}

Cluster::Reply Cluster::run_handler(int source, Op op, std::span<const uint8_t> payload) {
  auto it = handlers_.find(static_cast<uint16_t>(op));
  if (it == handlers_.end()) return Status::error(ENOSYS, "no handler");
  return it->second(source, payload);
}

bool Cluster::alive(int rank) const {
  if (rank < 0 || rank >= nranks()) return false;
  if (rank == this->rank() || !transport_) return true;
  return transport_->peer_alive(rank);
}

Cluster::Reply Cluster::call(int rank, Op op, std::span<const uint8_t> payload,
                             std::chrono::milliseconds timeout) {
  if (rank == this->rank()) return run_handler(rank, op, payload);
  if (!transport_ || rank < 0 || rank >= nranks()) return Status::error(EIO, "no such rank");
  stats_add(stats_->rpcs_sent, 1);
  stats_->count_rpc(static_cast<uint16_t>(op));
  auto r = transport_->call(rank, static_cast<uint16_t>(op), payload, timeout);
  if (!r && r.err() != ENOENT && r.err() != EEXIST && r.err() != ENOTEMPTY) {
    stats_add(stats_->rpc_failures, 1);
  }
  if (!r) return Status::error(r.err(), "rpc to rank " + std::to_string(rank));
  return std::move(r).value();
}

void Cluster::call_into_async(int rank, Op op, std::span<const uint8_t> payload, std::span<uint8_t> dst,
                              std::shared_ptr<void> keepalive, std::function<void(Result<size_t>)> done) {
  if (!transport_ || rank == this->rank() || rank < 0 || rank >= nranks()) return done(Status::error(EIO, "no such peer"));
  stats_add(stats_->rpcs_sent, 1);
  stats_->count_rpc(static_cast<uint16_t>(op));
  transport_->call_into_async(rank, static_cast<uint16_t>(op), payload, dst, std::move(keepalive), timeout(),
                              [this, done = std::move(done)](Result<size_t> r) {
                                if (!r && r.err() != ENOENT) stats_add(stats_->rpc_failures, 1);
                                done(std::move(r));
                              });
}

std::vector<Cluster::Reply> Cluster::call_all(Op op, std::span<const uint8_t> payload) {
  std::vector<Reply> out(static_cast<size_t>(nranks()), Reply(Status::error(EIO, "rank is dead")));
  // The remote calls go out first; this rank's handler runs while they are
  // in flight.
  struct Waiter {
    Mutex mu;  // leaf lock
    std::condition_variable_any cv;
    std::vector<std::optional<rdma::Transport::CallResult>> results;
    size_t remaining = 0;
  };
  auto w = std::make_shared<Waiter>();
  std::vector<int> peers;
  if (transport_) {
    for (int r = 0; r < nranks(); ++r) {
      if (r != rank() && alive(r)) peers.push_back(r);
    }
    w->results.resize(peers.size());
    w->remaining = peers.size();
    stats_add(stats_->rpcs_sent, peers.size());
    stats_->count_rpc(static_cast<uint16_t>(op), peers.size());
    for (size_t i = 0; i < peers.size(); ++i) {
      transport_->call_async(peers[i], static_cast<uint16_t>(op), payload, timeout(),
                             [w, i](rdma::Transport::CallResult r) {
                               MutexLock lock(w->mu);
                               w->results[i].emplace(std::move(r));
                               if (--w->remaining == 0) w->cv.notify_all();
                             });
    }
  }
  out[static_cast<size_t>(rank())] = run_handler(rank(), op, payload);
  if (!peers.empty()) {
    UniqueMutexLock lock(w->mu);
    // The transport fails every call by its deadline; the grace only guards
    // against a progress thread that stopped.
    if (!w->cv.wait_for(lock, rdma::Transport::wait_bound(timeout()), [&] { return w->remaining == 0; })) {
      DSDFS_ERROR("call_all(op %u): no completion from the progress thread", static_cast<unsigned>(op));
    }
    for (size_t i = 0; i < peers.size(); ++i) {
      auto& r = w->results[i];
      if (!r || !*r) stats_add(stats_->rpc_failures, 1);
      out[static_cast<size_t>(peers[i])] = !r ? Reply(Status::error(ETIMEDOUT, "no completion"))
                                           : *r ? Reply(std::move(*r).value())
                                                : Reply(Status::error(r->err()));
    }
  }
  return out;
}

bool Cluster::bulk_uses_rma(int rank) { return transport_ && rank != this->rank() && transport_->bulk_uses_rma(rank); }

namespace {

class UcxRegion final : public RmaRegion {
 public:
  explicit UcxRegion(rdma::MemoryRegion region) : region_(std::move(region)) {}
  uint64_t remote_address() const override { return region_.remote_address(); }
  std::span<const uint8_t> rkey() const override { return region_.rkey(); }

 private:
  rdma::MemoryRegion region_;
};

}  // namespace

Result<std::unique_ptr<RmaRegion>> Cluster::export_region(void* addr, size_t length) {
  if (!transport_) return Status::error(EOPNOTSUPP, "no transport");
  auto region = rdma::MemoryRegion::map(*transport_, addr, length);
  if (!region) return region.status();
  return std::unique_ptr<RmaRegion>(std::make_unique<UcxRegion>(std::move(region).value()));
}

void Cluster::get_async(int rank, uint64_t remote_addr, std::span<const uint8_t> rkey, void* dst, size_t len,
                        std::shared_ptr<void> keepalive, std::function<void(Status)> done) {
  if (!transport_ || rank == this->rank()) return done(Status::error(EIO, "no such peer"));
  transport_->get_async(rank, remote_addr, rkey, dst, len, std::move(keepalive), timeout(), std::move(done));
}

}  // namespace dsdfs::fs
