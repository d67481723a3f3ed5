// SPDX-License-Identifier: Apache-2.0
#include "launcher/mpi_environment.h"

#include <mpi.h>

#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace dsdfs::launcher {

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  // MPI only exchanges a few addresses at startup: keep Open MPI off UCX and
  // off the fast fabric, which dsdfs's own UCX context uses. Users may override.
  ::setenv("OMPI_MCA_pml", "ob1", 0);
  ::setenv("OMPI_MCA_btl", "self,vader,tcp", 0);
  ::setenv("OMPI_MCA_osc", "^ucx", 0);
  // Alone (no mpirun/srun), Open MPI would start a helper orted that can
  // outlive us; a one-rank dsdfs needs none.
  ::setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    throw std::runtime_error("MPI_Init_thread failed");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiEnvironment::~MpiEnvironment() {
  // Reached with MPI still up only when startup failed. The other ranks may
  // sit in a collective this rank never joins (until their bootstrap timeout
  // ends them), so MPI_Finalize may wait that long; never longer. Leaving
  // without it would make Slurm's PMIx plugin SIGKILL the whole step at once,
  // leaving the other ranks' stores behind.
  if (finalize_) finalize_with_timeout(finalize_timeout_, 1);
}

void MpiEnvironment::finalize_with_timeout(std::chrono::milliseconds timeout, int exit_code) {
  if (!finalize_) return;
  finalize_ = false;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, timeout, [&] { return done; })) {
      std::fflush(nullptr);
      ::_exit(exit_code);
    }
  });
  MPI_Finalize();
  {
    std::lock_guard lock(mu);
    done = true;
  }
  cv.notify_all();
  watchdog.join();
}

Result<std::vector<std::vector<uint8_t>>> MpiEnvironment::allgather(const std::vector<uint8_t>& mine) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size_);
  if (MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return Status::error(EIO, "MPI_Allgather of address lengths failed");
  }
  std::vector<int> displs(size_);
  int total = 0;
  for (int i = 0; i < size_; ++i) {
    displs[i] = total;
    total += lens[i];
  }
  std::vector<uint8_t> all(static_cast<size_t>(total));
  if (MPI_Allgatherv(mine.data(), len, MPI_BYTE, all.data(), lens.data(), displs.data(), MPI_BYTE,
                     MPI_COMM_WORLD) != MPI_SUCCESS) {
    return Status::error(EIO, "MPI_Allgatherv of addresses failed");
  }
  std::vector<std::vector<uint8_t>> out(size_);
  for (int i = 0; i < size_; ++i) out[i].assign(all.begin() + displs[i], all.begin() + displs[i] + lens[i]);
  return out;
}

Result<uint64_t> MpiEnvironment::broadcast(uint64_t value) {
  unsigned long long v = value;
  if (MPI_Bcast(&v, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return Status::error(EIO, "MPI_Bcast failed");
  }
  return static_cast<uint64_t>(v);
}

Status MpiEnvironment::barrier() {
  if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) return Status::error(EIO, "MPI_Barrier failed");
  return Status::ok();
}

}  // namespace dsdfs::launcher
