// SPDX-License-Identifier: Apache-2.0
// The FUSE front end: noexcept trampolines from libfuse's C callbacks to
// Filesystem, and the only code that sees fuse_req_t. Each request gets
// exactly one reply, here, from what its operation returned; errors become
// the kernel's errno in one place (reply_err, kernel_errno).
#include <fuse_lowlevel.h>
#include <sys/resource.h>

#include <chrono>
#include <vector>

#include "common/log.h"
#include "common/noexcept_boundary.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "rdma/log_limiter.h"

namespace dsdfs::fs {

namespace {

// Says, at most once a minute, that the daemon has run out of descriptors:
// the application only sees EMFILE, which names its own limit, not ours.
void warn_if_out_of_descriptors(int err) {
  if (err != EMFILE && err != ENFILE) return;
  static rdma::LogLimiter limiter(std::chrono::minutes(1));
  uint64_t suppressed = 0;
  if (!limiter.allow(&suppressed)) return;
  struct rlimit rl {};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  DSDFS_WARN("out of file descriptors (%s, limit %llu): every directory of the job holds one on "
             "every rank; raise the hard limit (ulimit -Hn) for the job's daemons",
             err == EMFILE ? "this daemon" : "the whole system", static_cast<unsigned long long>(rl.rlim_cur));
}

// The one reply of an error (kernel_errno applied; 0 replies success).
int reply_err(fuse_req_t req, int err) {
  warn_if_out_of_descriptors(err);
  return fuse_reply_err(req, kernel_errno(err));
}

Filesystem& fs_of(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }

// Counts the request, runs its op and its one reply; if the op throws before
// the reply, the request still gets one (ENOMEM or EIO).
template <typename Fn>
void guarded(fuse_req_t req, FuseOp op, Fn&& fn) noexcept {
  fs_of(req).stats().count_request(op);
  bool replied_by_op = false;
  int err = run_at_boundary(fuse_op_name(op), [&] {
    fn();
    replied_by_op = true;
  });
  if (err && !replied_by_op) reply_err(req, err);
}

// The caller of a request, for the ops that create, open or change a file.
Filesystem::Caller caller_of(fuse_req_t req) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  return Filesystem::Caller{ctx->pid, ctx->uid, ctx->gid};
}

// An entry, or the error. The kernel counts a lookup of e.ino only if the
// reply reaches it: the opener may be gone (interrupted), then it is undone.
void reply_entry(fuse_req_t req, const Result<struct fuse_entry_param>& e) {
  if (!e) return (void)reply_err(req, e.err());
  if (fuse_reply_entry(req, &*e) != 0 && e->ino != 0) fs_of(req).forget(e->ino, 1);
}
void reply_attr(fuse_req_t req, const Result<Filesystem::Attr>& a) {
  if (!a) return (void)reply_err(req, a.err());
  fuse_reply_attr(req, &a->st, a->timeout);
}
#ifdef FUSE_CAP_PASSTHROUGH
// libfuse >= 3.17 (meson -Dfuse_prefix): the kernel's backing ids.
BackingFiles::Register backing_register(fuse_req_t req) {
  return [req](int fd) { return fuse_passthrough_open(req, fd); };
}
BackingFiles::Unregister backing_unregister(fuse_req_t req) {
  return [req](int id) { (void)fuse_passthrough_close(req, id); };
}
#else
BackingFiles::Register backing_register(fuse_req_t) {
  return [](int) { return 0; };
}
BackingFiles::Unregister backing_unregister(fuse_req_t) {
  return [](int) {};
}
#endif

// A handle for fi->fh of kernel inode ino, passed through to its store file
// where it can be; 0, or the error to answer (the handle is dropped then).
int put_handle(fuse_req_t req, fuse_ino_t ino, Filesystem::OpenReply& o, struct fuse_file_info* fi) {
  auto backing = fs_of(req).pass_through(ino, o, backing_register(req));
  if (!backing) return backing.err();
  fi->fh = reinterpret_cast<uint64_t>(o.handle.get());
  fi->direct_io = o.direct_io ? 1 : 0;
  fi->keep_cache = o.keep_cache ? 1 : 0;
#ifdef FUSE_CAP_PASSTHROUGH
  if (*backing > 0) {
    fi->backing_id = *backing;  // reads, writes and mmap go to the store file; the page cache is its
    fi->direct_io = 0;
    fi->keep_cache = 0;
  }
#endif
  return 0;
}
// The kernel did not take a handle put_handle made (its opener is gone).
void drop_handle(fuse_req_t req, Filesystem::OpenReply& o) {
  fs_of(req).unpass(*o.handle, backing_unregister(req));
}

void op_init(void* userdata, struct fuse_conn_info* conn) {
  run_at_boundary("init", [&] { static_cast<Filesystem*>(userdata)->init(conn); });
}
void op_lookup(fuse_req_t req, fuse_ino_t p, const char* n) {
  guarded(req, FuseOp::lookup, [&] { reply_entry(req, fs_of(req).lookup(p, n, caller_of(req))); });
}
void op_forget(fuse_req_t req, fuse_ino_t i, uint64_t n) {
  guarded(req, FuseOp::forget, [&] {
    fs_of(req).forget(i, n);
    fuse_reply_none(req);
  });
}
void op_forget_multi(fuse_req_t req, size_t c, struct fuse_forget_data* f) {
  guarded(req, FuseOp::forget_multi, [&] {
    for (size_t k = 0; k < c; ++k) fs_of(req).forget(f[k].ino, f[k].nlookup);
    fuse_reply_none(req);
  });
}
void op_getattr(fuse_req_t req, fuse_ino_t i, struct fuse_file_info* fi) {
  guarded(req, FuseOp::getattr, [&] { reply_attr(req, fs_of(req).getattr(i, fi ? fi->fh : 0, fuse_req_ctx(req)->pid)); });
}
void op_setattr(fuse_req_t req, fuse_ino_t i, struct stat* a, int s, struct fuse_file_info* fi) {
  guarded(req, FuseOp::setattr, [&] { reply_attr(req, fs_of(req).setattr(i, *a, s, fi ? fi->fh : 0, caller_of(req))); });
}
void op_readlink(fuse_req_t req, fuse_ino_t i) {
  guarded(req, FuseOp::readlink, [&] {
    auto target = fs_of(req).readlink(i);
    if (!target) return (void)reply_err(req, target.err());
    fuse_reply_readlink(req, target->c_str());
  });
}
void op_mknod(fuse_req_t req, fuse_ino_t p, const char* n, mode_t m, dev_t r) {
  guarded(req, FuseOp::mknod, [&] { reply_entry(req, fs_of(req).mknod(p, n, m, r, caller_of(req))); });
}
void op_mkdir(fuse_req_t req, fuse_ino_t p, const char* n, mode_t m) {
  guarded(req, FuseOp::mkdir, [&] { reply_entry(req, fs_of(req).mkdir(p, n, m, caller_of(req))); });
}
void op_symlink(fuse_req_t req, const char* l, fuse_ino_t p, const char* n) {
  guarded(req, FuseOp::symlink, [&] { reply_entry(req, fs_of(req).symlink(l, p, n, caller_of(req))); });
}
void op_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char* n) {
  guarded(req, FuseOp::link, [&] { reply_entry(req, fs_of(req).link(i, p, n, caller_of(req))); });
}
void op_unlink(fuse_req_t req, fuse_ino_t p, const char* n) {
  guarded(req, FuseOp::unlink, [&] { reply_err(req, fs_of(req).unlink(p, n).err()); });
}
void op_rmdir(fuse_req_t req, fuse_ino_t p, const char* n) {
  guarded(req, FuseOp::rmdir, [&] { reply_err(req, fs_of(req).rmdir(p, n).err()); });
}
void op_rename(fuse_req_t req, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned int f) {
  guarded(req, FuseOp::rename, [&] { reply_err(req, fs_of(req).rename(p, n, np, nn, f).err()); });
}
void op_create(fuse_req_t req, fuse_ino_t p, const char* n, mode_t m, struct fuse_file_info* fi) {
  guarded(req, FuseOp::create, [&] {
    auto c = fs_of(req).create(p, n, m, fi->flags, caller_of(req));
    if (!c) return (void)reply_err(req, c.err());
    if (int err = put_handle(req, c->e.ino, c->open, fi)) {
      fs_of(req).forget(c->e.ino, 1);
      return (void)reply_err(req, err);
    }
    if (fuse_reply_create(req, &c->e, fi) == 0) {
      c->open.handle.release();  // the kernel's now, until release
    } else {
      drop_handle(req, c->open);
      fs_of(req).forget(c->e.ino, 1);  // the creator is gone (interrupted)
    }
  });
}
void op_open(fuse_req_t req, fuse_ino_t i, struct fuse_file_info* fi) {
  guarded(req, FuseOp::open, [&] {
    auto o = fs_of(req).open(i, fi->flags, caller_of(req));
    if (!o) return (void)reply_err(req, o.err());
    if (int err = put_handle(req, i, *o, fi)) return (void)reply_err(req, err);
    if (fuse_reply_open(req, fi) == 0) o->handle.release();  // else: the opener is gone
    else drop_handle(req, *o);
  });
}
void op_read(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info* fi) {
  guarded(req, FuseOp::read, [&] {
    auto r = fs_of(req).read(i, fi->fh, s, o);
    if (!r) return (void)reply_err(req, r.err());
    if (r->fd < 0) return (void)fuse_reply_buf(req, reinterpret_cast<const char*>(r->bytes.data()), r->bytes.size());
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(r->size);
    buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = r->fd;
    buf.buf[0].pos = r->pos;
    // libfuse splices from the file into /dev/fuse when the kernel allows it.
    fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
  });
}
void op_write_buf(fuse_req_t req, fuse_ino_t i, struct fuse_bufvec* b, off_t o, struct fuse_file_info* fi) {
  guarded(req, FuseOp::write, [&] {
    auto n = fs_of(req).write_buf(i, fi->fh, b, o, fi->writepage != 0);
    if (!n) return (void)reply_err(req, n.err());
    fuse_reply_write(req, *n);
  });
}
void op_release(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
  guarded(req, FuseOp::release, [&] {
    fs_of(req).unpass(*reinterpret_cast<FileHandle*>(fi->fh), backing_unregister(req));
    fs_of(req).release(fi->fh);
    reply_err(req, 0);
  });
}
void op_fsync(fuse_req_t req, fuse_ino_t, int d, struct fuse_file_info* fi) {
  guarded(req, FuseOp::fsync, [&] { reply_err(req, fs_of(req).fsync(fi->fh, d).err()); });
}
void op_fallocate(fuse_req_t req, fuse_ino_t, int m, off_t o, off_t l, struct fuse_file_info* fi) {
  guarded(req, FuseOp::fallocate, [&] { reply_err(req, fs_of(req).fallocate(fi->fh, m, o, l).err()); });
}
void op_copy_file_range(fuse_req_t req, fuse_ino_t, off_t oi, struct fuse_file_info* fii, fuse_ino_t, off_t oo,
                        struct fuse_file_info* fio, size_t l, int f) {
  guarded(req, FuseOp::copy_file_range, [&] {
    auto n = fs_of(req).copy_file_range(fii->fh, oi, fio->fh, oo, l, f);
    if (!n) return (void)reply_err(req, n.err());
    fuse_reply_write(req, *n);
  });
}
void op_opendir(fuse_req_t req, fuse_ino_t i, struct fuse_file_info* fi) {
  guarded(req, FuseOp::opendir, [&] {
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
  guarded(req, FuseOp::readdir, [&] { reply_dir(req, i, s, o, fi, false); });
}
void op_readdirplus(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info* fi) {
  guarded(req, FuseOp::readdirplus, [&] { reply_dir(req, i, s, o, fi, true); });
}
void op_releasedir(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
  guarded(req, FuseOp::releasedir, [&] {
    fs_of(req).releasedir(fi->fh);
    reply_err(req, 0);
  });
}
void op_fsyncdir(fuse_req_t req, fuse_ino_t, int d, struct fuse_file_info* fi) {
  guarded(req, FuseOp::fsyncdir, [&] { reply_err(req, fs_of(req).fsyncdir(fi->fh, d).err()); });
}
void op_statfs(fuse_req_t req, fuse_ino_t) {
  guarded(req, FuseOp::statfs, [&] {
    auto sv = fs_of(req).statfs();
    if (!sv) return (void)reply_err(req, sv.err());
    fuse_reply_statfs(req, &*sv);
  });
}
// Operations that return a Status or a value: the only replies are here.
#define DSDFS_STATUS_OP(name, ...) \
  guarded(req, FuseOp::name, [&] { reply_err(req, fs_of(req).name(__VA_ARGS__).err()); })

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
  guarded(req, FuseOp::getxattr, [&] { reply_xattr_value(req, fs_of(req).getxattr(i, n), s); });
}
void op_listxattr(fuse_req_t req, fuse_ino_t i, size_t s) {
  guarded(req, FuseOp::listxattr, [&] { reply_xattr_value(req, fs_of(req).listxattr(i), s); });
}
void op_removexattr(fuse_req_t req, fuse_ino_t i, const char* n) { DSDFS_STATUS_OP(removexattr, i, n); }

#undef DSDFS_STATUS_OP


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

const char* Filesystem::passthrough_off_reason(const struct fuse_conn_info* conn) const {
  if (!options_.passthrough) return "--passthrough off";
#ifndef FUSE_CAP_PASSTHROUGH
  (void)conn;
  return "this build's libfuse has no passthrough API (3.17 or later: meson -Dfuse_prefix, see scripts/build-libfuse.sh)";
#else
  if (!(conn->capable & FUSE_CAP_PASSTHROUGH)) return "the kernel has no FUSE passthrough (Linux 6.9 or later)";
  if (!run_as_root_) return "passthrough needs a daemon with CAP_SYS_ADMIN; this one is not root";
  return nullptr;
#endif
}

void Filesystem::init(struct fuse_conn_info* conn) {
  // Large requests: 1 MiB writes and reads.
  conn->max_write = 1U << 20;
  conn->max_readahead = 1U << 20;
  conn->max_background = 128;
  conn->congestion_threshold = 96;
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  const char* no_passthrough = passthrough_off_reason(conn);
  if (!no_passthrough) {
#ifdef FUSE_CAP_PASSTHROUGH
    // Reads, writes and mmap of owned files go from the kernel to the store
    // file. The kernel allows no writeback cache beside it (every other
    // file's writes go to the daemon as they are made).
    conn->want |= FUSE_CAP_PASSTHROUGH;
    conn->max_backing_stack_depth = 1;  // a store on an overlayfs (a container's root) passes through too
    passthrough_.store(true);
#endif
  } else {
    // The kernel page cache absorbs small writes and sends large ones.
    want(FUSE_CAP_WRITEBACK_CACHE);
  }
#ifdef FUSE_CAP_HANDLE_KILLPRIV_V2
  want(FUSE_CAP_HANDLE_KILLPRIV_V2);  // see daemon/mount.cc (3.14: the session I/O hook asks for it)
#endif
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
  if (no_passthrough) DSDFS_INFO("FUSE passthrough: off (%s)", no_passthrough);
  else DSDFS_INFO("FUSE passthrough: on for this node's own files");
}

}  // namespace dsdfs::fs
