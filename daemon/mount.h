// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fuse_lowlevel.h>

#include <string>

#include "common/status.h"
#include "daemon/options.h"

namespace dsdfs::fs {

class Filesystem;

// Checks and prepares a mount point: makes it absolute, creates it if missing,
// cleans up a stale FUSE mount left by a killed daemon ("Transport endpoint is
// not connected"), refuses a file or an already-mounted directory. Returns the
// canonical absolute path; errors carry the user's one-line message.
Result<std::string> mountpoint_prepare(const std::string& path);

// The fstype of the mount at exactly `path` ("fuse.dsdfs", ...), or "" if
// `path` is not a mount point (parses /proc/self/mountinfo).
std::string mount_type_at(const std::string& path);

// Lazily unmounts a FUSE mount (umount2 MNT_DETACH as root, else fusermount3 -u -z).
Status fuse_unmount_lazy(const std::string& path);

// A mounted FUSE session serving a Filesystem. Unwinds in reverse order of
// creation (session, mount) like libfuse's main. Not thread-safe except exit().
class FuseMount {
 public:
  FuseMount() = default;
  FuseMount(const FuseMount&) = delete;
  FuseMount& operator=(const FuseMount&) = delete;
  ~FuseMount();

  // Creates the session and mounts it at `mountpoint`.
  Status mount(const std::string& mountpoint, Filesystem* fs, const Options& options);
  // Serves requests with up to options.threads workers until exit() or unmount.
  Status loop(const Options& options);
  // Makes loop() return soon; callable from any thread (see launcher signals).
  void exit();
  void unmount();
  struct fuse_session* session() const { return se_; }

 private:
  struct fuse_session* se_ = nullptr;
  bool mounted_ = false;
  std::string mountpoint_;
};

}  // namespace dsdfs::fs
