// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "rdma/options.h"

namespace dsdfs::fs {

using rdma::BulkMode;  // --bulk: the transport's own setting

// How this rank's kernel learns that directory names changed on another rank
// (daemon/notifier.h).
enum class DirNotify {
  kAuto,   // kEpoch where the kernel has it (FUSE 7.44, Linux >= 6.16), else kEntry
  kEpoch,  // FUSE_NOTIFY_INC_EPOCH: every cached name is looked up again on its next use
  kEntry,  // FUSE_NOTIFY_INVAL_ENTRY per name, queued, never waited for (older kernels)
};


// Everything the user can set, parsed once at startup and passed around as an
// immutable value (no global god-object). Paths still hold %r / %h until
// options_expand() is called with the rank.
struct Options {
  std::string mountpoint;
  std::string store;           // empty: per-user, per-job default under $TMPDIR or /tmp
  std::string ready_file;      // written (create + rename) once every rank has mounted
  bool keep_store = false;     // keep the store on a clean stop
  bool rejoin = false;         // restart this node's dead daemon of a running job
  // The most idle FUSE workers kept (--threads); 0: every worker started is
  // kept (FuseMount::loop).
  unsigned threads = 0;
  double timeout_s = 5.0;      // timeout of every remote call
  double wait_s = 0;           // --wait: seconds to wait for every rank to mount
  double bootstrap_timeout_s = 120;  // give up if not every rank arrives
  BulkMode bulk = BulkMode::kAuto;
  DirNotify dir_notify = DirNotify::kAuto;
  // --passthrough auto|off: owned files' reads and writes through kernel
  // passthrough where this build, the kernel and the daemon's privileges
  // allow it (Filesystem::init says which and why).
  bool passthrough = true;
  LogLevel log_level = LogLevel::kWarn;
  bool show_help = false;
  bool show_version = false;
  bool show_info = false;
  bool wait_mode = false;      // --wait: do not mount, wait until the job's mount is ready
  bool debug_fuse = false;     // libfuse's own request trace
};

// Parses argv (without argv[0]). Usage errors come back as EINVAL with the
// message to print in Status::context().
Result<Options> options_parse(const std::vector<std::string>& args);

// The --help text.
std::string options_usage();

// Replaces %r with the rank, %h with the short host name and %% with %.
// An unknown placeholder is an error (EINVAL).
Result<std::string> expand_placeholders(const std::string& pattern, int rank,
                                        const std::string& short_host);

// The default store: $TMPDIR (or /tmp) / "dsdfs-<user>-<job>-r%r", where <job> is
// the Slurm job id, else the PMIx namespace, else a hash of the absolute mount
// point, so that two jobs (or two mounts) on one node never share a store.
std::string default_store_pattern(const std::string& absolute_mountpoint);

}  // namespace dsdfs::fs
