// SPDX-License-Identifier: Apache-2.0
// Name-space operations on owned objects: lookup, attributes, create/remove/rename.
#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/mutex.h"
#include "common/hash.h"
#include "common/log.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/protocol.h"
#include "daemon/filesystem.h"

namespace dsdfs::fs {

namespace {
// Kernel caches for owned objects: all changes to them pass through this daemon,
// so long timeouts are safe (an owner invalidates explicitly when a peer changes them).
constexpr double kAttrTimeout = 86400.0;

bool name_too_long(const char* name) { return std::strlen(name) > NAME_MAX; }
}  // namespace

Filesystem::Filesystem(Options options, Store* store, Peers* peers, Stats* stats, std::string host,
                       std::string mountpoint)
    : options_(std::move(options)),
      store_(store),
      peers_(peers),
      rank_(peers->rank()),
      host_(std::move(host)),
      mountpoint_(std::move(mountpoint)),
      run_as_root_(::geteuid() == 0),
      entry_timeout_(kAttrTimeout),
      shard_([peers](int r) { return peers->alive(r); }),
      cache_(store->cache_path()),
      exports_(peers),
      stats_(stats),
      rejoined_(new std::atomic<bool>[static_cast<size_t>(peers->nranks())]) {
  for (int r = 0; r < peers->nranks(); ++r) rejoined_[static_cast<size_t>(r)].store(false);
  struct stat st;
  UniqueFd root(::open(store_->files_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid() || ::fstat(root.get(), &st) != 0) {
    DSDFS_ERROR("INTERNAL ERROR: cannot open store root %s: %s", store_->files_path().c_str(),
                std::strerror(errno));
    std::abort();
  }
  dirs_.add(0, std::make_shared<UniqueFd>(::dup(root.get())), st.st_dev, st.st_ino);
  // Three quarters of the descriptors for the handles of the directories
  // (every replica, never closed) and of the files the kernel knows (closed
  // oldest first past what the directories leave); the rest for open files,
  // caches and the network.
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    inodes_.set_handle_budget(std::max<size_t>(256, rl.rlim_cur / 4 * 3), [this] { return dirs_.size(); });
  }
  inodes_.set_root(std::move(root), st);
  stage_ = std::make_unique<StageOut>(store_->files_path(), mountpoint_);
}

Filesystem::~Filesystem() {
  notifier_.stop();
  std::thread later;
  {
    MutexLock lock(later_mu_);
    later_stop_ = true;
    later = std::move(later_thread_);
  }
  later_cv_.notify_all();
  if (later.joinable()) later.join();
}

std::string Filesystem::proc_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

void Filesystem::translate(struct stat* st) const { st->st_ino = global_ino(st->st_ino); }

std::shared_ptr<UniqueFd> Filesystem::object_fd(const std::shared_ptr<Inode>& inode) {
  if (auto h = inode->handle()) return h;
  if (inode->released.load()) return nullptr;  // unlinked: its number may be another file's now
  // Evicted to stay within the descriptor budget: reopen it by name.
  auto [dir, name] = inode->place();
  auto dfd = local_dir(dir);
  if (!dfd) return nullptr;
  UniqueFd fd(::openat(dfd->get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!fd.valid() || ::fstatat(fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 ||
      st.st_dev != inode->src_dev || st.st_ino != inode->src_ino) {
    return nullptr;
  }
  auto h = std::make_shared<UniqueFd>(std::move(fd));
  inode->set_handle(h);
  inodes_.note_file_handle(inode);
  return h;
}

int Filesystem::stat_inode(const std::shared_ptr<Inode>& inode, struct stat* st) {
  auto h = object_fd(inode);
  if (!h && inode->released.load()) {
    // Without a name and let go (an fstat of a handle opened through this
    // inode, which may have opened what the name held then): what it was.
    *st = inode->remote_attr();
    translate(st);
    return 0;
  }
  if (!h) return ESTALE;
  if (::fstatat(h->get(), "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  translate(st);
  return 0;
}

int Filesystem::do_lookup(const Inode& parent, const char* name, struct fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  e->attr_timeout = kAttrTimeout;
  e->entry_timeout = entry_timeout_;
  if (name_too_long(name)) return ENAMETOOLONG;
  UniqueFd fd(::openat(parent.dir_fd(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return errno;
  return entry_of(parent, name, std::move(fd), e);
}

bool Filesystem::lost_its_name(const Inode& inode) {
  // Another rank's request (an unlink, a rename over the name, a drop after
  // a takeover) can unlink the file between this lookup's openat and now. It
  // marks the file's kernel inode (mark_unlinked_elsewhere) after the unlink,
  // so a kernel inode made before that is marked; one made after it is this
  // one, and its file has no name left. Without this check the kernel would
  // keep an entry for a file gone from the name (a readdirplus entry, which
  // the kernel keeps even when its listing began before the change), and
  // later opens and stats through it would see the old file. (Changes made
  // through this kernel never race a lookup in the same directory: the
  // kernel holds the directory's lock.)
  if (peers_->nranks() == 1) return false;
  auto h = inode.handle();
  struct stat now;
  return h && ::fstatat(h->get(), "", &now, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 && now.st_nlink == 0 &&
         !inode.released.load();
}

int Filesystem::entry_of(const Inode& parent, const char* name, UniqueFd fd, struct fuse_entry_param* e,
                         uint64_t known_dir_id) {
  if (::fstatat(fd.get(), "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  uint64_t dir_id = 0;
  if (known_dir_id != 0) {
    dir_id = known_dir_id;
  } else if (S_ISDIR(e->attr.st_mode)) {
    if (auto id = dirs_.id_of(e->attr.st_dev, e->attr.st_ino)) {
      dir_id = *id;
    } else {
      // A directory found in a kept store: every rank derives the same id from its path.
      auto rel = store_relative_path(fd.get());
      if (!rel) return rel.err();
      dir_id = kept_dir_id(rel.value());
      dirs_.add(dir_id, std::make_shared<UniqueFd>(::dup(fd.get())), e->attr.st_dev, e->attr.st_ino);
    }
  }
  // A directory's inode shares its replica's handle: one descriptor each.
  auto shared = S_ISDIR(e->attr.st_mode) ? dirs_.fd_if(dir_id, e->attr.st_dev, e->attr.st_ino) : nullptr;
  auto inode = inodes_.lookup(std::move(fd), e->attr, dir_id, std::move(shared));
  if (S_ISREG(e->attr.st_mode) && inodes_.wait_direct(e->attr.st_dev, e->attr.st_ino)) {
    // An owner-side handler changed it in the store while the kernel knew
    // no inode of it: the kernel's first size must be the one after that.
    auto h = inode->handle();
    if (!h || ::fstatat(h->get(), "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      // Gone from the name meanwhile (moved to another rank's O_TRUNC,
      // unlinked): not here, as lost_its_name says below. The callers then
      // ask where the name is now (lookup_any), or follow it (create).
      inodes_.forget(inode->id, 1);  // this lookup's count: the kernel never sees it
      return h ? errno : ENOENT;
    }
  }
  if (!S_ISDIR(e->attr.st_mode) && lost_its_name(*inode)) {
    inodes_.forget(inode->id, 1);  // this lookup's count: the kernel never sees it
    return ENOENT;
  }
  if (!S_ISDIR(e->attr.st_mode)) inode->set_place(parent.dir_id, name);
  e->ino = inode->id;
  translate(&e->attr);
  return 0;
}

Result<struct fuse_entry_param> Filesystem::lookup(fuse_ino_t parent, const char* name, const Caller& caller) {
  auto dir = inode_of(parent);
  if (!dir) return Status::error(ESTALE, "unknown directory");
  struct fuse_entry_param e;
  // (A small remote file's bytes, for the open that usually follows: noted below.)
  std::shared_ptr<const std::vector<uint8_t>> bytes;
  const bool note = peers_->nranks() > 1 && caller.tid > 0;
  int err = lookup_any(*dir, name, &e, note ? &bytes : nullptr);
  if (lost_opens_.pending(caller.tid, dir->dir_id, name)) {
    // Perhaps the kernel's retry of an open that found its file gone: hold
    // what this lookup finds until the open comes (Filesystem::open). A file
    // let go before the hold (another rank unlinked it meanwhile): look again.
    for (int again = 0; err == 0 && again < 4; ++again) {
      auto inode = inode_of(e.ino);
      if (!inode || inode->remote || !S_ISREG(inode->type) || inode->hold_for_open(LostOpens::kHold)) break;
      inodes_.forget(e.ino, 1);  // this lookup's count: the kernel never sees it
      err = lookup_any(*dir, name, &e, note ? &bytes : nullptr);
    }
    if (err == 0 || err == ENOENT) lost_opens_.looked_up(caller.tid, dir->dir_id, name, err == 0);
  }
  if (err == ENOENT) {
    // A negative entry, not cached: another rank may create the name at any time.
    e.ino = 0;
    e.entry_timeout = 0;
    return e;
  }
  if (err) return Status::error(err, "lookup");
  // (One rank has no remote files: no table lookup on a one-node mount's hot path.)
  if (auto inode = note ? inode_of(e.ino) : nullptr; inode && inode->remote) {
    recent_lookups_.note(caller.tid, {e.ino, inode->ref.owner, inode->ref.version, e.attr,
                                      RecentLookups::Clock::now(), std::move(bytes)});
  }
  return e;
}

void Filesystem::forget(fuse_ino_t ino, uint64_t nlookup) { inodes_.forget(ino, nlookup); }

Result<Filesystem::Attr> Filesystem::getattr(fuse_ino_t ino, uint64_t fhandle, pid_t tid) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  struct stat st;
  FileHandle* fh = reinterpret_cast<FileHandle*>(fhandle);
  if (fh && fh->remote && fh->cache) {
    // A read-only open of a remote file: the version it opened, which stays
    // readable from the cache even if the owner has dropped the file since.
    return Attr{fh->attr, kRemoteAttrTimeout};
  }
  if (FileHandle* h = fh; h && !h->remote && h->fd >= 0) {
    // Through the open file: works for an unlinked file whose handle was evicted.
    if (::fstat(h->fd, &st) != 0) return Status::from_errno("fstat");
    translate(&st);
    return Attr{st, inode->remote ? 0 : kAttrTimeout};
  }
  if (fh && fh->remote) {
    // A writable remote handle: the file it writes to, by its name at open;
    // if a rename or replace has taken that name, what it was at open.
    uint64_t version;
    RemoteRef ref = fh->current_ref();
    if (remote_stat(ref.owner, ref.dir, ref.name, &st, &version) != 0 ||
        static_cast<uint64_t>(st.st_ino) != ref.gino) {
      st = fh->attr;
    }
    return Attr{st, 0};
  }
  if (inode->remote) {
    // stat(2) of a path: the lookup of this very call brought them.
    if (auto recent = tid > 0 ? recent_lookups_.find(tid, ino) : std::nullopt) {
      return Attr{recent->st, kRemoteAttrTimeout};
    }
    uint64_t version = 0;
    int err = remote_stat(inode->ref.owner, inode->ref.dir, inode->ref.name, &st, &version);
    if (err == ENOENT || (err == 0 && static_cast<uint64_t>(st.st_ino) != inode->ref.gino)) {
      // The file this inode shows is no longer at its name (renamed over,
      // taken over, unlinked): answer what it was when looked up, as a local
      // file system does for a file unlinked under an open handle. A path
      // walk asks the owner again (zero entry timeout) and finds what the
      // name holds now, so this never needs ESTALE and a retry.
      st = inode->remote_attr();
      err = 0;
    }
    if (err) return Status::error(err, "stat of a remote file");
    // This inode's version: the kernel may keep them. A newer one (a
    // descriptor of an older version asks): shown, but not kept.
    return Attr{st, version == inode->ref.version ? kRemoteAttrTimeout : 0};
  }
  if (int err = stat_inode(inode, &st)) return Status::error(err, "stat");
  return Attr{st, kAttrTimeout};
}

Result<Filesystem::Attr> Filesystem::setattr(fuse_ino_t ino, const struct stat& attr, int to_set,
                                             uint64_t fhandle, const Caller& caller) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  FileHandle* h = reinterpret_cast<FileHandle*>(fhandle);
  // Through a handle: the file it has open (which can be another rank's
  // file under a local kernel inode, or ours under a remote one, after a
  // move); otherwise the file the inode shows.
  const bool remote_target = h ? h->remote : inode->remote;
  if (remote_target) {
    const bool times_only = (to_set & ~(FUSE_SET_ATTR_CTIME | FUSE_SET_ATTR_FORCE | FUSE_SET_ATTR_MTIME)) == 0;
    // The kernel writes back the times of an inode without a handle too
    // (sync_inode_metadata, e.g. at fsync): for a file that has moved away
    // that is only bookkeeping of a file no longer there.
    if (!h && inode->gone.load() && !times_only) return Status::error(ESTALE, "moved away");
    const int bookkeeping = FUSE_SET_ATTR_CTIME | FUSE_SET_ATTR_FORCE |
                            (h || inode->gone.load() ? FUSE_SET_ATTR_MTIME : 0);
    if ((to_set & ~bookkeeping) == 0) {
      // Only the kernel's own time bookkeeping: ctime for the inode a rename
      // replaced, or mtime and ctime written back at close of a handle that
      // wrote (writeback cache). The owner set its times when it applied
      // the writes; forwarding them would cost a round trip per close and
      // fail if the file has moved since. Nothing to forward, nothing to
      // ask: the attributes time out at once, the next stat asks the owner.
      struct stat st = h && h->remote ? h->attr : inode->remote_attr();
      return Attr{st, 0};
    }
    const RemoteRef ref = h ? h->current_ref() : inode->ref;
    msg::Setattr m{{ref.dir, ref.name}, ref.gino, static_cast<uint32_t>(to_set), attr.st_mode, attr.st_uid,
                   attr.st_gid, attr.st_size, attr.st_atim.tv_sec, attr.st_atim.tv_nsec,
                   attr.st_mtim.tv_sec, attr.st_mtim.tv_nsec};
    auto r = peers_->call(ref.owner, Op::kFileSetattr, msg::encode(m));
    // The file left its owner under this handle (replaced, unlinked): EIO,
    // as for writes. Without a handle the kernel looks the path up again.
    if (!r && h && file_left_owner(r.err())) return Status::error(EIO, "file left its owner");
    if (!r && times_only && file_left_owner(r.err())) {
      // Times of a file that left this name since: nothing left to set.
      struct stat st = inode->remote_attr();
      return Attr{st, 0};
    }
    if (!r && r.err() == ENOENT) return Status::error(ESTALE, "gone from its name");
    if (!r) return r.status();
    msg::Stat now;
    if (!msg::decode(r.value(), &now)) return Status::error(EPROTO, "setattr reply");
    return Attr{now.st, 0};
  }
  if (S_ISDIR(inode->type) && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
                                         FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    // Directory attributes change on every replica, through the coordinator.
    DirChange c;
    c.kind = DirChange::kSetattr;
    c.dir = inode->dir_id;
    c.flags = static_cast<uint32_t>(to_set);
    c.mode = attr.st_mode;
    c.uid = attr.st_uid;
    c.gid = attr.st_gid;
    c.atime_s = attr.st_atim.tv_sec;
    c.atime_ns = attr.st_atim.tv_nsec;
    c.mtime_s = attr.st_mtim.tv_sec;
    c.mtime_ns = attr.st_mtim.tv_nsec;
    if (int err = dir_mutate(c.encode())) return Status::error(err, "directory setattr");
    return getattr(ino, 0);
  }
  const int hfd = h ? h->fd : -1;
  // The open file if there is one (an unlinked file has no name to reopen).
  auto object = hfd >= 0 ? nullptr : object_fd(inode);
  if (hfd < 0 && !object) {
    const bool times_only = (to_set & ~(FUSE_SET_ATTR_CTIME | FUSE_SET_ATTR_FORCE | FUSE_SET_ATTR_MTIME |
                                        FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME_NOW)) == 0;
    if (times_only && inode->released.load()) {
      // The kernel writing back the times of a file that another rank
      // unlinked since (at the close of a handle, which would otherwise
      // fail): the file is gone, nothing is left to set.
      struct stat st = inode->remote_attr();
      translate(&st);
      return Attr{st, 0};
    }
    return Status::error(ESTALE, "no longer at its name");
  }
  const int ifd = object ? object->get() : -1;
  const bool is_symlink = S_ISLNK(inode->type);
  int rc = 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (is_symlink) {
      errno = EOPNOTSUPP;
      rc = -1;
    } else {
      rc = hfd >= 0 ? ::fchmod(hfd, attr.st_mode)
              : ::chmod(proc_path(ifd).c_str(), attr.st_mode);
    }
    if (rc != 0) return Status::from_errno("setattr");
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr.st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr.st_gid : static_cast<gid_t>(-1);
    int crc = hfd >= 0 ? ::fchown(hfd, uid, gid) : ::fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    if (crc != 0) return Status::from_errno("chown");
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (!inode->remote) release_owned(global_ino(inode->src_ino));
    rc = hfd >= 0 ? ::ftruncate(hfd, attr.st_size)
            : ::truncate(proc_path(ifd).c_str(), attr.st_size);
    if (rc != 0) return Status::from_errno("setattr");
    if (!inode->remote) content_gens_.changed(global_ino(inode->src_ino));
    if (S_ISREG(inode->type)) {
      UniqueFd wfd(hfd >= 0 ? ::dup(hfd) : ::open(proc_path(ifd).c_str(), O_RDONLY | O_CLOEXEC));
      if (wfd.valid()) drop_setid_for_caller(caller, wfd.get(), inode->id);
    }
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2];
    tv[0].tv_sec = tv[1].tv_sec = 0;
    tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) tv[0] = attr.st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) tv[1] = attr.st_mtim;
    if (hfd >= 0) {
      rc = ::futimens(hfd, tv);
    } else if (is_symlink) {
      // utimensat on an O_PATH handle needs AT_EMPTY_PATH (Linux >= 5.8 ignores no symlink).
      rc = ::utimensat(ifd, "", tv, AT_EMPTY_PATH);
    } else {
      rc = ::utimensat(AT_FDCWD, proc_path(ifd).c_str(), tv, 0);
    }
    if (rc != 0) return Status::from_errno("setattr");
  }
  if (hfd >= 0) {
    // Through the open file (taken over here, or unlinked while open).
    struct stat st;
    if (::fstat(hfd, &st) != 0) return Status::from_errno("fstat");
    translate(&st);
    return Attr{st, inode->remote ? 0 : kAttrTimeout};
  }
  return getattr(ino, fhandle);
}

Result<std::string> Filesystem::readlink(fuse_ino_t ino) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  if (inode->remote) {
    auto r = peers_->call(inode->ref.owner, Op::kFileReadlink, msg::encode(msg::Name{inode->ref.dir, inode->ref.name}));
    if (!r) return r.status();
    std::string target(r->begin(), r->end());
    if (target.size() > PATH_MAX || target.find('\0') != std::string::npos) return Status::error(EPROTO, "readlink reply");
    return target;
  }
  auto object = object_fd(inode);
  if (!object) return Status::error(ESTALE, "no longer at its name");
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(object->get(), "", buf, sizeof buf);
  if (n < 0) return Status::from_errno("readlink");
  if (n == static_cast<ssize_t>(sizeof buf)) return Status::error(ENAMETOOLONG);
  return std::string(buf, static_cast<size_t>(n));
}

void Filesystem::adopt_for_caller(const Caller& caller, const Inode& parent, const char* name) {
  if (!run_as_root_) return;
  if (caller.uid == 0 && caller.gid == 0) return;
  if (::fchownat(parent.dir_fd(), name, caller.uid, caller.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    DSDFS_WARN("cannot hand %s to uid %u: %s", name, caller.uid, std::strerror(errno));
  }
}

Result<struct fuse_entry_param> Filesystem::new_entry(const Caller& caller, const Inode& parent, const char* name,
                                                      int saved_errno) {
  if (saved_errno) return Status::error(saved_errno);
  adopt_for_caller(caller, parent, name);
  struct fuse_entry_param e;
  if (int err = do_lookup(parent, name, &e)) return Status::error(err, "lookup of a new entry");
  return e;
}

// Makes a new non-directory object named `name` in `dir`, owned by this rank:
// claims the name at its shard, then creates it in the store with `make`.
// Replies with the entry.
int Filesystem::claim_and_make(uint64_t dir_id, int dir_fd, const char* name, uint32_t claim_flags,
                               const std::function<int(int dir_fd)>& make) {
  // Openers that the shard sends here before the object exists wait for it.
  auto creating = pending_.hold(dir_id, name);
  // From the claim to the new object, an unlink of the name here (which then
  // forgets it at the shard) waits: see unlink_here().
  auto name_lock = name_locks_.lock(dir_id, name);
  auto claim = loc_claim(dir_id, name, claim_flags);
  if (!claim) return claim.err();
  if (claim->result == LocatorShard::ClaimResult::kExists && claim->prev_owner != rank_) return EEXIST;
  int err = 0;
  {
    ReaderLock gate(dir_gate_);
    if (dir_closing(dir_id)) err = ENOENT;
    else if (make(dir_fd) != 0) err = errno;
  }
  if (err && claim->result == LocatorShard::ClaimResult::kNew) loc_remove(dir_id, name, rank_);
  return err;
}

Result<struct fuse_entry_param> Filesystem::mknod(fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev,
                                                  const Caller& caller) {
  auto dir = inode_of(parent);
  if (!dir) return Status::error(ESTALE, "unknown directory");
  if (name_too_long(name)) return Status::error(ENAMETOOLONG);
  // Device nodes: the kernel has already checked the caller's CAP_MKNOD; the
  // store's file system decides for the daemon (EPERM for a user's daemon).
  // Like FIFOs and sockets, they are used through each node's own kernel.
  if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISCHR(mode) && !S_ISBLK(mode)) {
    return Status::error(EINVAL, "mknod of this type");
  }
  int err = claim_and_make(dir->dir_id, dir->dir_fd(), name, LocatorShard::kExclusive,
                           [&](int dfd) { return ::mknodat(dfd, name, mode, rdev); });
  return new_entry(caller, *dir, name, err);
}

Result<struct fuse_entry_param> Filesystem::mkdir(fuse_ino_t parent, const char* name, mode_t mode,
                                                  const Caller& caller) {
  auto dir = inode_of(parent);
  if (!dir) return Status::error(ESTALE, "unknown directory");
  if (name_too_long(name)) return Status::error(ENAMETOOLONG);
  auto made_dir = make_dir(dir->dir_id, name, mode, run_as_root_ ? caller.uid : ::geteuid(),
                           run_as_root_ ? caller.gid : ::getegid());
  if (!made_dir) return made_dir.status();
  const uint64_t made = made_dir->id;
  auto made_fd = std::move(made_dir->fd);
  struct fuse_entry_param e;
  int err = do_lookup(*dir, name, &e);
  if (err == 0 && inode_of(e.ino)->dir_id == made) return e;
  // Another rank renamed or removed the new directory between our mkdir and
  // this lookup: mkdir succeeded all the same, as on a local file system
  // where the rename or rmdir came right after it. Answer with the directory
  // it made, by its id, and have the kernel look the name up again next time.
  if (!made_fd) return Status::error(err ? err : EIO, "lookup of a new directory");
  UniqueFd fd(::fcntl(made_fd->get(), F_DUPFD_CLOEXEC, 0));
  if (!fd.valid()) return Status::from_errno("dup");
  if ((err = entry_of(*dir, name, std::move(fd), &e, made))) return Status::error(err, "new directory");
  e.entry_timeout = 0;
  return e;
}

Result<Filesystem::MadeDir> Filesystem::make_dir(uint64_t dir_id, const std::string& name, mode_t mode, uid_t uid,
                                                 gid_t gid) {
  DirChange c;
  c.kind = DirChange::kMkdir;
  c.dir = dir_id;
  c.name = name;
  c.mode = mode & 07777;
  c.uid = uid;
  c.gid = gid;
  uint64_t made = 0;
  int err = dir_mutate(c.encode(), &made);
  auto made_fd = take_made_dir(made);  // kept for us when our replica made it
  if (err) return Status::error(err, "mkdir");
  return MadeDir{made, std::move(made_fd)};
}

std::shared_ptr<UniqueFd> Filesystem::take_made_dir(uint64_t id) {
  MutexLock lock(made_mu_);
  auto it = made_dirs_.find(id);
  if (it == made_dirs_.end()) return nullptr;
  auto fd = std::move(it->second);
  made_dirs_.erase(it);
  return fd;
}

Result<struct fuse_entry_param> Filesystem::symlink(const char* link, fuse_ino_t parent, const char* name,
                                                    const Caller& caller) {
  auto dir = inode_of(parent);
  if (!dir) return Status::error(ESTALE, "unknown directory");
  if (name_too_long(name)) return Status::error(ENAMETOOLONG);
  int err = claim_and_make(dir->dir_id, dir->dir_fd(), name, LocatorShard::kExclusive,
                           [&](int dfd) { return ::symlinkat(link, dfd, name); });
  return new_entry(caller, *dir, name, err);
}

Result<struct fuse_entry_param> Filesystem::link(fuse_ino_t ino, fuse_ino_t newparent, const char* newname,
                                                 const Caller& caller) {
  auto inode = inode_of(ino);
  auto dir = inode_of(newparent);
  if (!inode || !dir) return Status::error(ESTALE, "unknown inode");
  if (name_too_long(newname)) return Status::error(ENAMETOOLONG);
  if (S_ISDIR(inode->type)) return Status::error(EPERM, "link of a directory");
  // The file the kernel found at the old name left it (another rank
  // unlinked, replaced or took it over) before this link: ESTALE has the
  // kernel look the name up again and link what it holds now. If its one
  // retry loses too, the link is ordered after the change that took the
  // name, and fails as a link whose old name was removed first: ENOENT.
  // (The retry is known by its thread and its new name: the old name's file
  // is another one then, and a file with several names may know another.)
  auto left_its_name = [&] {
    return Status::error(lost_links_.lost_again(caller.tid, dir->dir_id, newname) ? ENOENT : ESTALE,
                         "link: the file left its name");
  };
  struct fuse_entry_param e;
  if (inode->remote) {
    // Every name of a file belongs to its owner: the owner links it in its
    // store (and claims the new name at its shard).
    auto r = peers_->call(inode->ref.owner, Op::kFileLink,
                            msg::encode(msg::Link{{inode->ref.dir, inode->ref.name}, inode->ref.gino,
                                                  {dir->dir_id, newname}}));
    if (!r && file_left_owner(r.err())) return left_its_name();
    if (!r) return r.status();
    std::memset(&e, 0, sizeof e);
    msg::Stat linked;
    if (!msg::decode(r.value(), &linked)) return Status::error(EPROTO, "link reply");
    e.attr = linked.st;
    const uint64_t version = linked.version;
    RemoteRef ref{inode->ref.owner, dir->dir_id, newname, static_cast<uint64_t>(e.attr.st_ino), version};
    e.ino = inodes_.lookup_remote(ref, e.attr.st_mode, e.attr)->id;
    e.attr_timeout = kRemoteAttrTimeout;
    e.entry_timeout = 0;
    return e;
  }
  auto object = object_fd(inode);
  if (!object) return left_its_name();
  // linkat of an O_PATH handle: through /proc with AT_SYMLINK_FOLLOW (AT_EMPTY_PATH
  // would need CAP_DAC_READ_SEARCH, which a user's daemon has not).
  const std::string src = proc_path(object->get());
  int err = claim_and_make(dir->dir_id, dir->dir_fd(), newname, LocatorShard::kExclusive, [&](int dfd) {
    return ::linkat(AT_FDCWD, src.c_str(), dfd, newname, AT_SYMLINK_FOLLOW);
  });
  if (err) return Status::error(err, "link");
  // The same inode (same store object): the kernel's count and ours agree.
  if ((err = do_lookup(*dir, newname, &e))) return Status::error(err, "lookup of a new link");
  return e;
}

Status Filesystem::unlink(fuse_ino_t parent, const char* name) {
  auto dir = inode_of(parent);
  if (!dir) return Status::error(ESTALE, "unknown directory");
  return errno_status(unlink_name(dir->dir_id, dir->dir_fd(), name));
}

int Filesystem::unlink_name(uint64_t dir_id, int dir_fd, const char* name) {
  int err = unlink_here(dir_id, dir_fd, name);
  if (err == 0) return 0;
  if (err != ENOENT || peers_->nranks() == 1) return err;
  auto owner = find_owner(dir_id, name);
  if (!owner) return owner.err();
  if (owner.value() == rank_) return ENOENT;
  if (owner.value() == LocatorShard::kDirectory) return EISDIR;
  auto r = peers_->call(owner.value(), Op::kFileUnlink, msg::encode(msg::Name{dir_id, name}));
  return r ? 0 : r.err();
}

int Filesystem::unlink_here(uint64_t dir_id, int dir_fd, const char* name) {
  unexport(dir_fd, name);
  // The name's removal from the store and from the shard are one step for
  // the creators of the name on this rank (claim_and_make, open_name,
  // take_over and renames onto it hold the same lock from their claim to
  // their new object): one of them in between would see the stale shard
  // entry as its own claim, make its object, and lose the name when this
  // removal reached the shard (a file in the store that no rank could find).
  auto name_lock = name_locks_.lock(dir_id, name);
  struct stat gone;
  const bool known = ::fstatat(dir_fd, name, &gone, AT_SYMLINK_NOFOLLOW) == 0;
  if (::unlinkat(dir_fd, name, 0) != 0) return errno;
  if (known) forget_if_last_name(gone);
  loc_remove(dir_id, name, rank_);  // a no-op if the name already moved to another rank
  return 0;
}

Status Filesystem::rmdir(fuse_ino_t parent, const char* name) {
  auto dir = inode_of(parent);
  if (!dir) return Status::error(ESTALE, "unknown directory");
  return errno_status(remove_dir(dir->dir_id, name));
}

int Filesystem::remove_dir(uint64_t dir_id, const std::string& name) {
  DirChange c;
  c.kind = DirChange::kRmdir;
  c.dir = dir_id;
  c.name = name;
  if (!valid_name(c.name)) return EINVAL;
  return dir_mutate(c.encode());
}

int Filesystem::rename_local_file(uint64_t src_dir, const std::string& src_name, int src_fd, uint64_t dst_dir,
                                  const std::string& dst_name, int dst_fd, unsigned flags) {
  if (flags & RENAME_EXCHANGE) {
    // Both names must be owned here: ownership never swaps across ranks.
    struct stat st;
    if (::fstatat(dst_fd, dst_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? EINVAL : errno;
    struct stat sst;
    if (::fstatat(src_fd, src_name.c_str(), &sst, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    if (::renameat2(src_fd, src_name.c_str(), dst_fd, dst_name.c_str(), flags) != 0) return errno;
    // An evicted handle is reopened by name: both names changed.
    if (uint64_t id = inodes_.find_local(sst.st_dev, sst.st_ino)) {
      if (auto inode = inodes_.get(id); inode && !S_ISDIR(inode->type)) inode->set_place(dst_dir, dst_name);
    }
    if (uint64_t id = inodes_.find_local(st.st_dev, st.st_ino)) {
      if (auto inode = inodes_.get(id); inode && !S_ISDIR(inode->type)) inode->set_place(src_dir, src_name);
    }
    return 0;
  }
  bool claimed_exclusive = false;
  PendingNames::Guard arriving;
  if (flags & RENAME_NOREPLACE) {
    arriving = pending_.hold(dst_dir, dst_name);
    auto claim = loc_claim(dst_dir, dst_name, LocatorShard::kExclusive);
    if (!claim) return claim.err();
    claimed_exclusive = claim->result == LocatorShard::ClaimResult::kNew;
  }
  int err = 0;
  struct stat moved;
  bool known = ::fstatat(src_fd, src_name.c_str(), &moved, AT_SYMLINK_NOFOLLOW) == 0;
  // A file replaced by the rename vanishes like an unlinked one.
  if (!(flags & RENAME_NOREPLACE)) unexport(dst_fd, dst_name.c_str());
  // From the rename to the claim, a drop of the name here waits (NameLocks).
  auto name_lock = name_locks_.lock(dst_dir, dst_name);
  struct stat replaced;
  const bool replaces = !(flags & RENAME_NOREPLACE) &&
                        ::fstatat(dst_fd, dst_name.c_str(), &replaced, AT_SYMLINK_NOFOLLOW) == 0;
  {
    ReaderLock gate(dir_gate_);
    if (dir_closing(dst_dir)) err = ENOENT;
    else if (::renameat2(src_fd, src_name.c_str(), dst_fd, dst_name.c_str(), flags) != 0) err = errno;
  }
  if (!err && replaces && !(known && replaced.st_ino == moved.st_ino)) forget_if_last_name(replaced);
  if (!err && known) {
    // An evicted handle is reopened by name: keep the name current.
    if (uint64_t id = inodes_.find_local(moved.st_dev, moved.st_ino)) {
      if (auto inode = inodes_.get(id)) inode->set_place(dst_dir, dst_name);
    }
    // Writers on other ranks follow the file here (kFileFind).
    if (S_ISREG(moved.st_mode)) renamed_.put(global_ino(moved.st_ino), {dst_dir, dst_name});
  }
  if (err) {
    name_lock.unlock();
    if (claimed_exclusive) loc_remove(dst_dir, dst_name, rank_);
    return err;
  }
  if (flags & RENAME_NOREPLACE) name_lock.unlock();
  if (!(flags & RENAME_NOREPLACE)) {
    // The new name is ours now: an older file of another rank under it is replaced.
    auto claim = loc_claim(dst_dir, dst_name, LocatorShard::kTakeOver);
    name_lock.unlock();
    if (claim && claim->result == LocatorShard::ClaimResult::kMoved && claim->prev_owner != rank_) {
      // The replaced file's inode on this rank is stale from now on.
      uint64_t old_gino = 0;
      struct stat ost;
      uint64_t oversion;
      // (Not if it has other names: it lives on under them.)
      if (remote_stat(claim->prev_owner, dst_dir, dst_name, &ost, &oversion) == 0 && ost.st_nlink <= 1) {
        old_gino = ost.st_ino;
      }
      peers_->call_all(Op::kFileDrop,
                         msg::encode(msg::Drop{{dst_dir, dst_name}, claim->prev_owner, old_gino, kDropReplaced}));
    } else if (!claim) {
      DSDFS_WARN("locator update for %s failed: %s", dst_name.c_str(), claim.status().to_string().c_str());
    }
  }
  if (src_dir != dst_dir || src_name != dst_name) {
    // Unless the name was made here again since (see unlink_here).
    auto src_lock = name_locks_.lock(src_dir, src_name);
    struct stat again;
    if (::fstatat(src_fd, src_name.c_str(), &again, AT_SYMLINK_NOFOLLOW) != 0) loc_remove(src_dir, src_name, rank_);
  }
  return 0;
}

Status Filesystem::rename(fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
                          unsigned int flags) {
  auto from = inode_of(parent);
  auto to = inode_of(newparent);
  if (!from || !to) return Status::error(ESTALE, "unknown directory");
  if (name_too_long(newname)) return Status::error(ENAMETOOLONG);
  return errno_status(rename_name(from->dir_id, from->dir_fd(), name, to->dir_id, to->dir_fd(), newname, flags));
}

int Filesystem::rename_name(uint64_t from_id, int from_fd, const char* name, uint64_t to_id, int to_fd,
                            const char* newname, unsigned flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
  struct stat st;
  if (::fstatat(from_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) {
      DirChange c;
      c.kind = DirChange::kRename;
      c.dir = from_id;
      c.name = name;
      c.dir2 = to_id;
      c.name2 = newname;
      c.flags = flags;
      return dir_mutate(c.encode());
    }
    return rename_local_file(from_id, name, from_fd, to_id, newname, to_fd, flags);
  }
  if (errno != ENOENT || peers_->nranks() == 1) return errno;
  auto owner = find_owner(from_id, name);
  if (!owner) return owner.err();
  if (owner.value() == rank_ || owner.value() == LocatorShard::kDirectory) return ENOENT;
  auto r = peers_->call(owner.value(), Op::kFileRename, msg::encode(msg::Rename{{from_id, name}, {to_id, newname}, flags}));
  return r ? 0 : r.err();
}

Result<struct statvfs> Filesystem::statfs() {
  struct statvfs sv;
  if (::fstatvfs(store_->files_fd(), &sv) != 0) return Status::from_errno("statfs");
  return sv;
}

}  // namespace dsdfs::fs
