// SPDX-License-Identifier: Apache-2.0
// Names across ranks: the store's directories by id, the locator shard of a
// name (claims, lookups, the owners' fallback when a shard died), lookups of
// names owned elsewhere, and the routine every ownership move ends with
// (take_over).
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "common/mutex.h"
#include "common/hash.h"
#include "common/log.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "daemon/messages.h"
#include "daemon/protocol.h"

namespace dsdfs::fs {

std::shared_ptr<UniqueFd> Filesystem::local_dir(uint64_t dir) { return dirs_.fd_of(dir); }

Result<std::string> Filesystem::store_relative_path(int dir_fd) {
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlink(proc_path(dir_fd).c_str(), buf, PATH_MAX);
  if (n < 0) return Status::from_errno("readlink of a store directory");
  buf[n] = '\0';
  std::string full = buf;
  const std::string root = store_->files_path();
  if (full == root) return std::string();
  if (full.compare(0, root.size() + 1, root + "/") != 0) return Status::error(ESTALE, "directory left the store");
  return full.substr(root.size());
}

Result<std::string> Filesystem::mount_path(uint64_t dir, const std::string& name) {
  auto fd = local_dir(dir);
  if (!fd) return Status::error(ENOENT, "unknown directory");
  auto rel = store_relative_path(fd->get());
  if (!rel) return rel.status();
  return mountpoint_ + rel.value() + "/" + name;
}

Result<Filesystem::OwnerFd> Filesystem::open_in_mount(uint64_t dir, const std::string& name, const struct stat& st,
                                                       int flags) {
  // An owner-side handler reaches its file through this rank's mount (so
  // that this kernel's size and pages stay right) without a path walk where
  // it can: a walk that must look the name up takes the directory's lock
  // shared, and a FUSE create, unlink, link or rename in that directory
  // holds it while it waits, for another rank (whose handler may be waiting
  // the same way for this one: both then time out) or for the lock of a file
  // whose writer waits for this daemon (a write of a file that moved here,
  // forwarded to this rank itself: that wait has no timeout). By handle, the
  // kernel finds the inode by its node id (fuse_fh_to_dentry: FUSE's handle
  // is the node id and the generation, 0 here) and takes no directory lock.
  // It needs CAP_DAC_READ_SEARCH (a root daemon), and an inode the kernel
  // knows.
  const uint64_t id = inodes_.find_local(st.st_dev, st.st_ino);
  if (id != 0 && S_ISREG(st.st_mode) && by_handle_.load(std::memory_order_relaxed)) {
    struct {
      struct file_handle fh;
      uint32_t raw[3];
    } h{};
    h.fh.handle_bytes = sizeof h.raw;
    h.fh.handle_type = 0x81;  // FUSE's handle type (fs/fuse/inode.c)
    h.raw[0] = static_cast<uint32_t>(id >> 32);
    h.raw[1] = static_cast<uint32_t>(id);
    h.raw[2] = 0;
    // The mount's root, opened for each call (open_by_handle_at takes no
    // O_PATH fd; a long-lived fd would keep a detached mount alive).
    UniqueFd root(::open(mountpoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root.valid()) {
      UniqueFd fd(::open_by_handle_at(root.get(), &h.fh, flags | O_CLOEXEC));
      if (fd.valid()) return OwnerFd{std::move(fd), {}};
      if (errno == EPERM) by_handle_.store(false);  // not root: path walks from now on
    }
  }
  if (S_ISREG(st.st_mode)) {
    // No kernel inode of it: nothing in this kernel to keep right, so the
    // store's file itself, with lookups that would make one waiting.
    InodeTable::DirectHold direct(inodes_, st.st_dev, st.st_ino);
    if (direct) {
      auto dfd = local_dir(dir);
      if (!dfd) return Status::error(ENOENT, "unknown directory");
      UniqueFd fd(::openat(dfd->get(), name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC));
      struct stat now;
      if (!fd.valid() || ::fstat(fd.get(), &now) != 0) return Status::from_errno("open in the store");
      if (now.st_dev != st.st_dev || now.st_ino != st.st_ino) return Status::error(ESTALE, "replaced");
      return OwnerFd{std::move(fd), std::move(direct)};
    }
  }
  auto path = mount_path(dir, name);
  if (!path) return path.status();
  UniqueFd fd(::open(path->c_str(), flags | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("open through the mount");
  return OwnerFd{std::move(fd), {}};
}

Status Filesystem::check_owned(uint64_t dir, const std::string& name, uint64_t gino, struct stat* out) {
  // Owner-side handlers act only on a file this rank holds: going through the
  // mount to a name that has moved elsewhere would forward the request again
  // (and could come back here while the kernel holds that inode's lock).
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT, "unknown directory");
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("not here");
  if (S_ISDIR(st.st_mode)) return Status::error(EISDIR);
  if (gino != 0 && global_ino(st.st_ino) != gino) return Status::error(ESTALE, "replaced");
  if (out) *out = st;
  return Status::ok();
}

bool Filesystem::dir_closing(uint64_t dir) const { return closing_.count(dir) != 0; }

Result<LocatorShard::Claim> Filesystem::loc_claim(uint64_t dir, const std::string& name, uint32_t flags,
                                                  int expect, uint64_t expect_gen) {
  if (!peers_->quorate()) return Peers::fenced();
  const int shard = peers_->shard_of(dir, name);
  auto r = peers_->call(shard, Op::kLocClaim, msg::encode(msg::Claim{{dir, name}, rank_, flags, expect, expect_gen}));
  if (!r) return r.status();
  msg::ClaimReply reply;
  if (!msg::decode(r.value(), &reply)) return Status::error(EPROTO, "claim reply");
  LocatorShard::Claim claim{static_cast<LocatorShard::ClaimResult>(reply.result), reply.prev_owner, reply.gen};
  if (claim.result != LocatorShard::ClaimResult::kNew || (flags & LocatorShard::kIsDir) ||
      !shard_unsure(shard, dir, name)) {
    return claim;
  }
  // This shard took a dead shard's place, or came back after its daemon was
  // restarted, and started with no names: before
  // a file is made under a name it was just given, the owners' stores (the
  // truth) are asked whether a live rank already has one. If so, the name
  // is that rank's, at this shard too.
  const int holder = owner_by_asking_all(dir, name);
  if (holder < 0) return claim;
  // A take-over (a rename onto the name) takes it from that rank too: the
  // entry just made is the claimer's, and the caller drops the holder's copy.
  if (flags & LocatorShard::kTakeOver) return LocatorShard::Claim{LocatorShard::ClaimResult::kMoved, holder, claim.gen};
  auto back = peers_->call(shard, Op::kLocClaim,
                           msg::encode(msg::Claim{{dir, name}, holder, LocatorShard::kReplaceIf, rank_}));
  if (!back) DSDFS_WARN("locator claim of %s for rank %d: %s", name.c_str(), holder, back.status().to_string().c_str());
  if (flags & LocatorShard::kExclusive) return Status::error(EEXIST, "exists on rank " + std::to_string(holder));
  return LocatorShard::Claim{LocatorShard::ClaimResult::kExists, holder};
}

int Filesystem::owner_by_asking_all(uint64_t dir, const std::string& name) {
  auto all = peers_->call_all(Op::kOwnFind, msg::encode(msg::Name{dir, name}));
  for (int rk = 0; rk < peers_->nranks(); ++rk) {
    if (all[rk] && rk != rank_) return rk;
  }
  return -1;
}

void Filesystem::loc_remove(uint64_t dir, const std::string& name, int owner) {
  auto r = peers_->call(peers_->shard_of(dir, name), Op::kLocRemove, msg::encode(msg::LocRemove{{dir, name}, owner}));
  if (!r && r.err() != ENOENT) DSDFS_WARN("locator remove of %s: %s", name.c_str(), r.status().to_string().c_str());
}

Result<int> Filesystem::find_owner(uint64_t dir, const std::string& name) {
  if (!peers_->quorate()) return Peers::fenced();
  const int n = peers_->nranks();
  const int home = peers_->home_of(dir, name);
  if (peers_->alive(home)) {
    auto r = peers_->call(home, Op::kLocLookup, msg::encode(msg::Name{dir, name}));
    if (r) {
      msg::Owner owner;
      if (!msg::decode(r.value(), &owner) || owner.rank < LocatorShard::kDirectory || owner.rank >= n) {
        return Status::error(EPROTO, "lookup reply");
      }
      return owner.rank;
    }
    if (r.err() != EIO && r.err() != ETIMEDOUT && !(r.err() == ENOENT && shard_unsure(home, dir, name))) {
      return r.status();
    }
  }
  // The shard is gone: its index died with it, so ask the owners themselves
  // (also when it came back after a restart and does not know the name).
  if (int holder = owner_by_asking_all(dir, name); holder >= 0) return holder;
  return Status::error(ENOENT);
}

int Filesystem::lookup_any(const Inode& parent, const char* name, struct fuse_entry_param* e,
                           std::shared_ptr<const std::vector<uint8_t>>* bytes) {
  int err = do_lookup(parent, name, e);
  if (err != ENOENT || peers_->nranks() == 1) return err;
  // Another rank's file this rank has seen before: ask its owner directly
  // (OwnerHints says why an answer from it is the name's file). Not there
  // any more: its shard knows where the name went.
  if (int hint = owner_hints_.find(parent.dir_id, name); hint >= 0 && hint != rank_ && peers_->alive(hint)) {
    err = fill_remote_entry(hint, parent.dir_id, name, e, bytes);
    if (err == 0) stats_add(stats_->owner_hint_hits, 1);
    if (err == 0 || err == ETIMEDOUT) return err;  // (silent: the shard would send us to it again)
    stats_add(stats_->owner_hint_misses, 1);
    owner_hints_.forget(parent.dir_id, name, hint);
  }
  // The name can move between asking its shard and asking its owner (a
  // rename onto it, an O_TRUNC elsewhere): then ask the shard again, so a
  // reader sees the old or the new file, never none.
  int last_owner = -2;
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto owner = find_owner(parent.dir_id, name);
    if (!owner) {
      DSDFS_DEBUG("lookup of %s: no owner (%s)", name, owner.status().to_string().c_str());
      return owner.err();
    }
    if (owner.value() == LocatorShard::kDirectory) return ENOENT;  // mkdir in flight
    if (owner.value() == rank_) {
      // Claimed here: the file may have just arrived in the store.
      err = do_lookup(parent, name, e);
      if (err != ENOENT) return err;
    } else {
      err = fill_remote_entry(owner.value(), parent.dir_id, name, e, bytes);
      if (err == 0) owner_hints_.note(parent.dir_id, name, owner.value());
      if (err != ENOENT) return err;
    }
    DSDFS_DEBUG("lookup of %s: owner %d answered %d (attempt %d)", name, owner.value(), err, attempt);
    if (owner.value() == last_owner) break;
    last_owner = owner.value();
  }
  return ENOENT;
}

uint64_t Filesystem::dir_node(uint64_t dir) {
  auto fd = local_dir(dir);
  struct stat st;
  if (!fd || ::fstat(fd->get(), &st) != 0) return 0;
  return inodes_.find_local(st.st_dev, st.st_ino);
}

void Filesystem::kernel_attrs_changed(dev_t dev, ino_t ino) {
  // Attributes only (the link count): takes no lock, cannot block.
  if (uint64_t id = inodes_.find_local(dev, ino)) notifier_.dir_attrs_changed(id);
}

void Filesystem::forget_remote_file(uint64_t gino) {
  cache_.drop(gino);
  for (auto& inode : inodes_.find_remote(gino)) {
    inode->gone.store(true);
    notifier_.inode(inode->id);
  }
}

int Filesystem::take_over(uint64_t dir, const std::string& name, int prev_owner, mode_t mode, int open_flags,
                          int* fd_out, NameLock name_lock) {
  auto dfd = local_dir(dir);
  if (!dfd) return ENOENT;
  int fd;
  {
    ReaderLock gate(dir_gate_);
    if (dir_closing(dir)) return ENOENT;
    fd = ::openat(dfd->get(), name.c_str(), open_flags | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
  }
  if (name_lock.owns_lock()) name_lock.unlock();
  if (fd < 0) return errno;
  *fd_out = fd;
  if (prev_owner >= 0 && prev_owner != rank_) {
    auto all = peers_->call_all(Op::kFileDrop, msg::encode(msg::Drop{{dir, name}, prev_owner, 0, kDropMoved}));
    if (!all[static_cast<size_t>(prev_owner)]) {
      DSDFS_WARN("old owner %d did not drop %s: %s", prev_owner, name.c_str(),
                 all[static_cast<size_t>(prev_owner)].status().to_string().c_str());
    }
  }
  return 0;
}

}  // namespace dsdfs::fs
