// SPDX-License-Identifier: Apache-2.0
#include "daemon/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace dsdfs::fs {
namespace {

constexpr const char* kMarker = ".dsdfs-store";

bool path_is_inside(const std::string& inner, const std::string& outer) {
  if (inner == outer) return true;
  if (outer == "/") return true;
  return inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
         inner[outer.size()] == '/';
}

}  // namespace

bool dir_is_empty(int dir_fd, const std::string& name, int* err) {
  int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  DIR* dp = ::fdopendir(fd);
  if (!dp) {
    *err = errno;
    ::close(fd);
    return false;
  }
  bool empty = true;
  while (struct dirent* d = ::readdir(dp)) {
    if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  ::closedir(dp);
  *err = empty ? 0 : ENOTEMPTY;
  return empty;
}

std::string canonical_path(const std::string& path) {
  std::string p = path;
  std::string rest;
  while (true) {
    char buf[PATH_MAX];
    if (::realpath(p.c_str(), buf)) {
      std::string out = buf;
      if (!rest.empty()) out += (out == "/" ? "" : "/") + rest;
      return out;
    }
    size_t slash = p.find_last_of('/');
    if (slash == std::string::npos || p == "/") return path;
    std::string last = p.substr(slash + 1);
    rest = rest.empty() ? last : last + "/" + rest;
    p = slash == 0 ? "/" : p.substr(0, slash);
  }
}

Status make_dirs(const std::string& path, mode_t mode) {
  if (path.empty()) return Status::error(EINVAL, "empty path");
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string part = path.substr(0, pos);
    bool last = pos == path.size();
    if (::mkdir(part.c_str(), last ? mode : 0755) != 0 && errno != EEXIST) {
      return Status::from_errno("cannot create directory " + part);
    }
  }
  return Status::ok();
}

Status remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::ok();
    return Status::from_errno("cannot stat " + path);
  }
  int rc = ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int flag, struct FTW*) -> int {
        int r = (flag == FTW_DP) ? ::rmdir(p) : ::unlink(p);
        if (r != 0 && errno != ENOENT) return errno;
        return 0;
      },
      64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  if (rc != 0) return Status::error(rc > 0 ? rc : errno, "cannot remove " + path);
  return Status::ok();
}

Result<Store> Store::open(const std::string& raw_path, const std::string& mountpoint) {
  std::string path = canonical_path(raw_path);
  std::string mnt = canonical_path(mountpoint);
  if (path_is_inside(path, mnt)) {
    return Status::error(EINVAL, "store " + path + " is inside the mount point " + mnt +
                                     "; choose a directory outside it");
  }
  if (path_is_inside(mnt, path)) {
    return Status::error(EINVAL, "mount point " + mnt + " is inside the store " + path +
                                     "; choose a directory outside it");
  }
  struct stat st;
  bool created = false;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::from_errno("store " + path + " is not usable");
    if (auto s = make_dirs(path, 0700); !s) return Status::error(s.err(), "store " + path + ": " + s.to_string());
    created = true;
    if (::stat(path.c_str(), &st) != 0) return Status::from_errno("store " + path);
  }
  if (!S_ISDIR(st.st_mode)) return Status::error(ENOTDIR, "store " + path + " is not a directory");
  if (::access(path.c_str(), W_OK | X_OK) != 0) {
    return Status::error(EACCES, "store " + path + " is not writable by this user");
  }
  std::string marker = path + "/" + kMarker;
  int empty_err = 0;
  if (!created && ::access(marker.c_str(), F_OK) != 0 && !dir_is_empty(AT_FDCWD, path, &empty_err)) {
    return Status::error(ENOTEMPTY, "store " + path +
                                        " is a non-empty directory that is not a dsdfs store; "
                                        "give an empty or new directory");
  }
  if (created && ::chmod(path.c_str(), 0700) != 0) return Status::from_errno("chmod store " + path);
  int mfd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (mfd < 0) return Status::from_errno("store " + path + ": cannot write " + kMarker);
  ::close(mfd);
  // The store itself is 0700; files/ is the mount's root and shows as 0755.
  for (const char* sub : {"/files", "/cache"}) {
    if (::mkdir((path + sub).c_str(), sub[1] == 'f' ? 0755 : 0700) != 0 && errno != EEXIST) {
      return Status::from_errno("store " + path + ": cannot create " + sub);
    }
  }
  Store store;
  store.path_ = path;
  store.created_ = created;
  store.files_fd_.reset(::open(store.files_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!store.files_fd_.valid()) return Status::from_errno("store " + path + ": cannot open files/");
  return store;
}

Status Store::remove() {
  files_fd_.reset();
  Status first;
  for (const char* sub : {"/files", "/cache"}) {
    if (auto s = remove_tree(path_ + sub); !s && first) first = s;
  }
  // What a rejoin needs (launcher/job_file.h) and its staging (fs_rejoin.cc).
  ::unlink((path_ + "/.dsdfs-job").c_str());
  ::unlink((path_ + "/control.sock").c_str());  // the dsdfs command's socket (daemon/control.h)
  remove_tree(path_ + "/rejoin");
  ::unlink((path_ + "/" + kMarker).c_str());
  if (::rmdir(path_.c_str()) != 0 && errno != ENOENT && first) {
    first = Status::from_errno("cannot remove store " + path_ + " (something else was put in it)");
  }
  return first;
}

}  // namespace dsdfs::fs
