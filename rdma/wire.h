// SPDX-License-Identifier: Apache-2.0
#pragma once

// The fixed header of every dsdfs active message. It travels in the UCX AM
// header (ucp_am_send_nbx's header argument), the payload in the AM data.
// Little-endian on the wire, 40 bytes:
//
//   off size field
//     0    4 magic            kWireMagic
//     4    2 version          DSDFS_PROTOCOL_VERSION
//     6    2 op               operation code (request handlers are keyed by it)
//     8    2 flags            kWireFlag*; unknown bits are invalid
//    10    2 reserved         must be 0
//    12    4 source rank      rank of the sender
//    16    4 status           0 in requests; positive errno (or 0) in replies
//    20    4 payload length   must equal the AM data length
//    24    8 request id       chosen by the caller, echoed by the reply
//    32    8 job key          must equal the receiver's job key

#include <cstddef>
#include <cstdint>
#include <span>

#ifndef DSDFS_PROTOCOL_VERSION
#error "DSDFS_PROTOCOL_VERSION must be defined by the build"
#endif

namespace dsdfs::rdma {

inline constexpr uint32_t kWireMagic = 0x44534653;  // "SFSD" read as little-endian bytes
inline constexpr uint16_t kWireVersion = DSDFS_PROTOCOL_VERSION;
inline constexpr size_t kWireHeaderSize = 40;
// Largest payload of one message. Bigger transfers are split by the caller.
inline constexpr uint32_t kWireMaxPayload = 1u << 30;
// Largest errno a reply may carry.
inline constexpr int32_t kWireMaxErrno = 4095;

// The message is a reply to request_id (otherwise it is a request).
inline constexpr uint16_t kWireFlagReply = 1u << 0;
// The sender is shutting down: fail everything outstanding to it now.
inline constexpr uint16_t kWireFlagGoodbye = 1u << 1;
// No payload: the request request_id (op) is still being worked on (queued or
// in its handler). Its caller waits on, within its limit (Transport::kMaxStretch).
inline constexpr uint16_t kWireFlagProgress = 1u << 2;
inline constexpr uint16_t kWireFlagsKnown = kWireFlagReply | kWireFlagGoodbye | kWireFlagProgress;

struct WireHeader {
  uint32_t magic = kWireMagic;
  uint16_t version = kWireVersion;
  uint16_t op = 0;
  uint16_t flags = 0;
  uint32_t source_rank = 0;
  int32_t status = 0;
  uint32_t payload_length = 0;
  uint64_t request_id = 0;
  uint64_t job_key = 0;
};

// Why a received header was refused. kOk means it may be acted on.
enum class WireCheck {
  kOk,
  kBadHeaderLength,
  kBadMagic,
  kBadVersion,
  kBadFlags,
  kBadLength,  // payload_length != data length, or too large
  kBadRank,
  kBadStatus,
  kBadJobKey,
};
const char* wire_check_name(WireCheck check);

void wire_header_encode(const WireHeader& h, std::span<uint8_t, kWireHeaderSize> out);

// Decodes and validates every field of a received header. data_length is the
// AM data length UCX reported. On kOk *out is filled; otherwise *out is
// unspecified and the message must be dropped.
WireCheck wire_header_decode(std::span<const uint8_t> bytes, size_t data_length, uint64_t job_key,
                             int nranks, WireHeader* out);

}  // namespace dsdfs::rdma
