// SPDX-License-Identifier: Apache-2.0
// The torture test's rounds: every worker of every rank meets at a barrier and races on one
// name: O_EXCL creates, N-1 shared-file checkpoints, hard links (torture.h).

#include "tests/mpi/torture.h"

#include <set>

namespace dsdfs::mpitest::torture {

// --- rounds: every worker of every rank at a barrier ---

bool Worker::sync() {
  if (t_.barrier_.arrive_and_wait(std::chrono::seconds(static_cast<long>(t_.cfg.hang_limit) * 2)))
    return true;
  if (!t_.abort_.load()) {
    t_.report.violation(kRoundStuck, where(), "round",
                        "barrier of round " + std::to_string(my_round_), "timeout",
                        "not every worker arrived");
    t_.abort_.store(true);
  }
  return false;
}

bool Worker::negative_lookup(std::string_view op, const std::string& rel) {
  struct stat st;
  Res r = sys("stat(" + q(rel) + ") before the round's create",
              [&] { return ::stat(path(rel).c_str(), &st); });
  if (r.rc == 0) {
    t_.report.count(op, 0);
    violation(kNegativeLookup, op, "found",
              "found a file (st_ino " + std::to_string(st.st_ino) + ", size " +
                  std::to_string(st.st_size) + ")");
    return false;
  }
  return judge(op, r, {ENOENT});
}

bool Worker::read_whole(std::string_view op, const std::string& rel, std::string* out) {
  Res r = sys("open(" + q(rel) + ", O_RDONLY)",
              [&] { return ::open(path(rel).c_str(), O_RDONLY | O_CLOEXEC); });
  if (!judge(std::string(op) + ".open", r, {}, kExists)) return false;
  const int fd = static_cast<int>(r.rc);
  Res rr = sys("read-all(" + q(rel) + ")", [&] {
    int err = read_to_end(fd, 0, out);
    errno = err;
    return err ? -1 : 0;
  });
  bool ok = judge(std::string(op) + ".read", rr, {}, kFdOp);
  Res rc = sys("close(" + q(rel) + ")", [&] { return ::close(fd); });
  judge(std::string(op) + ".close", rc, {}, kFdOp);
  describe("cat(" + q(rel) + ")");
  return ok;
}

void Worker::do_round(int j) {
  my_round_ = j;
  const int kinds = t_.cfg.links ? 3 : 2;
  const int kind = (j - 1) % kinds;
  const int nth = (j - 1) / kinds;  // how many rounds of this kind came before
  const bool reuse = nth % 2 == 1;  // every other round reuses the name, after an unlink
  const int m = reuse ? nth - 1 : nth;
  Rng rr(mix64(t_.cfg.seed ^ 0x524F554E44ULL) ^ mix64(static_cast<uint64_t>(j)));
  const int G = t_.workers_total;
  if (gid_ == 0) {
    RoundState& s = t_.round_;
    s.winners.store(0);
    s.winner.store(-1);
    s.link_ok.store(false);
    s.write_ok.assign(static_cast<size_t>(G), 0);
    s.ino.assign(static_cast<size_t>(G), 0);
  }
  op_ = static_cast<uint64_t>(j);  // round operations are numbered by round
  if (kind == 0) round_excl(j, rr, reuse, "t/x/excl." + std::to_string(m));
  if (kind == 1) round_shared(j, rr, reuse, "t/x/shared." + std::to_string(m));
  if (kind == 2) round_link(j, rr);
  if (sync() && gid_ == 0) t_.rounds_done_.store(j);
}

void Worker::round_excl(int j, Rng& rr, bool reuse, const std::string& rel) {
  const int G = t_.workers_total;
  RoundState& s = t_.round_;
  const int unlinker = static_cast<int>(rr.below(static_cast<uint64_t>(G)));
  if (reuse && gid_ == unlinker) {
    Res r = sys("unlink(" + q(rel) + ") of the previous round's file",
                [&] { return ::unlink(path(rel).c_str()); });
    judge("x.unlink", r, {}, kExists);
  }
  if (!sync()) return;
  if (mix64(t_.cfg.seed ^ static_cast<uint64_t>(j * 1000 + gid_)) & 1)
    negative_lookup("x.excl.lookup", rel);
  if (!sync()) return;
  Res r = sys("open(" + q(rel) + ", O_WRONLY|O_CREAT|O_EXCL) in round " + std::to_string(j), [&] {
    return ::open(path(rel).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  });
  if (judge("x.excl.open", r, {EEXIST}, kCreat)) {
    s.winners.fetch_add(1);
    s.winner.store(gid_);
    const int fd = static_cast<int>(r.rc);
    const std::string content = "winner " + std::to_string(gid_) + "\n";
    Res rw =
        sys("write(" + q(rel) + ")", [&] { return ::write(fd, content.data(), content.size()); });
    judge("x.excl.write", rw, {}, kFdOp);
    Res rc = sys("close(" + q(rel) + ")", [&] { return ::close(fd); });
    judge("x.excl.close", rc, {}, kFdOp);
  }
  if (!sync()) return;
  const int winners = s.winners.load();
  if (gid_ == 0 && winners != 1) {
    describe("open(" + q(rel) + ", O_WRONLY|O_CREAT|O_EXCL) by every worker in round " +
             std::to_string(j));
    violation(kExclOneWinner, "x.excl.open", std::to_string(winners) + " winners",
              std::to_string(winners) + " of " + std::to_string(G) + " O_EXCL opens succeeded");
  }
  const int w = s.winner.load();
  if (winners < 1) return;
  std::string data;
  if (read_whole("x.excl.cat", rel, &data) && data != "winner " + std::to_string(w) + "\n")
    violation(kRoundContent, "x.excl.cat.read", "content",
              "read \"" + hex_of(data) + "\" (" + std::to_string(data.size()) +
                  " bytes), expected winner " + std::to_string(w));
  if (t_.local()) return;  // no owners on a local file system
  std::optional<int> owner;
  Res ro = sys("getxattr(" + q(rel) + ", \"user.dsdfs.owner\")", [&] {
    int err = 0;
    owner = owner_of(path(rel), &err);
    errno = err;
    return owner ? 0 : -1;
  });
  if (judge("x.excl.owner", ro, {}, kExists) && winners == 1 && *owner != w / t_.cfg.workers)
    violation(kRoundOwner, "x.excl.owner", "owner",
              "owner " + std::to_string(*owner) + ", created by rank " +
                  std::to_string(w / t_.cfg.workers));
}

void Worker::round_shared(int j, Rng& rr, bool reuse, const std::string& rel) {
  const int G = t_.workers_total;
  RoundState& s = t_.round_;
  const int unlinker = static_cast<int>(rr.below(static_cast<uint64_t>(G)));
  if (reuse && gid_ == unlinker) {
    Res r = sys("unlink(" + q(rel) + ") of the previous round's file",
                [&] { return ::unlink(path(rel).c_str()); });
    judge("x.unlink", r, {}, kExists);
  }
  if (!sync()) return;
  if (mix64(t_.cfg.seed ^ static_cast<uint64_t>(j * 1000 + gid_)) & 1)
    negative_lookup("x.n1.lookup", rel);
  if (!sync()) return;
  const uint64_t offset = static_cast<uint64_t>(gid_) * kSharedBlock;
  const std::string block = cells_make(kSharedBlock / kCell, static_cast<uint32_t>(offset / kCell),
                                       static_cast<uint16_t>(gid_), static_cast<uint32_t>(j));
  Res r = sys("open(" + q(rel) + ", O_RDWR|O_CREAT) in round " + std::to_string(j),
              [&] { return ::open(path(rel).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644); });
  if (judge("x.n1.open", r, {}, kCreat)) {
    const int fd = static_cast<int>(r.rc);
    Res rw =
        sys("pwrite(" + q(rel) + ", " + std::to_string(block.size()) + ", " +
                std::to_string(offset) + ")",
            [&] { return ::pwrite(fd, block.data(), block.size(), static_cast<off_t>(offset)); });
    bool ok = judge("x.n1.pwrite", rw, {}, kFdOp);
    if (ok && static_cast<size_t>(rw.rc) != block.size()) {
      violation(kShortIo, "x.n1.pwrite", "short", rc_text(rw.rc, rw.err));
      ok = false;
    }
    struct stat st;
    Res rs = sys("fstat(" + q(rel) + ")", [&] { return ::fstat(fd, &st); });
    if (judge("x.n1.fstat", rs, {}, kFdOp)) s.ino[static_cast<size_t>(gid_)] = st.st_ino;
    Res rc = sys("close(" + q(rel) + ")", [&] { return ::close(fd); });
    ok = judge("x.n1.close", rc, {}, kFdOp) && ok;
    s.write_ok[static_cast<size_t>(gid_)] = ok ? 1 : 0;
  }
  if (!sync()) return;
  std::string data;
  if (read_whole("x.n1.cat", rel, &data)) {
    size_t missing = 0;
    std::string first;
    bool all_ok = true;
    for (int g = 0; g < G; ++g) {
      if (!s.write_ok[static_cast<size_t>(g)]) {
        all_ok = false;
        continue;
      }
      const size_t at = static_cast<size_t>(g) * kSharedBlock;
      const std::string want = cells_make(kSharedBlock / kCell, static_cast<uint32_t>(at / kCell),
                                          static_cast<uint16_t>(g), static_cast<uint32_t>(j));
      if (data.size() >= at + kSharedBlock && data.compare(at, kSharedBlock, want) == 0) continue;
      if (missing++ == 0)
        first = "block of worker " + std::to_string(g) + " at " + std::to_string(at) + ": " +
                (data.size() < at + kSharedBlock ? "beyond the end"
                                                 : hex_of(std::string_view(data).substr(at, 16)));
    }
    if (missing)
      violation(kShared, "x.n1.cat.read", "missing block",
                std::to_string(missing) + " of " + std::to_string(G) +
                    " blocks written and closed are not there; read " +
                    std::to_string(data.size()) + " bytes; first: " + first);
    else if (all_ok && data.size() != static_cast<size_t>(G) * kSharedBlock)
      violation(kShared, "x.n1.cat.read", "size",
                "read " + std::to_string(data.size()) + " bytes, expected " +
                    std::to_string(static_cast<size_t>(G) * kSharedBlock));
  }
  if (!sync()) return;
  if (gid_ == 0) {
    std::set<uint64_t> inos;
    for (uint64_t i : s.ino)
      if (i) inos.insert(i);
    if (inos.size() > 1) {
      describe("fstat of every worker's open(" + q(rel) + ", O_RDWR|O_CREAT) in round " +
               std::to_string(j));
      std::string list;
      for (int g = 0; g < G; ++g) list += " " + std::to_string(s.ino[static_cast<size_t>(g)]);
      violation(kRoundSameFile, "x.n1.fstat", "several files",
                std::to_string(inos.size()) + " different st_ino among the workers' opens:" + list);
    }
  }
}

void Worker::round_link(int j, Rng& rr) {
  const int G = t_.workers_total;
  RoundState& s = t_.round_;
  const std::string a = "t/x/link." + std::to_string(j) + ".a";
  const std::string b = "t/x/link." + std::to_string(j) + ".b";
  const std::string content = "link round " + std::to_string(j) + "\n";
  const int creator = static_cast<int>(rr.below(static_cast<uint64_t>(G)));
  const int linker = static_cast<int>(rr.below(static_cast<uint64_t>(G)));
  const int remover = static_cast<int>(rr.below(static_cast<uint64_t>(G)));
  if (gid_ == creator) {
    Res r = sys("open(" + q(a) + ", O_WRONLY|O_CREAT|O_EXCL)", [&] {
      return ::open(path(a).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    });
    if (judge("x.link.create", r, {}, kCreat)) {
      const int fd = static_cast<int>(r.rc);
      Res rw =
          sys("write(" + q(a) + ")", [&] { return ::write(fd, content.data(), content.size()); });
      judge("x.link.write", rw, {}, kFdOp);
      Res rc = sys("close(" + q(a) + ")", [&] { return ::close(fd); });
      judge("x.link.close", rc, {}, kFdOp);
    }
  }
  if (!sync()) return;
  if (gid_ == linker) {
    Res r = sys("link(" + q(a) + ", " + q(b) + ")",
                [&] { return ::link(path(a).c_str(), path(b).c_str()); });
    if (judge("x.link.link", r, {}, kLinkOp | kExists)) s.link_ok.store(true);
  }
  if (!sync()) return;
  if (!s.link_ok.load()) {
    if (gid_ == 0)
      t_.report.note("round " + std::to_string(j) + ": link() failed, link consistency unchecked");
    return;
  }
  auto stat_of = [&](const std::string& rel, struct stat* st, std::string_view op) {
    Res r = sys("stat(" + q(rel) + ")", [&] { return ::stat(path(rel).c_str(), st); });
    return judge(op, r, {}, kExists);
  };
  struct stat sa, sb;
  if (stat_of(a, &sa, "x.link.stat") && stat_of(b, &sb, "x.link.stat")) {
    if (sa.st_ino != sb.st_ino || sa.st_nlink != 2 || sb.st_nlink != 2)
      violation(kLinkConsistency, "x.link.stat", "two names",
                "a: st_ino " + std::to_string(sa.st_ino) + " nlink " + std::to_string(sa.st_nlink) +
                    "; b: st_ino " + std::to_string(sb.st_ino) + " nlink " +
                    std::to_string(sb.st_nlink));
    s.ino[static_cast<size_t>(gid_)] = sb.st_ino;
  }
  std::string data;
  if (read_whole("x.link.cat", b, &data) && data != content)
    violation(kRoundContent, "x.link.cat.read", "content", "read \"" + hex_of(data) + "\" via b");
  if (!sync()) return;
  if (gid_ == 0) {
    std::set<uint64_t> inos;
    for (uint64_t i : s.ino)
      if (i) inos.insert(i);
    if (inos.size() > 1) describe("stat(" + q(b) + ") on every rank");
    if (inos.size() > 1)
      violation(kLinkConsistency, "x.link.stat", "st_ino differs",
                std::to_string(inos.size()) + " different st_ino for one linked file across ranks");
  }
  if (gid_ == remover) {
    Res r = sys("unlink(" + q(a) + ")", [&] { return ::unlink(path(a).c_str()); });
    judge("x.link.unlink", r, {}, kExists);
  }
  if (!sync()) return;
  negative_lookup("x.link.lookup", a);
  if (stat_of(b, &sb, "x.link.stat") && sb.st_nlink != 1)
    violation(kLinkConsistency, "x.link.stat", "nlink after unlink",
              "b: nlink " + std::to_string(sb.st_nlink) + " after a was unlinked");
  if (read_whole("x.link.cat", b, &data) && data != content)
    violation(kRoundContent, "x.link.cat.read", "content",
              "read \"" + hex_of(data) + "\" via b after a was unlinked");
}

}  // namespace dsdfs::mpitest::torture
