// SPDX-License-Identifier: Apache-2.0
// Which rank owned another rank's file at a name, as this rank last learnt
// it (a lookup through the name's shard, a directory listing), so that the
// next lookup of that name asks the owner directly: one round trip instead
// of two (shard, then owner).
//
// A hint is only ever a guess, never an answer. The owner it names is asked
// about the name in its own store, as an open with a known owner already is
// (Filesystem::open_name): a file there is the name's file, because a rank
// that takes a name over (another rank's `>`, a rename onto it) has the old
// owner drop its copy before the change returns to its caller. An owner that
// says it has no such file (any error but a timeout) sends the lookup to the
// shard, as before, and the hint goes. Hints of ranks not alive are not used.
//
// Bounded: past kMaxEntries the table starts afresh (a full listing of a
// huge directory keeps its newest names only, it never grows without end).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"

namespace dsdfs::fs {

class OwnerHints {
 public:
  static constexpr size_t kStripes = 16;
  static constexpr size_t kMaxEntries = 1 << 18;  // over all stripes

  // The owner last noted for (dir, name), or -1.
  int find(uint64_t dir, std::string_view name) {
    Stripe& s = stripe(dir, name);
    MutexLock lock(s.mu);
    auto it = s.owners.find(Key{dir, std::string(name)});
    return it == s.owners.end() ? -1 : it->second;
  }

  void note(uint64_t dir, std::string_view name, int owner) {
    Stripe& s = stripe(dir, name);
    MutexLock lock(s.mu);
    if (s.owners.size() >= kMaxEntries / kStripes) s.owners.clear();
    s.owners.insert_or_assign(Key{dir, std::string(name)}, owner);
  }

  // Drops the hint of (dir, name) if it still names `owner`.
  void forget(uint64_t dir, std::string_view name, int owner) {
    Stripe& s = stripe(dir, name);
    MutexLock lock(s.mu);
    auto it = s.owners.find(Key{dir, std::string(name)});
    if (it != s.owners.end() && it->second == owner) s.owners.erase(it);
  }

 private:
  struct Key {
    uint64_t dir;
    std::string name;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept {
      return std::hash<std::string>()(k.name) ^ (std::hash<uint64_t>()(k.dir) * 0x9e3779b97f4a7c15ULL);
    }
  };
  struct Stripe {
    Mutex mu;  // leaf lock
    std::unordered_map<Key, int, KeyHash> owners GUARDED_BY(mu);
  };

  Stripe& stripe(uint64_t dir, std::string_view name) {
    return stripes_[(std::hash<std::string_view>()(name) ^ dir) % kStripes];
  }
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace dsdfs::fs
