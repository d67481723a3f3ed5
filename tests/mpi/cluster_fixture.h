// SPDX-License-Identifier: Apache-2.0
#pragma once

// A dsdfs job of N ranks on this machine, started with mpirun for one test: every rank mounts
// its own mount point (ROOT/mnt<r>, store ROOT/store<r>) in a private temporary directory, so
// that the test can act on "N nodes" with ordinary system calls and shell tools.
//
// Process layout (Open MPI 4.1): the test program spawns `sh -c '. loopback-env.sh; exec
// mpirun ...'` in a new process group; mpirun forks the ranks, and ORTE puts each rank in a
// process group of its own. So stopping never relies on the process group alone: the ranks
// are found as descendants of mpirun (exe = DSDFS_LAUNCH, OMPI_COMM_WORLD_RANK from their
// environment) and are killed by pid when they outlive mpirun. The program is a child
// subreaper, so orphaned ranks are reparented to it and reaped.
//
// The e2e helpers (tests/e2e/mount_fixture.h) provide the temporary directory, child
// processes, mount queries and the per-test watchdog; each rank is registered with the
// watchdog (its own process group and its mount point) once it is ready, so that a hung
// system call ends in a test failure and not in a meson timeout with mounts left behind.
//
// Thread-safety: a Cluster is used from the test's main thread; the read-only accessors
// (mnt, path, store_path, size) may be called from the test's worker threads.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/e2e/mount_fixture.h"

namespace dsdfs::mpitest {

using namespace std::chrono_literals;
using e2e::CommandResult;

// ---------------------------------------------------------------------------------------
// environment of the test program

// Exit code that meson reports as SKIP.
inline constexpr int kExitSkip = 77;

// Checks mpirun (PATH), /dev/fuse, DSDFS_LAUNCH, DSDFS_LOOPBACK_ENV and DSDFS_TEST_UCX_TLS.
// Missing mpirun or /dev/fuse: exit 77, or 1 with DSDFS_REQUIRE_ALL=1. A missing or broken
// DSDFS_LAUNCH / DSDFS_LOOPBACK_ENV / bad DSDFS_TEST_UCX_TLS is a broken build: exit 1.
void cluster_require_environment_or_exit();

const std::string& mpirun_path();
const std::string& loopback_env_path();
// "tcp" or "default" (DSDFS_TEST_UCX_TLS, default "default").
const std::string& ucx_tls_variant();

// ---------------------------------------------------------------------------------------
// the job

struct ClusterOptions {
  int ranks = 3;
  double rpc_timeout_s = 3;  // dsdfs-launch --timeout
  std::vector<std::string> extra_args;
  std::chrono::milliseconds ready_timeout = 30s;
  std::chrono::milliseconds stop_timeout = 10s;
};

// How stop() asks the job to end.
enum class StopHow {
  kSigtermToMpirun,      // what a user of mpirun does (kill -TERM <mpirun pid>)
  kSigtermToEveryRank,   // what srun does on scancel / the end of a job step
  kEndedByItself,        // nothing: the job was stopped otherwise (dsdfs stop); only the checks
};
inline void PrintTo(StopHow how, std::ostream* os) {
  *os << (how == StopHow::kSigtermToMpirun     ? "SIGTERM to mpirun"
          : how == StopHow::kSigtermToEveryRank ? "SIGTERM to every rank"
                                                : "the job ended by itself");
}

inline ClusterOptions with_ranks(int ranks) {
  ClusterOptions o;
  o.ranks = ranks;
  return o;
}

// How and when a rank ended after stop() sent SIGTERM. The test watches the ranks
// (mpirun's children, not ours) through /proc: a rank seen as a zombie shows its wait status;
// one already reaped by mpirun shows only when it was found gone.
struct RankExit {
  bool seen = false;
  bool status_known = false;
  int wait_status = 0;
  std::chrono::milliseconds after{0};  // since stop() sent SIGTERM (+/- a few ms)
  std::string describe() const;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {});
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  // Stops the job if the test did not (stop() below). What went wrong while stopping is
  // printed as a warning, not reported as a failure of the test: the tests of the JobStop
  // suite call stop() themselves and check it, so that a stop bug fails those tests and not
  // every test. Left-over processes are killed and mounts detached either way; only a mount
  // that cannot be detached fails the test. Then the temporary directory is removed.
  ~Cluster();

  // Starts mpirun and waits (hard timeout) for every rank's ready file, then checks that
  // every mount is a fuse.dsdfs mount and finds every rank's pid. On failure the message
  // carries the job log, and everything started is killed and unmounted.
  ::testing::AssertionResult start();

  // SIGTERM to mpirun by pid (or to every rank), wait up to stop_timeout for mpirun to exit,
  // escalate to SIGKILL of mpirun's process group and of every rank left, then detach every
  // mount left under the temporary directory. The failure message says what went wrong
  // (timeout with the stacks of what hangs, ranks that outlived mpirun, mounts left
  // behind). Idempotent.
  ::testing::AssertionResult stop(StopHow how = StopHow::kSigtermToMpirun);

  // SIGKILL to one rank (by pid) and wait until it is gone. Its mount stays behind (stale):
  // detach_mount(r) removes it.
  ::testing::AssertionResult kill_rank(int r);
  // After kill_rank(r): `dsdfs-launch --rejoin` of rank r's mount point (same --timeout,
  // same UCX transports, log appended to the job log), started as *daemon and waited for
  // until its mount answers (or `timeout`). The caller stops it (SIGTERM by pid).
  ::testing::AssertionResult rejoin_rank(int r, e2e::ChildProcess* daemon,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // umount2(MNT_DETACH) of rank r's mount point; true when nothing is mounted there after.
  bool detach_mount(int r);

  int size() const { return options_.ranks; }
  const ClusterOptions& options() const { return options_; }
  const std::string& root() const { return tmp_.path(); }
  std::string mnt(int r) const;
  std::string store(int r) const;
  // ROOT/mnt<r>/<rel>
  std::string path(int r, std::string_view rel) const;
  // ROOT/store<r>/files/<rel>: where rank r keeps the files it owns.
  std::string store_path(int r, std::string_view rel) const;
  pid_t rank_pid(int r) const;
  // Filled in by stop().
  const std::vector<RankExit>& rank_exits() const { return exits_; }
  std::string describe_rank_exits() const;
  pid_t mpirun_pid() const { return mpirun_.pid(); }
  bool running() { return mpirun_.started() && mpirun_.running(); }
  // mpirun's wait status once it has exited (running() false).
  int mpirun_wait_status() const { return mpirun_.wait_status(); }
  // The job's output (mpirun and every rank), the last 32 KiB from `offset`.
  std::string log(size_t offset = 0) const;
  size_t log_size() const;
  const std::string& scratch() const { return scratch_; }

  // For a job that hangs: every process of the job still running (mpirun, orted, ranks)
  // with its state and wait channel, and, when gdb is installed, the stack of every thread
  // of every rank still running.
  std::string describe_stuck_processes();

  // Runs `/bin/sh -c script` (cwd: the temporary directory) with a timeout.
  CommandResult sh(const std::string& script, std::chrono::milliseconds timeout = 30s) const;

 private:
  ::testing::AssertionResult find_rank_pids();
  void poll_rank_exits(std::chrono::steady_clock::time_point since);
  void unregister_ranks();

  ClusterOptions options_;
  e2e::TempDir tmp_;
  std::string scratch_;
  std::string log_file_;
  e2e::ChildProcess mpirun_;
  std::vector<pid_t> rank_pids_;
  std::vector<bool> rank_registered_;
  std::vector<RankExit> exits_;
  bool started_ = false;
  bool stopped_ = false;
};

// ---------------------------------------------------------------------------------------
// probes

// user.dsdfs.owner of a path: the owner rank, or nullopt (and *err) on failure.
std::optional<int> owner_of(const std::string& path, int* err = nullptr);
// user.dsdfs.stats of a mount point, parsed. Empty map on failure (*err).
std::map<std::string, uint64_t> stats_of(const std::string& mount_point, int* err = nullptr);
// "name: before -> after" for every counter that differs; for failure messages.
std::string stats_diff(const std::map<std::string, uint64_t>& before,
                       const std::map<std::string, uint64_t>& after);

// Shell quoting: 'it'\''s'.
std::string shq(std::string_view s);

// Outcome of an operation run in a child process under a watchdog.
struct BoundedOutcome {
  bool finished = false;  // false: still blocked after the limit (child SIGKILLed)
  int err = 0;            // 0 or the errno the operation failed with
  std::chrono::milliseconds elapsed{0};
  std::string describe() const;
};
// Forks a child that runs `op` (returning 0 or an errno; it must only make system calls on
// data prepared before the fork) and waits at most `limit` for it.
BoundedOutcome run_bounded(const std::function<int()>& op, std::chrono::milliseconds limit);

// A start barrier for threads: every thread spins until all have arrived, so that the racing
// system calls are issued as close together as the scheduler allows. One use.
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void arrive_and_wait() {
    arrived_.fetch_add(1);
    while (arrived_.load() < n_) std::this_thread::yield();
  }

 private:
  const int n_;
  std::atomic<int> arrived_{0};
};

// Polls pred every 10 ms until true or timeout.
using e2e::wait_until;

}  // namespace dsdfs::mpitest
