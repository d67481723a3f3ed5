// SPDX-License-Identifier: Apache-2.0
#include "tests/unit/daemon/in_process_cluster.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "daemon/file_handle.h"

namespace dsdfs::fs::testing {

InProcessCluster::InProcessCluster(const std::string& dir, int nranks, std::chrono::milliseconds timeout)
    : net_(nranks) {
  for (int r = 0; r < nranks; ++r) {
    auto rank = std::make_unique<Rank>();
    const std::string tag = std::to_string(r);
    // No mount: the mount point only names where forwarded writes would go.
    auto store = Store::open(dir + "/store" + tag, dir + "/mnt" + tag);
    if (!store) {
      std::fprintf(stderr, "in-process cluster: %s\n", store.status().to_string().c_str());
      std::abort();
    }
    rank->store = std::make_unique<Store>(std::move(store).value());
    rank->peers = std::make_unique<InProcessPeers>(&net_, r, timeout);
    Options options;
    options.mountpoint = dir + "/mnt" + tag;
    options.store = rank->store->path();
    rank->fs = std::make_unique<Filesystem>(options, rank->store.get(), rank->peers.get(), &rank->stats,
                                            rank->peers->host_of(r), options.mountpoint);
    rank->fs->register_rpcs();
    ranks_.push_back(std::move(rank));
  }
}

InProcessCluster::~InProcessCluster() {
  // No request runs once the net is down; then the ranks go.
  net_.shutdown();
  writers_.clear();
  for (auto& rank : ranks_) rank->fs->stop();
  ranks_.clear();
}

Result<uint64_t> InProcessCluster::mkdir(int r, uint64_t dir, const std::string& name) {
  auto made = fs(r).make_dir(dir, name, 0755, ::geteuid(), ::getegid());
  if (!made) return made.status();
  return made->id;
}

int InProcessCluster::rmdir(int r, uint64_t dir, const std::string& name) { return fs(r).remove_dir(dir, name); }

int InProcessCluster::rename(int r, uint64_t dir, const std::string& name, uint64_t dir2, const std::string& name2,
                             unsigned flags) {
  auto from = fs(r).local_dir(dir);
  auto to = fs(r).local_dir(dir2);
  if (!from || !to) return ENOENT;
  return fs(r).rename_name(dir, from->get(), name.c_str(), dir2, to->get(), name2.c_str(), flags);
}

int InProcessCluster::unlink(int r, uint64_t dir, const std::string& name) {
  auto dfd = fs(r).local_dir(dir);
  if (!dfd) return ENOENT;
  return fs(r).unlink_name(dir, dfd->get(), name.c_str());
}

int InProcessCluster::local_hint(int r, uint64_t dir, const std::string& name) {
  auto dfd = fs(r).local_dir(dir);
  struct stat st;
  return dfd && ::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) ? r : -1;
}

Result<int> InProcessCluster::open(int r, uint64_t dir, const std::string& name, int flags, const std::string& text) {
  const bool create = (flags & O_CREAT) != 0;
  auto opened = fs(r).open_name(dir, name, create ? -1 : local_hint(r, dir, name), flags & ~O_CREAT, 0644,
                                create);
  if (!opened) return opened.status();
  if (!text.empty()) {
    if (opened->owner != r) return Status::error(EOPNOTSUPP, "in-process writes go to owned files only");
    // As the FUSE front end hands the kernel's write to the file system.
    struct fuse_bufvec in = FUSE_BUFVEC_INIT(text.size());
    in.buf[0].mem = const_cast<char*>(text.data());
    auto n = fs(r).write_buf(0, reinterpret_cast<uint64_t>(opened->handle.get()), &in, 0);
    if (!n) return n.status();
    if (n.value() != text.size()) return Status::error(EIO, "short write");
  }
  return opened->owner;
}

Result<InProcessCluster::Writer> InProcessCluster::open_for_writing(int r, uint64_t dir, const std::string& name,
                                                                   int flags) {
  auto opened = fs(r).open_name(dir, name, local_hint(r, dir, name), O_WRONLY | flags, 0, /*create=*/false);
  if (!opened) return opened.status();
  writers_.push_back(std::move(opened->handle));
  return Writer{static_cast<int>(writers_.size()) - 1, opened->owner};
}

Result<size_t> InProcessCluster::write(int r, const Writer& w, const std::string& text, off_t off) {
  struct fuse_bufvec in = FUSE_BUFVEC_INIT(text.size());
  in.buf[0].mem = const_cast<char*>(text.data());
  return fs(r).write_buf(0, reinterpret_cast<uint64_t>(writers_.at(static_cast<size_t>(w.handle)).get()), &in, off);
}

Result<std::string> InProcessCluster::read(int r, uint64_t dir, const std::string& name) {
  auto opened = fs(r).open_name(dir, name, local_hint(r, dir, name), O_RDONLY, 0, /*create=*/false);
  if (!opened) return opened.status();
  FileHandle& h = *opened->handle;
  if (!h.remote) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::pread(h.fd, buf, sizeof buf, static_cast<off_t>(out.size()))) > 0) out.append(buf, n);
    if (n < 0) return Status::from_errno("read");
    return out;
  }
  if (!h.cache || h.cache->size() == 0) return std::string();
  const uint64_t last = (h.cache->size() - 1) / CacheEntry::kChunk;
  if (int err = fs(r).wait_chunks(h, 0, last)) return Status::error(err, "remote read");
  return std::string(reinterpret_cast<const char*>(h.cache->data()), h.cache->size());
}

int InProcessCluster::store_dir_fd(int r, uint64_t dir) {
  auto dfd = fs(r).local_dir(dir);
  return dfd ? dfd->get() : -1;
}

Result<int> InProcessCluster::owner_of(int r, uint64_t dir, const std::string& name) {
  auto dfd = fs(r).local_dir(dir);
  if (dfd && ::faccessat(dfd->get(), name.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
    struct stat st;
    if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
      return LocatorShard::kDirectory;
    }
    return r;
  }
  return fs(r).find_owner(dir, name);
}

std::vector<std::string> InProcessCluster::stored(int r, uint64_t dir) {
  std::vector<std::string> names;
  auto dfd = fs(r).local_dir(dir);
  if (!dfd) return names;
  int fd = ::openat(dfd->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return names;
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return names;
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

Status InProcessCluster::restart(int r, Filesystem::RejoinCounts* counts, bool fill) {
  Rank& rank = *ranks_.at(static_cast<size_t>(r));
  auto old = std::move(rank.fs);
  Options options = old->options();
  rank.fs = std::make_unique<Filesystem>(options, rank.store.get(), rank.peers.get(), &rank.stats,
                                         rank.peers->host_of(r), options.mountpoint);
  rank.fs->register_rpcs();  // replaces the dead daemon's handlers
  old->stop();
  old.reset();
  if (Status s = rank.fs->rejoin(counts); !s) return s;
  rank.fs->publish_files(counts);
  if (fill) rank.fs->fill_shard(counts);
  return Status::ok();
}

uint64_t InProcessCluster::dir_id(int r, uint64_t dir, const std::string& name) {
  auto dfd = fs(r).local_dir(dir);
  struct stat st;
  if (!dfd || ::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) return 0;
  return fs(r).dirs_.id_of(st.st_dev, st.st_ino).value_or(0);
}

Result<std::vector<std::string>> InProcessCluster::list(int r, uint64_t dir) {
  auto dfd = fs(r).local_dir(dir);
  if (!dfd) return Status::error(ENOENT, "no such directory");
  std::vector<DirEntryInfo> entries;
  if (int err = fs(r).list_dir(dir, dfd->get(), &entries)) return Status::error(err);
  std::vector<std::string> names;
  for (auto& e : entries) {
    if (e.name != "." && e.name != "..") names.push_back(e.name);
  }
  return names;
}

}  // namespace dsdfs::fs::testing
