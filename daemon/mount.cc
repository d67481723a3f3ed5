// SPDX-License-Identifier: Apache-2.0
#include "daemon/mount.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <fuse.h>
#include <linux/fuse.h>
#include <sys/uio.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/log.h"
#include "common/mountinfo.h"
#include "common/noexcept_boundary.h"
#include "daemon/filesystem.h"
#include "daemon/store.h"

extern char** environ;

namespace dsdfs::fs {

namespace {

int run_and_wait(const std::vector<std::string>& argv) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid;
  // posix_spawn (vfork semantics) is safe in a process that has MPI and UCX up.
  if (posix_spawnp(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ) != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

constexpr unsigned kMaxFuseThreads = 512;

#ifndef FUSE_CAP_HANDLE_KILLPRIV_V2
// libfuse 3.14 cannot ask for FUSE_HANDLE_KILLPRIV_V2 (3.17 can: Filesystem::init), which spares a
// GETXATTR("security.capability") round trip on every write(2) (the kernel
// then marks the super block SB_NOSEC). The session's I/O goes through these
// pass-through functions, and the first reply (the INIT reply) gets the flag.
// The flag makes the server responsible for dropping setuid/setgid/file
// capabilities: a user's daemon writes the store as that user, so the store's
// kernel drops them; a root daemon drops setuid/setgid when a non-root caller
// opens a file for writing or truncates it (Filesystem::open, setattr), and
// no file here can carry security.capability (setxattr refuses it).
std::atomic<bool> g_init_patched{false};


ssize_t io_writev(int fd, struct iovec* iov, int count, void*) {
  if (!g_init_patched.load(std::memory_order_relaxed) && count >= 2 &&
      iov[0].iov_len == sizeof(struct fuse_out_header) && iov[1].iov_len >= sizeof(uint32_t) * 4) {
    g_init_patched.store(true);
    auto* hdr = static_cast<struct fuse_out_header*>(iov[0].iov_base);
    auto* init = static_cast<struct fuse_init_out*>(iov[1].iov_base);
    if (hdr->error == 0 && init->major == FUSE_KERNEL_VERSION) init->flags |= FUSE_HANDLE_KILLPRIV_V2;
  }
  return ::writev(fd, iov, count);
}
ssize_t io_read(int fd, void* buf, size_t len, void*) { return ::read(fd, buf, len); }
ssize_t io_splice(int fdin, off_t* offin, int fdout, off_t* offout, size_t len, unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}
const struct fuse_custom_io kPatchingIo = {io_writev, io_read, io_splice, io_splice};
#endif

void fuse_log_to_ours(enum fuse_log_level level, const char* fmt, va_list ap) {
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  size_t n = std::strlen(buf);
  while (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  // libfuse's own messages are details; the launcher prints the one-line error.
  if (level <= FUSE_LOG_ERR) DSDFS_INFO("libfuse: %s", buf);
  else DSDFS_DEBUG("libfuse: %s", buf);
}

}  // namespace

namespace {

// The fstype and device ("major:minor") of the last (topmost) mount at exactly
// `path` in /proc/self/mountinfo; false if there is none.
bool top_mount_at(const std::string& path, std::string* type, std::string* dev) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    std::istringstream ls(line);
    std::string id, parent, majmin, root, mnt;
    ls >> id >> parent >> majmin >> root >> mnt;
    if (unescape_mountinfo(mnt) != path) continue;
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream rest(line.substr(dash + 3));
    rest >> *type;  // the last mount at a path wins, as it covers the others
    *dev = majmin;
    found = true;
  }
  return found;
}

}  // namespace

std::string mount_type_at(const std::string& path) {
  std::string type, dev;
  return top_mount_at(path, &type, &dev) ? type : std::string();
}

std::string mount_dev_at(const std::string& path) {
  std::string type, dev;
  return top_mount_at(path, &type, &dev) ? dev : std::string();
}

Status fuse_unmount_lazy(const std::string& path) {
  if (::geteuid() == 0) {
    if (::umount2(path.c_str(), MNT_DETACH) == 0) return Status::ok();
    return Status::from_errno("umount " + path);
  }
  int rc = run_and_wait({"fusermount3", "-u", "-q", "-z", path});
  if (rc == 0) return Status::ok();
  return Status::error(EBUSY, "fusermount3 -u -z " + path + " failed");
}

Result<std::string> mountpoint_prepare(const std::string& raw) {
  std::string path = raw;
  if (path.empty()) return Status::error(EINVAL, "empty mount point");
  if (path[0] != '/') {
    char cwd[4096];
    if (!::getcwd(cwd, sizeof cwd)) return Status::from_errno("cannot get the current directory");
    path = std::string(cwd) + "/" + path;
  }
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      std::string type = mount_type_at(path);
      if (type.rfind("fuse", 0) != 0) {
        return Status::error(ENOTCONN, "mount point " + path + " is not connected and is not a FUSE mount");
      }
      DSDFS_WARN("mount point %s is a stale %s mount left by a dead daemon; unmounting it", path.c_str(),
                 type.c_str());
      if (auto s = fuse_unmount_lazy(path); !s) {
        return Status::error(ENOTCONN, "mount point " + path +
                                           " is a stale FUSE mount (Transport endpoint is not connected) "
                                           "and cannot be cleaned up here; run: fusermount3 -u -z " + path);
      }
      if (::stat(path.c_str(), &st) != 0) return Status::from_errno("mount point " + path);
    } else if (errno == ENOENT) {
      if (auto s = make_dirs(path, 0755); !s) return Status::error(s.err(), "mount point: " + s.to_string());
      if (::stat(path.c_str(), &st) != 0) return Status::from_errno("mount point " + path);
    } else {
      return Status::from_errno("mount point " + path);
    }
  }
  if (!S_ISDIR(st.st_mode)) return Status::error(ENOTDIR, "mount point " + path + " is not a directory");
  // stat() can be answered from the kernel's cache for a dead daemon's mount;
  // statfs always asks the daemon.
  struct statvfs probe;
  if (mount_type_at(path).rfind("fuse", 0) == 0 && ::statvfs(path.c_str(), &probe) != 0 && errno == ENOTCONN) {
    DSDFS_WARN("mount point %s is a stale FUSE mount left by a dead daemon; unmounting it", path.c_str());
    if (auto s = fuse_unmount_lazy(path); !s) {
      return Status::error(ENOTCONN, "mount point " + path +
                                         " is a stale FUSE mount (Transport endpoint is not connected) "
                                         "and cannot be cleaned up here; run: fusermount3 -u -z " + path);
    }
  }
  if (::geteuid() != 0 && ::access(path.c_str(), W_OK) != 0) {
    // fusermount3 would refuse it with a message of its own.
    return Status::error(EACCES, "mount point " + path + " is not writable by this user; " +
                                     "choose a directory you own");
  }
  std::string canon = canonical_path(path);
  std::string type = mount_type_at(canon);
  if (!type.empty() && canon != "/") {
    bool is_fuse = type.rfind("fuse", 0) == 0;
    return Status::error(EBUSY, "mount point " + canon + " is already mounted (" + type + ")" +
                                    (is_fuse ? "; stop that daemon or run: fusermount3 -u " + canon
                                             : "; choose another mount point"));
  }
  return canon;
}

FuseMount::~FuseMount() { unmount(); }

Status FuseMount::mount(const std::string& mountpoint, Filesystem* fs, const Options& options) {
  fuse_set_log_func(fuse_log_to_ours);
  std::vector<std::string> args = {"dsdfs", "-o", "fsname=dsdfs,subtype=dsdfs"};
  // A root daemon serves every user of the node, with the kernel checking
  // modes. A user's daemon serves only that user (no allow_other), and the
  // store's file system checks modes when the daemon acts as that user: the
  // kernel's own check would cost a GETATTR of the directory per create and
  // unlink.
  // Only root can make device nodes (the kernel checks CAP_MKNOD of the
  // caller before asking us), and they work in the mount as in the store.
  if (::geteuid() == 0) args.back() += ",default_permissions,allow_other,dev";
  if (options.debug_fuse) args.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  struct fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  se_ = fuse_session_new(&fargs, Filesystem::ops(), sizeof(struct fuse_lowlevel_ops), fs);
  if (!se_) return Status::error(EIO, "cannot create the FUSE session");
  if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
    fuse_session_destroy(se_);
    se_ = nullptr;
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      return Status::error(ENODEV, "cannot mount " + mountpoint + ": /dev/fuse is missing or not accessible");
    }
    return Status::error(EIO, "cannot mount " + mountpoint +
                                  " (fusermount3 refused it: check that you may write to it and that "
                                  "it is not in use)");
  }
  mounted_ = true;
  mountpoint_ = mountpoint;
  // Read now, while the mount is certainly ours: abort() and unmount() use it.
  dev_ = mount_dev_at(mountpoint);
#ifndef FUSE_CAP_HANDLE_KILLPRIV_V2
  if (fuse_session_custom_io(se_, &kPatchingIo, fuse_session_fd(se_)) != 0) {
    DSDFS_WARN("cannot install the session I/O hooks; writes will cost an extra round trip");
  }
#endif
  return Status::ok();
}

Status FuseMount::loop(const Options& options) {
  struct fuse_loop_config* config = fuse_loop_cfg_create();
  if (!config) return Status::error(ENOMEM, "fuse loop config");
  fuse_loop_cfg_set_clone_fd(config, 1);
  // A worker starts when a request finds every other one busy, up to
  // kMaxFuseThreads. A request can wait for another rank (a lookup, a
  // forwarded write) whose handler may need a FUSE worker of this very mount
  // (it writes through it, or the kernel writes pages back): a fixed small
  // pool would let the ranks wait for each other until the timeout.
  // Workers are kept once started (libfuse's default): with a cap on idle
  // workers below the requests in flight at peaks (an application's create
  // beside the kernel's write-back and release of the file before), libfuse
  // started and ended a thread, with its cloned /dev/fuse descriptor, for
  // almost every request: 488 thread starts a second while one process
  // created small files with a cap of 2. --threads N sets such a cap.
  fuse_loop_cfg_set_max_threads(config, std::max(options.threads, kMaxFuseThreads));
  if (options.threads > 0) fuse_loop_cfg_set_idle_threads(config, options.threads);
  int rc = fuse_session_loop_mt(se_, config);
  fuse_loop_cfg_destroy(config);
  // rc is the signal number or 0 after fuse_session_exit/unmount; negative on an error.
  if (rc < 0) return Status::error(-rc, "FUSE session loop");
  return Status::ok();
}

void FuseMount::exit() {
  if (se_) fuse_session_exit(se_);
}

namespace {

// POLLERR on /dev/fuse: the connection is aborted (fuse_dev_poll).
bool connection_aborted(int fd) {
  struct pollfd p = {fd, 0, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
}

// fusectl names a connection by the kernel's dev_t of its super block
// (MKDEV: major << 20 | minor).
std::string fusectl_abort_path(const std::string& majmin) {
  unsigned major = 0, minor = 0;
  if (std::sscanf(majmin.c_str(), "%u:%u", &major, &minor) != 2) return {};
  return "/sys/fs/fuse/connections/" + std::to_string((major << 20) | minor) + "/abort";
}

// Reads requests from `fd` (non-blocking) and answers each with ENOTCONN, as
// an aborted connection would, until `stop_fd` is readable or the connection
// ends. Requests that take no answer (FORGET, BATCH_FORGET, INTERRUPT) are
// dropped.
void drain_requests(int fd, int stop_fd) {
  // The kernel refuses reads into less than a header plus max_write (1 MiB);
  // requests that do not fit are failed by the kernel itself.
  std::vector<char> buf((1u << 20) + (64u << 10));
  while (true) {
    struct pollfd p[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0 || (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) return;
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      // EAGAIN: nothing after all; ENOENT: the request was interrupted meanwhile.
      if (errno == EAGAIN || errno == EINTR || errno == ENOENT) continue;
      return;  // ENODEV: the connection is gone
    }
    if (static_cast<size_t>(n) < sizeof(struct fuse_in_header)) continue;
    struct fuse_in_header in;
    std::memcpy(&in, buf.data(), sizeof in);
    if (in.opcode == FUSE_FORGET || in.opcode == FUSE_BATCH_FORGET || in.opcode == FUSE_INTERRUPT) continue;
    struct fuse_out_header out = {};
    out.len = sizeof out;
    out.error = -ENOTCONN;
    out.unique = in.unique;
    if (::write(fd, &out, sizeof out) < 0 && errno == ENODEV) return;
  }
}

}  // namespace

bool FuseMount::abort_connection() const {
  if (!se_) return false;
  const int fd = fuse_session_fd(se_);
  const char* how = nullptr;
  if (std::string path = fusectl_abort_path(dev_); !path.empty()) {
    int afd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (afd >= 0) {
      if (::write(afd, "1", 1) == 1) how = "fusectl";
      ::close(afd);
    }
  }
  if (!connection_aborted(fd) && ::geteuid() == 0 && mount_dev_at(mountpoint_) == dev_) {
    // The kernel's umount_begin for FUSE aborts the connection, whether or
    // not the mount is busy (then EBUSY, and unmount() detaches it).
    ::umount2(mountpoint_.c_str(), MNT_FORCE);
    how = "umount2(MNT_FORCE)";
  }
  if (!connection_aborted(fd)) return false;
  DSDFS_DEBUG("FUSE connection aborted (%s)", how ? how : "already");
  return true;
}

void FuseMount::abort() {
  if (!se_ || !mounted_ || aborted_ || drain_.joinable()) return;
  if (abort_connection()) {
    aborted_ = true;
    return;
  }
  DSDFS_DEBUG("cannot abort the FUSE connection (no fusectl, not root): answering requests until unmounted");
  drain_start();
}

void FuseMount::drain_start() {
  const int fd = fuse_session_fd(se_);
  drain_stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (drain_stop_fd_ < 0) {
    DSDFS_WARN("cannot answer the FUSE requests left: eventfd: %s", std::strerror(errno));
    return;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  drain_ = std::thread([fd, stop_fd = drain_stop_fd_] {
    run_at_boundary("FUSE drain", [&] { drain_requests(fd, stop_fd); });
  });
}

void FuseMount::drain_stop() {
  if (!drain_.joinable()) return;
  uint64_t one = 1;
  if (::write(drain_stop_fd_, &one, sizeof one) != sizeof one) {
    DSDFS_WARN("cannot stop the FUSE drain thread: %s", std::strerror(errno));
  }
  drain_.join();
  ::close(drain_stop_fd_);
  drain_stop_fd_ = -1;
}

void FuseMount::unmount() {
  if (!se_) return;
  // Its poll and read must end before the session's fd is closed.
  drain_stop();
  if (mounted_) {
    // libfuse does not unmount an aborted connection (its poll sees POLLERR),
    // and MNT_FORCE unmounted it only if nothing used it: detach it here.
    if (aborted_ && !dev_.empty() && mount_dev_at(mountpoint_) == dev_) {
      if (auto s = fuse_unmount_lazy(mountpoint_); !s) DSDFS_WARN("%s", s.to_string().c_str());
    }
    // libfuse unmounts lazily (MNT_DETACH / fusermount3 -z), so a job that
    // ends with files still open leaves no stale mount behind. Closing the
    // last fd of the connection ends whatever a drain left.
    fuse_session_unmount(se_);
  }
  mounted_ = false;
  fuse_session_destroy(se_);
  se_ = nullptr;
}

}  // namespace dsdfs::fs
