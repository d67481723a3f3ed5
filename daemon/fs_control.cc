// SPDX-License-Identifier: Apache-2.0
// What the `dsdfs` command asks a daemon (daemon/control.h): every rank's
// state, host, uptime, files, store and cache use, and counters.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "common/log.h"
#include "daemon/filesystem.h"
#include "daemon/messages.h"
#include "daemon/store.h"

namespace dsdfs::fs {

namespace {

struct TreeUse {
  uint64_t files = 0;   // regular files (a file with several names once)
  uint64_t bytes = 0;   // their sizes
  uint64_t blocks = 0;  // bytes allocated on disk (st_blocks)
};

// Walks the tree under dir_fd without following symlinks; depth-bounded so
// that no tree can exhaust the descriptors.
void walk(int dir_fd, int depth, std::set<std::pair<dev_t, ino_t>>& linked, TreeUse& use) {
  if (depth > 64) return;
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return;
  }
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        walk(sub, depth + 1, linked, use);
        ::close(sub);
      }
      continue;
    }
    if (!S_ISREG(st.st_mode)) continue;
    if (st.st_nlink > 1 && !linked.insert({st.st_dev, st.st_ino}).second) continue;
    ++use.files;
    use.bytes += static_cast<uint64_t>(st.st_size);
    use.blocks += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  ::closedir(d);
}

TreeUse tree_use(const std::string& path) {
  TreeUse use;
  std::set<std::pair<dev_t, ino_t>> linked;
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return use;
  walk(fd, 0, linked, use);
  ::close(fd);
  return use;
}

// "a b" -> "a_b": values of the key=value words have no spaces.
std::string word(std::string s) {
  for (char& c : s)
    if (c == ' ' || c == '\n' || c == '\t' || c == '=') c = '_';
  return s.empty() ? "?" : s;
}

// Percent-encoding of a value that may hold spaces, '=' or '%' (paths, messages).
std::string pct(const std::string& v) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (c <= ' ' || c == '%' || c == '=' || c >= 0x7f) {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out.empty() ? "%" : out;  // (never empty: "%" alone is "")
}

std::optional<std::string> unhex(const std::string& h) {
  if (h.size() % 2) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < h.size(); i += 2) {
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      char c = h[i + static_cast<size_t>(k)];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out += static_cast<char>(v);
  }
  return out;
}

}  // namespace

Peers::Reply Filesystem::on_stage_start(int source, const msg::StageStart& m) {
  StageOut::Request r{m.src_rel, m.dest, (m.flags & 1) != 0, static_cast<int>(std::min<uint32_t>(m.jobs, 64))};
  r.in = (m.flags & 2) != 0;
  r.spread = (m.flags & 4) != 0;
  r.taker = source;
  r.rank = rank_;
  r.nranks = peers_->nranks();
  if (Status s = stage_->start(m.id, std::move(r)); !s) return s;
  return std::vector<uint8_t>();
}

Peers::Reply Filesystem::on_stage_status(int, const msg::StageQuery& m) {
  auto p = stage_->progress(m.id);
  if (!p) return Status::error(ENOENT, "no such stage-out job here");
  std::string out = "stage=" + p->state + " files_total=" + std::to_string(p->files_total) +
                    " bytes_total=" + std::to_string(p->bytes_total) + " files_done=" + std::to_string(p->files_done) +
                    " bytes_done=" + std::to_string(p->bytes_done) + " unchanged=" + std::to_string(p->files_unchanged) +
                    " errors=" + std::to_string(p->errors) + " seconds=" + std::to_string(p->seconds);
  for (size_t i = 0; i < p->first_errors.size(); ++i) out += " error" + std::to_string(i) + "=" + pct(p->first_errors[i]);
  return std::vector<uint8_t>(out.begin(), out.end());
}

std::string Filesystem::control_stage_out(const std::string& args) {
  // "FLAGS JOBS INSIDE_REL_HEX OUTSIDE_HEX" (flags: 1 verify, 2 stage-in, 4 spread)
  std::istringstream in(args);
  int verify = 0, jobs = 0;
  std::string src_hex, dest_hex;
  if (!(in >> verify >> jobs >> src_hex >> dest_hex)) return "error: malformed stage request\n";
  auto src = unhex(src_hex == "-" ? "" : src_hex), dest = unhex(dest_hex);
  if (!src || !dest || dest->empty() || (*dest)[0] != '/') return "error: malformed stage-out request\n";

  const uint64_t id = (static_cast<uint64_t>(rank_) << 48) | (static_cast<uint64_t>(::getpid() & 0xffff) << 32) |
                      (stage_ids_.fetch_add(1) + 1);
  msg::StageStart m{id, static_cast<uint32_t>(verify & 7), static_cast<uint32_t>(std::clamp(jobs, 1, 64)), *src, *dest};
  auto replies = peers_->call_all(Op::kStageStart, msg::encode(m));
  std::string out = "ok id=" + std::to_string(id) + " ranks=" + std::to_string(replies.size()) + "\n";
  for (size_t r = 0; r < replies.size(); ++r) {
    out += "rank=" + std::to_string(r) + " host=" + word(peers_->host_of(static_cast<int>(r))) +
           (replies[r] ? std::string(" state=up") : " state=down error=" + pct(replies[r].status().to_string())) + "\n";
  }
  return out;
}

std::string Filesystem::control_stage_status(const std::string& args) {
  uint64_t id = std::strtoull(args.c_str(), nullptr, 10);
  auto replies = peers_->call_all(Op::kStageStatus, msg::encode(msg::StageQuery{id}));
  std::string out = "ok ranks=" + std::to_string(replies.size()) + "\n";
  for (size_t r = 0; r < replies.size(); ++r) {
    out += "rank=" + std::to_string(r) + " host=" + word(peers_->host_of(static_cast<int>(r)));
    if (replies[r]) {
      out += " state=up ";
      out.append(replies[r]->begin(), replies[r]->end());
    } else {
      out += " state=down error=" + pct(replies[r].status().to_string());
    }
    out += "\n";
  }
  return out;
}

Peers::Reply Filesystem::on_rank_info(int, const msg::InfoRequest&) {
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
  const TreeUse files = tree_use(store_->files_path());
  const TreeUse cache = tree_use(store_->cache_path());
  std::string out = "host=" + word(host_) + " uptime_s=" + std::to_string(uptime.count()) +
                    " files=" + std::to_string(files.files) + " bytes=" + std::to_string(files.bytes) +
                    " cache_bytes=" + std::to_string(cache.blocks);
  struct statvfs vfs;
  if (::statvfs(store_->files_path().c_str(), &vfs) == 0) {
    const uint64_t size = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    const uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    const uint64_t used = static_cast<uint64_t>(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
    out += " store_size=" + std::to_string(size) + " store_used=" + std::to_string(used) +
           " store_avail=" + std::to_string(avail);
  }
  out += " errors=" + std::to_string(stats_->rpc_failures.load(std::memory_order_relaxed));
  // The counters, as user.dsdfs.stats has them ("name value" lines).
  const std::string text = stats_->to_text();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    if (size_t sp = line.find(' '); sp != std::string::npos) {
      out += " c." + word(line.substr(0, sp)) + "=" + word(line.substr(sp + 1));
    }
    pos = nl + 1;
  }
  return std::vector<uint8_t>(out.begin(), out.end());
}

Peers::Reply Filesystem::on_job_stop(int source, const msg::InfoRequest&) {
  if (!stop_hook_) return Status::error(ENOSYS, "this daemon cannot be stopped so");
  DSDFS_INFO("stopping: asked by rank %d (dsdfs stop)", source);
  stop_hook_();  // the stop runs on the signal thread and the main thread; this reply goes first
  return std::vector<uint8_t>();
}

std::string Filesystem::control(const std::string& request) {
  if (request == "stop") {
    // Every other rank first, this one last: its own stop must not cut the
    // calls to the others short.
    std::string out;
    int told = 0;
    for (int r = 0; r < peers_->nranks(); ++r) {
      if (r == rank_) continue;
      auto reply = peers_->call(r, Op::kJobStop, msg::encode(msg::InfoRequest{}));
      out += "rank=" + std::to_string(r) + " state=" + (reply ? "stopping" : "down") + " host=" +
             word(peers_->host_of(r)) + (reply ? "" : " error=" + word(reply.status().to_string())) + "\n";
      told += reply ? 1 : 0;
    }
    auto self = on_job_stop(rank_, msg::InfoRequest{});
    out = "ok ranks=" + std::to_string(peers_->nranks()) + " stopping=" + std::to_string(told + (self ? 1 : 0)) +
          " asked_by=" + std::to_string(rank_) + "\n" + "rank=" + std::to_string(rank_) + " state=" +
          (self ? "stopping" : "error") + " host=" + word(host_) + "\n" + out;
    return out;
  }
  if (request.rfind("stage-out ", 0) == 0) return control_stage_out(request.substr(10));
  if (request.rfind("stage-status ", 0) == 0) return control_stage_status(request.substr(13));
  if (request != "ranks") return "error: unknown request '" + word(request) + "'\n";
  auto replies = peers_->call_all(Op::kRankInfo, msg::encode(msg::InfoRequest{}));
  std::string out = "ok ranks=" + std::to_string(replies.size()) + " asked_by=" + std::to_string(rank_) + "\n";
  for (size_t r = 0; r < replies.size(); ++r) {
    out += "rank=" + std::to_string(r);
    if (replies[r]) {
      out += " state=up ";
      out.append(replies[r]->begin(), replies[r]->end());
    } else {
      // Dead (declared so by the job) or silent for the call's timeout.
      out += std::string(" state=down host=") + word(peers_->host_of(static_cast<int>(r))) +
             " error=" + word(replies[r].status().to_string());
    }
    out += "\n";
  }
  return out;
}

}  // namespace dsdfs::fs
