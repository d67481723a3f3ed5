// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace dsdfs::launcher {

// A small per-mount status file that `dsdfs-launch --wait` reads: where this
// rank's daemon is in its life (bootstrapping, mounted, ready, stopping).
// Path: ${TMPDIR:-/tmp}/.dsdfs-<uid>-<short host name>-<FNV-1a of the
// canonical mount point>.status (nodes may share /tmp: one file per node).
// It outlives a daemon that died: dsdfs-launch --rejoin finds the rank and
// the store there.
struct StatusInfo {
  std::string state;  // bootstrapping | mounted | ready | stopping
  int pid = 0;
  int rank = -1;
  int ranks = 0;
  std::string host;
  std::string store;  // the store's path
};

std::string status_file_path(const std::string& canonical_mountpoint);
// Written atomically (create + rename); errors are ignored (it is advisory).
void status_file_write(const std::string& path, const StatusInfo& info);
// False if missing, unreadable, or (require_alive) its process is gone.
bool status_file_read(const std::string& path, StatusInfo* info, bool require_alive = true);

}  // namespace dsdfs::launcher
