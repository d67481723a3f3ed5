// SPDX-License-Identifier: Apache-2.0
// Several ranks' file-system logic in one process: a Filesystem per rank,
// each with its own store under one test directory, joined by InProcessPeers.
// No FUSE and no UCX: the operations below are those the FUSE front end runs
// for a user on that rank's node (by directory id and name instead of kernel
// inodes). What needs a kernel is not here: page caches, reverse
// invalidations, and writes another rank forwards to an owner whose kernel
// knows the file (applied through the owner's own mount; here the owner's
// kernel knows no file, so it writes to the store file itself). The mpi and
// e2e suites cover those.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/filesystem.h"
#include "daemon/stats.h"
#include "daemon/store.h"
#include "tests/unit/daemon/in_process_peers.h"

namespace dsdfs::fs::testing {

class InProcessCluster {
 public:
  static constexpr uint64_t kRoot = 0;  // the root directory's id

  // nranks ranks with stores under dir (which must exist).
  InProcessCluster(const std::string& dir, int nranks,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~InProcessCluster();

  int size() const { return static_cast<int>(ranks_.size()); }
  InProcessNet& net() { return net_; }
  Peers& peers(int r) { return *ranks_.at(r)->peers; }
  const Stats& stats(int r) const { return ranks_.at(r)->stats; }

  // A user's operations on rank r's node; 0 or an errno.
  Result<uint64_t> mkdir(int r, uint64_t dir, const std::string& name);  // the new directory's id
  int rmdir(int r, uint64_t dir, const std::string& name);
  int rename(int r, uint64_t dir, const std::string& name, uint64_t dir2, const std::string& name2,
             unsigned flags = 0);
  int unlink(int r, uint64_t dir, const std::string& name);
  // open(2) of dir/name with flags (O_CREAT makes it a create) and, if it
  // succeeds and text is not empty, a write of text at offset 0 (owned files
  // only). The rank that owns the file it opened.
  Result<int> open(int r, uint64_t dir, const std::string& name, int flags, const std::string& text = "");
  // open(2) of dir/name for writing (O_WRONLY, and flags: O_APPEND) on rank
  // r, kept open until the cluster ends: its handle, and the rank that owns
  // the file it opened.
  struct Writer {
    int handle = -1;
    int owner = -1;
  };
  Result<Writer> open_for_writing(int r, uint64_t dir, const std::string& name, int flags = 0);
  // pwrite(2) of text at off through a handle of open_for_writing on rank r,
  // as the FUSE front end hands it to the file system (another rank's file:
  // forwarded to its owner). The count written, or the error.
  Result<size_t> write(int r, const Writer& w, const std::string& text, off_t off);
  // The whole file as rank r reads it (open read-only, read, close).
  Result<std::string> read(int r, uint64_t dir, const std::string& name);
  // The owner of dir/name as rank r's lookup finds it (ENOENT: nobody).
  Result<int> owner_of(int r, uint64_t dir, const std::string& name);
  // The names of rank r's store replica of directory dir (owned files and
  // directories), sorted.
  std::vector<std::string> stored(int r, uint64_t dir);
  // Rank r's daemon died (kill it in net() first) and is started again
  // over the same store: a new Filesystem that rejoins the job
  // (Filesystem::rejoin, then publish_files), as dsdfs-launch --rejoin does.
  // fill: then have every rank fill its shard (Filesystem::fill_shard).
  Status restart(int r, Filesystem::RejoinCounts* counts, bool fill = true);
  // Rank r's store directory of dir (a handle the rank keeps; -1: none), for a
  // test that changes a store file under the file system, as a kernel would.
  int store_dir_fd(int r, uint64_t dir);
  // The id of directory `name` in dir as rank r's replica has it (0: none).
  uint64_t dir_id(int r, uint64_t dir, const std::string& name);
  // The names a listing (readdir) of directory dir on rank r shows, in its
  // order, without "." and ".."; an errno.
  Result<std::vector<std::string>> list(int r, uint64_t dir);

 private:
  struct Rank {
    std::unique_ptr<Store> store;
    Stats stats;
    std::unique_ptr<InProcessPeers> peers;
    std::unique_ptr<Filesystem> fs;
  };
  Filesystem& fs(int r) { return *ranks_.at(r)->fs; }
  // The owner a path walk on rank r finds without asking anyone: r when its
  // replica holds the file (the kernel's lookup answers from the store), else -1.
  int local_hint(int r, uint64_t dir, const std::string& name);

  InProcessNet net_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::vector<std::unique_ptr<FileHandle>> writers_;  // open_for_writing's handles
};

}  // namespace dsdfs::fs::testing
