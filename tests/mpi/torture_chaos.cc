// SPDX-License-Identifier: Apache-2.0
// The torture test's workers: the loop, the operations of the chaos area t/f and of the
// directories t/d, and how every result is judged (torture.h).

#include "tests/mpi/torture.h"

#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cstring>
#include <map>

namespace dsdfs::mpitest::torture {

bool Worker::judge(std::string_view op, const Res& r, std::initializer_list<int> allowed,
                   unsigned flags) {
  t_.report.count(op, r.err, r.ns);
  if (r.rc >= 0 || r.err == 0) return r.rc >= 0;
  // After a hang the job's connections are aborted: what fails then is the abort, counted
  // but not judged.
  if (t_.abort_.load()) return false;
  for (int e : allowed)
    if (e == r.err) return false;
  const std::string result = "-1 " + errno_name(r.err);
  if (r.err == EIO && (flags & kLimitEioOk)) {
    t_.report.limit(kLimitEio, where(), op, call(), errno_name(r.err), result);
    return false;
  }
  violation(rule_for(r.err, flags), op, errno_name(r.err), result);
  return false;
}

// --- choosing an operation ---

Worker::Op Worker::pick(Rng& rng) const {
  struct Weighted {
    Op op;
    int weight;
  };
  const int link_weight = t_.cfg.links ? 3 : 0;
  const Weighted table[] = {
      {Op::kFOpen, 10},
      {Op::kFClose, 6},
      {Op::kFRead, 6},
      {Op::kFPwrite, 6},
      {Op::kFAppend, 4},
      {Op::kFTruncate, 2},
      {Op::kFFsync, 2},
      {Op::kFFstat, 3},
      {Op::kFStat, 5},
      {Op::kFRename, 5},
      {Op::kFLink, link_weight},
      {Op::kFUnlink, 4},
      {Op::kFReaddir, 2},
      {Op::kFCat, 4},
      {Op::kDMkdir, 3},
      {Op::kDRmdir, 3},
      {Op::kDRename, 3},
      {Op::kDCreate, 2},
      {Op::kDUnlink, 1},
      {Op::kDStat, 1},
      {Op::kDReaddir, 1},
      {Op::kLogAppend, 10},
      {Op::kLogCat, 3},
      {Op::kLogStat, 2},
      {Op::kLogReaddir, 1},
      {Op::kVReplace, 4},
      {Op::kVCat, 5},
      {Op::kVStat, 2},
      {Op::kVReaddir, 1},
      {Op::kGWrite, 3},
      {Op::kGCat, 4},
  };
  int total = 0;
  for (auto& w : table) total += w.weight;
  int x = static_cast<int>(rng.below(static_cast<uint64_t>(total)));
  for (auto& w : table) {
    if (x < w.weight) return w.op;
    x -= w.weight;
  }
  return Op::kFStat;
}

void Worker::chaos_op() {
  ++op_;
  // One generator per operation, from (seed, worker, operation index): a replay makes the
  // same choices for operation i even if other workers' timing changed what came before.
  Rng rng(mix64(t_.cfg.seed ^ mix64(0x5EED0000ULL + static_cast<uint64_t>(gid_))) ^
          mix64(op_ * 0x9E3779B97F4A7C15ULL));
  switch (pick(rng)) {
    case Op::kFOpen:
      return f_open(rng);
    case Op::kFClose:
      if (!ffds_.empty()) return f_close(rng.below(ffds_.size()));
      return f_open(rng);
    case Op::kFRead:
      return f_read(rng);
    case Op::kFPwrite:
      return f_pwrite(rng);
    case Op::kFAppend:
      return f_append(rng);
    case Op::kFTruncate:
      return f_truncate(rng);
    case Op::kFFsync:
      return f_fsync(rng);
    case Op::kFFstat:
      return f_fstat(rng);
    case Op::kFStat:
      return f_stat(rng);
    case Op::kFRename:
      return f_rename(rng);
    case Op::kFLink:
      return f_link(rng);
    case Op::kFUnlink:
      return f_unlink(rng);
    case Op::kFReaddir:
      return f_readdir();
    case Op::kFCat:
      return f_cat(rng);
    case Op::kDMkdir:
      return d_mkdir(rng);
    case Op::kDRmdir:
      return d_rmdir(rng);
    case Op::kDRename:
      return d_rename(rng);
    case Op::kDCreate:
      return d_create(rng);
    case Op::kDUnlink:
      return d_unlink(rng);
    case Op::kDStat:
      return d_stat(rng);
    case Op::kDReaddir:
      return d_readdir(rng);
    case Op::kLogAppend:
      return log_append(rng);
    case Op::kLogCat:
      return log_cat(rng);
    case Op::kLogStat:
      return log_stat(rng);
    case Op::kLogReaddir:
      return log_readdir();
    case Op::kVReplace:
      return v_replace(rng);
    case Op::kVCat:
      return v_cat(rng);
    case Op::kVStat:
      return v_stat(rng);
    case Op::kVReaddir:
      return v_readdir();
    case Op::kGWrite:
      return g_write(rng);
    case Op::kGCat:
      return g_cat(rng);
  }
}

// --- the chaos area t/f ---

int Worker::pick_fd(Rng& rng, int need) const {
  std::vector<int> ok;
  for (size_t i = 0; i < ffds_.size(); ++i) {
    int acc = ffds_[i].flags & O_ACCMODE;
    bool append = ffds_[i].flags & O_APPEND;
    if (need == 1 && acc == O_WRONLY) continue;
    if (need == 2 && (acc == O_RDONLY || append)) continue;  // pwrite on O_APPEND appends
    if (need == 3 && (acc == O_RDONLY || !append)) continue;
    ok.push_back(static_cast<int>(i));
  }
  if (ok.empty()) return -1;
  return ok[rng.below(ok.size())];
}

void Worker::f_open(Rng& rng, int forced_flags) {
  static const int kVariants[] = {
      O_RDONLY,
      O_RDONLY,
      O_RDWR,
      O_WRONLY | O_APPEND,
      O_CREAT | O_RDWR,
      O_CREAT | O_RDWR,
      O_CREAT | O_WRONLY | O_TRUNC,
      O_CREAT | O_WRONLY | O_APPEND,
      O_CREAT | O_EXCL | O_RDWR,
      O_CREAT | O_EXCL | O_WRONLY,
      O_CREAT | O_RDWR | O_TRUNC,
      O_RDWR | O_TRUNC,
      O_CREAT | O_RDONLY,
  };
  const int flags = forced_flags >= 0
                        ? forced_flags
                        : kVariants[rng.below(sizeof kVariants / sizeof kVariants[0])];
  const int name = static_cast<int>(rng.below(kFNames));
  if (ffds_.size() >= kMaxFds) f_close(rng.below(ffds_.size()));
  const std::string rel = f_rel(name);
  const std::string op = "f.open(" + flags_label(flags) + ")";
  const uint64_t changes = change_mark();
  if (flags & O_TRUNC) t_.f_changes_.fetch_add(1);
  Res r = sys("open(" + q(rel) + ", " + flags_text(flags) + ")",
              [&] { return ::open(path(rel).c_str(), flags | O_CLOEXEC, 0644); });
  if (flags & O_TRUNC) t_.f_changes_done_.fetch_add(1);
  bool ok;
  if (flags & O_EXCL)
    ok = judge(op, r, {EEXIST}, kCreat);
  else if (flags & O_CREAT)
    ok = judge(op, r, {}, kCreat);
  else
    ok = judge(op, r, {ENOENT});
  if (ok) ffds_.push_back({static_cast<int>(r.rc), name, flags, changes});
}

void Worker::f_close(size_t i) {
  FFd f = ffds_[i];
  ffds_.erase(ffds_.begin() + static_cast<long>(i));
  Res r = sys("close(fd of " + q(f_rel(f.name)) + " opened " + flags_text(f.flags) + ")",
              [&] { return ::close(f.fd); });
  // close reports a write-back error of a handle whose file moved (the documented EIO). The
  // kernel keeps one write-back error per file (not per handle), so the close of a read-only
  // handle of that file on the same node reports it too (user guide, "Handles of a replaced
  // or moved file").
  judge("f.close", r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags));
}

void Worker::check_cells(std::string_view op, std::string_view data, uint64_t offset, bool at_eof, int fd,
                         int name) {
  CellScan scan = cells_check(data, offset);
  if (scan.bad_cells) {
    std::string more;
    struct stat st;
    if (fd >= 0 && ::fstat(fd, &st) == 0)
      more += "; fstat of the open file then: st_size " + std::to_string(st.st_size) + " ino " +
              std::to_string(st.st_ino);
    if (fd >= 0) more += "; its kernel inode: " + kernel_inode_of(fd);
    if (name >= 0) more += t_.cells_in_stores(f_rel(name), scan.first_bad_offset);
    violation(kCellContent, op, "bad bytes", scan.describe() + more);
  }
  if (scan.partial_tail)
    violation(kCellGranule, op, at_eof ? "eof in a cell" : "short read",
              "read " + std::to_string(data.size()) + " bytes at offset " + std::to_string(offset));
}

void Worker::f_read(Rng& rng) {
  int i = pick_fd(rng, 1);
  if (i < 0) return f_open(rng, O_RDONLY);
  const FFd& f = ffds_[static_cast<size_t>(i)];
  const uint64_t offset = rng.below(kFMaxOffset / kCell) * kCell;
  const size_t len = rng.between(1, 64) * 64;
  std::string buf(len, '\0');
  Res r = sys("pread(fd of " + q(f_rel(f.name)) + ", " + std::to_string(len) + ", " +
                  std::to_string(offset) + ")",
              [&] { return ::pread(f.fd, buf.data(), len, static_cast<off_t>(offset)); });
  if (!judge("f.pread", r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags))) return;
  buf.resize(static_cast<size_t>(r.rc));
  check_cells("f.pread", buf, offset, static_cast<size_t>(r.rc) < len, f.fd, f.name);
}

void Worker::f_pwrite(Rng& rng) {
  int i = pick_fd(rng, 2);
  if (i < 0) return f_open(rng, O_CREAT | O_RDWR);
  const FFd& f = ffds_[static_cast<size_t>(i)];
  const uint64_t offset = rng.below(kFMaxOffset / kCell) * kCell;
  const size_t cells = rng.between(1, 256);
  std::string data = cells_make(cells, static_cast<uint32_t>(offset / kCell),
                                static_cast<uint16_t>(gid_), static_cast<uint32_t>(op_));
  t_.f_changes_.fetch_add(1);
  Res r = sys("pwrite(fd of " + q(f_rel(f.name)) + " " + flags_text(f.flags) + ", " +
                  std::to_string(data.size()) + ", " + std::to_string(offset) + ")",
              [&] { return ::pwrite(f.fd, data.data(), data.size(), static_cast<off_t>(offset)); });
  t_.f_changes_done_.fetch_add(1);
  if (judge("f.pwrite", r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags)) &&
      static_cast<size_t>(r.rc) != data.size())
    short_write("f.pwrite", f, data, static_cast<size_t>(r.rc), offset);
}

// A write that moved part of its bytes: on Linux that is an error met after the first pages
// (a page the write needed to read failed: the file moved away). Like a program's write
// loop, write the rest: that must fail, and with EIO only where the file changed since the
// open (documented); a rest that goes through means the short count was spurious.
void Worker::short_write(std::string_view op, const FFd& f, const std::string& data, size_t done,
                         std::optional<uint64_t> offset) {
  const std::string rest = data.substr(done);
  Res r = sys(std::string(offset ? "pwrite" : "write") + "(fd of " + q(f_rel(f.name)) + ", rest " +
                  std::to_string(rest.size()) + " of " + std::to_string(data.size()) + ")",
              [&] {
                return offset ? ::pwrite(f.fd, rest.data(), rest.size(), static_cast<off_t>(*offset + done))
                              : ::write(f.fd, rest.data(), rest.size());
              });
  const std::string rest_op = std::string(op) + ".rest";
  if (judge(rest_op, r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags)))
    violation(kShortIo, op, "short",
              std::to_string(done) + " of " + std::to_string(data.size()) +
                  " bytes, and the rest then went through (" + rc_text(r.rc, r.err) + ")");
}

void Worker::f_append(Rng& rng) {
  int i = pick_fd(rng, 3);
  if (i < 0)
    return f_open(rng,
                  rng.percent(50) ? O_CREAT | O_WRONLY | O_APPEND : O_CREAT | O_RDWR | O_APPEND);
  const FFd& f = ffds_[static_cast<size_t>(i)];
  std::string data = cells_make(rng.between(1, 64), kAppendedCell, static_cast<uint16_t>(gid_),
                                static_cast<uint32_t>(op_));
  t_.f_changes_.fetch_add(1);
  Res r = sys("write(fd of " + q(f_rel(f.name)) + " " + flags_text(f.flags) + ", " +
                  std::to_string(data.size()) + ")",
              [&] { return ::write(f.fd, data.data(), data.size()); });
  t_.f_changes_done_.fetch_add(1);
  if (judge("f.append", r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags)) &&
      static_cast<size_t>(r.rc) != data.size())
    short_write("f.append", f, data, static_cast<size_t>(r.rc), std::nullopt);
}

void Worker::f_truncate(Rng& rng) {
  int i = pick_fd(rng, 2);
  if (i < 0) return f_open(rng, O_CREAT | O_WRONLY);
  const FFd& f = ffds_[static_cast<size_t>(i)];
  const uint64_t size = rng.below(kFMaxOffset / kCell + 1) * kCell;
  t_.f_changes_.fetch_add(1);
  Res r = sys("ftruncate(fd of " + q(f_rel(f.name)) + ", " + std::to_string(size) + ")",
              [&] { return ::ftruncate(f.fd, static_cast<off_t>(size)); });
  t_.f_changes_done_.fetch_add(1);
  judge("f.ftruncate", r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags));
}

void Worker::f_fsync(Rng& rng) {
  int i = pick_fd(rng, 0);
  if (i < 0) return f_open(rng, O_CREAT | O_WRONLY);
  const FFd& f = ffds_[static_cast<size_t>(i)];
  Res r = sys("fsync(fd of " + q(f_rel(f.name)) + " " + flags_text(f.flags) + ")",
              [&] { return ::fsync(f.fd); });
  judge("f.fsync", r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags));
}

void Worker::f_fstat(Rng& rng) {
  int i = pick_fd(rng, 0);
  if (i < 0) return f_open(rng, O_RDONLY);
  const FFd& f = ffds_[static_cast<size_t>(i)];
  struct stat st;
  Res r = sys("fstat(fd of " + q(f_rel(f.name)) + ")", [&] { return ::fstat(f.fd, &st); });
  if (!judge("f.fstat", r, {}, kFdOp | (changed_since(f) ? kLimitEioOk : kNoFlags))) return;
  if (!S_ISREG(st.st_mode))
    violation(kWrongType, "f.fstat", "type", "mode 0" + std::to_string(st.st_mode));
  if (st.st_size % static_cast<off_t>(kCell) != 0)
    violation(kCellGranule, "f.fstat", "size", "st_size " + std::to_string(st.st_size));
}

void Worker::f_stat(Rng& rng) {
  const std::string rel = f_rel(static_cast<int>(rng.below(kFNames)));
  const bool l = rng.percent(50);
  const std::string op = l ? "f.lstat" : "f.stat";
  struct stat st;
  Res r = sys(std::string(l ? "lstat(" : "stat(") + q(rel) + ")",
              [&] { return l ? ::lstat(path(rel).c_str(), &st) : ::stat(path(rel).c_str(), &st); });
  if (!judge(op, r, {ENOENT})) return;
  if (!S_ISREG(st.st_mode))
    violation(kWrongType, op, "type", "mode 0" + std::to_string(st.st_mode));
  if (st.st_size % static_cast<off_t>(kCell) != 0)
    violation(kCellGranule, op, "size", "st_size " + std::to_string(st.st_size));
}

void Worker::f_rename(Rng& rng) {
  const int a = static_cast<int>(rng.below(kFNames));
  const int b = static_cast<int>((a + 1 + rng.below(kFNames - 1)) % kFNames);
  const bool noreplace = rng.percent(30);
  const std::string op = noreplace ? "f.rename(noreplace)" : "f.rename";
  t_.f_changes_.fetch_add(1);
  Res r = sys("renameat2(" + q(f_rel(a)) + ", " + q(f_rel(b)) +
                  (noreplace ? ", RENAME_NOREPLACE)" : ", 0)"),
              [&] {
                return ::renameat2(AT_FDCWD, path(f_rel(a)).c_str(), AT_FDCWD,
                                   path(f_rel(b)).c_str(), noreplace ? RENAME_NOREPLACE : 0);
  t_.f_changes_done_.fetch_add(1);
              });
  if (noreplace)
    judge(op, r, {ENOENT, EEXIST});
  else
    judge(op, r, {ENOENT});
}

void Worker::f_link(Rng& rng) {
  const int a = static_cast<int>(rng.below(kFNames));
  const int b = static_cast<int>((a + 1 + rng.below(kFNames - 1)) % kFNames);
  Res r = sys("link(" + q(f_rel(a)) + ", " + q(f_rel(b)) + ")",
              [&] { return ::link(path(f_rel(a)).c_str(), path(f_rel(b)).c_str()); });
  judge("f.link", r, {ENOENT, EEXIST}, kLinkOp);
}

void Worker::f_unlink(Rng& rng) {
  const std::string rel = f_rel(static_cast<int>(rng.below(kFNames)));
  t_.f_changes_.fetch_add(1);
  Res r = sys("unlink(" + q(rel) + ")", [&] { return ::unlink(path(rel).c_str()); });
  t_.f_changes_done_.fetch_add(1);
  judge("f.unlink", r, {ENOENT});
}

void Worker::readdir_check(std::string_view op, const std::string& rel,
                           const std::vector<std::pair<std::string, unsigned char>>& names,
                           const std::function<bool(const std::string&, unsigned char)>& expected,
                           const std::vector<std::string>& always) {
  std::map<std::string, int> seen;
  for (auto& [name, type] : names) {
    if (++seen[name] == 2)
      violation(kReaddirDuplicate, op, "duplicate", q(name) + " listed twice in " + q(rel));
    if (!expected(name, type))
      violation(kReaddirForeign, op, "foreign",
                q(name) + " (d_type " + std::to_string(type) + ") in " + q(rel));
  }
  for (auto& a : always)
    if (!seen.count(a))
      violation(kReaddirMissing, op, "missing", q(a) + " not listed in " + q(rel));
}

void Worker::f_readdir() {
  std::vector<std::pair<std::string, unsigned char>> names;
  const char* step = "";
  Res r = sys("opendir+readdir(\"t/f\")", [&] {
    int err = list_names(path("t/f"), &names, &step);
    errno = err;
    return err ? -1 : 0;
  });
  if (!judge("f.readdir", r, {}, kExists)) return;
  readdir_check("f.readdir", "t/f", names,
                [](const std::string& n, unsigned char type) {
                  if (type != DT_REG && type != DT_UNKNOWN) return false;
                  for (int i = 0; i < kFNames; ++i)
                    if (n == "f" + std::to_string(i)) return true;
                  return false;
                },
                {});
}

void Worker::f_cat(Rng& rng) {
  const int name = static_cast<int>(rng.below(kFNames));
  const std::string rel = f_rel(name);
  const uint64_t changes = change_mark();
  Res r = sys("open(" + q(rel) + ", O_RDONLY)",
              [&] { return ::open(path(rel).c_str(), O_RDONLY | O_CLOEXEC); });
  if (!judge("f.cat.open", r, {ENOENT})) return;
  const int fd = static_cast<int>(r.rc);
  std::string data;
  Res rr = sys("read-all(" + q(rel) + ")", [&] {
    int err = read_to_end(fd, 0, &data);
    errno = err;
    return err ? -1 : 0;
  });
  const unsigned limit = t_.f_changes_.load() != changes ? kLimitEioOk : kNoFlags;
  bool read_ok = judge("f.cat.read", rr, {}, kFdOp | limit);
  Res rc = sys("close(" + q(rel) + " opened O_RDONLY)", [&] { return ::close(fd); });
  // The kernel keeps one write-back error per file: a close of a read-only handle on the
  // node where a handle of that file failed to write back after a move reports it too.
  judge("f.cat.close", rc, {}, kFdOp | (t_.f_changes_.load() != changes ? kLimitEioOk : kNoFlags));
  describe("cat(" + q(rel) + ")");
  if (read_ok) check_cells("f.cat.read", data, 0, true, -1, name);
}

// --- directories t/d ---

void Worker::d_mkdir(Rng& rng) {
  const std::string rel = d_rel(static_cast<int>(rng.below(kDNames)));
  Res r = sys("mkdir(" + q(rel) + ")", [&] { return ::mkdir(path(rel).c_str(), 0755); });
  judge("d.mkdir", r, {EEXIST});
}

void Worker::d_rmdir(Rng& rng) {
  const std::string rel = d_rel(static_cast<int>(rng.below(kDNames)));
  Res r = sys("rmdir(" + q(rel) + ")", [&] { return ::rmdir(path(rel).c_str()); });
  judge("d.rmdir", r, {ENOENT, ENOTEMPTY, EEXIST});
}

void Worker::d_rename(Rng& rng) {
  const int a = static_cast<int>(rng.below(kDNames));
  const int b = static_cast<int>((a + 1 + rng.below(kDNames - 1)) % kDNames);
  const bool noreplace = rng.percent(30);
  const std::string op = noreplace ? "d.rename(noreplace)" : "d.rename";
  Res r = sys("renameat2(" + q(d_rel(a)) + ", " + q(d_rel(b)) +
                  (noreplace ? ", RENAME_NOREPLACE)" : ", 0)"),
              [&] {
                return ::renameat2(AT_FDCWD, path(d_rel(a)).c_str(), AT_FDCWD,
                                   path(d_rel(b)).c_str(), noreplace ? RENAME_NOREPLACE : 0);
              });
  // ENOTEMPTY or EEXIST (POSIX allows either) when the target is a non-empty directory
  judge(op, r, {ENOENT, ENOTEMPTY, EEXIST});
}

void Worker::d_create(Rng& rng) {
  const std::string rel = d_rel(static_cast<int>(rng.below(kDNames))) + "/x";
  Res r = sys("open(" + q(rel) + ", O_WRONLY|O_CREAT)",
              [&] { return ::open(path(rel).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644); });
  // ENOENT: the parent may be gone or renamed; that is what the directory area is for
  if (!judge("d.create", r, {ENOENT})) return;
  const int fd = static_cast<int>(r.rc);
  Res rc = sys("close(" + q(rel) + ")", [&] { return ::close(fd); });
  judge("d.create.close", rc, {}, kFdOp);
}

void Worker::d_unlink(Rng& rng) {
  const std::string rel = d_rel(static_cast<int>(rng.below(kDNames))) + "/x";
  Res r = sys("unlink(" + q(rel) + ")", [&] { return ::unlink(path(rel).c_str()); });
  judge("d.unlink", r, {ENOENT});
}

void Worker::d_stat(Rng& rng) {
  const std::string rel = d_rel(static_cast<int>(rng.below(kDNames)));
  struct stat st;
  Res r = sys("stat(" + q(rel) + ")", [&] { return ::stat(path(rel).c_str(), &st); });
  if (judge("d.stat", r, {ENOENT}) && !S_ISDIR(st.st_mode))
    violation(kWrongType, "d.stat", "type", "mode 0" + std::to_string(st.st_mode));
}

void Worker::d_readdir(Rng& rng) {
  std::vector<std::pair<std::string, unsigned char>> names;
  const char* step = "";
  Res r = sys("opendir+readdir(\"t/d\")", [&] {
    int err = list_names(path("t/d"), &names, &step);
    errno = err;
    return err ? -1 : 0;
  });
  if (judge("d.readdir", r, {}, kExists)) {
    readdir_check("d.readdir", "t/d", names,
                  [](const std::string& n, unsigned char type) {
                    if (type != DT_DIR && type != DT_UNKNOWN) return false;
                    for (int i = 0; i < kDNames; ++i)
                      if (n == "d" + std::to_string(i)) return true;
                    return false;
                  },
                  {});
  }
  const std::string rel = d_rel(static_cast<int>(rng.below(kDNames)));
  Res r2 = sys("opendir+readdir(" + q(rel) + ")", [&] {
    int err = list_names(path(rel), &names, &step);
    errno = err;
    return err ? -1 : 0;
  });
  // ENOENT: not there, or removed while listed (Linux's getdents on a dead directory)
  if (!judge("d.readdir.sub", r2, {ENOENT})) return;
  readdir_check("d.readdir.sub", rel, names,
                [](const std::string& n, unsigned char type) {
                  return n == "x" && (type == DT_REG || type == DT_UNKNOWN);
                },
                {});
}

// --- the worker's loop ---

void Worker::close_everything() {
  while (!ffds_.empty()) f_close(ffds_.size() - 1);
  for (int l = 0; l < t_.cfg.ranks; ++l) log_close(l, false);
}

void Worker::main() noexcept {
  try {
    while (!t_.abort_.load()) {
      const int req = t_.round_requested_.load();
      if (req > my_round_) {
        do_round(my_round_ + 1);
        continue;
      }
      if (t_.stop_.load()) {
        // a round requested just before the stop still needs every worker
        if (t_.round_requested_.load() > my_round_) continue;
        break;
      }
      chaos_op();
    }
    close_everything();
  } catch (const std::exception& e) {
    t_.report.violation(kUnexpectedErrno, where(), "worker", "worker thread", "exception",
                        std::string("exception: ") + e.what());
    t_.abort_.store(true);
    t_.barrier_.break_all();
  }
}

}  // namespace dsdfs::mpitest::torture
