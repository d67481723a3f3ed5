// SPDX-License-Identifier: Apache-2.0
// Data operations on owned files: open/create, read/write, sync, allocation.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "daemon/protocol.h"

namespace dsdfs::fs {

namespace {
// The kernel's writeback cache decides write offsets itself, and may read
// pages of a file opened write-only: open the store file read-write and
// without O_APPEND (the kernel has already placed appended bytes at EOF).
int store_open_flags(int flags) {
  // O_DIRECT is between the caller and this kernel; the store file is written with
  // whatever alignment FUSE hands us.
  flags &= ~(O_NOFOLLOW | O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT);
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  flags &= ~O_APPEND;
  return flags | O_CLOEXEC;
}
}  // namespace

namespace {
FileHandle* handle_of(struct fuse_file_info* fi) { return reinterpret_cast<FileHandle*>(fi->fh); }
}  // namespace

void Filesystem::create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                        struct fuse_file_info* fi) {
  auto dir = inode_of(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  if (std::strlen(name) > NAME_MAX) return (void)fuse_reply_err(req, ENAMETOOLONG);
  uint32_t flags = (fi->flags & O_EXCL) ? uint32_t{LocatorShard::kExclusive} : 0u;
  if (fi->flags & O_TRUNC) flags |= LocatorShard::kTakeOver;
  auto claim = loc_claim(dir->dir_id, name, flags);
  if (!claim) return (void)fuse_reply_err(req, claim.err() == ETIMEDOUT ? EIO : claim.err());
  if (claim->result == LocatorShard::ClaimResult::kExists && claim->prev_owner != rank_) {
    // Another rank created the name after our lookup: open theirs.
    struct fuse_entry_param e;
    if (int err = fill_remote_entry(claim->prev_owner, dir->dir_id, name, &e)) return (void)fuse_reply_err(req, err);
    auto inode = inode_of(e.ino);
    if (int err = inode ? remote_open(req, *inode, fi) : ESTALE) {
      inodes_.forget(e.ino, 1);
      return (void)fuse_reply_err(req, err);
    }
    if (fuse_reply_create(req, &e, fi) != 0) delete handle_of(fi);
    return;
  }
  int fd;
  {
    std::shared_lock gate(dir_gate_);
    fd = dir_closing(dir->dir_id) ? (errno = ENOENT, -1)
                                  : ::openat(dir->dir_fd(), name, store_open_flags(fi->flags) | O_CREAT, mode);
  }
  if (fd < 0) {
    int err = errno;
    if (claim->result == LocatorShard::ClaimResult::kNew) loc_remove(dir->dir_id, name, rank_);
    return (void)fuse_reply_err(req, err);
  }
  if (claim->result == LocatorShard::ClaimResult::kMoved && claim->prev_owner != rank_) {
    WireWriter w;
    w.u64(dir->dir_id).str(name).i32(claim->prev_owner).u64(0);
    cluster_->call_all(Op::kFileDrop, w.buffer());
  }
  adopt_for_caller(req, *dir, name);
  struct fuse_entry_param e;
  if (int err = do_lookup(*dir, name, &e)) {
    ::close(fd);
    return (void)fuse_reply_err(req, err);
  }
  auto h = std::make_unique<FileHandle>();
  h->fd = fd;
  h->attach(inode_of(e.ino));
  fi->fh = reinterpret_cast<uint64_t>(h.get());
  fi->keep_cache = 1;
  // On failure the opener is gone (interrupted); nobody will release the handle.
  if (fuse_reply_create(req, &e, fi) == 0) h.release();
}

void Filesystem::open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto inode = inode_of(ino);
  if (!inode) return (void)fuse_reply_err(req, ESTALE);
  if (inode->remote) {
    if (int err = remote_open(req, *inode, fi)) return (void)fuse_reply_err(req, err);
    if (fuse_reply_open(req, fi) != 0) delete handle_of(fi);
    return;
  }
  if (inode->gone.load()) return (void)fuse_reply_err(req, ESTALE);
  if (fi->flags & O_TRUNC) release_owned(global_ino(inode->src_ino));
  auto object = object_fd(inode);
  if (!object) return (void)fuse_reply_err(req, ESTALE);
  int fd = ::open(proc_path(object->get()).c_str(), store_open_flags(fi->flags));
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  if ((fi->flags & O_ACCMODE) != O_RDONLY) drop_setid_for_caller(req, fd, inode->id);
  auto h = std::make_unique<FileHandle>();
  h->fd = fd;
  h->attach(std::move(inode));
  fi->fh = reinterpret_cast<uint64_t>(h.get());
  // Every change to an owned file passes through this kernel (other ranks'
  // writes come in through the mount point), so its page cache stays valid.
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) == 0) h.release();
}

void Filesystem::drop_setid_for_caller(fuse_req_t req, int fd, uint64_t ino) {
  // FUSE_HANDLE_KILLPRIV_V2 (daemon/mount.cc): the server drops setuid and
  // setgid when an unprivileged caller may write the file. With the writeback
  // cache the store sees the bytes later, from a kernel thread, so do it when
  // the file is opened for writing (or truncated), and refresh the kernel's
  // cached mode.
  if (run_as_root_ && fuse_req_ctx(req)->uid == 0) return;
  struct stat st;
  if (::fstat(fd, &st) != 0 || !(st.st_mode & (S_ISUID | S_ISGID))) return;
  if (::fchmod(fd, st.st_mode & 07777 & ~static_cast<mode_t>(S_ISUID | S_ISGID)) == 0) {
    notifier_.inode(ino, std::chrono::milliseconds(200));
  }
}

void Filesystem::read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, struct fuse_file_info* fi) {
  FileHandle& h = *handle_of(fi);
  if (h.remote) return remote_read(req, h, size, off);
  if (h.inode && h.inode->gone.load(std::memory_order_relaxed)) return (void)fuse_reply_err(req, EIO);
  struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = h.fd;
  buf.buf[0].pos = off;
  stats_add(stats_->bytes_read_local, size);
  // libfuse splices from the store file into /dev/fuse when the kernel allows it.
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void Filesystem::write_buf(fuse_req_t req, fuse_ino_t, struct fuse_bufvec* in, off_t off,
                           struct fuse_file_info* fi) {
  FileHandle& h = *handle_of(fi);
  if (h.remote) return remote_write(req, h, in, off);
  if (h.inode && h.inode->gone.load(std::memory_order_relaxed)) return (void)fuse_reply_err(req, EIO);
  struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = h.fd;
  out.buf[0].pos = off;
  ssize_t n = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (n < 0) return (void)fuse_reply_err(req, static_cast<int>(-n));
  stats_add(stats_->bytes_written_local, static_cast<uint64_t>(n));
  fuse_reply_write(req, static_cast<size_t>(n));
}

void Filesystem::release(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
  delete handle_of(fi);
  fuse_reply_err(req, 0);
}

void Filesystem::fsync(fuse_req_t req, fuse_ino_t, int datasync, struct fuse_file_info* fi) {
  FileHandle& h = *handle_of(fi);
  // Remote writes are on the owner's disk before write() returns.
  if (h.remote) return (void)fuse_reply_err(req, 0);
  int rc = datasync ? ::fdatasync(h.fd) : ::fsync(h.fd);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len,
                           struct fuse_file_info* fi) {
  FileHandle& h = *handle_of(fi);
  if (h.remote) return (void)fuse_reply_err(req, EOPNOTSUPP);
  int rc = ::fallocate(h.fd, mode, off, len);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, struct fuse_file_info* fi_in,
                                 fuse_ino_t, off_t off_out, struct fuse_file_info* fi_out, size_t len,
                                 int flags) {
  FileHandle& in_h = *handle_of(fi_in);
  FileHandle& out_h = *handle_of(fi_out);
  // Only between files of this rank; the kernel falls back to read + write.
  if (in_h.remote || out_h.remote) return (void)fuse_reply_err(req, EXDEV);
  loff_t in = off_in, out = off_out;
  ssize_t n = ::copy_file_range(in_h.fd, &in, out_h.fd, &out, len, static_cast<unsigned>(flags));
  if (n < 0) return (void)fuse_reply_err(req, errno);
  stats_add(stats_->bytes_written_local, static_cast<uint64_t>(n));
  fuse_reply_write(req, static_cast<size_t>(n));
}

}  // namespace dsdfs::fs
