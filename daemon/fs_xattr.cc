// SPDX-License-Identifier: Apache-2.0
// Extended attributes: passed through to the store, plus the read-only
// user.dsdfs.* attributes that describe dsdfs itself.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "daemon/filesystem.h"

namespace dsdfs::fs {

namespace {
constexpr const char* kPrefix = "user.dsdfs.";
// The kernel asks for this one before every write (to drop file
// capabilities). Files on a job's scratch carry none: answer at once.
constexpr const char* kCapability = "security.capability";
bool is_special(const char* name) { return std::strncmp(name, kPrefix, std::strlen(kPrefix)) == 0; }
}  // namespace

Result<std::string> Filesystem::special_xattr(const Inode& inode, const std::string& name) {
  if (name == "user.dsdfs.owner") {
    // Directories are replicated on every rank: they have no owner.
    if (S_ISDIR(inode.type)) return Status::error(ENODATA, "a directory has no owner");
    if (inode.remote) return std::to_string(inode.ref.owner) + " " + peers_->host_of(inode.ref.owner);
    return std::to_string(rank_) + " " + host_;
  }
  if (name == "user.dsdfs.locator" && !S_ISDIR(inode.type)) {
    // The rank that holds the name's locator entry (who owns it): a name of
    // a frozen or slow rank's shard waits for that rank in every create,
    // lookup and rename.
    auto [dir, leaf] = inode.remote ? std::pair{inode.ref.dir, inode.ref.name} : inode.place();
    if (leaf.empty()) return Status::error(ENODATA, "no name known");
    const int shard = peers_->shard_of(dir, leaf);
    return std::to_string(shard) + " " + peers_->host_of(shard);
  }
  if (name == "user.dsdfs.cache" && S_ISREG(inode.type)) {
    // This node's copy of the file: "local" (this rank owns it), "current"
    // (all of the owner's version now), "partial" (of that version, not all
    // fetched yet), "stale" (of an older version), or "none".
    if (!inode.remote) return std::string("local");
    auto copy = cache_.peek(inode.ref.gino);
    if (!copy) return std::string("none");
    struct stat st;
    uint64_t version = 0;
    if (int err = remote_stat(inode.ref.owner, inode.ref.dir, inode.ref.name, &st, &version)) {
      return Status::error(err, "the owner did not answer");
    }
    if (static_cast<uint64_t>(st.st_ino) != inode.ref.gino || copy->first != version) return std::string("stale");
    return std::string(copy->second ? "current" : "partial");
  }
  if (name == "user.dsdfs.inode" && !S_ISDIR(inode.type)) {
    // What this node's kernel inode stands for, for reports of rare races:
    // a remote inode is one version of another rank's file (and the size
    // the kernel took from it), a local one a file of this rank's store.
    char out[200];
    if (inode.remote) {
      const struct stat st = inode.remote_attr();
      std::snprintf(out, sizeof out, "remote id %" PRIu64 " owner %d gino %" PRIu64 " version %016" PRIx64
                    " size %lld",
                    inode.id, inode.ref.owner, inode.ref.gino, inode.ref.version, static_cast<long long>(st.st_size));
    } else {
      std::snprintf(out, sizeof out, "local id %" PRIu64 " store ino %llu%s", inode.id,
                    static_cast<unsigned long long>(inode.src_ino), inode.released.load() ? " released" : "");
    }
    return std::string(out);
  }
  if (name == "user.dsdfs.control" && inode.id == FUSE_ROOT_ID) {
    MutexLock lock(control_mu_);
    if (control_path_.empty()) return Status::error(ENODATA, "no control socket");
    return control_path_;
  }
  if (name == "user.dsdfs.stats" && inode.id == FUSE_ROOT_ID) return stats_->to_text();
  if (name == "user.dsdfs.ready" && inode.id == FUSE_ROOT_ID && ready_.load()) {
    return "ranks " + std::to_string(peers_->nranks()) + "\n";
  }
  return Status::error(ENODATA);
}

Result<std::string> Filesystem::xattr_target(fuse_ino_t ino, const char* name, bool change) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  if (change && is_special(name)) return Status::error(EPERM, "dsdfs's own attribute");
  // Extended attributes of other ranks' files are not forwarded (docs/user-guide.md).
  if (S_ISLNK(inode->type) || inode->remote) return Status::error(ENOTSUP, "not forwarded");
  auto object = object_fd(inode);
  if (!object) return Status::error(ESTALE, "no longer at its name");
  // The path keeps the handle's file: the fd stays open in the inode.
  return proc_path(object->get());
}

Status Filesystem::setxattr(fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  if (std::strcmp(name, kCapability) == 0) return Status::error(ENOTSUP);
  auto path = xattr_target(ino, name, /*change=*/true);
  if (!path) return path.status();
  if (::setxattr(path->c_str(), name, value, size, flags) != 0) return Status::from_errno("setxattr");
  return Status::ok();
}

Result<std::string> Filesystem::getxattr(fuse_ino_t ino, const char* name) {
  if (std::strcmp(name, kCapability) == 0) return Status::error(ENODATA);
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  if (is_special(name)) return special_xattr(*inode, name);
  if (inode->remote && !S_ISLNK(inode->type)) return Status::error(ENODATA);
  auto path = xattr_target(ino, name, /*change=*/false);
  if (!path) return path.status();
  // Sized, then read; again if it grew in between.
  for (int attempt = 0;; ++attempt) {
    ssize_t n = ::getxattr(path->c_str(), name, nullptr, 0);
    if (n < 0) return Status::from_errno("getxattr");
    std::string v(static_cast<size_t>(n), '\0');
    n = n == 0 ? 0 : ::getxattr(path->c_str(), name, v.data(), v.size());
    if (n >= 0) {
      v.resize(static_cast<size_t>(n));
      return v;
    }
    if (errno != ERANGE || attempt == 3) return Status::from_errno("getxattr");
  }
}

Result<std::string> Filesystem::listxattr(fuse_ino_t ino) {
  auto inode = inode_of(ino);
  if (!inode) return Status::error(ESTALE, "unknown inode");
  if (S_ISLNK(inode->type) || inode->remote) return std::string();
  auto path = xattr_target(ino, "", /*change=*/false);
  if (!path) return path.status();
  // The store's own names (user.dsdfs.*: a directory's id) are not the
  // user's: the list leaves them out, so its length is that of the rest.
  std::string all;
  for (int attempt = 0;; ++attempt) {
    ssize_t n = ::listxattr(path->c_str(), nullptr, 0);
    if (n < 0) return Status::from_errno("listxattr");
    all.resize(static_cast<size_t>(n));
    n = n == 0 ? 0 : ::listxattr(path->c_str(), all.data(), all.size());
    if (n >= 0) {
      all.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE || attempt == 3) return Status::from_errno("listxattr");  // grew meanwhile: again
  }
  std::string out;
  for (size_t pos = 0; pos < all.size();) {
    const size_t len = ::strnlen(all.data() + pos, all.size() - pos);
    if (!is_special(all.data() + pos)) out.append(all, pos, len + 1);
    pos += len + 1;
  }
  return out;
}

Status Filesystem::removexattr(fuse_ino_t ino, const char* name) {
  auto path = xattr_target(ino, name, /*change=*/true);
  if (!path) return path.status();
  if (::removexattr(path->c_str(), name) != 0) return Status::from_errno("removexattr");
  return Status::ok();
}

}  // namespace dsdfs::fs
