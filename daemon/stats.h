// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsdfs::fs {

// The FUSE requests the daemon serves, one counter each (what a file
// operation costs in round trips to the daemon: bench/run.py reads them
// around each test). The kernel's FORGETs come one by one or in batches
// (forget_multi counts batches).
#define DSDFS_FUSE_OPS(X)                                                                       \
  X(lookup) X(forget) X(forget_multi) X(getattr) X(setattr) X(readlink) X(mknod) X(mkdir)       \
  X(symlink) X(link) X(unlink) X(rmdir) X(rename) X(create) X(open) X(read) X(write)            \
  X(release) X(fsync) X(opendir) X(readdir) X(readdirplus) X(releasedir) X(fsyncdir) X(statfs) \
  X(getxattr) X(listxattr) X(setxattr) X(removexattr) X(fallocate) X(copy_file_range)
enum class FuseOp : unsigned {
#define DSDFS_FUSE_OP_ENUM(name) name,
  DSDFS_FUSE_OPS(DSDFS_FUSE_OP_ENUM)
#undef DSDFS_FUSE_OP_ENUM
      count
};
inline constexpr size_t kFuseOpCount = static_cast<size_t>(FuseOp::count);
// "lookup", "getattr", ...: the name of the operation's libfuse callback.
const char* fuse_op_name(FuseOp op);

// RPC op numbers (daemon/peers.h, Op) have slots 0..kRpcOpSlots-1;
// rpc_op_name(n) is "file_stat", "loc_lookup", ..., or nullptr for a number
// that names no op.
inline constexpr size_t kRpcOpSlots = 32;
const char* rpc_op_name(size_t op);

// Per-rank counters, readable by users as `getfattr -n user.dsdfs.stats MOUNTPOINT`.
// Relaxed atomics: each counter is exact, a snapshot across counters is not.
struct Stats {
  std::atomic<uint64_t> bytes_written_local{0};
  std::atomic<uint64_t> bytes_read_local{0};
  std::atomic<uint64_t> bytes_forwarded{0};    // writes of ours applied on another rank
  std::atomic<uint64_t> bytes_applied_for_peers{0};
  std::atomic<uint64_t> bytes_read_remote{0};  // fetched from owners
  std::atomic<uint64_t> bytes_served_to_peers{0};
  std::atomic<uint64_t> bytes_served_inline{0};  // of small files, with their attributes (kFileStat)
  std::atomic<uint64_t> cache_hits{0};         // opens served by a valid cache
  std::atomic<uint64_t> cache_misses{0};
  std::atomic<uint64_t> rpcs_sent{0};
  std::atomic<uint64_t> rpc_failures{0};
  std::atomic<uint64_t> rpcs_served{0};
  std::atomic<uint64_t> rpcs_served_on_arrival{0};  // of which answered on the progress thread, no worker
  std::atomic<uint64_t> slow_requests{0};  // served in half the callers' timeout or later
  std::atomic<uint64_t> listing_retries{0};
  std::atomic<uint64_t> owner_hint_hits{0};    // remote lookups that asked the owner directly (OwnerHints)
  std::atomic<uint64_t> owner_hint_misses{0};  // ... whose owner no longer had the name: asked its shard  // directory listings taken again: a name moved between ranks meanwhile
  std::atomic<uint64_t> opens_of_unlinked_files{0};  // an open and its kernel retry both lost to an unlink or rename
  std::atomic<uint64_t> renames_followed{0};  // writes through a handle whose file was renamed on its owner since
  std::atomic<uint64_t> writebacks_redirected{0};  // dirty pages the kernel sent through a handle of another file
  std::atomic<uint64_t> writebacks_discarded{0};  // pages of a file moved away with no user's handle open here
  std::atomic<uint64_t> passthrough_opens{0};  // opens whose reads and writes the kernel passes to the store
  std::array<std::atomic<uint64_t>, kFuseOpCount> fuse_requests{};  // by FuseOp
  std::array<std::atomic<uint64_t>, kRpcOpSlots> rpcs_sent_by_op{};  // by the RPC's op number (Op)

  void count_request(FuseOp op) { fuse_requests[static_cast<size_t>(op)].fetch_add(1, std::memory_order_relaxed); }
  // One more sent RPC of op number `op` (rpcs_sent counts them all).
  void count_rpc(uint16_t op, uint64_t n = 1) {
    if (op < kRpcOpSlots) rpcs_sent_by_op[op].fetch_add(n, std::memory_order_relaxed);
  }

  // "name value\n" lines, stable names (documented in docs/user-guide.md);
  // the requests as "fuse_OP value", one line per operation; the RPCs sent
  // as "rpc_OP value", one line per op.
  std::string to_text() const;
};

inline void stats_add(std::atomic<uint64_t>& c, uint64_t n) { c.fetch_add(n, std::memory_order_relaxed); }

}  // namespace dsdfs::fs
