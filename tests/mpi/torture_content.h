// SPDX-License-Identifier: Apache-2.0
#pragma once

// Self-describing file contents for the torture test (torture_test.cc), and the checks that
// tell whether bytes read back could have been written. Pure functions on byte strings: no
// system calls, no shared state, so that the oracle itself is tested without a mount
// (TortureContent.* in torture_test.cc).
//
// Four formats, one per area of the test's namespace:
//   cells     16-byte cells written by random pwrites and appends in the chaos area; a cell
//             names its own offset (or says it was appended) and carries a check, so a read
//             at any aligned offset tells a whole cell, a hole (zeros) and foreign bytes apart.
//   records   128-byte log records (log index, writer, sequence number, check), one line of
//             text each, so that `cat` of a log is readable.
//   versions  whole files replaced by write-temp-then-rename: a header (name, version id,
//             size, check) and a body that is a function of (version id, offset).
//   grow      a file the owner overwrites in place and grows: byte(version, offset), so that a
//             reader can say which versions a byte may come from.
//
// Thread-safety: stateless.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsdfs::mpitest::torture {

// splitmix64's finaliser: a cheap 64-bit mixer.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// A small deterministic random generator (splitmix64). The torture test derives one per
// operation from (seed, worker, operation index), so that a failing seed replays the same
// choices even when the timing of other workers differs.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) { return next() % n; }
  // Uniform in [lo, hi]; lo <= hi.
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  // True with probability percent/100.
  bool percent(unsigned p) { return below(100) < p; }

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------------------------------
// cells

inline constexpr size_t kCell = 16;
// Cell "index" of appended cells: they may land anywhere.
inline constexpr uint32_t kAppendedCell = 0xFFFFFFFFu;

// `count` cells: positional ones for cell indexes first_index, first_index+1, ... or, with
// first_index == kAppendedCell, appended ones. `writer` and `tag` identify the write.
std::string cells_make(size_t count, uint32_t first_index, uint16_t writer, uint32_t tag);

struct CellScan {
  size_t cells = 0;       // whole cells looked at
  size_t zero_cells = 0;  // holes
  size_t bad_cells = 0;   // neither zeros nor a whole cell written for that offset
  size_t first_bad_offset = 0;
  std::string first_bad_hex;  // the first bad cell's bytes, hex
  bool partial_tail = false;  // the data ends inside a cell
  bool ok() const { return bad_cells == 0 && !partial_tail; }
  std::string describe() const;
};
// REQUIRES: offset % kCell == 0.
CellScan cells_check(std::string_view data, uint64_t offset);

// ---------------------------------------------------------------------------------------
// log records

inline constexpr size_t kRecord = 128;

struct RecordId {
  uint32_t log = 0;
  uint32_t writer = 0;  // global worker id
  uint32_t seq = 0;     // per (log, writer), from 0
  bool operator==(const RecordId&) const = default;
};

// "LOG l=01 w=0004 s=00000012 <filler> #<check>\n", exactly kRecord bytes.
std::string record_make(RecordId id);
// The id of a whole, valid record, or nullopt.
std::optional<RecordId> record_parse(std::string_view bytes);

// ---------------------------------------------------------------------------------------
// versions (write-temp-then-rename)

inline constexpr size_t kVersionHeader = 64;

// A whole version file of `size` bytes (size >= kVersionHeader) for name `name_index`.
std::string version_make(uint32_t name_index, uint64_t id, size_t size);

struct VersionScan {
  bool ok = false;
  uint64_t id = 0;  // from the header, when it was whole
  std::string why;  // what is wrong, when !ok
};
VersionScan version_check(std::string_view data, uint32_t name_index);

// ---------------------------------------------------------------------------------------
// grow (in-place overwrites by the owner)

// Never 0, so that a hole or a zero-filled page is never mistaken for written data; the
// values of consecutive versions at one offset differ (37 is prime to 255).
inline uint8_t grow_byte(uint64_t version, uint64_t offset) {
  return static_cast<uint8_t>(
      1 + (static_cast<uint32_t>(mix64(offset ^ 0x6A09E667F3BCC909ULL)) + version * 37) % 255);
}
// Bytes [from, from + len) of a version.
std::string grow_make(uint64_t version, uint64_t from, size_t len);

// Hex of up to 32 bytes, for messages.
std::string hex_of(std::string_view bytes);

}  // namespace dsdfs::mpitest::torture
