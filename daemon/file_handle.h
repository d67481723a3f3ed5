// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <vector>

#include "common/mutex.h"
#include "daemon/inode_table.h"
#include "daemon/offered_files.h"
#include "daemon/remote_cache.h"

namespace dsdfs::fs {

// What an open file (fi->fh) refers to: a local store file, or a remote file
// read through the local cache or written through its owner. Owned by the
// kernel's open file; FUSE may use one handle from several threads at once,
// so everything here is immutable after open except atomics.
struct FileHandle {
  int fd = -1;                        // local: the store file (closed with the handle)
  uint64_t gino = 0;                  // local: that file's global inode number (ContentGens)
  bool remote = false;
  bool append = false;                // remote writes: append on the owner, ignore offsets
  std::shared_ptr<Inode> inode;       // local: `gone` makes I/O fail after a take-over elsewhere
  OfferedFiles::Hold open_hold;       // local, a user's open: keeps the file from moving away
  RemoteRef ref;                      // remote; writable handles: GUARDED_BY(ref_mu) (follows a moved file)
  mutable Mutex ref_mu;          // leaf lock
  struct stat attr {};                // remote: the attributes of the version opened
  std::shared_ptr<CacheEntry> cache;  // remote, read-only opens
  std::atomic<uint64_t> next_chunk{0};  // sequential-read detection for readahead
  // Remote, read-only: read through the kernel's page cache (not direct_io),
  // so the kernel asks for pages up to its own idea of the size.
  bool page_cache = false;
  // Kernel passthrough (BackingFiles): the kernel inode whose backing id this
  // handle holds (0: none), and whether it counts as a writer there.
  uint64_t backing_ino = 0;
  bool backing_writer = false;
  // One-sided path (set at open when the transport does RMA natively to the owner).
  bool use_rma = false;
  uint64_t rma_address = 0;
  uint64_t rma_length = 0;
  std::vector<uint8_t> rma_rkey;

  // A copy of ref, for handles whose ref may change (writable remote ones).
  RemoteRef current_ref() const {
    MutexLock lock(ref_mu);
    return ref;
  }
  void set_ref(RemoteRef r) {
    MutexLock lock(ref_mu);
    ref = std::move(r);
  }

  // Counts this handle as an open file of a local inode (see Inode::open_files).
  // counted = false: a handle this daemon opened on its own mount (for
  // another rank's forwarded writes) is not a user's open file; it does not
  // keep the file from moving to another rank (see Inode::giving).
  void attach(std::shared_ptr<Inode> local_inode, bool counted = true, bool writable = false) {
    inode = std::move(local_inode);
    counted_ = counted;
    writer_ = counted && writable;
    if (inode && counted_) inode->open_files.fetch_add(1);
    if (inode && writer_) inode->open_writers.fetch_add(1);
  }

  ~FileHandle() {
    if (fd >= 0) ::close(fd);
    if (inode && !remote && counted_) inode->open_files.fetch_sub(1);
    if (inode && !remote && writer_) inode->open_writers.fetch_sub(1);
  }

 private:
  bool counted_ = false;
  bool writer_ = false;
};

}  // namespace dsdfs::fs
