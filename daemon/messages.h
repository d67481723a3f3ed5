// SPDX-License-Identifier: Apache-2.0
// One typed message per RPC payload between ranks: each struct lists its
// fields once, writes them (put) and reads and validates them (get) in one
// place. Handlers receive a decoded, validated value (Filesystem::
// register_rpcs); callers build the struct and encode() it. Layouts:
// docs/architecture.md, "Wire protocol" (checked by tests/unit/daemon/
// protocol_test.cc).
//
// A message type M has: static constexpr const char* kName; void put(
// WireWriter&) const; bool get(WireReader&) (false on a short, malformed or
// out-of-range field). encode()/decode() add the framing: decode() also
// requires that nothing is left over.
#pragma once

#include <linux/fs.h>
#include <sys/stat.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "daemon/protocol.h"
#include "daemon/wire_codec.h"

namespace dsdfs::fs::msg {

template <typename M>
std::vector<uint8_t> encode(const M& m) {
  WireWriter w;
  m.put(w);
  return w.take();
}

template <typename M>
bool decode(std::span<const uint8_t> payload, M* m) {
  WireReader r(payload);
  return m->get(r) && r.done();
}

// A file name in a replicated directory: kFileUnlink, kFileReadlink,
// kLocLookup, kOwnFind (kFileStat: StatAsk).
struct Name {
  static constexpr const char* kName = "Name";
  uint64_t dir = 0;
  std::string name;
  void put(WireWriter& w) const { w.u64(dir).str(name); }
  bool get(WireReader& r) { return r.u64(&dir) && r.str(&name, kMaxName) && valid_name(name); }
};

// kLocClaim: claim (dir, name) for `owner` at its locator shard
// (LocatorShard::claim: flags, and the owner a kReplaceIf claim expects).
struct Claim {
  static constexpr const char* kName = "Claim";
  Name at;
  int32_t owner = 0;
  uint32_t flags = 0;
  int32_t expect = -1;
  uint64_t expect_gen = 0;  // kReplaceIf: only that entry of `expect` (0: any)
  void put(WireWriter& w) const {
    at.put(w);
    w.i32(owner).u32(flags).i32(expect).u64(expect_gen);
  }
  bool get(WireReader& r) {
    return at.get(r) && r.i32(&owner) && r.u32(&flags) && r.i32(&expect) && r.u64(&expect_gen) && owner >= 0 &&
           flags <= 15 && expect >= -1;
  }
};

struct ClaimReply {
  static constexpr const char* kName = "ClaimReply";
  uint8_t result = 0;  // LocatorShard::ClaimResult
  int32_t prev_owner = -1;
  uint64_t gen = 0;  // the entry's generation (LocatorShard::Claim::gen)
  void put(WireWriter& w) const { w.u8(result).i32(prev_owner).u64(gen); }
  bool get(WireReader& r) { return r.u8(&result) && r.i32(&prev_owner) && r.u64(&gen) && result <= 2; }
};

// kLocRemove: forget (dir, name) if `owner` still holds it.
struct LocRemove {
  static constexpr const char* kName = "LocRemove";
  Name at;
  int32_t owner = 0;
  void put(WireWriter& w) const {
    at.put(w);
    w.i32(owner);
  }
  bool get(WireReader& r) { return at.get(r) && r.i32(&owner); }
};

// The reply of kLocLookup and kOwnFind: a rank, or LocatorShard::kDirectory.
struct Owner {
  static constexpr const char* kName = "Owner";
  int32_t rank = -1;
  void put(WireWriter& w) const { w.i32(rank); }
  bool get(WireReader& r) { return r.i32(&rank); }
};

// The attributes with the store's identity and the owner's version of the
// file: in kFileStat's reply (StatBytes), kFileSetattr's and others.
struct Stat {
  static constexpr const char* kName = "Stat";
  struct stat st {};
  uint64_t version = 0;
  void put(WireWriter& w) const { put_stat(w, st, version); }
  bool get(WireReader& r) { return get_stat(r, &st, &version); }
};

// A file of up to this many bytes may come whole with its attributes
// (StatAsk::inline_max, StatBytes::data): a remote lookup brings a small
// file, and the open right after it needs no kFileRead.
inline constexpr uint32_t kInlineMax = 4096;

// kFileStat: the attributes of (dir, name), and all of its bytes too where
// it is a regular file of at most inline_max bytes (0: never).
struct StatAsk {
  static constexpr const char* kName = "StatAsk";
  Name at;
  uint32_t inline_max = 0;
  void put(WireWriter& w) const {
    at.put(w);
    w.u32(inline_max);
  }
  bool get(WireReader& r) { return at.get(r) && r.u32(&inline_max) && inline_max <= kInlineMax; }
};

// kFileStat's reply: the Stat, and for a StatAsk with inline_max, all bytes
// of that version where the owner had them in memory (else none).
struct StatBytes {
  static constexpr const char* kName = "StatBytes";
  Stat stat;
  std::vector<uint8_t> data;
  void put(WireWriter& w) const {
    stat.put(w);
    w.bytes(data);
  }
  bool get(WireReader& r) {
    std::span<const uint8_t> d;
    if (!(stat.get(r) && r.bytes(&d, kInlineMax))) return false;
    data.assign(d.begin(), d.end());
    return data.empty() || static_cast<uint64_t>(stat.st.st_size) == data.size();
  }
};

// kFileRead: bytes [off, off + len) of the file gino at (dir, name), of that
// version (0: any version of that file).
struct Read {
  static constexpr const char* kName = "Read";
  Name at;
  uint64_t gino = 0;
  uint64_t version = 0;
  uint64_t off = 0;
  uint32_t len = 0;
  void put(WireWriter& w) const {
    at.put(w);
    w.u64(gino).u64(version).u64(off).u32(len);
  }
  bool get(WireReader& r) {
    return at.get(r) && r.u64(&gino) && r.u64(&version) && r.u64(&off) && r.u32(&len) && len <= kMaxIo &&
           off <= (uint64_t{1} << 62);
  }
};

// kFileWrite: a forwarded write (at off) or append (off ignored), with its
// bytes, to the file gino at (dir, name) whose version the writer opened (or
// followed to): the owner checks its identity bits (kIdentityBits), so that
// a file that got gino after the writer's file was unlinked never takes its
// writes. The sender writes the header and then the bytes into one buffer
// (put_header), so that the bytes are copied once.
struct Write {
  static constexpr const char* kName = "Write";
  Name at;
  uint64_t gino = 0;
  uint64_t version = 0;
  bool append = false;
  uint64_t off = 0;
  std::span<const uint8_t> data;  // decode: a view into the payload
  void put_header(WireWriter& w, uint32_t len) const {
    at.put(w);
    w.u64(gino).u64(version).u8(append ? 1 : 0).u64(off).u32(len);
  }
  void put(WireWriter& w) const { put_header(w, static_cast<uint32_t>(data.size())), append_bytes(w); }
  bool get(WireReader& r) {
    uint8_t a;
    if (!(at.get(r) && r.u64(&gino) && r.u64(&version) && r.u8(&a) && r.u64(&off) && r.bytes(&data, kMaxIo)))
      return false;
    append = a != 0;
    return a <= 1 && off <= (uint64_t{1} << 62);
  }

 private:
  void append_bytes(WireWriter& w) const {
    auto& b = w.buffer();
    b.insert(b.end(), data.begin(), data.end());
  }
};

// kFileWrite's reply: the count written, or kWriteMoved and the rank the
// file moved to.
struct WriteReply {
  static constexpr const char* kName = "WriteReply";
  uint64_t written = 0;
  int32_t moved_to = -1;  // when written == kWriteMoved
  void put(WireWriter& w) const {
    w.u64(written);
    if (written == kWriteMoved) w.i32(moved_to);
  }
  bool get(WireReader& r) {
    if (!r.u64(&written)) return false;
    if (written != kWriteMoved) return written <= kMaxIo;
    return r.i32(&moved_to) && moved_to >= 0;
  }
};

// kFileRename: rename (dir, name) to (dir2, name2) on the owner of the source.
struct Rename {
  static constexpr const char* kName = "Rename";
  Name from;
  Name to;
  uint32_t flags = 0;
  void put(WireWriter& w) const {
    from.put(w);
    to.put(w);
    w.u32(flags);
  }
  bool get(WireReader& r) {
    return from.get(r) && to.get(r) && r.u32(&flags) && (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) == 0;
  }
};

// kFileDrop (to every rank): the name left old_owner (replaced by a rename
// elsewhere, or moved by O_TRUNC); every rank forgets the file gino (0: keep
// it, it has other names) and old_owner drops its copy.
struct Drop {
  static constexpr const char* kName = "Drop";
  Name at;
  int32_t old_owner = -1;
  uint64_t gino = 0;
  uint8_t reason = kDropReplaced;
  void put(WireWriter& w) const {
    at.put(w);
    w.i32(old_owner).u64(gino).u8(reason);
  }
  bool get(WireReader& r) {
    return at.get(r) && r.i32(&old_owner) && r.u64(&gino) && r.u8(&reason) && reason <= kDropMoved;
  }
};

// kFileSetattr: what FUSE's setattr asks (to_set: FUSE_SET_ATTR_*), of the
// file gino at (dir, name); answered with Stat.
struct Setattr {
  static constexpr const char* kName = "Setattr";
  Name at;
  uint64_t gino = 0;
  uint32_t to_set = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t size = 0;
  int64_t atime_s = 0, atime_ns = 0, mtime_s = 0, mtime_ns = 0;
  void put(WireWriter& w) const {
    at.put(w);
    w.u64(gino).u32(to_set).u32(mode).u32(uid).u32(gid).i64(size);
    w.i64(atime_s).i64(atime_ns).i64(mtime_s).i64(mtime_ns);
  }
  bool get(WireReader& r) {
    return at.get(r) && r.u64(&gino) && r.u32(&to_set) && r.u32(&mode) && r.u32(&uid) && r.u32(&gid) &&
           r.i64(&size) && r.i64(&atime_s) && r.i64(&atime_ns) && r.i64(&mtime_s) && r.i64(&mtime_ns) && size >= 0;
  }
};

// kFileMap: export that version of the file for one-sided reads.
struct Map {
  static constexpr const char* kName = "Map";
  Name at;
  uint64_t gino = 0;
  uint64_t version = 0;
  void put(WireWriter& w) const {
    at.put(w);
    w.u64(gino).u64(version);
  }
  bool get(WireReader& r) { return at.get(r) && r.u64(&gino) && r.u64(&version); }
};

struct MapReply {
  static constexpr const char* kName = "MapReply";
  uint64_t address = 0;
  uint64_t length = 0;
  std::span<const uint8_t> rkey;  // decode: a view into the payload
  void put(WireWriter& w) const { w.u64(address).u64(length).bytes(rkey); }
  bool get(WireReader& r) { return r.u64(&address) && r.u64(&length) && r.bytes(&rkey, 1 << 16); }
};

// kFileTruncate: `>` of the owner's file gino from another rank.
struct Truncate {
  static constexpr const char* kName = "Truncate";
  Name at;
  uint64_t gino = 0;
  void put(WireWriter& w) const {
    at.put(w);
    w.u64(gino);
  }
  bool get(WireReader& r) { return at.get(r) && r.u64(&gino); }
};

// kFileTruncate's reply: truncated in place (with the new attributes), or
// "take it" (the caller moves the name to itself).
struct TruncateReply {
  static constexpr const char* kName = "TruncateReply";
  bool truncated = false;
  Stat now;  // when truncated
  void put(WireWriter& w) const {
    w.u8(truncated ? 1 : 0);
    if (truncated) now.put(w);
  }
  bool get(WireReader& r) {
    uint8_t t;
    if (!r.u8(&t) || t > 1) return false;
    truncated = t != 0;
    return !truncated || now.get(r);
  }
};

// kFileLink: the owner links its file gino at `from` under `to` as well.
struct Link {
  static constexpr const char* kName = "Link";
  Name from;
  uint64_t gino = 0;
  Name to;
  void put(WireWriter& w) const {
    from.put(w);
    w.u64(gino);
    to.put(w);
  }
  bool get(WireReader& r) { return from.get(r) && r.u64(&gino) && to.get(r); }
};

// kDirMutate's reply to a mkdir: the new directory's id (other changes: empty).
struct MadeDir {
  static constexpr const char* kName = "MadeDir";
  uint64_t dir = 0;
  void put(WireWriter& w) const { w.u64(dir); }
  bool get(WireReader& r) { return r.u64(&dir) && dir != 0; }
};

// kFileFind: the name in directory `dir` that holds the owner's file gino
// now (answered with a Name; ENOENT: none).
struct Find {
  static constexpr const char* kName = "Find";
  uint64_t dir = 0;
  uint64_t gino = 0;
  void put(WireWriter& w) const { w.u64(dir).u64(gino); }
  bool get(WireReader& r) { return r.u64(&dir) && r.u64(&gino) && gino != 0; }
};

// kRankDown: the sender declared `rank` dead (its endpoint failed, or it was
// silent too long); the receiver does too, so that every rank that can still
// talk agrees on who is in the job.
struct RankDown {
  static constexpr const char* kName = "RankDown";
  int32_t rank = -1;
  void put(WireWriter& w) const { w.i32(rank); }
  bool get(WireReader& r) { return r.i32(&rank) && rank >= 0; }
};

// kRankInfo: what a rank says about itself to the `dsdfs` command (no fields
// yet; the reply is one line of key=value words, Filesystem::on_rank_info).
struct InfoRequest {
  static constexpr const char* kName = "InfoRequest";
  uint32_t flags = 0;
  void put(WireWriter& w) const { w.u32(flags); }
  bool get(WireReader& r) { return r.u32(&flags); }
};

// kStageStart: start stage-out job `id` on this rank (daemon/stage.h).
struct StageStart {
  static constexpr const char* kName = "StageStart";
  uint64_t id = 0;
  uint32_t flags = 0;  // 1: verify, 2: stage-in (from dest into src_rel), 4: spread over the ranks
  uint32_t jobs = 4;
  std::string src_rel;  // under the mount's root
  std::string dest;     // outside, absolute
  void put(WireWriter& w) const { w.u64(id).u32(flags).u32(jobs).str(src_rel).str(dest); }
  bool get(WireReader& r) {
    if (!(r.u64(&id) && r.u32(&flags) && r.u32(&jobs) && r.str(&src_rel, 4096) && r.str(&dest, 4096))) return false;
    if (dest.empty() || dest[0] != '/' || (!src_rel.empty() && src_rel[0] == '/')) return false;
    // No ".." component: the source stays under the store's root.
    for (size_t at = 0; at <= src_rel.size();) {
      size_t slash = src_rel.find('/', at);
      if (slash == std::string::npos) slash = src_rel.size();
      if (src_rel.compare(at, slash - at, "..") == 0) return false;
      at = slash + 1;
    }
    return true;
  }
};

// kStageStatus: the progress of stage-out job `id` here.
struct StageQuery {
  static constexpr const char* kName = "StageQuery";
  uint64_t id = 0;
  void put(WireWriter& w) const { w.u64(id); }
  bool get(WireReader& r) { return r.u64(&id); }
};

// kRankJoin: a restarted daemon of `rank` (dsdfs-launch --rejoin) asks to
// be let in again, reachable at `address` (its new UCX worker).
struct Join {
  static constexpr const char* kName = "Join";
  static constexpr size_t kMaxAddress = 64 * 1024;
  int32_t rank = -1;
  uint32_t protocol = 0;
  std::string host;
  std::vector<uint8_t> address;
  void put(WireWriter& w) const { w.i32(rank).u32(protocol).str(host).bytes(address); }
  bool get(WireReader& r) {
    std::span<const uint8_t> a;
    if (!(r.i32(&rank) && r.u32(&protocol) && r.str(&host, 255) && r.bytes(&a, kMaxAddress))) return false;
    address.assign(a.begin(), a.end());
    return rank >= 0 && !address.empty();
  }
};

// kRankJoin's reply: who is alive, where every rank is reached now, and
// every directory of the job (the coordinator's replica, parents first).
struct JoinReply {
  static constexpr const char* kName = "JoinReply";
  struct Dir {
    uint64_t id = 0;
    uint64_t parent = 0;  // the root (id 0) is listed with parent 0 and no name
    std::string name;
    uint32_t mode = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    int64_t atime_s = 0, atime_ns = 0, mtime_s = 0, mtime_ns = 0;
  };
  std::vector<uint8_t> alive;  // by rank: 1 alive
  std::vector<std::vector<uint8_t>> addresses;  // by rank
  std::vector<Dir> dirs;
  void put(WireWriter& w) const {
    w.u32(static_cast<uint32_t>(alive.size()));
    for (size_t i = 0; i < alive.size(); ++i) w.u8(alive[i]).bytes(addresses[i]);
    w.u32(static_cast<uint32_t>(dirs.size()));
    for (const Dir& d : dirs) {
      w.u64(d.id).u64(d.parent).str(d.name).u32(d.mode).u32(d.uid).u32(d.gid);
      w.i64(d.atime_s).i64(d.atime_ns).i64(d.mtime_s).i64(d.mtime_ns);
    }
  }
  bool get(WireReader& r) {
    uint32_t n;
    if (!r.u32(&n) || n > r.remaining() / 5) return false;  // 5: the smallest rank entry
    alive.resize(n);
    addresses.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      std::span<const uint8_t> a;
      if (!(r.u8(&alive[i]) && r.bytes(&a, Join::kMaxAddress))) return false;
      addresses[i].assign(a.begin(), a.end());
    }
    if (!r.u32(&n) || n > r.remaining() / 64) return false;  // 64: the smallest directory entry
    dirs.resize(n);
    for (Dir& d : dirs) {
      if (!(r.u64(&d.id) && r.u64(&d.parent) && r.str(&d.name, kMaxName) && r.u32(&d.mode) && r.u32(&d.uid) &&
            r.u32(&d.gid) && r.i64(&d.atime_s) && r.i64(&d.atime_ns) && r.i64(&d.mtime_s) && r.i64(&d.mtime_ns))) {
        return false;
      }
      if (d.id == 0 ? !d.name.empty() : !valid_name(d.name)) return false;
    }
    return true;
  }
};

// kRankUp: `rank` is back (its daemon was restarted), at `address`.
struct RankUp {
  static constexpr const char* kName = "RankUp";
  int32_t rank = -1;
  std::vector<uint8_t> address;
  void put(WireWriter& w) const { w.i32(rank).bytes(address); }
  bool get(WireReader& r) {
    std::span<const uint8_t> a;
    if (!(r.i32(&rank) && r.bytes(&a, Join::kMaxAddress))) return false;
    address.assign(a.begin(), a.end());
    return rank >= 0 && !address.empty();
  }
};

// kShardFill: the rejoined `rank` asks every rank to claim at its shard the
// files it holds whose names are homed there (whole = 0; the reply counts
// them), then tells every rank that its shard knows every name again
// (whole = 1).
struct ShardFill {
  static constexpr const char* kName = "ShardFill";
  int32_t rank = -1;
  uint8_t whole = 0;
  void put(WireWriter& w) const { w.i32(rank).u8(whole); }
  bool get(WireReader& r) { return r.i32(&rank) && r.u8(&whole) && rank >= 0 && whole <= 1; }
};

struct ShardFillReply {
  static constexpr const char* kName = "ShardFillReply";
  uint64_t claimed = 0;
  void put(WireWriter& w) const { w.u64(claimed); }
  bool get(WireReader& r) { return r.u64(&claimed); }
};

// kDirList: the files a rank owns in directory `dir` (kCountOnly: only its
// moved-out count, DirListReply::moved).
struct DirList {
  static constexpr const char* kName = "DirList";
  static constexpr uint8_t kCountOnly = 1;
  uint64_t dir = 0;
  uint8_t flags = 0;
  void put(WireWriter& w) const { w.u64(dir).u8(flags); }
  bool get(WireReader& r) { return r.u64(&dir) && r.u8(&flags) && flags <= kCountOnly; }
};

// kDirList's reply: the files the rank holds in that directory (names,
// d_type, global inode numbers).
struct DirListReply {
  static constexpr const char* kName = "DirListReply";
  struct Entry {
    std::string name;
    uint8_t type = 0;
    uint64_t gino = 0;
  };
  std::vector<Entry> entries;
  // How many names of that directory this rank has dropped because another
  // rank took them over (a rename onto them, `>`), read after the listing: a
  // lister that sees it change between two rounds asks again (list_dir).
  uint64_t moved = 0;
  void put(WireWriter& w) const {
    w.u64(moved);
    w.u32(static_cast<uint32_t>(entries.size()));
    for (const Entry& e : entries) w.str(e.name).u8(e.type).u64(e.gino);
  }
  bool get(WireReader& r) {
    uint32_t count;
    if (!r.u64(&moved) || !r.u32(&count) || count > r.remaining() / 13) return false;  // 13: the smallest entry
    entries.resize(count);
    for (Entry& e : entries) {
      if (!(r.str(&e.name, kMaxName) && r.u8(&e.type) && r.u64(&e.gino) && valid_name(e.name))) return false;
    }
    return true;
  }
};

// Each op's request and reply message (by Op number; "-": an empty reply,
// "bytes": raw bytes). docs/architecture.md's wire table lists the same, and
// tests/unit/daemon/messages_test.cc checks both against each other and
// against Op.
struct OpMessages {
  uint16_t op;
  const char* name;     // as in the table: Op without its k
  const char* request;  // message type
  const char* reply;
};
inline constexpr OpMessages kOpMessages[] = {
    {1, "DirMutate", DirChange::kName, MadeDir::kName},
    {2, "DirApply", DirChange::kName, "-"},
    {3, "LocClaim", Claim::kName, ClaimReply::kName},
    {4, "LocLookup", Name::kName, Owner::kName},
    {5, "LocRemove", LocRemove::kName, "-"},
    {6, "OwnFind", Name::kName, Owner::kName},
    {7, "FileStat", StatAsk::kName, StatBytes::kName},
    {8, "FileRead", Read::kName, "bytes"},
    {9, "FileWrite", Write::kName, WriteReply::kName},
    {10, "DirList", DirList::kName, DirListReply::kName},
    {11, "FileUnlink", Name::kName, "-"},
    {12, "FileRename", Rename::kName, "-"},
    {13, "FileDrop", Drop::kName, "-"},
    {14, "FileReadlink", Name::kName, "bytes"},
    {15, "FileMap", Map::kName, MapReply::kName},
    {16, "FileSetattr", Setattr::kName, Stat::kName},
    {18, "FileTruncate", Truncate::kName, TruncateReply::kName},
    {19, "FileLink", Link::kName, Stat::kName},
    {20, "FileFind", Find::kName, Name::kName},
    {21, "RankDown", RankDown::kName, "-"},
    {22, "RankJoin", Join::kName, JoinReply::kName},
    {23, "RankUp", RankUp::kName, "-"},
    {24, "ShardFill", ShardFill::kName, ShardFillReply::kName},
    {25, "RankInfo", InfoRequest::kName, "bytes"},
    {26, "JobStop", InfoRequest::kName, "-"},
    {27, "StageStart", StageStart::kName, "-"},
    {28, "StageStatus", StageQuery::kName, "bytes"},
};

}  // namespace dsdfs::fs::msg
