// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace dsdfs::fs {

// Little-endian encoder for RPC payloads (the layout of each message is in
// docs/architecture.md). Appends only; never fails.
class WireWriter {
 public:
  WireWriter& u8(uint8_t v) { return raw(&v, 1); }
  WireWriter& u16(uint16_t v) { return raw(&v, 2); }
  WireWriter& u32(uint32_t v) { return raw(&v, 4); }
  WireWriter& u64(uint64_t v) { return raw(&v, 8); }
  WireWriter& i32(int32_t v) { return raw(&v, 4); }
  WireWriter& i64(int64_t v) { return raw(&v, 8); }
  // A u32 length, then the bytes.
  WireWriter& str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    return raw(s.data(), s.size());
  }
  WireWriter& bytes(std::span<const uint8_t> b) {
    u32(static_cast<uint32_t>(b.size()));
    return raw(b.data(), b.size());
  }
  std::vector<uint8_t>& buffer() { return buf_; }
  std::vector<uint8_t> take() { return std::move(buf_); }

 private:
  WireWriter& raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
    return *this;
  }
  std::vector<uint8_t> buf_;
};

// Bounds-checked decoder for bytes from the network. Every getter returns
// false on a short or oversized field and leaves the reader failed: callers
// check ok() once at the end and answer EPROTO, never assert.
class WireReader {
 public:
  explicit WireReader(std::span<const uint8_t> data) : data_(data) {}
  bool u8(uint8_t* v) { return raw(v, 1); }
  bool u16(uint16_t* v) { return raw(v, 2); }
  bool u32(uint32_t* v) { return raw(v, 4); }
  bool u64(uint64_t* v) { return raw(v, 8); }
  bool i32(int32_t* v) { return raw(v, 4); }
  bool i64(int64_t* v) { return raw(v, 8); }
  // A string of at most max_len bytes and no NUL inside.
  bool str(std::string* s, size_t max_len) {
    uint32_t n;
    if (!u32(&n) || n > max_len || n > remaining()) return fail();
    s->assign(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n;
    if (s->find('\0') != std::string::npos) return fail();
    return true;
  }
  // A view into the message (valid while the message is).
  bool bytes(std::span<const uint8_t>* b, size_t max_len) {
    uint32_t n;
    if (!u32(&n) || n > max_len || n > remaining()) return fail();
    *b = data_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  size_t remaining() const { return data_.size() - pos_; }
  // True if every read succeeded and nothing is left over.
  bool done() const { return ok_ && pos_ == data_.size(); }
  bool ok() const { return ok_; }

 private:
  bool raw(void* v, size_t n) {
    if (!ok_ || n > remaining()) return fail();
    std::memcpy(v, data_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool fail() {
    ok_ = false;
    return false;
  }
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace dsdfs::fs
