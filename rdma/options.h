// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>

namespace dsdfs::rdma {

// How bulk file bytes move between ranks (DESIGN.md 3.3). kAuto asks
// Transport::rma_is_native() per peer; kRma and kAm force one path.
enum class BulkMode { kAuto, kRma, kAm };

// Immutable configuration of one Transport; passed in by value.
struct Options {
  int rank = 0;
  int nranks = 1;
  // Shared by all ranks of one job (the launcher derives it, e.g. from the job id).
  // Messages carrying another key are dropped unread.
  uint64_t job_key = 0;
  // Timeout of call()/get() when the caller passes none.
  std::chrono::milliseconds default_timeout{10000};
  BulkMode bulk_mode = BulkMode::kAuto;
  // A peer that sent nothing at all for this long while a call to it timed
  // out is declared dead, as if UCX had reported its endpoint failed (a node
  // cut off or frozen: over TCP, UCX itself may not notice for many minutes).
  // What it sends later is dropped. Zero: only UCX decides.
  std::chrono::milliseconds dead_after{0};
  // Time shutdown() waits for endpoints to flush and close before it forces them.
  std::chrono::milliseconds shutdown_timeout{2000};
};

}  // namespace dsdfs::rdma
