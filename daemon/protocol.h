// SPDX-License-Identifier: Apache-2.0
// Payloads of the RPCs between ranks (layouts: docs/architecture.md). Every
// decoder validates lengths and ranges; callers answer EPROTO on failure.
#pragma once

#include <limits.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "common/hash.h"
#include "daemon/wire_codec.h"

namespace dsdfs::fs {

constexpr size_t kMaxName = NAME_MAX;
constexpr size_t kMaxLink = PATH_MAX;
constexpr uint32_t kMaxIo = 16u << 20;  // largest read or write carried by one RPC
// kFileWrite's reply instead of the count written: the file was moved to
// another rank (an i32, the new owner, follows).
constexpr uint64_t kWriteMoved = ~uint64_t{0};
// Why kFileDrop asks the old owner to let a name go.
constexpr uint8_t kDropReplaced = 0;  // a rename elsewhere replaced the name
constexpr uint8_t kDropMoved = 1;     // O_TRUNC elsewhere moved the file (writers follow it)

// The version of an owned file as remote readers see it: changes whenever
// its size or mtime does (close-to-open: after close the kernel has written
// both back to the store), and with `changes`, the count of changes to its
// bytes since a peer first saw it (ContentGens: a rewrite in place at the
// same size can keep the mtime).
//
// Its low 16 bits are the file's identity (file_identity: what tells apart two
// files that had the same inode number one after the other), and its top bit
// is clear: a read request sets it (kAnyVersionOfThisFile) to ask for the
// bytes of whatever version the file with that identity has now.
inline constexpr uint64_t kAnyVersionOfThisFile = uint64_t{1} << 63;
inline constexpr uint64_t kIdentityBits = 0xffff;
inline uint64_t file_version(const struct stat& st, uint64_t changes, uint16_t identity) {
  uint64_t h = fnv1a64({});
  for (uint64_t v : {static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_mtim.tv_sec),
                     static_cast<uint64_t>(st.st_mtim.tv_nsec), static_cast<uint64_t>(st.st_ino), changes}) {
    h = fnv1a64_le(v, h);
  }
  return ((h << 16) | identity) & ~kAnyVersionOfThisFile;
}

inline void put_stat(WireWriter& w, const struct stat& st, uint64_t version) {
  w.u64(st.st_ino).u32(st.st_mode).u32(static_cast<uint32_t>(st.st_nlink)).u32(st.st_uid).u32(st.st_gid);
  w.i64(st.st_size).i64(st.st_blocks).u32(static_cast<uint32_t>(st.st_blksize));
  w.i64(st.st_atim.tv_sec).i64(st.st_atim.tv_nsec).i64(st.st_mtim.tv_sec).i64(st.st_mtim.tv_nsec);
  w.i64(st.st_ctim.tv_sec).i64(st.st_ctim.tv_nsec).u64(version).u64(st.st_rdev);
}

inline bool get_stat(WireReader& r, struct stat* st, uint64_t* version) {
  *st = {};
  uint64_t ino;
  uint32_t mode, nlink, uid, gid, blksize;
  int64_t size, blocks, as, an, ms, mn, cs, cn;
  if (!(r.u64(&ino) && r.u32(&mode) && r.u32(&nlink) && r.u32(&uid) && r.u32(&gid) && r.i64(&size) &&
        r.i64(&blocks) && r.u32(&blksize) && r.i64(&as) && r.i64(&an) && r.i64(&ms) && r.i64(&mn) &&
        r.i64(&cs) && r.i64(&cn) && r.u64(version))) {
    return false;
  }
  uint64_t rdev;
  if (!r.u64(&rdev)) return false;
  st->st_rdev = static_cast<dev_t>(rdev);
  if (size < 0 || blocks < 0 || an < 0 || an >= 1000000000 || mn < 0 || mn >= 1000000000 || cn < 0 ||
      cn >= 1000000000) {
    return false;
  }
  st->st_ino = ino;
  st->st_mode = mode;
  st->st_nlink = nlink;
  st->st_uid = uid;
  st->st_gid = gid;
  st->st_size = size;
  st->st_blocks = blocks;
  st->st_blksize = blksize;
  st->st_atim = {as, an};
  st->st_mtim = {ms, mn};
  st->st_ctim = {cs, cn};
  return true;
}

// A directory mutation, as sent to the coordinator and applied on every rank.
struct DirChange {
  enum Kind : uint8_t {
    kMkdir = 1,
    kRmdirPrepare = 2,  // check emptiness, refuse new files in it
    kRmdirCommit = 3,
    kRmdirAbort = 4,
    kRename = 5,
    kSetattr = 6,
    kRmdir = 7,  // to the coordinator only: prepare + commit/abort
    kRenameBack = 8,  // undo a kRename on the ranks that applied it
  };
  uint8_t kind = 0;
  uint64_t dir = 0;        // parent directory id (setattr: the directory itself)
  std::string name;
  uint64_t dir2 = 0;       // rename target parent; mkdir: the new directory's id
  std::string name2;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t flags = 0;      // rename flags; setattr: FUSE_SET_ATTR_* mask
  int64_t atime_s = 0, atime_ns = 0, mtime_s = 0, mtime_ns = 0;
  // The rank whose FUSE request asked for the change (set by the coordinator
  // from the sender of kDirMutate), or -1. That rank's kernel updates its own
  // cache from the reply; every other rank tells its kernel (on_dir_apply).
  int32_t origin = -1;
  // kRmdirCommit: the rank that is the locator shard of (dir, name), chosen
  // by the coordinator; it forgets the name while it commits (saves a round
  // trip). -1: none does.
  int32_t locator = -1;

  // A typed message (daemon/messages.h): kDirMutate and kDirApply.
  static constexpr const char* kName = "DirChange";
  void put(WireWriter& w) const {
    w.u8(kind).u64(dir).str(name).u64(dir2).str(name2).u32(mode).u32(uid).u32(gid).u32(flags);
    w.i64(atime_s).i64(atime_ns).i64(mtime_s).i64(mtime_ns).i32(origin).i32(locator);
  }
  bool get(WireReader& r) {
    return r.u8(&kind) && r.u64(&dir) && r.str(&name, kMaxName) && r.u64(&dir2) && r.str(&name2, kMaxName) &&
           r.u32(&mode) && r.u32(&uid) && r.u32(&gid) && r.u32(&flags) && r.i64(&atime_s) && r.i64(&atime_ns) &&
           r.i64(&mtime_s) && r.i64(&mtime_ns) && r.i32(&origin) && r.i32(&locator) && kind >= kMkdir &&
           kind <= kRenameBack && origin >= -1 && locator >= -1;
  }
  std::vector<uint8_t> encode() const {
    WireWriter w;
    put(w);
    return w.take();
  }
  bool decode(std::span<const uint8_t> data) {
    WireReader r(data);
    return get(r) && r.done();
  }
};

// A name is acceptable from the network if it is a single path component.
inline bool valid_name(const std::string& n) {
  return !n.empty() && n.size() <= kMaxName && n != "." && n != ".." && n.find('/') == std::string::npos;
}

}  // namespace dsdfs::fs
