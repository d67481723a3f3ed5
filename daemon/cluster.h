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
#include "rdma/responder.h"
#include "daemon/stats.h"

namespace dsdfs::rdma {
class Transport;
}

namespace dsdfs::fs {

// RPC operations between ranks. Payloads: daemon/messages.h (kOpMessages
// names each op's request and reply), layouts in docs/architecture.md.
enum class Op : uint16_t {
  kDirMutate = 1,   // to the coordinator: order a directory mutation
  kDirApply = 2,    // coordinator to every rank: apply it to the local replica
  kLocClaim = 3,    // to a locator shard: claim or move a file name
  kLocLookup = 4,   // to a locator shard: who owns (dir, name)?
  kLocRemove = 5,   // to a locator shard: forget (dir, name) if still owned by rank
  kOwnFind = 6,     // to every rank: do you own (dir, name)? (fallback when a shard is dead)
  kFileStat = 7,    // to the owner: attributes and version
  kFileRead = 8,    // to the owner: bytes (active-message path)
  kFileWrite = 9,   // to the owner: apply a forwarded write or append
  kDirList = 10,    // to every rank: the files you own in a directory
  kFileUnlink = 11, // to the owner
  kFileRename = 12, // to the owner of the source
  kFileDrop = 13,   // to the old owner: ownership moved away, drop your copy
  kFileReadlink = 14,
  kFileMap = 15,    // to the owner: register the file for one-sided reads
  kFileSetattr = 16,
  // 17: unused (an unmap request of protocol 1; exports go with the file).
  kFileTruncate = 18,  // to the owner: `>` of its file; truncate it there if it is open, else give it away
  kFileLink = 19,      // to the owner: link its file under another name (the new name is its too)
  kFileFind = 20,      // to the owner: which name in a directory holds this file now (after a rename)
};

// The ranks of the job and the RPCs between them, above rdma::Transport.
// Requests run on a pool of worker threads (never on the UCX progress
// thread, since they do file I/O) that grows while every worker is busy; a call to this rank itself runs the
// handler in the calling thread without touching the network. With one rank
// there is no transport at all. Thread-safe.
class Cluster {
 public:
  using Reply = Result<std::vector<uint8_t>>;
  using Handler = std::function<Reply(int source_rank, std::span<const uint8_t> payload)>;

  // transport may be null only when nranks == 1.
  Cluster(int rank, int nranks, rdma::Transport* transport, std::chrono::milliseconds timeout,
          unsigned workers, Stats* stats);
  ~Cluster();

  // Answers through the Responder itself, which lets it reply with borrowed
  // bytes (no copy); runs on a worker like a Handler. Not callable by this
  // rank itself (ENOSYS): for requests only other ranks make.
  using RawHandler = std::function<void(int source_rank, std::span<const uint8_t> payload, rdma::Responder)>;

  // REQUIRES: before start().
  void register_handler(Op op, Handler handler);
  // A handler cheap and non-blocking enough (in-memory, short locks, no
  // I/O) to run right on the transport's progress thread: its callers save
  // two thread hand-offs per call.
  void register_inline_handler(Op op, Handler handler);
  void register_raw_handler(Op op, RawHandler handler);
  // Hands the handlers to the transport and starts the workers.
  // REQUIRES: before the transport connects.
  Status start();
  // Stops the workers; requests still queued are answered with EIO.
  void stop();

  // Short host names by rank (from bootstrap). REQUIRES: before start().
  void set_hosts(std::vector<std::string> hosts) { hosts_ = std::move(hosts); }
  std::string host_of(int rank) const {
    return rank >= 0 && rank < static_cast<int>(hosts_.size()) ? hosts_[rank] : "?";
  }
  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  bool alive(int rank) const;
  std::chrono::milliseconds timeout() const { return timeout_; }
  rdma::Transport* transport() const { return transport_; }

  // Whether `tid` is one of the RPC worker threads (whose requests to this
  // rank's own mount are the daemon's, not a user's).
  bool is_worker_thread(pid_t tid) const;

  // The rank that orders directory mutations: the lowest live rank.
  int coordinator() const;
  // The locator shard of (dir, name): FNV-1a 64 of the 8 little-endian bytes
  // of dir followed by name, modulo the number of ranks. If that rank is dead,
  // the next live rank upward (wrapping) takes its place.
  int shard_of(uint64_t dir, std::string_view name) const;
  static uint64_t placement_hash(uint64_t dir, std::string_view name);

  Reply call(int rank, Op op, std::span<const uint8_t> payload);
  Reply call(int rank, Op op, std::span<const uint8_t> payload, std::chrono::milliseconds timeout);
  // The same request to every live rank (self included, run here), in
  // parallel; results indexed by rank (dead ranks: EIO).
  std::vector<Reply> call_all(Op op, std::span<const uint8_t> payload);
  // A call to another rank whose reply lands in dst (rdma::Transport::
  // call_into_async); done runs on the progress thread and must be short.
  void call_into_async(int rank, Op op, std::span<const uint8_t> payload, std::span<uint8_t> dst,
                       std::shared_ptr<void> keepalive, std::function<void(Result<size_t>)> done);

 private:
  struct Task {
    int source;
    Op op;
    std::vector<uint8_t> payload;
    rdma::Responder responder;
  };
  Reply run_handler(int source, Op op, std::span<const uint8_t> payload);
  // Runs op's handler (raw or not) for a request and answers it.
  void serve(int source, Op op, std::span<const uint8_t> payload, rdma::Responder responder);
  void worker_main();

  const int rank_;
  const int nranks_;
  rdma::Transport* const transport_;
  const std::chrono::milliseconds timeout_;
  const unsigned nworkers_;
  Stats* const stats_;
  std::unordered_map<uint16_t, Handler> handlers_;  // immutable after start()
  std::unordered_map<uint16_t, RawHandler> raw_handlers_;  // immutable after start()
  std::unordered_set<uint16_t> inline_ops_;                // immutable after start()
  std::vector<std::string> hosts_;                  // immutable after start()

  Mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Task> tasks_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_ GUARDED_BY(mu_);  // nworkers_, more while all are busy
  unsigned idle_ GUARDED_BY(mu_) = 0;  // workers waiting for a task
  // At most this many workers: far more than requests that can wait on
  // other ranks at once (each holds one of another rank's FUSE or RPC threads).
  static constexpr size_t kMaxWorkers = 512;
  mutable Mutex tids_mu_;    // leaf lock
  std::vector<pid_t> worker_tids_ GUARDED_BY(tids_mu_);
};

}  // namespace dsdfs::fs
