// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>
#include <ucp/api/ucp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <span>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "rdma/endpoint_table.h"
#include "rdma/log_limiter.h"
#include "rdma/options.h"
#include "rdma/payload.h"
#include "rdma/responder.h"
#include "rdma/submit_queue.h"
#include "rdma/wire.h"

namespace dsdfs::rdma {

// The node-to-node transport of one process (DESIGN.md 3.3, 3.4): one UCX
// context, one worker driven by one progress thread, one endpoint per rank,
// RPC over active messages and one-sided gets from registered memory.
//
// Lifecycle: create() -> register_handler()* -> local_address() -> (the
// launcher allgathers the addresses) -> connect_all() -> (the launcher runs a
// barrier, so that every rank can answer) -> call()/get()... -> shutdown().
// The destructor only logs, except that a forgotten shutdown() is done there
// as a last resort (a running progress thread must not outlive the object).
//
// Threads: the progress thread alone touches the worker, endpoints, rkeys
// and the request tables; other threads queue closures into the SubmitQueue
// and wake it with ucp_worker_signal(). When idle it sleeps in poll() on the
// worker's event fd after ucp_worker_arm() (UCS_ERR_BUSY: do not sleep), so
// an idle transport uses no CPU. Handlers and call_async callbacks run on
// the progress thread and must be short: no blocking, no blocking Transport
// methods (those return EDEADLK when called from the progress thread).
//
// All public methods are thread-safe. Locks, in the only order they nest:
// shutdown_mu_ -> SubmitQueue::mu_ (leaf). No lock is held while user code
// (handlers, callbacks) runs or while waiting for the network.
//
// Errors: remote errnos come back unchanged; a call not answered in time
// fails with ETIMEDOUT; an unknown, failed or departed peer, a transport
// error, or a call racing with shutdown() fail with EIO (we use EIO, not
// EHOSTDOWN: it is what the kernel and the file system expect).
class Transport {
 public:
  using CallResult = Result<std::vector<uint8_t>>;
  using CallCallback = std::function<void(CallResult)>;
  // The length of a reply received into the caller's buffer, or the error.
  using IntoCallback = std::function<void(Result<size_t>)>;
  // Runs on the progress thread. payload is valid only during the call.
  using Handler =
      std::function<void(int source_rank, std::span<const uint8_t> payload, Responder responder)>;

  // The UCX active message id used for all dsdfs messages.
  static constexpr unsigned kAmId = 0x2d;
  // Slack granted past a timeout before a waiting thread gives up on the
  // progress thread itself (only a broken progress thread needs it).
  static constexpr std::chrono::milliseconds kWaitGrace{5000};
  // How long the progress thread keeps polling after its last activity
  // before it sleeps on the worker's event fd.
  static constexpr std::chrono::microseconds kSpinAfterActivity{100};
  // A request that is still queued or in its handler after a quarter of
  // Options::default_timeout has its caller told so (kWireFlagProgress),
  // and again every quarter: a rank that is alive but slow (a store whose
  // truncate waits for the disk, a handler behind the kernel's lock of a
  // file) is waited for, up to kMaxStretch times the call's timeout; a rank
  // that says nothing (stopped, cut off, its progress thread stuck) is not.
  static constexpr int kMaxStretch = 6;
  // How long a waiting thread waits for a call of this timeout (progress
  // notices included) before it gives up on the progress thread itself.
  static constexpr std::chrono::milliseconds wait_bound(std::chrono::milliseconds timeout) {
    return kMaxStretch * timeout + kWaitGrace;
  }

  // Creates the context and worker (reading UCX_* from the environment) and
  // starts the progress thread. Fails with EINVAL on bad options.
  static Result<std::unique_ptr<Transport>> create(const Options& options);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  const Options& options() const { return options_; }
  int rank() const { return options_.rank; }
  int nranks() const { return options_.nranks; }

  // The worker address blob a peer passes to connect_all().
  std::vector<uint8_t> local_address() const { return local_address_; }

  // REQUIRES: before connect_all(). Replaces an earlier handler for op.
  // Requests for an op without handler are answered with ENOSYS.
  Status register_handler(uint16_t op, Handler handler);

  // Connects to every rank (self included). Blocks until the endpoints exist.
  Status connect_all(const std::vector<std::vector<uint8_t>>& addresses_by_rank);

  // Sends op(payload) to rank and waits for its reply. REQUIRES: not on the
  // progress thread. The payload is copied; a reply larger than one eager
  // message arrives by rendezvous.
  CallResult call(int rank, uint16_t op, std::span<const uint8_t> payload,
                  std::chrono::milliseconds timeout);
  CallResult call(int rank, uint16_t op, std::span<const uint8_t> payload) {
    return call(rank, op, payload, options_.default_timeout);
  }
  // Like call() but returns at once; done runs exactly once, on the progress
  // thread (or on this thread if the call fails before it is queued).
  void call_async(int rank, uint16_t op, std::span<const uint8_t> payload,
                  std::chrono::milliseconds timeout, CallCallback done);
  // Like call_async, but the reply's payload lands in dst: a rendezvous reply
  // is received straight into it (no copy), an eager one copied there; done
  // gets its length. A reply larger than dst fails with EMSGSIZE. keepalive
  // is held until UCX can no longer write into dst, which may be after done
  // ran (a call that timed out while its reply was arriving); so dst must
  // stay valid while keepalive lives, and a late write after a failed call
  // carries the same reply the caller asked for.
  void call_into_async(int rank, uint16_t op, std::span<const uint8_t> payload,
                       std::span<uint8_t> dst, std::shared_ptr<void> keepalive,
                       std::chrono::milliseconds timeout, IntoCallback done);
  // The same call to many ranks in parallel; results in the order of ranks.
  std::vector<CallResult> call_many(std::span<const int> ranks, uint16_t op,
                                    std::span<const uint8_t> payload,
                                    std::chrono::milliseconds timeout);

  // One-sided read of len bytes at remote_addr in rank's memory described by
  // rkey (MemoryRegion::rkey() on that rank) into local. REQUIRES: not on the
  // progress thread; local stays valid until get() returns.
  // A get that times out fails the peer (its endpoint is force-closed): only
  // that guarantees UCX no longer writes into local after we return.
  Status get(int rank, uint64_t remote_addr, std::span<const uint8_t> rkey, void* local, size_t len,
             std::chrono::milliseconds timeout);
  Status get(int rank, uint64_t remote_addr, std::span<const uint8_t> rkey, void* local,
             size_t len) {
    return get(rank, remote_addr, rkey, local, len, options_.default_timeout);
  }

  // Like get() but returns at once; done runs exactly once, on the progress
  // thread (or on this thread if the get fails before it is queued).
  // keepalive is held until UCX no longer writes into local.
  void get_async(int rank, uint64_t remote_addr, std::span<const uint8_t> rkey, void* local,
                 size_t len, std::shared_ptr<void> keepalive, std::chrono::milliseconds timeout,
                 std::function<void(Status)> done);

  // Whether one-sided RMA to rank runs in hardware or shared memory (see
  // rma_probe.h); false for tcp (emulated), unknown or failed peers.
  bool rma_is_native(int rank);
  // Options::bulk_mode applied to rank: true = use get(), false = have the
  // owner stream the bytes as active message replies.
  bool bulk_uses_rma(int rank);
  // False once the peer failed or said goodbye (or if never connected).
  bool peer_alive(int rank) const;
  // Declares rank dead as if its endpoint had failed (another rank found it
  // dead): its calls fail with EIO, what it sends is dropped. Any thread.
  void declare_dead(int rank, std::string why);
  // Connects rank again at address, a new worker of that rank (its daemon
  // was restarted: dsdfs-launch --rejoin): the old endpoint is closed, calls
  // still waiting for the old one fail with EIO, and the rank is alive again
  // (what it sends is accepted). Nothing to do if the rank is alive at that
  // address already. Any thread; on the progress thread it runs at once.
  Status readmit(int rank, std::vector<uint8_t> address);
  // The worker address rank is connected at now (empty before connect_all).
  // Any thread.
  std::vector<uint8_t> address_of(int rank) const;
  // Requests of op are dispatched even from a rank declared dead: a
  // restarted daemon's request to be let in again. REQUIRES: before
  // connect_all().
  void accept_from_dead(uint16_t op) { accept_from_dead_op_ = op; }
  // Runs on the progress thread each time a peer is found dead (an endpoint
  // error, silence past Options::dead_after, declare_dead), not for a
  // goodbye or during shutdown; must be short and must not block.
  // REQUIRES: before connect_all().
  void set_on_peer_failed(std::function<void(int rank)> fn) { on_peer_failed_ = std::move(fn); }

  // Says goodbye to the peers, fails outstanding work with EIO, closes the
  // endpoints (bounded by Options::shutdown_timeout), stops the progress
  // thread and destroys the worker. Idempotent. REQUIRES: not on the
  // progress thread; every MemoryRegion of this transport is destroyed
  // before the Transport (the context lives until the destructor).
  void shutdown();

  // CPU time consumed by the progress thread so far (diagnostics, tests).
  // REQUIRES: not concurrent with shutdown(); 0 once shut down.
  std::chrono::nanoseconds progress_thread_cpu_time() const;

  // Testing hook: shutdown() without goodbye messages and with force-closed
  // endpoints, which is what a crash looks like to the peers: they learn it
  // only from UCX endpoint errors.
  void crash_for_testing() { shutdown_impl(false); }
  // Testing hook: sends header and payload as one raw AM (header unchecked).
  Status send_raw_for_testing(int rank, std::span<const uint8_t> header,
                              std::span<const uint8_t> payload);

 private:
  friend class Responder;
  friend class MemoryRegion;

  struct ContextDeleter {
    void operator()(ucp_context_h c) const { ucp_cleanup(c); }
  };
  struct WorkerDeleter {
    void operator()(ucp_worker_h w) const { ucp_worker_destroy(w); }
  };
  using ContextPtr = std::unique_ptr<std::remove_pointer_t<ucp_context_h>, ContextDeleter>;
  using WorkerPtr = std::unique_ptr<std::remove_pointer_t<ucp_worker_h>, WorkerDeleter>;
  using Clock = std::chrono::steady_clock;

  struct PendingCall {
    int rank;
    uint16_t op;
    Clock::time_point deadline;
    Clock::time_point sent;  // when start_call() queued it
    Clock::duration timeout{};  // the call's own (deadline - sent, before any progress notice)
    CallCallback done;  // or, for call_into_async:
    IntoCallback done_into;
    uint8_t* dst = nullptr;
    size_t dst_capacity = 0;
    std::shared_ptr<void> keepalive;
    // Ends the call with an error, through whichever callback it has.
    void fail(Status s) {
      if (done_into) done_into(std::move(s));
      else done(std::move(s));
    }
  };
  struct PendingGet;
  struct SendOp;
  struct RecvOp;
  // A validated message waiting to be dispatched by the progress loop. Its
  // bytes are either owned or UCX persistent data (released after dispatch).
  struct InMessage {
    WireHeader header;
    std::vector<uint8_t> owned;
    void* ucx_data = nullptr;
    size_t length = 0;
    bool into = false;  // a reply already in its call's dst (length bytes)
    std::span<const uint8_t> bytes() const {
      return ucx_data != nullptr
                 ? std::span<const uint8_t>(static_cast<const uint8_t*>(ucx_data), length)
                 : std::span<const uint8_t>(owned);
    }
  };
  using Deadline = std::pair<Clock::time_point, uint64_t>;

  explicit Transport(const Options& options);
  Status init();

  // Any thread.
  bool on_progress_thread() const { return std::this_thread::get_id() == progress_id_.load(); }
  // Runs fn on the progress thread and waits (bounded) for it.
  Status run_on_progress_thread(std::function<void()> fn);
  // Queues task; false if the transport is shut down.
  bool submit(SubmitQueue::Task task);

  // Progress thread only.
  void progress_loop();
  bool drain_submit_queue();
  bool dispatch_inbox();
  bool handle_failed_peers();
  bool expire_deadlines(Clock::time_point now);
  // Tells the callers of requests still being served here that they are
  // (kWireFlagProgress); true if it sent any.
  bool send_progress_notices(Clock::time_point now);
  // The interval of those notices: a quarter of Options::default_timeout.
  Clock::duration notice_every() const {
    return std::max<Clock::duration>(options_.default_timeout / 4, std::chrono::milliseconds(10));
  }
  // A progress notice for call id from rank: its deadline moves on.
  void stretch_call(uint64_t id, int rank);
  // A call to rank sent at `sent` timed out at `now`: declares rank dead if
  // it has been silent for Options::dead_after.
  void note_silence(int rank, Clock::time_point sent, Clock::time_point now);
  void heard_from(int rank);
  int poll_timeout_ms(Clock::time_point now);
  // Adds a deadline; rebuilds the heap when completed entries dominate it.
  void push_deadline(Clock::time_point deadline, uint64_t id);
  void start_call(int rank, uint16_t op, std::vector<uint8_t> payload, Clock::time_point deadline,
                  PendingCall call);
  void call_async_impl(int rank, uint16_t op, std::span<const uint8_t> payload,
                       std::chrono::milliseconds timeout, PendingCall call);
  // Receives the payload of a reply to an into-call (on_am); see there.
  ucs_status_t receive_into(const WireHeader& h, PendingCall& call, void* data, size_t length,
                            bool rndv);
  // get() and get_async(): validation, the shared record, queueing.
  Status get_precheck(int rank, const void* local, size_t len, std::span<const uint8_t> rkey) const;
  std::shared_ptr<PendingGet> new_get(int rank, void* local, size_t len,
                                      std::chrono::milliseconds timeout);
  bool queue_get(const std::shared_ptr<PendingGet>& op, uint64_t remote_addr,
                 std::span<const uint8_t> rkey);
  void start_get(const std::shared_ptr<PendingGet>& op, uint64_t remote_addr,
                 const std::vector<uint8_t>& rkey);
  void finish_get(PendingGet* op, ucs_status_t status);
  // Reports the end of a get: to its callback (get_async) or its waiter.
  void complete_get(PendingGet& op, Status s);
  // Returns false if the send failed at once (the caller fails its call).
  bool send_message(Peer* peer, const WireHeader& header, OutPayload payload);
  bool send_bytes(Peer* peer, std::vector<uint8_t> header, OutPayload payload, uint64_t call_id);
  WireHeader make_header(uint16_t op, uint16_t flags, uint64_t request_id, int32_t status,
                         size_t payload_length) const;
  void send_reply(int rank, uint16_t op, uint64_t request_id, int err, OutPayload payload);
  void complete_call(uint64_t request_id, CallResult result);
  void complete_into(uint64_t request_id, size_t length);
  void fail_peer(int rank, const char* why, bool goodbye = false);
  void fail_calls_to(int rank, int err);
  ucs_status_t on_am(const void* header, size_t header_length, void* data, size_t length,
                     const ucp_am_recv_param_t* param);
  void shutdown_impl(bool graceful);
  void shutdown_on_progress_thread(bool graceful);
  void dispatch_request(InMessage& msg);
  void dispatch_reply(InMessage& msg);

  // UCX C callbacks (noexcept boundaries).
  static ucs_status_t am_recv_cb(void* arg, const void* header, size_t header_length, void* data,
                                 size_t length, const ucp_am_recv_param_t* param) noexcept;
  static void ep_error_cb(void* arg, ucp_ep_h ep, ucs_status_t status) noexcept;
  static void send_done_cb(void* request, ucs_status_t status, void* user_data) noexcept;
  static void recv_done_cb(void* request, ucs_status_t status, size_t length,
                           void* user_data) noexcept;
  static void get_done_cb(void* request, ucs_status_t status, void* user_data) noexcept;

  // Members in creation order; destruction runs in reverse. Endpoints (and
  // the rkeys they hold) are closed and the worker destroyed by shutdown(),
  // before the context; MemoryRegions (owned by callers) die before us.
  const Options options_;
  ContextPtr context_;
  WorkerPtr worker_;
  int worker_efd_ = -1;  // owned by the worker
  std::vector<uint8_t> local_address_;
  std::shared_ptr<SubmitQueue> queue_;
  // Read by any thread (fast failure), written by the progress thread.
  std::unique_ptr<std::atomic<bool>[]> peer_dead_;
  // When each peer was last heard from (any message), and since when it has
  // been silent while calls to it timed out (the send time of the oldest such
  // call; epoch: not silent). Progress thread only. See Options::dead_after.
  std::vector<Clock::time_point> last_heard_;
  std::vector<Clock::time_point> silent_since_;
  LogLimiter dead_peer_log_;
  std::function<void(int rank)> on_peer_failed_;  // immutable once connected
  uint16_t accept_from_dead_op_ = 0;                // immutable once connected
  // Copies of the endpoints' addresses, for address_of() (written by the
  // progress thread).
  mutable Mutex addresses_mu_;  // leaf
  std::vector<std::vector<uint8_t>> addresses_ GUARDED_BY(addresses_mu_);
  std::atomic<bool> connected_{false};

  // Progress thread only.
  EndpointTable endpoints_;
  std::unordered_map<uint16_t, Handler> handlers_;
  std::unordered_map<uint64_t, PendingCall> pending_calls_;
  // Requests received and not yet answered: (source rank, request id) ->
  // when their caller was last told (dispatch time at first).
  struct Serving {
    uint16_t op;
    Clock::time_point told;
  };
  std::map<std::pair<int, uint64_t>, Serving> serving_;
  Clock::time_point next_notice_check_{};
  std::unordered_map<uint64_t, std::shared_ptr<PendingGet>> pending_gets_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<Deadline>> deadlines_;
  std::deque<InMessage> inbox_;
  std::vector<std::pair<int, ucs_status_t>> failed_peers_;
  uint64_t next_request_id_ = 1;
  bool shutting_down_ = false;
  LogLimiter bad_header_log_;
  LogLimiter job_key_log_;
  LogLimiter stale_reply_log_;
  LogLimiter arm_error_log_;

  // Shutdown and thread control.
  Mutex shutdown_mu_;
  bool shut_down_ = false;  // guarded by shutdown_mu_
  std::atomic<bool> stop_{false};
  std::atomic<std::thread::id> progress_id_{};
  std::thread progress_thread_;  // last: started once everything above exists
};

}  // namespace dsdfs::rdma
