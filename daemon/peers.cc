// SPDX-License-Identifier: Apache-2.0
#include "daemon/peers.h"

#include "common/hash.h"
#include "common/log.h"

namespace dsdfs::fs {

int Peers::coordinator() const {
  for (int r = 0; r < nranks_; ++r) {
    if (alive(r)) return r;
  }
  return rank_;
}

bool Peers::quorate() const {
  int up = 0;
  for (int r = 0; r < nranks_; ++r) up += alive(r) ? 1 : 0;
  const bool quorate = 2 * up > nranks_ || (2 * up == nranks_ && alive(0));
  if (!quorate && !said_fenced_.exchange(true)) {
    DSDFS_ERROR("rank %d sees only %d of %d ranks alive: cut off from the rest of the job, it fences itself "
                "(creates, lookups of other nodes' names and directory changes fail with EIO; its own files "
                "stay readable and writable). Stop this daemon; its files are lost to the job.",
                rank_, up, nranks_);
  }
  return quorate;
}

uint64_t Peers::placement_hash(uint64_t dir, std::string_view name) {
  return fnv1a64(name, fnv1a64_le(dir));
}

int Peers::shard_of(uint64_t dir, std::string_view name) const {
  const int home = home_of(dir, name);
  for (int i = 0; i < nranks_; ++i) {
    int r = (home + i) % nranks_;
    if (alive(r)) return r;
  }
  return rank_;
}

}  // namespace dsdfs::fs
