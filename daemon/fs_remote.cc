// SPDX-License-Identifier: Apache-2.0
// Remote files, the client side: attributes from the owner, reads through the
// local cache (chunks fetched with one-sided gets or active messages), and
// writes forwarded to the owner (following a file that moves).
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <tuple>

#include "common/hash.h"
#include "common/log.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "daemon/messages.h"
#include "daemon/protocol.h"

namespace dsdfs::fs {

namespace {

// Chunks per fetch request, and how many chunks a sequential reader keeps in
// flight past the one it reads.
constexpr uint64_t kFetchChunks = 4;
constexpr uint64_t kReadaheadChunks = 16;

}  // namespace

int Filesystem::remote_stat(int owner, uint64_t dir, const std::string& name, struct stat* st,
                            uint64_t* version, std::vector<uint8_t>* data) {
  auto r = peers_->call(owner, Op::kFileStat,
                        msg::encode(msg::StatAsk{{dir, name}, data ? msg::kInlineMax : 0}));
  if (!r) return r.err();
  msg::StatBytes reply;
  if (!msg::decode(r.value(), &reply)) return EPROTO;
  *st = reply.stat.st;
  *version = reply.stat.version;
  if (data) *data = std::move(reply.data);
  return 0;
}

bool Filesystem::fill_cache(CacheEntry& c, const std::vector<uint8_t>& bytes) {
  if (bytes.empty() || bytes.size() != c.size() || c.size() > CacheEntry::kChunk || c.complete() ||
      c.claim_run(0, 1) == 0) {
    return false;
  }
  // As start_fetch: the blocks first, so that a full disk is no SIGBUS.
  if (::fallocate(c.fd(), 0, 0, static_cast<off_t>(bytes.size())) != 0 && errno != EOPNOTSUPP) {
    c.finish_with(0, 1, errno);
    return false;
  }
  std::memcpy(c.data(), bytes.data(), bytes.size());
  stats_add(stats_->bytes_read_remote, bytes.size());
  c.finish_with(0, 1, 0);
  return true;
}

int Filesystem::fill_remote_entry(int owner, uint64_t dir, const std::string& name, struct fuse_entry_param* e,
                                  std::shared_ptr<const std::vector<uint8_t>>* bytes) {
  std::memset(e, 0, sizeof *e);
  uint64_t version;
  std::vector<uint8_t> data;
  if (int err = remote_stat(owner, dir, name, &e->attr, &version, bytes ? &data : nullptr)) return err;
  if (bytes) *bytes = data.empty() ? nullptr : std::make_shared<const std::vector<uint8_t>>(std::move(data));
  RemoteRef ref{owner, dir, name, static_cast<uint64_t>(e->attr.st_ino), version};
  auto inode = inodes_.lookup_remote(ref, e->attr.st_mode, e->attr);
  e->ino = inode->id;
  // The name is not cached: every path walk asks the owner, which is how a
  // changed version reaches this kernel as a new inode (close-to-open). The
  // attributes are this version's (kRemoteAttrTimeout).
  e->attr_timeout = kRemoteAttrTimeout;
  e->entry_timeout = 0;
  return 0;
}

void Filesystem::remote_map(FileHandle& h) {
  if (!h.cache || h.cache->size() == 0 || h.cache->complete() || !peers_->bulk_uses_rma(h.ref.owner)) return;
  auto r = peers_->call(h.ref.owner, Op::kFileMap,
                         msg::encode(msg::Map{{h.ref.dir, h.ref.name}, h.ref.gino, h.ref.version}));
  if (!r) {
    DSDFS_INFO("owner %d did not export %s for RMA (%s): active messages instead", h.ref.owner, h.ref.name.c_str(),
               r.status().to_string().c_str());
    return;
  }
  msg::MapReply reply;
  if (!msg::decode(r.value(), &reply) || reply.length < h.cache->size()) return;
  h.rma_address = reply.address;
  h.rma_length = reply.length;
  h.rma_rkey.assign(reply.rkey.begin(), reply.rkey.end());
  h.use_rma = true;
  DSDFS_DEBUG("reading %s from rank %d with one-sided gets", h.ref.name.c_str(), h.ref.owner);
}

void Filesystem::start_fetch(const FileHandle& h, uint64_t first, uint64_t count) {
  std::shared_ptr<CacheEntry> c = h.cache;
  const uint64_t off = first * CacheEntry::kChunk;
  const uint64_t len = std::min<uint64_t>(count * CacheEntry::kChunk, c->size() - off);
  uint8_t* dst = c->data() + off;
  // The bytes arrive through the mapping, where a full disk would be a
  // SIGBUS: reserve the blocks first, so that it is an ENOSPC for this read.
  auto reserve = [&] { return ::fallocate(c->fd(), 0, static_cast<off_t>(off), static_cast<off_t>(len)) == 0; };
  bool reserved = reserve();
  if (!reserved && errno == ENOSPC && cache_.evict_unused(c->gino()) > 0) {
    DSDFS_INFO("cache disk full: dropped the cached copies of files no longer open");
    reserved = reserve();
  }
  if (!reserved && errno != EOPNOTSUPP) {
    int err = errno;
    DSDFS_WARN("cannot cache %s from rank %d: %s", h.ref.name.c_str(), h.ref.owner, std::strerror(err));
    return c->finish_with(first, count, err);
  }
  // Fault the pages in here rather than on the progress thread while it
  // receives: that thread is the one every byte passes through.
  (void)::madvise(dst, len, MADV_POPULATE_WRITE);  // dst is page-aligned; older kernels: EINVAL
  // Runs on the progress thread: bookkeeping only. The bytes are already in
  // the cache file's pages (the transport wrote them into its mapping).
  auto done = [this, c, first, count, len](int err) {
    if (err == 0) stats_add(stats_->bytes_read_remote, len);
    if (err == ESTALE) cache_.drop(c->gino(), c->version());  // a new version exists
    c->finish_with(first, count, err);
  };
  const int owner = h.ref.owner;
  if (h.use_rma && !c->rma_failed()) {
    // One-sided: the owner's CPU is not involved.
    peers_->get_async(owner, h.rma_address + off, h.rma_rkey, dst, len, c, [c, owner, done](Status s) {
      if (s) return done(0);
      DSDFS_INFO("RMA get from rank %d failed (%s): active messages instead", owner, s.to_string().c_str());
      c->set_rma_failed();
      done(EIO);  // a waiter retries, with active messages
    });
    return;
  }
  // Any version of this very file (one that grew since the open serves the
  // same bytes below the size the handle has); never another file that got
  // its inode number (the owner checks the identity bits of the version).
  auto request = msg::encode(msg::Read{{h.ref.dir, h.ref.name}, h.ref.gino, h.ref.version | kAnyVersionOfThisFile,
                                       off, static_cast<uint32_t>(len)});
  peers_->call_into_async(owner, Op::kFileRead, request, std::span<uint8_t>(dst, len), c,
                            [done, len](Result<size_t> r) {
                              if (!r) return done(file_left_owner(r.err()) ? ESTALE : EIO);
                              done(*r == len ? 0 : ESTALE);  // short: the file shrank, a new version
                            });
}

void Filesystem::fetch_ahead(const FileHandle& h, uint64_t from, uint64_t end) {
  auto& c = *h.cache;
  for (int64_t m = c.first_missing(from, end - 1); m >= 0; m = c.first_missing(from, end - 1)) {
    uint64_t k = static_cast<uint64_t>(m);
    uint64_t run = c.claim_run(k, std::min<uint64_t>(kFetchChunks, end - k));
    if (run > 0) start_fetch(h, k, run);
    from = k + std::max<uint64_t>(run, 1);
    if (from >= end) break;
  }
}

int Filesystem::wait_chunks(const FileHandle& h, uint64_t first, uint64_t last) {
  auto& c = *h.cache;
  for (uint64_t k = first; k <= last; ++k) {
    // A chunk whose fetch failed is fetched once more by this thread.
    for (int attempt = 0; !c.present(k); ++attempt) {
      if (attempt == 2) return c.last_error() != 0 ? c.last_error() : EIO;
      // Only what this read needs: fetch_ahead() widens sequential reads.
      uint64_t run = c.claim_run(k, last - k + 1);
      if (run > 0) start_fetch(h, k, run);
      if (!c.wait_fetched(k, peers_->timeout() * 2)) return EIO;
    }
  }
  return 0;
}

Result<std::vector<uint8_t>> Filesystem::read_through(const RemoteRef& ref, uint64_t off, size_t len) {
  auto r = peers_->call(ref.owner, Op::kFileRead,
                         msg::encode(msg::Read{{ref.dir, ref.name}, ref.gino, ref.version | kAnyVersionOfThisFile, off,
                                               static_cast<uint32_t>(std::min<size_t>(len, kMaxIo))}));
  // The file left its owner while open here (replaced, taken over): EIO.
  if (!r) return Status::error(file_left_owner(r.err()) ? EIO : r.err(), "read through");
  stats_add(stats_->bytes_read_remote, r->size());
  return std::move(r).value();
}

Result<Filesystem::ReadReply> Filesystem::remote_read(const Inode* inode, FileHandle& h, size_t size, off_t off) {
  ReadReply out;
  if (!h.cache) {
    // A writable remote handle: read through to the owner, uncached, from
    // whatever version the file has now (under its new name, after a rename
    // on its owner's node, as its writes do).
    RemoteRef ref = h.current_ref();
    auto r = read_through(ref, static_cast<uint64_t>(off), size);
    if (!r && r.err() == EIO && follow_rename(h, &ref)) r = read_through(ref, static_cast<uint64_t>(off), size);
    if (!r) return r.status();
    out.bytes = std::move(r).value();
    return out;
  }
  auto& c = *h.cache;
  uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(off) + size, c.size());
  // Writes through this kernel inode (an appender on this node) made the
  // kernel extend its size past the version's end, and it reads pages up to
  // there: serve those bytes as the owner has them now. A short answer would
  // be filled with zeros (writeback cache), which no version of the file had.
  const uint64_t extent = h.page_cache && inode ? inode->kernel_extent.load() : 0;
  if (extent > c.size() && static_cast<uint64_t>(off) + size > c.size()) {
    const uint64_t from = std::max<uint64_t>(static_cast<uint64_t>(off), c.size());
    const uint64_t to = std::min<uint64_t>(static_cast<uint64_t>(off) + size, extent);
    if (static_cast<uint64_t>(off) < end) {
      if (int err = wait_chunks(h, static_cast<uint64_t>(off) / CacheEntry::kChunk, (end - 1) / CacheEntry::kChunk)) {
        return Status::error(err == ESTALE ? EIO : err, "remote read");
      }
      out.bytes.assign(c.data() + off, c.data() + end);
    }
    if (from < to) {
      auto r = read_through(h.ref, from, to - from);
      if (!r) return r.status();
      out.bytes.insert(out.bytes.end(), r->begin(), r->end());
    }
    return out;
  }
  if (static_cast<uint64_t>(off) >= end) return out;  // nothing: the end of the file
  uint64_t first = static_cast<uint64_t>(off) / CacheEntry::kChunk;
  uint64_t last = (end - 1) / CacheEntry::kChunk;
  // A sequential reader keeps kReadaheadChunks past its read in flight, so
  // the owner's disk, the network and this reader work at the same time.
  uint64_t expected = h.next_chunk.load();
  if (first == expected || first + 1 == expected || first == 0) {
    uint64_t nchunks = (c.size() + CacheEntry::kChunk - 1) / CacheEntry::kChunk;
    fetch_ahead(h, first, std::min<uint64_t>(nchunks, last + 1 + kReadaheadChunks));
  }
  if (int err = wait_chunks(h, first, last)) return Status::error(err == ESTALE ? EIO : err, "remote read");
  h.next_chunk.store(last + 1);
  // The cache file lives as long as the handle.
  out.fd = c.fd();
  out.pos = off;
  out.size = end - static_cast<uint64_t>(off);
  return out;
}

bool Filesystem::follow_rename(FileHandle& h, RemoteRef* ref) {
  auto renamed = renamed_to(*ref);
  if (!renamed) return false;
  std::tie(ref->dir, ref->name) = std::move(renamed).value();
  h.set_ref(*ref);
  return true;
}

std::optional<std::pair<uint64_t, std::string>> Filesystem::renamed_to(const RemoteRef& ref) {
  // Only a file whose identity is known can be told from another that got
  // its inode number since (ext4 reuses one at once).
  const uint64_t identity = ref.version & kIdentityBits;
  if (identity == 0) return std::nullopt;
  // The owner knows where it renamed the file last, or scans the directory
  // for its inode number (kFileFind).
  auto r = peers_->call(ref.owner, Op::kFileFind, msg::encode(msg::Find{ref.dir, ref.gino}));
  msg::Name now;
  if (!r || !msg::decode(r.value(), &now) || (now.dir == ref.dir && now.name == ref.name)) return std::nullopt;
  // The handle takes the new name only for this very file: a name holding
  // another file with that inode number would take the handle's later writes
  // and, after an ownership move of that file, follow it by name (a torture
  // run wrote chaos cells into versioned files that way before this check).
  struct stat st;
  uint64_t version = 0;
  if (remote_stat(ref.owner, now.dir, now.name, &st, &version) != 0 || static_cast<uint64_t>(st.st_ino) != ref.gino ||
      (version & kIdentityBits) != identity) {
    return std::nullopt;
  }
  stats_add(stats_->renames_followed, 1);
  return std::make_pair(now.dir, std::move(now.name));
}

Result<size_t> Filesystem::remote_write(FileHandle& h, struct fuse_bufvec* in, off_t off) {
  size_t size = fuse_buf_size(in);
  if (size > kMaxIo) return Status::error(EFBIG, "remote write");
  // The request is built once, the bytes copied straight into it after its
  // header; a move (below) only writes a new header.
  auto header_of = [&](const RemoteRef& ref, uint32_t len) {
    WireWriter w;
    msg::Write{{ref.dir, ref.name}, ref.gino, ref.version, h.append, static_cast<uint64_t>(off), {}}.put_header(w, len);
    return w.take();
  };
  std::vector<uint8_t> request = header_of(h.current_ref(), static_cast<uint32_t>(size));
  size_t header = request.size();
  request.resize(header + size);
  struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
  dst.buf[0].mem = request.data() + header;
  ssize_t got = fuse_buf_copy(&dst, in, static_cast<fuse_buf_copy_flags>(0));
  if (got < 0) return Status::error(static_cast<int>(-got), "remote write");
  request.resize(header + static_cast<size_t>(got));
  const uint32_t got32 = static_cast<uint32_t>(got);
  auto set_header = [&](const RemoteRef& ref) {
    // The length is what was really copied; the header of a followed file
    // differs in size when its name did (a rename; moves keep names).
    std::vector<uint8_t> head = header_of(ref, got32);
    if (head.size() != header) {
      head.insert(head.end(), request.begin() + static_cast<ptrdiff_t>(header), request.end());
      request = std::move(head);
      header = request.size() - got32;
    } else {
      std::copy(head.begin(), head.end(), request.begin());
    }
  };
  // A file moved to another rank (`>` there) or renamed while open here:
  // follow it, a few moves and renames at most (each a completed change).
  for (int hop = 0; hop < 8; ++hop) {
    RemoteRef ref = h.current_ref();
    set_header(ref);
    auto r = peers_->call(ref.owner, Op::kFileWrite, request);
    if (!r && file_left_owner(r.err())) {
      // Renamed (log rotation on the owner's node: `mv log log.1`, or into
      // an `olddir`, while this node appends through an open fd): the write
      // goes to the file under its new name, as on a local file system.
      if (follow_rename(h, &ref)) continue;
      // The file left its owner otherwise (replaced, unlinked): EIO, as the
      // user guide says for handles of a file that is gone.
      return Status::error(EIO, "the file left its owner");
    }
    if (!r) return r.status();
    msg::WriteReply reply;
    if (!msg::decode(r.value(), &reply)) return Status::error(EPROTO, "write reply");
    const uint64_t written = reply.written;
    if (written == kWriteMoved) {
      int32_t to = reply.moved_to;
      if (to >= peers_->nranks()) return Status::error(EPROTO, "write reply");
      struct stat st;
      uint64_t version;
      // (to may be this rank: the call then runs here, through our own mount.)
      // Moved on again before this stat (another rank's O_TRUNC took the
      // name from the new owner too): the name's owner now has the file.
      int err = remote_stat(to, ref.dir, ref.name, &st, &version);
      for (int again = 0; err != 0 && file_left_owner(err) && again < 4; ++again) {
        auto owner = find_owner(ref.dir, ref.name);
        if (!owner || owner.value() < 0) break;  // the name is gone (or is a directory)
        to = owner.value();
        err = remote_stat(to, ref.dir, ref.name, &st, &version);
      }
      if (err != 0) return Status::error(EIO, "stat of a moved file");
      DSDFS_DEBUG("%s moved from rank %d to %d while open for writing: following it", ref.name.c_str(),
                  ref.owner, to);
      ref.owner = to;
      ref.gino = static_cast<uint64_t>(st.st_ino);
      ref.version = version;
      h.set_ref(std::move(ref));
      continue;
    }
    if (written > static_cast<uint64_t>(got)) return Status::error(EPROTO, "write reply");
    stats_add(stats_->bytes_forwarded, written);
    return static_cast<size_t>(written);
  }
  return Status::error(EIO, "remote write: the file kept moving");
}

}  // namespace dsdfs::fs
