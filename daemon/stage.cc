// SPDX-License-Identifier: Apache-2.0
#include "daemon/stage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "common/hash.h"
#include "common/log.h"
#include "common/noexcept_boundary.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

struct StageOut::Job {
  Request req;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  Mutex mu;  // leaf lock
  Progress p GUARDED_BY(mu);
  std::chrono::steady_clock::time_point done_at GUARDED_BY(mu);
  std::thread thread;
};

namespace {

constexpr std::chrono::minutes kKeepDone{10};

struct Item {
  std::string src;   // absolute, in the store
  std::string dest;  // absolute, at the destination
  std::string shown; // the path as the user sees it (under the mount)
  struct stat st;
};

std::string join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string base_name(const std::string& p) {
  size_t s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

// Collects the regular files and symlinks under src (a directory), making the
// directories at dest as it goes. Errors into errs.
void scan(const std::string& src, const std::string& dest, const std::string& shown, int depth,
          std::vector<Item>& items, std::vector<std::string>& errs) {
  if (depth > 256) return errs.push_back(shown + ": too deep");
  if (::mkdir(dest.c_str(), 0755) != 0 && errno != EEXIST) {
    return errs.push_back(shown + ": cannot make " + dest + ": " + std::strerror(errno));
  }
  DIR* d = ::opendir(src.c_str());
  if (!d) return errs.push_back(shown + ": " + std::strerror(errno));
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  }
  ::closedir(d);
  for (const auto& n : names) {
    Item it{join(src, n), join(dest, n), join(shown, n), {}};
    if (::lstat(it.src.c_str(), &it.st) != 0) continue;  // gone meanwhile
    if (S_ISDIR(it.st.st_mode)) scan(it.src, it.dest, it.shown, depth + 1, items, errs);
    else if (S_ISREG(it.st.st_mode) || S_ISLNK(it.st.st_mode)) items.push_back(std::move(it));
  }
}

// FNV-1a 64 of a whole file, or nullopt.
std::optional<uint64_t> checksum(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  std::vector<char> buf(1 << 20);
  uint64_t h = 0xcbf29ce484222325ULL;
  while (true) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return h;
    h = fnv1a64(std::string_view(buf.data(), static_cast<size_t>(n)), h);
  }
}

// Whether dest already holds this file (same size and modification time).
bool unchanged(const Item& it) {
  struct stat d;
  if (::lstat(it.dest.c_str(), &d) != 0) return false;
  if (S_ISLNK(it.st.st_mode)) {
    if (!S_ISLNK(d.st_mode)) return false;
    char a[4096], b[4096];
    ssize_t na = ::readlink(it.src.c_str(), a, sizeof a), nb = ::readlink(it.dest.c_str(), b, sizeof b);
    return na >= 0 && na == nb && std::memcmp(a, b, static_cast<size_t>(na)) == 0;
  }
  return S_ISREG(d.st_mode) && d.st_size == it.st.st_size && d.st_mtim.tv_sec == it.st.st_mtim.tv_sec &&
         d.st_mtim.tv_nsec == it.st.st_mtim.tv_nsec;
}

// Copies one file; "" or what went wrong.
std::string copy_one(const Item& it, bool verify, const std::string& tag) {
  // (The name cut short: the temporary name must fit in NAME_MAX too.)
  const std::string tmp =
      join(it.dest.substr(0, it.dest.find_last_of('/')), ".dsdfs-stage." + base_name(it.dest).substr(0, 200) + tag);
  if (S_ISLNK(it.st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(it.src.c_str(), target, sizeof target - 1);
    if (n < 0) return std::string("readlink: ") + std::strerror(errno);
    target[n] = '\0';
    ::unlink(tmp.c_str());
    if (::symlink(target, tmp.c_str()) != 0) return std::string("symlink: ") + std::strerror(errno);
    if (::rename(tmp.c_str(), it.dest.c_str()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return std::string("rename into place: ") + std::strerror(e);
    }
    return "";
  }
  UniqueFd in(::open(it.src.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in.valid()) return std::string("open: ") + std::strerror(errno);
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return std::string("fstat: ") + std::strerror(errno);
  // The mode bits without setuid, setgid and sticky: a copy out of the job is data.
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777));
  if (!out.valid()) return std::string("create at the destination: ") + std::strerror(errno);
  auto fail = [&](const char* what, int e) {
    out.reset();
    ::unlink(tmp.c_str());
    return std::string(what) + ": " + std::strerror(e) + (e == ENOSPC ? " (the destination is full)" : "");
  };
  bool plain = false;  // copy_file_range refused: read and write
  std::vector<char> buf;
  while (true) {
    ssize_t n;
    if (!plain) {
      n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, 64u << 20, 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        plain = true;
        buf.resize(1 << 20);
        continue;
      }
    } else {
      n = ::read(in.get(), buf.data(), buf.size());
      if (n > 0) {
        size_t done = 0;
        while (done < static_cast<size_t>(n)) {
          ssize_t w = ::write(out.get(), buf.data() + done, static_cast<size_t>(n) - done);
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) return fail("write", errno);
          done += static_cast<size_t>(w);
        }
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("copy", errno);
    if (n == 0) break;
  }
  // Written back first: a write-back after the times are set would move them again
  // (through a mount with a writeback cache, as stage-in writes).
  if (::fsync(out.get()) != 0) return fail("write back", errno);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::futimens(out.get(), times) != 0) return fail("set the modification time", errno);
  if (::close(out.release()) != 0) return fail("close", errno);
  if (verify) {
    auto a = checksum(it.src), b = checksum(tmp);
    if (!a || !b || *a != *b) {
      ::unlink(tmp.c_str());
      return !a || !b ? "verify: cannot read a copy back" : "verify: the copy differs from the source";
    }
  }
  if (::rename(tmp.c_str(), it.dest.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return std::string("rename into place: ") + std::strerror(e);
  }
  return "";
}

}  // namespace

StageOut::~StageOut() {
  stop();
  std::vector<std::shared_ptr<Job>> all;
  {
    MutexLock lock(mu_);
    for (auto& [id, j] : jobs_) all.push_back(j);
  }
  for (auto& j : all)
    if (j->thread.joinable()) j->thread.join();
}

Status StageOut::start(uint64_t id, Request request) {
  auto job = std::make_shared<Job>();
  job->req = std::move(request);
  {
    MutexLock lock(job->mu);
    job->p.state = "scanning";
  }
  MutexLock lock(mu_);
  if (jobs_.count(id)) return Status::error(EEXIST, "stage-out job already known");
  // Jobs done for a while: nobody polls them any more (the command polls until done).
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    bool old_done;
    {
      MutexLock jl(it->second->mu);
      old_done = it->second->p.state == "done" && std::chrono::steady_clock::now() - it->second->done_at > kKeepDone;
    }
    if (!old_done) {
      ++it;
      continue;
    }
    if (it->second->thread.joinable()) it->second->thread.join();  // (it has returned)
    it = jobs_.erase(it);
  }
  jobs_[id] = job;
  // (Under mu_: the destructor, which joins it, finds it set.)
  job->thread = std::thread([this, job] { run_at_boundary("stage-out", [&] { run(*job); }); });
  return Status::ok();
}

std::optional<StageOut::Progress> StageOut::progress(uint64_t id) {
  std::shared_ptr<Job> job;
  {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return std::nullopt;
    job = it->second;
  }
  MutexLock lock(job->mu);
  Progress p = job->p;
  if (p.state != "done") {
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - job->started).count();
  }
  return p;
}

void StageOut::run(Job& job) {
  const Request& r = job.req;
  std::vector<Item> items;
  std::vector<std::string> errs;
  struct stat st;
  if (r.in) {
    // From r.dest (outside) to MOUNT/src_rel/basename(dest).
    const std::string into = join(mount_root_, r.src_rel);
    const bool mine = r.spread || r.taker == r.rank;
    if (mine && ::lstat(r.dest.c_str(), &st) == 0) {
      const std::string shown = r.dest;
      if (S_ISDIR(st.st_mode)) {
        scan(r.dest, join(into, base_name(r.dest)), shown, 0, items, errs);
      } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
        items.push_back({r.dest, join(into, base_name(r.dest)), shown, st});
      }
    } else if (mine) {
      errs.push_back(r.dest + ": " + std::strerror(errno));
    }
    if (r.spread) {
      // This rank's share: by a hash of the path under the source, the same on every rank
      // whatever order the directories list in (and whatever the source's own path is).
      std::erase_if(items, [&](const Item& it) {
        const std::string under = it.shown.substr(std::min(it.shown.size(), r.dest.size()));
        return static_cast<int>(fnv1a64(under) % static_cast<uint64_t>(std::max(1, r.nranks))) != r.rank;
      });
    }
  } else {
    const std::string src = join(files_root_, r.src_rel);
    if (::lstat(src.c_str(), &st) == 0) {
      const std::string shown = "/" + r.src_rel;
      if (S_ISDIR(st.st_mode)) {
        scan(src, r.src_rel.empty() ? r.dest : join(r.dest, base_name(r.src_rel)), shown, 0, items, errs);
      } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
        items.push_back({src, join(r.dest, base_name(r.src_rel)), shown, st});
      }
    }  // else: not here (another rank's file): nothing to do on this rank
  }
  uint64_t bytes = 0;
  for (const auto& it : items) bytes += S_ISREG(it.st.st_mode) ? static_cast<uint64_t>(it.st.st_size) : 0;
  auto note_error = [&job](const std::string& e) {
    MutexLock lock(job.mu);
    ++job.p.errors;
    if (job.p.first_errors.size() < kKeptErrors) job.p.first_errors.push_back(e);
  };
  {
    MutexLock lock(job.mu);
    job.p.state = "copying";
    job.p.files_total = items.size();
    job.p.bytes_total = bytes;
  }
  for (const auto& e : errs) note_error(e);
  std::atomic<size_t> next{0};
  const std::string tag = "." + std::to_string(::getpid()) + ".tmp";
  auto worker = [&] {
    while (!stopping_.load()) {
      const size_t i = next.fetch_add(1);
      if (i >= items.size()) return;
      const Item& it = items[i];
      const uint64_t size = S_ISREG(it.st.st_mode) ? static_cast<uint64_t>(it.st.st_size) : 0;
      const bool same = unchanged(it);
      std::string err = same ? "" : copy_one(it, r.verify, tag);
      if (!err.empty()) {
        note_error(it.shown + ": " + err);
        continue;
      }
      MutexLock lock(job.mu);
      ++job.p.files_done;
      job.p.bytes_done += size;
      if (same) ++job.p.files_unchanged;
    }
  };
  std::vector<std::thread> threads;
  for (int k = 1; k < std::max(1, std::min(r.jobs, 64)); ++k) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  MutexLock lock(job.mu);
  if (stopping_.load() && job.p.files_done + job.p.errors < job.p.files_total) {
    ++job.p.errors;
    if (job.p.first_errors.size() < kKeptErrors) job.p.first_errors.push_back("stage-out cut short: the daemon is stopping");
  }
  job.p.state = "done";
  job.done_at = std::chrono::steady_clock::now();
  job.p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started).count();
}

}  // namespace dsdfs::fs
