// SPDX-License-Identifier: Apache-2.0
// Opening a name that other ranks may create, replace, move or remove at the
// same moment: one routine (open_name) resolves the name to the file it holds
// now and opens it, for create (O_CREAT), open and O_TRUNC ownership moves.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "common/mutex.h"
#include "common/log.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "daemon/protocol.h"

namespace dsdfs::fs {

namespace {

// Files of up to this many chunks are fetched whole at open.
constexpr uint64_t kPrefetchChunks = 4;
// How often open_name() follows a name that moves under it before it gives
// up with EIO. Every round is caused by another rank's change that completed
// in between (a claim, an unlink, a rename, a new version), so reaching the
// limit takes a name changed over and over again within one open.
constexpr int kOpenRounds = 64;

}  // namespace

int Filesystem::store_open_flags(int flags) {
  // The kernel's writeback cache decides write offsets itself, and may read
  // pages of a file opened write-only: open the store file read-write and
  // without O_APPEND (the kernel has already placed appended bytes at EOF).
  // O_DIRECT is between the caller and this kernel; the store file is written
  // with whatever alignment FUSE hands us.
  flags &= ~(O_NOFOLLOW | O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT);
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  flags &= ~O_APPEND;
  return flags | O_CLOEXEC;
}

int Filesystem::open_remote_handle(int owner, uint64_t dir, const std::string& name, const struct stat& st,
                                   uint64_t version, int flags, OpenedFile* out, bool fetch,
                                   const std::vector<uint8_t>* bytes) {
  auto h = std::make_unique<FileHandle>();
  h->remote = true;
  h->ref = RemoteRef{owner, dir, name, static_cast<uint64_t>(st.st_ino), version};
  h->attr = st;
  if ((flags & O_ACCMODE) != O_RDONLY) {
    // Every write goes to the owner before write() returns. Writes only need
    // the file's identity: a new version (others appending) is no obstacle.
    h->append = (flags & O_APPEND) != 0;
    out->direct_io = true;
  } else {
    bool hit = false;
    auto entry = cache_.open(h->ref.gino, version, static_cast<uint64_t>(st.st_size), &hit);
    if (!entry) return entry.err();
    stats_add(hit ? stats_->cache_hits : stats_->cache_misses, 1);
    h->cache = std::move(entry).value();
    remote_map(*h);
    // Small files come whole with the open, in one request, so that a reader
    // sees one version (the owner made its bytes up to the size it reported
    // complete on disk: on_file_stat); an open handle keeps its bytes even if
    // the owner drops the file right after. A file that shrank or was
    // replaced since the stat gives ESTALE, and the caller looks again. Also
    // on a cache hit: the entry may still be being fetched by an earlier
    // open, whose fetch can fail that way (the reads of this handle would
    // then fail with EIO, on a file opened after the version it shows).
    uint64_t chunks = (h->cache->size() + CacheEntry::kChunk - 1) / CacheEntry::kChunk;
    // Bytes the lookup brought: no request at all.
    if (fetch && bytes) (void)fill_cache(*h->cache, *bytes);
    if (fetch && chunks > 0 && chunks <= kPrefetchChunks && !h->cache->complete()) {
      fetch_ahead(*h, 0, chunks);
      if (int err = wait_chunks(*h, 0, chunks - 1)) return err;
    }
  }
  out->handle = std::move(h);
  out->owner = owner;
  out->st = st;
  out->version = version;
  return 0;
}

Result<Filesystem::OpenedFile> Filesystem::opened_here(int fd, bool created) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    int err = S_ISDIR(st.st_mode) ? EISDIR : errno;
    ::close(fd);
    return Status::error(err, "fstat");
  }
  OpenedFile out;
  out.handle = std::make_unique<FileHandle>();
  // Counted first (see OfferedFiles): a file offered to another rank's O_TRUNC
  // meanwhile is not opened here (the caller waits for the offer, then looks again).
  out.handle->open_hold = offered_.try_hold(global_ino(st.st_ino));
  if (!out.handle->open_hold) {
    ::close(fd);
    return Status::error(EAGAIN, "offered to another rank");
  }
  out.handle->fd = fd;
  out.handle->gino = global_ino(st.st_ino);
  out.owner = rank_;
  out.created = created;
  out.st = st;
  translate(&out.st);
  return out;
}

Result<Filesystem::OpenedFile> Filesystem::open_name(uint64_t dir, const std::string& name, int owner_hint,
                                                     int flags, mode_t mode, bool create,
                                                     const RecentLookups::Entry* known) {
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT, "unknown directory");
  int owner = owner_hint;
  int stale = -1;           // an owner that said it has no such file (its shard entry is stale)
  uint64_t stale_gen = 0;   // the generation of that entry (its claim reply)
  uint64_t owner_gen = 0;   // the generation of the entry that named `owner`
  int last_missing = -2;    // plain opens: the owner that last answered ENOENT
  for (int round = 0; round < kOpenRounds; ++round) {
    PendingNames::Guard creating;
    NameLock name_lock;  // claim to file, when ours (see unlink_here)
    bool claimed_new = false;
    int moved_from = -1;    // the claim took the name over from this rank
    if (create) {
      // Claim first: the shard decides who creates. Until our file exists,
      // other ranks asking us for it wait (PendingNames) instead of missing it.
      creating = pending_.hold(dir, name);
      name_lock = name_locks_.lock(dir, name);
      uint32_t cf = (flags & O_EXCL) ? uint32_t{LocatorShard::kExclusive} : 0u;
      if (stale >= 0) cf |= LocatorShard::kReplaceIf;
      auto claim = loc_claim(dir, name, cf, stale, stale_gen);
      if (!claim) return claim.status();
      if (claim->result == LocatorShard::ClaimResult::kExists && claim->prev_owner != rank_) {
        owner = claim->prev_owner;
        owner_gen = claim->gen;
        creating.release();
        name_lock.unlock();  // no RPC to another rank with it held
      } else {
        owner = rank_;
        claimed_new = claim->result == LocatorShard::ClaimResult::kNew;
        if (claim->result == LocatorShard::ClaimResult::kMoved) moved_from = claim->prev_owner;
      }
    } else if (owner < 0) {
      auto found = find_owner(dir, name);
      if (!found) return found.status();
      if (found.value() == LocatorShard::kDirectory) return Status::error(EISDIR, "now a directory");
      owner = found.value();
    }

    if (owner == rank_) {
      // Ours: the store file itself.
      if (flags & O_TRUNC) unexport(dfd->get(), name.c_str(), /*leaves=*/false);
      int fd;
      {
        ReaderLock gate(dir_gate_);
        fd = dir_closing(dir) ? (errno = ENOENT, -1)
                              : ::openat(dfd->get(), name.c_str(), store_open_flags(flags) | (create ? O_CREAT : 0),
                                         mode & 07777);
      }
      if (fd < 0) {
        int err = errno;
        if (claimed_new || moved_from >= 0) loc_remove(dir, name, rank_);
        if (name_lock.owns_lock()) name_lock.unlock();
        if (err == ENOENT && !create && last_missing != rank_) {
          // Not here (any more): the shard may know better.
          last_missing = rank_;
          owner = -1;
          continue;
        }
        return Status::error(err, "open in the store");
      }
      if (name_lock.owns_lock()) name_lock.unlock();
      struct stat here;
      if (::fstat(fd, &here) == 0) {
        const uint64_t g = global_ino(here.st_ino);
        if (claimed_new || moved_from >= 0) {
          offered_.settle(g);  // a new file: an offer of its number was of one gone before
        } else if (offered_.offered(g)) {
          // Offered to another rank's O_TRUNC, which takes the name over now:
          // wait for that, then follow the name.
          ::close(fd);
          offered_.wait(g);
          owner = -1;
          continue;
        }
      }
      auto opened = opened_here(fd, claimed_new || moved_from >= 0);
      if (!opened && opened.err() == EAGAIN) {
        owner = -1;  // offered just now: the next round waits for it
        continue;
      }
      return opened;
    }

    // Another rank's file: ask its owner what the name holds now.
    struct stat st;
    uint64_t version = 0;
    int err = 0;
    const std::vector<uint8_t>* bytes = nullptr;  // the lookup's, of that version
    if (known != nullptr && round == 0 && !create && owner == known->owner) {
      st = known->st;  // this call's lookup asked the owner microseconds ago
      version = known->version;
      bytes = known->data.get();
    } else {
      err = remote_stat(owner, dir, name, &st, &version);
    }
    if (err == ENOENT) {
      if (create) {
        // The shard names an owner that has no such file (it is unlinking or
        // renaming it away): replace that stale entry if it is still there,
        // and only that entry (the owner may have made a new file since).
        stale = owner;
        stale_gen = owner_gen;
        continue;
      }
      if (owner == last_missing) return Status::error(ENOENT, "no such file");
      last_missing = owner;
      owner = -1;
      continue;
    }
    if (err) return Status::error(err, "stat at the owner");
    if (S_ISDIR(st.st_mode)) return Status::error(EISDIR);
    if (!S_ISREG(st.st_mode)) return Status::error(EINVAL, "not a regular file");
    bool truncated_there = false;
    if ((flags & O_TRUNC) && st.st_size > 0 && (flags & O_ACCMODE) != O_RDONLY) {
      // `>` of another rank's non-empty file. If it is open on its owner,
      // the owner truncates it in place (moving it would break those
      // handles: a shared file opened with O_TRUNC by many ranks at once).
      auto tr = peers_->call(owner, Op::kFileTruncate,
                               msg::encode(msg::Truncate{{dir, name}, static_cast<uint64_t>(st.st_ino)}));
      if (!tr && (tr.err() == ENOENT || tr.err() == ESTALE)) {
        owner = -1;  // the name changed: look again
        continue;
      }
      if (!tr) return tr.status();
      msg::TruncateReply reply;
      if (!msg::decode(tr.value(), &reply)) return Status::error(EPROTO, "truncate reply");
      if (reply.truncated) {
        // (Its size may be more than 0 again: the handles open there write on.)
        st = reply.now.st;
        version = reply.now.version;
        truncated_there = true;
      }
    }
    if (!truncated_there && (flags & O_TRUNC) && st.st_size > 0 && (flags & O_ACCMODE) != O_RDONLY) {
      // Not open on its owner: the name moves here with a new, empty file,
      // if the owner still holds it (else follow the name). Truncating an
      // empty file changes nothing: concurrent O_TRUNC opens of one name
      // then share the file the first of them made.
      PendingNames::Guard taking = pending_.hold(dir, name);
      auto name_lock = name_locks_.lock(dir, name);
      // Only the entry that named it when it was offered (a create's claim
      // told its generation): if the name moved on and came back to that
      // rank with another file meanwhile, that file is not on offer.
      auto claim = loc_claim(dir, name, LocatorShard::kReplaceIf, owner, create ? owner_gen : 0);
      if (!claim) return claim.status();
      if (claim->result == LocatorShard::ClaimResult::kExists && claim->prev_owner != rank_) {
        owner = claim->prev_owner;  // someone else moved it first
        continue;
      }
      int prev = claim->result == LocatorShard::ClaimResult::kMoved ? claim->prev_owner : -1;
      int fd;
      // (take_over creates the file, releases the lock, then drops the old copies.)
      if (int terr = take_over(dir, name, prev, st.st_mode, O_RDWR, &fd, std::move(name_lock))) {
        return Status::error(terr, "take over");
      }
      forget_remote_file(static_cast<uint64_t>(st.st_ino));
      // The name is ours now: whatever this store held under it is not on
      // offer any more (an offer of it to a rank whose claim lost to ours).
      struct stat taken;
      if (::fstat(fd, &taken) == 0) offered_.settle(global_ino(taken.st_ino));
      return opened_here(fd, /*created=*/true);
    }
    OpenedFile out;
    err = open_remote_handle(owner, dir, name, st, version, flags, &out, /*fetch=*/true, bytes);
    if (err == ESTALE || err == ENOENT) continue;  // changed while we fetched it: look again
    if (err) return Status::error(err, "open of a remote file");
    return out;
  }
  DSDFS_WARN("open of %s: the name changed %d times during one open", name.c_str(), kOpenRounds);
  return Status::error(EIO, "name keeps changing");
}

}  // namespace dsdfs::fs
