// SPDX-License-Identifier: Apache-2.0
// Directory listing of owned directories.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "daemon/filesystem.h"

namespace dsdfs::fs {

namespace {
// One open directory stream. Owned by the kernel's file handle (fi->fh);
// FUSE serialises readdir calls on one handle, so no lock is needed.
struct DirHandle {
  DIR* dp = nullptr;
  off_t offset = 0;         // the telldir cookie the stream is positioned at
  struct dirent* entry = nullptr;  // an entry read but not yet sent
  ~DirHandle() {
    if (dp) ::closedir(dp);
  }
};

DirHandle* dir_handle(struct fuse_file_info* fi) { return reinterpret_cast<DirHandle*>(fi->fh); }

bool is_dot_or_dotdot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}
}  // namespace

void Filesystem::opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto inode = inode_of(ino);
  if (!inode) return (void)fuse_reply_err(req, ESTALE);
  auto d = std::make_unique<DirHandle>();
  int fd = ::openat(inode->fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  d->dp = ::fdopendir(fd);
  if (!d->dp) {
    int err = errno;
    ::close(fd);
    return (void)fuse_reply_err(req, err);
  }
  fi->fh = reinterpret_cast<uint64_t>(d.get());
  fi->keep_cache = 0;
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) == 0) d.release();
}

void Filesystem::readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info* fi, bool plus) {
  auto inode = inode_of(ino);
  if (!inode) return (void)fuse_reply_err(req, ESTALE);
  DirHandle* d = dir_handle(fi);
  std::vector<char> buf(size);
  size_t used = 0;
  if (off != d->offset) {
    ::seekdir(d->dp, off);
    d->entry = nullptr;
    d->offset = off;
  }
  int err = 0;
  while (true) {
    if (!d->entry) {
      errno = 0;
      d->entry = ::readdir(d->dp);
      if (!d->entry) {
        err = errno;  // 0 at the end of the stream
        break;
      }
    }
    const char* name = d->entry->d_name;
    off_t next = d->entry->d_off;
    size_t added;
    if (plus) {
      struct fuse_entry_param e;
      if (is_dot_or_dotdot(name)) {
        std::memset(&e, 0, sizeof e);
        e.attr.st_ino = global_ino(d->entry->d_ino);
        e.attr.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
      } else if (int lerr = do_lookup(*inode, name, &e)) {
        if (lerr == ENOENT) {  // raced with an unlink: skip the name
          d->entry = nullptr;
          d->offset = next;
          continue;
        }
        err = lerr;
        break;
      }
      added = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next);
      if (added > size - used) {
        // Did not fit: undo the lookup count the kernel will never see.
        if (e.ino) inodes_.forget(e.ino, 1);
        break;
      }
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = global_ino(d->entry->d_ino);
      st.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
      added = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
      if (added > size - used) break;
    }
    used += added;
    d->entry = nullptr;
    d->offset = next;
  }
  // An error after some entries were added is reported by the next call.
  if (err && used == 0) return (void)fuse_reply_err(req, err);
  fuse_reply_buf(req, buf.data(), used);
}

void Filesystem::releasedir(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
  delete dir_handle(fi);
  fuse_reply_err(req, 0);
}

void Filesystem::fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, struct fuse_file_info* fi) {
  int fd = ::dirfd(dir_handle(fi)->dp);
  int rc = datasync ? ::fdatasync(fd) : ::fsync(fd);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

}  // namespace dsdfs::fs
