// SPDX-License-Identifier: Apache-2.0
#include "rdma/rma_probe.h"

#include <array>

namespace dsdfs::rdma {
namespace {

constexpr std::array<std::string_view, 13> kNativeRmaTransports = {
    "rc_verbs", "rc_mlx5", "dc_mlx5",  "self",     "cma",       "knem",    "xpmem",
    "sysv",     "posix",   "cuda_ipc", "rocm_ipc", "cuda_copy", "gdr_copy"};

bool transport_is_native(std::string_view tl) {
  for (std::string_view n : kNativeRmaTransports) {
    if (tl == n) return true;
  }
  return false;
}

// True if the whitespace-separated word list contains "rma_bw" or "rma_bw#N".
bool usage_has_rma_bw(std::string_view s) {
  size_t pos = 0;
  while ((pos = s.find("rma_bw", pos)) != std::string_view::npos) {
    bool starts = pos == 0 || s[pos - 1] == ' ' || s[pos - 1] == '\t';
    size_t end = pos + 6;
    bool ends = end == s.size() || s[end] == '#' || s[end] == ' ' || s[end] == '\t';
    if (starts && ends) return true;
    pos = end;
  }
  return false;
}

// A "get[N]: 0..<bcopy>..8256..<zcopy>..(inf)" line of the RMA protocol
// table: -1 if `line` is none, else whether it uses a zero-copy get.
int get_line_has_zcopy(std::string_view line) {
  size_t get = line.find("get[");
  if (get == std::string_view::npos || line.find("]:", get) == std::string_view::npos) return -1;
  if (line.find("lane[") != std::string_view::npos) return -1;
  return line.find("<zcopy>", get) != std::string_view::npos ? 1 : 0;
}

}  // namespace

bool ep_info_rma_is_native(std::string_view info) {
  int rma_lanes = 0;
  bool all_native = true;
  int get_lines = 0;
  bool all_gets_zcopy = true;
  size_t start = 0;
  while (start < info.size()) {
    size_t end = info.find('\n', start);
    if (end == std::string_view::npos) end = info.size();
    std::string_view line = info.substr(start, end - start);
    start = end + 1;
    if (int z = get_line_has_zcopy(line); z >= 0) {
      ++get_lines;
      if (z == 0) all_gets_zcopy = false;
      continue;
    }

    size_t lane = line.find("lane[");
    if (lane == std::string_view::npos) continue;
    size_t colon = line.find("]:", lane);
    if (colon == std::string_view::npos) continue;
    // After "]:" comes "  <rsc index>:<tl>/<device>"; the usage words follow "->".
    std::string_view rest = line.substr(colon + 2);
    size_t idx_colon = rest.find(':');
    size_t slash = rest.find('/');
    if (idx_colon == std::string_view::npos || slash == std::string_view::npos ||
        slash < idx_colon) {
      continue;
    }
    std::string_view tl = rest.substr(idx_colon + 1, slash - idx_colon - 1);
    size_t arrow = rest.find("->");
    std::string_view usage = arrow == std::string_view::npos ? rest : rest.substr(arrow + 2);
    if (!usage_has_rma_bw(usage)) continue;
    ++rma_lanes;
    if (!transport_is_native(tl)) all_native = false;
  }
  // Gets only by copy (UCX 1.13's sysv/posix shared memory) cannot reach
  // memory registered from an mmap'd file: UCX then emulates them.
  if (get_lines > 0 && !all_gets_zcopy) return false;
  return rma_lanes > 0 && all_native;
}

}  // namespace dsdfs::rdma
