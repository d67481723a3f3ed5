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

#include "daemon/errors.h"
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

DirHandle* dir_handle(struct fuse_file_info* fi) { return reinterpret_cast<DirHandle*>(fi->fh); }

bool is_dot_or_dotdot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}
}  // namespace

void Filesystem::opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto inode = inode_of(ino);
  if (!inode) return (void)reply_err(req, ESTALE);
  if (!S_ISDIR(inode->type)) return (void)reply_err(req, ENOTDIR);
  auto d = std::make_unique<DirHandle>();
  d->fd.reset(::openat(inode->dir_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d->fd.valid()) return (void)reply_err(req, errno);
  fi->fh = reinterpret_cast<uint64_t>(d.get());
  fi->keep_cache = 0;
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) == 0) d.release();
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

void Filesystem::readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info* fi, bool plus) {
  auto inode = inode_of(ino);
  if (!inode) return (void)reply_err(req, ESTALE);
  DirHandle* d = dir_handle(fi);
  if (off == 0 || !d->listed) {
    std::vector<DirEntryInfo> entries;
    if (int err = list_dir(inode->dir_id, inode->dir_fd(), &entries)) return (void)reply_err(req, err);
    d->entries.clear();
    for (auto& e : entries) d->entries.push_back({std::move(e.name), e.type, e.ino, e.local});
    d->listed = true;
  }
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < d->entries.size(); ++i) {
    const auto& ent = d->entries[i];
    const off_t next = static_cast<off_t>(i + 1);
    size_t added;
    if (plus) {
      struct fuse_entry_param e;
      std::memset(&e, 0, sizeof e);
      e.attr.st_ino = ent.ino;
      e.attr.st_mode = static_cast<mode_t>(ent.type) << 12;
      if (ent.local && !is_dot_or_dotdot(ent.name.c_str())) {
        if (do_lookup(*inode, ent.name.c_str(), &e) != 0) {
          // Raced with an unlink: list the name without attributes.
          std::memset(&e, 0, sizeof e);
          e.attr.st_ino = ent.ino;
          e.attr.st_mode = static_cast<mode_t>(ent.type) << 12;
        }
      }
      added = fuse_add_direntry_plus(req, buf.data() + used, size - used, ent.name.c_str(), &e, next);
      if (added > size - used) {
        // Did not fit: undo the lookup count the kernel will never see.
        if (e.ino) inodes_.forget(e.ino, 1);
        break;
      }
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = ent.ino;
      st.st_mode = static_cast<mode_t>(ent.type) << 12;
      added = fuse_add_direntry(req, buf.data() + used, size - used, ent.name.c_str(), &st, next);
      if (added > size - used) break;
    }
    used += added;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Filesystem::releasedir(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
  delete dir_handle(fi);
  reply_err(req, 0);
}

void Filesystem::fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, struct fuse_file_info* fi) {
  int fd = dir_handle(fi)->fd.get();
  int rc = datasync ? ::fdatasync(fd) : ::fsync(fd);
  reply_err(req, rc == 0 ? 0 : errno);
}

}  // namespace dsdfs::fs
