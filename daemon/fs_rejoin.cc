// SPDX-License-Identifier: Apache-2.0
// A daemon that died while its job runs, started again on its node
// (dsdfs-launch --rejoin): the join at the coordinator, which tells every
// rank where the rank is now and hands it the job's directories; the
// rejoiner's catch-up of its store with them; and the publishing of its
// files at their shards again.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <deque>
#include <map>
#include <thread>

#include "common/hash.h"
#include "common/log.h"
#include "daemon/filesystem.h"
#include "daemon/messages.h"
#include "daemon/protocol.h"
#include "daemon/store.h"

namespace dsdfs::fs {
namespace {

constexpr const char* kDirIdXattr = "user.dsdfs.dir";

std::string hex_id(uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, id);
  return buf;
}

// The entries of directory path: (name, is a directory).
std::vector<std::pair<std::string, bool>> list_entries(const std::string& path) {
  std::vector<std::pair<std::string, bool>> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir = ::lstat((path + "/" + e->d_name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    out.emplace_back(e->d_name, is_dir);
  }
  ::closedir(d);
  return out;
}

}  // namespace

void Filesystem::remember_dir_id(int dir_fd, uint64_t id) {
  // Best effort: a store without user xattrs falls back to the path at rejoin.
  ::setxattr(proc_path(dir_fd).c_str(), kDirIdXattr, &id, sizeof id, 0);
}

bool Filesystem::shard_unsure(int shard, uint64_t dir, const std::string& name) const {
  // A shard knows every name it is home for only if it has been up since the
  // job started: one that took a dead shard's place, or that came back after
  // its daemon was restarted, started without the names made before.
  return shard != peers_->home_of(dir, name) || rejoined_[static_cast<size_t>(shard)].load();
}

void Filesystem::rank_is_back(int rank) {
  // The rank takes its shard back: what the rank that stood in for it learnt
  // is not asked any more, and would be stale if it stood in again.
  shard_.forget_if([this, rank](uint64_t dir, std::string_view name) { return peers_->home_of(dir, name) == rank; });
  rejoined_[static_cast<size_t>(rank)].store(true);
}

Peers::Reply Filesystem::on_rank_up(int, const msg::RankUp& m) {
  if (m.rank >= peers_->nranks()) return bad_request("rank up");
  if (m.rank == rank_) return std::vector<uint8_t>();
  if (auto s = peers_->readmit(m.rank, m.address); !s) return s;
  rank_is_back(m.rank);
  return std::vector<uint8_t>();
}

Peers::Reply Filesystem::on_rank_join(int source, const msg::Join& m) {
  const int n = peers_->nranks();
  if (m.rank >= n || m.rank == rank_) return bad_request("join");
  if (m.protocol != DSDFS_PROTOCOL_VERSION) {
    return Status::error(EPROTO, "rank " + std::to_string(m.rank) + " runs protocol " + std::to_string(m.protocol) +
                                     ", this job " + std::to_string(DSDFS_PROTOCOL_VERSION));
  }
  // The coordinator lets it in, under the lock that orders directory
  // changes: the directories it hands over are those before every change
  // it sends the rank from then on.
  int coordinator = -1;
  for (int r = 0; r < n; ++r) {
    if (r != m.rank && (r == rank_ || peers_->alive(r))) {
      coordinator = r;
      break;
    }
  }
  if (coordinator != rank_) {
    if (source != m.rank) return Status::error(EAGAIN, "not the coordinator");
    return peers_->call(coordinator, Op::kRankJoin, msg::encode(m), 2 * peers_->timeout());
  }
  MutexLock order(coord_mu_);
  if (!peers_->quorate()) return Peers::fenced();
  DSDFS_WARN("rank %d on %s rejoins the job (its daemon was restarted)", m.rank, m.host.c_str());
  if (auto s = peers_->readmit(m.rank, m.address); !s) return s;
  rank_is_back(m.rank);
  auto replies = peers_->call_all(Op::kRankUp, msg::encode(msg::RankUp{m.rank, m.address}));
  for (int r = 0; r < n; ++r) {
    if (r != rank_ && r != m.rank && peers_->alive(r) && !replies[r]) {
      DSDFS_WARN("rank %d did not take rank %d back: %s", r, m.rank, replies[r].status().to_string().c_str());
    }
  }
  msg::JoinReply reply;
  for (int r = 0; r < n; ++r) {
    reply.alive.push_back(r == rank_ || peers_->alive(r) ? 1 : 0);
    reply.addresses.push_back(peers_->address_of(r));
  }
  reply.addresses[static_cast<size_t>(m.rank)] = m.address;
  // Every directory, parents first.
  for_each_store_dir([&](uint64_t id, uint64_t parent, const std::string& name, const std::string&,
                         const struct stat& st, bool) {
    reply.dirs.push_back(msg::JoinReply::Dir{id, parent, name, st.st_mode & 07777, st.st_uid, st.st_gid,
                                             st.st_atim.tv_sec, st.st_atim.tv_nsec, st.st_mtim.tv_sec,
                                             st.st_mtim.tv_nsec});
  });
  struct stat root;
  if (::stat(store_->files_path().c_str(), &root) == 0) {
    reply.dirs.insert(reply.dirs.begin(),
                      msg::JoinReply::Dir{0, 0, "", root.st_mode & 07777, root.st_uid, root.st_gid, root.st_atim.tv_sec,
                                          root.st_atim.tv_nsec, root.st_mtim.tv_sec, root.st_mtim.tv_nsec});
  }
  auto bytes = msg::encode(reply);
  DSDFS_INFO("rank %d is back: %zu directories handed over (%zu bytes)", m.rank, reply.dirs.size(), bytes.size());
  return bytes;
}

Status Filesystem::rejoin(RejoinCounts* counts) {
  const int n = peers_->nranks();
  msg::Join join{rank_, DSDFS_PROTOCOL_VERSION, host_, peers_->address_of(rank_)};
  const auto payload = msg::encode(join);
  std::string errors;
  msg::JoinReply reply;
  bool joined = false;
  // Any live rank takes the request to the coordinator; the lowest first.
  for (int r = 0; r < n && !joined; ++r) {
    if (r == rank_) continue;
    auto got = peers_->call(r, Op::kRankJoin, payload, 3 * peers_->timeout());
    if (!got) {
      errors += (errors.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + ": " + got.status().to_string();
      continue;
    }
    if (!msg::decode(got.value(), &reply) || static_cast<int>(reply.alive.size()) != n) {
      return Status::error(EPROTO, "rank " + std::to_string(r) + " answered the join with a malformed reply");
    }
    joined = true;
  }
  if (!joined) return Status::error(EHOSTUNREACH, "no rank of the job let this one in again (" + errors + ")");
  rejoined_[static_cast<size_t>(rank_)].store(true);
  for (int r = 0; r < n; ++r) {
    if (r == rank_) continue;
    if (!reply.alive[static_cast<size_t>(r)]) {
      peers_->declare_dead(r);
    } else if (!reply.addresses[static_cast<size_t>(r)].empty() &&
               reply.addresses[static_cast<size_t>(r)] != peers_->address_of(r)) {
      // Restarted too since this rank's store was written.
      if (auto s = peers_->readmit(r, reply.addresses[static_cast<size_t>(r)]); !s) {
        DSDFS_WARN("cannot reach rank %d at its new address: %s", r, s.to_string().c_str());
      }
      rejoined_[static_cast<size_t>(r)].store(true);
    }
  }
  return catch_up_directories(reply.dirs, counts);
}

Status Filesystem::catch_up_directories(const std::vector<msg::JoinReply::Dir>& dirs, RejoinCounts* counts) {
  // Every directory of the store, wherever the job has it now: first each
  // one is moved out into a flat staging directory (named by its id), then
  // the job's tree is built from them (renamed into place, or made where
  // this rank never had it). The files in them move with them and keep their
  // inode numbers (so their global inode numbers and versions). A directory
  // the job removed meanwhile stays in staging, and its files are lost.
  const std::string root = store_->files_path();
  const std::string staging = store_->path() + "/rejoin";
  if (auto s = remove_tree(staging); !s) return s;
  if (::mkdir(staging.c_str(), 0700) != 0) return Status::from_errno("cannot create " + staging);
  struct Walk {
    std::string at;   // where it is now
    std::string rel;  // its path in the store when the daemon died
  };
  std::deque<Walk> todo{{root, ""}};
  while (!todo.empty()) {
    Walk w = std::move(todo.front());
    todo.pop_front();
    for (auto& [name, is_dir] : list_entries(w.at)) {
      if (!is_dir) continue;
      const std::string from = w.at + "/" + name;
      const std::string rel = w.rel + "/" + name;
      uint64_t id = 0;
      if (::getxattr(from.c_str(), kDirIdXattr, &id, sizeof id) != sizeof id) {
        id = kept_dir_id(rel);
      }
      std::string to = staging + "/" + hex_id(id);
      if (::access(to.c_str(), F_OK) == 0) to += "." + std::to_string(todo.size());  // never two of one id
      if (::rename(from.c_str(), to.c_str()) != 0) return Status::from_errno("cannot move " + from + " to " + to);
      todo.push_back({to, rel});
    }
  }
  std::map<uint64_t, std::string> path_of{{0, root}};
  uint64_t max_own = 0;
  for (const auto& d : dirs) {
    if (d.id == 0) continue;
    auto parent = path_of.find(d.parent);
    if (parent == path_of.end()) {
      DSDFS_WARN("rejoin: directory %s (id %" PRIx64 ") has no parent %" PRIx64 "; skipped", d.name.c_str(), d.id,
                 d.parent);
      continue;
    }
    const std::string target = parent->second + "/" + d.name;
    const std::string staged = staging + "/" + hex_id(d.id);
    const bool have = ::access(staged.c_str(), F_OK) == 0;
    for (int attempt = 0; attempt < 2; ++attempt) {
      int rc = have ? ::rename(staged.c_str(), target.c_str()) : ::mkdir(target.c_str(), d.mode);
      if (rc == 0) break;
      struct stat st;
      if (attempt == 0 && (errno == EEXIST || errno == ENOTDIR || errno == ENOTEMPTY) &&
          ::lstat(target.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
        // A file of this rank under a name the job made a directory of
        // while it was down: the directory wins.
        DSDFS_WARN("rejoin: %s is a directory now; this rank's file of that name is removed", target.c_str());
        ::unlink(target.c_str());
        if (counts) ++counts->replaced;
        continue;
      }
      return Status::from_errno("rejoin: cannot place directory " + target);
    }
    path_of[d.id] = target;
    if ((d.id >> 48) == static_cast<uint64_t>(rank_)) max_own = std::max(max_own, d.id & ((uint64_t{1} << 48) - 1));
  }
  // Attributes, deepest first (placing a child changes its parent's times).
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    auto p = path_of.find(it->id);
    if (p == path_of.end()) continue;
    const char* path = p->second.c_str();
    if (run_as_root_) ::lchown(path, it->uid, it->gid);
    ::chmod(path, it->mode & 07777);
    struct timespec tv[2] = {{it->atime_s, it->atime_ns}, {it->mtime_s, it->mtime_ns}};
    ::utimensat(AT_FDCWD, path, tv, AT_SYMLINK_NOFOLLOW);
  }
  // What is left in staging: directories removed while this rank was down.
  for (auto& [name, is_dir] : list_entries(staging)) {
    for (auto& [file, file_is_dir] : list_entries(staging + "/" + name)) {
      if (file_is_dir) continue;
      DSDFS_WARN("rejoin: the directory of %s was removed while this rank was down; the file is lost", file.c_str());
      if (counts) ++counts->orphaned;
    }
  }
  if (auto s = remove_tree(staging); !s) DSDFS_WARN("rejoin: %s", s.to_string().c_str());
  for (auto& [id, path] : path_of) {
    if (id == 0) continue;
    auto fd = std::make_shared<UniqueFd>(::open(path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!fd->valid() || ::fstat(fd->get(), &st) != 0) return Status::from_errno("rejoin: cannot open " + path);
    remember_dir_id(fd->get(), id);
    dirs_.add(id, std::move(fd), st.st_dev, st.st_ino);
  }
  // This rank's next mkdir as coordinator must not reuse an id it gave
  // before it died.
  uint64_t next = next_dir_id_.load();
  while (next <= max_own && !next_dir_id_.compare_exchange_weak(next, max_own + 1)) {
  }
  if (counts) counts->directories = path_of.size();
  return Status::ok();
}

void Filesystem::for_each_store_dir(
    const std::function<void(uint64_t id, uint64_t parent, const std::string& name, const std::string& path,
                             const struct stat& st, bool known)>& fn) {
  std::deque<std::pair<uint64_t, std::string>> todo{{0, store_->files_path()}};
  while (!todo.empty()) {
    auto [parent, at] = std::move(todo.front());
    todo.pop_front();
    for (auto& [name, is_dir] : list_entries(at)) {
      if (!is_dir) continue;
      const std::string path = at + "/" + name;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0) continue;
      auto known = dirs_.id_of(st.st_dev, st.st_ino);
      const uint64_t id = known ? *known : kept_dir_id(path.substr(store_->files_path().size()));
      fn(id, parent, name, path, st, known.has_value());
      todo.push_back({id, path});
    }
  }
}

void Filesystem::for_each_owned_file(const std::function<void(uint64_t dir, const std::string& name)>& fn) {
  std::vector<std::pair<uint64_t, std::string>> dirs{{0, store_->files_path()}};
  for_each_store_dir([&](uint64_t id, uint64_t, const std::string&, const std::string& path, const struct stat&,
                         bool known) {
    if (known) dirs.push_back({id, path});
  });
  for (auto& [dir, path] : dirs) {
    for (auto& [name, is_dir] : list_entries(path)) {
      if (!is_dir) fn(dir, name);
    }
  }
}

void Filesystem::publish_files(RejoinCounts* counts) {
  // Each file of the store is claimed for this rank again at its shard. A
  // name another rank made a file of while this rank was down is that
  // rank's: this rank's file of the name is removed (it is what a dead
  // rank's file is to the others: lost).
  for_each_owned_file([&](uint64_t dir, const std::string& name) {
    auto claim = loc_claim(dir, name, 0);
    if (claim && (claim->result != LocatorShard::ClaimResult::kExists || claim->prev_owner == rank_)) {
      if (counts) ++counts->published;
      return;
    }
    if (claim || claim.err() == EISDIR) {
      DSDFS_WARN("rejoin: rank %d made a file %s while this rank was down; this rank's file of that name is removed",
                 claim ? claim->prev_owner : -1, name.c_str());
      auto dfd = local_dir(dir);
      if (dfd) ::unlinkat(dfd->get(), name.c_str(), 0);
      if (counts) ++counts->replaced;
      return;
    }
    DSDFS_WARN("rejoin: cannot publish %s again: %s", name.c_str(), claim.status().to_string().c_str());
    if (counts) ++counts->unreachable;
  });
}

void Filesystem::fill_shard(RejoinCounts* counts) {
  // This rank's shard came back empty: every live rank claims there the
  // files it holds whose names are homed here. Once all have, the shard
  // knows every name again, and the ranks stop asking every rank when it
  // does not know one (shard_unsure). A rank that does not answer leaves it
  // unsure: slower, still right.
  const int n = peers_->nranks();
  std::vector<int> ranks;
  for (int r = 0; r < n; ++r) {
    if (r != rank_ && peers_->alive(r)) ranks.push_back(r);
  }
  std::vector<Peers::Reply> replies(ranks.size(), Status::error(EIO));
  {
    // In parallel, each with a long timeout: a rank with many files makes
    // one claim per file homed here.
    std::vector<std::thread> threads;
    for (size_t i = 0; i < ranks.size(); ++i) {
      threads.emplace_back([&, i] {
        replies[i] = peers_->call(ranks[i], Op::kShardFill, msg::encode(msg::ShardFill{rank_, 0}), 60 * peers_->timeout());
      });
    }
    for (auto& t : threads) t.join();
  }
  for (size_t i = 0; i < ranks.size(); ++i) {
    msg::ShardFillReply reply;
    if (!replies[i] || !msg::decode(replies[i].value(), &reply)) {
      DSDFS_WARN("rejoin: rank %d did not fill this rank's shard (%s); lookups of names homed here that it does not "
                 "know ask every rank",
                 ranks[i], replies[i] ? "malformed reply" : replies[i].status().to_string().c_str());
      return;
    }
    if (counts) counts->shard_filled += reply.claimed;
  }
  peers_->call_all(Op::kShardFill, msg::encode(msg::ShardFill{rank_, 1}));
  rejoined_[static_cast<size_t>(rank_)].store(false);
  if (counts) counts->shard_whole = true;
}

Peers::Reply Filesystem::on_shard_fill(int, const msg::ShardFill& m) {
  if (m.rank >= peers_->nranks()) return bad_request("shard fill");
  msg::ShardFillReply reply;
  if (m.whole) {
    rejoined_[static_cast<size_t>(m.rank)].store(false);
    return msg::encode(reply);
  }
  if (m.rank == rank_) return msg::encode(reply);
  Status failed;
  for_each_owned_file([&](uint64_t dir, const std::string& name) {
    if (!failed.is_ok() || peers_->home_of(dir, name) != m.rank) return;
    auto r = peers_->call(m.rank, Op::kLocClaim, msg::encode(msg::Claim{{dir, name}, rank_, 0}));
    if (!r) {
      failed = r.status();
      return;
    }
    msg::ClaimReply c;
    if (msg::decode(r.value(), &c) && c.result == static_cast<uint8_t>(LocatorShard::ClaimResult::kExists) &&
        c.prev_owner != rank_) {
      DSDFS_WARN("shard fill: rank %d's shard names rank %d as the owner of %s, which this rank holds", m.rank,
                 c.prev_owner, name.c_str());
    }
    ++reply.claimed;
  });
  if (!failed.is_ok()) return failed;
  return msg::encode(reply);
}

}  // namespace dsdfs::fs
