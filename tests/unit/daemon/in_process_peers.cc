// SPDX-License-Identifier: Apache-2.0
#include "tests/unit/daemon/in_process_peers.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace dsdfs::fs::testing {

InProcessNet::InProcessNet(int nranks) : nranks_(nranks) {
  for (int r = 0; r < nranks; ++r) ranks_.push_back(std::make_unique<Rank>());
}

InProcessNet::~InProcessNet() { shutdown(); }

void InProcessNet::kill(int r) { ranks_.at(r)->dead.store(true); }

void InProcessNet::revive(int r) { ranks_.at(r)->dead.store(false); }

void InProcessNet::silence(int r, bool silent) { ranks_.at(r)->silent.store(silent); }

bool InProcessNet::alive(int r) const { return r >= 0 && r < nranks_ && !ranks_[r]->dead.load(); }

void InProcessNet::partition(std::vector<int> sides) {
  for (int r = 0; r < nranks_ && r < static_cast<int>(sides.size()); ++r) ranks_[r]->side.store(sides[r]);
}

bool InProcessNet::alive_from(int observer, int r) const {
  return alive(r) && (observer < 0 || observer >= nranks_ || ranks_[observer]->side.load() == ranks_[r]->side.load());
}

void InProcessNet::hold(int r) {
  Rank& rank = *ranks_.at(r);
  MutexLock lock(rank.held_mu);
  rank.holding = true;
}

void InProcessNet::release(int r) {
  Rank& rank = *ranks_.at(r);
  std::vector<Rank::Held> held;
  {
    MutexLock lock(rank.held_mu);
    rank.holding = false;
    held.swap(rank.held);
  }
  for (auto& h : held) {
    if (rank.ordered.count(static_cast<uint16_t>(h.op))) (void)serve(h.from, r, h.op, h.payload, true);
  }
  for (auto it = held.rbegin(); it != held.rend(); ++it) {
    if (!rank.ordered.count(static_cast<uint16_t>(it->op))) (void)serve(it->from, r, it->op, it->payload, true);
  }
}

uint64_t InProcessNet::take_ticket(int to, Op op) {
  Rank& rank = *ranks_[to];
  if (!rank.ordered.count(static_cast<uint16_t>(op))) return 0;
  MutexLock lock(rank.order_mu);
  return ++rank.next_ticket;
}

Peers::Reply InProcessNet::serve_in_turn(int from, int to, Op op, std::span<const uint8_t> payload, uint64_t ticket) {
  if (ticket == 0) return serve(from, to, op, payload, true);
  Rank& rank = *ranks_[to];
  {
    UniqueMutexLock lock(rank.order_mu);
    rank.order_cv.wait(lock, [&] {
      rank.order_mu.assert_held();
      return rank.serving + 1 == ticket || down_.load();
    });
    if (rank.serving + 1 != ticket) return Status::error(EIO, "the job is shutting down");
  }
  auto reply = serve(from, to, op, payload, true);
  MutexLock lock(rank.order_mu);
  rank.serving = ticket;
  rank.order_cv.notify_all();
  return reply;
}

void InProcessNet::shutdown() {
  std::list<Thread> threads;
  {
    MutexLock lock(threads_mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  down_.store(true);
  stop_cv_.notify_all();
  for (auto& rank : ranks_) {
    MutexLock lock(rank->order_mu);
    rank->order_cv.notify_all();
  }
  for (auto& t : threads) t.thread.join();
}

bool InProcessNet::spawn(int to, std::function<void()> fn) {
  MutexLock lock(threads_mu_);
  if (stopping_) return false;
  // Threads that ended are joined here (each sets done as its last step).
  for (auto it = threads_.begin(); it != threads_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = threads_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  Rank* rank = to >= 0 ? ranks_[to].get() : nullptr;
  threads_.push_back(Thread{std::thread([rank, fn = std::move(fn), done] {
                              const pid_t tid = static_cast<pid_t>(::gettid());
                              if (rank) {
                                MutexLock l(rank->tids_mu);
                                rank->tids.insert(tid);
                              }
                              fn();
                              if (rank) {
                                MutexLock l(rank->tids_mu);
                                rank->tids.erase(tid);
                              }
                              done->store(true);
                            }),
                            done});
  return true;
}

void InProcessNet::set_hook(int r, Hook hook) {
  Rank& rank = *ranks_.at(static_cast<size_t>(r));
  MutexLock lock(rank.hook_mu);
  rank.hook = std::move(hook);
}

Peers::Reply InProcessNet::serve(int from, int to, Op op, std::span<const uint8_t> payload, bool lending) {
  Rank& rank = *ranks_[to];
  Hook hook;
  {
    MutexLock lock(rank.hook_mu);
    hook = rank.hook;
  }
  if (!hook) return serve_handler(from, to, op, payload, lending);
  hook(from, op, payload, false);
  auto reply = serve_handler(from, to, op, payload, lending);
  hook(from, op, payload, true);
  return reply;
}

Peers::Reply InProcessNet::serve_handler(int from, int to, Op op, std::span<const uint8_t> payload, bool lending) {
  Rank& rank = *ranks_[to];
  const auto id = static_cast<uint16_t>(op);
  if (auto it = rank.handlers.find(id); it != rank.handlers.end()) return it->second(from, payload);
  if (auto it = rank.lending.find(id); lending && it != rank.lending.end()) {
    auto lent = it->second(from, payload);
    if (!lent) return lent.status();
    return std::vector<uint8_t>(lent->bytes.begin(), lent->bytes.end());
  }
  return Status::error(ENOSYS, "no handler");
}

Peers::Reply InProcessNet::request(int from, int to, Op op, std::span<const uint8_t> payload,
                                   std::chrono::milliseconds timeout) {
  if (to < 0 || to >= nranks_) return Status::error(EIO, "unknown rank " + std::to_string(to));
  Rank& rank = *ranks_[to];
  if (!alive_from(from, to)) return Status::error(EIO, "rank " + std::to_string(to) + " is down");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto no_answer = [&] {
    UniqueMutexLock lock(threads_mu_);
    stop_cv_.wait_until(lock, deadline, [&] {
      threads_mu_.assert_held();
      return stopping_;
    });
    return Status::error(ETIMEDOUT, "rank " + std::to_string(to) + " did not answer");
  };
  if (rank.silent.load()) return no_answer();
  bool held = false;
  {
    MutexLock lock(rank.held_mu);
    if (rank.holding) {
      rank.held.push_back({from, op, std::vector<uint8_t>(payload.begin(), payload.end())});
      held = true;
    }
  }
  if (held) return no_answer();
  const uint64_t ticket = take_ticket(to, op);
  struct Call {
    Mutex mu;  // leaf lock
    std::condition_variable_any cv;
    std::optional<Peers::Reply> reply GUARDED_BY(mu);
  };
  auto call = std::make_shared<Call>();
  std::vector<uint8_t> bytes(payload.begin(), payload.end());
  bool started = spawn(to, [this, from, to, op, bytes = std::move(bytes), call, ticket] {
    auto reply = serve_in_turn(from, to, op, bytes, ticket);
    MutexLock lock(call->mu);
    call->reply.emplace(std::move(reply));
    call->cv.notify_all();
  });
  if (!started) return Status::error(EIO, "the job is shutting down");
  UniqueMutexLock lock(call->mu);
  if (!call->cv.wait_until(lock, deadline, [&] {
        call->mu.assert_held();
        return call->reply.has_value();
      })) {
    return Status::error(ETIMEDOUT, "rank " + std::to_string(to) + " did not answer in time");
  }
  // A rank killed or silenced while it worked: its answer is lost.
  if (rank.dead.load()) return Status::error(EIO, "rank " + std::to_string(to) + " is down");
  if (rank.silent.load()) {
    lock.unlock();
    return no_answer();
  }
  return std::move(*call->reply);
}

void InProcessPeers::register_handler(Op op, Handler handler) {
  net_->ranks_[rank()]->handlers[static_cast<uint16_t>(op)] = std::move(handler);
}

void InProcessPeers::register_ordered_handler(Op op, Handler handler) {
  net_->ranks_[rank()]->ordered.insert(static_cast<uint16_t>(op));
  register_handler(op, std::move(handler));
}

void InProcessPeers::register_lending_handler(Op op, LendingHandler handler) {
  net_->ranks_[rank()]->lending[static_cast<uint16_t>(op)] = std::move(handler);
}

bool InProcessPeers::is_worker_thread(pid_t tid) const {
  auto& rank = *net_->ranks_[this->rank()];
  MutexLock lock(rank.tids_mu);
  return rank.tids.count(tid) != 0;
}

Peers::Reply InProcessPeers::call(int r, Op op, std::span<const uint8_t> payload, std::chrono::milliseconds timeout) {
  // This rank's own handler runs in the calling thread, as Cluster's does.
  if (r == rank()) return net_->serve(r, r, op, payload, /*lending=*/false);
  return net_->request(rank(), r, op, payload, timeout);
}

std::vector<Peers::Reply> InProcessPeers::call_all(Op op, std::span<const uint8_t> payload) {
  std::vector<Reply> out(static_cast<size_t>(nranks()), Reply(Status::error(EIO, "rank is dead")));
  std::vector<std::thread> calls;
  for (int r = 0; r < nranks(); ++r) {
    if (r == rank() || !alive(r)) continue;
    calls.emplace_back([this, r, op, payload, &out] { out[r] = net_->request(rank(), r, op, payload, timeout()); });
  }
  out[rank()] = net_->serve(rank(), rank(), op, payload, /*lending=*/false);
  for (auto& t : calls) t.join();
  return out;
}

void InProcessPeers::call_into_async(int r, Op op, std::span<const uint8_t> payload, std::span<uint8_t> dst,
                                     std::shared_ptr<void> keepalive, std::function<void(Result<size_t>)> done) {
  if (r == rank()) return done(Status::error(EIO, "no such peer"));
  std::vector<uint8_t> bytes(payload.begin(), payload.end());
  auto run = [this, r, op, bytes = std::move(bytes), dst, keepalive = std::move(keepalive), done]() mutable {
    auto reply = net_->request(rank(), r, op, bytes, timeout());
    if (!reply) return done(reply.status());
    if (reply->size() > dst.size()) return done(Status::error(EMSGSIZE, "reply larger than the buffer"));
    std::memcpy(dst.data(), reply->data(), reply->size());
    keepalive.reset();
    done(reply->size());
  };
  if (!net_->spawn(-1, std::move(run))) done(Status::error(EIO, "the job is shutting down"));
}

}  // namespace dsdfs::fs::testing
