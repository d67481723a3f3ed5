// SPDX-License-Identifier: Apache-2.0
// dsdfs: the user's command for a running dsdfs job. It talks to the daemon
// of a mount point on this node, over the control socket in that rank's store
// (daemon/control.h), and to files through their user.dsdfs.* attributes.
//
//   dsdfs status [MOUNT] [--json]              every rank: state, host, uptime, files, store, cache
//   dsdfs stats  [MOUNT] [--per-rank] [--json]  job-wide counters
//   dsdfs where FILE...                         owner rank and host, and this node's copy
//   dsdfs stop [MOUNT]                          every rank stops as on SIGTERM

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/mountinfo.h"

namespace {

constexpr const char* kUsage =
    "usage: dsdfs status [MOUNT] [--json]\n"
    "       dsdfs stats [MOUNT] [--per-rank] [--json]\n"
    "       dsdfs where FILE...\n"
    "       dsdfs stop [MOUNT]\n"
    "       dsdfs stage-out SRC DEST [--verify] [--jobs N]\n"
    "       dsdfs stage-in SRC DEST [--spread] [--verify] [--jobs N]\n"
    "\n"
    "  status   every rank of the job: state, host, uptime, files and bytes it owns,\n"
    "           its store's use, its cache of other ranks' files, errors seen;\n"
    "           exits 1 if a rank is down\n"
    "  stats    the job's counters (the sum over its ranks; --per-rank: each rank's too)\n"
    "  where    the rank and host that own each FILE, and this node's copy of it\n"
    "  stop     every rank unmounts, removes its store (unless --keep-store) and\n"
    "           exits 0, so that srun or mpirun returns 0; waits for this node's mount\n"
    "  stage-out  copies SRC (a file or a tree in the mount) to DEST/basename(SRC) (DEST: a\n"
    "           directory outside the mount that every node reaches): each rank copies\n"
    "           the files it owns straight from its disk, N at a time (--jobs, 4);\n"
    "           a file already there with the same size and time is kept, so a second\n"
    "           run copies only what is missing or different; --verify compares\n"
    "           checksums; exits 1 if a file did not arrive (each named, with its rank)\n"
    "  stage-in copies SRC (outside the mount) to DEST/basename(SRC) in the mount:\n"
    "           this node's rank copies it all (its files then), or with --spread\n"
    "           every rank a share, so the files are spread over the nodes' disks\n"
    "\n"
    "MOUNT is a dsdfs mount point or a path inside one; without it, the mount\n"
    "that holds the current directory, else the only dsdfs mount on this node.\n";

int fail(const std::string& what) {
  std::fprintf(stderr, "dsdfs: %s\n", what.c_str());
  return 2;
}

// The dsdfs mount points this process sees.
std::vector<std::string> dsdfs_mounts() {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    std::istringstream f(line);
    std::string id, parent, dev, root, point, word;
    f >> id >> parent >> dev >> root >> point;
    while (f >> word && word != "-") {
    }
    std::string type;
    f >> type;
    if (type == "fuse.dsdfs") out.push_back(dsdfs::unescape_mountinfo(point));
  }
  return out;
}

bool inside(const std::string& path, const std::string& mount) {
  if (mount == "/") return true;
  return path == mount || (path.size() > mount.size() && path.compare(0, mount.size(), mount) == 0 &&
                           path[mount.size()] == '/');
}

// The dsdfs mount that holds `path` (the innermost), or "".
std::string mount_of(const std::string& path) {
  char real[PATH_MAX];
  if (!::realpath(path.c_str(), real)) return "";
  std::string best;
  for (const auto& m : dsdfs_mounts())
    if (inside(real, m) && m.size() >= best.size()) best = m;
  return best;
}

// MOUNT as given, or found from the current directory or as the only one.
bool choose_mount(const std::optional<std::string>& given, std::string* out) {
  if (given) {
    struct stat st;
    if (::stat(given->c_str(), &st) != 0) {
      fail(*given + ": " + std::strerror(errno));
      return false;
    }
    *out = mount_of(*given);
    if (out->empty()) {
      fail(*given + " is not in a dsdfs mount");
      return false;
    }
    return true;
  }
  *out = mount_of(".");
  if (!out->empty()) return true;
  auto all = dsdfs_mounts();
  if (all.size() == 1) {
    *out = all[0];
    return true;
  }
  if (all.empty()) fail("no dsdfs mount on this node (is the job running here?); name one: dsdfs status MOUNT");
  else {
    std::string list;
    for (const auto& m : all) list += (list.empty() ? "" : ", ") + m;
    fail("several dsdfs mounts (" + list + "): name one");
  }
  return false;
}

std::optional<std::string> xattr(const std::string& path, const char* name, int* err) {
  char buf[4096];
  ssize_t n = ::getxattr(path.c_str(), name, buf, sizeof buf);
  if (n < 0) {
    *err = errno;
    return std::nullopt;
  }
  return std::string(buf, static_cast<size_t>(n));
}

using Words = std::map<std::string, std::string>;

struct Rank {
  int rank = -1;
  Words w;  // state, host, uptime_s, ..., c.<counter>
  bool up() const { return w.count("state") && w.at("state") == "up"; }
  std::string get(const std::string& k, const std::string& def = "?") const {
    auto it = w.find(k);
    return it == w.end() ? def : it->second;
  }
  uint64_t num(const std::string& k) const { return std::strtoull(get(k, "0").c_str(), nullptr, 10); }
};

// Sends `request` to the daemon of `mount`; every rank's line of the answer into *out, the
// first line's words into *head.
bool ask(const std::string& mount, const std::string& request, std::vector<Rank>* out, Words* head = nullptr) {
  int err = 0;
  auto path = xattr(mount, "user.dsdfs.control", &err);
  if (!path) {
    fail("cannot find the control socket of " + mount + ": " + std::strerror(err) +
         (err == ENODATA ? " (a dsdfs-launch older than this command?)" : ""));
    return false;
  }
  struct sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path->size() >= sizeof addr.sun_path) return fail("control socket path too long: " + *path), false;
  std::memcpy(addr.sun_path, path->c_str(), path->size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(std::string("socket: ") + std::strerror(errno)), false;
  // The daemon asks every rank, each call bounded by the job's --timeout, and
  // walks its store: generous, but never forever.
  struct timeval tv = {120, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    return fail("cannot reach the daemon of " + mount + " at " + *path + ": " + std::strerror(e)), false;
  }
  const std::string req = request + "\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    int e = errno;
    ::close(fd);
    return fail(std::string("cannot send to the daemon: ") + std::strerror(e)), false;
  }
  std::string reply;
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return fail(std::string("no answer from the daemon: ") + std::strerror(e)), false;
    }
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  std::istringstream in(reply);
  std::string line;
  if (!std::getline(in, line) || line.compare(0, 3, "ok ") != 0) {
    return fail("the daemon of " + mount + " answered: " + (line.empty() ? "nothing" : line)), false;
  }
  if (head) {
    std::istringstream f(line);
    std::string word;
    while (f >> word)
      if (size_t eq = word.find('='); eq != std::string::npos) (*head)[word.substr(0, eq)] = word.substr(eq + 1);
  }
  while (std::getline(in, line)) {
    Rank r;
    std::istringstream f(line);
    std::string word;
    while (f >> word) {
      size_t eq = word.find('=');
      if (eq != std::string::npos) r.w[word.substr(0, eq)] = word.substr(eq + 1);
    }
    r.rank = std::atoi(r.get("rank", "-1").c_str());
    if (r.rank >= 0) out->push_back(std::move(r));
  }
  if (out->empty()) return fail("the daemon of " + mount + " listed no rank"), false;
  return true;
}

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char out[32];
  if (u == 0) std::snprintf(out, sizeof out, "%llu B", static_cast<unsigned long long>(b));
  else std::snprintf(out, sizeof out, "%.1f %s", v, units[u]);
  return out;
}

std::string human_time(uint64_t s) {
  char out[32];
  if (s < 60) std::snprintf(out, sizeof out, "%llus", static_cast<unsigned long long>(s));
  else if (s < 3600) std::snprintf(out, sizeof out, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                                   static_cast<unsigned long long>(s % 60));
  else std::snprintf(out, sizeof out, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                     static_cast<unsigned long long>(s / 60 % 60));
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

int status(const std::string& mount, bool json) {
  std::vector<Rank> ranks;
  if (!ask(mount, "ranks", &ranks)) return 2;
  int down = 0;
  for (const auto& r : ranks) down += r.up() ? 0 : 1;
  if (json) {
    std::printf("{\"mount\": %s, \"ranks\": [", json_string(mount).c_str());
    for (size_t i = 0; i < ranks.size(); ++i) {
      std::printf("%s\n  {", i ? "," : "");
      bool first = true;
      for (const auto& [k, v] : ranks[i].w) {
        if (k.compare(0, 2, "c.") == 0) continue;  // counters: dsdfs stats
        std::printf("%s%s: %s", first ? "" : ", ", json_string(k).c_str(),
                    (is_number(v) && k != "host") ? v.c_str() : json_string(v).c_str());
        first = false;
      }
      std::printf("}");
    }
    std::printf("\n], \"down\": %d}\n", down);
  } else {
    std::printf("%-5s %-5s %-16s %8s %8s %10s %23s %10s %6s\n", "RANK", "STATE", "HOST", "UPTIME", "FILES", "OWNED",
                "STORE USED / SIZE", "CACHE", "ERRORS");
    for (const auto& r : ranks) {
      if (!r.up()) {
        std::printf("%-5d %-5s %-16s  %s\n", r.rank, "down", r.get("host").c_str(), r.get("error", "").c_str());
        continue;
      }
      const std::string store = human_bytes(r.num("store_used")) + " / " + human_bytes(r.num("store_size"));
      std::printf("%-5d %-5s %-16s %8s %8llu %10s %23s %10s %6llu\n", r.rank, "up", r.get("host").c_str(),
                  human_time(r.num("uptime_s")).c_str(), static_cast<unsigned long long>(r.num("files")),
                  human_bytes(r.num("bytes")).c_str(), store.c_str(), human_bytes(r.num("cache_bytes")).c_str(),
                  static_cast<unsigned long long>(r.num("errors")));
    }
  }
  if (down) {
    std::fprintf(stderr, "dsdfs: %d of %zu ranks down: their files are lost to the job\n", down, ranks.size());
    return 1;
  }
  return 0;
}

int stats(const std::string& mount, bool per_rank, bool json) {
  std::vector<Rank> ranks;
  if (!ask(mount, "ranks", &ranks)) return 2;
  std::vector<std::string> names;  // in the daemon's order
  std::map<std::string, uint64_t> total;
  for (const auto& r : ranks) {
    if (!r.up()) continue;
    for (const auto& [k, v] : r.w) {
      if (k.compare(0, 2, "c.") != 0) continue;
      const std::string name = k.substr(2);
      if (!total.count(name)) names.push_back(name);
      total[name] += std::strtoull(v.c_str(), nullptr, 10);
    }
  }
  int down = 0;
  for (const auto& r : ranks) down += r.up() ? 0 : 1;
  if (json) {
    std::printf("{\"ranks\": %zu, \"down\": %d, \"total\": {", ranks.size(), down);
    for (size_t i = 0; i < names.size(); ++i)
      std::printf("%s%s: %llu", i ? ", " : "", json_string(names[i]).c_str(),
                  static_cast<unsigned long long>(total[names[i]]));
    std::printf("}");
    if (per_rank) {
      std::printf(", \"per_rank\": [");
      for (size_t j = 0; j < ranks.size(); ++j) {
        std::printf("%s\n  {\"rank\": %d, \"state\": %s", j ? "," : "", ranks[j].rank,
                    json_string(ranks[j].get("state")).c_str());
        for (const auto& n : names) {
          if (ranks[j].up()) std::printf(", %s: %llu", json_string(n).c_str(),
                                         static_cast<unsigned long long>(ranks[j].num("c." + n)));
        }
        std::printf("}");
      }
      std::printf("\n]");
    }
    std::printf("}\n");
  } else {
    std::printf("%-26s %16s", "COUNTER", "TOTAL");
    if (per_rank)
      for (const auto& r : ranks) std::printf(" %14s", ("rank " + std::to_string(r.rank)).c_str());
    std::printf("\n");
    for (const auto& n : names) {
      std::printf("%-26s %16llu", n.c_str(), static_cast<unsigned long long>(total[n]));
      if (per_rank) {
        for (const auto& r : ranks) {
          if (r.up()) std::printf(" %14llu", static_cast<unsigned long long>(r.num("c." + n)));
          else std::printf(" %14s", "down");
        }
      }
      std::printf("\n");
    }
  }
  if (down) std::fprintf(stderr, "dsdfs: %d of %zu ranks down: the totals leave them out\n", down, ranks.size());
  return down ? 1 : 0;
}

// Every rank unmounts, removes its store (unless --keep-store) and exits 0, as on SIGTERM;
// then srun or mpirun returns 0. Waits until this node's mount is gone.
int stop(const std::string& mount) {
  std::vector<Rank> ranks;
  if (!ask(mount, "stop", &ranks)) return 2;
  int down = 0;
  for (const auto& r : ranks) {
    if (r.get("state") == "stopping") continue;
    ++down;
    std::fprintf(stderr, "dsdfs: rank %d on %s could not be told to stop (%s): it is down or cut off\n", r.rank,
                 r.get("host").c_str(), r.get("error", r.get("state")).c_str());
  }
  std::printf("dsdfs: stopping %zu of %zu ranks\n", ranks.size() - static_cast<size_t>(down), ranks.size());
  std::fflush(stdout);
  // This node's daemon unmounts within its stop (bounded by the job's --timeout).
  for (int i = 0; i < 1200; ++i) {
    bool mounted = false;
    for (const auto& m : dsdfs_mounts()) mounted = mounted || m == mount;
    if (!mounted) return down ? 1 : 0;
    ::usleep(100 * 1000);
  }
  return fail(mount + " is still mounted 120 s after the stop was asked for");
}

std::string unpct(const std::string& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size()) {
      out += static_cast<char>(std::strtol(v.substr(i + 1, 2).c_str(), nullptr, 16));
      i += 2;
    } else if (v[i] != '%') {
      out += v[i];
    }
  }
  return out;
}

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out.empty() ? "-" : out;
}

int stage(const std::string& mount, const std::string& what, int flags, int jobs, const std::string& inside_rel,
          const std::string& outside);

// Each rank copies the files it owns under SRC straight from its store to DEST (a directory
// every node reaches); nothing crosses dsdfs's network. See daemon/stage.h.
int stage_out(const std::string& src, const std::string& dest, bool verify, int jobs) {
  std::string mount = mount_of(src);
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) return fail(src + ": " + std::strerror(errno));
  if (mount.empty()) return fail(src + " is not in a dsdfs mount: stage-out copies out of one");
  char real_src[PATH_MAX], real_dest[PATH_MAX];
  if (!::realpath(src.c_str(), real_src)) return fail(src + ": " + std::strerror(errno));
  if (::stat(dest.c_str(), &st) != 0) return fail(dest + ": " + std::strerror(errno) + " (make the destination first)");
  if (!S_ISDIR(st.st_mode)) return fail(dest + " is not a directory");
  if (!::realpath(dest.c_str(), real_dest)) return fail(dest + ": " + std::strerror(errno));
  if (!mount_of(real_dest).empty()) return fail(dest + " is inside a dsdfs mount: the destination must be outside");
  if (::access(real_dest, W_OK | X_OK) != 0) return fail(dest + ": " + std::strerror(errno));
  std::string rel = std::string(real_src).substr(mount.size());
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  return stage(mount, "stage-out", verify ? 1 : 0, jobs, rel, real_dest);
}

// Each rank copies a share of SRC (a file or a tree outside the mount) into DEST in the mount
// through its own mount point, so that the copies are its files (--spread), or the rank of
// this node copies all of it.
int stage_in(const std::string& src, const std::string& dest, bool spread, bool verify, int jobs) {
  char real_src[PATH_MAX], real_dest[PATH_MAX];
  struct stat st;
  if (::stat(src.c_str(), &st) != 0 || !::realpath(src.c_str(), real_src)) return fail(src + ": " + std::strerror(errno));
  if (!mount_of(real_src).empty()) return fail(src + " is inside a dsdfs mount: stage-in copies into one from outside");
  if (::stat(dest.c_str(), &st) != 0 || !::realpath(dest.c_str(), real_dest)) {
    return fail(dest + ": " + std::strerror(errno) + " (make the destination first)");
  }
  if (!S_ISDIR(st.st_mode)) return fail(dest + " is not a directory");
  const std::string mount = mount_of(real_dest);
  if (mount.empty()) return fail(dest + " is not in a dsdfs mount: stage-in copies into one");
  std::string rel = std::string(real_dest).substr(mount.size());
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  return stage(mount, "stage-in", (verify ? 1 : 0) | 2 | (spread ? 4 : 0), jobs, rel, real_src);
}

// Starts a stage job on every rank through `mount`'s daemon and follows it to its end.
int stage(const std::string& mount, const std::string& what, int flags, int jobs, const std::string& inside_rel,
          const std::string& outside) {
  const bool verify = (flags & 1) != 0;
  const char* real_dest = outside.c_str();
  std::vector<Rank> started;
  Words head;
  if (!ask(mount, "stage-out " + std::to_string(flags) + " " + std::to_string(jobs) + " " + hex(inside_rel) + " " +
                      hex(outside),
           &started, &head)) {
    return 2;
  }
  const std::string id = head["id"];
  int down = 0;
  for (const auto& r : started) {
    if (r.up()) continue;
    ++down;
    std::fprintf(stderr, "dsdfs: rank %d on %s did not start its share (%s): its files are not copied\n", r.rank,
                 r.get("host").c_str(), unpct(r.get("error", "")).c_str());
  }
  const bool tty = ::isatty(STDOUT_FILENO);
  std::vector<Rank> ranks;
  for (int polls = 0;; ++polls) {
    ranks.clear();
    if (!ask(mount, "stage-status " + id, &ranks)) return 2;
    uint64_t files = 0, files_total = 0, bytes = 0, bytes_total = 0;
    double secs = 0;
    bool done = true;
    for (const auto& r : ranks) {
      if (!r.up()) continue;
      files += r.num("files_done");
      files_total += r.num("files_total");
      bytes += r.num("bytes_done");
      bytes_total += r.num("bytes_total");
      secs = std::max(secs, std::strtod(r.get("seconds", "0").c_str(), nullptr));
      if (r.get("stage") != "done") done = false;
    }
    if (tty) {
      const double rate = secs > 0 ? static_cast<double>(bytes) / secs : 0;
      const double eta = rate > 0 ? static_cast<double>(bytes_total - bytes) / rate : 0;
      std::printf("\r%s: %llu/%llu files, %s of %s, %s/s, ETA %.0f s   ", what.c_str(),
                  static_cast<unsigned long long>(files), static_cast<unsigned long long>(files_total),
                  human_bytes(bytes).c_str(), human_bytes(bytes_total).c_str(),
                  human_bytes(static_cast<uint64_t>(rate)).c_str(), eta);
      std::fflush(stdout);
    }
    if (done) break;
    ::usleep(polls < 10 ? 100 * 1000 : 500 * 1000);
  }
  if (tty) std::printf("\n");
  uint64_t files = 0, unchanged = 0, bytes = 0, errors = 0;
  double secs = 0;
  for (const auto& r : ranks) {
    if (!r.up()) {
      ++down;
      std::fprintf(stderr, "dsdfs: rank %d on %s stopped answering: its share may be incomplete\n", r.rank,
                   r.get("host").c_str());
      continue;
    }
    files += r.num("files_done");
    unchanged += r.num("unchanged");
    bytes += r.num("bytes_done");
    errors += r.num("errors");
    secs = std::max(secs, std::strtod(r.get("seconds", "0").c_str(), nullptr));
    for (int i = 0; r.w.count("error" + std::to_string(i)); ++i)
      std::fprintf(stderr, "dsdfs: rank %d on %s: %s\n", r.rank, r.get("host").c_str(),
                   unpct(r.get("error" + std::to_string(i))).c_str());
    if (r.num("errors") > 20) std::fprintf(stderr, "dsdfs: rank %d: %llu more errors\n", r.rank,
                                           static_cast<unsigned long long>(r.num("errors") - 20));
  }
  std::printf("%s: %llu files (%llu unchanged), %s in %.1f s (%s/s) by %zu ranks %s %s; %llu errors%s\n",
              what.c_str(), static_cast<unsigned long long>(files), static_cast<unsigned long long>(unchanged),
              human_bytes(bytes).c_str(), secs, human_bytes(secs > 0 ? static_cast<uint64_t>(bytes / secs) : 0).c_str(),
              ranks.size() - static_cast<size_t>(down), (flags & 2) ? "from" : "to", real_dest,
              static_cast<unsigned long long>(errors),
              verify ? ", verified" : "");
  return errors || down ? 1 : 0;
}

int where(const std::vector<std::string>& files) {
  int rc = 0;
  for (const auto& f : files) {
    struct stat st;
    if (::lstat(f.c_str(), &st) != 0) {
      std::fprintf(stderr, "dsdfs: %s: %s\n", f.c_str(), std::strerror(errno));
      rc = 1;
      continue;
    }
    if (mount_of(f).empty()) {
      std::fprintf(stderr, "dsdfs: %s is not in a dsdfs mount\n", f.c_str());
      rc = 1;
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      std::printf("%s: a directory (every rank has it)\n", f.c_str());
      continue;
    }
    int err = 0;
    auto owner = xattr(f, "user.dsdfs.owner", &err);
    if (!owner) {
      std::fprintf(stderr, "dsdfs: %s: no owner: %s\n", f.c_str(), std::strerror(err));
      rc = 1;
      continue;
    }
    std::string rank = *owner, host = "?";
    if (size_t sp = owner->find(' '); sp != std::string::npos) {
      rank = owner->substr(0, sp);
      host = owner->substr(sp + 1);
    }
    std::string copy = "-";
    if (S_ISREG(st.st_mode)) {
      auto c = xattr(f, "user.dsdfs.cache", &err);
      copy = c ? *c : std::string("unknown (") + std::strerror(err) + ")";
    }
    const char* meaning = copy == "local"     ? "this node owns it"
                          : copy == "current" ? "a whole copy of the owner's version is here"
                          : copy == "partial" ? "part of the owner's version is here"
                          : copy == "stale"   ? "the copy here is of an older version"
                          : copy == "none"    ? "no copy here"
                                              : "";
    std::printf("%s: rank %s on %s, copy here: %s%s%s%s\n", f.c_str(), rank.c_str(), host.c_str(), copy.c_str(),
                *meaning ? " (" : "", meaning, *meaning ? ")" : "");
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  bool json = false, per_rank = false, verify = false, spread = false;
  int jobs = 4;
  std::vector<std::string> rest;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--json" && (cmd == "status" || cmd == "stats")) json = true;
    else if (args[i] == "--verify" && (cmd == "stage-out" || cmd == "stage-in")) verify = true;
    else if (args[i] == "--spread" && cmd == "stage-in") spread = true;
    else if (args[i] == "--jobs" && (cmd == "stage-out" || cmd == "stage-in")) {
      char* end = nullptr;
      long v = i + 1 < args.size() ? std::strtol(args[i + 1].c_str(), &end, 10) : 0;
      if (i + 1 >= args.size() || *end != '\0' || v < 1 || v > 64) return fail("--jobs needs a number from 1 to 64");
      jobs = static_cast<int>(v);
      ++i;
    }
    else if (args[i] == "--per-rank" && cmd == "stats") per_rank = true;
    else if (args[i].size() > 1 && args[i][0] == '-') return fail("unknown option '" + args[i] + "' for " + cmd + "\n" + kUsage);
    else rest.push_back(args[i]);
  }
  if (cmd == "where") {
    if (rest.empty()) return fail(std::string("where: name at least one file\n") + kUsage);
    return where(rest);
  }
  if (cmd == "stage-in") {
    if (rest.size() != 2) return fail(std::string("stage-in: name SRC and DEST\n") + kUsage);
    return stage_in(rest[0], rest[1], spread, verify, jobs);
  }
  if (cmd == "stage-out") {
    if (rest.size() != 2) return fail(std::string("stage-out: name SRC and DEST\n") + kUsage);
    return stage_out(rest[0], rest[1], verify, jobs);
  }
  if (cmd != "status" && cmd != "stats" && cmd != "stop") return fail("unknown command '" + cmd + "'\n" + kUsage);
  if (rest.size() > 1) return fail(cmd + ": one mount at most\n" + kUsage);
  std::string mount;
  if (!choose_mount(rest.empty() ? std::nullopt : std::optional<std::string>(rest[0]), &mount)) return 2;
  if (cmd == "stop") return stop(mount);
  return cmd == "status" ? status(mount, json) : stats(mount, per_rank, json);
}
