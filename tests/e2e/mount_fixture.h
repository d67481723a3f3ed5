// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helpers for end-to-end tests on a real dsdfs mount: a private temporary directory, a
// child process in its own process group with its output kept in files, a running
// dsdfs-launch instance (start, wait for its ready file, stop with escalation, make sure no
// mount is left), /proc/self/mountinfo queries, and small system-call helpers that keep
// errno for the failure message.
//
// Thread-safety: none of these objects is shared between threads, except that the running
// daemons are registered with the watchdog (e2e_env.h), which may kill them from its thread.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <initializer_list>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsdfs::e2e {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------
// errno helpers

// "ENOENT (No such file or directory)".
std::string errno_text(int err);

// Result of one system call with errno captured immediately after it.
struct SysResult {
  long rc;
  int err;
};
inline SysResult sys_result(long rc) { return {rc, rc < 0 ? errno : 0}; }

::testing::AssertionResult sys_ok(const char* expr, SysResult r);

// One checked call for the macros below: its source text, result, and the errno values a
// failure may have (empty: it must succeed). Formatted by sys_call_check for gtest, so that
// a failure reads "mkdir(...) failed: EMFILE (Too many open files)" and nothing else.
struct SysCall {
  const char* expr;
  SysResult result;
  std::vector<int> allowed;
};
::testing::AssertionResult sys_call_check(const char* /*macro text*/, const SysCall& call);

}  // namespace dsdfs::e2e

#define DSDFS_E2E_SYS_CALL_(call, ...)                                                    \
  (::dsdfs::e2e::SysCall{#call, ::dsdfs::e2e::sys_result(static_cast<long>(call)), \
                         std::vector<int>{__VA_ARGS__}})
// Assert/expect that a system call (returning -1 + errno on failure) succeeds.
#define ASSERT_SYS_OK(call) \
  ASSERT_PRED_FORMAT1(::dsdfs::e2e::sys_call_check, DSDFS_E2E_SYS_CALL_(call))
#define EXPECT_SYS_OK(call) \
  EXPECT_PRED_FORMAT1(::dsdfs::e2e::sys_call_check, DSDFS_E2E_SYS_CALL_(call))
// Assert/expect that a system call fails with one of the given errno values.
#define ASSERT_SYS_ERRNO(call, ...) \
  ASSERT_PRED_FORMAT1(::dsdfs::e2e::sys_call_check, DSDFS_E2E_SYS_CALL_(call, __VA_ARGS__))
#define EXPECT_SYS_ERRNO(call, ...) \
  EXPECT_PRED_FORMAT1(::dsdfs::e2e::sys_call_check, DSDFS_E2E_SYS_CALL_(call, __VA_ARGS__))

namespace dsdfs::e2e {

// Owner of a file descriptor that remembers the errno of the call that produced it.
class Fd {
 public:
  Fd() = default;
  Fd(int fd, int err) : fd_(fd), err_(err) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_), err_(o.err_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  static Fd open(const std::string& path, int flags, mode_t mode = 0644);
  static Fd openat(int dirfd, const std::string& path, int flags, mode_t mode = 0644);

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int error() const { return err_; }
  std::string error_text() const { return errno_text(err_); }
  // Closes now; returns 0 or the errno of close(2) (close can report a deferred write error).
  int close();
  void reset();

 private:
  int fd_ = -1;
  int err_ = 0;
};

#define ASSERT_FD(fd) ASSERT_TRUE((fd).valid()) << #fd << ": " << (fd).error_text()

// ---------------------------------------------------------------------------------------
// data and file helpers

// Deterministic pseudo-random bytes (xorshift64*), the same for the same (size, seed).
std::string pattern_bytes(size_t size, uint64_t seed);
// FNV-1a 64 of a byte string (common/hash.h).
uint64_t checksum(std::string_view data);

// Writes the whole buffer with pwrite at `offset`, looping over short writes.
::testing::AssertionResult pwrite_all(int fd, std::string_view data, off_t offset);
// Reads exactly `size` bytes at `offset` (fewer only at end of file) into *out.
::testing::AssertionResult pread_all(int fd, size_t size, off_t offset, std::string* out);
// Creates (O_CREAT|O_TRUNC) `path` with `data` and closes it, checking close's result.
::testing::AssertionResult write_file(const std::string& path, std::string_view data,
                                      mode_t mode = 0644);
// Reads the whole file into *out.
::testing::AssertionResult read_file(const std::string& path, std::string* out);
// Succeeds when the file's contents are exactly `expected` (prints a short diff otherwise).
::testing::AssertionResult file_has(const std::string& path, std::string_view expected);

struct DirEntry {
  std::string name;
  unsigned char type;  // DT_*
  ino_t ino;
};
// readdir(3) of `path`, without "." and "..". *saw_dots reports whether both were listed.
::testing::AssertionResult list_dir(const std::string& path, std::vector<DirEntry>* out,
                                    bool* saw_dots = nullptr);
std::vector<std::string> names_of(const std::vector<DirEntry>& entries);  // sorted

// lstat that returns nullopt (and *err) instead of failing.
std::optional<struct stat> lstat_of(const std::string& path, int* err = nullptr);
bool path_exists(const std::string& path);  // lstat succeeds

// ---------------------------------------------------------------------------------------
// mounts

struct MountInfo {
  std::string mount_point;
  std::string fstype;
  std::string source;
  std::string mount_options;
  std::string super_options;
  unsigned dev_major = 0;
  unsigned dev_minor = 0;
};
// Every entry of /proc/self/mountinfo whose mount point is exactly `path` (unescaped).
std::vector<MountInfo> mounts_at(const std::string& path);
bool is_mounted(const std::string& path);
// Detaches every mount at `path` (umount2 MNT_DETACH, then fusermount3 -u -z as a fallback).
// Returns true when nothing is mounted there afterwards.
bool force_unmount(const std::string& path);

// ---------------------------------------------------------------------------------------
// processes

// Identity to run a child as (non-root tests). The group list is resolved before fork,
// because a child of a multi-threaded process may only call async-signal-safe functions.
struct RunAs {
  uid_t uid;
  gid_t gid;
  std::string user;
  std::string home;
  std::vector<gid_t> groups;
};
std::optional<RunAs> run_as_user(const std::string& user);

// A child process in a new process group (setpgid(0,0)), stdout and stderr redirected to
// files (possibly the same one), stdin from /dev/null. The destructor kills the whole group
// (SIGKILL) if it is still running, reaps it, and clears it from the watchdog registry.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  // Starts argv[0] (an absolute path) with the given arguments. `mount_point` (may be empty)
  // is what the watchdog unmounts if it has to kill this process.
  ::testing::AssertionResult spawn(const std::vector<std::string>& argv,
                                   const std::string& stdout_file,
                                   const std::string& stderr_file,
                                   const std::optional<RunAs>& run_as = std::nullopt,
                                   const std::string& mount_point = {},
                                   const std::vector<std::string>& extra_env = {},
                                   unsigned long nofile_limit = 0);

  pid_t pid() const { return pid_; }
  bool started() const { return pid_ > 0; }
  // True while the process has not exited (reaps it if it has).
  bool running();
  // Wait status once exited (valid when !running()).
  int wait_status() const { return status_; }
  // Waits up to `timeout` for exit; true when it exited.
  bool wait_exit(std::chrono::milliseconds timeout);
  // Sends `sig` to the process (by pid, not to the group).
  bool signal(int sig);
  // SIGKILL to the whole process group, then reap the child.
  void kill_group();
  // Whether any process is still in the child's process group (orphans it left).
  bool group_alive() const;

  // Remembers every current descendant of the process, including those that left its
  // process group (Open MPI's singleton orted runs in its own session).
  void snapshot_descendants();
  // After the process exited: waits up to `timeout` for the remembered descendants to exit
  // too (they are reparented to us, the subreaper, and reaped here). Returns a description of
  // those still running, which are then SIGKILLed by pid.
  std::string reap_descendants(std::chrono::milliseconds timeout);

 private:
  void reap_group_orphans();
  std::vector<pid_t> descendants_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
};

// "exited 0", "exited 2", "killed by signal 9 (Killed)".
std::string describe_status(int wait_status);

// Runs a program to completion (or kills it after `timeout`).
struct CommandResult {
  bool timed_out = false;
  int wait_status = 0;
  std::string out;
  std::string err;
  int exit_code() const;  // -1 unless it exited normally
};
CommandResult run_command(const std::vector<std::string>& argv, const std::string& scratch_dir,
                          std::chrono::milliseconds timeout = 20s,
                          const std::optional<RunAs>& run_as = std::nullopt);

// Direct children of this process (the test program is a child subreaper, so processes
// orphaned by a daemon end up here). Zombies are reaped first, not listed.
std::vector<pid_t> child_pids();
// "1234 (orted)".
std::string describe_pid(pid_t pid);
// Kills and reaps every child process; returns how many there were.
int kill_all_children();

// ---------------------------------------------------------------------------------------
// temporary directory

// mkdtemp under /tmp. On destruction detaches any mount left inside (never recursing into a
// mount) and removes the tree, unless DSDFS_E2E_KEEP=1.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "dsdfs-e2e");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Removes a tree without crossing into other file systems. Returns true on success.
bool remove_tree(const std::string& path);

// ---------------------------------------------------------------------------------------
// a dsdfs instance

// Layout and options of one dsdfs-launch run. By default everything lives in `root`:
// root/mnt (created empty), root/store (left to the daemon to create), root/ready,
// root/daemon.log (stdout and stderr).
struct DsdfsConfig {
  std::string root;
  std::string mount_point;  // defaults to root/mnt
  std::string store;        // defaults to root/store
  std::string ready_file;   // defaults to root/ready
  std::string log_file;     // defaults to root/daemon.log
  bool create_mount_point = true;
  bool keep_store = false;
  bool default_store = false;  // pass no --store (store() is then empty)
  std::vector<std::string> extra_args;
  std::optional<RunAs> run_as;
  std::string launch;  // dsdfs-launch to run; defaults to launch_path()
  std::vector<std::string> env;  // NAME=VALUE added to (or replacing in) our environment
  unsigned long nofile_limit = 0;  // RLIMIT_NOFILE (soft = hard) for the daemon; 0: ours
  std::chrono::milliseconds ready_timeout = 20s;
  std::chrono::milliseconds stop_timeout = 10s;
  // Where the mount is expected once ready (differs from mount_point with %r/%h).
  std::string expected_mount;
};

// One running dsdfs-launch process.
class DsdfsInstance {
 public:
  explicit DsdfsInstance(DsdfsConfig config);
  DsdfsInstance(const DsdfsInstance&) = delete;
  DsdfsInstance& operator=(const DsdfsInstance&) = delete;
  // Stops the daemon (stop()) if it runs, and makes sure nothing is mounted.
  ~DsdfsInstance();

  // Starts the daemon and waits for the ready file (hard timeout), then checks the mount is
  // in /proc/self/mountinfo with fstype fuse.dsdfs. On failure the message carries the log,
  // and the daemon is killed and any mount detached.
  ::testing::AssertionResult start();

  // SIGTERM (or `sig`) by pid, wait up to stop_timeout, escalate to SIGKILL of the process
  // group, then detach any mount left. Failure message says which step failed: exit status
  // not 0, timeout, mount left behind, processes left in the group.
  ::testing::AssertionResult stop(int sig = SIGTERM);

  // SIGKILL of the whole process group, no unmount (leaves a stale mount behind).
  void kill_hard();

  bool running() { return process_.started() && process_.running(); }
  // Waits up to `timeout` for the daemon to exit; true when it has.
  bool wait_exit(std::chrono::milliseconds timeout) { return process_.wait_exit(timeout); }
  int wait_status() const { return process_.wait_status(); }
  pid_t pid() const { return process_.pid(); }

  const DsdfsConfig& config() const { return config_; }
  const std::string& mnt() const { return config_.expected_mount; }
  const std::string& store() const { return config_.store; }
  std::string files_dir() const { return config_.store + "/files"; }
  std::string path(std::string_view rel) const { return mnt() + "/" + std::string(rel); }
  std::string store_path(std::string_view rel) const {
    return files_dir() + "/" + std::string(rel);
  }

  // Current size of the log, and the log from an offset (the last 32 KiB of it).
  size_t log_size() const;
  std::string log_since(size_t offset = 0) const;

  // Ensures no mount is left at the mount point (detach). Returns false if one remains.
  bool ensure_unmounted();

 private:
  DsdfsConfig config_;
  ChildProcess process_;
};

// The arguments dsdfs-launch gets for a config (without argv[0]).
std::vector<std::string> dsdfs_args(const DsdfsConfig& config);

// Short host name (up to the first dot), as %h expands to.
std::string short_hostname();

// Polls `pred` every 10 ms until true or `timeout`.
template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
}

// Reads a whole (small) file from the local file system; empty on error.
std::string slurp(const std::string& path);
// Lines of a text, without the newline; a last line without '\n' counts too.
std::vector<std::string> split_lines(const std::string& text);

}  // namespace dsdfs::e2e
