// SPDX-License-Identifier: Apache-2.0
#include "daemon/peers.h"

#include "common/hash.h"

namespace dsdfs::fs {

int Peers::coordinator() const {
  for (int r = 0; r < nranks_; ++r) {
    if (alive(r)) return r;
  }
  return rank_;
}

uint64_t Peers::placement_hash(uint64_t dir, std::string_view name) {
  char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<char>((dir >> (8 * i)) & 0xff);
  return fnv1a64(name, fnv1a64(std::string_view(le, 8)));
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
