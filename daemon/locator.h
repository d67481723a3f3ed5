// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"
#include "common/status.h"

namespace dsdfs::fs {

// One locator shard: for the (directory id, name) pairs that hash to this
// rank, who owns the name. The shard is the serialisation point for O_EXCL
// creates, ownership moves and renames onto a name. It is an index: the
// owners' stores are the truth. Thread-safe.
class LocatorShard {
 public:
  static constexpr int kDirectory = -1;  // owner of a directory name (replicated everywhere)

  enum ClaimFlags : uint32_t {
    kExclusive = 1,  // fail with EEXIST if the name exists
    kTakeOver = 2,   // move an existing file name to the claimer (O_TRUNC, rename onto it)
    kIsDir = 4,      // claim for a directory (mkdir, directory rename)
    // Take the name from `expect` if it still holds it: that owner answered
    // that it has no such file (it is unlinking or renaming it away, and its
    // remove has not reached the shard yet), so its entry is stale. With a
    // generation, only that very entry: an owner that removed the name and
    // claimed it again since (a new file) keeps it.
    kReplaceIf = 8,
  };
  enum class ClaimResult : uint8_t { kNew = 0, kExists = 1, kMoved = 2 };
  struct Claim {
    ClaimResult result;
    int prev_owner;  // kExists: the owner; kMoved: the owner that lost it
    // The entry's generation: every claim that gives the name an owner (new,
    // moved) makes a new one, unique within this shard.
    uint64_t gen = 0;
  };

  // is_alive(rank): a dead owner's names are free again.
  explicit LocatorShard(std::function<bool(int)> is_alive) : is_alive_(std::move(is_alive)) {}

  // `expect` is the stale owner for kReplaceIf (ignored otherwise), and
  // expect_gen (if not 0) the generation of its entry that was found stale.
  Result<Claim> claim(uint64_t dir, std::string_view name, int rank, uint32_t flags, int expect = -1,
                      uint64_t expect_gen = 0);
  // The owner (or kDirectory), or ENOENT.
  Result<int> lookup(uint64_t dir, std::string_view name);
  // Forgets the name if `owner` still holds it; false otherwise.
  bool remove(uint64_t dir, std::string_view name, int owner);
  // Forgets every name for which pred(dir, name) holds.
  void forget_if(const std::function<bool(uint64_t dir, std::string_view name)>& pred);
  size_t size() const;

 private:
  static std::string key(uint64_t dir, std::string_view name);
  std::function<bool(int)> is_alive_;
  mutable Mutex mu_;
  struct Entry {
    int owner;
    uint64_t gen;
  };
  std::unordered_map<std::string, Entry> owners_ GUARDED_BY(mu_);
  uint64_t next_gen_ GUARDED_BY(mu_) = 1;
};

}  // namespace dsdfs::fs
