// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <memory>
#include <string>

#include "daemon/inode_table.h"
#include "daemon/options.h"
#include "daemon/stats.h"
#include "daemon/store.h"

namespace dsdfs::fs {

// The file system one rank serves: FUSE lowlevel requests on this node,
// answered from the local store. One instance per process, created before the
// session and destroyed after it; thread-safe (the FUSE loop is multi-threaded).
// Each op replies exactly once; none holds a lock across a reply or a syscall.
class Filesystem {
 public:
  Filesystem(Options options, Store* store, int rank, std::string host);

  // The lowlevel operations table; userdata must be this Filesystem.
  static const struct fuse_lowlevel_ops* ops();

  // A global inode number: the rank in the top 16 bits, the store's below, so
  // numbers are stable for a file's life and distinct across ranks.
  uint64_t global_ino(ino_t store_ino) const {
    return (static_cast<uint64_t>(rank_) << 48) | (store_ino & ((uint64_t{1} << 48) - 1));
  }

  int rank() const { return rank_; }
  const std::string& host() const { return host_; }
  const Options& options() const { return options_; }
  Stats& stats() { return stats_; }

  // FUSE operations (see fuse_lowlevel.h for their contracts).
  void init(struct fuse_conn_info* conn);
  void lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
  void forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data* forgets);
  void getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, struct fuse_file_info* fi);
  void readlink(fuse_req_t req, fuse_ino_t ino);
  void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
  void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name);
  void unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags);
  void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, struct fuse_file_info* fi);
  void open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
  void write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec* in, off_t off, struct fuse_file_info* fi);
  void flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi);
  void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info* fi);
  void lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info* fi);
  void copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info* fi_in,
                       fuse_ino_t ino_out, off_t off_out, struct fuse_file_info* fi_out, size_t len,
                       int flags);
  void opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi, bool plus);
  void releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi);
  void statfs(fuse_req_t req, fuse_ino_t ino);
  void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags);
  void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

 private:
  // Looks `name` up under `parent` in the store and fills `e` (counts a lookup).
  int do_lookup(const Inode& parent, const char* name, struct fuse_entry_param* e);
  // After creating an object as root on behalf of another user, hands it to them.
  void adopt_for_caller(fuse_req_t req, const Inode& parent, const char* name);
  // Replies with a fresh entry for a just-made object, or the error.
  void reply_new_entry(fuse_req_t req, const Inode& parent, const char* name, int saved_errno);
  int stat_inode(const Inode& inode, struct stat* st);
  void translate(struct stat* st) const;
  // Path of an O_PATH handle, usable with path-based syscalls.
  static std::string proc_path(int fd);
  // The inode for `ino`, or nullptr (caller replies ESTALE... see ops).
  std::shared_ptr<Inode> inode_of(fuse_ino_t ino) const { return inodes_.get(ino); }
  std::string special_xattr(const Inode& inode, const std::string& name, int* err);

  const Options options_;
  Store* const store_;
  const int rank_;
  const std::string host_;
  const bool run_as_root_;
  const double entry_timeout_;
  InodeTable inodes_;
  Stats stats_;
};

}  // namespace dsdfs::fs
