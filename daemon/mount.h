// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fuse_lowlevel.h>

#include <string>
#include <thread>

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

// The device number ("major:minor") of the mount at exactly `path` as
// /proc/self/mountinfo shows it, or "" if `path` is not a mount point.
std::string mount_dev_at(const std::string& path);

// A mounted FUSE session serving a Filesystem. Unwinds in reverse order of
// creation (session, mount) like libfuse's main. Not thread-safe except exit().
//
// Stopping: loop() returns, then abort() (nothing can stay blocked in the
// kernel on this mount any more), then the threads that may have been
// blocked there are joined, then unmount().
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
  // Ends the FUSE connection: every request in flight or queued fails at once,
  // and so does every later one. A request holds the locks of its directories
  // until it is answered, and once loop() has returned nobody answers it: a
  // thread waiting for such a lock (the notifier in a kernel notification, an
  // application) would wait forever, in D state, and closing /dev/fuse does
  // not help while a notification in progress holds the file. Through
  // fusectl's abort file where it is mounted, else (root) umount2(MNT_FORCE);
  // where neither is possible (a user's daemon without fusectl), a thread
  // answers every request with ENOTCONN until unmount() closes the session,
  // which ends the connection for good. Fast: call it first when stopping.
  // REQUIRES: loop() has returned.
  void abort();
  // The kernel side of abort() (fusectl, else root's umount2(MNT_FORCE)),
  // for a stop whose loop() does not return: libfuse's loop joins its
  // workers, and a worker whose request waits for this very mount (a cycle
  // through the kernel's locks) never ends by itself, while mpirun and srun
  // follow SIGTERM with SIGKILL, which leaves such a thread and its mount
  // stuck for good. Callable from any thread once mount() has returned;
  // false where neither way is open (a user's daemon without fusectl).
  bool abort_connection() const;
  // Detaches the mount point (lazily: files still open elsewhere keep it
  // alive until closed) and destroys the session. REQUIRES: no thread uses
  // the session any more (Notifier::stop).
  void unmount();
  struct fuse_session* session() const { return se_; }

 private:
  void drain_start();
  void drain_stop();

  struct fuse_session* se_ = nullptr;
  bool mounted_ = false;
  bool aborted_ = false;
  std::string mountpoint_;
  std::string dev_;     // "major:minor" of the mount, from mountinfo
  int drain_stop_fd_ = -1;  // eventfd that ends the drain thread
  std::thread drain_;
};

}  // namespace dsdfs::fs
