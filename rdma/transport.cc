// SPDX-License-Identifier: Apache-2.0
// Transport lifecycle and the progress loop.
#include "common/mutex.h"
#include "rdma/transport.h"

#include <poll.h>
#include <pthread.h>
#include <time.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/log.h"
#include "common/noexcept_boundary.h"
#include "rdma/status_map.h"
#include "rdma/transport_ops.h"

namespace dsdfs::rdma {

Transport::Transport(const Options& options)
    : options_(options),
      peer_dead_(new std::atomic<bool>[static_cast<size_t>(options.nranks)]),
      last_heard_(static_cast<size_t>(options.nranks), Clock::now()),
      silent_since_(static_cast<size_t>(options.nranks)),
      endpoints_(options.rank, options.nranks) {
  for (int r = 0; r < options.nranks; ++r) peer_dead_[static_cast<size_t>(r)].store(false);
}

Result<std::unique_ptr<Transport>> Transport::create(const Options& options) {
  if (options.nranks <= 0 || options.rank < 0 || options.rank >= options.nranks) {
    return Status::error(EINVAL, "bad rank " + std::to_string(options.rank) + " of " +
                                     std::to_string(options.nranks));
  }
  std::unique_ptr<Transport> t(new Transport(options));
  Status s = t->init();
  if (!s) {
    t->shutdown();
    return s;
  }
  return t;
}

Status Transport::init() {
  ucp_config_t* config = nullptr;
  ucs_status_t status = ucp_config_read(nullptr, nullptr, &config);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_config_read failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_config_read");
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED |
                      UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
  // Context-level calls (ucp_mem_map/unmap, ucp_rkey_pack from MemoryRegion)
  // come from caller threads while the progress thread uses the worker; this
  // makes UCX serialise them on the context lock. The worker stays SINGLE.
  params.mt_workers_shared = 1;
  params.estimated_num_eps = static_cast<size_t>(options_.nranks);
  ucp_context_h context = nullptr;
  status = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_init failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_init");
  }
  context_.reset(context);

  ucp_worker_params_t wparams{};
  wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wparams.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_h worker = nullptr;
  status = ucp_worker_create(context_.get(), &wparams, &worker);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_worker_create failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_worker_create");
  }
  worker_.reset(worker);

  status = ucp_worker_get_efd(worker, &worker_efd_);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_worker_get_efd failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_worker_get_efd");
  }

  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  status = ucp_worker_get_address(worker, &address, &address_length);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_worker_get_address failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_worker_get_address");
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(address);
  local_address_.assign(bytes, bytes + address_length);
  ucp_worker_release_address(worker, address);

  ucp_am_handler_param_t am{};
  am.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                  UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  am.id = kAmId;
  am.flags = UCP_AM_FLAG_WHOLE_MSG;
  am.cb = &Transport::am_recv_cb;
  am.arg = this;
  status = ucp_worker_set_am_recv_handler(worker, &am);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_worker_set_am_recv_handler failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_worker_set_am_recv_handler");
  }

  queue_ = std::make_shared<SubmitQueue>(worker);
  progress_thread_ = std::thread([this] {
    progress_id_.store(std::this_thread::get_id());
    run_at_boundary("rdma progress thread", [this] { progress_loop(); });
  });
  pthread_setname_np(progress_thread_.native_handle(), "dsdfs-ucx");
  return Status::ok();
}

Transport::~Transport() {
  bool forgot;
  {
    MutexLock lock(shutdown_mu_);
    forgot = !shut_down_;
  }
  if (forgot) {
    // STYLE says destructors only log; but a running progress thread must not
    // outlive *this, so a forgotten shutdown() is done here.
    DSDFS_WARN("rdma::Transport destroyed without shutdown(); shutting down now");
    shutdown();
  }
}

bool Transport::submit(SubmitQueue::Task task) {
  if (!queue_) return false;
  return queue_->push(&task);
}

Status Transport::run_on_progress_thread(std::function<void()> fn) {
  if (on_progress_thread()) {
    int err = run_at_boundary("rdma progress task", fn);
    return err == 0 ? Status::ok() : Status::error(err, "progress task failed");
  }
  struct Done {
    Mutex mu;
    std::condition_variable_any cv;
    bool done = false;
    int err = 0;
  };
  auto state = std::make_shared<Done>();
  bool queued = submit([fn = std::move(fn), state] {
    int err = run_at_boundary("rdma progress task", fn);
    MutexLock lock(state->mu);
    state->done = true;
    state->err = err;
    state->cv.notify_all();
  });
  if (!queued) return Status::error(EIO, "transport is shut down");
  auto bound = std::max(options_.default_timeout, options_.shutdown_timeout) + kWaitGrace;
  UniqueMutexLock lock(state->mu);
  if (!state->cv.wait_for(lock, bound, [&] { return state->done; })) {
    DSDFS_ERROR("progress thread did not run a task within %lld ms; is a handler blocking?",
                static_cast<long long>(bound.count()));
    return Status::error(ETIMEDOUT, "progress thread unresponsive");
  }
  return state->err == 0 ? Status::ok() : Status::error(state->err, "progress task failed");
}

void Transport::progress_loop() {
  Clock::time_point last_busy{};
  for (;;) {
    bool busy = drain_submit_queue();
    while (ucp_worker_progress(worker_.get()) != 0) busy = true;
    busy |= dispatch_inbox();
    busy |= handle_failed_peers();
    busy |= expire_deadlines(Clock::now());
    busy |= send_progress_notices(Clock::now());
    if (stop_.load()) {
      // shutdown() closed the queue before setting stop_, so this drain sees
      // every task ever queued; they fail with EIO (shutting_down_ is set).
      drain_submit_queue();
      dispatch_inbox();
      return;
    }
    if (busy) {
      last_busy = Clock::now();
      continue;
    }
    // Right after activity, poll a little longer before sleeping: a reply or
    // the next request of a burst usually follows within microseconds, and
    // a wake-up from poll() costs far more. Yielding keeps the cores free
    // for the threads that produce that work.
    if (Clock::now() - last_busy < kSpinAfterActivity) {
      std::this_thread::yield();
      continue;
    }
    // UCX wakeup contract: arm, and sleep only if arm says UCS_OK; BUSY
    // means events are pending and we must progress again first. A
    // ucp_worker_signal() before arm also makes arm return BUSY, so a task
    // queued between our drain and this point is never missed.
    ucs_status_t status = ucp_worker_arm(worker_.get());
    if (status == UCS_ERR_BUSY) continue;
    int timeout_ms = poll_timeout_ms(Clock::now());
    if (status != UCS_OK) {
      uint64_t suppressed = 0;
      if (arm_error_log_.allow(&suppressed)) {
        DSDFS_ERROR("ucp_worker_arm failed: %s; polling", ucs_status_string(status));
      }
      timeout_ms = (timeout_ms < 0 || timeout_ms > 10) ? 10 : timeout_ms;
    }
    struct pollfd pfd = {worker_efd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, timeout_ms);
    if (rc < 0 && errno != EINTR) {
      DSDFS_ERROR("poll on the UCX worker fd failed: %s", std::strerror(errno));
    }
  }
}

bool Transport::drain_submit_queue() {
  std::deque<SubmitQueue::Task> tasks = queue_->take_all();
  for (auto& t : tasks) run_at_boundary("rdma submitted task", t);
  return !tasks.empty();
}

bool Transport::handle_failed_peers() {
  if (failed_peers_.empty()) return false;
  std::vector<std::pair<int, ucs_status_t>> failed;
  failed.swap(failed_peers_);
  for (auto [rank, status] : failed) {
    // UCS_OK marks a goodbye message (on_am), anything else an endpoint error.
    fail_peer(rank, status == UCS_OK ? "peer shut down" : ucs_status_string(status),
              status == UCS_OK);
  }
  return true;
}

void Transport::fail_peer(int rank, const char* why, bool goodbye) {
  if (rank < 0 || rank >= options_.nranks) return;
  peer_dead_[static_cast<size_t>(rank)].store(true);
  Peer* peer = endpoints_.find(rank);
  if (peer == nullptr || peer->failed) return;
  peer->failed = true;
  if (shutting_down_) {
    DSDFS_DEBUG("rank %d gone during shutdown: %s", rank, why);
  } else if (goodbye) {
    DSDFS_INFO("rank %d shut down; failing its outstanding calls with EIO", rank);
  } else {
    DSDFS_WARN("rank %d failed: %s; failing its outstanding calls with EIO", rank, why);
  }
  fail_calls_to(rank, EIO);
  if (!goodbye && !shutting_down_ && on_peer_failed_) run_at_boundary("peer-failed callback", [&] { on_peer_failed_(rank); });
  // Force-closing completes the endpoint's outstanding UCX requests (sends,
  // gets) with UCS_ERR_CANCELED; their callbacks release what they hold.
  endpoints_.close_failed(peer);
}

void Transport::fail_calls_to(int rank, int err) {
  std::vector<uint64_t> ids;
  for (auto& [id, call] : pending_calls_) {
    if (call.rank == rank) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    complete_call(id, Status::error(err, "rank " + std::to_string(rank) + " failed"));
  }
}

bool Transport::expire_deadlines(Clock::time_point now) {
  bool any = false;
  while (!deadlines_.empty() && deadlines_.top().first <= now) {
    uint64_t id = deadlines_.top().second;
    deadlines_.pop();
    if (auto it = pending_calls_.find(id); it != pending_calls_.end()) {
      if (it->second.deadline > now) continue;  // moved on by a progress notice (its new entry is queued)
      any = true;
      const PendingCall& c = it->second;
      const int rank = c.rank;
      const Clock::time_point sent = c.sent;
      DSDFS_DEBUG("call %llu (op %u) to rank %d timed out", static_cast<unsigned long long>(id),
                  c.op, c.rank);
      complete_call(id, Status::error(ETIMEDOUT, "call to rank " + std::to_string(c.rank) + " op " +
                                                     std::to_string(c.op) + " timed out"));
      note_silence(rank, sent, now);
    } else if (auto g = pending_gets_.find(id); g != pending_gets_.end()) {
      any = true;
      if (!g->second->timed_out) {
        g->second->timed_out = true;
        // See get(): only closing the endpoint stops UCX from writing later.
        fail_peer(g->second->rank, "one-sided get timed out");
      }
    }
  }
  return any;
}

bool Transport::send_progress_notices(Clock::time_point now) {
  if (serving_.empty() || now < next_notice_check_) return false;
  const Clock::duration every = notice_every();
  next_notice_check_ = now + every / 4;
  bool any = false;
  for (auto it = serving_.begin(); it != serving_.end();) {
    const int rank = it->first.first;
    Peer* peer = endpoints_.find(rank);
    if (peer == nullptr || peer->failed) {
      it = serving_.erase(it);  // no one to answer any more
      continue;
    }
    if (now - it->second.told >= every) {
      it->second.told = now;
      send_message(peer, make_header(it->second.op, kWireFlagProgress, it->first.second, 0, 0), OutPayload());
      any = true;
    }
    ++it;
  }
  return any;
}

void Transport::stretch_call(uint64_t id, int rank) {
  auto it = pending_calls_.find(id);
  if (it == pending_calls_.end() || it->second.rank != rank) return;  // answered or expired meanwhile
  PendingCall& c = it->second;
  const Clock::time_point limit = c.sent + kMaxStretch * c.timeout;
  const Clock::time_point next = std::min(Clock::now() + c.timeout, limit);
  if (next <= c.deadline) return;
  c.deadline = next;
  push_deadline(next, id);
}

void Transport::note_silence(int rank, Clock::time_point sent, Clock::time_point now) {
  if (options_.dead_after.count() <= 0 || rank < 0 || rank >= options_.nranks) return;
  const auto r = static_cast<size_t>(rank);
  if (last_heard_[r] >= sent) return;  // it spoke since: busy, not gone
  if (silent_since_[r] == Clock::time_point{}) silent_since_[r] = sent;
  const auto silent = now - silent_since_[r];
  if (silent < options_.dead_after) return;
  char why[128];
  std::snprintf(why, sizeof why, "no message from it for %.1f s while calls to it timed out",
                std::chrono::duration<double>(silent).count());
  fail_peer(rank, why);
}

void Transport::heard_from(int rank) {
  const auto r = static_cast<size_t>(rank);
  last_heard_[r] = Clock::now();
  silent_since_[r] = Clock::time_point{};
}

void Transport::push_deadline(Clock::time_point deadline, uint64_t id) {
  // Completed calls leave their entry behind (lazy deletion); without this a
  // high call rate with long timeouts would grow the heap without bound.
  const size_t live = pending_calls_.size() + pending_gets_.size();
  if (deadlines_.size() > 1024 && deadlines_.size() > 4 * live) {
    std::vector<Deadline> keep;
    keep.reserve(live + 1);
    for (auto& [cid, c] : pending_calls_) keep.emplace_back(c.deadline, cid);
    for (auto& [gid, g] : pending_gets_) keep.emplace_back(g->deadline, gid);
    deadlines_ = decltype(deadlines_)(std::greater<Deadline>(), std::move(keep));
  }
  deadlines_.emplace(deadline, id);
}

int Transport::poll_timeout_ms(Clock::time_point now) {
  // Drop finished entries from the top so that they do not wake us needlessly.
  while (!deadlines_.empty()) {
    uint64_t id = deadlines_.top().second;
    if (pending_calls_.count(id) != 0 || pending_gets_.count(id) != 0) break;
    deadlines_.pop();
  }
  // Requests being served: wake up for their callers' progress notices.
  const int notice_ms =
      serving_.empty()
          ? -1
          : static_cast<int>(std::max<int64_t>(
                1, std::chrono::duration_cast<std::chrono::milliseconds>(notice_every() / 4).count()));
  if (deadlines_.empty()) return notice_ms;
  auto wait = deadlines_.top().first - now;
  if (notice_ms >= 0 && wait > std::chrono::milliseconds(notice_ms)) wait = std::chrono::milliseconds(notice_ms);
  if (wait <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  return ms > 60000 ? 60000 : static_cast<int>(ms);
}

void Transport::shutdown() {
  shutdown_impl(true);
}

void Transport::shutdown_impl(bool graceful) {
  if (on_progress_thread()) {
    DSDFS_ERROR("INTERNAL ERROR: Transport::shutdown() called on the progress thread");
    return;
  }
  MutexLock lock(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (progress_thread_.joinable()) {
    Status s = run_on_progress_thread([this, graceful] { shutdown_on_progress_thread(graceful); });
    if (!s) DSDFS_WARN("shutdown: %s", s.to_string().c_str());
    queue_->close();
    stop_.store(true);
    ucp_worker_signal(worker_.get());
    progress_thread_.join();
  } else if (queue_) {
    queue_->close();
  }
  // Single-threaded from here. Destroying the worker completes any request
  // UCX still holds; their callbacks see a whole Transport.
  if (!pending_gets_.empty()) {
    DSDFS_WARN("%zu one-sided get(s) still outstanding at worker destruction",
               pending_gets_.size());
  }
  for (auto& m : inbox_) {
    if (m.ucx_data != nullptr && worker_) ucp_am_data_release(worker_.get(), m.ucx_data);
  }
  inbox_.clear();
  worker_.reset();
}

void Transport::shutdown_on_progress_thread(bool graceful) {
  shutting_down_ = true;
  for (int r = 0; r < options_.nranks; ++r) {
    Peer* peer = endpoints_.find(r);
    if (peer == nullptr || peer->failed || r == options_.rank) continue;
    if (graceful) {
      send_message(peer, make_header(0, kWireFlagGoodbye, 0, 0, 0), {});
    } else {
      peer->failed = true;  // close_all then force-closes it
    }
  }
  std::vector<uint64_t> ids;
  for (auto& [id, call] : pending_calls_) ids.push_back(id);
  for (uint64_t id : ids) complete_call(id, Status::error(EIO, "transport shutting down"));
  // Flushes the goodbyes and in-flight replies and gets, then closes.
  endpoints_.close_all(worker_.get(), Clock::now() + options_.shutdown_timeout);
  for (int r = 0; r < options_.nranks; ++r) peer_dead_[static_cast<size_t>(r)].store(true);
}

std::chrono::nanoseconds Transport::progress_thread_cpu_time() const {
  // const_cast: native_handle() is not const, but only reads the id.
  auto& thread = const_cast<std::thread&>(progress_thread_);
  if (!thread.joinable()) return std::chrono::nanoseconds(0);
  clockid_t cid;
  if (pthread_getcpuclockid(thread.native_handle(), &cid) != 0) return std::chrono::nanoseconds(0);
  struct timespec ts;
  if (clock_gettime(cid, &ts) != 0) return std::chrono::nanoseconds(0);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

void Transport::declare_dead(int rank, std::string why) {
  if (rank < 0 || rank >= options_.nranks || rank == options_.rank) return;
  submit([this, rank, why = std::move(why)] { fail_peer(rank, why.c_str()); });
}

bool Transport::peer_alive(int rank) const {
  if (rank < 0 || rank >= options_.nranks || !connected_.load()) return false;
  return !peer_dead_[static_cast<size_t>(rank)].load();
}

}  // namespace dsdfs::rdma
