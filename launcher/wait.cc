// SPDX-License-Identifier: Apache-2.0
#include "launcher/wait.h"

#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/host.h"
#include "daemon/mount.h"
#include "daemon/store.h"
#include "daemon/wire_codec.h"
#include "launcher/mpi_environment.h"
#include "launcher/status_file.h"

namespace dsdfs::launcher {

namespace {

bool mount_ready(const std::string& mnt) {
  if (fs::mount_type_at(mnt) != "fuse.dsdfs") return false;
  char buf[64];
  return ::getxattr(mnt.c_str(), "user.dsdfs.ready", buf, sizeof buf) > 0;
}

std::string describe_not_ready(const std::string& mnt) {
  StatusInfo st;
  if (!status_file_read(status_file_path(mnt), &st)) return "no dsdfs-launch running for " + mnt;
  if (st.state == "bootstrapping") return "dsdfs-launch (pid " + std::to_string(st.pid) + ") waits for the other ranks to start";
  if (st.state == "mounted") return "mounted, waits for the other ranks to mount";
  if (st.state == "stopping") return "stopping";
  return "state " + st.state;
}

}  // namespace

int run_wait(int argc, char** argv, const fs::Options& options) {
  MpiEnvironment mpi(&argc, &argv);
  const std::string host = short_host_name();
  auto expanded = fs::expand_placeholders(options.mountpoint, mpi.rank(), host);
  if (!expanded) {
    std::fprintf(stderr, "dsdfs-launch: error: %s\n", expanded.status().context().c_str());
    return 2;
  }
  std::string mnt = expanded.value();
  if (!mnt.empty() && mnt[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) mnt = std::string(cwd) + "/" + mnt;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(options.wait_s * 1000));
  bool ready = false;
  std::string canon;
  while (true) {
    canon = fs::canonical_path(mnt);
    if (mount_ready(canon)) {
      ready = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  fs::WireWriter w;
  w.u8(ready ? 1 : 0).str(host).str(ready ? std::string() : describe_not_ready(canon));
  auto all = mpi.allgather(w.take());
  if (!all) {
    std::fprintf(stderr, "dsdfs-launch: error: %s\n", all.status().to_string().c_str());
    mpi.finalize_with_timeout(std::chrono::seconds(10), 1);
    return 1;
  }
  std::string missing;
  int nmissing = 0;
  for (int r = 0; r < mpi.size(); ++r) {
    fs::WireReader rd(all.value()[r]);
    uint8_t ok = 0;
    std::string h, why;
    if (!(rd.u8(&ok) && rd.str(&h, 256) && rd.str(&why, 4096))) why = "garbled answer";
    if (ok) continue;
    ++nmissing;
    missing += (missing.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " (" + h + "): " + why;
  }
  if (nmissing == 0) {
    if (mpi.rank() == 0) std::printf("dsdfs is mounted and ready on all %d ranks\n", mpi.size());
    std::fflush(stdout);
    // Every waiter gets here: finalize, or mpirun calls the exit improper.
    mpi.finalize_with_timeout(std::chrono::seconds(10), 0);
    return 0;
  }
  // One report for the job, from rank 0; every waiter fails.
  if (mpi.rank() == 0) {
    std::fprintf(stderr, "dsdfs-launch: error: dsdfs is not ready after %g s on %d of %d ranks: %s\n", options.wait_s,
                 nmissing, mpi.size(), missing.c_str());
  }
  std::fflush(nullptr);
  mpi.finalize_with_timeout(std::chrono::seconds(10), 1);
  return 1;
}

}  // namespace dsdfs::launcher
