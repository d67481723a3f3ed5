// SPDX-License-Identifier: Apache-2.0
// Data operations on owned files: open/create, read/write, sync, allocation.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstring>
#include <optional>

#include "common/log.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "daemon/protocol.h"

namespace dsdfs::fs {

namespace {
FileHandle* handle_of(uint64_t fh) { return reinterpret_cast<FileHandle*>(fh); }
}  // namespace

Result<Filesystem::CreateReply> Filesystem::create(fuse_ino_t parent, const char* name, mode_t mode, int flags,
                                                   const Caller& caller) {
  auto dir = inode_of(parent);
  if (!dir) return Status::error(ESTALE, "unknown directory");
  if (std::strlen(name) > NAME_MAX) return Status::error(ENAMETOOLONG);
  // Exactly one rank creates a name that many create at once (the shard
  // decides); every other one opens that same file (open_name).
  lost_opens_.opened(caller.tid, dir->dir_id, name);  // a retry that creates
  auto opened = open_name(dir->dir_id, name, -1, flags, mode, /*create=*/true);
  // ESTALE (a file that changed while it was fetched, answered by its owner)
  // would reach the caller: the kernel does not retry a create's retry.
  for (int again = 0; !opened && opened.err() == ESTALE && again < 4; ++again) {
    opened = open_name(dir->dir_id, name, -1, flags, mode, /*create=*/true);
  }
  // Opened here, then counted as open (see Inode::giving): a file given to
  // another rank in between (its O_TRUNC) is followed there, as open() does.
  for (int round = 0; opened && opened->owner == rank_ && round < 8; ++round) {
    OpenedFile& o = opened.value();
    if (o.created) adopt_for_caller(caller, *dir, name);
    struct fuse_entry_param e;
    if (int err = do_lookup(*dir, name, &e)) {
      if (err != ENOENT) return Status::error(err, "lookup of a created file");
    } else {
      auto inode = inode_of(e.ino);
      o.handle->attach(inode, /*counted=*/true, /*writable=*/(flags & O_ACCMODE) != O_RDONLY);
      struct stat now;
      const bool same = ::fstat(o.handle->fd, &now) == 0 && now.st_ino == inode->src_ino;
      if (same && !inode->gone.load() && !inode->giving.load()) {
        // Every change to an owned file passes through this kernel.
        return CreateReply{e, OpenReply{std::move(o.handle), /*direct_io=*/false, /*keep_cache=*/true,
                                        /*owned=*/true}};
      }
      inodes_.forget(e.ino, 1);
    }
    // This open's create and truncation have happened: follow without them.
    opened = open_name(dir->dir_id, name, -1, flags & ~(O_EXCL | O_TRUNC), mode, /*create=*/true);
  }
  if (!opened) return opened.status();
  OpenedFile& o = opened.value();
  // Moved away and back more than 8 times within this open.
  if (o.owner == rank_) return Status::error(EIO, "create: the file kept moving");
  CreateReply out;
  std::memset(&out.e, 0, sizeof out.e);
  out.e.attr = o.st;
  RemoteRef ref{o.owner, dir->dir_id, name, static_cast<uint64_t>(o.st.st_ino), o.version};
  out.e.ino = inodes_.lookup_remote(ref, o.st.st_mode, o.st)->id;
  // The name is not cached: every path walk asks the owner (see fill_remote_entry).
  out.e.attr_timeout = kRemoteAttrTimeout;
  out.e.entry_timeout = 0;
  out.open.direct_io = o.direct_io;
  out.open.keep_cache = o.handle->cache != nullptr;
  o.handle->page_cache = o.handle->cache && !o.direct_io;
  out.open.handle = std::move(o.handle);
  return out;
}

Result<Filesystem::OpenReply> Filesystem::open_moved(const Inode& inode, uint64_t dir, const std::string& name,
                                                     int owner_hint, int flags, const RecentLookups::Entry* known) {
  auto opened = open_name(dir, name, owner_hint, flags, 0644, /*create=*/false, known);
  // The path walk found this file, and a rename took it from that name
  // before this open: it is still that file under its new name (a local file
  // system opens what the walk found, too). Ask its owner where it is now,
  // a few times if renames keep moving it.
  for (int round = 0; !opened && opened.err() == ENOENT && inode.remote && round < 8; ++round) {
    auto r = peers_->call(inode.ref.owner, Op::kFileFind, msg::encode(msg::Find{dir, inode.ref.gino}));
    msg::Name now;
    if (!r || !msg::decode(r.value(), &now) || now.dir != dir) break;  // gone: unlinked or moved
    auto again = open_name(dir, now.name, inode.ref.owner, flags, 0644, /*create=*/false);
    if (again && static_cast<uint64_t>(again->st.st_ino) != inode.ref.gino) break;  // another file took the name
    opened = std::move(again);
  }
  // The name is gone: ESTALE makes the kernel look the path up again, which
  // answers ENOENT (or, for O_CREAT, creates it).
  if (!opened && opened.err() == ENOENT) return Status::error(ESTALE, "gone from its name");
  if (!opened) return opened.status();
  OpenedFile& o = opened.value();
  const bool same = inode.remote && o.owner == inode.ref.owner && o.owner != rank_ &&
                    static_cast<uint64_t>(o.st.st_ino) == inode.ref.gino && o.version == inode.ref.version;
  OpenReply out;
  if (same) {
    out.direct_io = o.direct_io;
    // This kernel inode is bound to this one version, so its pages stay valid.
    out.keep_cache = o.handle->cache != nullptr;
  } else {
    // The kernel inode describes another version or file than the one opened
    // (a new version, a replaced name, or a file that moved here): bypass its
    // page cache and size, so the reader sees exactly the file opened.
    out.direct_io = true;
    out.keep_cache = false;
  }
  o.handle->page_cache = o.handle->cache && !out.direct_io;
  out.handle = std::move(o.handle);
  return out;
}

Result<Filesystem::OpenReply> Filesystem::open(fuse_ino_t ino, int flags, const Caller& caller) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  if (!inode->remote) {
    // Known before open_local, which forgets a recorded loss when it opens
    // the file the name holds now.
    auto [dir, name] = inode->place();
    const bool retry = passthrough_.load() && lost_opens_.retrying(caller.tid, dir, name);
    auto opened = open_local(inode, flags, caller);
    if (!opened || !passthrough_.load() || !backing_.conflicts(ino) || handle_is_inodes_own(ino, *opened)) {
      return opened;
    }
    // open_local followed the name to another file (this one moved away or
    // lost its name), and this inode has handles passing through to its own
    // file: the kernel refuses a handle of another file beside them.
    // ESTALE has the kernel look the path up again; its retry can find this
    // inode again (the name still held it when the retry looked: a move or
    // rename in flight), and then opens the file the walk found, as
    // open_as_found does for another rank's file and a local file system
    // does: the open takes effect before the change that took the name.
    if (!lost_opens_.lost_again(caller.tid, dir, name) && !retry) {
      return Status::error(ESTALE, "the name holds another file; the inode's handles pass through");
    }
    lost_opens_.opened(caller.tid, dir, name);
    return open_local(inode, flags, caller, /*as_found=*/true);
  }
  if (!S_ISREG(inode->type)) return Status::error(EINVAL, "open of another rank's special file");
  // Whatever the name holds now: the file may have a new version, a new
  // owner, or be replaced since the kernel looked it up; for an open right
  // after this call's lookup, what that lookup found (not for O_TRUNC: its
  // size decides whether the file moves here, so the owner is asked).
  std::optional<RecentLookups::Entry> recent;
  if (!(flags & O_TRUNC)) recent = recent_lookups_.find(caller.tid, ino);
  auto opened = open_moved(*inode, inode->ref.dir, inode->ref.name, inode->ref.owner, flags,
                           recent ? &*recent : nullptr);
  if (opened.err() == ESTALE && lost_opens_.lost_again(caller.tid, inode->ref.dir, inode->ref.name)) {
    // The kernel will not retry again: look once more for a file at the
    // name, then take the one the retry's lookup found.
    opened = open_moved(*inode, inode->ref.dir, inode->ref.name, -1, flags);
    if (opened.err() == ESTALE) opened = open_as_found(*inode, flags);
  } else if (opened) {
    lost_opens_.opened(caller.tid, inode->ref.dir, inode->ref.name);
  }
  return opened;
}

Result<Filesystem::OpenReply> Filesystem::open_local(const std::shared_ptr<Inode>& inode, int flags,
                                                     const Caller& caller, bool as_found) {
  const pid_t tid = caller.tid;
  const bool writable = (flags & O_ACCMODE) != O_RDONLY;
  if (peers_->is_worker_thread(tid)) return open_for_handler(inode, flags, caller);
  // Counted as open before the check (see Inode::giving): a file offered
  // to another rank is either kept here for this handle or followed there.
  auto h = std::make_unique<FileHandle>();
  h->attach(inode, /*counted=*/true, writable);
  // Taken over by another rank (gone, giving), or its name taken here by
  // another rank's unlink or rename before the kernel heard of it
  // (unlinked_elsewhere: the path walk that found this inode used the old
  // name): open what the name holds now (close-to-open). Not ESTALE: under
  // a stream of replacements the kernel's one retry would often lose again.
  const bool moved_away =
      !as_found && (inode->gone.load() || being_given(*inode) || inode->unlinked_elsewhere.load());
  auto object = moved_away ? nullptr : (as_found ? inode->handle() : object_fd(inode));
  if (as_found && !object) return Status::error(ESTALE, "let go: nothing left to open");
  if (as_found) stats_add(stats_->opens_of_unlinked_files, 1);
  // An evicted or released handle whose file is no longer at its name here:
  // the kernel looks the path up again; its retry opens what the name holds.
  bool retry = false;
  if (!object && !moved_away) {
    auto [dir, name] = inode->place();
    if (!S_ISREG(inode->type) || !lost_opens_.lost_again(tid, dir, name)) {
      return Status::error(ESTALE, "no longer at its name");
    }
    retry = true;
  }
  if (!object && S_ISREG(inode->type)) {
    h.reset();  // not this file's open (unless the retry below opens it after all)
    auto [dir, name] = inode->place();
    auto opened = open_moved(*inode, dir, name, -1, flags);
    if (opened) {
      lost_opens_.opened(tid, dir, name);
      return opened;
    }
    // Nothing holds the name now. ESTALE has the kernel look it up afresh;
    // if its retry loses too, this open is the one the fresh lookup found,
    // and the file it found is the one to open (see open_as_found).
    if (opened.err() != ESTALE || !(retry || lost_opens_.lost_again(tid, dir, name))) return opened;
    // Once more: a file may hold the name by now.
    if (auto again = open_moved(*inode, dir, name, -1, flags)) return again;
    h = std::make_unique<FileHandle>();
    h->attach(inode, /*counted=*/true, writable);
    object = inode->handle();
    if (!object) return Status::error(ESTALE, "let go: nothing left to open");
    stats_add(stats_->opens_of_unlinked_files, 1);
  }
  if (!object) return Status::error(ESTALE, "no longer at its name");
  if (lost_opens_.any()) {
    auto [dir, name] = inode->place();
    lost_opens_.opened(tid, dir, name);
  }
  if (S_ISREG(inode->type)) {
    // A user's handle keeps the file here (OfferedFiles); a file offered to
    // another rank's O_TRUNC just now gets none: follow it once it moved.
    h->open_hold = offered_.try_hold(global_ino(inode->src_ino));
    if (!h->open_hold) {
      h.reset();
      offered_.wait(global_ino(inode->src_ino));
      auto [dir, name] = inode->place();
      return open_moved(*inode, dir, name, -1, flags);
    }
  }
  return open_store_file(std::move(h), inode, *object, flags, caller);
}

Result<Filesystem::OpenReply> Filesystem::open_store_file(std::unique_ptr<FileHandle> h,
                                                         const std::shared_ptr<Inode>& inode, const UniqueFd& object,
                                                         int flags, const Caller& caller) {
  if (flags & O_TRUNC) release_owned(global_ino(inode->src_ino));
  int fd = ::open(proc_path(object.get()).c_str(), store_open_flags(flags));
  if (fd < 0) return Status::from_errno("open");
  if ((flags & O_ACCMODE) != O_RDONLY) drop_setid_for_caller(caller, fd, inode->id);
  h->fd = fd;
  h->gino = global_ino(inode->src_ino);
  // Every change to an owned file passes through this kernel (other ranks'
  // writes come in through the mount point), so its page cache stays valid.
  return OpenReply{std::move(h), /*direct_io=*/false, /*keep_cache=*/true, /*owned=*/S_ISREG(inode->type)};
}

bool Filesystem::being_given(const Inode& inode) {
  // Set by on_file_truncate's offer, and left set when the other rank never
  // took the file (the offer expired): it stays here then.
  return inode.giving.load() && offered_.offered(global_ino(inode.src_ino));
}

Result<Filesystem::OpenReply> Filesystem::open_for_handler(const std::shared_ptr<Inode>& inode, int flags,
                                                          const Caller& caller) {
  // An owner-side handler of another rank's request (on_file_write and the
  // like, through this rank's own mount): it checked that the store holds
  // this very file under its name, and it writes while the kernel holds this
  // inode's lock. It must never follow the file to another rank: a write
  // forwarded from here while that lock is held can wait on a handler of that
  // rank which waits for a lock held here (a cycle only the timeouts break,
  // and none where the file moved to this rank itself). Moving away (given
  // to another rank's O_TRUNC, or gone): ESTALE, and the handler tells its
  // caller where the file went once the move has settled. Its handle is not
  // counted as a user's: it neither keeps the file here nor waits for an
  // offer.
  if (inode->gone.load() || being_given(*inode)) return Status::error(ESTALE, "moving to another rank");
  auto object = object_fd(inode);
  if (!object) return Status::error(ESTALE, "no longer here");
  auto h = std::make_unique<FileHandle>();
  h->attach(inode, /*counted=*/false, (flags & O_ACCMODE) != O_RDONLY);
  return open_store_file(std::move(h), inode, *object, flags, caller);
}

Result<Filesystem::OpenReply> Filesystem::open_as_found(const Inode& inode, int flags) {
  // The kernel's retry of an open that lost against an unlink or rename,
  // and lost again. Its lookup was fresh (the retry looks up every path
  // component) and happened during this open, and found this file: this
  // open takes effect then, before the change that took the name (as on a
  // local file system, where the open wins and the unlink follows). What
  // the handle can do afterwards is what any handle of a file replaced
  // since its open can do (user guide, "Limits"): reads of the version it
  // shows from this node's cache, EIO for parts not cached and for writes.
  stats_add(stats_->opens_of_unlinked_files, 1);
  OpenedFile out;
  if (int err = open_remote_handle(inode.ref.owner, inode.ref.dir, inode.ref.name, inode.remote_attr(),
                                   inode.ref.version, flags, &out, /*fetch=*/false)) {
    return Status::error(err, "open of a file gone from its name");
  }
  out.handle->page_cache = false;
  return OpenReply{std::move(out.handle), /*direct_io=*/true, /*keep_cache=*/false};
}

void Filesystem::drop_setid_for_caller(const Caller& caller, int fd, uint64_t ino) {
  // FUSE_HANDLE_KILLPRIV_V2 (daemon/mount.cc): the server drops setuid and
  // setgid when an unprivileged caller may write the file. With the writeback
  // cache the store sees the bytes later, from a kernel thread, so do it when
  // the file is opened for writing (or truncated), and refresh the kernel's
  // cached mode.
  if (run_as_root_ && caller.uid == 0) return;
  struct stat st;
  if (::fstat(fd, &st) != 0 || !(st.st_mode & (S_ISUID | S_ISGID))) return;
  if (::fchmod(fd, st.st_mode & 07777 & ~static_cast<mode_t>(S_ISUID | S_ISGID)) == 0) {
    notifier_.dir_attrs_changed(ino);  // the mode only: cannot block
  }
}

Result<Filesystem::ReadReply> Filesystem::read(fuse_ino_t ino, uint64_t fh, size_t size, off_t off) {
  FileHandle& h = *handle_of(fh);
  // The kernel inode matters only to reads through its page cache (its size
  // may have grown with this node's writes: remote_read); spare the others
  // the inode table's lock.
  if (h.remote) return remote_read(h.page_cache ? inode_of(ino).get() : nullptr, h, size, off);
  if (h.inode && h.inode->gone.load(std::memory_order_relaxed)) return Status::error(EIO, "moved to another rank");
  stats_add(stats_->bytes_read_local, size);
  // The front end splices from the store file into /dev/fuse when the kernel allows it.
  ReadReply out;
  out.fd = h.fd;
  out.pos = off;
  out.size = size;
  return out;
}

Result<size_t> Filesystem::write_buf(fuse_ino_t ino, uint64_t fh, struct fuse_bufvec* in, off_t off, bool writepage) {
  FileHandle& h = *handle_of(fh);
  if (writepage) {
    // The kernel writes an inode's dirty pages back through any writable handle of the
    // inode, the newest first. An open of this inode may have opened another file: the
    // one its name holds now, when the inode's file moved to another rank, was replaced or
    // was unlinked elsewhere (open_local, open_moved), even as a remote append handle,
    // which would append these pages at the end of that other file.
    // (A handle opened on this inode for its own file needs no lookup: the
    // common case, kept off the inode table's lock.)
    const bool own = !h.remote && h.inode && h.inode->id == ino && h.gino == global_ino(h.inode->src_ino);
    auto inode = own ? nullptr : inode_of(ino);
    if (!own && !inode) return Status::error(EIO, "write-back of an unknown inode");
    // Whether h is of the file the inode stands for, with writes landing at their offsets.
    bool of_this_file = own;
    if (!own && inode->remote) {
      RemoteRef ref = h.remote ? h.current_ref() : RemoteRef{};
      of_this_file = h.remote && !h.append && ref.owner == inode->ref.owner && ref.gino == inode->ref.gino;
    } else if (!own) {
      of_this_file = !h.remote && h.gino == global_ino(inode->src_ino);
    }
    if (!of_this_file) {
      stats_add(stats_->writebacks_redirected, 1);
      return write_back_to_inode(inode, in, off);
    }
  }
  if (h.remote) {
    // Before the reply: the kernel extends the inode's size when it comes.
    if (auto inode = inode_of(ino); inode && inode->remote) {
      const uint64_t end = static_cast<uint64_t>(off) + fuse_buf_size(in);
      uint64_t cur = inode->kernel_extent.load();
      while (end > cur && !inode->kernel_extent.compare_exchange_weak(cur, end)) {
      }
    }
    return remote_write(h, in, off);
  }
  if (h.inode && h.inode->gone.load(std::memory_order_relaxed)) return write_to_moved(in, writepage);
  return write_to_store(h.fd, h.gino, in, off);
}

Result<size_t> Filesystem::write_to_store(int fd, uint64_t gino, struct fuse_bufvec* in, off_t off) {
  struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  // FD_RETRY: one splice from the request's pipe into the store file may move
  // only part of it (it stops at a page boundary); a write to a regular file
  // is whole or fails.
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY);
  out.buf[0].fd = fd;
  out.buf[0].pos = off;
  ssize_t n = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (n < 0) return Status::error(static_cast<int>(-n), "write");
  content_gens_.changed(gino);
  stats_add(stats_->bytes_written_local, static_cast<uint64_t>(n));
  return static_cast<size_t>(n);
}

Result<size_t> Filesystem::write_back_to_inode(const std::shared_ptr<Inode>& inode, struct fuse_bufvec* in,
                                               off_t off) {
  if (inode->remote) {
    // Pages of another rank's file at the version this inode shows (none are made today:
    // every writable handle of a remote file is direct_io): positional, to that file only.
    FileHandle to;
    to.remote = true;
    to.ref = inode->ref;
    return remote_write(to, in, off);
  }
  // Given to another rank (its O_TRUNC): as for the file's own handles.
  if (inode->gone.load()) return write_to_moved(in, /*writepage=*/true);
  auto object = object_fd(inode);
  if (!object) return Status::error(EIO, "write-back of a file that is gone");
  UniqueFd fd(::open(proc_path(object->get()).c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("open for write-back");
  return write_to_store(fd.get(), global_ino(inode->src_ino), in, off);
}

Result<size_t> Filesystem::write_to_moved(struct fuse_bufvec* in, bool writepage) {
  // Write-back of pages of a file that moved to another rank (its O_TRUNC)
  // while no user's handle of it was open here (OfferedFiles: a file with
  // one is never offered): the only writes into them were forwarded writes
  // of other ranks, either older than the truncation or sent on to the new
  // owner when this rank answered kWriteMoved (on_file_write). Failing here
  // would leave an error on the kernel inode that a later direct write
  // through it (an open that followed the name) would report as its own. A
  // user's handle open here now under the same global inode number is of
  // another file, which got the store inode number of the one that left.
  // Anything else fails: the file is not here any more.
  if (!writepage) return Status::error(EIO, "moved to another rank");
  stats_add(stats_->writebacks_discarded, 1);
  return fuse_buf_size(in);
}

bool Filesystem::handle_is_inodes_own(fuse_ino_t ino, const OpenReply& o) {
  const FileHandle& h = *o.handle;
  const bool local = !h.remote && h.fd >= 0;
  if (!local) return false;
  if (o.owned) return true;
  auto inode = inode_of(ino);
  struct stat st;
  return inode && !inode->remote && S_ISREG(inode->type) && ::fstat(h.fd, &st) == 0 && st.st_ino == inode->src_ino &&
         global_ino(st.st_ino) == h.gino;
}

Result<int> Filesystem::pass_through(fuse_ino_t ino, OpenReply& o, const BackingFiles::Register& reg) {
  FileHandle& h = *o.handle;
  if (!passthrough_.load()) return 0;
  // A handle of the kernel inode's own store file, even where open() went
  // the long way (a name taken by another rank and given back): the same
  // backing file as the inode's other handles.
  const bool own = handle_is_inodes_own(ino, o);
  if (!own) {
    // Another file than the kernel inode's: the kernel refuses it beside
    // passthrough handles; its retry looks the name up afresh.
    if (backing_.conflicts(ino)) return Status::error(ESTALE, "the inode's other handles pass through");
    return 0;
  }
  const int fl = ::fcntl(h.fd, F_GETFL);
  const bool writable = fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
  int id = backing_.acquire(ino, h.gino, writable, h.fd, [&](int fd) {
    int got = reg(fd);
    if (got <= 0) {
      const int err = errno;
      DSDFS_WARN("passthrough of file %" PRIx64 " refused by the kernel (%s); its handles go through the daemon",
                 h.gino, std::strerror(err));
      if (err == EPERM && passthrough_.exchange(false)) {
        DSDFS_WARN("FUSE passthrough: off (the kernel refuses this daemon: it needs CAP_SYS_ADMIN)");
      }
    }
    return got;
  });
  h.backing_ino = ino;
  h.backing_writer = writable;
  if (id > 0) {
    stats_add(stats_->passthrough_opens, 1);
    o.direct_io = false;
  }
  return id;
}

void Filesystem::unpass(FileHandle& h, const BackingFiles::Unregister& unreg) {
  if (h.backing_ino == 0) return;
  backing_.release(h.backing_ino, h.gino, h.backing_writer, unreg);
  h.backing_ino = 0;
}

void Filesystem::release(uint64_t fh) {
  FileHandle* h = handle_of(fh);
  std::shared_ptr<Inode> local = h->remote ? nullptr : h->inode;
  delete h;
  let_go_if_unlinked(local);  // the last close of a file unlinked by another rank
}

Status Filesystem::fsync(uint64_t fh, int datasync) {
  FileHandle& h = *handle_of(fh);
  // Remote writes are on the owner's disk before write() returns.
  if (h.remote) return Status::ok();
  if ((datasync ? ::fdatasync(h.fd) : ::fsync(h.fd)) != 0) return Status::from_errno("fsync");
  return Status::ok();
}

Status Filesystem::fallocate(uint64_t fh, int mode, off_t off, off_t len) {
  FileHandle& h = *handle_of(fh);
  if (h.remote) return Status::error(EOPNOTSUPP, "fallocate of another rank's file");
  if (::fallocate(h.fd, mode, off, len) != 0) return Status::from_errno("fallocate");
  content_gens_.changed(h.gino);  // (punched holes, zeroed ranges, a new size)
  return Status::ok();
}

Result<size_t> Filesystem::copy_file_range(uint64_t fh_in, off_t off_in, uint64_t fh_out, off_t off_out,
                                           size_t len, int flags) {
  FileHandle& in_h = *handle_of(fh_in);
  FileHandle& out_h = *handle_of(fh_out);
  // Only between files of this rank; the kernel falls back to read + write.
  if (in_h.remote || out_h.remote) return Status::error(EXDEV);
  loff_t in = off_in, out = off_out;
  ssize_t n = ::copy_file_range(in_h.fd, &in, out_h.fd, &out, len, static_cast<unsigned>(flags));
  if (n < 0) return Status::from_errno("copy_file_range");
  content_gens_.changed(out_h.gino);
  stats_add(stats_->bytes_written_local, static_cast<uint64_t>(n));
  return static_cast<size_t>(n);
}

}  // namespace dsdfs::fs
