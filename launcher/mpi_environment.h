// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace dsdfs::launcher {

// MPI for bootstrap only: who are the ranks, one allgather of addresses, one
// barrier when every rank has mounted. Never used on the data path.
// Used from the main thread only (MPI_THREAD_FUNNELED).
class MpiEnvironment {
 public:
  // Calls MPI_Init_thread. Without a launcher this is rank 0 of 1.
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Every rank's blob, indexed by rank (blobs may differ in length).
  Result<std::vector<std::vector<uint8_t>>> allgather(const std::vector<uint8_t>& mine);
  Status barrier();
  // Rank 0's value, on every rank.
  Result<uint64_t> broadcast(uint64_t value);
  // MPI_Finalize now; if it has not returned after `timeout` (a rank that
  // died can make it wait forever), the process exits with exit_code.
  void finalize_with_timeout(std::chrono::milliseconds timeout, int exit_code);
  // How long the destructor's MPI_Finalize may wait (a failed start).
  void set_finalize_timeout(std::chrono::milliseconds t) { finalize_timeout_ = t; }

 private:
  int rank_ = 0;
  int size_ = 1;
  bool finalize_ = true;
  std::chrono::milliseconds finalize_timeout_{std::chrono::seconds(10)};
};

}  // namespace dsdfs::launcher
