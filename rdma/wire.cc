// SPDX-License-Identifier: Apache-2.0
#include "rdma/wire.h"

#include <type_traits>

namespace dsdfs::rdma {
namespace {

template <typename T>
void put_le(uint8_t* p, T v) {
  auto u = static_cast<std::make_unsigned_t<T>>(v);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(u >> (8 * i));
}

template <typename T>
T get_le(const uint8_t* p) {
  std::make_unsigned_t<T> u = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    u |=
        static_cast<std::make_unsigned_t<T>>(static_cast<std::make_unsigned_t<T>>(p[i]) << (8 * i));
  }
  return static_cast<T>(u);
}

}  // namespace

const char* wire_check_name(WireCheck check) {
  switch (check) {
    case WireCheck::kOk:
      return "ok";
    case WireCheck::kBadHeaderLength:
      return "bad header length";
    case WireCheck::kBadMagic:
      return "bad magic";
    case WireCheck::kBadVersion:
      return "protocol version mismatch";
    case WireCheck::kBadFlags:
      return "unknown flags";
    case WireCheck::kBadLength:
      return "bad payload length";
    case WireCheck::kBadRank:
      return "source rank out of range";
    case WireCheck::kBadStatus:
      return "bad status";
    case WireCheck::kBadJobKey:
      return "wrong job key";
  }
  return "unknown";
}

void wire_header_encode(const WireHeader& h, std::span<uint8_t, kWireHeaderSize> out) {
  uint8_t* p = out.data();
  put_le<uint32_t>(p + 0, h.magic);
  put_le<uint16_t>(p + 4, h.version);
  put_le<uint16_t>(p + 6, h.op);
  put_le<uint16_t>(p + 8, h.flags);
  put_le<uint16_t>(p + 10, 0);
  put_le<uint32_t>(p + 12, h.source_rank);
  put_le<int32_t>(p + 16, h.status);
  put_le<uint32_t>(p + 20, h.payload_length);
  put_le<uint64_t>(p + 24, h.request_id);
  put_le<uint64_t>(p + 32, h.job_key);
}

WireCheck wire_header_decode(std::span<const uint8_t> bytes, size_t data_length, uint64_t job_key,
                             int nranks, WireHeader* out) {
  if (bytes.size() != kWireHeaderSize) return WireCheck::kBadHeaderLength;
  const uint8_t* p = bytes.data();
  WireHeader h;
  h.magic = get_le<uint32_t>(p + 0);
  if (h.magic != kWireMagic) return WireCheck::kBadMagic;
  h.version = get_le<uint16_t>(p + 4);
  if (h.version != kWireVersion) return WireCheck::kBadVersion;
  h.op = get_le<uint16_t>(p + 6);
  h.flags = get_le<uint16_t>(p + 8);
  if ((h.flags & ~kWireFlagsKnown) != 0 || get_le<uint16_t>(p + 10) != 0) {
    return WireCheck::kBadFlags;
  }
  h.source_rank = get_le<uint32_t>(p + 12);
  h.status = get_le<int32_t>(p + 16);
  h.payload_length = get_le<uint32_t>(p + 20);
  h.request_id = get_le<uint64_t>(p + 24);
  h.job_key = get_le<uint64_t>(p + 32);
  // The job key first: a foreign job's message tells us nothing else worth logging.
  if (h.job_key != job_key) return WireCheck::kBadJobKey;
  if (h.payload_length != data_length || h.payload_length > kWireMaxPayload) {
    return WireCheck::kBadLength;
  }
  if (nranks <= 0 || h.source_rank >= static_cast<uint32_t>(nranks)) return WireCheck::kBadRank;
  bool is_reply = (h.flags & kWireFlagReply) != 0;
  if (h.status < 0 || h.status > kWireMaxErrno || (!is_reply && h.status != 0)) {
    return WireCheck::kBadStatus;
  }
  *out = h;
  return WireCheck::kOk;
}

}  // namespace dsdfs::rdma
