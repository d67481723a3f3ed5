// SPDX-License-Identifier: Apache-2.0
// Directory listing of owned directories.
#include <dirent.h>
#include <cinttypes>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "daemon/filesystem.h"
#include "daemon/protocol.h"

namespace dsdfs::fs {

namespace {
// A snapshot of one directory, merged from this rank's replica (its
// directories and owned files) and every other rank's owned files, taken at
// opendir (rewinddir takes a new one). Owned by the kernel's handle (fi->fh);
// FUSE serialises readdir calls on one handle.
struct DirHandle {
  struct Entry {
    std::string name;
    uint8_t type;
    uint64_t ino;
    bool local;
  };
  UniqueFd fd;  // for fsyncdir
  std::vector<Entry> entries;
  bool listed = false;
};

DirHandle* dir_handle(uint64_t fh) { return reinterpret_cast<DirHandle*>(fh); }

bool is_dot_or_dotdot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}
}  // namespace

Result<uint64_t> Filesystem::opendir(fuse_ino_t ino) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  if (!S_ISDIR(inode->type)) return Status::error(ENOTDIR);
  auto d = std::make_unique<DirHandle>();
  d->fd.reset(::openat(inode->dir_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d->fd.valid()) return Status::from_errno("opendir");
  return reinterpret_cast<uint64_t>(d.release());
}

void Filesystem::note_moved_out(uint64_t dir) {
  MutexLock lock(moved_out_mu_);
  ++moved_out_[dir];
}

uint64_t Filesystem::moved_out(uint64_t dir) {
  MutexLock lock(moved_out_mu_);
  auto it = moved_out_.find(dir);
  return it == moved_out_.end() ? 0 : it->second;
}

int Filesystem::list_dir(uint64_t dir_id, int dir_fd, std::vector<DirEntryInfo>* out) {
  // A name that another rank takes over while the listing runs (a rename
  // onto it, `>`) exists throughout, but the new owner may be asked before it
  // has the name and the old owner after it dropped it. The old owner counts
  // such drops (DirListReply::moved, read after its listing, counted before
  // the drop), and a drop after the counts of the round before was read
  // means the listing may miss a name: it is taken again.
  const int n = peers_->nranks();
  std::vector<uint64_t> before(static_cast<size_t>(n), 0);
  std::vector<bool> known(static_cast<size_t>(n), false);
  if (n > 1) {
    auto counts = peers_->call_all(Op::kDirList, msg::encode(msg::DirList{dir_id, msg::DirList::kCountOnly}));
    for (int r = 0; r < n; ++r) {
      msg::DirListReply c;
      if (r != rank_ && counts[r] && msg::decode(counts[r].value(), &c)) {
        before[static_cast<size_t>(r)] = c.moved;
        known[static_cast<size_t>(r)] = true;
      }
    }
  }
  before[static_cast<size_t>(rank_)] = moved_out(dir_id);
  known[static_cast<size_t>(rank_)] = true;
  constexpr int kRounds = 8;
  for (int round = 0;; ++round) {
    out->clear();
    std::set<std::string> seen;
    int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    DIR* dp = ::fdopendir(fd);
    if (!dp) {
      int err = errno;
      ::close(fd);
      return err;
    }
    errno = 0;
    while (struct dirent* e = ::readdir(dp)) {
      out->push_back({e->d_name, e->d_type, global_ino(e->d_ino), true});
      seen.insert(e->d_name);
    }
    int err = errno;
    ::closedir(dp);
    if (err) return err;
    if (n == 1) return 0;
    const uint64_t here = moved_out(dir_id);
    bool moved = here != before[static_cast<size_t>(rank_)];
    before[static_cast<size_t>(rank_)] = here;
    // Every other rank's files in this directory, asked in parallel. A dead
    // rank's files are gone with it: the listing goes on without them.
    auto replies = peers_->call_all(Op::kDirList, msg::encode(msg::DirList{dir_id}));
    for (int r = 0; r < n; ++r) {
      if (r == rank_ || !replies[r]) continue;
      msg::DirListReply list;
      if (!msg::decode(replies[r].value(), &list)) {
        DSDFS_WARN("malformed directory listing from rank %d ignored", r);
        continue;
      }
      if (!known[static_cast<size_t>(r)] || list.moved != before[static_cast<size_t>(r)]) moved = true;
      before[static_cast<size_t>(r)] = list.moved;
      known[static_cast<size_t>(r)] = true;
      for (auto& f : list.entries) {
        // Its owner, for the lookups that usually follow a listing (ls -l, find).
        if (f.type != DT_DIR) owner_hints_.note(dir_id, f.name, r);
        if (seen.insert(f.name).second) out->push_back({std::move(f.name), f.type, f.gino, false});
      }
    }
    if (!moved) return 0;
    stats_add(stats_->listing_retries, 1);
    if (round + 1 == kRounds) {
      DSDFS_DEBUG("listing of directory %" PRIx64 ": names kept moving between ranks for %d rounds", dir_id,
                  kRounds);
      return 0;
    }
  }
}

Status Filesystem::readdir(fuse_ino_t ino, uint64_t fh, off_t off, bool plus, const DirSink& add) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  DirHandle* d = dir_handle(fh);
  if (off == 0 || !d->listed) {
    std::vector<DirEntryInfo> entries;
    if (int err = list_dir(inode->dir_id, inode->dir_fd(), &entries)) return Status::error(err, "listing");
    d->entries.clear();
    for (auto& e : entries) d->entries.push_back({std::move(e.name), e.type, e.ino, e.local});
    d->listed = true;
  }
  for (size_t i = static_cast<size_t>(off); i < d->entries.size(); ++i) {
    const auto& ent = d->entries[i];
    struct fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.attr.st_ino = ent.ino;
    e.attr.st_mode = static_cast<mode_t>(ent.type) << 12;
    if (plus && ent.local && !is_dot_or_dotdot(ent.name.c_str()) && do_lookup(*inode, ent.name.c_str(), &e) != 0) {
      // Raced with an unlink: list the name without attributes.
      std::memset(&e, 0, sizeof e);
      e.attr.st_ino = ent.ino;
      e.attr.st_mode = static_cast<mode_t>(ent.type) << 12;
    }
    if (!add(ent.name.c_str(), e, static_cast<off_t>(i + 1))) {
      // Did not fit: undo the lookup count the kernel will never see.
      if (plus && e.ino) inodes_.forget(e.ino, 1);
      break;
    }
  }
  return Status::ok();
}

void Filesystem::releasedir(uint64_t fh) { delete dir_handle(fh); }

Status Filesystem::fsyncdir(uint64_t fh, int datasync) {
  int fd = dir_handle(fh)->fd.get();
  if ((datasync ? ::fdatasync(fd) : ::fsync(fd)) != 0) return Status::from_errno("fsyncdir");
  return Status::ok();
}

}  // namespace dsdfs::fs
