// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace dsdfs::launcher {

// What a rank needs to find its job again without MPI (dsdfs-launch
// --rejoin): written into its store after bootstrap (STORE/.dsdfs-job, mode
// 0600, in the 0700 store), and again after a rejoin.
struct JobFile {
  uint32_t protocol = 0;
  int rank = -1;
  int nranks = 0;
  uint64_t job_key = 0;
  std::vector<std::string> hosts;                 // by rank
  std::vector<std::vector<uint8_t>> addresses;    // UCX worker addresses by rank
};

std::string job_file_path(const std::string& store_path);
Status job_file_write(const std::string& store_path, const JobFile& job);
Result<JobFile> job_file_read(const std::string& store_path);

}  // namespace dsdfs::launcher
