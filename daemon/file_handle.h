// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "daemon/inode_table.h"
#include "daemon/remote_cache.h"

namespace dsdfs::fs {

// What an open file (fi->fh) refers to: a local store file, or a remote file
// read through the local cache or written through its owner. Owned by the
// kernel's open file; FUSE may use one handle from several threads at once,
// so everything here is immutable after open except atomics.
struct FileHandle {
  int fd = -1;                        // local: the store file (closed with the handle)
  bool remote = false;
  bool append = false;                // remote writes: append on the owner, ignore offsets
  std::shared_ptr<Inode> inode;       // local: `gone` makes I/O fail after a take-over elsewhere
  RemoteRef ref;                      // remote
  struct stat attr {};                // remote: the attributes of the version opened
  std::shared_ptr<CacheEntry> cache;  // remote, read-only opens
  std::atomic<uint64_t> next_chunk{0};  // sequential-read detection for readahead
  // One-sided path (set at open when the transport does RMA natively to the owner).
  bool use_rma = false;
  uint64_t rma_address = 0;
  uint64_t rma_length = 0;
  std::vector<uint8_t> rma_rkey;

  // Counts this handle as an open file of a local inode (see Inode::open_files).
  void attach(std::shared_ptr<Inode> local_inode) {
    inode = std::move(local_inode);
    if (inode) inode->open_files.fetch_add(1);
  }

  ~FileHandle() {
    if (fd >= 0) ::close(fd);
    if (inode && !remote) inode->open_files.fetch_sub(1);
  }
};

}  // namespace dsdfs::fs
