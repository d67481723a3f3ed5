// SPDX-License-Identifier: Apache-2.0
// The owner service: every RPC another rank sends to this one, each handler
// given its request decoded and validated (daemon/messages.h). The owner of a
// file serves its attributes and bytes, applies forwarded writes through its
// own mount, and applies name changes and ownership moves of its files; the
// locator shard answers claims and lookups from memory.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <functional>
#include <optional>

#include "common/hash.h"
#include "common/log.h"
#include "daemon/errors.h"
#include "daemon/file_handle.h"
#include "daemon/filesystem.h"
#include "daemon/messages.h"
#include "daemon/protocol.h"

namespace dsdfs::fs {

namespace {

// How far past a served read the owner asks its kernel to read ahead: what a
// sequential reader keeps in flight (fs_remote.cc: 16 chunks of 1 MiB).
constexpr uint64_t kOwnerReadahead = 16 * CacheEntry::kChunk;
// Forwarded writes reserve their blocks first where the store has less
// free space than this (reserve_for_peer).
constexpr uint64_t kReserveAbove = 256ull << 20;

// Calls fn for each entry of the store directory dir_fd until it returns
// false (without "." and ".." filtered: callers skip directories).
Status for_each_entry(int dir_fd, const char* what, const std::function<bool(const struct dirent&)>& fn) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::from_errno(what);
  DIR* dp = ::fdopendir(fd);
  if (!dp) {
    ::close(fd);
    return Status::from_errno(what);
  }
  while (struct dirent* d = ::readdir(dp)) {
    if (!fn(*d)) break;
  }
  ::closedir(dp);
  return Status::ok();
}

}  // namespace

Status bad_request(const char* what) {
  DSDFS_WARN("malformed %s request dropped", what);
  return Status::error(EPROTO, what);
}

namespace {

}  // namespace

void Filesystem::register_rpcs() {
  // Every handler gets its request decoded and validated (daemon/messages.h);
  // a malformed one is answered EPROTO here. kInline: answered on the
  // progress thread (Peers::register_inline_handler); kOrdered: one at a time,
  // in the order of arrival (Peers::register_ordered_handler).
  enum How { kWorker, kInline, kOrdered };
  auto reg = [this]<typename M>(Op op, Peers::Reply (Filesystem::*fn)(int, const M&), How how = kWorker) {
    Peers::Handler h = [this, fn](int src, std::span<const uint8_t> p) -> Peers::Reply {
      M m;
      if (!msg::decode(p, &m)) return bad_request(M::kName);
      return (this->*fn)(src, m);
    };
    if (how == kInline) peers_->register_inline_handler(op, std::move(h));
    else if (how == kOrdered) peers_->register_ordered_handler(op, std::move(h));
    else peers_->register_handler(op, std::move(h));
  };
  reg(Op::kDirMutate, &Filesystem::on_dir_mutate);
  // A rank applies the coordinator's changes in the order they were sent:
  // one that arrives after its sender timed out (this rank was stopped or
  // cut off for a while) is applied before the undo the sender sent next.
  reg(Op::kDirApply, &Filesystem::on_dir_apply, kOrdered);
  // The locator shard is in memory: its ops are answered on the progress thread.
  reg(Op::kLocClaim, &Filesystem::on_loc_claim, kInline);
  reg(Op::kLocLookup, &Filesystem::on_loc_lookup, kInline);
  reg(Op::kLocRemove, &Filesystem::on_loc_remove, kInline);
  reg(Op::kOwnFind, &Filesystem::on_own_find);
  // Every remote lookup is one: answered where it arrives when the store has
  // it in memory (a worker hand-off costs two thread wake-ups).
  peers_->register_split_handler(
      Op::kFileStat,
      [this](int, std::span<const uint8_t> p) -> std::optional<Peers::Reply> {
        msg::StatAsk m;
        if (!msg::decode(p, &m)) return std::nullopt;  // the worker's decode answers EPROTO
        return quick_file_stat(m);
      },
      [this](int, std::span<const uint8_t> p) -> Peers::Reply {
        msg::StatAsk m;
        if (!msg::decode(p, &m)) return bad_request(msg::StatAsk::kName);
        auto r = stat_for_peer(m.at, m.inline_max);
        if (!r) return r.status();
        return msg::encode(r.value());
      });
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
  reg(Op::kFileFind, &Filesystem::on_file_find);
  reg(Op::kRankJoin, &Filesystem::on_rank_join);
  // Reconnects an endpoint and forgets shard entries: short, in memory. A
  // rejoining rank answers its own at once, although it holds its other
  // requests until its directories have caught up.
  reg(Op::kRankUp, &Filesystem::on_rank_up, kInline);
  reg(Op::kShardFill, &Filesystem::on_shard_fill);
  reg(Op::kRankInfo, &Filesystem::on_rank_info);
  reg(Op::kJobStop, &Filesystem::on_job_stop);
  reg(Op::kStageStart, &Filesystem::on_stage_start);
  reg(Op::kStageStatus, &Filesystem::on_stage_status);
  // Reads answer with borrowed bytes: the buffer goes out without a copy.
  peers_->register_lending_handler(Op::kFileRead, [this](int, std::span<const uint8_t> p) -> Result<Peers::Lent> {
    auto buf = read_buffers_->get();
    auto n = read_for_peer(p, buf.get(), read_buffers_->buffer_size());
    if (!n) return n.status();
    std::span<const uint8_t> bytes(buf.get(), n.value());  // before buf is moved
    return Peers::Lent{bytes, std::move(buf)};
  });
}

Peers::Reply Filesystem::on_loc_claim(int, const msg::Claim& m) {
  if (m.owner >= peers_->nranks() || m.expect >= peers_->nranks()) return bad_request("claim");
  auto c = shard_.claim(m.at.dir, m.at.name, m.owner, m.flags, m.expect, m.expect_gen);
  if (!c) return c.status();
  return msg::encode(msg::ClaimReply{static_cast<uint8_t>(c->result), c->prev_owner, c->gen});
}

Peers::Reply Filesystem::on_loc_lookup(int, const msg::Name& m) {
  auto owner = shard_.lookup(m.dir, m.name);
  if (!owner) return owner.status();
  return msg::encode(msg::Owner{owner.value()});
}

Peers::Reply Filesystem::on_loc_remove(int, const msg::LocRemove& m) {
  if (!shard_.remove(m.at.dir, m.at.name, m.owner)) return Status::error(ENOENT);
  return std::vector<uint8_t>();
}

Peers::Reply Filesystem::on_own_find(int, const msg::Name& m) {
  auto dfd = local_dir(m.dir);
  struct stat st;
  if (!dfd || ::fstatat(dfd->get(), m.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) {
    return Status::error(ENOENT);
  }
  return msg::encode(msg::Owner{rank_});
}

Peers::Reply Filesystem::on_file_stat(int, const msg::Name& m) {
  auto r = stat_for_peer(m, 0);
  if (!r) return r.status();
  return msg::encode(r->stat);
}

Result<msg::StatBytes> Filesystem::stat_for_peer(const msg::Name& m, uint32_t inline_max) {
  const uint64_t dir = m.dir;
  const std::string& name = m.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT);
  struct stat st;
  // Claimed here and being created right now: the shard already sends
  // openers to us, so wait for the file rather than deny that it exists.
  int err = pending_.look_past_create(dir, name, peers_->timeout() / 2, [&] {
    return ::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
  });
  if (err) return Status::error(err, "stat");
  if (S_ISDIR(st.st_mode)) return Status::error(ENOENT);  // directories are never remote
  msg::StatBytes out;
  uint64_t version = file_version(st, 0, 0);  // symlinks and special files: never fetched
  if (S_ISREG(st.st_mode)) {
    auto v = owned_version(dfd->get(), name, &st, inline_max, &out.data);
    if (!v) return v.status();
    version = v.value();
  }
  translate(&st);
  out.stat = msg::Stat{st, version};
  return out;
}

namespace {

// openat with only what the kernel has in memory (RESOLVE_CACHED, Linux
// 5.12): EAGAIN where the lookup would read the disk or revalidate; ENOSYS
// or EINVAL on older kernels. Never O_CREAT or O_TRUNC.
UniqueFd open_cached(int dir_fd, const std::string& name, int flags) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC);
  how.resolve = RESOLVE_CACHED | RESOLVE_BENEATH;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, dir_fd, name.c_str(), &how, sizeof how)));
}

}  // namespace

std::optional<Peers::Reply> Filesystem::quick_file_stat(const msg::StatAsk& ask) {
  const msg::Name& m = ask.at;
  auto dfd = local_dir(m.dir);
  if (!dfd || !valid_name(m.name)) return std::nullopt;
  // Which file: by O_PATH first, so that nothing but a regular file is ever
  // opened here (a device's open runs its driver). Anything else, a name not
  // in memory, or no file (perhaps a create in flight: on_file_stat waits
  // for it) goes to the worker.
  UniqueFd path = open_cached(dfd->get(), m.name, O_PATH);
  struct stat st;
  if (!path.valid() || ::fstat(path.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  // Then as open_for_identity opens it (readable, O_PATH only where this
  // daemon may not read it), so that both paths give one identity.
  UniqueFd fd = open_cached(dfd->get(), m.name, O_RDONLY | O_NONBLOCK);
  if (!fd.valid() && errno != EACCES) return std::nullopt;
  if (fd.valid()) {
    struct stat again;
    if (::fstat(fd.get(), &again) != 0 || again.st_ino != st.st_ino || again.st_dev != st.st_dev) return std::nullopt;
    st = again;
  } else {
    fd = std::move(path);
  }
  msg::StatBytes out;
  auto v = version_of_open(fd.get(), &st, /*may_wait=*/false, ask.inline_max, &out.data);
  if (!v) return std::nullopt;
  translate(&st);
  out.stat = msg::Stat{st, v.value()};
  return Peers::Reply(msg::encode(out));
}

namespace {

// What tells apart two files that had one inode number one after the other:
// the inode's generation (ext4, xfs and btrfs give each new file its own; it
// needs a descriptor that is not O_PATH) and its birth time, folded into 16
// bits. 0 where the file system gives neither (the inode number alone, then).
// dir_fd/name, readable for its generation (file_identity), or O_PATH where
// this daemon may not read the file: owned_version and forward_fd open it the
// same way, so that one file gives one identity.
UniqueFd open_for_identity(int dir_fd, const std::string& name) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) fd = UniqueFd(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  return fd;
}

uint16_t file_identity(int fd) {
  uint64_t h = fnv1a64({});
  bool known = false;
  long generation = 0;
  if (::ioctl(fd, FS_IOC_GETVERSION, &generation) == 0) {
    h = fnv1a64_le(static_cast<uint32_t>(generation), h);
    known = true;
  }
  struct statx sx;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME)) {
    h = fnv1a64_le(sx.stx_btime.tv_nsec, fnv1a64_le(static_cast<uint64_t>(sx.stx_btime.tv_sec), h));
    known = true;
  }
  if (!known) return 0;
  return static_cast<uint16_t>(h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48));
}

}  // namespace

uint64_t Filesystem::version_of(const struct stat& st, int fd) const {
  return file_version(st, content_gens_.get(global_ino(st.st_ino)), file_identity(fd));
}

Result<uint64_t> Filesystem::owned_version(int dir_fd, const std::string& name, struct stat* st,
                                           uint32_t inline_max, std::vector<uint8_t>* bytes) {
  UniqueFd fd = open_for_identity(dir_fd, name);
  if (!fd.valid() || ::fstat(fd.get(), st) != 0) return Status::from_errno("stat");
  return version_of_open(fd.get(), st, /*may_wait=*/true, inline_max, bytes);
}

Result<uint64_t> Filesystem::version_of_open(int fd, struct stat* st, bool may_wait, uint32_t inline_max,
                                             std::vector<uint8_t>* bytes) {
  // A write-back for a peer (below) waits for this kernel's FUSE workers.
  if (!may_wait && S_ISREG(st->st_mode) && write_fds_.get_any(global_ino(st->st_ino))) {
    return Status::error(EAGAIN, "write-back first");
  }
  // Counted from before the stat: a change after it moves the version on.
  content_gens_.seen(global_ino(st->st_ino));
  // Writes through kernel passthrough reach the store without the daemon
  // counting them: while a writable handle passes through, every version
  // handed out is a new one (a reader never takes a cached copy for the
  // bytes being written).
  if (backing_.written_through(global_ino(st->st_ino))) content_gens_.changed(global_ino(st->st_ino));
  if (S_ISREG(st->st_mode)) (void)write_back_for_peer(global_ino(st->st_ino));
  if (::fstat(fd, st) != 0) return Status::from_errno("stat");
  const uint64_t version = version_of(*st, fd);
  if (bytes && S_ISREG(st->st_mode) && st->st_size > 0 && st->st_size <= static_cast<off_t>(inline_max)) {
    *bytes = bytes_of_version(fd, *st, version);
  }
  return version;
}

std::vector<uint8_t> Filesystem::bytes_of_version(int fd, const struct stat& st, uint64_t version) {
  // Only from memory (RWF_NOWAIT: EAGAIN rather than a disk read, so that a
  // stat of a cold file costs no read), and only if the file is still of
  // that version afterwards (it may be rewritten meanwhile). An O_PATH fd
  // (a file this daemon may not read) reads nothing.
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  struct iovec iov = {data.data(), data.size()};
  struct stat now;
  if (::preadv2(fd, &iov, 1, 0, RWF_NOWAIT) != static_cast<ssize_t>(data.size()) || ::fstat(fd, &now) != 0 ||
      version_of(now, fd) != version) {
    return {};
  }
  stats_add(stats_->bytes_served_inline, data.size());
  return data;
}

bool Filesystem::write_back_for_peer(uint64_t gino) {
  // Other ranks' appends to this file reach the store at once (written back
  // by on_file_write at the end this kernel knows), while this rank's own
  // later writes may still be dirty pages below them (writeback cache): the
  // store then has a hole the file never had. While such a forwarding fd is open,
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

Peers::Reply Filesystem::on_dir_list(int, const msg::DirList& m) {
  auto dfd = local_dir(m.dir);
  if (!dfd) return Status::error(ENOENT);
  msg::DirListReply reply;
  if (!(m.flags & msg::DirList::kCountOnly)) {
    Status s = for_each_entry(dfd->get(), "list", [&](const struct dirent& d) {
      // Directories are replicated: the caller has them.
      if (d.d_type != DT_DIR) reply.entries.push_back({d.d_name, d.d_type, global_ino(d.d_ino)});
      return true;
    });
    if (!s) return s;
  }
  reply.moved = moved_out(m.dir);  // after the listing (list_dir)
  return msg::encode(reply);
}

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
  // kAnyVersionOfThisFile: any version of the file the reader opened (a file
  // appended to since; the reader treats a short read as a shrunk file), told
  // by the identity bits from another file that got its inode number since.
  const bool any = (version & kAnyVersionOfThisFile) != 0;
  if (global_ino(st.st_ino) != gino) return Status::error(ESTALE, "changed");
  const uint64_t now = version_of(st, fd.get());
  if (any ? (now & kIdentityBits) != (version & kIdentityBits) : now != version) {
    return Status::error(ESTALE, "changed");
  }
  // Any version: bytes this rank wrote may still be dirty pages below bytes
  // other ranks appended since (see write_back_for_peer).
  if (any) (void)write_back_for_peer(gino);
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

void Filesystem::unexport(int dir_fd, const char* name, bool leaves) {
  struct stat st;
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
    release_owned(global_ino(st.st_ino));
    if (leaves) offered_.settle(global_ino(st.st_ino));  // no longer on offer: it goes
  }
}

Peers::Reply Filesystem::on_file_map(int, const msg::Map& m) {
  const uint64_t dir = m.at.dir, gino = m.gino, version = m.version;
  const std::string& name = m.at.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT);
  UniqueFd fd(::openat(dfd->get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("map");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno("map");
  if (global_ino(st.st_ino) != gino || version_of(st, fd.get()) != version) return Status::error(ESTALE, "changed");
  auto e = exports_.get_or_create(gino, version, fd.get(), static_cast<uint64_t>(st.st_size));
  if (!e) return e.status();
  return msg::encode(msg::MapReply{e->address, e->length, e->rkey});
}

Result<WriteFds::Fd> Filesystem::forward_fd(uint64_t dir, const std::string& name, uint64_t gino, uint64_t version,
                                            bool append) {
  // The file the writer opened: gino, and the identity bits of its version.
  // A store reuses a freed inode number at once (ext4), so a file unlinked
  // under the writer's handle can be followed by another with its number
  // (at its name, too: `rm log; touch log`); that one must not take the
  // writes (the writer gets EIO, as for any file gone under its handle).
  const auto identity = static_cast<uint16_t>(version & kIdentityBits);
  // A cached fd of that gino is of this very file (it keeps the inode, so
  // its number is not reused), wherever a rename has taken its name; it is
  // dropped when the file is unlinked, replaced or given away.
  if (auto fd = write_fds_.get(gino, append, identity)) return fd;
  struct stat owned;
  if (Status s = check_owned(dir, name, gino, &owned); !s) return s;
  uint16_t found = 0;
  if (identity != 0) {
    // Opened as owned_version opens it, so that the same file gives the same bits.
    auto dfd = local_dir(dir);
    if (!dfd) return Status::error(ENOENT, "unknown directory");
    UniqueFd sf = open_for_identity(dfd->get(), name);
    struct stat st;
    if (!sf.valid() || ::fstat(sf.get(), &st) != 0) return Status::from_errno("not here");
    if (global_ino(st.st_ino) != gino) return Status::error(ESTALE, "replaced");
    found = file_identity(sf.get());
    if (found != 0 && found != identity) return Status::error(ESTALE, "another file with the writer's inode number");
  }
  // Through our own mount: this kernel orders the write with local writers
  // (O_APPEND is atomic under its inode lock) and keeps its size right. Not
  // with O_DIRECT: a direct write extends the size only after its bytes are
  // in the store, and a local reader that had just read the page at the old
  // end (zero-filled past it) then sees the new size over those zeros. A
  // buffered write puts the bytes in the page before the size moves;
  // on_file_write then writes them back, so they are in the store on return.
  auto opened = open_in_mount(dir, name, owned, O_WRONLY | (append ? O_APPEND : 0));
  if (!opened) return opened.status();
  if (opened->direct) {
    // The store's file (no kernel inode of it): for this write only, with
    // kernel lookups of it waiting until the write is done.
    auto held = std::make_shared<OwnerFd>(std::move(opened).value());
    return WriteFds::Fd(held, &held->fd);
  }
  auto fd = std::make_shared<UniqueFd>(std::move(opened->fd));
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) return Status::from_errno("fstat");
  if (static_cast<uint64_t>(st.st_ino) != gino) return Status::error(ESTALE, "replaced");
  write_fds_.put(gino, append, fd, found);
  return fd;
}

int Filesystem::reserve_for_peer(int fd, bool append, uint64_t off, size_t len) {
  // A buffered write succeeds into the page cache even when the store is
  // full, and fails only at write-back, with its bytes already visible
  // here. Where the store is nearly full, reserve the blocks first, so
  // that a full store answers ENOSPC and changes nothing.
  struct statvfs vfs;
  if (::fstatvfs(store_->files_fd(), &vfs) != 0) return 0;
  const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (free_bytes > kReserveAbove + len) return 0;
  if (append) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return errno;
    off = static_cast<uint64_t>(st.st_size);
  }
  if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), static_cast<off_t>(len)) != 0 &&
      errno != EOPNOTSUPP) {
    return errno;
  }
  return 0;
}

void Filesystem::release_owned(uint64_t gino) {
  exports_.drop(gino);
  write_fds_.drop(gino);
}

std::optional<int> Filesystem::where_offer_went(uint64_t gino) {
  offered_.wait(gino);
  return moved_.get(gino);  // (put before the drop settles the offer)
}

Peers::Reply Filesystem::on_file_write(int, const msg::Write& m) {
  const uint64_t off = m.off;
  const bool append = m.append;
  const std::span<const uint8_t> data = m.data;
  auto fd = forward_fd(m.at.dir, m.at.name, m.gino, m.version, append);
  // Offered to another rank's O_TRUNC right now: wait for the move to settle
  // (the drop, or the offer's deadline), then write here or send the writer on.
  for (int round = 0; !fd && file_left_owner(fd.err()) && offered_.offered(m.gino) && round < 4; ++round) {
    if (where_offer_went(m.gino)) break;  // answered below
    fd = forward_fd(m.at.dir, m.at.name, m.gino, m.version, append);
  }
  if (!fd) {
    if (file_left_owner(fd.err())) {
      // Given away by an ownership move: tell the writer where it went.
      if (auto to = moved_.get(m.gino)) return msg::encode(msg::WriteReply{kWriteMoved, *to});
    }
    return fd.status();
  }
  const int wfd = fd.value()->get();
  if (int err = reserve_for_peer(wfd, append, off, data.size())) return Status::error(err, "forwarded write");
  // A write to a regular file is whole or fails: go on after a partial one
  // (an append's rest lands at the new end, as a writer's retry would put it).
  // Given away by an ownership move while this write was on its way (this
  // fd does not keep the file here: it is not a user's handle): the bytes
  // went into the file that left, so the writer sends them to the new owner.
  auto moved_meanwhile = [&](int err) -> Peers::Reply {
    if (auto to = moved_.get(m.gino)) return msg::encode(msg::WriteReply{kWriteMoved, *to});
    return Status::error(err, "forwarded write");
  };
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = append ? ::write(wfd, data.data() + done, data.size() - done)
                       : ::pwrite(wfd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && done == 0) return moved_meanwhile(errno);
    if (n <= 0) break;  // the part written stands; the writer sees a short write
    done += static_cast<size_t>(n);
  }
  // Into the store before the writer hears of it (the bytes and their
  // neighbours: this rank's dirty pages below them too, see
  // write_back_for_peer), so that readers on other ranks, which read the
  // store, see them.
  if (done > 0 && ::sync_file_range(wfd, 0, 0,
                                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                        SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
    return moved_meanwhile(errno);
  }
  // Offered to another rank's O_TRUNC while this write was under way, through
  // a forwarding fd opened before: if the file moves, these bytes went into
  // the file that leaves (its pages are discarded, see write_to_moved), so
  // the writer sends them to the new owner, as if the write came after the
  // truncation, which it did not precede.
  if (done > 0 && offered_.offered(m.gino)) {
    if (auto to = where_offer_went(m.gino)) return msg::encode(msg::WriteReply{kWriteMoved, *to});
  }
  // (Also when it went through this kernel, which counted it already: once more is harmless.)
  if (done > 0) content_gens_.changed(m.gino);
  stats_add(stats_->bytes_applied_for_peers, done);
  return msg::encode(msg::WriteReply{done, -1});
}

Peers::Reply Filesystem::on_file_unlink(int, const msg::Name& m) {
  const uint64_t dir = m.dir;
  const std::string& name = m.name;
  auto dfd = local_dir(dir);
  if (!dfd) return Status::error(ENOENT, "unknown directory");
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("unlink");
  if (S_ISDIR(st.st_mode)) return Status::error(EISDIR);
  if (int err = unlink_here(dir, dfd->get(), name.c_str())) return Status::error(err, "unlink");
  mark_unlinked_elsewhere(st);
  notifier_.names_changed({{dir_node(dir), name}});
  kernel_attrs_changed(st.st_dev, st.st_ino);  // its link count
  let_go_if_unlinked(st.st_dev, st.st_ino);
  return std::vector<uint8_t>();
}

void Filesystem::forget_if_last_name(const struct stat& st) {
  if (S_ISREG(st.st_mode) && st.st_nlink <= 1) content_gens_.forget(global_ino(st.st_ino));
}

void Filesystem::mark_unlinked_elsewhere(const struct stat& st) {
  if (st.st_nlink > 1 || !S_ISREG(st.st_mode)) return;  // it lives on under another name
  if (uint64_t id = inodes_.find_local(st.st_dev, st.st_ino)) {
    if (auto inode = inodes_.get(id)) inode->unlinked_elsewhere.store(true);
  }
}

Peers::Reply Filesystem::on_file_rename(int, const msg::Rename& m) {
  const uint64_t dir = m.from.dir, dir2 = m.to.dir;
  const std::string &name = m.from.name, &name2 = m.to.name;
  const uint32_t flags = m.flags;
  if (Status ok = check_owned(dir, name, 0); !ok) return ok;
  auto from = local_dir(dir);
  auto to = local_dir(dir2);
  if (!from || !to) return Status::error(ENOENT, "unknown directory");
  struct stat replaced;  // a file the rename replaces here loses its last name
  const bool replaces = ::fstatat(to->get(), name2.c_str(), &replaced, AT_SYMLINK_NOFOLLOW) == 0;
  if (int err = rename_local_file(dir, name, from->get(), dir2, name2, to->get(), flags)) {
    return Status::error(err, "rename");
  }
  if (replaces) mark_unlinked_elsewhere(replaced);
  notifier_.names_changed({{dir_node(dir), name}, {dir_node(dir2), name2}});
  if (replaces) let_go_if_unlinked(replaced.st_dev, replaced.st_ino);
  return std::vector<uint8_t>();
}

Peers::Reply Filesystem::on_file_truncate(int, const msg::Truncate& m) {
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
  // Offered until the caller's drop comes (or twice the RPC timeout), unless
  // a user's handle of it is open here; no handle is opened meanwhile.
  const auto until = OfferedFiles::Clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(2000 * options_.timeout_s));
  if (!busy && !offered_.offer_unless_open(global_ino(st.st_ino), until)) busy = true;
  if (uint64_t id = inodes_.find_local(st.st_dev, st.st_ino)) {
    if (auto inode = inodes_.get(id); inode && !busy) {
      inode->giving.store(true);
      busy = inode->open_files.load() > 0;
      if (busy) inode->giving.store(false);
    }
  }
  if (!busy) return msg::encode(msg::TruncateReply{false, {}});
  offered_.settle(global_ino(st.st_ino));
  auto fd = open_in_mount(dir, name, st, O_PATH);
  if (!fd) return fd.status();
  unexport(dfd->get(), name.c_str());
  content_gens_.seen(global_ino(st.st_ino));  // its new version goes out with the reply
  if (::truncate(proc_path(fd->fd.get()).c_str(), 0) != 0) return Status::from_errno("truncate");
  content_gens_.changed(global_ino(st.st_ino));
  auto version = owned_version(dfd->get(), name, &st);
  if (!version) return version.status();
  translate(&st);
  return msg::encode(msg::TruncateReply{true, {st, version.value()}});
}

Peers::Reply Filesystem::on_file_link(int, const msg::Link& m) {
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

Peers::Reply Filesystem::on_file_find(int, const msg::Find& m) {
  // Asked when an open lost a race with a rename of the file it looked up
  // (Filesystem::open_moved), or a write or read through a writable handle
  // found the file gone from its name (Filesystem::renamed_to). Where this
  // rank renamed it last, if the name still holds it (also in another
  // directory); else a scan of the directory.
  if (auto last = renamed_.get(m.gino)) {
    auto ldfd = local_dir(last->first);
    struct stat st;
    if (ldfd && ::fstatat(ldfd->get(), last->second.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        global_ino(st.st_ino) == m.gino) {
      return msg::encode(msg::Name{last->first, last->second});
    }
  }
  auto dfd = local_dir(m.dir);
  if (!dfd) return Status::error(ENOENT, "unknown directory");
  std::string found;
  Status s = for_each_entry(dfd->get(), "find", [&](const struct dirent& d) {
    if (d.d_type == DT_DIR || global_ino(d.d_ino) != m.gino) return true;
    found = d.d_name;
    return false;
  });
  if (!s) return s;
  if (found.empty()) return Status::error(ENOENT);
  return msg::encode(msg::Name{m.dir, found});
}

Peers::Reply Filesystem::on_file_readlink(int, const msg::Name& m) {
  auto dfd = local_dir(m.dir);
  if (!dfd) return Status::error(ENOENT);
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(dfd->get(), m.name.c_str(), buf, PATH_MAX);
  if (n < 0) return Status::from_errno("readlink");
  return std::vector<uint8_t>(buf, buf + n);
}

Peers::Reply Filesystem::on_file_setattr(int, const msg::Setattr& m) {
  const uint32_t to_set = m.to_set, mode = m.mode, uid = m.uid, gid = m.gid;
  const int64_t size = m.size, as = m.atime_s, an = m.atime_ns, ms = m.mtime_s, mn = m.mtime_ns;
  struct stat owned;
  if (Status s = check_owned(m.at.dir, m.at.name, m.gino, &owned); !s) return s;
  // A regular file by its O_PATH handle in the mount (no directory lock; the
  // calls below follow /proc/self/fd/N to the file itself); a symlink by its
  // path (lchown and utimensat must not follow it).
  std::string path;
  OwnerFd fd;
  if (S_ISREG(owned.st_mode)) {
    auto opened = open_in_mount(m.at.dir, m.at.name, owned, O_PATH);
    if (!opened) return opened.status();
    fd = std::move(opened).value();
    path = proc_path(fd.fd.get());
  } else {
    auto mp = mount_path(m.at.dir, m.at.name);
    if (!mp) return mp.status();
    path = std::move(mp).value();
  }
  const bool follow = fd.fd.valid();
  const char* p = path.c_str();
  if ((to_set & FUSE_SET_ATTR_MODE) && ::chmod(p, mode) != 0) return Status::from_errno("chmod");
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    if (::fchownat(AT_FDCWD, p, (to_set & FUSE_SET_ATTR_UID) ? uid : static_cast<uid_t>(-1),
                   (to_set & FUSE_SET_ATTR_GID) ? gid : static_cast<gid_t>(-1),
                   follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::from_errno("chown");
    }
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (::truncate(p, size) != 0) return Status::from_errno("truncate");
    content_gens_.changed(global_ino(owned.st_ino));
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) tv[0] = {as, an};
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) tv[1] = {ms, mn};
    if (::utimensat(AT_FDCWD, p, tv, follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) return Status::from_errno("utimens");
  }
  return on_file_stat(rank_, m.at);
}

Peers::Reply Filesystem::on_file_drop(int source, const msg::Drop& m) {
  const uint64_t dir = m.at.dir, gino = m.gino;
  const std::string& name = m.at.name;
  const int32_t old_owner = m.old_owner;
  uint8_t reason = m.reason;
  if (gino != 0) forget_remote_file(gino);
  auto dfd = local_dir(dir);
  if (!dfd) return std::vector<uint8_t>();
  if (old_owner != rank_) {
    if (source == rank_) return std::vector<uint8_t>();  // our own drop: the name holds our new file
    // The sender took the name from another rank, but this store may still
    // hold an older file of it: one that a third rank's claim took before,
    // whose drop has not arrived yet. The sender's rename or move has
    // returned once this answers, so that file goes now (below, unless the
    // shard says the name is ours), as one replaced: whatever its own drop
    // says when it comes, no handle could reach its name any more.
    struct stat here;
    if (::fstatat(dfd->get(), name.c_str(), &here, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(here.st_mode)) {
      return std::vector<uint8_t>();
    }
    reason = kDropReplaced;
  }
  // The name may have become ours again since the sender took it (a rename
  // onto it here, right after): only drop it if the shard says it is not.
  auto name_lock = name_locks_.lock(dir, name);
  auto now = find_owner(dir, name);
  // Not named the old owner, this rank drops its file only on the shard's
  // word that the name is another rank's (a shard that does not answer may
  // hold a claim of ours made after the sender's).
  if (!now && old_owner != rank_) return std::vector<uint8_t>();
  if (now && now.value() == rank_) {
    // A rename onto the name here, still in flight, claimed it after the
    // sender's rename: its file replaced ours in the store, but until it
    // returns this kernel keeps the name on the file it replaced, and would
    // answer stats from that file's attributes although the sender's
    // rename, which replaced that file too, has returned. Have the kernel
    // look the name up again (it waits for the rename here to end).
    notifier_.names_changed({{dir_node(dir), name}});
    return std::vector<uint8_t>();
  }
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) {
    return std::vector<uint8_t>();  // already gone
  }
  // A file with other names lives on under them; this name goes.
  const bool last_name = st.st_nlink <= 1;
  if (last_name) {
    release_owned(global_ino(st.st_ino));
    content_gens_.forget(global_ino(st.st_ino));
    // Moved by O_TRUNC elsewhere: writers on other ranks with handles of it
    // follow it to its new owner (remote_write).
    if (reason == kDropMoved) moved_.put(global_ino(st.st_ino), source);
    if (uint64_t id = inodes_.find_local(st.st_dev, st.st_ino)) {
      // Moved: its bytes live on elsewhere, and handles here fail (writes
      // would be lost). Replaced by a rename: this is a local rename over an
      // open file, whose handles keep the old file (the store fd stays).
      if (auto inode = inodes_.get(id); inode && reason == kDropMoved) inode->gone.store(true);
      notifier_.inode(id);
    }
  }
  mark_unlinked_elsewhere(st);
  // Counted before the name goes: a listing that missed it here, because it
  // asked the new owner before it had the name, sees the count change.
  note_moved_out(dir);
  // In the store (the locator is left alone: the name is another rank's now).
  if (::unlinkat(dfd->get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    DSDFS_WARN("cannot drop %s after an ownership move: %s", name.c_str(), std::strerror(errno));
  }
  offered_.settle(global_ino(st.st_ino));  // opens that waited for it follow the name now
  // Again: a lookup here may have made a kernel inode for the file between
  // the mark above and the unlink (one made after it sees the file without
  // a name: lost_its_name).
  mark_unlinked_elsewhere(st);
  notifier_.names_changed({{dir_node(dir), name}});
  if (!last_name) kernel_attrs_changed(st.st_dev, st.st_ino);
  else let_go_if_unlinked(st.st_dev, st.st_ino);
  return std::vector<uint8_t>();
}

void Filesystem::let_go_if_unlinked(dev_t dev, ino_t ino) {
  if (uint64_t id = inodes_.find_local(dev, ino)) let_go_if_unlinked(inodes_.get(id));
}

void Filesystem::let_go_if_unlinked(const std::shared_ptr<Inode>& inode) {
  if (!inode || inode->remote || S_ISDIR(inode->type) || inode->open_files.load() > 0) return;
  auto fd = inode->handle();
  struct stat st;
  if (!fd || ::fstat(fd->get(), &st) != 0 || st.st_nlink > 0) return;
  // Not open here and without a name. Once the handle closes, the store may
  // give its inode number to a new file: the kernel's inode for this one is
  // cut off from the number first (released: never reopened or matched).
  if (!inode->release_unless_held(st)) return let_go_later(inode);  // held for an open: after the hold
  inodes_.release_source(*inode);
  inode->drop_handle();
}

void Filesystem::let_go_later(const std::shared_ptr<Inode>& inode) {
  MutexLock lock(later_mu_);
  if (later_stop_) return;
  later_.push_back(inode);
  if (!later_thread_.joinable()) later_thread_ = std::thread([this] { let_go_loop(); });
  later_cv_.notify_one();
}

void Filesystem::let_go_loop() {
  UniqueMutexLock lock(later_mu_);
  while (!later_stop_) {
    if (later_.empty()) {
      later_cv_.wait(later_mu_, [&]() REQUIRES(later_mu_) { return later_stop_ || !later_.empty(); });
      continue;
    }
    // Every hold ends within kHold of its start: one wait covers the queue.
    later_cv_.wait_for(later_mu_, LostOpens::kHold, [&]() REQUIRES(later_mu_) { return later_stop_; });
    if (later_stop_) break;
    auto due = std::move(later_);
    later_.clear();
    lock.unlock();
    for (auto& w : due) {
      if (auto inode = w.lock()) let_go_if_unlinked(inode);  // held again: queued again
    }
    lock.lock();
  }
}

}  // namespace dsdfs::fs
