// SPDX-License-Identifier: Apache-2.0
// The torture test's operations on data whose every byte the oracle can check: append-only
// logs (t/log), files replaced by write-temp-then-rename (t/v), files their owner overwrites in
// place and grows (t/g). See torture.h.

#include "tests/mpi/torture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>

namespace dsdfs::mpitest::torture {

// --- logs t/log ---

void Worker::log_append(Rng& rng) {
  const int l = static_cast<int>(rng.below(static_cast<uint64_t>(t_.cfg.ranks)));
  const std::string rel = log_rel(l);
  if (log_fd_[l] < 0) {
    const int flags = O_WRONLY | O_APPEND | (rng.percent(50) ? O_CREAT : 0);
    Res r = sys("open(" + q(rel) + ", " + flags_text(flags) + ")",
                [&] { return ::open(path(rel).c_str(), flags | O_CLOEXEC, 0644); });
    if (!judge("log.open(" + flags_label(flags) + ")", r, {},
               kExists | ((flags & O_CREAT) ? kCreat : kNoFlags)))
      return;
    log_fd_[l] = static_cast<int>(r.rc);
  }
  const int n = rng.percent(10) ? 2 : 1;
  const int64_t seq = log_next_[l];
  log_next_[l] += n;
  std::string data;
  for (int k = 0; k < n; ++k)
    data += record_make(
        {static_cast<uint32_t>(l), static_cast<uint32_t>(gid_), static_cast<uint32_t>(seq + k)});
  t_.log_writers_[static_cast<size_t>(l * t_.workers_total + gid_)]->attempted.store(seq + n - 1);
  t_.log_appends_[static_cast<size_t>(l)]->fetch_add(1);
  Res r = sys("write(" + q(rel) + " O_APPEND, " + std::to_string(n) + " record(s) seq " +
                  std::to_string(seq) + ")",
              [&] { return ::write(log_fd_[l], data.data(), data.size()); });
  bool ok = judge(n == 2 ? "log.append(2 records)" : "log.append", r, {}, kFdOp);
  if (ok && static_cast<size_t>(r.rc) != data.size()) {
    violation(kShortIo, "log.append", "short", rc_text(r.rc, r.err));
    ok = false;
  }
  auto& outcome = log_outcome_[static_cast<size_t>(l)];
  for (int k = 0; k < n; ++k) outcome.push_back(ok ? 1 : 2);
  if (ok) {
    log_last_ok_[l] = seq + n - 1;
  } else {
    log_failed_[l] = true;
  }
  if (rng.percent(25))
    log_close(l, false);
  else if (rng.percent(10))
    log_close(l, true);
}

// close (or fsync) of this worker's fd of log l; then every record written so far is
// durable for close-to-open, which log_cat checks.
void Worker::log_close(int l, bool fsync_only) {
  if (log_fd_[l] < 0) return;
  const std::string rel = log_rel(l);
  const int fd = log_fd_[l];
  Res r = fsync_only ? sys("fsync(" + q(rel) + ")", [&] { return ::fsync(fd); })
                     : sys("close(" + q(rel) + ")", [&] { return ::close(fd); });
  if (!fsync_only) log_fd_[l] = -1;
  bool ok = judge(fsync_only ? "log.fsync" : "log.close", r, {}, kFdOp);
  if (ok && !log_failed_[l])
    t_.log_writers_[static_cast<size_t>(l * t_.workers_total + gid_)]->durable.store(
        log_last_ok_[l]);
}

void Worker::log_floor_check(std::string_view op, int l, uint64_t size, uint64_t floor) {
  if (size < floor)
    violation(kLogShrank, op, "shrank",
              "size " + std::to_string(size) + " after this rank saw " + std::to_string(floor));
  auto& f = *t_.log_floor_[static_cast<size_t>(rank_ * t_.cfg.ranks + l)];
  uint64_t cur = f.load();
  while (size > cur && !f.compare_exchange_weak(cur, size)) {
  }
}

void Worker::log_cat(Rng& rng) {
  const int l = static_cast<int>(rng.below(static_cast<uint64_t>(t_.cfg.ranks)));
  const std::string rel = log_rel(l);
  const int G = t_.workers_total;
  std::vector<int64_t> durable(static_cast<size_t>(G));
  for (int g = 0; g < G; ++g)
    durable[static_cast<size_t>(g)] =
        t_.log_writers_[static_cast<size_t>(l * G + g)]->durable.load();
  const uint64_t floor = t_.log_floor_[static_cast<size_t>(rank_ * t_.cfg.ranks + l)]->load();
  const uint64_t appends = t_.log_appends_[static_cast<size_t>(l)]->load();
  // like `cat` (from 0) or `tail -c` (from a record boundary this rank has seen)
  const bool whole = rng.percent(70);
  const uint64_t start = whole ? 0 : rng.below(floor / kRecord + 1) * kRecord;
  Res r = sys("open(" + q(rel) + ", O_RDONLY)",
              [&] { return ::open(path(rel).c_str(), O_RDONLY | O_CLOEXEC); });
  if (!judge("log.cat.open", r, {}, kExists)) return;
  const int fd = static_cast<int>(r.rc);
  std::string data;
  Res rr = sys("read-all(" + q(rel) + " from " + std::to_string(start) + ")", [&] {
    int err = read_to_end(fd, start, &data);
    errno = err;
    return err ? -1 : 0;
  });
  const unsigned limit =
      t_.log_appends_[static_cast<size_t>(l)]->load() != appends ? kLimitEioOk : kNoFlags;
  const bool read_ok = judge(whole ? "log.cat.read" : "log.tail.read", rr, {}, kFdOp | limit);
  Res rc = sys("close(" + q(rel) + " opened O_RDONLY)", [&] { return ::close(fd); });
  judge("log.cat.close", rc, {}, kFdOp);  // read-only: nothing to write back, no EIO
  if (!read_ok) return;
  describe(whole ? "cat(" + q(rel) + ")" : "tail -c +" + std::to_string(start + 1) + " " + q(rel));
  const std::string op = whole ? "log.cat.read" : "log.tail.read";

  std::vector<int64_t> attempted(static_cast<size_t>(G));
  for (int g = 0; g < G; ++g)
    attempted[static_cast<size_t>(g)] =
        t_.log_writers_[static_cast<size_t>(l * G + g)]->attempted.load();
  size_t bad = 0, dups = 0, phantoms = 0, disorder = 0;
  std::string first_bad;
  std::vector<std::set<uint32_t>> seen(static_cast<size_t>(G));
  std::vector<int64_t> last(static_cast<size_t>(G), -1);
  for (size_t at = 0; at + kRecord <= data.size(); at += kRecord) {
    auto id = record_parse(std::string_view(data).substr(at, kRecord));
    if (!id || id->log != static_cast<uint32_t>(l) || id->writer >= static_cast<uint32_t>(G)) {
      if (bad++ == 0)
        first_bad = "offset " + std::to_string(start + at) + ": " +
                    hex_of(std::string_view(data).substr(at, 32));
      continue;
    }
    const size_t g = id->writer;
    if (!seen[g].insert(id->seq).second) ++dups;
    if (static_cast<int64_t>(id->seq) > attempted[g]) ++phantoms;
    if (static_cast<int64_t>(id->seq) < last[g]) ++disorder;
    last[g] = id->seq;
  }
  if (bad)
    violation(kLogRecord, op, "torn record",
              std::to_string(bad) + " of " + std::to_string(data.size() / kRecord) +
                  " records not whole; first at " + first_bad);
  if (data.size() % kRecord)
    violation(kLogRecord, op, "partial record",
              "read " + std::to_string(data.size()) + " bytes from " + std::to_string(start) +
                  ": ends inside a record");
  if (dups) violation(kLogDuplicate, op, "duplicate", std::to_string(dups) + " records seen twice");
  if (phantoms)
    violation(kLogPhantom, op, "phantom", std::to_string(phantoms) + " records not yet written");
  if (disorder)
    violation(kLogOrder, op, "order", std::to_string(disorder) + " records out of order");
  if (whole) {
    size_t lost = 0;
    std::string first_lost;
    for (int g = 0; g < G; ++g) {
      for (int64_t s = 0; s <= durable[static_cast<size_t>(g)]; ++s) {
        if (seen[static_cast<size_t>(g)].count(static_cast<uint32_t>(s))) continue;
        if (lost++ == 0) first_lost = "writer " + std::to_string(g) + " seq " + std::to_string(s);
      }
    }
    if (lost)
      violation(kLogLost, op, "missing",
                std::to_string(lost) +
                    " records written and closed before the open are not "
                    "there (first: " +
                    first_lost + "); read " + std::to_string(data.size()) + " bytes");
  }
  log_floor_check(op, l, start + data.size(), whole ? floor : 0);
}

void Worker::log_stat(Rng& rng) {
  const int l = static_cast<int>(rng.below(static_cast<uint64_t>(t_.cfg.ranks)));
  const std::string rel = log_rel(l);
  const uint64_t floor = t_.log_floor_[static_cast<size_t>(rank_ * t_.cfg.ranks + l)]->load();
  struct stat st;
  Res r = sys("stat(" + q(rel) + ")", [&] { return ::stat(path(rel).c_str(), &st); });
  if (!judge("log.stat", r, {}, kExists)) return;
  if (!S_ISREG(st.st_mode))
    violation(kWrongType, "log.stat", "type", "mode 0" + std::to_string(st.st_mode));
  if (st.st_size % static_cast<off_t>(kRecord))
    violation(kLogRecord, "log.stat", "partial record",
              "st_size " + std::to_string(st.st_size) + " is not a whole number of records");
  log_floor_check("log.stat", l, static_cast<uint64_t>(st.st_size), floor);
}

void Worker::log_readdir() {
  std::vector<std::pair<std::string, unsigned char>> names;
  const char* step = "";
  Res r = sys("opendir+readdir(\"t/log\")", [&] {
    int err = list_names(path("t/log"), &names, &step);
    errno = err;
    return err ? -1 : 0;
  });
  if (!judge("log.readdir", r, {}, kExists)) return;
  std::vector<std::string> always;
  for (int l = 0; l < t_.cfg.ranks; ++l) always.push_back("L" + std::to_string(l));
  readdir_check(
      "log.readdir", "t/log", names,
      [&](const std::string& n, unsigned char type) {
        return (type == DT_REG || type == DT_UNKNOWN) &&
               std::find(always.begin(), always.end(), n) != always.end();
      },
      always);
}

// --- versioned files t/v ---

namespace {

size_t version_size(Rng& rng) {
  const uint64_t x = rng.below(100);
  if (x < 50) return rng.between(kVersionHeader, 4096);
  if (x < 85) return rng.between(4096, 256 * 1024);
  if (x < 98) return rng.between(256 * 1024, 2 << 20);
  return rng.between(4 << 20, 6 << 20);  // more than 4 chunks: fetched lazily by readers
}

}  // namespace

void Worker::v_replace(Rng& rng) {
  const int n = static_cast<int>(rng.below(kVNames));
  const uint64_t id = (static_cast<uint64_t>(gid_ + 1) << 40) | ++v_counter_;
  const std::string tmp = "t/v/.tmp." + std::to_string(gid_) + "." + std::to_string(v_counter_);
  const std::string content = version_make(static_cast<uint32_t>(n), id, version_size(rng));
  Res r = sys("open(" + q(tmp) + ", O_WRONLY|O_CREAT|O_EXCL)", [&] {
    return ::open(path(tmp).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  });
  if (!judge("v.tmp.open", r, {}, kCreat)) return;
  const int fd = static_cast<int>(r.rc);
  int werr = 0;
  size_t written = 0;
  Res rw = sys("pwrite-all(" + q(tmp) + ", " + std::to_string(content.size()) + ")", [&] {
    written = pwrite_full(fd, content, 0, &werr);
    errno = werr;
    return werr ? -1 : 0;
  });
  bool ok = judge("v.tmp.write", rw, {}, kFdOp);
  if (ok && written != content.size()) {
    violation(kShortIo, "v.tmp.write", "short", std::to_string(written));
    ok = false;
  }
  Res rc = sys("close(" + q(tmp) + ")", [&] { return ::close(fd); });
  ok = judge("v.tmp.close", rc, {}, kFdOp) && ok;
  VName& v = t_.vnames_[n];
  if (ok) {
    {
      std::lock_guard<std::mutex> lock(v.mu);
      v.versions.push_back({id, content.size(), t_.now_ns(), kPending});
    }
    v.renames_started.fetch_add(1);
    Res rr = sys("rename(" + q(tmp) + ", " + q(v_rel(n)) + ")",
                 [&] { return ::rename(path(tmp).c_str(), path(v_rel(n)).c_str()); });
    const int64_t end = t_.now_ns();
    v.renames_done.fetch_add(1);
    if (judge("v.rename", rr, {}, kExists)) {
      std::lock_guard<std::mutex> lock(v.mu);
      for (auto& e : v.versions)
        if (e.id == id) e.rename_end = end;
      return;
    }
  }
  Res ru = sys("unlink(" + q(tmp) + ")", [&] { return ::unlink(path(tmp).c_str()); });
  judge("v.tmp.unlink", ru, {}, kExists);
}

void Worker::v_cat(Rng& rng) {
  const int n = static_cast<int>(rng.below(kVNames));
  const std::string rel = v_rel(n);
  VName& v = t_.vnames_[n];
  // A rename in flight when the open starts, or started before the read ends, can replace
  // the file under the open handle: parts of it not yet fetched then fail with EIO (user
  // guide, "Handles of a replaced or moved file").
  const uint64_t done_before = v.renames_done.load();
  const uint64_t renames = v.renames_started.load();
  const bool in_flight_at_open = renames != done_before;
  const int64_t t_open = t_.now_ns();
  Res r = sys("open(" + q(rel) + ", O_RDONLY)",
              [&] { return ::open(path(rel).c_str(), O_RDONLY | O_CLOEXEC); });
  if (!judge("v.cat.open", r, {}, kExists)) return;
  const int fd = static_cast<int>(r.rc);
  std::string data;
  Res rr = sys("read-all(" + q(rel) + ")", [&] {
    int err = read_to_end(fd, 0, &data);
    errno = err;
    return err ? -1 : 0;
  });
  const unsigned limit = in_flight_at_open || v.renames_started.load() != renames ? kLimitEioOk : kNoFlags;
  const bool read_ok = judge("v.cat.read", rr, {}, kFdOp | limit);
  // For a torn read's message: the size this kernel gives the open file at the end.
  struct stat fst;
  const long long fd_size = ::fstat(fd, &fst) == 0 ? static_cast<long long>(fst.st_size) : -1;
  // and what the daemon says its kernel inode stands for (only when torn: one more request)
  const std::string fd_inode = read_ok && !version_check(data, static_cast<uint32_t>(n)).ok ? kernel_inode_of(fd) : "";
  Res rc = sys("close(" + q(rel) + " opened O_RDONLY)", [&] { return ::close(fd); });
  judge("v.cat.close", rc, {}, kFdOp);  // read-only: nothing to write back, no EIO
  const int64_t t_read = t_.now_ns();
  if (!read_ok) return;
  describe("cat(" + q(rel) + ")");
  VersionScan scan = version_check(data, static_cast<uint32_t>(n));
  if (!scan.ok) {
    return violation(kVersionContent, "v.cat.read", "torn",
                     scan.why + "; fstat of the open file then: st_size " + std::to_string(fd_size) +
                         "; its kernel inode: " + fd_inode + t_.stores_now(n));
  }
  std::vector<VersionEntry> versions;
  {
    std::lock_guard<std::mutex> lock(v.mu);
    versions = v.versions;
  }
  const VersionEntry* x = nullptr;
  for (auto& e : versions)
    if (e.id == scan.id) x = &e;
  char id[40];
  snprintf(id, sizeof id, "version 0x%" PRIx64, scan.id);
  if (x == nullptr || x->rename_start > t_read)
    return violation(
        kVersionUnknown, "v.cat.read", "unknown",
        std::string(id) + (x ? " whose rename had not started" : " never renamed here"));
  for (auto& y : versions) {
    if (y.id != x->id && x->rename_end != kPending && y.rename_start >= x->rename_end &&
        y.rename_end <= t_open) {
      char buf[200];
      snprintf(buf, sizeof buf,
               "%s (renamed in at %.3f s) although version 0x%" PRIx64
               " was renamed in at %.3f-%.3f s, before the open at %.3f s",
               id, static_cast<double>(x->rename_end) / 1e9, y.id,
               static_cast<double>(y.rename_start) / 1e9, static_cast<double>(y.rename_end) / 1e9,
               static_cast<double>(t_open) / 1e9);
      return violation(kVersionStale, "v.cat.read", "stale", buf + t_.stores_now(n));
    }
  }
}

std::string Torture::stores_now(int n) const {
  if (local()) return {};
  std::string out = "; the stores hold now:";
  for (int r = 0; r < cfg.ranks; ++r) {
    std::string data;
    const int fd = ::open(cluster_->store_path(r, v_rel(n)).c_str(), O_RDONLY | O_CLOEXEC);
    const int err = fd < 0 ? errno : read_to_end(fd, 0, &data);
    if (fd >= 0) ::close(fd);
    char id[48];
    if (err != 0) {
      snprintf(id, sizeof id, "%s", err == ENOENT ? "none" : strerror(err));
    } else {
      VersionScan scan = version_check(data, static_cast<uint32_t>(n));
      if (scan.ok) snprintf(id, sizeof id, "0x%" PRIx64, scan.id);
      else snprintf(id, sizeof id, "torn (%zu bytes)", data.size());
    }
    out += " rank " + std::to_string(r) + ": " + id + (r + 1 < cfg.ranks ? "," : "");
  }
  return out;
}

std::string Torture::cells_in_stores(const std::string& rel, uint64_t offset) const {
  if (local()) return {};
  std::string out = "; the stores hold now at offset " + std::to_string(offset) + ":";
  for (int r = 0; r < cfg.ranks; ++r) {
    out += " rank " + std::to_string(r) + ": ";
    const int fd = ::open(cluster_->store_path(r, rel).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      out += errno == ENOENT ? "none" : strerror(errno);
    } else {
      struct stat st;
      char cell[kCell] = {};
      const ssize_t n = ::pread(fd, cell, sizeof cell, static_cast<off_t>(offset));
      out += "size " + std::to_string(::fstat(fd, &st) == 0 ? static_cast<long long>(st.st_size) : -1LL) +
             " ino " + std::to_string(st.st_ino) + " " +
             (n > 0 ? hex_of(std::string_view(cell, static_cast<size_t>(n))) : std::string("(eof)"));
      ::close(fd);
    }
    if (r + 1 < cfg.ranks) out += ",";
  }
  return out;
}

void Worker::v_stat(Rng& rng) {
  const int n = static_cast<int>(rng.below(kVNames));
  const std::string rel = v_rel(n);
  VName& v = t_.vnames_[n];
  const int64_t t_open = t_.now_ns();
  struct stat st;
  Res r = sys("stat(" + q(rel) + ")", [&] { return ::stat(path(rel).c_str(), &st); });
  const int64_t t_end = t_.now_ns();
  if (!judge("v.stat", r, {}, kExists)) return;
  if (!S_ISREG(st.st_mode))
    return violation(kWrongType, "v.stat", "type", "mode 0" + std::to_string(st.st_mode));
  std::vector<VersionEntry> versions;
  {
    std::lock_guard<std::mutex> lock(v.mu);
    versions = v.versions;
  }
  // the size must be that of a version the stat may see (sizes of versions rarely collide,
  // so this can only miss a stale size, never invent one)
  for (auto& x : versions) {
    if (x.size != static_cast<size_t>(st.st_size) || x.rename_start > t_end) continue;
    bool superseded = false;
    for (auto& y : versions)
      if (y.id != x.id && x.rename_end != kPending && y.rename_start >= x.rename_end &&
          y.rename_end <= t_open)
        superseded = true;
    if (!superseded) return;
  }
  violation(kVersionStale, "v.stat", "stale size",
            "st_size " + std::to_string(st.st_size) +
                " is the size of no version current at the "
                "time of the stat" + t_.stores_now(n));
}

void Worker::v_readdir() {
  std::vector<std::pair<std::string, unsigned char>> names;
  const char* step = "";
  Res r = sys("opendir+readdir(\"t/v\")", [&] {
    int err = list_names(path("t/v"), &names, &step);
    errno = err;
    return err ? -1 : 0;
  });
  if (!judge("v.readdir", r, {}, kExists)) return;
  std::vector<std::string> always;
  for (int i = 0; i < kVNames; ++i) always.push_back("v" + std::to_string(i));
  readdir_check(
      "v.readdir", "t/v", names,
      [&](const std::string& n, unsigned char type) {
        return (type == DT_REG || type == DT_UNKNOWN) &&
               (n.starts_with(".tmp.") ||
                std::find(always.begin(), always.end(), n) != always.end());
      },
      always);
}

// --- grown files t/g ---

void Worker::g_write(Rng& rng) {
  GFile& g = *t_.gfiles_[static_cast<size_t>(rank_)];
  std::unique_lock<std::mutex> writer(g.writer, std::try_to_lock);
  if (!writer.owns_lock()) return g_cat(rng);  // one version at a time
  const std::string rel = g_rel(rank_);
  const uint64_t k = g.started.load() + 1;
  size_t len;
  {
    std::lock_guard<std::mutex> lock(g.mu);
    len = std::min(kGMax, g.lens.back() + rng.below(8192));
    g.lens.push_back(len);
  }
  g.started.store(k);
  Res r = sys("open(" + q(rel) + ", O_WRONLY)",
              [&] { return ::open(path(rel).c_str(), O_WRONLY | O_CLOEXEC); });
  if (!judge("g.open(w)", r, {}, kExists)) return;
  const int fd = static_cast<int>(r.rc);
  // the new version in 1-3 pieces, so that readers meet half-written versions
  bool ok = true;
  const int pieces = static_cast<int>(rng.between(1, 3));
  size_t from = 0;
  for (int p = 0; p < pieces && ok; ++p) {
    const size_t to = p == pieces - 1 ? len : from + rng.below(len - from + 1);
    const std::string data = grow_make(k, from, to - from);
    Res rw = sys("pwrite(" + q(rel) + ", " + std::to_string(data.size()) + ", " +
                     std::to_string(from) + ") of version " + std::to_string(k),
                 [&] { return ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(from)); });
    ok = judge("g.pwrite", rw, {}, kFdOp);
    if (ok && static_cast<size_t>(rw.rc) != data.size()) {
      violation(kShortIo, "g.pwrite", "short", rc_text(rw.rc, rw.err));
      ok = false;
    }
    from = to;
  }
  if (ok && rng.percent(50)) {
    Res rs = sys("fsync(" + q(rel) + ")", [&] { return ::fsync(fd); });
    ok = judge("g.fsync", rs, {}, kFdOp);
    if (ok) g.completed.store(k);  // close-to-open: fsync counts as close
  }
  Res rc = sys("close(" + q(rel) + ")", [&] { return ::close(fd); });
  if (judge("g.close", rc, {}, kFdOp) && ok) g.completed.store(k);
}

void Worker::g_cat(Rng& rng) {
  const int which = static_cast<int>(rng.below(static_cast<uint64_t>(t_.cfg.ranks)));
  GFile& g = *t_.gfiles_[static_cast<size_t>(which)];
  const std::string rel = g_rel(which);
  const uint64_t lo = g.completed.load();
  const uint64_t started = g.started.load();
  Res r = sys("open(" + q(rel) + ", O_RDONLY)",
              [&] { return ::open(path(rel).c_str(), O_RDONLY | O_CLOEXEC); });
  if (!judge("g.cat.open", r, {}, kExists)) return;
  const int fd = static_cast<int>(r.rc);
  std::string data;
  Res rr = sys("read-all(" + q(rel) + ")", [&] {
    int err = read_to_end(fd, 0, &data);
    errno = err;
    return err ? -1 : 0;
  });
  const unsigned limit = g.started.load() != started ? kLimitEioOk : kNoFlags;
  const bool read_ok = judge("g.cat.read", rr, {}, kFdOp | limit);
  Res rc = sys("close(" + q(rel) + " opened O_RDONLY)", [&] { return ::close(fd); });
  judge("g.cat.close", rc, {}, kFdOp);  // read-only: nothing to write back, no EIO
  if (!read_ok) return;
  describe("cat(" + q(rel) + ")");
  const uint64_t hi = g.started.load();
  std::vector<size_t> lens;
  {
    std::lock_guard<std::mutex> lock(g.mu);
    lens.assign(g.lens.begin(), g.lens.begin() + static_cast<long>(hi + 1));
  }
  const std::string window = "versions " + std::to_string(lo) + ".." + std::to_string(hi);
  size_t max_len = 0;
  for (uint64_t k = lo; k <= hi; ++k) max_len = std::max(max_len, lens[k]);
  if (data.size() < lens[lo] || data.size() > max_len)
    violation(kGrowSize, "g.cat.read", "size",
              "read " + std::to_string(data.size()) + " bytes; " + window + " have " +
                  std::to_string(lens[lo]) + ".." + std::to_string(max_len));
  size_t bad = 0, stale = 0;
  std::string first;
  for (size_t o = 0; o < data.size(); ++o) {
    const auto b = static_cast<uint8_t>(data[o]);
    bool fits = false;
    for (uint64_t k = lo; k <= hi && !fits; ++k) fits = o < lens[k] && grow_byte(k, o) == b;
    if (fits) continue;
    bool older = false;
    for (uint64_t k = 0; k < lo && !older; ++k) older = o < lens[k] && grow_byte(k, o) == b;
    (older ? stale : bad)++;
    if (first.empty())
      first = "offset " + std::to_string(o) + " byte " + std::to_string(b) +
              (older ? " (an older version's)" : "");
  }
  if (bad)
    violation(kGrowContent, "g.cat.read", "bad bytes",
              std::to_string(bad) + " bytes no version in " + window + " wrote; first: " + first);
  else if (stale)
    violation(kGrowStale, "g.cat.read", "stale bytes",
              std::to_string(stale) + " bytes of versions older than " + std::to_string(lo) +
                  " (closed before the open); first: " + first);
}

}  // namespace dsdfs::mpitest::torture
