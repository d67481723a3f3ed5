// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

// The node's local store: STORE/files holds the files this node owns at their
// namespace paths, STORE/cache holds copies of remote files, STORE/.dsdfs-store
// marks the directory as ours (we never remove a directory without it).
class Store {
 public:
  // Validates or creates `path` (mode 0700). Refuses a path that is not a
  // directory, is not writable, lies inside `mountpoint` (canonical), or is a
  // non-empty directory that is not a dsdfs store. Errors carry the one-line
  // message for the user in Status::context().
  static Result<Store> open(const std::string& path, const std::string& mountpoint);

  const std::string& path() const { return path_; }
  // True if open() created the directory (so a failed start may remove it).
  bool created() const { return created_; }
  std::string files_path() const { return path_ + "/files"; }
  std::string cache_path() const { return path_ + "/cache"; }
  // O_PATH descriptor of STORE/files, the root of the namespace.
  int files_fd() const { return files_fd_.get(); }

  // Removes files/, cache/ and the marker, then the store directory itself
  // (only if nothing else was put in it).
  Status remove();

 private:
  std::string path_;
  bool created_ = false;
  UniqueFd files_fd_;
};

// Removes a directory tree without following symlinks or crossing mounts.
Status remove_tree(const std::string& path);

// Whether directory `name` under dir_fd (AT_FDCWD: a path) has no entries;
// *err is ENOTEMPTY, or the errno if it cannot be read.
bool dir_is_empty(int dir_fd, const std::string& name, int* err);

// mkdir -p; the last component gets `mode`, missing parents 0755.
Status make_dirs(const std::string& path, mode_t mode);

// The canonical form of `path` if it exists, else of its longest existing
// prefix with the rest appended (no symlink resolution of missing parts).
std::string canonical_path(const std::string& path);

}  // namespace dsdfs::fs
