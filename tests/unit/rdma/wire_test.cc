// SPDX-License-Identifier: Apache-2.0
#include "rdma/wire.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace dsdfs::rdma {
namespace {

constexpr uint64_t kKey = 0x1122334455667788ULL;

WireHeader sample() {
  WireHeader h;
  h.op = 0xBEEF;
  h.flags = kWireFlagReply;
  h.source_rank = 3;
  h.status = 2;
  h.payload_length = 77;
  h.request_id = 0x0102030405060708ULL;
  h.job_key = kKey;
  return h;
}

std::array<uint8_t, kWireHeaderSize> encode(const WireHeader& h) {
  std::array<uint8_t, kWireHeaderSize> b{};
  wire_header_encode(h, b);
  return b;
}

TEST(Wire, RoundTripKeepsEveryField) {
  auto b = encode(sample());
  WireHeader out;
  ASSERT_EQ(wire_header_decode(b, 77, kKey, 4, &out), WireCheck::kOk);
  EXPECT_EQ(out.magic, kWireMagic);
  EXPECT_EQ(out.version, kWireVersion);
  EXPECT_EQ(out.op, 0xBEEF);
  EXPECT_EQ(out.flags, kWireFlagReply);
  EXPECT_EQ(out.source_rank, 3u);
  EXPECT_EQ(out.status, 2);
  EXPECT_EQ(out.payload_length, 77u);
  EXPECT_EQ(out.request_id, 0x0102030405060708ULL);
  EXPECT_EQ(out.job_key, kKey);
}

TEST(Wire, EncodingIsLittleEndianAtFixedOffsets) {
  auto b = encode(sample());
  EXPECT_EQ(b[0], 0x53);  // magic, low byte first
  EXPECT_EQ(b[6], 0xEF);
  EXPECT_EQ(b[7], 0xBE);
  EXPECT_EQ(b[12], 3);
  EXPECT_EQ(b[24], 0x08);
  EXPECT_EQ(b[31], 0x01);
  EXPECT_EQ(b[32], 0x88);
}

TEST(Wire, ShortOrLongHeaderIsRefused) {
  auto b = encode(sample());
  WireHeader out;
  EXPECT_EQ(wire_header_decode(std::span<const uint8_t>(b.data(), 39), 77, kKey, 4, &out),
            WireCheck::kBadHeaderLength);
  std::vector<uint8_t> longer(b.begin(), b.end());
  longer.push_back(0);
  EXPECT_EQ(wire_header_decode(longer, 77, kKey, 4, &out), WireCheck::kBadHeaderLength);
  EXPECT_EQ(wire_header_decode({}, 0, kKey, 4, &out), WireCheck::kBadHeaderLength);
}

TEST(Wire, EachBadFieldIsRefused) {
  WireHeader out;
  auto b = encode(sample());
  b[0] ^= 1;
  EXPECT_EQ(wire_header_decode(b, 77, kKey, 4, &out), WireCheck::kBadMagic);

  WireHeader h = sample();
  h.version = kWireVersion + 1;
  EXPECT_EQ(wire_header_decode(encode(h), 77, kKey, 4, &out), WireCheck::kBadVersion);

  h = sample();
  h.flags = 0x80;
  EXPECT_EQ(wire_header_decode(encode(h), 77, kKey, 4, &out), WireCheck::kBadFlags);

  b = encode(sample());
  b[10] = 1;  // reserved
  EXPECT_EQ(wire_header_decode(b, 77, kKey, 4, &out), WireCheck::kBadFlags);

  EXPECT_EQ(wire_header_decode(encode(sample()), 76, kKey, 4, &out), WireCheck::kBadLength);

  h = sample();
  h.payload_length = kWireMaxPayload + 1;
  EXPECT_EQ(wire_header_decode(encode(h), kWireMaxPayload + 1ull, kKey, 4, &out),
            WireCheck::kBadLength);

  EXPECT_EQ(wire_header_decode(encode(sample()), 77, kKey, 3, &out), WireCheck::kBadRank);

  h = sample();
  h.status = -5;
  EXPECT_EQ(wire_header_decode(encode(h), 77, kKey, 4, &out), WireCheck::kBadStatus);
  h.status = kWireMaxErrno + 1;
  EXPECT_EQ(wire_header_decode(encode(h), 77, kKey, 4, &out), WireCheck::kBadStatus);
  h = sample();
  h.flags = 0;  // a request must not carry a status
  EXPECT_EQ(wire_header_decode(encode(h), 77, kKey, 4, &out), WireCheck::kBadStatus);

  EXPECT_EQ(wire_header_decode(encode(sample()), 77, kKey + 1, 4, &out), WireCheck::kBadJobKey);
}

TEST(Wire, EveryCheckHasAName) {
  for (int c = 0; c <= static_cast<int>(WireCheck::kBadJobKey); ++c) {
    EXPECT_STRNE(wire_check_name(static_cast<WireCheck>(c)), "unknown");
  }
}

}  // namespace
}  // namespace dsdfs::rdma
