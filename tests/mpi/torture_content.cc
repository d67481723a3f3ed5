// SPDX-License-Identifier: Apache-2.0
#include "tests/mpi/torture_content.h"

#include <cstdio>
#include <cstring>

namespace dsdfs::mpitest::torture {

namespace {

void put_u16(char* p, uint16_t v) {
  std::memcpy(p, &v, 2);
}
void put_u32(char* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}
void put_u64(char* p, uint64_t v) {
  std::memcpy(p, &v, 8);
}
uint32_t get_u32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Check of a cell's first 12 bytes.
uint32_t cell_check_of(const char* cell) {
  return static_cast<uint32_t>(mix64(get_u64(cell) ^ mix64(get_u32(cell + 8))));
}

bool all_zero(std::string_view s) {
  for (char c : s)
    if (c != 0) return false;
  return true;
}

}  // namespace

std::string hex_of(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  size_t n = bytes.size() < 32 ? bytes.size() : 32;
  for (size_t i = 0; i < n; ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  if (n < bytes.size()) out += "...";
  return out;
}

// ---------------------------------------------------------------------------------------
// cells: 'C', kind ('P' positional, 'A' appended), writer u16, index u32, tag u32, check u32

std::string cells_make(size_t count, uint32_t first_index, uint16_t writer, uint32_t tag) {
  std::string out(count * kCell, '\0');
  for (size_t i = 0; i < count; ++i) {
    char* c = out.data() + i * kCell;
    c[0] = 'C';
    c[1] = first_index == kAppendedCell ? 'A' : 'P';
    put_u16(c + 2, writer);
    put_u32(c + 4,
            first_index == kAppendedCell ? kAppendedCell : first_index + static_cast<uint32_t>(i));
    put_u32(c + 8, tag);
    put_u32(c + 12, cell_check_of(c));
  }
  return out;
}

CellScan cells_check(std::string_view data, uint64_t offset) {
  CellScan scan;
  size_t whole = data.size() / kCell * kCell;
  for (size_t at = 0; at < whole; at += kCell) {
    std::string_view cell = data.substr(at, kCell);
    ++scan.cells;
    if (all_zero(cell)) {
      ++scan.zero_cells;
      continue;
    }
    const char* c = cell.data();
    const uint32_t index = get_u32(c + 4);
    const uint64_t here = (offset + at) / kCell;
    bool ok = c[0] == 'C' && get_u32(c + 12) == cell_check_of(c) &&
              ((c[1] == 'P' && index == here) || (c[1] == 'A' && index == kAppendedCell));
    if (!ok) {
      if (scan.bad_cells++ == 0) {
        scan.first_bad_offset = offset + at;
        scan.first_bad_hex = hex_of(cell);
      }
    }
  }
  scan.partial_tail = whole != data.size();
  return scan;
}

std::string CellScan::describe() const {
  std::string out = std::to_string(cells) + " cells, " + std::to_string(zero_cells) + " holes, " +
                    std::to_string(bad_cells) + " bad";
  if (bad_cells)
    out += " (first at offset " + std::to_string(first_bad_offset) + ": " + first_bad_hex + ")";
  if (partial_tail) out += ", ends inside a cell";
  return out;
}

// ---------------------------------------------------------------------------------------
// records

namespace {

constexpr size_t kRecordPrefix = 27;             // "LOG l=01 w=0004 s=00000012 "
constexpr size_t kRecordCheckAt = kRecord - 18;  // "#" + 16 hex digits + "\n"

uint64_t record_check(std::string_view first) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (size_t i = 0; i + 8 <= first.size(); i += 8) h = mix64(h ^ get_u64(first.data() + i));
  for (size_t i = first.size() / 8 * 8; i < first.size(); ++i)
    h = mix64(h ^ static_cast<unsigned char>(first[i]));
  return h;
}

}  // namespace

std::string record_make(RecordId id) {
  char buf[kRecord + 1];
  snprintf(buf, sizeof buf, "LOG l=%02u w=%04u s=%08u ", id.log % 100, id.writer % 10000,
           id.seq % 100000000);
  std::string out(buf, kRecordPrefix);
  uint64_t x = mix64((uint64_t{id.log} << 48) ^ (uint64_t{id.writer} << 32) ^ id.seq);
  while (out.size() < kRecordCheckAt) {
    out += static_cast<char>('a' + x % 26);
    x = mix64(x);
  }
  snprintf(buf, sizeof buf, "#%016llx\n",
           static_cast<unsigned long long>(record_check(std::string_view(out))));
  out += buf;
  return out;
}

std::optional<RecordId> record_parse(std::string_view bytes) {
  if (bytes.size() != kRecord || !bytes.starts_with("LOG l=")) return std::nullopt;
  RecordId id;
  char tail;
  std::string head(bytes.substr(0, kRecordPrefix));
  if (sscanf(head.c_str(), "LOG l=%2u w=%4u s=%8u%c", &id.log, &id.writer, &id.seq, &tail) != 4 ||
      tail != ' ')
    return std::nullopt;
  if (record_make(id) != bytes) return std::nullopt;
  return id;
}

// ---------------------------------------------------------------------------------------
// versions: "VER1", name u32, id u64, size u64, header check u64, zeros to 64 bytes; body
// word i (8 bytes from offset 64 + 8i) = mix64(id ^ mix64(i)), cut at the size.

namespace {

constexpr size_t kVersionCheckAt = 24;

void version_body(std::string* out, uint64_t id, size_t size) {
  out->resize(size);
  for (size_t at = kVersionHeader, i = 0; at < size; at += 8, ++i) {
    uint64_t w = mix64(id ^ mix64(i));
    std::memcpy(out->data() + at, &w, size - at < 8 ? size - at : 8);
  }
}

}  // namespace

std::string version_make(uint32_t name_index, uint64_t id, size_t size) {
  if (size < kVersionHeader) size = kVersionHeader;
  std::string out(kVersionHeader, '\0');
  std::memcpy(out.data(), "VER1", 4);
  put_u32(out.data() + 4, name_index);
  put_u64(out.data() + 8, id);
  put_u64(out.data() + 16, size);
  put_u64(out.data() + kVersionCheckAt,
          record_check(std::string_view(out.data(), kVersionCheckAt)));
  version_body(&out, id, size);
  return out;
}

VersionScan version_check(std::string_view data, uint32_t name_index) {
  VersionScan scan;
  if (data.size() < kVersionHeader) {
    scan.why = "only " + std::to_string(data.size()) + " bytes, shorter than a header";
    if (!data.empty()) scan.why += " (" + hex_of(data) + ")";
    return scan;
  }
  const char* h = data.data();
  if (std::memcmp(h, "VER1", 4) != 0 ||
      get_u64(h + kVersionCheckAt) != record_check(std::string_view(h, kVersionCheckAt)) ||
      !all_zero(data.substr(kVersionCheckAt + 8, kVersionHeader - kVersionCheckAt - 8))) {
    scan.why = "no whole header: " + hex_of(data.substr(0, kVersionHeader));
    return scan;
  }
  scan.id = get_u64(h + 8);
  if (get_u32(h + 4) != name_index) {
    scan.why = "version of another name (v" + std::to_string(get_u32(h + 4)) + ")";
    return scan;
  }
  const uint64_t size = get_u64(h + 16);
  if (size != data.size()) {
    scan.why =
        "header says " + std::to_string(size) + " bytes, read " + std::to_string(data.size());
    return scan;
  }
  std::string expected;
  version_body(&expected, scan.id, data.size());
  for (size_t at = kVersionHeader; at < data.size(); at += 4096) {
    size_t n = data.size() - at < 4096 ? data.size() - at : 4096;
    if (std::memcmp(expected.data() + at, data.data() + at, n) != 0) {
      size_t i = at;
      while (expected[i] == data[i]) ++i;
      scan.why = "body differs from the header's version at offset " + std::to_string(i) +
                 ": read " + hex_of(data.substr(i, 16)) + ", expected " +
                 hex_of(std::string_view(expected).substr(i, 16));
      return scan;
    }
  }
  scan.ok = true;
  return scan;
}

// ---------------------------------------------------------------------------------------
// grow

std::string grow_make(uint64_t version, uint64_t from, size_t len) {
  std::string out(len, '\0');
  for (size_t i = 0; i < len; ++i) out[i] = static_cast<char>(grow_byte(version, from + i));
  return out;
}

}  // namespace dsdfs::mpitest::torture
