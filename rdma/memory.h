// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ucp/api/ucp.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace dsdfs::rdma {

class Transport;

// Memory registered with the transport's UCX context so that peers can read
// it with Transport::get(). What a peer needs is remote_address() and the
// packed rkey() bytes (both sent to it, e.g. in an RPC reply).
//
// Move-only RAII owner of the ucp_mem_h (ucp_mem_unmap on destruction).
// Thread-safety: create and destroy from any thread (the context is created
// with mt_workers_shared, so UCX serialises ucp_mem_map/unmap/rkey_pack);
// accessors are const and safe to share.
// REQUIRES: every MemoryRegion dies before its Transport. The caller makes
// sure no peer still reads a region when it is destroyed (unmapping under a
// remote get makes that get fail on the peer).
class MemoryRegion {
 public:
  // Registers [addr, addr + length): an existing buffer or an mmap'd file
  // range. REQUIRES: the range stays mapped for the life of the region.
  static Result<MemoryRegion> map(Transport& transport, void* addr, size_t length);
  // Lets UCX allocate and register length bytes (UCP_MEM_MAP_ALLOCATE).
  static Result<MemoryRegion> allocate(Transport& transport, size_t length);

  MemoryRegion(MemoryRegion&& o) noexcept;
  MemoryRegion& operator=(MemoryRegion&& o) noexcept;
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;
  ~MemoryRegion();

  void* data() const { return addr_; }
  size_t size() const { return length_; }
  uint64_t remote_address() const { return reinterpret_cast<uintptr_t>(addr_); }
  // The packed rkey (ucp_rkey_pack) a peer passes to Transport::get().
  std::span<const uint8_t> rkey() const { return rkey_; }

 private:
  MemoryRegion() = default;
  static Result<MemoryRegion> create(Transport& transport, void* addr, size_t length,
                                     bool allocate);
  void reset();

  ucp_context_h context_ = nullptr;
  ucp_mem_h memh_ = nullptr;
  void* addr_ = nullptr;
  size_t length_ = 0;
  std::vector<uint8_t> rkey_;
};

}  // namespace dsdfs::rdma
