// SPDX-License-Identifier: Apache-2.0
// The distributed half of the file system: locator, owners, remote files,
// and the RPC handlers that other ranks call.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstring>

#include "common/hash.h"
#include "common/log.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "daemon/messages.h"
#include "daemon/protocol.h"
#include "rdma/transport.h"

namespace dsdfs::fs {

namespace {

// Chunks per fetch request, and how many chunks a sequential reader keeps in
// flight past the one it reads.
constexpr uint64_t kFetchChunks = 4;
constexpr uint64_t kReadaheadChunks = 16;
// How far past a served read the owner asks its kernel to read ahead.
constexpr uint64_t kOwnerReadahead = kReadaheadChunks * CacheEntry::kChunk;

Status bad_request(const char* what) {
  DSDFS_WARN("malformed %s request dropped", what);
  return Status::error(EPROTO, what);
}

}  // namespace

void Filesystem::register_rpcs() {
  // Every handler gets its request decoded and validated (daemon/messages.h);
  // a malformed one is answered EPROTO here. inline_op: answered on the
  // progress thread (Cluster::register_inline_handler).
  auto reg = [this]<typename M>(Op op, Cluster::Reply (Filesystem::*fn)(int, const M&), bool inline_op = false) {
    Cluster::Handler h = [this, fn](int src, std::span<const uint8_t> p) -> Cluster::Reply {
      M m;
      if (!msg::decode(p, &m)) return bad_request(M::kName);
      return (this->*fn)(src, m);
    };
    if (inline_op) cluster_->register_inline_handler(op, std::move(h));
    else cluster_->register_handler(op, std::move(h));
  };
  reg(Op::kDirMutate, &Filesystem::on_dir_mutate);
  reg(Op::kDirApply, &Filesystem::on_dir_apply);
  // The locator shard is in memory: its ops are answered on the progress thread.
  reg(Op::kLocClaim, &Filesystem::on_loc_claim, true);
  reg(Op::kLocLookup, &Filesystem::on_loc_lookup, true);
  reg(Op::kLocRemove, &Filesystem::on_loc_remove, true);
  reg(Op::kOwnFind, &Filesystem::on_own_find);
  reg(Op::kFileStat, &Filesystem::on_file_stat);
  reg(Op::kFileWrite, &Filesystem::on_file_write);
  reg(Op::kDirList, &Filesystem::on_dir_list);
  reg(Op::kFileUnlink, &Filesystem::on_file_unlink);
  reg(Op::kFileRename, &Filesystem::on_file_rename);
  reg(Op::kFileDrop, &Filesystem::on_file_drop);
  reg(Op::kFileReadlink, &Filesystem::on_file_readlink);
  reg(Op::kFileSetattr, &Filesystem::on_file_setattr);
  reg(Op::kFileMap, &Filesystem::on_file_map);
  reg(Op::kFileTruncate, &Filesystem::on_file_truncate);
  reg(Op::kFileLink, &Filesystem::on_file_link);
  // Reads answer with borrowed bytes: the buffer goes out without a copy.
  cluster_->register_raw_handler(Op::kFileRead, [this](int, std::span<const uint8_t> p, rdma::Responder r) {
    auto buf = read_buffers_->get();
    auto n = read_for_peer(p, buf.get(), read_buffers_->buffer_size());
    if (!n) return r.reply_error(n.err());
    std::span<const uint8_t> bytes(buf.get(), n.value());  // before buf is moved
    r.reply(bytes, std::move(buf));
  });
}

// ---------------------------------------------------------------------------
// Local helpers

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


Status Filesystem::check_owned(uint64_t dir, const std::string& name, uint64_t gino) {
  // Owner-side handlers act only on a file this rank holds: going through the
  // mount to a name that has moved elsewhere would forward the request again
  // (and could come back here while the kernel holds that inode's lock).
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT, "unknown directory");
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("not here");
  if (S_ISDIR(st.st_mode)) return Status::error(EISDIR);
  if (gino != 0 && global_ino(st.st_ino) != gino) return Status::error(ESTALE, "replaced");
  return Status::ok();
}

Result<std::string> Filesystem::owned_path(uint64_t dir, const std::string& name, uint64_t gino) {
  if (Status s = check_owned(dir, name, gino); !s) return s;
  return mount_path(dir, name);
}

bool Filesystem::dir_closing(uint64_t dir) const { return closing_.count(dir) != 0; }

// ---------------------------------------------------------------------------
// Locator

Result<LocatorShard::Claim> Filesystem::loc_claim(uint64_t dir, const std::string& name, uint32_t flags,
                                                  int expect) {
  auto r = cluster_->call(cluster_->shard_of(dir, name), Op::kLocClaim,
                         msg::encode(msg::Claim{{dir, name}, rank_, flags, expect}));
  if (!r) return r.status();
  msg::ClaimReply reply;
  if (!msg::decode(r.value(), &reply)) return Status::error(EPROTO, "claim reply");
  return LocatorShard::Claim{static_cast<LocatorShard::ClaimResult>(reply.result), reply.prev_owner};
}

void Filesystem::loc_remove(uint64_t dir, const std::string& name, int owner) {
  auto r = cluster_->call(cluster_->shard_of(dir, name), Op::kLocRemove, msg::encode(msg::LocRemove{{dir, name}, owner}));
  if (!r && r.err() != ENOENT) DSDFS_WARN("locator remove of %s: %s", name.c_str(), r.status().to_string().c_str());
}

Cluster::Reply Filesystem::on_loc_claim(int, const msg::Claim& m) {
  if (m.owner >= cluster_->nranks() || m.expect >= cluster_->nranks()) return bad_request("claim");
  auto c = shard_.claim(m.at.dir, m.at.name, m.owner, m.flags, m.expect);
  if (!c) return c.status();
  return msg::encode(msg::ClaimReply{static_cast<uint8_t>(c->result), c->prev_owner});
}

Cluster::Reply Filesystem::on_loc_lookup(int, const msg::Name& m) {
  auto owner = shard_.lookup(m.dir, m.name);
  if (!owner) return owner.status();
  return msg::encode(msg::Owner{owner.value()});
}

Cluster::Reply Filesystem::on_loc_remove(int, const msg::LocRemove& m) {
  if (!shard_.remove(m.at.dir, m.at.name, m.owner)) return Status::error(ENOENT);
  return std::vector<uint8_t>();
}

Cluster::Reply Filesystem::on_own_find(int, const msg::Name& m) {
  auto dfd = local_dir(m.dir);
  struct stat st;
  if (!dfd || ::fstatat(dfd->get(), m.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) {
    return Status::error(ENOENT);
  }
  return msg::encode(msg::Owner{rank_});
}

Result<int> Filesystem::find_owner(uint64_t dir, const std::string& name) {
  const int n = cluster_->nranks();
  const int home = static_cast<int>(Cluster::placement_hash(dir, name) % static_cast<uint64_t>(n));
  if (cluster_->alive(home)) {
    auto r = cluster_->call(home, Op::kLocLookup, msg::encode(msg::Name{dir, name}));
    if (r) {
      msg::Owner owner;
      if (!msg::decode(r.value(), &owner) || owner.rank < LocatorShard::kDirectory || owner.rank >= n) {
        return Status::error(EPROTO, "lookup reply");
      }
      return owner.rank;
    }
    if (r.err() != EIO && r.err() != ETIMEDOUT) return r.status();
  }
  // The shard is gone: its index died with it, so ask the owners themselves.
  auto all = cluster_->call_all(Op::kOwnFind, msg::encode(msg::Name{dir, name}));
  for (int rk = 0; rk < n; ++rk) {
    if (all[rk] && rk != rank_) return rk;
  }
  return Status::error(ENOENT);
}

// ---------------------------------------------------------------------------
// Remote attributes and lookups

int Filesystem::remote_stat(int owner, uint64_t dir, const std::string& name, struct stat* st,
                            uint64_t* version) {
  auto r = cluster_->call(owner, Op::kFileStat, msg::encode(msg::Name{dir, name}));
  if (!r) return r.err();
  msg::Stat reply;
  if (!msg::decode(r.value(), &reply)) return EPROTO;
  *st = reply.st;
  *version = reply.version;
  return 0;
}

int Filesystem::fill_remote_entry(int owner, uint64_t dir, const std::string& name, struct fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  uint64_t version;
  if (int err = remote_stat(owner, dir, name, &e->attr, &version)) return err;
  RemoteRef ref{owner, dir, name, static_cast<uint64_t>(e->attr.st_ino), version};
  auto inode = inodes_.lookup_remote(ref, e->attr.st_mode, e->attr);
  e->ino = inode->id;
  // Not cached: every path walk asks the owner, which is how a changed
  // version reaches this kernel as a new inode (close-to-open).
  e->attr_timeout = 0;
  e->entry_timeout = 0;
  return 0;
}

int Filesystem::lookup_any(const Inode& parent, const char* name, struct fuse_entry_param* e) {
  int err = do_lookup(parent, name, e);
  if (err != ENOENT || cluster_->nranks() == 1) return err;
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
      err = fill_remote_entry(owner.value(), parent.dir_id, name, e);
      if (err != ENOENT) return err;
    }
    DSDFS_DEBUG("lookup of %s: owner %d answered %d (attempt %d)", name, owner.value(), err, attempt);
    if (owner.value() == last_owner) break;
    last_owner = owner.value();
  }
  return ENOENT;
}

Cluster::Reply Filesystem::on_file_stat(int, const msg::Name& m) {
  const uint64_t dir = m.dir;
  const std::string& name = m.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT);
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    // Claimed here and being created right now: the shard already sends
    // openers to us, so wait for the file rather than deny that it exists.
    if (errno != ENOENT || !pending_.wait_while_pending(dir, name, cluster_->timeout() / 2) ||
        ::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::from_errno("stat");
    }
  }
  if (S_ISDIR(st.st_mode)) return Status::error(ENOENT);  // directories are never remote
  if (S_ISREG(st.st_mode)) flush_for_peer(dir, name, &st);
  uint64_t version = file_version(st);
  translate(&st);
  return msg::encode(msg::Stat{st, version});
}

bool Filesystem::write_back_for_peer(uint64_t gino) {
  // Other ranks' appends to this file reach the store at once (O_DIRECT
  // through our mount, at the end this kernel knows), while this rank's own
  // writes may still be dirty pages below them (writeback cache): the store
  // then has a hole the file never had. While such a forwarding fd is open,
  // have this kernel write the file's dirty pages back before a peer learns
  // the size. Through that fd (no path walk: a path walk can wait for a
  // directory lock that a FUSE request holds while it waits for another
  // rank); the writes are answered by FUSE workers (the pool grows).
  auto fd = write_fds_.get_any(gino);
  if (!fd) return false;
  if (::sync_file_range(fd->get(), 0, 0,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
    DSDFS_DEBUG("write-back of file %" PRIx64 " for a peer: %s", gino, std::strerror(errno));
    return false;
  }
  return true;
}

void Filesystem::flush_for_peer(uint64_t dir, const std::string& name, struct stat* st) {
  if (!write_back_for_peer(global_ino(st->st_ino))) return;
  auto dfd = local_dir(dir);
  struct stat now;
  if (dfd && ::fstatat(dfd->get(), name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == st->st_ino) {
    *st = now;
  }
}

Cluster::Reply Filesystem::on_dir_list(int, const msg::DirList& m) {
  auto dfd = local_dir(m.dir);
  if (!dfd) return Status::error(ENOENT);
  int fd = ::openat(dfd->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::from_errno("list");
  DIR* dp = ::fdopendir(fd);
  if (!dp) {
    ::close(fd);
    return Status::from_errno("list");
  }
  msg::DirListReply reply;
  while (struct dirent* d = ::readdir(dp)) {
    if (d->d_type == DT_DIR) continue;  // directories are replicated: the caller has them
    reply.entries.push_back({d->d_name, d->d_type, global_ino(d->d_ino)});
  }
  ::closedir(dp);
  return msg::encode(reply);
}

// ---------------------------------------------------------------------------
// Remote data: reads through the cache, writes through the owner

Result<size_t> Filesystem::read_for_peer(std::span<const uint8_t> payload, uint8_t* buf, size_t cap) {
  msg::Read m;
  if (!msg::decode(payload, &m) || m.len > cap) return bad_request("read");
  const uint64_t dir = m.at.dir, gino = m.gino, version = m.version, off = m.off;
  const uint32_t len = m.len;
  const std::string& name = m.at.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT);
  UniqueFd fd(::openat(dfd->get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("read");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno("read");
  // version 0: any version of this file (a reader of a file that is being
  // appended to); the reader treats a short read as a shrunk file.
  if (global_ino(st.st_ino) != gino || (version != 0 && file_version(st) != version)) {
    return Status::error(ESTALE, "changed");
  }
  // Any version: bytes this rank wrote may still be dirty pages below bytes
  // other ranks appended since (see write_back_for_peer).
  if (version == 0) (void)write_back_for_peer(gino);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd.get(), buf + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno("read");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  stats_add(stats_->bytes_served_to_peers, done);
  // Each request opens the file anew, so the kernel's readahead starts small
  // every time: ask for what a sequential reader will want next, so that the
  // disk works ahead while these bytes travel.
  if (done == len && off + done < static_cast<uint64_t>(st.st_size)) {
    (void)::posix_fadvise(fd.get(), static_cast<off_t>(off + done), static_cast<off_t>(kOwnerReadahead),
                          POSIX_FADV_WILLNEED);
  }
  return done;
}

void Filesystem::unexport(int dir_fd, const char* name) {
  struct stat st;
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
    release_owned(global_ino(st.st_ino));
  }
}

Cluster::Reply Filesystem::on_file_map(int, const msg::Map& m) {
  const uint64_t dir = m.at.dir, gino = m.gino, version = m.version;
  const std::string& name = m.at.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT);
  UniqueFd fd(::openat(dfd->get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("map");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno("map");
  if (global_ino(st.st_ino) != gino || file_version(st) != version) return Status::error(ESTALE, "changed");
  auto e = exports_.get_or_create(gino, version, fd.get(), static_cast<uint64_t>(st.st_size));
  if (!e) return e.status();
  return msg::encode(msg::MapReply{e->address, e->length, e->rkey});
}

void Filesystem::remote_map(FileHandle& h) {
  rdma::Transport* t = cluster_->transport();
  if (!t || !h.cache || h.cache->size() == 0 || h.cache->complete() || !t->bulk_uses_rma(h.ref.owner)) return;
  auto r = cluster_->call(h.ref.owner, Op::kFileMap,
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
    cluster_->transport()->get_async(owner, h.rma_address + off, h.rma_rkey, dst, len, c, cluster_->timeout(),
                                     [c, owner, done](Status s) {
                                       if (s) return done(0);
                                       DSDFS_INFO("RMA get from rank %d failed (%s): active messages instead",
                                                  owner, s.to_string().c_str());
                                       c->set_rma_failed();
                                       done(EIO);  // a waiter retries, with active messages
                                     });
    return;
  }
  auto request = msg::encode(msg::Read{{h.ref.dir, h.ref.name}, h.ref.gino, 0, off, static_cast<uint32_t>(len)});
  cluster_->call_into_async(owner, Op::kFileRead, request, std::span<uint8_t>(dst, len), c,
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
      if (!c.wait_fetched(k, cluster_->timeout() * 2)) return EIO;
    }
  }
  return 0;
}

Result<std::vector<uint8_t>> Filesystem::read_through(const RemoteRef& ref, uint64_t off, size_t len) {
  auto r = cluster_->call(ref.owner, Op::kFileRead,
                         msg::encode(msg::Read{{ref.dir, ref.name}, ref.gino, 0, off,
                                               static_cast<uint32_t>(std::min<size_t>(len, kMaxIo))}));
  // The file left its owner while open here (replaced, taken over): EIO.
  if (!r) return Status::error(file_left_owner(r.err()) ? EIO : r.err(), "read through");
  stats_add(stats_->bytes_read_remote, r->size());
  return std::move(r).value();
}

void Filesystem::remote_read(fuse_req_t req, const Inode* inode, FileHandle& h, size_t size, off_t off) {
  if (!h.cache) {
    // A writable remote handle: read through to the owner, uncached, from
    // whatever version the file has now.
    auto r = read_through(h.current_ref(), static_cast<uint64_t>(off), size);
    if (!r) return (void)reply_err(req, r.err());
    return (void)fuse_reply_buf(req, reinterpret_cast<const char*>(r->data()), r->size());
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
    std::vector<uint8_t> out;
    if (static_cast<uint64_t>(off) < end) {
      if (int err = wait_chunks(h, static_cast<uint64_t>(off) / CacheEntry::kChunk, (end - 1) / CacheEntry::kChunk)) {
        return (void)reply_err(req, err == ESTALE ? EIO : err);
      }
      out.assign(c.data() + off, c.data() + end);
    }
    if (from < to) {
      auto r = read_through(h.ref, from, to - from);
      if (!r) return (void)reply_err(req, r.err());
      out.insert(out.end(), r->begin(), r->end());
    }
    return (void)fuse_reply_buf(req, reinterpret_cast<const char*>(out.data()), out.size());
  }
  if (static_cast<uint64_t>(off) >= end) return (void)fuse_reply_buf(req, nullptr, 0);
  uint64_t first = static_cast<uint64_t>(off) / CacheEntry::kChunk;
  uint64_t last = (end - 1) / CacheEntry::kChunk;
  // A sequential reader keeps kReadaheadChunks past its read in flight, so
  // the owner's disk, the network and this reader work at the same time.
  uint64_t expected = h.next_chunk.load();
  if (first == expected || first + 1 == expected || first == 0) {
    uint64_t nchunks = (c.size() + CacheEntry::kChunk - 1) / CacheEntry::kChunk;
    fetch_ahead(h, first, std::min<uint64_t>(nchunks, last + 1 + kReadaheadChunks));
  }
  if (int err = wait_chunks(h, first, last)) return (void)reply_err(req, err == ESTALE ? EIO : err);
  h.next_chunk.store(last + 1);
  struct fuse_bufvec buf = FUSE_BUFVEC_INIT(end - static_cast<uint64_t>(off));
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = c.fd();
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void Filesystem::remote_write(fuse_req_t req, FileHandle& h, struct fuse_bufvec* in, off_t off) {
  size_t size = fuse_buf_size(in);
  if (size > kMaxIo) return (void)reply_err(req, EFBIG);
  // The request is built once, the bytes copied straight into it after its
  // header; a move (below) only writes a new header.
  auto header_of = [&](const RemoteRef& ref, uint32_t len) {
    WireWriter w;
    msg::Write{{ref.dir, ref.name}, ref.gino, h.append, static_cast<uint64_t>(off), {}}.put_header(w, len);
    return w.take();
  };
  std::vector<uint8_t> request = header_of(h.current_ref(), static_cast<uint32_t>(size));
  size_t header = request.size();
  request.resize(header + size);
  struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
  dst.buf[0].mem = request.data() + header;
  ssize_t got = fuse_buf_copy(&dst, in, static_cast<fuse_buf_copy_flags>(0));
  if (got < 0) return (void)reply_err(req, static_cast<int>(-got));
  request.resize(header + static_cast<size_t>(got));
  const uint32_t got32 = static_cast<uint32_t>(got);
  auto set_header = [&](const RemoteRef& ref) {
    // The length is what was really copied; the header of a moved file may
    // differ in size only if its name did (it does not: moves keep names).
    std::vector<uint8_t> head = header_of(ref, got32);
    if (head.size() != header) {
      head.insert(head.end(), request.begin() + static_cast<ptrdiff_t>(header), request.end());
      request = std::move(head);
      header = request.size() - got32;
    } else {
      std::copy(head.begin(), head.end(), request.begin());
    }
  };
  // A file moved to another rank (`>` there) while open here: follow it, a
  // few moves at most (each is another rank's completed O_TRUNC).
  for (int hop = 0; hop < 8; ++hop) {
    RemoteRef ref = h.current_ref();
    set_header(ref);
    auto r = cluster_->call(ref.owner, Op::kFileWrite, request);
    // The file left its owner otherwise (replaced, unlinked): EIO, as the
    // user guide says for handles of a file that is gone.
    if (!r) return (void)reply_err(req, file_left_owner(r.err()) ? EIO : r.err());
    msg::WriteReply reply;
    if (!msg::decode(r.value(), &reply)) return (void)reply_err(req, EPROTO);
    const uint64_t written = reply.written;
    if (written == kWriteMoved) {
      const int32_t to = reply.moved_to;
      if (to >= cluster_->nranks()) return (void)reply_err(req, EPROTO);
      struct stat st;
      uint64_t version;
      // (to may be this rank: the call then runs here, through our own mount.)
      if (remote_stat(to, ref.dir, ref.name, &st, &version) != 0) return (void)reply_err(req, EIO);
      DSDFS_DEBUG("%s moved from rank %d to %d while open for writing: following it", ref.name.c_str(),
                  ref.owner, to);
      ref.owner = to;
      ref.gino = static_cast<uint64_t>(st.st_ino);
      ref.version = version;
      h.set_ref(std::move(ref));
      continue;
    }
    if (written > static_cast<uint64_t>(got)) return (void)reply_err(req, EPROTO);
    stats_add(stats_->bytes_forwarded, written);
    return (void)fuse_reply_write(req, written);
  }
  reply_err(req, EIO);
}

Result<WriteFds::Fd> Filesystem::forward_fd(uint64_t dir, const std::string& name, uint64_t gino, bool append) {
  // A cached fd of that gino is of this very file (it keeps the inode, so
  // its number is not reused), wherever a rename has taken its name; it is
  // dropped when the file is unlinked, replaced or given away.
  if (auto fd = write_fds_.get(gino, append)) return fd;
  if (Status s = check_owned(dir, name, gino); !s) return s;
  auto path = mount_path(dir, name);
  if (!path) return path.status();
  // Through our own mount, with O_DIRECT: this kernel orders the write with
  // local writers (O_APPEND is atomic under its inode lock), keeps its size
  // right, and drops stale pages; the bytes are in the store on return.
  int flags = O_WRONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC | (append ? O_APPEND : 0);
  auto fd = std::make_shared<UniqueFd>(::open(path->c_str(), flags));
  if (!fd->valid()) return Status::from_errno("open for a forwarded write");
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) return Status::from_errno("fstat");
  if (static_cast<uint64_t>(st.st_ino) != gino) return Status::error(ESTALE, "replaced");
  write_fds_.put(gino, append, fd);
  return fd;
}

void Filesystem::release_owned(uint64_t gino) {
  exports_.drop(gino);
  write_fds_.drop(gino);
}

Cluster::Reply Filesystem::on_file_write(int, const msg::Write& m) {
  const uint64_t off = m.off;
  const bool append = m.append;
  const std::span<const uint8_t> data = m.data;
  auto fd = forward_fd(m.at.dir, m.at.name, m.gino, append);
  if (!fd) {
    if (file_left_owner(fd.err())) {
      // Given away by an ownership move: tell the writer where it went.
      if (auto to = moved_.get(m.gino)) return msg::encode(msg::WriteReply{kWriteMoved, *to});
    }
    return fd.status();
  }
  const int wfd = fd.value()->get();
  // A write to a regular file is whole or fails: go on after a partial one
  // (an append's rest lands at the new end, as a writer's retry would put it).
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = append ? ::write(wfd, data.data() + done, data.size() - done)
                       : ::pwrite(wfd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && done == 0) return Status::from_errno("forwarded write");
    if (n <= 0) break;  // the part written stands; the writer sees a short write
    done += static_cast<size_t>(n);
  }
  stats_add(stats_->bytes_applied_for_peers, done);
  return msg::encode(msg::WriteReply{done, -1});
}

// ---------------------------------------------------------------------------
// Name changes of remote files, applied by their owner through its mount

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

Cluster::Reply Filesystem::on_file_unlink(int, const msg::Name& m) {
  const uint64_t dir = m.dir;
  const std::string& name = m.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT, "unknown directory");
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("unlink");
  if (S_ISDIR(st.st_mode)) return Status::error(EISDIR);
  if (int err = unlink_here(dir, dfd->get(), name.c_str())) return Status::error(err, "unlink");
  notifier_.names_changed({{dir_node(dir), name}});
  kernel_attrs_changed(st.st_dev, st.st_ino);  // its link count
  return std::vector<uint8_t>();
}

Cluster::Reply Filesystem::on_file_rename(int, const msg::Rename& m) {
  const uint64_t dir = m.from.dir, dir2 = m.to.dir;
  const std::string &name = m.from.name, &name2 = m.to.name;
  const uint32_t flags = m.flags;
  if (Status ok = check_owned(dir, name, 0); !ok) return ok;
  auto from = local_dir(dir);
  auto to = local_dir(dir2);
  if (!from || !to) return Status::error(ENOENT, "unknown directory");
  if (int err = rename_local_file(dir, name, from->get(), dir2, name2, to->get(), flags)) {
    return Status::error(err, "rename");
  }
  notifier_.names_changed({{dir_node(dir), name}, {dir_node(dir2), name2}});
  return std::vector<uint8_t>();
}

Cluster::Reply Filesystem::on_file_truncate(int, const msg::Truncate& m) {
  const uint64_t dir = m.at.dir, gino = m.gino;
  const std::string& name = m.at.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT);
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("truncate");
  if (!S_ISREG(st.st_mode)) return Status::error(EISDIR);
  if (global_ino(st.st_ino) != gino) return Status::error(ESTALE, "replaced");
  // Open here by a local process: moving the file away would make those
  // handles fail, so truncate it in place, as a local file system would. A
  // file with several names is truncated in place too (its other names stay
  // this file; an ownership move takes only one name). Otherwise the caller
  // takes the name over.
  bool busy = st.st_nlink > 1;
  if (uint64_t id = inodes_.find_local(st.st_dev, st.st_ino)) {
    if (auto inode = inodes_.get(id); inode && !busy) {
      inode->giving.store(true);
      busy = inode->open_files.load() > 0;
      if (busy) inode->giving.store(false);
    }
  }
  if (!busy) return msg::encode(msg::TruncateReply{false, {}});
  auto path = mount_path(dir, name);
  if (!path) return path.status();
  unexport(dfd->get(), name.c_str());
  if (::truncate(path->c_str(), 0) != 0) return Status::from_errno("truncate");
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("truncate");
  uint64_t version = file_version(st);
  translate(&st);
  return msg::encode(msg::TruncateReply{true, {st, version}});
}

Cluster::Reply Filesystem::on_file_link(int, const msg::Link& m) {
  const uint64_t dir = m.from.dir, gino = m.gino, dir2 = m.to.dir;
  const std::string &name = m.from.name, &name2 = m.to.name;
  if (Status ok = check_owned(dir, name, gino); !ok) return ok;
  auto from = local_dir(dir);
  auto to = local_dir(dir2);
  if (!from || !to) return Status::error(ENOENT, "unknown directory");
  UniqueFd src(::openat(from->get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!src.valid() || ::fstat(src.get(), &st) != 0) return Status::from_errno("link");
  if (global_ino(st.st_ino) != gino) return Status::error(ESTALE, "replaced");
  const std::string src_path = proc_path(src.get());
  int err = claim_and_make(dir2, to->get(), name2.c_str(), LocatorShard::kExclusive, [&](int dfd) {
    return ::linkat(AT_FDCWD, src_path.c_str(), dfd, name2.c_str(), AT_SYMLINK_FOLLOW);
  });
  if (err) return Status::error(err, "link");
  kernel_attrs_changed(st.st_dev, st.st_ino);  // its link count
  return on_file_stat(rank_, m.to);
}

Cluster::Reply Filesystem::on_file_readlink(int, const msg::Name& m) {
  auto dfd = local_dir(m.dir);
  if (!dfd) return Status::error(ENOENT);
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(dfd->get(), m.name.c_str(), buf, PATH_MAX);
  if (n < 0) return Status::from_errno("readlink");
  return std::vector<uint8_t>(buf, buf + n);
}

Cluster::Reply Filesystem::on_file_setattr(int, const msg::Setattr& m) {
  const uint32_t to_set = m.to_set, mode = m.mode, uid = m.uid, gid = m.gid;
  const int64_t size = m.size, as = m.atime_s, an = m.atime_ns, ms = m.mtime_s, mn = m.mtime_ns;
  auto path = owned_path(m.at.dir, m.at.name, m.gino);
  if (!path) return path.status();
  const char* p = path->c_str();
  if ((to_set & FUSE_SET_ATTR_MODE) && ::chmod(p, mode) != 0) return Status::from_errno("chmod");
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    if (::lchown(p, (to_set & FUSE_SET_ATTR_UID) ? uid : static_cast<uid_t>(-1),
                 (to_set & FUSE_SET_ATTR_GID) ? gid : static_cast<gid_t>(-1)) != 0) {
      return Status::from_errno("chown");
    }
  }
  if ((to_set & FUSE_SET_ATTR_SIZE) && ::truncate(p, size) != 0) return Status::from_errno("truncate");
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) tv[0] = {as, an};
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) tv[1] = {ms, mn};
    if (::utimensat(AT_FDCWD, p, tv, AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("utimens");
  }
  return on_file_stat(rank_, m.at);
}

// ---------------------------------------------------------------------------
// Ownership moves (O_TRUNC of a remote file, or a rename onto its name)

void Filesystem::forget_remote_file(uint64_t gino) {
  cache_.drop(gino);
  for (auto& inode : inodes_.find_remote(gino)) {
    inode->gone.store(true);
    notifier_.inode(inode->id);
  }
}

Cluster::Reply Filesystem::on_file_drop(int source, const msg::Drop& m) {
  const uint64_t dir = m.at.dir, gino = m.gino;
  const std::string& name = m.at.name;
  const int32_t old_owner = m.old_owner;
  const uint8_t reason = m.reason;
  if (gino != 0) forget_remote_file(gino);
  if (old_owner != rank_) return std::vector<uint8_t>();
  auto dfd = local_dir(dir);
  if (!dfd) return std::vector<uint8_t>();
  // The name may have become ours again since the sender took it (a rename
  // onto it here, right after): only drop it if the shard says it is not.
  auto name_lock = name_locks_.lock(dir, name);
  if (auto now = find_owner(dir, name); now && now.value() == rank_) return std::vector<uint8_t>();
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) {
    return std::vector<uint8_t>();  // already gone
  }
  // A file with other names lives on under them; this name goes.
  const bool last_name = st.st_nlink <= 1;
  if (last_name) {
    release_owned(global_ino(st.st_ino));
    // Moved by O_TRUNC elsewhere: writers on other ranks with handles of it
    // follow it to its new owner (remote_write).
    if (reason == kDropMoved) moved_.put(global_ino(st.st_ino), source);
    if (uint64_t id = inodes_.find_local(st.st_dev, st.st_ino)) {
      if (auto inode = inodes_.get(id)) inode->gone.store(true);
      notifier_.inode(id);
    }
  }
  // In the store (the locator is left alone: the name is another rank's now).
  if (::unlinkat(dfd->get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    DSDFS_WARN("cannot drop %s after an ownership move: %s", name.c_str(), std::strerror(errno));
  }
  notifier_.names_changed({{dir_node(dir), name}});
  if (!last_name) kernel_attrs_changed(st.st_dev, st.st_ino);
  return std::vector<uint8_t>();
}

int Filesystem::take_over(uint64_t dir, const std::string& name, int prev_owner, mode_t mode, int open_flags,
                          int* fd_out, std::unique_lock<std::mutex> name_lock) {
  auto dfd = local_dir(dir);
  if (!dfd) return ENOENT;
  int fd;
  {
    std::shared_lock gate(dir_gate_);
    if (dir_closing(dir)) return ENOENT;
    fd = ::openat(dfd->get(), name.c_str(), open_flags | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
  }
  if (name_lock.owns_lock()) name_lock.unlock();
  if (fd < 0) return errno;
  *fd_out = fd;
  if (prev_owner >= 0 && prev_owner != rank_) {
    auto all = cluster_->call_all(Op::kFileDrop, msg::encode(msg::Drop{{dir, name}, prev_owner, 0, kDropMoved}));
    if (!all[static_cast<size_t>(prev_owner)]) {
      DSDFS_WARN("old owner %d did not drop %s: %s", prev_owner, name.c_str(),
                 all[static_cast<size_t>(prev_owner)].status().to_string().c_str());
    }
  }
  return 0;
}

}  // namespace dsdfs::fs
