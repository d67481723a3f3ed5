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
    std::string src_rel;  // path under the mount's root ("" for the root)
    std::string dest;     // an absolute directory outside the mount
    bool verify = false;
    int jobs = 4;         // files copied at once on this rank
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

  explicit StageOut(std::string files_root) : files_root_(std::move(files_root)) {}
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
  std::atomic<bool> stopping_{false};
  Mutex mu_;  // leaf lock
  std::map<uint64_t, std::shared_ptr<Job>> jobs_ GUARDED_BY(mu_);
};

}  // namespace dsdfs::fs
