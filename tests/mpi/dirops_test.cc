// SPDX-License-Identifier: Apache-2.0
// Directory mutations on a real multi-rank job (issue 8): visible on every rank when the call
// returns, also where the other ranks' kernels had the names and entries below them cached;
// directory renames from every rank in one parent at once; and a rank stopped while requests
// on its own mount are blocked in flight still unmounts and exits.
//
// No test asserts a speed: directory mutation rates are bench/dirops.py's. The concurrent test
// prints how long it took; before issue 8 each of its renames waited for one or two 200 ms
// timeouts of a kernel notification that could not complete.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <set>
#include <thread>

#include "tests/e2e/e2e_env.h"
#include "tests/mpi/cluster_fixture.h"

namespace dsdfs::mpitest {
namespace {

using e2e::errno_text;
using e2e::file_has;
using e2e::write_file;

// ---------------------------------------------------------------------------------------
// helpers

int stat_errno(const std::string& path, struct stat* st = nullptr) {
  struct stat tmp;
  return ::lstat(path.c_str(), st ? st : &tmp) == 0 ? 0 : errno;
}

// `path` is a directory as seen now (after a stat of it: what the kernel answers).
::testing::AssertionResult is_directory(const std::string& path) {
  struct stat st;
  int err = stat_errno(path, &st);
  if (err) return ::testing::AssertionFailure() << "lstat(" << path << "): " << errno_text(err);
  if (!S_ISDIR(st.st_mode)) return ::testing::AssertionFailure() << path << " is not a directory";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult is_absent(const std::string& path) {
  int err = stat_errno(path);
  if (err == ENOENT) return ::testing::AssertionSuccess();
  if (err == 0) return ::testing::AssertionFailure() << path << " still exists";
  return ::testing::AssertionFailure() << "lstat(" << path << "): " << errno_text(err)
                                       << " instead of ENOENT";
}

std::set<std::string> listing(const std::string& dir, int* err) {
  std::set<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    *err = errno;
    return out;
  }
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.insert(n);
  }
  *err = errno;
  ::closedir(d);
  return out;
}


// One system call in a child process, started now and looked at later (run_bounded waits at
// once). The child makes only system calls on data prepared before the fork.
class AsyncOp {
 public:
  AsyncOp(const char* what, const std::function<int()>& op) : what_(what) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      done_ = true;
      err_ = errno;
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(p[0]);
      int err = op();
      ssize_t ignored = ::write(p[1], &err, sizeof err);
      (void)ignored;
      ::_exit(0);
    }
    ::close(p[1]);
    fd_ = p[0];
    if (pid_ < 0) {
      done_ = true;
      err_ = errno;
    }
  }
  AsyncOp(const AsyncOp&) = delete;
  AsyncOp& operator=(const AsyncOp&) = delete;
  ~AsyncOp() { kill_and_reap(); }

  // True once the call returned (within `wait`); its errno in err().
  bool finished(std::chrono::milliseconds wait = 0ms) {
    if (done_) return true;
    struct pollfd p = {fd_, POLLIN, 0};
    int rc;
    do {
      rc = ::poll(&p, 1, static_cast<int>(wait.count()));
    } while (rc < 0 && errno == EINTR);
    if (rc == 1 && ::read(fd_, &err_, sizeof err_) == sizeof err_) {
      done_ = true;
      reap();
    }
    return done_;
  }
  int err() const { return err_; }
  pid_t pid() const { return pid_; }
  std::string describe() {
    if (finished()) return std::string(what_) + ": " + (err_ ? errno_text(err_) : "succeeded");
    return std::string(what_) + ": still blocked (" + e2e::describe_pid(pid_) + ", state " +
           e2e::slurp("/proc/" + std::to_string(pid_) + "/wchan") + ")";
  }
  void kill_and_reap() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      reap();
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  void reap() {
    if (pid_ <= 0 || reaped_) return;
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  const char* what_;
  pid_t pid_ = -1;
  int fd_ = -1;
  int err_ = 0;
  bool done_ = false;
  bool reaped_ = false;
};

// State letter of /proc/PID/stat ('Z' zombie, 'D' uninterruptible, ...), or 0 when gone.
char proc_state(pid_t pid) {
  std::string stat = e2e::slurp("/proc/" + std::to_string(pid) + "/stat");
  size_t p = stat.rfind(')');
  if (p == std::string::npos || p + 2 >= stat.size()) return 0;
  return stat[p + 2];
}

// Whether every thread of `pid` has stopped (state 'T' after SIGSTOP); waits up to `wait`.
// kill() only starts a group stop: a thread that is running keeps running until it next
// enters the kernel, so a request sent at once could still be answered.
bool all_threads_stopped(pid_t pid, std::chrono::milliseconds wait) {
  const auto until = std::chrono::steady_clock::now() + wait;
  for (;;) {
    bool all = true;
    const std::string task = "/proc/" + std::to_string(pid) + "/task";
    DIR* d = ::opendir(task.c_str());
    if (!d) return false;
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string stat = e2e::slurp(task + "/" + e->d_name + "/stat");
      size_t p = stat.rfind(')');
      if (p == std::string::npos || p + 2 >= stat.size() || (stat[p + 2] != 'T' && stat[p + 2] != 't')) all = false;
    }
    ::closedir(d);
    if (all) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// SIGSTOP of a rank until the end of the scope (SIGCONT then, also on a failed assertion).
class Frozen {
 public:
  explicit Frozen(pid_t pid) : pid_(pid) { stopped_ = ::kill(pid, SIGSTOP) == 0 && all_threads_stopped(pid, 2000ms); }
  ~Frozen() { ::kill(pid_, SIGCONT); }
  Frozen(const Frozen&) = delete;
  Frozen& operator=(const Frozen&) = delete;
  bool stopped() const { return stopped_; }

 private:
  pid_t pid_;
  bool stopped_ = false;
};

bool rank_ended(pid_t pid) {
  char s = proc_state(pid);
  return s == 0 || s == 'Z';
}

// Threads of `pid` in uninterruptible sleep, with their kernel wait channel.
std::string threads_in_d_state(pid_t pid) {
  std::string out;
  std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(task.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    pid_t tid = std::atoi(e->d_name);
    if (proc_state(tid) == 'D')
      out += std::to_string(tid) + " in " + e2e::slurp(task + "/" + e->d_name + "/wchan") + "; ";
  }
  ::closedir(d);
  return out;
}

// ---------------------------------------------------------------------------------------
// visibility

// For every way round (the change made on rank 1, on the coordinator rank 0, on rank 2): the
// other two ranks first look at the directory and at entries below it, so that their kernels
// have them cached, then the change is made; right after the call returns they must see it.
TEST(DirVisibility, RenameChmodRmdirOfCachedDirectoriesAreSeenEverywhereWhenTheCallReturns) {
  Cluster c(with_ranks(3));
  ASSERT_TRUE(c.start());
  const bool root = ::geteuid() == 0;
  for (int origin : {1, 0, 2}) {
    SCOPED_TRACE("changes made on rank " + std::to_string(origin));
    const std::string tag = std::to_string(origin);
    const std::string a = "a" + tag, b = "b" + tag;
    const int owner = (origin + 1) % 3;  // x belongs to another rank than the one renaming
    std::vector<int> others;
    for (int r = 0; r < 3; ++r)
      if (r != origin) others.push_back(r);

    ASSERT_SYS_OK(::mkdir(c.path(origin, a).c_str(), 0755));
    ASSERT_SYS_OK(::mkdir(c.path(origin, a + "/sub").c_str(), 0755));
    ASSERT_TRUE(write_file(c.path(owner, a + "/x"), "x\n"));
    for (int r : others) {
      ASSERT_TRUE(is_directory(c.path(r, a))) << "rank " << r;
      ASSERT_TRUE(is_directory(c.path(r, a + "/sub"))) << "rank " << r;
      ASSERT_TRUE(file_has(c.path(r, a + "/x"), "x\n")) << "rank " << r;
    }

    // rename: the old name and everything below it are gone, the new name has it all
    ASSERT_SYS_OK(::rename(c.path(origin, a).c_str(), c.path(origin, b).c_str()));
    for (int r : others) {
      EXPECT_TRUE(is_absent(c.path(r, a))) << "rank " << r << " after rename " << a << " -> " << b;
      EXPECT_TRUE(is_absent(c.path(r, a + "/x"))) << "rank " << r;
      EXPECT_TRUE(is_absent(c.path(r, a + "/sub"))) << "rank " << r;
      EXPECT_TRUE(is_directory(c.path(r, b))) << "rank " << r;
      EXPECT_TRUE(is_directory(c.path(r, b + "/sub"))) << "rank " << r;
      EXPECT_TRUE(file_has(c.path(r, b + "/x"), "x\n")) << "rank " << r;
    }

    // chmod, utimens and chown of the directory: the other ranks had its attributes cached
    ASSERT_SYS_OK(::chmod(c.path(origin, b).c_str(), 0700));
    for (int r : others) {
      struct stat st;
      ASSERT_EQ(stat_errno(c.path(r, b), &st), 0) << "rank " << r;
      EXPECT_EQ(st.st_mode & 07777, 0700u) << "mode of " << b << " on rank " << r << " after chmod";
    }
    struct timespec times[2] = {{0, UTIME_OMIT}, {1234567890, 0}};
    ASSERT_SYS_OK(::utimensat(AT_FDCWD, c.path(origin, b).c_str(), times, 0));
    for (int r : others) {
      struct stat st;
      ASSERT_EQ(stat_errno(c.path(r, b), &st), 0) << "rank " << r;
      EXPECT_EQ(st.st_mtim.tv_sec, 1234567890) << "mtime of " << b << " on rank " << r << " after utimens";
    }
    if (root) {
      ASSERT_SYS_OK(::chown(c.path(origin, b).c_str(), 4321, 4322));
      for (int r : others) {
        struct stat st;
        ASSERT_EQ(stat_errno(c.path(r, b), &st), 0) << "rank " << r;
        EXPECT_EQ(st.st_uid, 4321u) << "owner of " << b << " on rank " << r << " after chown";
        EXPECT_EQ(st.st_gid, 4322u) << "group of " << b << " on rank " << r << " after chown";
      }
    }
    ASSERT_SYS_OK(::chmod(c.path(origin, b).c_str(), 0755));

    // rmdir of a subdirectory and then of the directory, both cached elsewhere
    ASSERT_SYS_OK(::unlink(c.path(origin, b + "/x").c_str()));
    for (int r : others) ASSERT_TRUE(is_directory(c.path(r, b + "/sub"))) << "rank " << r;
    ASSERT_SYS_OK(::rmdir(c.path(origin, b + "/sub").c_str()));
    for (int r : others) {
      EXPECT_TRUE(is_absent(c.path(r, b + "/sub"))) << "rank " << r << " after rmdir " << b << "/sub";
      ASSERT_TRUE(is_directory(c.path(r, b))) << "rank " << r;
    }
    ASSERT_SYS_OK(::rmdir(c.path(origin, b).c_str()));
    for (int r : others) EXPECT_TRUE(is_absent(c.path(r, b))) << "rank " << r << " after rmdir " << b;
    // the name is free everywhere at once: a file of that name can be made on another rank
    EXPECT_TRUE(write_file(c.path(others[0], b), "now a file\n"));
    for (int r = 0; r < 3; ++r) EXPECT_TRUE(file_has(c.path(r, b), "now a file\n")) << "rank " << r;
    EXPECT_SYS_OK(::unlink(c.path(origin, b).c_str()));
  }
  for (int r = 0; r < 3; ++r) {
    int err = 0;
    auto names = listing(c.mnt(r), &err);
    EXPECT_EQ(err, 0);
    EXPECT_TRUE(names.empty()) << "rank " << r << " still lists " << names.size() << " names";
  }
  EXPECT_TRUE(c.stop());
}

// Two processes per rank rename directories in one shared parent at the same time, each its
// own names (a metadata benchmark's directory-rename phase): every rename succeeds, and every
// rank sees exactly the final names. Each rename is ordered by the coordinator behind the
// others' and applied on every rank; the ranks with a rename of their own in flight in that
// parent hold its lock, which is what a waited-for FUSE_NOTIFY_INVAL_ENTRY ran into.
TEST(DirVisibility, ConcurrentDirectoryRenamesInOneParentFromEveryRankAllLand) {
  constexpr int kPerThread = 20;
  constexpr int kThreadsPerRank = 2;
  Cluster c(with_ranks(3));
  ASSERT_TRUE(c.start());
  ASSERT_SYS_OK(::mkdir(c.path(0, "p").c_str(), 0755));
  struct Worker {
    int rank;
    std::string prefix;
  };
  std::vector<Worker> workers;
  for (int r = 0; r < 3; ++r)
    for (int t = 0; t < kThreadsPerRank; ++t)
      workers.push_back({r, "r" + std::to_string(r) + "t" + std::to_string(t) + "-"});
  for (const Worker& w : workers)
    for (int i = 0; i < kPerThread; ++i)
      ASSERT_SYS_OK(::mkdir(c.path(w.rank, "p/" + w.prefix + "d" + std::to_string(i)).c_str(), 0755));

  // two passes: d -> m, then m -> n (each pass from every rank at once)
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<int> failures{0};
  std::mutex mu;
  std::string first_failure;
  for (auto [from, to] : {std::pair<std::string, std::string>{"d", "m"}, {"m", "n"}}) {
    SpinBarrier barrier(static_cast<int>(workers.size()));
    std::vector<std::thread> threads;
    for (const Worker& w : workers) {
      threads.emplace_back([&, w, from = from, to = to] {
        std::vector<std::pair<std::string, std::string>> names;
        for (int i = 0; i < kPerThread; ++i)
          names.emplace_back(c.path(w.rank, "p/" + w.prefix + from + std::to_string(i)),
                             c.path(w.rank, "p/" + w.prefix + to + std::to_string(i)));
        barrier.arrive_and_wait();
        for (auto& [src, dst] : names) {
          if (::rename(src.c_str(), dst.c_str()) != 0) {
            int err = errno;
            failures.fetch_add(1);
            std::lock_guard lock(mu);
            if (first_failure.empty()) first_failure = "rename " + src + " -> " + dst + ": " + errno_text(err);
          }
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  fprintf(stderr, "mpi: %zu directory renames from %zu processes in one parent took %lld ms\n",
          workers.size() * kPerThread * 2, workers.size(), static_cast<long long>(ms.count()));
  EXPECT_EQ(failures.load(), 0) << first_failure;

  std::set<std::string> expected;
  for (const Worker& w : workers)
    for (int i = 0; i < kPerThread; ++i) expected.insert(w.prefix + "n" + std::to_string(i));
  for (int r = 0; r < 3; ++r) {
    int err = 0;
    EXPECT_EQ(listing(c.path(r, "p"), &err), expected) << "listing of p on rank " << r;
    EXPECT_EQ(err, 0);
    for (const Worker& w : workers) {
      // the first and the last of each process: old names gone, new names there
      for (int i : {0, kPerThread - 1}) {
        const std::string n = "p/" + w.prefix;
        EXPECT_TRUE(is_absent(c.path(r, n + "d" + std::to_string(i)))) << "rank " << r;
        EXPECT_TRUE(is_absent(c.path(r, n + "m" + std::to_string(i)))) << "rank " << r;
        EXPECT_TRUE(is_directory(c.path(r, n + "n" + std::to_string(i)))) << "rank " << r;
      }
    }
  }
  // and all of them removed again, from every rank at once
  {
    SpinBarrier barrier(static_cast<int>(workers.size()));
    std::vector<std::thread> threads;
    for (const Worker& w : workers) {
      threads.emplace_back([&, w] {
        barrier.arrive_and_wait();
        for (int i = 0; i < kPerThread; ++i) {
          std::string p = c.path(w.rank, "p/" + w.prefix + "n" + std::to_string(i));
          if (::rmdir(p.c_str()) != 0) {
            int err = errno;
            failures.fetch_add(1);
            std::lock_guard lock(mu);
            if (first_failure.empty()) first_failure = "rmdir " + p + ": " + errno_text(err);
          }
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  EXPECT_EQ(failures.load(), 0) << first_failure;
  for (int r = 0; r < 3; ++r) {
    int err = 0;
    EXPECT_TRUE(listing(c.path(r, "p"), &err).empty()) << "rank " << r;
  }
  EXPECT_TRUE(c.stop());
}

// ---------------------------------------------------------------------------------------
// stopping with requests in flight

// mkdir racing another rank's rename or rmdir of the new directory: each mkdir returns 0 or
// EEXIST, never ENOENT (the parent always exists). Before the fix, the rank that made the
// directory looked its name up after the coordinator answered, and when another rank had
// renamed or removed it in between, mkdir failed with ENOENT (the torture test saw about 3
// per minute; this test 2 and 5 in about 2,500 mkdirs in two runs, and none in 8,186 since).
TEST(DirVisibility, MkdirRacingARenameOrRmdirOfItsDirectoryNeverFailsWithENOENT) {
  constexpr auto kRun = std::chrono::seconds(6);
  Cluster c(with_ranks(3));
  ASSERT_TRUE(c.start());
  ASSERT_SYS_OK(::mkdir(c.path(0, "p").c_str(), 0755));
  std::atomic<bool> stop{false};
  std::atomic<int> made{0}, enoent{0};
  std::vector<std::thread> threads;
  // Not on rank 0, the coordinator: there its answer does not cross the network.
  for (int r : {1, 1}) {
    threads.emplace_back([&, r] {
      while (!stop.load()) {
        if (::mkdir(c.path(r, "p/d").c_str(), 0755) == 0) {
          made.fetch_add(1);
        } else if (errno == ENOENT) {
          enoent.fetch_add(1);
        }
      }
    });
  }
  for (int t = 0; t < 2; ++t) threads.emplace_back([&, t] {
    // Take the new directory away as soon as it is there: rename it, then remove it.
    for (int i = 0; !stop.load(); ++i) {
      const std::string away = "p/away" + std::to_string(t) + "-" + std::to_string(i % 4);
      if (::rename(c.path(2, "p/d").c_str(), c.path(2, away).c_str()) != 0) {
        (void)::rmdir(c.path(2, "p/d").c_str());
      }
      (void)::rmdir(c.path(2, away).c_str());
    }
  });
  std::this_thread::sleep_for(kRun);
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_GT(made.load(), 50) << "the race was not exercised";
  EXPECT_EQ(enoent.load(), 0) << "of " << made.load() << " successful mkdirs";
}

// Rank 1 is stopped (SIGTERM) while requests on its own mount are in flight and will never be
// answered by its FUSE loop, and while a directory change of another rank is being applied
// to it: it must still unmount and exit, and leave nothing blocked in the kernel.
//
// How the scene is set: rank 2 is frozen (SIGSTOP), so a lookup on rank 1 of a file rank 2
// owns keeps a FUSE worker of rank 1 busy until the RPC times out; meanwhile SIGTERM ends rank
// 1's loop (no worker reads any more), and an mkdir in directory P on rank 1's mount is sent
// by its kernel and stays queued, holding P's lock. Then rank 0 exchanges two directories in
// P; applying that on rank 1 notifies rank 1's kernel, with FUSE_NOTIFY_INVAL_ENTRY
// (--dir-notify entry: the method of kernels before 6.16, the one that takes the directory
// lock), and that notification waits for P's lock. Before issue 8, rank 1's shutdown closed
// /dev/fuse (which does not end the connection while a notification holds the file) and
// then joined the notifier: forever, with the mkdir and the notifier in the kernel.
TEST(JobStopInFlight, RankStoppedWithRequestsOfItsMountBlockedUnmountsAndExits) {
  ClusterOptions o = with_ranks(3);
  o.rpc_timeout_s = 4;
  o.extra_args = {"--dir-notify", "entry"};
  Cluster c(o);
  ASSERT_TRUE(c.start());
  const pid_t rank1 = c.rank_pid(1), rank2 = c.rank_pid(2);
  ASSERT_GT(rank1, 0);
  ASSERT_GT(rank2, 0);
  ASSERT_SYS_OK(::mkdir(c.path(0, "P").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(c.path(0, "P/d").c_str(), 0755));
  ASSERT_SYS_OK(::mkdir(c.path(0, "P/e").c_str(), 0755));
  ASSERT_TRUE(write_file(c.path(2, "f2"), "owned by rank 2\n"));
  // rank 1's kernel knows P and its entries, so that a notification about them locks P
  ASSERT_TRUE(is_directory(c.path(1, "P/d")));
  ASSERT_TRUE(is_directory(c.path(1, "P/e")));
  ASSERT_TRUE(file_has(c.path(1, "f2"), "owned by rank 2\n"));

  Frozen frozen_rank2(rank2);
  ASSERT_TRUE(frozen_rank2.stopped()) << "rank 2 did not stop";

  const std::string f2 = c.path(1, "f2"), px = c.path(1, "P/x");
  const std::string pd = c.path(0, "P/d"), pe = c.path(0, "P/e");
  AsyncOp busy("stat of a file of the frozen rank 2, on rank 1", [&] {
    struct stat st;
    return ::stat(f2.c_str(), &st) == 0 ? 0 : errno;
  });
  std::this_thread::sleep_for(300ms);
  ASSERT_FALSE(busy.finished()) << busy.describe();
  const auto t_term = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(rank1, SIGTERM), 0) << errno_text(errno);
  // the loop has ended its idle workers by now (the signal thread wakes it every 100 ms)
  std::this_thread::sleep_for(500ms);
  AsyncOp queued("mkdir P/x on rank 1", [&] { return ::mkdir(px.c_str(), 0755) == 0 ? 0 : errno; });
  std::this_thread::sleep_for(300ms);
  AsyncOp exchange("exchange of P/d and P/e on rank 0", [&] {
    return ::syscall(SYS_renameat2, AT_FDCWD, pd.c_str(), AT_FDCWD, pe.c_str(), RENAME_EXCHANGE) == 0 ? 0 : errno;
  });

  // The busy lookup's handler ends after at most two RPC timeouts (the lookup itself may fail
  // sooner: a loop that has not ended 500 ms after the signal aborts the connection). Then
  // rank 1 serves nothing any more and has to be gone within a stop's time (its transport's
  // shutdown waits up to 2 s for the frozen rank 2), whatever its kernel still holds.
  EXPECT_TRUE(busy.finished(std::chrono::seconds(2 * 4 + 4))) << busy.describe();
  const auto limit = 8s;
  const auto handler_end = t_term + std::chrono::seconds(2 * 4);
  bool ended = e2e::wait_until([&] { return rank_ended(rank1); },
                               std::chrono::duration_cast<std::chrono::milliseconds>(
                                   handler_end + limit - std::chrono::steady_clock::now()));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t_term);
  std::string stuck;
  if (!ended) {
    stuck = "rank 1 (" + e2e::describe_pid(rank1) + ") threads in D state: " + threads_in_d_state(rank1) +
            "\n" + c.describe_stuck_processes();
  }
  EXPECT_TRUE(ended) << "rank 1 did not exit within " << limit.count() << " s of its last request's handler ("
                     << took.count() << " ms after SIGTERM)\n"
                     << queued.describe() << "\n" << stuck;
  if (ended) fprintf(stderr, "mpi: rank 1 exited %lld ms after SIGTERM\n", static_cast<long long>(took.count()));
  EXPECT_TRUE(queued.finished(5s)) << queued.describe();
  EXPECT_FALSE(e2e::is_mounted(c.mnt(1))) << "rank 1 left its mount behind";

  // unfreeze rank 2; the rest of the job must still work and stop cleanly
  ::kill(rank2, SIGCONT);
  EXPECT_TRUE(exchange.finished(10s)) << exchange.describe();
  queued.kill_and_reap();
  EXPECT_TRUE(is_directory(c.path(0, "P")));
  EXPECT_TRUE(c.stop());
}

// The rank that records who owns `path`'s name (user.dsdfs.locator), or -1.
int locator_of(const std::string& path) {
  char buf[512];
  ssize_t n = ::getxattr(path.c_str(), "user.dsdfs.locator", buf, sizeof buf - 1);
  if (n <= 0) return -1;
  buf[n] = '\0';
  return std::atoi(buf);
}

// A name in the root whose locator is (want true) or is not (want false) `rank`: made on rank
// 0 to ask, and removed again unless `keep`.
std::string name_with_locator(Cluster& c, const char* prefix, int rank, bool want, bool keep) {
  for (int i = 0; i < 64; ++i) {
    const std::string name = prefix + std::to_string(i);
    if (!write_file(c.path(0, name), "x")) continue;
    const bool match = (locator_of(c.path(0, name)) == rank) == want;
    if (!match || !keep) ::unlink(c.path(0, name).c_str());
    if (match) return name;
  }
  return "";
}

// A write through a handle of another rank's file holds that file's kernel lock while its
// daemon forwards it to the owner. When `>` on the writer's own node has just moved the file
// there, the write follows it to this very daemon, whose handler reached the file through its
// own mount, by a path walk that takes the directory's lock where the kernel did not know the
// moved file yet. A link in that directory on that node holds the directory's lock while it
// looks up its new name and then waits for the file's lock, which the write holds: the write,
// the link and the handler waited for each other forever (a torture run's `pwrite ... blocked
// for 30 s`). Here the link's lookup is held up by a frozen rank (the new name's locator), so
// that the scene is set every time: the write must return while the link still waits, and
// before the fix it waited for the link (and then forever).
TEST(OwnerWrites, AWriteFollowingItsFileToItsOwnNodeNeverWaitsForTheDirectory) {
  ClusterOptions o = with_ranks(3);
  o.rpc_timeout_s = 4;
  Cluster c(o);
  ASSERT_TRUE(c.start());
  const std::string f = name_with_locator(c, "f", 2, false, true);
  const std::string g = name_with_locator(c, "g", 2, true, false);
  ASSERT_FALSE(f.empty()) << "no name whose locator is not rank 2";
  ASSERT_FALSE(g.empty()) << "no name whose locator is rank 2";
  ASSERT_EQ(owner_of(c.path(1, f)), 0);
  const pid_t rank2 = c.rank_pid(2);
  ASSERT_GT(rank2, 0);

  // rank 1: a handle of rank 0's file, for writing
  e2e::Fd writer = e2e::Fd::open(c.path(1, f), O_WRONLY);
  ASSERT_TRUE(writer.valid()) << writer.error_text();

  Frozen frozen_rank2(rank2);
  ASSERT_TRUE(frozen_rank2.stopped()) << "rank 2 did not stop";

  const std::string src = c.path(1, f), dst = c.path(1, g);
  AsyncOp link("link on rank 1 to a name of the frozen rank's locator", [&] {
    return ::link(src.c_str(), dst.c_str()) == 0 ? 0 : errno;
  });
  std::this_thread::sleep_for(300ms);
  ASSERT_FALSE(link.finished()) << link.describe();
  // `>` on rank 1 (no O_CREAT: the directory's lock is the link's): the file moves here
  {
    e2e::Fd mover = e2e::Fd::open(src, O_WRONLY | O_TRUNC);
    ASSERT_TRUE(mover.valid()) << mover.error_text();
    ASSERT_EQ(::write(mover.get(), "moved\n", 6), 6) << errno_text(errno);
    ASSERT_EQ(mover.close(), 0);
  }
  ASSERT_FALSE(link.finished()) << "the scene was not set: " << link.describe();
  const int wfd = writer.get();
  AsyncOp write("write through rank 1's handle of rank 0's file, which moved to rank 1", [&] {
    return ::pwrite(wfd, "after\n", 6, 6) == 6 ? 0 : errno;
  });
  EXPECT_TRUE(write.finished(10s)) << write.describe();
  // (The link waits for the frozen rank: up to two RPC timeouts from its start.)
  EXPECT_FALSE(link.finished()) << "the write waited for the link, which holds the directory's lock";
  EXPECT_EQ(write.err(), 0) << write.describe();
  ::kill(rank2, SIGCONT);
  EXPECT_TRUE(link.finished(20s)) << link.describe();
  EXPECT_TRUE(file_has(c.path(1, f), std::string("moved\nafter\n")));
  EXPECT_EQ(owner_of(c.path(1, f)), 1);
  writer.close();
  EXPECT_TRUE(c.stop());
}

}  // namespace
}  // namespace dsdfs::mpitest
