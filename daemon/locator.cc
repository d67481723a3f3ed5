// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/locator.h"

namespace dsdfs::fs {

std::string LocatorShard::key(uint64_t dir, std::string_view name) {
  std::string k(reinterpret_cast<const char*>(&dir), sizeof dir);
  k.append(name);
  return k;
}

Result<LocatorShard::Claim> LocatorShard::claim(uint64_t dir, std::string_view name, int rank,
                                                uint32_t flags, int expect) {
  MutexLock lock(mu_);
  auto [it, inserted] = owners_.try_emplace(key(dir, name), (flags & kIsDir) ? kDirectory : rank);
  if (inserted) return Claim{ClaimResult::kNew, -1};
  int& owner = it->second;
  if (owner != kDirectory && owner != rank && !is_alive_(owner)) {
    // The owner died with its files: the name is free.
    owner = (flags & kIsDir) ? kDirectory : rank;
    return Claim{ClaimResult::kNew, -1};
  }
  if ((flags & kReplaceIf) && !(flags & kIsDir) && owner == expect && expect >= 0 && expect != rank) {
    owner = rank;
    return Claim{ClaimResult::kMoved, expect};
  }
  if (flags & kIsDir) return Status::error(EEXIST, "name exists");
  if (owner == kDirectory) return Status::error(EISDIR, "name is a directory");
  if (flags & kExclusive) return Status::error(EEXIST, "name exists");
  if (owner == rank) return Claim{ClaimResult::kExists, rank};
  if (flags & kTakeOver) {
    int prev = owner;
    owner = rank;
    return Claim{ClaimResult::kMoved, prev};
  }
  return Claim{ClaimResult::kExists, owner};
}

Result<int> LocatorShard::lookup(uint64_t dir, std::string_view name) {
  MutexLock lock(mu_);
  auto it = owners_.find(key(dir, name));
  if (it == owners_.end()) return Status::error(ENOENT);
  if (it->second != kDirectory && !is_alive_(it->second)) {
    owners_.erase(it);
    return Status::error(ENOENT);
  }
  return it->second;
}

bool LocatorShard::remove(uint64_t dir, std::string_view name, int owner) {
  MutexLock lock(mu_);
  auto it = owners_.find(key(dir, name));
  if (it == owners_.end() || it->second != owner) return false;
  owners_.erase(it);
  return true;
}

size_t LocatorShard::size() const {
  MutexLock lock(mu_);
  return owners_.size();
}

}  // namespace dsdfs::fs
