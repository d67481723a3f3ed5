// SPDX-License-Identifier: Apache-2.0
// Directory mutations: ordered by the coordinator (the lowest live rank) and
// applied to every rank's replica before the caller's request returns.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "common/mutex.h"
#include "common/log.h"
#include "daemon/filesystem.h"
#include "daemon/protocol.h"
#include "daemon/store.h"

namespace dsdfs::fs {

namespace {

// The first error among the live ranks' replies (dead ranks do not vote).
int first_error(const std::vector<Peers::Reply>& replies, const Peers& peers) {
  for (int r = 0; r < static_cast<int>(replies.size()); ++r) {
    if (!replies[r] && peers.alive(r)) return replies[r].err();
  }
  return 0;
}

// The first refusal among the live ranks' replies: an error other than a
// timeout (a rank that did not answer in time applies the change when it
// runs again, in its order: kDirApply is an ordered handler).
int first_refusal(const std::vector<Peers::Reply>& replies, const Peers& peers) {
  for (int r = 0; r < static_cast<int>(replies.size()); ++r) {
    if (!replies[r] && replies[r].err() != ETIMEDOUT && peers.alive(r)) return replies[r].err();
  }
  return 0;
}

}  // namespace

int Filesystem::dir_mutate(std::span<const uint8_t> change, uint64_t* made) {
  if (!peers_->quorate()) return Peers::fenced().err();
  auto r = peers_->call(peers_->coordinator(), Op::kDirMutate, change);
  if (!r) return r.err();
  if (made) {
    msg::MadeDir reply;
    if (!msg::decode(r.value(), &reply)) return EPROTO;
    *made = reply.dir;
  }
  return 0;
}

Peers::Reply Filesystem::on_dir_mutate(int source, const DirChange& change) {
  DirChange c = change;
  // The rank whose request this is: it needs no notification (on_dir_apply).
  // The transport's source rank, unless a rank passed the request on.
  if (c.origin < 0 || c.origin >= peers_->nranks()) c.origin = source;
  // A lower rank is back (its daemon was restarted and rejoined) and orders
  // the changes now; a request sent before its sender knew goes on to it,
  // so that two ranks never order changes at once.
  if (const int coord = peers_->coordinator(); coord < rank_ && rejoined_[static_cast<size_t>(coord)].load()) {
    return peers_->call(coord, Op::kDirMutate, c.encode());
  }
  MutexLock order(coord_mu_);
  if (!peers_->quorate()) return Peers::fenced();
  auto apply_all = [&](const DirChange& change) { return peers_->call_all(Op::kDirApply, change.encode()); };
  switch (c.kind) {
    case DirChange::kMkdir: {
      if (!valid_name(c.name)) return Status::error(EINVAL);
      auto claim = loc_claim(c.dir, c.name, LocatorShard::kIsDir);
      if (!claim) {
        // No answer from the shard: the claim may still land there later
        // (a stopped shard runs it when it continues). Its remove, sent now,
        // lands after it (a shard answers its requests in order) and forgets
        // the name only if it is still claimed for a directory.
        if (claim.err() != EEXIST && claim.err() != EISDIR) loc_remove(c.dir, c.name, LocatorShard::kDirectory);
        return claim.status();
      }
      c.dir2 = (static_cast<uint64_t>(rank_) << 48) | next_dir_id_.fetch_add(1);
      auto replies = apply_all(c);
      if (int err = first_error(replies, *peers_)) {
        // Undone everywhere (a rank that did not answer gets both, in
        // order), unless a rank that had the directory already holds a file
        // in it (made there the moment it appeared): then that rank keeps
        // it, and so must every other one, or the replicas split for good.
        DirChange undo = c;
        undo.kind = DirChange::kRmdirCommit;
        auto undone = apply_all(undo);
        bool kept = false;
        for (int r = 0; r < static_cast<int>(undone.size()); ++r) {
          if (!undone[r] && (undone[r].err() == ENOTEMPTY || undone[r].err() == EEXIST) && peers_->alive(r)) kept = true;
        }
        if (!kept) {
          loc_remove(c.dir, c.name, LocatorShard::kDirectory);
          return Status::error(err);
        }
        DSDFS_WARN("mkdir of directory %s: a file was made in it before its undo; it stays on every rank",
                   c.name.c_str());
        // Again where it was removed (the same id: no change where it
        // stayed); a rank that is still late gets all three in order.
        if (int again = first_refusal(apply_all(c), *peers_)) return Status::error(again);
      }
      return msg::encode(msg::MadeDir{c.dir2});  // the caller answers its kernel with it
    }
    case DirChange::kRmdir: {
      DirChange prep = c;
      prep.kind = DirChange::kRmdirPrepare;
      int err = first_error(apply_all(prep), *peers_);
      DirChange fin = c;
      fin.kind = err ? DirChange::kRmdirAbort : DirChange::kRmdirCommit;
      // The locator shard forgets the name while it commits, instead of in
      // a round trip of its own afterwards. A create of a file of that name
      // racing this rmdir finds either the directory or no name.
      const int shard = peers_->shard_of(c.dir, c.name);
      if (!err) fin.locator = shard;
      auto replies = apply_all(fin);
      if (err) return Status::error(err);
      if (int err2 = first_error(replies, *peers_)) return Status::error(err2);
      // The shard did not commit (it died, or is no live rank's any more).
      if (shard < 0 || shard >= static_cast<int>(replies.size()) || !replies[shard]) {
        loc_remove(c.dir, c.name, LocatorShard::kDirectory);
      }
      return std::vector<uint8_t>();
    }
    case DirChange::kRename: {
      if (!valid_name(c.name) || !valid_name(c.name2)) return Status::error(EINVAL);
      // Decided here, then applied everywhere. Everything that could make
      // a rank refuse it is settled before: the target directory is empty
      // on every rank and closed to new files (as for rmdir), or the name
      // is claimed for the directory at the shard, so no rank can make a
      // file of it meanwhile. A rank that times out (stopped, starved)
      // still applies the change in its order when it runs again: an undo
      // goes to it too, after the change.
      DirChange target{};
      target.kind = DirChange::kRmdirPrepare;
      target.dir = c.dir2;
      target.name = c.name2;
      bool had_target = false, claimed = false;
      // Directories: this replica knows (this rank orders every directory
      // change, and has applied each before the next). Files: their shards.
      auto parent = local_dir(c.dir);
      auto parent2 = local_dir(c.dir2);
      if (!parent || !parent2) return Status::error(ENOENT, "unknown directory");
      struct stat st;
      if (::fstatat(parent->get(), c.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
        return Status::error(ENOENT);  // removed or renamed since the caller looked
      }
      if (!(c.flags & RENAME_EXCHANGE)) {
        if (::fstatat(parent2->get(), c.name2.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
          if (c.flags & RENAME_NOREPLACE) return Status::error(EEXIST);
          had_target = true;
          int err = first_error(apply_all(target), *peers_);
          if (err) {
            target.kind = DirChange::kRmdirAbort;
            apply_all(target);
            return Status::error(err == ENOENT ? ENOTEMPTY : err);
          }
        } else {
          auto owner = find_owner(c.dir2, c.name2);
          if (!owner && owner.err() != ENOENT) return owner.status();  // not known: not "no target"
          if (owner && owner.value() == LocatorShard::kDirectory) {
            // No such directory in this replica, which is the truth for
            // directories: a stale entry (a remove that got no answer).
            loc_remove(c.dir2, c.name2, LocatorShard::kDirectory);
          } else if (owner) {
            return Status::error((c.flags & RENAME_NOREPLACE) ? EEXIST : ENOTDIR);  // not over a file
          }
          auto claim = loc_claim(c.dir2, c.name2, LocatorShard::kIsDir);
          if (!claim) {
            // A file of that name was made meanwhile; or no answer, and the
            // claim may still land: its remove, sent now, lands after it.
            if (claim.err() == EEXIST) return Status::error((c.flags & RENAME_NOREPLACE) ? EEXIST : ENOTDIR);
            loc_remove(c.dir2, c.name2, LocatorShard::kDirectory);
            return claim.status();
          }
          claimed = true;
        }
      }
      auto replies = apply_all(c);
      // Refused by a live rank (its replica differs: nothing above allows
      // that), or not answered in time: undone where it was or may yet be
      // applied, in order (a late rank gets both). Undone on the ranks that
      // answered only, the late rank was left alone with the new name, for
      // good.
      const int refused = first_error(replies, *peers_);
      // Applied on some ranks, refused outright by others: the replicas differed.
      const int refusal = first_refusal(replies, *peers_);
      const bool split = refusal != 0 && std::any_of(replies.begin(), replies.end(),
                                                     [](const Peers::Reply& r) { return r.is_ok(); });
      if (refused) {
        DirChange back = c;
        back.kind = DirChange::kRenameBack;
        for (int r = 0; r < static_cast<int>(replies.size()); ++r) {
          if (replies[r] || replies[r].err() == ETIMEDOUT) peers_->call(r, Op::kDirApply, back.encode());
        }
        if (had_target) {
          target.kind = DirChange::kRmdirAbort;
          apply_all(target);
        }
        if (claimed) loc_remove(c.dir2, c.name2, LocatorShard::kDirectory);
        if (split) {
          DSDFS_WARN("rename of directory %s to %s refused by some ranks (%s), undone on the others",
                     c.name.c_str(), c.name2.c_str(), std::strerror(refusal));
        }
        return Status::error(refused);
      }
      if (!(c.flags & RENAME_EXCHANGE)) loc_remove(c.dir, c.name, LocatorShard::kDirectory);
      return std::vector<uint8_t>();
    }
    case DirChange::kSetattr: {
      int err = first_error(apply_all(c), *peers_);
      if (err) return Status::error(err);
      return std::vector<uint8_t>();
    }
    default:
      return Status::error(EINVAL, "not a coordinator operation");
  }
}

Peers::Reply Filesystem::on_dir_apply(int, const DirChange& c) {
  auto parent = local_dir(c.dir);
  if (!parent) return Status::error(ENOENT, "unknown directory");
  const int pfd = parent->get();
  // What the other ranks' kernels may have cached is stale now. The rank that
  // asked for the change updates its own cache from the reply: its kernel
  // holds the directories it changes locked until then (no lookup there can
  // race it) and takes new attributes from the reply. Never waits for the
  // kernel (Notifier).
  const bool tell_kernel = c.origin != rank_;
  auto id_of_child = [&](int dfd, const std::string& name) -> std::optional<uint64_t> {
    struct stat st;
    if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
    return dirs_.id_of(st.st_dev, st.st_ino);
  };
  switch (c.kind) {
    case DirChange::kMkdir: {
      if (!valid_name(c.name)) return Status::error(EINVAL);
      if (::mkdirat(pfd, c.name.c_str(), c.mode & 07777) != 0) {
        if (errno != EEXIST) return Status::from_errno("mkdir");
        auto existing = id_of_child(pfd, c.name);
        if (!existing || *existing != c.dir2) return Status::error(EEXIST);
      }
      if (run_as_root_) ::fchownat(pfd, c.name.c_str(), c.uid, c.gid, AT_SYMLINK_NOFOLLOW);
      auto fd = std::make_shared<UniqueFd>(::openat(pfd, c.name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      struct stat st;
      if (!fd->valid() || ::fstat(fd->get(), &st) != 0) return Status::from_errno("mkdir open");
      if (c.origin == rank_) {
        // For our mkdir's answer, even if the directory is renamed or
        // removed before it is sent (Filesystem::mkdir).
        MutexLock lock(made_mu_);
        made_dirs_[c.dir2] = fd;
      }
      remember_dir_id(fd->get(), c.dir2);
      dirs_.add(c.dir2, std::move(fd), st.st_dev, st.st_ino);
      // The name was not cached (negative entries never are); the parent's
      // link count and times were.
      if (tell_kernel) notifier_.dir_attrs_changed(dir_node(c.dir));
      return std::vector<uint8_t>();
    }
    case DirChange::kRmdirPrepare: {
      WriterLock gate(dir_gate_);
      auto id = id_of_child(pfd, c.name);
      if (!id) {
        struct stat st;
        if (::fstatat(pfd, c.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return Status::error(ENOTDIR);
        return Status::error(ENOENT);
      }
      int err;
      if (!dir_is_empty(pfd, c.name, &err)) return Status::error(err);
      closing_.insert(*id);
      return std::vector<uint8_t>();
    }
    case DirChange::kRmdirCommit: {
      WriterLock gate(dir_gate_);
      auto id = id_of_child(pfd, c.name);
      if (c.dir2 != 0 && (!id || *id != c.dir2)) {
        // The undo of a mkdir that failed (on_dir_mutate) removes the
        // directory it made, never another one of that name.
        gate.unlock();
        MutexLock lock(made_mu_);
        made_dirs_.erase(c.dir2);
        return std::vector<uint8_t>();
      }
      if (::unlinkat(pfd, c.name.c_str(), AT_REMOVEDIR) != 0) {
        if (id) closing_.erase(*id);
        return Status::from_errno("rmdir");
      }
      if (id) {
        closing_.erase(*id);
        dirs_.remove(*id);
      }
      gate.unlock();
      if (c.dir2 != 0) {
        // The undo of a mkdir that failed elsewhere (on_dir_mutate).
        MutexLock lock(made_mu_);
        made_dirs_.erase(c.dir2);
      }
      if (c.locator == rank_) shard_.remove(c.dir, c.name, LocatorShard::kDirectory);
      if (tell_kernel) {
        const uint64_t pnode = dir_node(c.dir);
        notifier_.names_changed({{pnode, c.name}});
        notifier_.dir_attrs_changed(pnode);
      }
      return std::vector<uint8_t>();
    }
    case DirChange::kRmdirAbort: {
      WriterLock gate(dir_gate_);
      if (auto id = id_of_child(pfd, c.name)) closing_.erase(*id);
      return std::vector<uint8_t>();
    }
    case DirChange::kRename:
    case DirChange::kRenameBack: {
      auto parent2 = local_dir(c.dir2);
      if (!parent2) return Status::error(ENOENT, "unknown directory");
      int from_fd = pfd, to_fd = parent2->get();
      std::string from = c.name, to = c.name2;
      unsigned flags = c.flags;
      if (c.kind == DirChange::kRenameBack) {
        std::swap(from_fd, to_fd);
        std::swap(from, to);
        // Never over a directory that took the old name meanwhile.
        flags = (flags & RENAME_EXCHANGE) ? flags & RENAME_EXCHANGE : RENAME_NOREPLACE;
      }
      WriterLock gate(dir_gate_);
      auto replaced = (flags & RENAME_EXCHANGE) ? std::nullopt : id_of_child(to_fd, to);
      if (::renameat2(from_fd, from.c_str(), to_fd, to.c_str(), flags) != 0) return Status::from_errno("rename");
      if (replaced) {
        closing_.erase(*replaced);
        dirs_.remove(*replaced);
      }
      gate.unlock();
      if (tell_kernel) {
        // Both names changed, whichever way the rename went.
        const uint64_t pnode = dir_node(c.dir);
        uint64_t pnode2 = 0;
        struct stat st;
        if (::fstat(parent2->get(), &st) == 0) pnode2 = inodes_.find_local(st.st_dev, st.st_ino);
        notifier_.names_changed({{pnode, c.name}, {pnode2, c.name2}});
        notifier_.dir_attrs_changed(pnode);
        if (pnode2 != pnode) notifier_.dir_attrs_changed(pnode2);
      }
      return std::vector<uint8_t>();
    }
    case DirChange::kSetattr: {
      // c.dir is the directory itself here.
      std::string path = proc_path(pfd);
      if ((c.flags & FUSE_SET_ATTR_MODE) && ::chmod(path.c_str(), c.mode & 07777) != 0) return Status::from_errno("chmod");
      if (c.flags & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        if (::chown(path.c_str(), (c.flags & FUSE_SET_ATTR_UID) ? c.uid : static_cast<uid_t>(-1),
                    (c.flags & FUSE_SET_ATTR_GID) ? c.gid : static_cast<gid_t>(-1)) != 0) {
          return Status::from_errno("chown");
        }
      }
      if (c.flags & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
        struct timespec tv[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
        if (c.flags & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
        else if (c.flags & FUSE_SET_ATTR_ATIME) tv[0] = {c.atime_s, c.atime_ns};
        if (c.flags & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
        else if (c.flags & FUSE_SET_ATTR_MTIME) tv[1] = {c.mtime_s, c.mtime_ns};
        if (::utimensat(AT_FDCWD, path.c_str(), tv, 0) != 0) return Status::from_errno("utimens");
      }
      if (tell_kernel) notifier_.dir_attrs_changed(dir_node(c.dir));
      return std::vector<uint8_t>();
    }
    default:
      return Status::error(EINVAL);
  }
}

}  // namespace dsdfs::fs
