// SPDX-License-Identifier: Apache-2.0
#include "tests/mpi/cluster_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cctype>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>

#include "tests/e2e/e2e_env.h"

namespace dsdfs::mpitest {

using e2e::errno_text;
using e2e::slurp;

// ---------------------------------------------------------------------------------------
// environment

namespace {

std::string find_on_path(const char* name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

[[noreturn]] void broken_build(const std::string& why) {
  fprintf(stderr, "mpi: FAIL: %s\n", why.c_str());
  fflush(stderr);
  _exit(1);
}

}  // namespace

const std::string& mpirun_path() {
  static const std::string path = find_on_path("mpirun");
  return path;
}

const std::string& loopback_env_path() {
  static const std::string path =
      getenv("DSDFS_LOOPBACK_ENV") ? getenv("DSDFS_LOOPBACK_ENV") : "";
  return path;
}

const std::string& ucx_tls_variant() {
  static const std::string v =
      getenv("DSDFS_TEST_UCX_TLS") && *getenv("DSDFS_TEST_UCX_TLS") ? getenv("DSDFS_TEST_UCX_TLS")
                                                                    : "default";
  return v;
}

void cluster_require_environment_or_exit() {
  std::string missing;
  if (mpirun_path().empty()) missing += "mpirun is not on PATH (package openmpi-bin); ";
  struct stat st;
  if (stat("/dev/fuse", &st) != 0 || !S_ISCHR(st.st_mode)) {
    missing += "/dev/fuse is missing; ";
  } else {
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      missing += std::string("/dev/fuse cannot be opened: ") + strerror(errno) + "; ";
    } else {
      close(fd);
    }
  }
  if (!missing.empty()) {
    missing = missing.substr(0, missing.size() - 2);
    const char* require = getenv("DSDFS_REQUIRE_ALL");
    if (require != nullptr && std::strcmp(require, "1") == 0)
      broken_build(missing + " (DSDFS_REQUIRE_ALL=1 turns this skip into a failure)");
    fprintf(stderr, "mpi: SKIP: %s\n", missing.c_str());
    fflush(stderr);
    _exit(kExitSkip);
  }

  const std::string& launch = e2e::launch_path();
  if (launch.empty())
    broken_build("DSDFS_LAUNCH is not set; run through `meson test`, which sets it");
  if (access(launch.c_str(), X_OK) != 0)
    broken_build("DSDFS_LAUNCH=" + launch + " is not executable: " + strerror(errno));
  if (loopback_env_path().empty() || access(loopback_env_path().c_str(), R_OK) != 0)
    broken_build("DSDFS_LOOPBACK_ENV (scripts/loopback-env.sh) is not set or not readable: '" +
                 loopback_env_path() + "'");
  if (ucx_tls_variant() != "tcp" && ucx_tls_variant() != "default" && ucx_tls_variant() != "verbs")
    broken_build("DSDFS_TEST_UCX_TLS must be 'tcp', 'default' or 'verbs', not '" + ucx_tls_variant() +
                 "'");
}

// ---------------------------------------------------------------------------------------
// processes

namespace {

struct ProcInfo {
  pid_t ppid = 0;
  pid_t pgid = 0;
};

std::map<pid_t, ProcInfo> process_table() {
  std::map<pid_t, ProcInfo> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (struct dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    char state;
    int ppid, pgid;
    if (sscanf(stat.c_str() + close_paren + 1, " %c %d %d", &state, &ppid, &pgid) != 3) continue;
    out[static_cast<pid_t>(atoi(e->d_name))] = {ppid, pgid};
  }
  closedir(d);
  return out;
}

// Whether `pid` has exited; reaps it if it is our child (orphaned ranks are reparented to
// us, the subreaper).
bool pid_gone(pid_t pid) {
  int st;
  pid_t r = waitpid(pid, &st, WNOHANG);
  if (r == pid) return true;
  if (r == 0) return false;
  return kill(pid, 0) != 0 && errno == ESRCH;
}

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  if (realpath(p.c_str(), buf) == nullptr) return p;
  return buf;
}

std::string exe_of(pid_t pid) {
  char buf[PATH_MAX];
  std::string link = "/proc/" + std::to_string(pid) + "/exe";
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  if (n < 0) return {};
  return std::string(buf, n);
}

// OMPI_COMM_WORLD_RANK from a process's environment, or -1.
int mpi_rank_of(pid_t pid) {
  std::string env = slurp("/proc/" + std::to_string(pid) + "/environ");
  size_t pos = 0;
  while (pos < env.size()) {
    size_t end = env.find('\0', pos);
    if (end == std::string::npos) end = env.size();
    std::string_view kv(env.data() + pos, end - pos);
    constexpr std::string_view kKey = "OMPI_COMM_WORLD_RANK=";
    if (kv.starts_with(kKey)) return atoi(std::string(kv.substr(kKey.size())).c_str());
    pos = end + 1;
  }
  return -1;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// "1234 (dsdfs-launch) state S (sleeping), wchan do_epoll_wait, 9 threads"
std::string describe_process(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::string status = slurp(dir + "/status");
  std::string state = "?", threads = "?";
  for (auto& line : e2e::split_lines(status)) {
    if (line.starts_with("State:")) state = trim(line.substr(6));
    if (line.starts_with("Threads:")) threads = trim(line.substr(8));
  }
  while (!state.empty() && state[0] == '\t') state.erase(0, 1);
  while (!threads.empty() && threads[0] == '\t') threads.erase(0, 1);
  return e2e::describe_pid(pid) + " state " + state + ", wchan " +
         trim(slurp(dir + "/wchan")) + ", " + threads + " threads";
}

const std::string& gdb_path() {
  static const std::string path = find_on_path("gdb");
  return path;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Cluster

Cluster::Cluster(ClusterOptions options)
    : options_(std::move(options)),
      tmp_("dsdfs-mpi"),
      rank_pids_(options_.ranks, -1),
      rank_registered_(options_.ranks, false),
      exits_(options_.ranks) {
  scratch_ = tmp_.sub("scratch");
  log_file_ = tmp_.sub("job.log");
  mkdir(scratch_.c_str(), 0755);
}

Cluster::~Cluster() {
  const bool was_running = started_ && !stopped_;
  auto r = stop();
  if (!r) {
    fprintf(stderr, "mpi: WARNING: stopping the job at teardown (the JobStop tests check this): %s\n",
            r.message());
  }
  for (int rank = 0; rank < size(); ++rank) {
    if (e2e::is_mounted(mnt(rank)))
      ADD_FAILURE() << "cannot detach " << mnt(rank) << " at teardown";
  }
  if (r && was_running && ::testing::Test::HasFailure()) {
    fprintf(stderr, "mpi: the test failed; job log (%s variant):\n%s", ucx_tls_variant().c_str(),
            log().c_str());
  }
}

std::string Cluster::mnt(int r) const { return tmp_.sub("mnt" + std::to_string(r)); }
std::string Cluster::store(int r) const { return tmp_.sub("store" + std::to_string(r)); }
std::string Cluster::path(int r, std::string_view rel) const {
  return mnt(r) + "/" + std::string(rel);
}
std::string Cluster::store_path(int r, std::string_view rel) const {
  return store(r) + "/files/" + std::string(rel);
}
pid_t Cluster::rank_pid(int r) const { return rank_pids_.at(r); }

size_t Cluster::log_size() const {
  struct stat st;
  return ::stat(log_file_.c_str(), &st) == 0 ? st.st_size : 0;
}

std::string Cluster::log(size_t offset) const {
  std::string all = slurp(log_file_);
  if (offset > all.size()) offset = 0;
  std::string part = all.substr(offset);
  constexpr size_t kMax = 32 * 1024;
  if (part.size() > kMax) part = "...(earlier lines cut)...\n" + part.substr(part.size() - kMax);
  if (part.empty()) part = "(empty)\n";
  return part;
}

CommandResult Cluster::sh(const std::string& script, std::chrono::milliseconds timeout) const {
  return e2e::run_command({"/bin/sh", "-c", script}, scratch_, timeout);
}

::testing::AssertionResult Cluster::start() {
  if (tmp_.path().empty()) return ::testing::AssertionFailure() << "no temporary directory";
  for (int r = 0; r < size(); ++r) {
    if (mkdir(mnt(r).c_str(), 0755) != 0 && errno != EEXIST)
      return ::testing::AssertionFailure() << "mkdir(" << mnt(r) << "): " << errno_text(errno);
  }
  // verbs: the RDMA variant, run by scripts/test.sh only where libibverbs lists
  // a device (soft-RoCE on loopback); DSDFS_TEST_RDMA_DEVICE names it (rxe0:1).
  const char* rdma_dev = getenv("DSDFS_TEST_RDMA_DEVICE");
  std::string tls = ucx_tls_variant() == "tcp" ? "export UCX_TLS=tcp"
                    : ucx_tls_variant() == "verbs"
                        ? std::string("export UCX_TLS=rc_verbs,ud_verbs,self UCX_NET_DEVICES=") +
                              (rdma_dev ? rdma_dev : "all")
                        : "unset UCX_TLS";
  // exec keeps the pid: the child we spawned *is* mpirun.
  std::string script = ". \"$DSDFS_LOOPBACK_ENV\" && " + tls + " && exec \"$@\"";
  std::vector<std::string> argv = {"/bin/sh",
                                   "-c",
                                   script,
                                   "sh",
                                   mpirun_path(),
                                   "-np",
                                   std::to_string(size()),
                                   "--enable-recovery",
                                   e2e::launch_path(),
                                   tmp_.sub("mnt%r"),
                                   "--store",
                                   tmp_.sub("store%r"),
                                   "--ready-file",
                                   tmp_.sub("ready%r"),
                                   "--timeout",
                                   std::to_string(options_.rpc_timeout_s),
                                   "--log-level",
                                   "info"};
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::string cmdline;
  for (size_t i = 4; i < argv.size(); ++i) cmdline += argv[i] + " ";
  auto spawned = mpirun_.spawn(argv, log_file_, log_file_);
  if (!spawned) return spawned;
  started_ = true;

  auto ready = [&](int r) { return access(tmp_.sub("ready" + std::to_string(r)).c_str(), F_OK) == 0; };
  bool exited = false;
  bool all_ready = wait_until(
      [&] {
        bool all = true;
        for (int r = 0; r < size() && all; ++r) all = ready(r);
        if (all) return true;
        exited = !mpirun_.running();
        return exited;
      },
      options_.ready_timeout);
  if (!all_ready || exited) {
    std::string why;
    if (exited) {
      why = "mpirun " + e2e::describe_status(mpirun_.wait_status()) +
            " before every rank wrote its ready file";
    } else {
      why = "not every rank wrote its ready file within " +
            std::to_string(options_.ready_timeout.count()) + " ms; missing:";
      for (int r = 0; r < size(); ++r)
        if (!ready(r)) why += " rank " + std::to_string(r);
    }
    find_rank_pids();  // best effort, so that stop() can kill them by pid
    std::string stuck = exited ? "" : describe_stuck_processes();
    auto s = stop();
    return ::testing::AssertionFailure()
           << why << (s ? "" : std::string("\n  stopping: ") + s.message())
           << "\n  command: UCX_TLS variant " << ucx_tls_variant() << ": " << cmdline
           << (stuck.empty() ? "" : "\n  processes of the job:\n" + stuck) << "\n  job log:\n"
           << log();
  }
  if (auto pids = find_rank_pids(); !pids) {
    auto s = stop();
    return pids << "\n  job log:\n" << log();
  }
  for (int r = 0; r < size(); ++r) {
    auto mounts = e2e::mounts_at(mnt(r));
    if (mounts.empty() || mounts.back().fstype != "fuse.dsdfs") {
      auto s = stop();
      return ::testing::AssertionFailure()
             << "rank " << r << " is ready but " << mnt(r) << " is "
             << (mounts.empty() ? "not mounted" : "of type " + mounts.back().fstype)
             << "\n  job log:\n"
             << log();
    }
  }
  return ::testing::AssertionSuccess();
}

std::string Cluster::describe_stuck_processes() {
  std::set<pid_t> family;
  if (mpirun_.started() && mpirun_.running()) family.insert(mpirun_.pid());
  auto table = process_table();
  for (bool grew = !family.empty(); grew;) {
    grew = false;
    for (auto& [pid, info] : table) {
      if (family.count(info.ppid) && !family.count(pid)) {
        family.insert(pid);
        grew = true;
      }
    }
  }
  for (pid_t pid : rank_pids_)
    if (pid > 0 && !pid_gone(pid)) family.insert(pid);
  if (family.empty()) return "  (no process of the job is left)\n";
  std::string out;
  for (pid_t pid : family) {
    out += "  " + describe_process(pid);
    int r = mpi_rank_of(pid);
    if (r >= 0) out += ", rank " + std::to_string(r);
    out += "\n";
  }
  if (gdb_path().empty()) return out + "  (no gdb: no stacks)\n";
  const std::string launch = real_path(e2e::launch_path());
  for (pid_t pid : family) {
    // zombies have no stack; mpirun and orted are worth one (they may be what hangs)
    if (describe_process(pid).find("state Z") != std::string::npos) continue;
    if (exe_of(pid) != launch && pid != mpirun_.pid()) continue;
    CommandResult bt = e2e::run_command(
        {gdb_path(), "-batch", "-nx", "-p", std::to_string(pid), "-ex", "thread apply all bt 12"},
        scratch_, 30s);
    out += "  stacks of " + e2e::describe_pid(pid) +
           (pid == mpirun_.pid() ? std::string(" (mpirun)")
                                 : " (rank " + std::to_string(mpi_rank_of(pid)) + ")") +
           ":\n";
    int lines = 0;
    for (auto& line : e2e::split_lines(bt.out)) {
      if (!(line.starts_with("Thread ") || line.starts_with("#"))) continue;
      if (++lines > 150) {
        out += "    ...\n";
        break;
      }
      out += "    " + line.substr(0, 200) + "\n";
    }
    if (lines == 0) out += "    (gdb printed no stack: " + trim(bt.err).substr(0, 300) + ")\n";
  }
  return out;
}

::testing::AssertionResult Cluster::find_rank_pids() {
  const std::string launch = real_path(e2e::launch_path());
  const pid_t root = mpirun_.pid();
  auto table = process_table();
  std::set<pid_t> family = {root};
  for (bool grew = true; grew;) {
    grew = false;
    for (auto& [pid, info] : table) {
      if (family.count(info.ppid) && !family.count(pid)) {
        family.insert(pid);
        grew = true;
      }
    }
  }
  std::string problems;
  for (pid_t pid : family) {
    if (pid == root || exe_of(pid) != launch) continue;
    int r = mpi_rank_of(pid);
    if (r < 0 || r >= size()) {
      problems += "process " + e2e::describe_pid(pid) + " runs dsdfs-launch with rank " +
                  std::to_string(r) + "; ";
      continue;
    }
    rank_pids_[r] = pid;
    if (!rank_registered_[r]) {
      // ORTE gives every rank a process group of its own; the watchdog kills that group
      // and detaches the rank's mount if a test hangs.
      pid_t pgid = table[pid].pgid;
      if (pgid == pid) {
        e2e::watchdog_register(pid, mnt(r));
        rank_registered_[r] = true;
      }
    }
  }
  for (int r = 0; r < size(); ++r)
    if (rank_pids_[r] <= 0) problems += "no process found for rank " + std::to_string(r) + "; ";
  if (problems.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << problems.substr(0, problems.size() - 2);
}

void Cluster::unregister_ranks() {
  for (int r = 0; r < size(); ++r) {
    if (rank_registered_[r]) e2e::watchdog_unregister(rank_pids_[r]);
    rank_registered_[r] = false;
  }
}

::testing::AssertionResult Cluster::stop(StopHow how) {
  if (!started_ || stopped_) return ::testing::AssertionSuccess();
  stopped_ = true;
  std::string problems;
  if (!mpirun_.running()) {
    if (how != StopHow::kEndedByItself) {
      problems += "mpirun had already " + e2e::describe_status(mpirun_.wait_status()) +
                  " before it was asked to stop; ";
    }
  } else if (how == StopHow::kEndedByItself) {
    problems += "mpirun still runs, although the job should have ended by itself; ";
    mpirun_.kill_group();
  } else {
    mpirun_.snapshot_descendants();
    const auto t0 = std::chrono::steady_clock::now();
    if (how == StopHow::kSigtermToMpirun) {
      mpirun_.signal(SIGTERM);
    } else {
      for (int r = 0; r < size(); ++r)
        if (rank_pids_[r] > 0) kill(rank_pids_[r], SIGTERM);
    }
    const std::string sent =
        how == StopHow::kSigtermToMpirun ? "SIGTERM to mpirun" : "SIGTERM to every rank";
    // Watch the ranks go (mpirun reaps them quickly, so poll often).
    bool exited = false;
    while (std::chrono::steady_clock::now() - t0 < options_.stop_timeout) {
      poll_rank_exits(t0);
      if (!mpirun_.running()) {
        exited = true;
        break;
      }
      struct timespec ts = {0, 2 * 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
    poll_rank_exits(t0);
    if (!exited) {
      problems += "mpirun did not exit within " + std::to_string(options_.stop_timeout.count()) +
                  " ms of " + sent + "; SIGKILLed its process group. Processes of the job then:\n" +
                  describe_stuck_processes() + "; ";
      for (int r = 0; r < size(); ++r)
        if (rank_pids_[r] > 0 && !pid_gone(rank_pids_[r])) kill(-rank_pids_[r], SIGKILL);
      mpirun_.kill_group();
    }
    // mpirun exits 1 after SIGTERM even when every rank stopped cleanly (Open MPI 4.1 reports
    // the job as aborted), so its exit status says nothing about the ranks.
  }
  // Ranks that outlived mpirun (reparented to us): give them a moment, then kill them.
  std::vector<int> left;
  wait_until(
      [&] {
        left.clear();
        for (int r = 0; r < size(); ++r)
          if (rank_pids_[r] > 0 && !pid_gone(rank_pids_[r])) left.push_back(r);
        return left.empty();
      },
      5s);
  if (!left.empty()) problems += "ranks outlived mpirun:\n" + describe_stuck_processes() + "; ";
  for (int r : left) {
    problems += "rank " + std::to_string(r) + " (" + e2e::describe_pid(rank_pids_[r]) +
                ") outlived mpirun by 5 s; SIGKILLed; ";
    kill(-rank_pids_[r], SIGKILL);
    kill(rank_pids_[r], SIGKILL);
  }
  for (int r : left) wait_until([&] { return pid_gone(rank_pids_[r]); }, 10s);
  if (std::string rest = mpirun_.reap_descendants(5s); !rest.empty())
    problems += "processes started by mpirun outlived it (SIGKILLed): " + rest + "; ";
  unregister_ranks();
  for (int r = 0; r < size(); ++r) {
    if (!e2e::is_mounted(mnt(r))) continue;
    bool killed = rank_pids_[r] == 0;  // kill_rank() marks killed ranks with pid 0
    if (!killed)
      problems += "a mount was left at " + mnt(r) + " after the job stopped; ";
    if (!e2e::force_unmount(mnt(r))) problems += "cannot detach " + mnt(r) + "; ";
  }
  if (problems.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << problems.substr(0, problems.size() - 2)
                                       << "\n  ranks: "
                                       << (how == StopHow::kEndedByItself ? "(not watched)" : describe_rank_exits())
                                       << "\n  job log:\n"
                                       << log();
}

std::string RankExit::describe() const {
  if (!seen) return "not seen ending";
  return (status_known ? e2e::describe_status(wait_status) : std::string("gone")) + " " +
         std::to_string(after.count()) + " ms after SIGTERM";
}

void Cluster::poll_rank_exits(std::chrono::steady_clock::time_point since) {
  for (int r = 0; r < size(); ++r) {
    if (rank_pids_[r] <= 0 || exits_[r].seen) continue;
    std::string stat = slurp("/proc/" + std::to_string(rank_pids_[r]) + "/stat");
    auto after = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - since);
    if (stat.empty()) {  // reaped by mpirun before we saw the zombie
      exits_[r].seen = true;
      exits_[r].after = after;
      continue;
    }
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(close_paren + 1));
    std::vector<std::string> f;
    for (std::string tok; fields >> tok;) f.push_back(tok);
    if (f.empty() || f[0] != "Z") continue;
    exits_[r].seen = true;
    exits_[r].after = after;
    // field 52 of /proc/PID/stat (index 49 after the command name): the wait status
    if (f.size() > 49) {
      exits_[r].status_known = true;
      exits_[r].wait_status = atoi(f[49].c_str());
    }
  }
}

std::string Cluster::describe_rank_exits() const {
  std::string out;
  for (int r = 0; r < size(); ++r)
    out += "rank " + std::to_string(r) + ": " + exits_[r].describe() + "; ";
  return out.empty() ? out : out.substr(0, out.size() - 2);
}

::testing::AssertionResult Cluster::kill_rank(int r) {
  pid_t pid = rank_pids_.at(r);
  if (pid <= 0) return ::testing::AssertionFailure() << "rank " << r << " has no known pid";
  if (exe_of(pid) != real_path(e2e::launch_path()) || mpi_rank_of(pid) != r)
    return ::testing::AssertionFailure()
           << "pid " << pid << " is no longer rank " << r << " (" << e2e::describe_pid(pid) << ")";
  if (rank_registered_[r]) e2e::watchdog_unregister(pid);
  rank_registered_[r] = false;
  if (kill(pid, SIGKILL) != 0)
    return ::testing::AssertionFailure() << "kill(" << pid << ", SIGKILL): " << errno_text(errno);
  // A FUSE daemon killed with SIGKILL dies at once: the kernel aborts its connection when
  // the last /dev/fuse descriptor closes. mpirun (our child's child) reaps it.
  bool gone = wait_until([&] { return pid_gone(pid); }, 10s);
  rank_pids_[r] = 0;
  if (!gone)
    return ::testing::AssertionFailure() << "rank " << r << " (pid " << pid
                                         << ") still exists 10 s after SIGKILL";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Cluster::rejoin_rank(int r, e2e::ChildProcess* daemon, std::chrono::milliseconds timeout) {
  const std::string tls = ucx_tls_variant() == "tcp" ? "export UCX_TLS=tcp" : "unset UCX_TLS";
  std::string script = ". \"$DSDFS_LOOPBACK_ENV\" && " + tls + " && exec \"$@\"";
  std::vector<std::string> argv = {"/bin/sh", "-c", script, "sh", e2e::launch_path(), "--rejoin", mnt(r),
                                   "--timeout", std::to_string(options_.rpc_timeout_s), "--log-level", "info"};
  auto spawned = daemon->spawn(argv, log_file_, log_file_, std::nullopt, mnt(r));
  if (!spawned) return spawned;
  // Its mount answers once it has caught up (the root's user.dsdfs.ready is set before the loop runs).
  const bool up = wait_until([&] {
    if (!daemon->running()) return true;
    char buf[16];
    return e2e::is_mounted(mnt(r)) && getxattr(mnt(r).c_str(), "user.dsdfs.ready", buf, sizeof buf) >= 0;
  }, timeout);
  if (!daemon->running()) {
    return ::testing::AssertionFailure() << "dsdfs-launch --rejoin of rank " << r << " "
                                         << e2e::describe_status(daemon->wait_status()) << "; job log:\n" << log();
  }
  if (!up) return ::testing::AssertionFailure() << "rank " << r << " did not rejoin within " << timeout.count() << " ms";
  return ::testing::AssertionSuccess();
}

bool Cluster::detach_mount(int r) {
  if (!e2e::is_mounted(mnt(r))) return true;
  umount2(mnt(r).c_str(), MNT_DETACH);
  return !e2e::is_mounted(mnt(r));
}

// ---------------------------------------------------------------------------------------
// probes

std::optional<int> owner_of(const std::string& path, int* err) {
  char buf[512];
  ssize_t n = getxattr(path.c_str(), "user.dsdfs.owner", buf, sizeof buf - 1);
  if (n < 0) {
    if (err) *err = errno;
    return std::nullopt;
  }
  buf[n] = '\0';
  char* end = nullptr;
  long r = strtol(buf, &end, 10);
  if (end == buf || *end != ' ') {
    if (err) *err = EPROTO;
    return std::nullopt;
  }
  if (err) *err = 0;
  return static_cast<int>(r);
}

std::map<std::string, uint64_t> stats_of(const std::string& mount_point, int* err) {
  std::map<std::string, uint64_t> out;
  std::vector<char> buf(16384);
  ssize_t n = getxattr(mount_point.c_str(), "user.dsdfs.stats", buf.data(), buf.size());
  if (n < 0) {
    if (err) *err = errno;
    return out;
  }
  if (err) *err = 0;
  std::istringstream in(std::string(buf.data(), n));
  std::string name;
  uint64_t value;
  while (in >> name >> value) out[name] = value;
  return out;
}

std::string stats_diff(const std::map<std::string, uint64_t>& before,
                       const std::map<std::string, uint64_t>& after) {
  std::string out;
  for (auto& [name, v] : after) {
    auto it = before.find(name);
    uint64_t b = it == before.end() ? 0 : it->second;
    if (b != v) out += name + ": " + std::to_string(b) + " -> " + std::to_string(v) + "; ";
  }
  return out.empty() ? "(no counter changed)" : out;
}

std::string shq(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string BoundedOutcome::describe() const {
  if (!finished) return "still blocked after " + std::to_string(elapsed.count()) + " ms";
  return (err == 0 ? std::string("succeeded") : "failed with " + errno_text(err)) + " after " +
         std::to_string(elapsed.count()) + " ms";
}

BoundedOutcome run_bounded(const std::function<int()>& op, std::chrono::milliseconds limit) {
  BoundedOutcome out;
  auto t0 = std::chrono::steady_clock::now();
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    out.finished = true;
    out.err = errno;
    return out;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    int err = op();
    ssize_t ignored = write(pipefd[1], &err, sizeof err);
    (void)ignored;
    _exit(0);
  }
  close(pipefd[1]);
  if (pid < 0) {
    out.finished = true;
    out.err = errno;
    close(pipefd[0]);
    return out;
  }
  struct pollfd p = {pipefd[0], POLLIN, 0};
  int remaining = static_cast<int>(limit.count());
  int rc;
  do {
    rc = poll(&p, 1, remaining);
  } while (rc < 0 && errno == EINTR);
  int err = 0;
  if (rc == 1 && read(pipefd[0], &err, sizeof err) == sizeof err) {
    out.finished = true;
    out.err = err;
  }
  out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - t0);
  close(pipefd[0]);
  if (!out.finished) kill(pid, SIGKILL);
  // A child blocked on a FUSE request dies on SIGKILL (fuse waits killably).
  wait_until([&] { return pid_gone(pid); }, 10s);
  return out;
}

}  // namespace dsdfs::mpitest
