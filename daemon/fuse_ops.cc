// SPDX-License-Identifier: Apache-2.0
// Thin, noexcept trampolines from libfuse's C callbacks to Filesystem.
#include <fuse_lowlevel.h>

#include <vector>

#include "common/log.h"
#include "common/noexcept_boundary.h"
#include "daemon/errors.h"
#include "daemon/filesystem.h"

namespace dsdfs::fs {

namespace {

Filesystem& fs_of(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }

// Runs an op; if it throws before replying, the request still gets its one
// reply (ENOMEM or EIO). Ops reply before they can throw nothing else.
template <typename Fn>
void guarded(fuse_req_t req, const char* name, Fn&& fn) noexcept {
  bool replied_by_op = false;
  int err = run_at_boundary(name, [&] {
    fn();
    replied_by_op = true;
  });
  if (err && !replied_by_op) reply_err(req, err);
}

#define DSDFS_OP(name, ...) guarded(req, #name, [&] { fs_of(req).name(req, __VA_ARGS__); })

void op_init(void* userdata, struct fuse_conn_info* conn) {
  run_at_boundary("init", [&] { static_cast<Filesystem*>(userdata)->init(conn); });
}
void op_lookup(fuse_req_t req, fuse_ino_t p, const char* n) { DSDFS_OP(lookup, p, n); }
void op_forget(fuse_req_t req, fuse_ino_t i, uint64_t n) { DSDFS_OP(forget, i, n); }
void op_forget_multi(fuse_req_t req, size_t c, struct fuse_forget_data* f) { DSDFS_OP(forget_multi, c, f); }
void op_getattr(fuse_req_t req, fuse_ino_t i, struct fuse_file_info* fi) { DSDFS_OP(getattr, i, fi); }
void op_setattr(fuse_req_t req, fuse_ino_t i, struct stat* a, int s, struct fuse_file_info* fi) {
  DSDFS_OP(setattr, i, a, s, fi);
}
void op_readlink(fuse_req_t req, fuse_ino_t i) {
  guarded(req, "readlink", [&] {
    auto target = fs_of(req).readlink(i);
    if (!target) return (void)reply_err(req, target.err());
    fuse_reply_readlink(req, target->c_str());
  });
}
void op_mknod(fuse_req_t req, fuse_ino_t p, const char* n, mode_t m, dev_t r) { DSDFS_OP(mknod, p, n, m, r); }
void op_mkdir(fuse_req_t req, fuse_ino_t p, const char* n, mode_t m) { DSDFS_OP(mkdir, p, n, m); }
void op_symlink(fuse_req_t req, const char* l, fuse_ino_t p, const char* n) { DSDFS_OP(symlink, l, p, n); }
void op_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char* n) { DSDFS_OP(link, i, p, n); }
void op_unlink(fuse_req_t req, fuse_ino_t p, const char* n) { DSDFS_OP(unlink, p, n); }
void op_rmdir(fuse_req_t req, fuse_ino_t p, const char* n) { DSDFS_OP(rmdir, p, n); }
void op_rename(fuse_req_t req, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned int f) {
  DSDFS_OP(rename, p, n, np, nn, f);
}
void op_create(fuse_req_t req, fuse_ino_t p, const char* n, mode_t m, struct fuse_file_info* fi) {
  DSDFS_OP(create, p, n, m, fi);
}
void op_open(fuse_req_t req, fuse_ino_t i, struct fuse_file_info* fi) { DSDFS_OP(open, i, fi); }
void op_read(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info* fi) {
  DSDFS_OP(read, i, s, o, fi);
}
void op_write_buf(fuse_req_t req, fuse_ino_t i, struct fuse_bufvec* b, off_t o, struct fuse_file_info* fi) {
  DSDFS_OP(write_buf, i, b, o, fi);
}
void op_release(fuse_req_t req, fuse_ino_t i, struct fuse_file_info* fi) { DSDFS_OP(release, i, fi); }
void op_fsync(fuse_req_t req, fuse_ino_t, int d, struct fuse_file_info* fi) {
  guarded(req, "fsync", [&] { reply_err(req, fs_of(req).fsync(fi->fh, d).err()); });
}
void op_fallocate(fuse_req_t req, fuse_ino_t, int m, off_t o, off_t l, struct fuse_file_info* fi) {
  guarded(req, "fallocate", [&] { reply_err(req, fs_of(req).fallocate(fi->fh, m, o, l).err()); });
}
void op_copy_file_range(fuse_req_t req, fuse_ino_t, off_t oi, struct fuse_file_info* fii, fuse_ino_t, off_t oo,
                        struct fuse_file_info* fio, size_t l, int f) {
  guarded(req, "copy_file_range", [&] {
    auto n = fs_of(req).copy_file_range(fii->fh, oi, fio->fh, oo, l, f);
    if (!n) return (void)reply_err(req, n.err());
    fuse_reply_write(req, *n);
  });
}
void op_opendir(fuse_req_t req, fuse_ino_t i, struct fuse_file_info* fi) {
  guarded(req, "opendir", [&] {
    auto fh = fs_of(req).opendir(i);
    if (!fh) return (void)reply_err(req, fh.err());
    fi->fh = *fh;
    fi->keep_cache = 0;
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) != 0) fs_of(req).releasedir(*fh);  // the opener is gone
  });
}
// One reply of at most `size` bytes of entries from offset `off` on.
void reply_dir(fuse_req_t req, fuse_ino_t i, size_t size, off_t off, struct fuse_file_info* fi, bool plus) {
  std::vector<char> buf(size);
  size_t used = 0;
  auto add = [&](const char* name, const struct fuse_entry_param& e, off_t next) {
    const size_t added = plus ? fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next)
                              : fuse_add_direntry(req, buf.data() + used, size - used, name, &e.attr, next);
    if (added > size - used) return false;
    used += added;
    return true;
  };
  Status s = fs_of(req).readdir(i, fi->fh, off, plus, add);
  if (!s) return (void)reply_err(req, s.err());
  fuse_reply_buf(req, buf.data(), used);
}
void op_readdir(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info* fi) {
  guarded(req, "readdir", [&] { reply_dir(req, i, s, o, fi, false); });
}
void op_readdirplus(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info* fi) {
  guarded(req, "readdirplus", [&] { reply_dir(req, i, s, o, fi, true); });
}
void op_releasedir(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
  guarded(req, "releasedir", [&] {
    fs_of(req).releasedir(fi->fh);
    reply_err(req, 0);
  });
}
void op_fsyncdir(fuse_req_t req, fuse_ino_t, int d, struct fuse_file_info* fi) {
  guarded(req, "fsyncdir", [&] { reply_err(req, fs_of(req).fsyncdir(fi->fh, d).err()); });
}
void op_statfs(fuse_req_t req, fuse_ino_t) {
  guarded(req, "statfs", [&] {
    auto sv = fs_of(req).statfs();
    if (!sv) return (void)reply_err(req, sv.err());
    fuse_reply_statfs(req, &*sv);
  });
}
// Operations that return a Status or a value: the only replies are here.
#define DSDFS_STATUS_OP(name, ...) \
  guarded(req, #name, [&] { reply_err(req, fs_of(req).name(__VA_ARGS__).err()); })

// An attribute value or list for a caller's buffer of `size` bytes (0: the
// length only), or the error.
void reply_xattr_value(fuse_req_t req, const Result<std::string>& v, size_t size) {
  if (!v) return (void)reply_err(req, v.err());
  if (size == 0) return (void)fuse_reply_xattr(req, v->size());
  if (v->size() > size) return (void)reply_err(req, ERANGE);
  fuse_reply_buf(req, v->data(), v->size());
}

void op_setxattr(fuse_req_t req, fuse_ino_t i, const char* n, const char* v, size_t s, int f) {
  DSDFS_STATUS_OP(setxattr, i, n, v, s, f);
}
void op_getxattr(fuse_req_t req, fuse_ino_t i, const char* n, size_t s) {
  guarded(req, "getxattr", [&] { reply_xattr_value(req, fs_of(req).getxattr(i, n), s); });
}
void op_listxattr(fuse_req_t req, fuse_ino_t i, size_t s) {
  guarded(req, "listxattr", [&] { reply_xattr_value(req, fs_of(req).listxattr(i), s); });
}
void op_removexattr(fuse_req_t req, fuse_ino_t i, const char* n) { DSDFS_STATUS_OP(removexattr, i, n); }

#undef DSDFS_STATUS_OP

#undef DSDFS_OP

struct fuse_lowlevel_ops make_ops() {
  struct fuse_lowlevel_ops o = {};
  o.init = op_init;
  o.lookup = op_lookup;
  o.forget = op_forget;
  o.forget_multi = op_forget_multi;
  o.getattr = op_getattr;
  o.setattr = op_setattr;
  o.readlink = op_readlink;
  o.mknod = op_mknod;
  o.mkdir = op_mkdir;
  o.symlink = op_symlink;
  o.link = op_link;
  o.unlink = op_unlink;
  o.rmdir = op_rmdir;
  o.rename = op_rename;
  o.create = op_create;
  o.open = op_open;
  o.read = op_read;
  o.write_buf = op_write_buf;
  // No flush: with the writeback cache the kernel writes dirty pages back at
  // close by itself; answering ENOSYS once saves a round trip per close.
  o.release = op_release;
  o.fsync = op_fsync;
  o.fallocate = op_fallocate;
  // No lseek: the kernel's generic SEEK_DATA/SEEK_HOLE uses its own size, which
  // (with the writeback cache) is newer than the store's.
  o.copy_file_range = op_copy_file_range;
  o.opendir = op_opendir;
  o.readdir = op_readdir;
  o.readdirplus = op_readdirplus;
  o.releasedir = op_releasedir;
  o.fsyncdir = op_fsyncdir;
  o.statfs = op_statfs;
  o.setxattr = op_setxattr;
  o.getxattr = op_getxattr;
  o.listxattr = op_listxattr;
  o.removexattr = op_removexattr;
  return o;
}

const struct fuse_lowlevel_ops kOps = make_ops();

}  // namespace

const struct fuse_lowlevel_ops* Filesystem::ops() { return &kOps; }

void Filesystem::init(struct fuse_conn_info* conn) {
  // Large requests: 1 MiB writes and reads.
  conn->max_write = 1U << 20;
  conn->max_readahead = 1U << 20;
  conn->max_background = 128;
  conn->congestion_threshold = 96;
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  // The kernel page cache absorbs small writes and sends large ones.
  want(FUSE_CAP_WRITEBACK_CACHE);
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_SPLICE_READ);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_ATOMIC_O_TRUNC);
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_ASYNC_DIO);
  want(FUSE_CAP_CACHE_SYMLINKS);
  // Open files keep their pages until we invalidate them explicitly.
  want(FUSE_CAP_EXPLICIT_INVAL_DATA);
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  // Locks are local to each node's kernel (docs/user-guide.md).
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  conn->time_gran = 1;
  notifier_.set_method(options_.dir_notify, conn->proto_minor);
  DSDFS_INFO("FUSE connection: protocol %u.%u, max_write %u, writeback cache %s", conn->proto_major,
             conn->proto_minor, conn->max_write, (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? "on" : "off");
}

}  // namespace dsdfs::fs
