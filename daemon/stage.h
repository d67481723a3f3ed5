// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"

namespace dsdfs::fs {

// Stage-in (`dsdfs stage-in`) runs the other way: from a directory outside
// into the mount, through this rank's own mount point (from a thread of its
// own, as an application would), so each copy is owned by the rank that
// wrote it: every rank its share (--spread: by a hash of the path), or the
// asking rank all of it.
//
// Stage-out on one rank (`dsdfs stage-out`): copies the files this rank's
// store holds under a path of the namespace to a destination directory that
// every node can reach (the site's parallel file system), straight from the
// store, so that no byte crosses dsdfs's network. Each rank runs its share in
// the background; the command polls progress(). Thread-safe.
//
// SRC a directory: DEST/basename(SRC)/... (the root: DEST/...); a file: DEST/
// basename(SRC), by its owner only. Every rank makes the directories (each
// holds all of them). A file already at its destination with the same size
// and modification time is left as it is (a stage-out run again copies only
// what is missing or different). A copy goes to a temporary name in its
// directory, is written back to disk (fsync) and then renamed, so an
// interrupted copy never leaves a partial file under the real name; it keeps
// the source's mode bits and modification time. --verify reads both copies
// again and compares their FNV-1a checksums.
class StageOut {
 public:
  struct Request {
    // Stage-out: the source under the mount's root ("" for the root) and the
    // destination directory outside the mount. Stage-in (`in`): the
    // destination directory under the mount's root and the source outside.
    std::string src_rel;
    std::string dest;
    bool verify = false;
    int jobs = 4;         // files copied at once on this rank
    bool in = false;      // stage-in: from `dest` into the mount, through this rank's mount point
    bool spread = false;  // stage-in: every rank takes its share (by a hash of the path), else `taker` all
    int taker = 0;
    int rank = 0, nranks = 1;
  };
  struct Progress {
    std::string state;  // "scanning", "copying", "done"
    uint64_t files_total = 0, bytes_total = 0;
    uint64_t files_done = 0, bytes_done = 0;  // copied or found unchanged
    uint64_t files_unchanged = 0;
    uint64_t errors = 0;
    std::vector<std::string> first_errors;  // "PATH: what", at most kKeptErrors
    double seconds = 0;
  };
  static constexpr size_t kKeptErrors = 20;

  StageOut(std::string files_root, std::string mount_root)
      : files_root_(std::move(files_root)), mount_root_(std::move(mount_root)) {}
  ~StageOut();  // waits for running copies (a stop cuts them short: see stop())
  StageOut(const StageOut&) = delete;
  StageOut& operator=(const StageOut&) = delete;

  // Starts job `id` in the background. EEXIST if that id is known already.
  Status start(uint64_t id, Request request);
  std::optional<Progress> progress(uint64_t id);
  // Makes running jobs stop after the file they are copying.
  void stop() { stopping_.store(true); }

 private:
  struct Job;
  void run(Job& job);

  const std::string files_root_;
  const std::string mount_root_;  // stage-in writes through it, as an application would
  std::atomic<bool> stopping_{false};
  Mutex mu_;  // leaf lock
  std::map<uint64_t, std::shared_ptr<Job>> jobs_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
