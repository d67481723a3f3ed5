// SPDX-License-Identifier: Apache-2.0
#include "rdma/memory.h"

#include <utility>

#include "common/log.h"
#include "rdma/status_map.h"
#include "rdma/transport.h"

namespace dsdfs::rdma {

Result<MemoryRegion> MemoryRegion::map(Transport& transport, void* addr, size_t length) {
  if (addr == nullptr || length == 0) return Status::error(EINVAL, "map: empty range");
  return create(transport, addr, length, false);
}

Result<MemoryRegion> MemoryRegion::allocate(Transport& transport, size_t length) {
  if (length == 0) return Status::error(EINVAL, "allocate: zero length");
  return create(transport, nullptr, length, true);
}

Result<MemoryRegion> MemoryRegion::create(Transport& transport, void* addr, size_t length,
                                          bool allocate) {
  if (!transport.context_) return Status::error(EIO, "transport has no UCX context");
  MemoryRegion r;
  r.context_ = transport.context_.get();
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = addr;
  params.length = length;
  if (allocate) {
    params.field_mask |= UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    params.flags = UCP_MEM_MAP_ALLOCATE;
  }
  ucs_status_t status = ucp_mem_map(r.context_, &params, &r.memh_);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_mem_map of %zu bytes failed: %s", length, ucs_status_string(status));
    r.memh_ = nullptr;
    return status_from_ucs(status, "ucp_mem_map");
  }
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  status = ucp_mem_query(r.memh_, &attr);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_mem_query failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_mem_query");
  }
  // UCX may round the registration out to pages; the user range is ours.
  r.addr_ = allocate ? attr.address : addr;
  r.length_ = length;

  void* packed = nullptr;
  size_t packed_size = 0;
  status = ucp_rkey_pack(r.context_, r.memh_, &packed, &packed_size);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_rkey_pack failed: %s", ucs_status_string(status));
    return status_from_ucs(status, "ucp_rkey_pack");
  }
  const auto* p = static_cast<const uint8_t*>(packed);
  r.rkey_.assign(p, p + packed_size);
  ucp_rkey_buffer_release(packed);
  return r;
}

MemoryRegion::MemoryRegion(MemoryRegion&& o) noexcept
    : context_(std::exchange(o.context_, nullptr)),
      memh_(std::exchange(o.memh_, nullptr)),
      addr_(std::exchange(o.addr_, nullptr)),
      length_(std::exchange(o.length_, 0)),
      rkey_(std::move(o.rkey_)) {}

MemoryRegion& MemoryRegion::operator=(MemoryRegion&& o) noexcept {
  if (this != &o) {
    reset();
    context_ = std::exchange(o.context_, nullptr);
    memh_ = std::exchange(o.memh_, nullptr);
    addr_ = std::exchange(o.addr_, nullptr);
    length_ = std::exchange(o.length_, 0);
    rkey_ = std::move(o.rkey_);
  }
  return *this;
}

MemoryRegion::~MemoryRegion() {
  reset();
}

void MemoryRegion::reset() {
  if (memh_ == nullptr) return;
  ucs_status_t status = ucp_mem_unmap(context_, memh_);
  if (status != UCS_OK) {
    DSDFS_ERROR("ucp_mem_unmap failed: %s", ucs_status_string(status));
  }
  memh_ = nullptr;
}

}  // namespace dsdfs::rdma
