// SPDX-License-Identifier: Apache-2.0
// The seam under the distributed logic: how the file system of one rank
// reaches the other ranks of the job (LevelDB's Env, for the network).
// Cluster (daemon/cluster.h) implements it over UCX; an in-process
// implementation (tests/unit/daemon/in_process_peers.h) runs several ranks'
// file-system logic in one unit-test binary, without FUSE and without UCX.
// Nothing above this seam includes rdma/.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

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
  kRankDown = 21,      // to every rank: this rank found that rank dead (membership, Cluster only)
  kRankJoin = 22,      // a restarted daemon to any rank (forwarded to the coordinator): let me in again
  kRankUp = 23,        // coordinator to every rank: that rank is back, at this worker address
  kShardFill = 24,     // a rejoined rank to every rank: claim your files homed at my shard; then: it is whole
  kRankInfo = 25,      // to every rank (the `dsdfs` command): your host, uptime, files, store, cache, counters
  kJobStop = 26,       // to every rank (`dsdfs stop`): stop as on SIGTERM (unmount, remove the store, exit 0)
  kStageStart = 27,    // to every rank (`dsdfs stage-out`): copy your files under a path to a destination
  kStageStatus = 28,   // to every rank: how far that copy is
};

// A memory range exported for one-sided reads by other ranks. Deregistered
// when the last reference goes.
class RmaRegion {
 public:
  virtual ~RmaRegion() = default;
  virtual uint64_t remote_address() const = 0;
  virtual std::span<const uint8_t> rkey() const = 0;
};

// The other ranks of the job. Thread-safe. Every call ends by its timeout:
// a dead or silent rank gives an error, never a hang. Errors are errnos
// (ETIMEDOUT or EIO for a rank that does not answer; the handler's own
// errno otherwise).
class Peers {
 public:
  using Reply = Result<std::vector<uint8_t>>;
  // Runs a request from source_rank; its reply goes back to the caller.
  using Handler = std::function<Reply(int source_rank, std::span<const uint8_t> payload)>;
  // Bytes a handler lends to its reply instead of copying them: keepalive
  // keeps them valid and unchanged until they are sent.
  struct Lent {
    std::span<const uint8_t> bytes;
    std::shared_ptr<const void> keepalive;
  };
  using LendingHandler = std::function<Result<Lent>(int source_rank, std::span<const uint8_t> payload)>;

  Peers(int rank, int nranks, std::chrono::milliseconds timeout)
      : rank_(rank), nranks_(nranks), timeout_(timeout) {}
  virtual ~Peers() = default;
  Peers(const Peers&) = delete;
  Peers& operator=(const Peers&) = delete;

  // Handlers, registered before the peers start. A handler runs on a worker
  // thread and may block (file I/O, calls to other ranks).
  virtual void register_handler(Op op, Handler handler) = 0;
  // A handler cheap and non-blocking enough (in-memory, short locks, no I/O)
  // to run where the request arrives (the transport's progress thread).
  virtual void register_inline_handler(Op op, Handler handler) = 0;
  // Both: `quick` runs where the request arrives and answers it if it can do
  // so without waiting (everything it needs in memory: no disk read, no lock
  // another thread may hold for long, no call); otherwise it returns nullopt
  // and `handler` answers the request on a worker thread, as registered with
  // register_handler. While requests are held (hold_requests), only
  // `handler` runs. This rank's own calls run `handler` alone.
  using QuickHandler = std::function<std::optional<Reply>(int source_rank, std::span<const uint8_t> payload)>;
  virtual void register_split_handler(Op op, QuickHandler quick, Handler handler) = 0;
  // Requests of op from other ranks run one at a time, in the order they
  // arrived (for a message sent after another to the same rank, after it),
  // whatever the sender's timeouts: a request that arrives late is still
  // applied before what its sender sent next. This rank's own calls run in
  // the calling thread.
  virtual void register_ordered_handler(Op op, Handler handler) = 0;
  // For requests only other ranks make (this rank's own call gets ENOSYS).
  virtual void register_lending_handler(Op op, LendingHandler handler) = 0;

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  virtual bool alive(int rank) const = 0;
  // The short host name of rank ("?" if unknown).
  virtual std::string host_of(int rank) const = 0;
  // Whether `tid` is a thread that runs handlers (whose requests to this
  // rank's own mount are the daemon's, not a user's).
  virtual bool is_worker_thread(pid_t tid) const = 0;

  // The rank that orders directory mutations: the lowest live rank.
  int coordinator() const;
  // Whether this rank is on the side of the job that goes on: it sees more
  // than half of the ranks alive (itself included), or exactly half with
  // rank 0 among them. A rank cut off from the others long enough for them
  // to be declared dead is not: it fences itself (Status fenced()), so that
  // two sides of a split job never change the namespace apart.
  bool quorate() const;
  static Status fenced() {
    return Status::error(EIO, "cut off from most of the job: names and directories are read-only here");
  }
  // The locator shard of (dir, name): placement_hash modulo the number of
  // ranks. If that rank is dead, the next live rank upward (wrapping) takes
  // its place.
  int shard_of(uint64_t dir, std::string_view name) const;
  // The shard of (dir, name) when every rank is alive.
  int home_of(uint64_t dir, std::string_view name) const {
    return static_cast<int>(placement_hash(dir, name) % static_cast<uint64_t>(nranks_));
  }
  // FNV-1a 64 of the 8 little-endian bytes of dir followed by name.
  static uint64_t placement_hash(uint64_t dir, std::string_view name);

  // A call to rank (this rank's own handler runs in the calling thread).
  virtual Reply call(int rank, Op op, std::span<const uint8_t> payload, std::chrono::milliseconds timeout) = 0;
  Reply call(int rank, Op op, std::span<const uint8_t> payload) { return call(rank, op, payload, timeout_); }
  // The same request to every live rank (self included, run here), in
  // parallel; results indexed by rank (dead ranks: EIO).
  virtual std::vector<Reply> call_all(Op op, std::span<const uint8_t> payload) = 0;
  // A call to another rank whose reply lands in dst; done runs exactly once
  // (possibly on another thread, where it must be short) with the length.
  // keepalive is held until nothing writes into dst any more.
  virtual void call_into_async(int rank, Op op, std::span<const uint8_t> payload, std::span<uint8_t> dst,
                               std::shared_ptr<void> keepalive, std::function<void(Result<size_t>)> done) = 0;

  // Membership. Connects rank again at a new worker address (its daemon was
  // restarted and rejoined) and counts it alive; a no-op where it is alive
  // there already.
  virtual Status readmit(int /*rank*/, std::span<const uint8_t> /*address*/) {
    return Status::error(EOPNOTSUPP, "no rejoin");
  }
  // Counts rank dead from now on (the rank that let this one in again says
  // so); no-op where not supported.
  virtual void declare_dead(int /*rank*/) {}
  // The worker address rank is reached at now (empty where there is none).
  virtual std::vector<uint8_t> address_of(int /*rank*/) const { return {}; }

  // One-sided reads. Whether reads of rank's files should use get_async.
  virtual bool bulk_uses_rma(int /*rank*/) { return false; }
  // Registers [addr, addr + length) for other ranks' gets.
  virtual Result<std::unique_ptr<RmaRegion>> export_region(void* /*addr*/, size_t /*length*/) {
    return Status::error(EOPNOTSUPP, "no one-sided reads");
  }
  // Reads len bytes of rank's region (address and rkey from its export) into
  // dst; done runs exactly once, like call_into_async's.
  virtual void get_async(int /*rank*/, uint64_t /*remote_addr*/, std::span<const uint8_t> /*rkey*/, void* /*dst*/,
                         size_t /*len*/, std::shared_ptr<void> /*keepalive*/, std::function<void(Status)> done) {
    done(Status::error(EOPNOTSUPP, "no one-sided reads"));
  }

 private:
  const int rank_;
  const int nranks_;
  const std::chrono::milliseconds timeout_;
  mutable std::atomic<bool> said_fenced_{false};
};

}  // namespace dsdfs::fs
