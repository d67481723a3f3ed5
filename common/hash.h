// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string_view>

namespace dsdfs {

// FNV-1a, 64 bit. Fixed and documented (docs/architecture.md) because every rank
// must compute the same placement; never replace it with std::hash.
constexpr uint64_t fnv1a64(std::string_view data, uint64_t h = 0xcbf29ce484222325ULL) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// fnv1a64 of the 8 little-endian bytes of v (the same on every host).
constexpr uint64_t fnv1a64_le(uint64_t v, uint64_t h = 0xcbf29ce484222325ULL) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace dsdfs
