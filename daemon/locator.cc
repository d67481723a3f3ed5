// SPDX-License-Identifier: Apache-2.0
#include "common/mutex.h"
#include "daemon/locator.h"

#include <cstring>

namespace dsdfs::fs {

std::string LocatorShard::key(uint64_t dir, std::string_view name) {
  std::string k(reinterpret_cast<const char*>(&dir), sizeof dir);
  k.append(name);
  return k;
}

Result<LocatorShard::Claim> LocatorShard::claim(uint64_t dir, std::string_view name, int rank,
                                                uint32_t flags, int expect, uint64_t expect_gen) {
  MutexLock lock(mu_);
  auto [it, inserted] = owners_.try_emplace(key(dir, name), Entry{(flags & kIsDir) ? kDirectory : rank, 0});
  Entry& e = it->second;
  if (inserted) {
    e.gen = next_gen_++;
    return Claim{ClaimResult::kNew, -1, e.gen};
  }
  if (e.owner != kDirectory && e.owner != rank && !is_alive_(e.owner)) {
    // The owner died with its files: the name is free.
    e = Entry{(flags & kIsDir) ? kDirectory : rank, next_gen_++};
    return Claim{ClaimResult::kNew, -1, e.gen};
  }
  if ((flags & kReplaceIf) && !(flags & kIsDir) && e.owner == expect && expect >= 0 && expect != rank &&
      (expect_gen == 0 || e.gen == expect_gen)) {
    e = Entry{rank, next_gen_++};
    return Claim{ClaimResult::kMoved, expect, e.gen};
  }
  if (flags & kIsDir) return Status::error(EEXIST, "name exists");
  if (e.owner == kDirectory) return Status::error(EISDIR, "name is a directory");
  if (flags & kExclusive) return Status::error(EEXIST, "name exists");
  if (e.owner == rank) return Claim{ClaimResult::kExists, rank, e.gen};
  if (flags & kTakeOver) {
    int prev = e.owner;
    e = Entry{rank, next_gen_++};
    return Claim{ClaimResult::kMoved, prev, e.gen};
  }
  return Claim{ClaimResult::kExists, e.owner, e.gen};
}

Result<int> LocatorShard::lookup(uint64_t dir, std::string_view name) {
  MutexLock lock(mu_);
  auto it = owners_.find(key(dir, name));
  if (it == owners_.end()) return Status::error(ENOENT);
  if (it->second.owner != kDirectory && !is_alive_(it->second.owner)) {
    owners_.erase(it);
    return Status::error(ENOENT);
  }
  return it->second.owner;
}

bool LocatorShard::remove(uint64_t dir, std::string_view name, int owner) {
  MutexLock lock(mu_);
  auto it = owners_.find(key(dir, name));
  if (it == owners_.end() || it->second.owner != owner) return false;
  owners_.erase(it);
  return true;
}

void LocatorShard::forget_if(const std::function<bool(uint64_t dir, std::string_view name)>& pred) {
  MutexLock lock(mu_);
  for (auto it = owners_.begin(); it != owners_.end();) {
    uint64_t dir;
    std::memcpy(&dir, it->first.data(), sizeof dir);
    if (pred(dir, std::string_view(it->first).substr(sizeof dir))) it = owners_.erase(it);
    else ++it;
  }
}

size_t LocatorShard::size() const {
  MutexLock lock(mu_);
  return owners_.size();
}

}  // namespace dsdfs::fs
