// SPDX-License-Identifier: Apache-2.0
#include "tests/e2e/mount_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/hash.h"
#include "tests/e2e/e2e_env.h"

extern char** environ;

namespace dsdfs::e2e {

// ---------------------------------------------------------------------------------------
// errno helpers

std::string errno_text(int err) {
  if (err == 0) return "no error";
  const char* name = strerrorname_np(err);
  std::string s = name ? name : ("errno " + std::to_string(err));
  return s + " (" + strerror(err) + ")";
}

::testing::AssertionResult sys_ok(const char* expr, SysResult r) {
  if (r.rc >= 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " failed: " << errno_text(r.err);
}

::testing::AssertionResult sys_call_check(const char*, const SysCall& call) {
  if (call.allowed.empty()) return sys_ok(call.expr, call.result);
  std::string want;
  for (int e : call.allowed) {
    if (!want.empty()) want += " or ";
    want += errno_text(e);
  }
  if (call.result.rc >= 0) {
    return ::testing::AssertionFailure() << call.expr << " succeeded (returned "
                                         << call.result.rc << "), expected failure with "
                                         << want;
  }
  for (int e : call.allowed)
    if (e == call.result.err) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << call.expr << " failed with " << errno_text(call.result.err) << ", expected " << want;
}

// ---------------------------------------------------------------------------------------
// Fd

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.fd_;
    err_ = o.err_;
    o.fd_ = -1;
  }
  return *this;
}

Fd Fd::open(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  return Fd(fd, fd < 0 ? errno : 0);
}

Fd Fd::openat(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  return Fd(fd, fd < 0 ? errno : 0);
}

int Fd::close() {
  if (fd_ < 0) return EBADF;
  int rc = ::close(fd_);
  fd_ = -1;
  return rc == 0 ? 0 : errno;
}

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// ---------------------------------------------------------------------------------------
// data and file helpers

std::string pattern_bytes(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
  for (size_t i = 0; i < size; i += 8) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t v = x * 0x2545F4914F6CDD1DULL;
    std::memcpy(&out[i], &v, std::min<size_t>(8, size - i));
  }
  return out;
}

uint64_t checksum(std::string_view data) { return dsdfs::fnv1a64(data); }

::testing::AssertionResult pwrite_all(int fd, std::string_view data, off_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ::testing::AssertionFailure() << "pwrite(" << data.size() - done << " bytes at "
                                           << offset + done << ") failed: " << errno_text(errno);
    }
    if (n == 0) return ::testing::AssertionFailure() << "pwrite returned 0";
    done += n;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult pread_all(int fd, size_t size, off_t offset, std::string* out) {
  out->assign(size, '\0');
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, out->data() + done, size - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ::testing::AssertionFailure() << "pread(" << size - done << " bytes at "
                                           << offset + done << ") failed: " << errno_text(errno);
    }
    if (n == 0) break;
    done += n;
  }
  out->resize(done);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult write_file(const std::string& path, std::string_view data,
                                      mode_t mode) {
  Fd fd = Fd::open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (!fd.valid())
    return ::testing::AssertionFailure() << "open(" << path << ", O_CREAT) failed: "
                                         << fd.error_text();
  auto r = pwrite_all(fd.get(), data, 0);
  if (!r) return r << " (file " << path << ")";
  int err = fd.close();
  if (err != 0)
    return ::testing::AssertionFailure() << "close(" << path << ") failed: " << errno_text(err);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult read_file(const std::string& path, std::string* out) {
  Fd fd = Fd::open(path, O_RDONLY);
  if (!fd.valid())
    return ::testing::AssertionFailure() << "open(" << path << ", O_RDONLY) failed: "
                                         << fd.error_text();
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ::testing::AssertionFailure() << "read(" << path << ") failed: "
                                           << errno_text(errno);
    }
    if (n == 0) break;
    out->append(buf, n);
  }
  return ::testing::AssertionSuccess();
}

namespace {
std::string printable_prefix(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 48)) {
    if (c >= 32 && c < 127) {
      out += c;
    } else {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned char>(c));
      out += b;
    }
  }
  if (s.size() > 48) out += "...";
  return out;
}
}  // namespace

::testing::AssertionResult file_has(const std::string& path, std::string_view expected) {
  std::string got;
  auto r = read_file(path, &got);
  if (!r) return r;
  if (got == expected) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < expected.size() && got[i] == expected[i]) ++i;
  return ::testing::AssertionFailure()
         << path << ": content differs: expected " << expected.size() << " bytes, got "
         << got.size() << "; first difference at offset " << i << "; expected \""
         << printable_prefix(expected.substr(std::min(i, expected.size()))) << "\", got \""
         << printable_prefix(std::string_view(got).substr(std::min(i, got.size()))) << "\"";
}

::testing::AssertionResult list_dir(const std::string& path, std::vector<DirEntry>* out,
                                    bool* saw_dots) {
  out->clear();
  DIR* d = opendir(path.c_str());
  if (d == nullptr)
    return ::testing::AssertionFailure() << "opendir(" << path << ") failed: "
                                         << errno_text(errno);
  bool dot = false, dotdot = false;
  for (;;) {
    errno = 0;
    struct dirent* e = readdir(d);
    if (e == nullptr) {
      int err = errno;
      closedir(d);
      if (err != 0)
        return ::testing::AssertionFailure() << "readdir(" << path << ") failed: "
                                             << errno_text(err);
      break;
    }
    if (std::strcmp(e->d_name, ".") == 0) {
      dot = true;
      continue;
    }
    if (std::strcmp(e->d_name, "..") == 0) {
      dotdot = true;
      continue;
    }
    out->push_back({e->d_name, e->d_type, e->d_ino});
  }
  if (saw_dots) *saw_dots = dot && dotdot;
  return ::testing::AssertionSuccess();
}

std::vector<std::string> names_of(const std::vector<DirEntry>& entries) {
  std::vector<std::string> names;
  for (const auto& e : entries) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  return names;
}

std::optional<struct stat> lstat_of(const std::string& path, int* err) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (err) *err = errno;
    return std::nullopt;
  }
  if (err) *err = 0;
  return st;
}

bool path_exists(const std::string& path) { return lstat_of(path).has_value(); }

// ---------------------------------------------------------------------------------------
// mounts

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mount_field(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<MountInfo> all_mounts() {
  std::vector<MountInfo> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<std::string> f;
    std::string tok;
    while (ss >> tok) f.push_back(tok);
    auto sep = std::find(f.begin(), f.end(), "-");
    if (f.size() < 7 || sep == f.end() || sep + 3 > f.end()) continue;
    MountInfo m;
    sscanf(f[2].c_str(), "%u:%u", &m.dev_major, &m.dev_minor);
    m.mount_point = unescape_mount_field(f[4]);
    m.mount_options = f[5];
    m.fstype = *(sep + 1);
    m.source = unescape_mount_field(*(sep + 2));
    m.super_options = sep + 3 < f.end() ? *(sep + 3) : "";
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

std::vector<MountInfo> mounts_at(const std::string& path) {
  std::vector<MountInfo> out;
  for (auto& m : all_mounts())
    if (m.mount_point == path) out.push_back(m);
  return out;
}

bool is_mounted(const std::string& path) { return !mounts_at(path).empty(); }

bool force_unmount(const std::string& path) {
  for (int i = 0; i < 10 && is_mounted(path); ++i) {
    if (umount2(path.c_str(), MNT_DETACH) == 0) continue;
    if (!fusermount3_path().empty()) {
      std::vector<std::string> argv = {fusermount3_path(), "-u", "-z", "-q", path};
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      pid_t pid;
      if (posix_spawn(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ) == 0) {
        int status;
        waitpid(pid, &status, 0);
      }
    }
  }
  return !is_mounted(path);
}

// ---------------------------------------------------------------------------------------
// processes

std::optional<RunAs> run_as_user(const std::string& user) {
  struct passwd pw, *res = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr)
    return std::nullopt;
  RunAs r{pw.pw_uid, pw.pw_gid, user, pw.pw_dir ? pw.pw_dir : "/", {}};
  int n = 64;
  r.groups.resize(n);
  while (getgrouplist(user.c_str(), pw.pw_gid, r.groups.data(), &n) < 0) r.groups.resize(n);
  r.groups.resize(n);
  return r;
}

std::string describe_status(int st) {
  if (WIFEXITED(st)) return "exited " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) {
    const char* name = sigabbrev_np(WTERMSIG(st));
    return "killed by signal " + std::to_string(WTERMSIG(st)) + " (SIG" +
           (name ? name : "?") + ")" + (WCOREDUMP(st) ? ", core dumped" : "");
  }
  return "wait status " + std::to_string(st);
}

namespace {

// pid -> parent pid of every process, from /proc/<pid>/stat.
std::map<pid_t, pid_t> process_parents() {
  std::map<pid_t, pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (struct dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    char state;
    int ppid;
    if (sscanf(stat.c_str() + close_paren + 1, " %c %d", &state, &ppid) != 2) continue;
    out[static_cast<pid_t>(atoi(e->d_name))] = ppid;
  }
  closedir(d);
  return out;
}

// Whether `pid` has exited; reaps it if it is our child.
bool pid_gone(pid_t pid) {
  int st;
  pid_t r = waitpid(pid, &st, WNOHANG);
  if (r == pid) return true;
  if (r == 0) return false;
  return kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string describe_pid(pid_t pid) {
  std::string comm = slurp("/proc/" + std::to_string(pid) + "/comm");
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return std::to_string(pid) + " (" + (comm.empty() ? "?" : comm) + ")";
}

void ChildProcess::snapshot_descendants() {
  if (pid_ <= 0 || exited_) return;
  auto parents = process_parents();
  std::set<pid_t> family(descendants_.begin(), descendants_.end());
  family.insert(pid_);
  bool grew = true;
  while (grew) {
    grew = false;
    for (auto& [pid, ppid] : parents) {
      if (family.count(ppid) && !family.count(pid)) {
        family.insert(pid);
        grew = true;
      }
    }
  }
  family.erase(pid_);
  descendants_.assign(family.begin(), family.end());
}

std::string ChildProcess::reap_descendants(std::chrono::milliseconds timeout) {
  std::vector<pid_t> left;
  wait_until(
      [&] {
        left.clear();
        for (pid_t d : descendants_)
          if (!pid_gone(d)) left.push_back(d);
        return left.empty();
      },
      timeout);
  std::string text;
  for (pid_t d : left) {
    if (!text.empty()) text += ", ";
    text += describe_pid(d);
    kill(d, SIGKILL);
  }
  for (pid_t d : left) wait_until([&] { return pid_gone(d); }, 5s);
  descendants_.clear();
  return text;
}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0) return;
  if (running()) kill_group();
  reap_group_orphans();
  if (group_alive()) {
    kill(-pid_, SIGKILL);
    reap_group_orphans();
  }
  reap_descendants(5s);
  watchdog_unregister(pid_);
}

::testing::AssertionResult ChildProcess::spawn(const std::vector<std::string>& argv,
                                               const std::string& stdout_file,
                                               const std::string& stderr_file,
                                               const std::optional<RunAs>& run_as,
                                               const std::string& mount_point,
                                               const std::vector<std::string>& extra_env,
                                               unsigned long nofile_limit) {
  // Everything the child needs is prepared here: after fork() in a multi-threaded program
  // (the watchdog thread) only async-signal-safe calls are allowed.
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  std::vector<std::string> env;
  auto overridden = [&](std::string_view kv) {
    for (const auto& x : extra_env)
      if (kv.substr(0, kv.find('=') + 1) == std::string_view(x).substr(0, x.find('=') + 1))
        return true;
    return false;
  };
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (run_as && (kv.starts_with("HOME=") || kv.starts_with("USER=") ||
                   kv.starts_with("LOGNAME=")))
      continue;
    if (overridden(kv)) continue;
    env.emplace_back(kv);
  }
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  if (run_as) {
    env.push_back("HOME=" + run_as->home);
    env.push_back("USER=" + run_as->user);
    env.push_back("LOGNAME=" + run_as->user);
  }
  std::vector<char*> cenv;
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  int out_fd = ::open(stdout_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0)
    return ::testing::AssertionFailure() << "open(" << stdout_file << "): " << errno_text(errno);
  int err_fd = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (err_fd < 0) {
    ::close(out_fd);
    return ::testing::AssertionFailure() << "open(" << stderr_file << "): " << errno_text(errno);
  }
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  static const char kSetupFailed[] = "e2e: child set-up (setpgid/dup2/setuid/exec) failed\n";
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    ::close(out_fd);
    ::close(err_fd);
    ::close(null_fd);
    return ::testing::AssertionFailure() << "fork: " << errno_text(err);
  }
  if (pid == 0) {
    // Child: own process group, so that the whole tree can be killed by group id.
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);  // ignored dispositions survive exec
    if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) _exit(127);
    if (nofile_limit != 0) {
      struct rlimit rl = {nofile_limit, nofile_limit};
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(127);
    }
    if (run_as) {
      if (setgroups(run_as->groups.size(), run_as->groups.data()) != 0 ||
          setresgid(run_as->gid, run_as->gid, run_as->gid) != 0 ||
          setresuid(run_as->uid, run_as->uid, run_as->uid) != 0 || chdir("/") != 0) {
        ssize_t ignored = write(2, kSetupFailed, sizeof kSetupFailed - 1);
        (void)ignored;
        _exit(127);
      }
    }
    // If the test program dies (crash, meson timeout), the daemon gets SIGTERM and unmounts
    // instead of living on. Set after the credential change, which would clear it.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    execve(cargv[0], cargv.data(), cenv.data());
    ssize_t ignored = write(2, kSetupFailed, sizeof kSetupFailed - 1);
    (void)ignored;
    _exit(127);
  }
  setpgid(pid, pid);  // also in the parent, so that the group exists before we signal it
  ::close(out_fd);
  ::close(err_fd);
  ::close(null_fd);
  pid_ = pid;
  exited_ = false;
  status_ = 0;
  watchdog_register(pid_, mount_point);
  return ::testing::AssertionSuccess();
}

bool ChildProcess::running() {
  if (pid_ <= 0 || exited_) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == 0) return true;
  exited_ = true;
  status_ = r == pid_ ? st : 0;
  watchdog_unregister(pid_);
  return false;
}

bool ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  return wait_until([&] { return !running(); }, timeout);
}

bool ChildProcess::signal(int sig) { return pid_ > 0 && !exited_ && kill(pid_, sig) == 0; }

void ChildProcess::kill_group() {
  if (pid_ <= 0) return;
  snapshot_descendants();
  kill(-pid_, SIGKILL);
  if (!exited_) {
    // SIGKILL also ends a FUSE daemon blocked on a request: the kernel aborts the
    // connection when the last /dev/fuse descriptor closes.
    if (!wait_exit(15s)) {
      fprintf(stderr, "e2e: process %d did not die 15 s after SIGKILL\n", pid_);
    }
  }
  reap_group_orphans();
  // Descendants outside the group (e.g. a singleton orted) notice and exit; if not, kill.
  reap_descendants(5s);
}

void ChildProcess::reap_group_orphans() {
  if (pid_ <= 0) return;
  int st;
  while (waitpid(-pid_, &st, WNOHANG) > 0) {
  }
}

bool ChildProcess::group_alive() const {
  if (pid_ <= 0) return false;
  int st;
  while (waitpid(-pid_, &st, WNOHANG) > 0) {
  }
  return kill(-pid_, 0) == 0;
}

int CommandResult::exit_code() const {
  return !timed_out && WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
}

CommandResult run_command(const std::vector<std::string>& argv, const std::string& scratch_dir,
                          std::chrono::milliseconds timeout, const std::optional<RunAs>& run_as) {
  static int counter = 0;
  ++counter;
  std::string out_file = scratch_dir + "/cmd" + std::to_string(counter) + ".out";
  std::string err_file = scratch_dir + "/cmd" + std::to_string(counter) + ".err";
  CommandResult res;
  {
    ChildProcess child;
    auto r = child.spawn(argv, out_file, err_file, run_as);
    if (!r) {
      res.timed_out = true;
      res.err = r.message();
      return res;
    }
    if (!child.wait_exit(timeout)) {
      res.timed_out = true;
      child.kill_group();
    }
    res.wait_status = child.wait_status();
  }
  res.out = slurp(out_file);
  res.err = slurp(err_file);
  if (run_as) {
    // Files are root's; nothing else to do. (The child wrote through inherited fds.)
  }
  return res;
}

std::vector<pid_t> child_pids() {
  std::vector<pid_t> out;
  int st;
  while (waitpid(-1, &st, WNOHANG) > 0) {
  }
  DIR* d = opendir("/proc");
  if (!d) return out;
  pid_t self = getpid();
  while (struct dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    char state;
    int ppid;
    if (sscanf(stat.c_str() + close_paren + 1, " %c %d", &state, &ppid) != 2) continue;
    if (ppid == self) out.push_back(static_cast<pid_t>(atoi(e->d_name)));
  }
  closedir(d);
  return out;
}

int kill_all_children() {
  std::vector<pid_t> kids = child_pids();
  for (pid_t pid : kids) kill(pid, SIGKILL);
  for (pid_t pid : kids) {
    int st;
    waitpid(pid, &st, 0);
  }
  return static_cast<int>(kids.size());
}

// ---------------------------------------------------------------------------------------
// temporary directory

TempDir::TempDir(const std::string& tag) {
  std::string templ = "/tmp/" + tag + "-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << templ << "): " << errno_text(errno);
    return;
  }
  path_ = templ;
}

namespace {
bool g_remove_failed = false;
int remove_one(const char* path, const struct stat*, int, struct FTW*) {
  if (::remove(path) != 0) {
    fprintf(stderr, "e2e: cannot remove %s: %s\n", path, errno_text(errno).c_str());
    g_remove_failed = true;
  }
  return 0;
}
}  // namespace

bool remove_tree(const std::string& path) {
  if (!path_exists(path)) return true;
  g_remove_failed = false;
  if (nftw(path.c_str(), remove_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0) return false;
  return !g_remove_failed;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  // Detach mounts left inside, deepest first, before touching the tree.
  std::vector<std::string> inside;
  for (auto& m : all_mounts())
    if (m.mount_point.starts_with(path_ + "/")) inside.push_back(m.mount_point);
  std::sort(inside.begin(), inside.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (auto& mnt : inside) {
    if (!force_unmount(mnt)) fprintf(stderr, "e2e: cannot unmount %s\n", mnt.c_str());
  }
  const char* keep = getenv("DSDFS_E2E_KEEP");
  if (keep && std::strcmp(keep, "1") == 0) {
    fprintf(stderr, "e2e: keeping %s (DSDFS_E2E_KEEP=1)\n", path_.c_str());
    return;
  }
  for (auto& m : all_mounts()) {
    if (m.mount_point == path_ || m.mount_point.starts_with(path_ + "/")) {
      fprintf(stderr, "e2e: not removing %s: %s is still mounted\n", path_.c_str(),
              m.mount_point.c_str());
      return;
    }
  }
  remove_tree(path_);
}

// ---------------------------------------------------------------------------------------
// a dsdfs instance

std::vector<std::string> dsdfs_args(const DsdfsConfig& c) {
  std::vector<std::string> args = {c.mount_point};
  if (!c.store.empty()) {
    args.push_back("--store");
    args.push_back(c.store);
  }
  args.push_back("--ready-file");
  args.push_back(c.ready_file);
  if (c.keep_store) args.push_back("--keep-store");
  args.insert(args.end(), c.extra_args.begin(), c.extra_args.end());
  return args;
}

DsdfsInstance::DsdfsInstance(DsdfsConfig config) : config_(std::move(config)) {
  if (config_.mount_point.empty()) config_.mount_point = config_.root + "/mnt";
  if (config_.store.empty() && !config_.default_store) config_.store = config_.root + "/store";
  if (config_.ready_file.empty()) config_.ready_file = config_.root + "/ready";
  if (config_.log_file.empty()) config_.log_file = config_.root + "/daemon.log";
  if (config_.expected_mount.empty()) config_.expected_mount = config_.mount_point;
}

DsdfsInstance::~DsdfsInstance() {
  if (running()) {
    auto r = stop();
    if (!r) fprintf(stderr, "e2e: stopping dsdfs at teardown: %s\n", r.message());
  }
  ensure_unmounted();
}

::testing::AssertionResult DsdfsInstance::start() {
  if (config_.create_mount_point) {
    // An existing mount point is left as it is (it may be a stale mount, where even root
    // gets ENOTCONN or EACCES).
    bool created = mkdir(config_.mount_point.c_str(), 0755) == 0;
    if (!created && errno != EEXIST)
      return ::testing::AssertionFailure()
             << "mkdir(" << config_.mount_point << "): " << errno_text(errno);
    if (created && config_.run_as &&
        chown(config_.mount_point.c_str(), config_.run_as->uid, config_.run_as->gid) != 0)
      return ::testing::AssertionFailure()
             << "chown(" << config_.mount_point << "): " << errno_text(errno);
  }
  // A ready file from an earlier run on the same directory must not count.
  ::unlink(config_.ready_file.c_str());
  size_t log_start = log_size();

  std::vector<std::string> argv = {config_.launch.empty() ? launch_path() : config_.launch};
  for (auto& a : dsdfs_args(config_)) argv.push_back(a);
  std::string cmdline;
  for (auto& a : argv) cmdline += a + " ";
  auto spawned = process_.spawn(argv, config_.log_file, config_.log_file, config_.run_as,
                                config_.expected_mount, config_.env, config_.nofile_limit);
  if (!spawned) return spawned;

  bool exited = false;
  bool ready = wait_until(
      [&] {
        if (access(config_.ready_file.c_str(), F_OK) == 0) return true;
        exited = !process_.running();
        return exited;
      },
      config_.ready_timeout);
  if (!ready || exited) {
    std::string why;
    if (exited) {
      why = "dsdfs-launch " + describe_status(process_.wait_status()) +
            " before writing its ready file";
    } else {
      why = "no ready file " + config_.ready_file + " within " +
            std::to_string(config_.ready_timeout.count()) + " ms; killed it";
    }
    process_.kill_group();
    bool left = !ensure_unmounted();
    return ::testing::AssertionFailure()
           << why << (left ? " (and a mount was left that could not be removed)" : "")
           << "\n  command: " << cmdline << "\n  daemon log:\n"
           << log_since(log_start);
  }
  process_.snapshot_descendants();
  auto mounts = mounts_at(config_.expected_mount);
  if (mounts.empty()) {
    auto r = ::testing::AssertionFailure()
             << "ready file exists but nothing is mounted at " << config_.expected_mount
             << " (/proc/self/mountinfo)\n  command: " << cmdline << "\n  daemon log:\n"
             << log_since(log_start);
    stop();
    return r;
  }
  if (mounts.back().fstype != "fuse.dsdfs") {
    auto r = ::testing::AssertionFailure()
             << "mount at " << config_.expected_mount << " has fstype " << mounts.back().fstype
             << ", expected fuse.dsdfs\n  daemon log:\n"
             << log_since(log_start);
    stop();
    return r;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult DsdfsInstance::stop(int sig) {
  if (!process_.started()) return ::testing::AssertionSuccess();
  std::string problems;
  if (!process_.running()) {
    problems += "daemon had already " + describe_status(process_.wait_status()) +
                " before it was asked to stop; ";
  } else {
    process_.snapshot_descendants();
    process_.signal(sig);
    if (!process_.wait_exit(config_.stop_timeout)) {
      problems += "daemon did not exit within " + std::to_string(config_.stop_timeout.count()) +
                  " ms of SIG" + sigabbrev_np(sig) + "; SIGKILLed its process group; ";
      process_.kill_group();
    } else {
      int st = process_.wait_status();
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        problems += std::string("daemon ") + describe_status(st) + " after SIG" +
                    sigabbrev_np(sig) + ", expected exit 0; ";
    }
  }
  if (process_.group_alive()) {
    problems += "processes were left in the daemon's process group after it exited; ";
    process_.kill_group();
  }
  if (std::string left = process_.reap_descendants(5s); !left.empty())
    problems += "processes started by the daemon outlived it by 5 s (SIGKILLed): " + left + "; ";
  if (is_mounted(config_.expected_mount)) {
    problems += "a mount was left at " + config_.expected_mount + " after the daemon exited; ";
    ensure_unmounted();
  }
  if (problems.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << problems.substr(0, problems.size() - 2);
}

void DsdfsInstance::kill_hard() { process_.kill_group(); }

size_t DsdfsInstance::log_size() const {
  struct stat st;
  return ::stat(config_.log_file.c_str(), &st) == 0 ? st.st_size : 0;
}

std::string DsdfsInstance::log_since(size_t offset) const {
  std::string all = slurp(config_.log_file);
  if (offset > all.size()) offset = 0;
  std::string part = all.substr(offset);
  constexpr size_t kMax = 32 * 1024;
  if (part.size() > kMax) part = "...(earlier lines cut)...\n" + part.substr(part.size() - kMax);
  if (part.empty()) part = "(empty)\n";
  return part;
}

bool DsdfsInstance::ensure_unmounted() { return force_unmount(config_.expected_mount); }

std::string short_hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  std::string h = buf;
  return h.substr(0, h.find('.'));
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

}  // namespace dsdfs::e2e
