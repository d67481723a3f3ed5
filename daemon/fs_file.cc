// SPDX-License-Identifier: Apache-2.0
// Data operations on owned files: open/create, read/write, sync, allocation.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"
#include "daemon/filesystem.h"

namespace dsdfs::fs {

namespace {
// The kernel's writeback cache decides write offsets itself, and may read
// pages of a file opened write-only: open the store file read-write and
// without O_APPEND (the kernel has already placed appended bytes at EOF).
int store_open_flags(int flags) {
  flags &= ~(O_NOFOLLOW | O_CREAT | O_EXCL | O_NOCTTY);
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  flags &= ~O_APPEND;
  return flags | O_CLOEXEC;
}
}  // namespace

void Filesystem::create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                        struct fuse_file_info* fi) {
  auto dir = inode_of(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  if (std::strlen(name) > NAME_MAX) return (void)fuse_reply_err(req, ENAMETOOLONG);
  int fd = ::openat(dir->fd.get(), name, store_open_flags(fi->flags) | O_CREAT | (fi->flags & O_EXCL),
                    mode);
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  adopt_for_caller(req, *dir, name);
  struct fuse_entry_param e;
  if (int err = do_lookup(*dir, name, &e)) {
    ::close(fd);
    return (void)fuse_reply_err(req, err);
  }
  fi->fh = static_cast<uint64_t>(fd);
  fi->keep_cache = 1;
  if (fuse_reply_create(req, &e, fi) != 0) {
    // The opener is gone (interrupted); nobody will release this handle.
    ::close(fd);
  }
}

void Filesystem::open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto inode = inode_of(ino);
  if (!inode) return (void)fuse_reply_err(req, ESTALE);
  int fd = ::open(proc_path(inode->fd.get()).c_str(), store_open_flags(fi->flags));
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  fi->fh = static_cast<uint64_t>(fd);
  // Every change to an owned file passes through this kernel or is invalidated
  // explicitly by the daemon, so its page cache stays valid across opens.
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) != 0) ::close(fd);
}

void Filesystem::read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, struct fuse_file_info* fi) {
  struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = static_cast<int>(fi->fh);
  buf.buf[0].pos = off;
  stats_add(stats_.bytes_read_local, size);
  // libfuse splices from the store file into /dev/fuse when the kernel allows it.
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void Filesystem::write_buf(fuse_req_t req, fuse_ino_t, struct fuse_bufvec* in, off_t off,
                           struct fuse_file_info* fi) {
  struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = static_cast<int>(fi->fh);
  out.buf[0].pos = off;
  ssize_t n = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (n < 0) return (void)fuse_reply_err(req, static_cast<int>(-n));
  stats_add(stats_.bytes_written_local, static_cast<uint64_t>(n));
  fuse_reply_write(req, static_cast<size_t>(n));
}

void Filesystem::flush(fuse_req_t req, fuse_ino_t, struct fuse_file_info*) {
  // The kernel has written dirty pages back before FLUSH: the bytes are in the
  // store's file system, visible to every later open on any rank.
  fuse_reply_err(req, 0);
}

void Filesystem::release(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
  ::close(static_cast<int>(fi->fh));
  fuse_reply_err(req, 0);
}

void Filesystem::fsync(fuse_req_t req, fuse_ino_t, int datasync, struct fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  int rc = datasync ? ::fdatasync(fd) : ::fsync(fd);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len,
                           struct fuse_file_info* fi) {
  int rc = ::fallocate(static_cast<int>(fi->fh), mode, off, len);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, struct fuse_file_info* fi) {
  off_t res = ::lseek(static_cast<int>(fi->fh), off, whence);
  if (res < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_lseek(req, res);
}

void Filesystem::copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, struct fuse_file_info* fi_in,
                                 fuse_ino_t, off_t off_out, struct fuse_file_info* fi_out, size_t len,
                                 int flags) {
  loff_t in = off_in, out = off_out;
  ssize_t n = ::copy_file_range(static_cast<int>(fi_in->fh), &in, static_cast<int>(fi_out->fh), &out,
                                len, static_cast<unsigned>(flags));
  if (n < 0) return (void)fuse_reply_err(req, errno);
  stats_add(stats_.bytes_written_local, static_cast<uint64_t>(n));
  fuse_reply_write(req, static_cast<size_t>(n));
}

}  // namespace dsdfs::fs
