// SPDX-License-Identifier: Apache-2.0
// Name-space operations on owned objects: lookup, attributes, create/remove/rename.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"
#include "daemon/filesystem.h"

namespace dsdfs::fs {

namespace {
// Kernel caches for owned objects: all changes to them pass through this daemon,
// so long timeouts are safe (an owner invalidates explicitly when a peer changes them).
constexpr double kAttrTimeout = 86400.0;

bool name_too_long(const char* name) { return std::strlen(name) > NAME_MAX; }
}  // namespace

Filesystem::Filesystem(Options options, Store* store, int rank, std::string host)
    : options_(std::move(options)),
      store_(store),
      rank_(rank),
      host_(std::move(host)),
      run_as_root_(::geteuid() == 0),
      entry_timeout_(kAttrTimeout) {
  struct stat st;
  UniqueFd root(::open(store_->files_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid() || ::fstat(root.get(), &st) != 0) {
    DSDFS_ERROR("INTERNAL ERROR: cannot open store root %s: %s", store_->files_path().c_str(),
                std::strerror(errno));
    std::abort();
  }
  inodes_.set_root(std::move(root), st);
}

std::string Filesystem::proc_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

void Filesystem::translate(struct stat* st) const { st->st_ino = global_ino(st->st_ino); }

int Filesystem::stat_inode(const Inode& inode, struct stat* st) {
  if (::fstatat(inode.fd.get(), "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  translate(st);
  return 0;
}

int Filesystem::do_lookup(const Inode& parent, const char* name, struct fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  e->attr_timeout = kAttrTimeout;
  e->entry_timeout = entry_timeout_;
  if (name_too_long(name)) return ENAMETOOLONG;
  UniqueFd fd(::openat(parent.fd.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return errno;
  if (::fstatat(fd.get(), "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  auto inode = inodes_.lookup(std::move(fd), e->attr);
  e->ino = inode->id;
  translate(&e->attr);
  return 0;
}

void Filesystem::lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto dir = inode_of(parent);
  if (!dir) {
    fuse_reply_err(req, ESTALE);
    return;
  }
  struct fuse_entry_param e;
  int err = do_lookup(*dir, name, &e);
  if (err == ENOENT) {
    // A negative entry, not cached: another rank may create the name at any time.
    e.ino = 0;
    e.entry_timeout = 0;
    fuse_reply_entry(req, &e);
  } else if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void Filesystem::forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  inodes_.forget(ino, nlookup);
  fuse_reply_none(req);
}

void Filesystem::forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) inodes_.forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void Filesystem::getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info*) {
  auto inode = inode_of(ino);
  if (!inode) return (void)fuse_reply_err(req, ESTALE);
  struct stat st;
  if (int err = stat_inode(*inode, &st)) return (void)fuse_reply_err(req, err);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void Filesystem::setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                         struct fuse_file_info* fi) {
  auto inode = inode_of(ino);
  if (!inode) return (void)fuse_reply_err(req, ESTALE);
  const int ifd = inode->fd.get();
  const bool is_symlink = S_ISLNK(inode->type);
  int rc = 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (is_symlink) {
      errno = EOPNOTSUPP;
      rc = -1;
    } else {
      rc = fi ? ::fchmod(static_cast<int>(fi->fh), attr->st_mode)
              : ::chmod(proc_path(ifd).c_str(), attr->st_mode);
    }
    if (rc != 0) return (void)fuse_reply_err(req, errno);
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (::fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
      return (void)fuse_reply_err(req, errno);
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    rc = fi ? ::ftruncate(static_cast<int>(fi->fh), attr->st_size)
            : ::truncate(proc_path(ifd).c_str(), attr->st_size);
    if (rc != 0) return (void)fuse_reply_err(req, errno);
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2];
    tv[0].tv_sec = tv[1].tv_sec = 0;
    tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) tv[0] = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) tv[1] = attr->st_mtim;
    if (fi) {
      rc = ::futimens(static_cast<int>(fi->fh), tv);
    } else if (is_symlink) {
      // utimensat on an O_PATH handle needs AT_EMPTY_PATH (Linux >= 5.8 ignores no symlink).
      rc = ::utimensat(ifd, "", tv, AT_EMPTY_PATH);
    } else {
      rc = ::utimensat(AT_FDCWD, proc_path(ifd).c_str(), tv, 0);
    }
    if (rc != 0) return (void)fuse_reply_err(req, errno);
  }
  getattr(req, ino, fi);
}

void Filesystem::readlink(fuse_req_t req, fuse_ino_t ino) {
  auto inode = inode_of(ino);
  if (!inode) return (void)fuse_reply_err(req, ESTALE);
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(inode->fd.get(), "", buf, sizeof buf);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  if (n == static_cast<ssize_t>(sizeof buf)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  buf[n] = '\0';
  fuse_reply_readlink(req, buf);
}

void Filesystem::adopt_for_caller(fuse_req_t req, const Inode& parent, const char* name) {
  if (!run_as_root_) return;
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx->uid == 0 && ctx->gid == 0) return;
  if (::fchownat(parent.fd.get(), name, ctx->uid, ctx->gid, AT_SYMLINK_NOFOLLOW) != 0) {
    DSDFS_WARN("cannot hand %s to uid %u: %s", name, ctx->uid, std::strerror(errno));
  }
}

void Filesystem::reply_new_entry(fuse_req_t req, const Inode& parent, const char* name, int saved_errno) {
  if (saved_errno) return (void)fuse_reply_err(req, saved_errno);
  adopt_for_caller(req, parent, name);
  struct fuse_entry_param e;
  if (int err = do_lookup(parent, name, &e)) return (void)fuse_reply_err(req, err);
  fuse_reply_entry(req, &e);
}

void Filesystem::mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  auto dir = inode_of(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  if (name_too_long(name)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  // Device nodes would be served by the local kernel, not by the owner: refuse them.
  if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode)) return (void)fuse_reply_err(req, EPERM);
  int rc = ::mknodat(dir->fd.get(), name, mode, rdev);
  reply_new_entry(req, *dir, name, rc == 0 ? 0 : errno);
}

void Filesystem::mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  auto dir = inode_of(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  if (name_too_long(name)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  int rc = ::mkdirat(dir->fd.get(), name, mode);
  reply_new_entry(req, *dir, name, rc == 0 ? 0 : errno);
}

void Filesystem::symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  auto dir = inode_of(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  if (name_too_long(name)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  int rc = ::symlinkat(link, dir->fd.get(), name);
  reply_new_entry(req, *dir, name, rc == 0 ? 0 : errno);
}

void Filesystem::link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
  // Hard links are not part of dsdfs: a name has exactly one owner (docs/user-guide.md).
  fuse_reply_err(req, EPERM);
}

void Filesystem::unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto dir = inode_of(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  int rc = ::unlinkat(dir->fd.get(), name, 0);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto dir = inode_of(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  int rc = ::unlinkat(dir->fd.get(), name, AT_REMOVEDIR);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                        const char* newname, unsigned int flags) {
  auto from = inode_of(parent);
  auto to = inode_of(newparent);
  if (!from || !to) return (void)fuse_reply_err(req, ESTALE);
  if (name_too_long(newname)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return (void)fuse_reply_err(req, EINVAL);
  int rc = ::renameat2(from->fd.get(), name, to->fd.get(), newname, flags);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::statfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs sv;
  if (::fstatvfs(store_->files_fd(), &sv) != 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_statfs(req, &sv);
}

}  // namespace dsdfs::fs
