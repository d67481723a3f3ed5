// SPDX-License-Identifier: Apache-2.0
// Extended attributes: passed through to the store, plus the read-only
// user.dsdfs.* attributes that describe dsdfs itself.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "daemon/errors.h"
#include "daemon/filesystem.h"

namespace dsdfs::fs {

namespace {
constexpr const char* kPrefix = "user.dsdfs.";
// The kernel asks for this one before every write (to drop file
// capabilities). Files on a job's scratch carry none: answer at once.
constexpr const char* kCapability = "security.capability";
bool is_special(const char* name) { return std::strncmp(name, kPrefix, std::strlen(kPrefix)) == 0; }
}  // namespace

std::string Filesystem::special_xattr(const Inode& inode, const std::string& name, int* err) {
  *err = 0;
  if (name == "user.dsdfs.owner") {
    if (S_ISDIR(inode.type)) {
      *err = ENODATA;  // directories are replicated on every rank, they have no owner
      return {};
    }
    if (inode.remote) return std::to_string(inode.ref.owner) + " " + peers_->host_of(inode.ref.owner);
    return std::to_string(rank_) + " " + host_;
  }
  if (name == "user.dsdfs.stats" && inode.id == FUSE_ROOT_ID) return stats_->to_text();
  if (name == "user.dsdfs.ready" && inode.id == FUSE_ROOT_ID && ready_.load()) {
    return "ranks " + std::to_string(peers_->nranks()) + "\n";
  }
  *err = ENODATA;
  return {};
}

void Filesystem::setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                          size_t size, int flags) {
  auto inode = inode_of(ino);
  if (!inode) return (void)reply_err(req, ESTALE);
  if (is_special(name)) return (void)reply_err(req, EPERM);
  if (std::strcmp(name, kCapability) == 0) return (void)reply_err(req, ENOTSUP);
  // Extended attributes of other ranks' files are not forwarded (docs/user-guide.md).
  if (S_ISLNK(inode->type) || inode->remote) return (void)reply_err(req, ENOTSUP);
  auto object = object_fd(inode);
  if (!object) return (void)reply_err(req, ESTALE);
  int rc = ::setxattr(proc_path(object->get()).c_str(), name, value, size, flags);
  reply_err(req, rc == 0 ? 0 : errno);
}

void Filesystem::getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (std::strcmp(name, kCapability) == 0) return (void)reply_err(req, ENODATA);
  auto inode = inode_of(ino);
  if (!inode) return (void)reply_err(req, ESTALE);
  if (is_special(name)) {
    int err;
    std::string v = special_xattr(*inode, name, &err);
    if (err) return (void)reply_err(req, err);
    if (size == 0) return (void)fuse_reply_xattr(req, v.size());
    if (v.size() > size) return (void)reply_err(req, ERANGE);
    return (void)fuse_reply_buf(req, v.data(), v.size());
  }
  if (S_ISLNK(inode->type)) return (void)reply_err(req, ENOTSUP);
  if (inode->remote) return (void)reply_err(req, ENODATA);
  auto object = object_fd(inode);
  if (!object) return (void)reply_err(req, ESTALE);
  std::string path = proc_path(object->get());
  if (size == 0) {
    ssize_t n = ::getxattr(path.c_str(), name, nullptr, 0);
    if (n < 0) return (void)reply_err(req, errno);
    return (void)fuse_reply_xattr(req, static_cast<size_t>(n));
  }
  std::vector<char> buf(size);
  ssize_t n = ::getxattr(path.c_str(), name, buf.data(), size);
  if (n < 0) return (void)reply_err(req, errno);
  fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

void Filesystem::listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto inode = inode_of(ino);
  if (!inode) return (void)reply_err(req, ESTALE);
  if (S_ISLNK(inode->type) || inode->remote) {
    if (size == 0) return (void)fuse_reply_xattr(req, 0);
    return (void)fuse_reply_buf(req, nullptr, 0);
  }
  auto object = object_fd(inode);
  if (!object) return (void)reply_err(req, ESTALE);
  std::string path = proc_path(object->get());
  // The store's own names (user.dsdfs.*: a directory's id) are not the
  // user's: the list leaves them out, so its length is that of the rest.
  std::vector<char> all;
  for (int attempt = 0;; ++attempt) {
    ssize_t n = ::listxattr(path.c_str(), nullptr, 0);
    if (n < 0) return (void)reply_err(req, errno);
    all.resize(static_cast<size_t>(n));
    n = n == 0 ? 0 : ::listxattr(path.c_str(), all.data(), all.size());
    if (n >= 0) {
      all.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE || attempt == 3) return (void)reply_err(req, errno);  // grew meanwhile: again
  }
  std::vector<char> out;
  for (size_t pos = 0; pos < all.size();) {
    const size_t len = ::strnlen(all.data() + pos, all.size() - pos);
    if (!is_special(all.data() + pos)) out.insert(out.end(), all.begin() + pos, all.begin() + pos + len + 1);
    pos += len + 1;
  }
  if (size == 0) return (void)fuse_reply_xattr(req, out.size());
  if (out.size() > size) return (void)reply_err(req, ERANGE);
  fuse_reply_buf(req, out.data(), out.size());
}

void Filesystem::removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  auto inode = inode_of(ino);
  if (!inode) return (void)reply_err(req, ESTALE);
  if (is_special(name)) return (void)reply_err(req, EPERM);
  if (S_ISLNK(inode->type) || inode->remote) return (void)reply_err(req, ENOTSUP);
  auto object = object_fd(inode);
  if (!object) return (void)reply_err(req, ESTALE);
  int rc = ::removexattr(proc_path(object->get()).c_str(), name);
  reply_err(req, rc == 0 ? 0 : errno);
}

}  // namespace dsdfs::fs
