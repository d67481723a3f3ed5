// SPDX-License-Identifier: Apache-2.0
#pragma once

// The randomized multi-rank torture test (issue 8, item 8): a job of K ranks (default 3),
// several client workers per rank (threads; each uses only its own rank's mount, as a
// process on that node would), random operations over a small set of names for a bounded
// time, and an oracle that checks every result against what POSIX and dsdfs's promises
// (DESIGN.md section 2, README semantics table, user guide) allow.
//
// The namespace under the mount, by area (every directory except d's children is created
// before the run and never removed, so that ENOENT from open(O_CREAT) is always a bug):
//   t/f/f0..f5   chaos: open (O_CREAT, O_EXCL, O_TRUNC, O_APPEND), read, pwrite, append,
//                ftruncate, fsync, fstat, close, stat/lstat, rename (replace, NOREPLACE),
//                link, unlink, readdir, cat. Contents are 16-byte self-describing cells.
//   t/d/d0..d3   directories: mkdir, rmdir, rename (replace, NOREPLACE), a file x inside,
//                stat, readdir.
//   t/log/L<r>   append-only logs created by rank r: 128-byte records appended from every
//                rank (the owner too), read while they grow (cat / tail), stat'ed.
//   t/v/v0..v2   replaced whole by write-temp-then-rename from every rank; readers must see
//                one complete version, never no file.
//   t/g/g<r>     overwritten in place and grown by rank r's workers (one version at a time);
//                every byte a reader gets must come from a version it may see.
//   t/x/...      rounds at a barrier of all workers: O_EXCL races, N-1 shared-file
//                checkpoints (IOR shared-file mode), hard-link consistency; every other
//                round reuses the name of the round before, after unlinking it.
//
// Seeded and replayable: DSDFS_TORTURE_SEED (else random, printed first); worker w's
// operation i draws its choices from a generator seeded with (seed, w, i), so a rerun makes
// the same choices wherever the system's timing lets it. Other knobs: DSDFS_TORTURE_SECONDS
// (60), DSDFS_TORTURE_RANKS (3), DSDFS_TORTURE_WORKERS (per rank, 3), DSDFS_TORTURE_LINK
// (1: link ops on; EPERM from link is then a violation), DSDFS_TORTURE_STRICT (0; 1 fails
// on documented limits too), DSDFS_TORTURE_PRINT (25 violations printed in full),
// DSDFS_TORTURE_HANG_S (30: a call blocked longer is a violation and ends the run).
//
// Files: torture.h (this: configuration, the namespace, shared state, Torture and Worker),
// torture_rules.h (the oracle's rules), torture_content.h (self-describing contents),
// torture_report.h (counts and violations), torture_chaos.cc (the worker's loop, the chaos
// area and the directories), torture_data.cc (logs, versioned and grown files),
// torture_rounds.cc (rounds at a barrier), torture_run.cc (setup, the run, the final
// checks), torture_test.cc (the test), torture_content_test.cc (the oracle's own tests).
//
// Thread-safety: a Torture is driven by the test's main thread; its workers run one thread
// each. What they share is atomics, the Report (thread-safe), and state guarded by the
// mutexes named below; RoundState is written and read between barriers.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/mpi/cluster_fixture.h"
#include "tests/mpi/torture_content.h"
#include "tests/mpi/torture_report.h"
#include "tests/mpi/torture_rules.h"

namespace dsdfs::mpitest::torture {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------
// configuration (from the environment: torture_run.cc)

struct Config {
  int ranks = 3;
  int workers = 3;  // per rank
  double seconds = 60;
  uint64_t seed = 0;
  bool links = true;
  bool strict = false;
  // Rules that are known open bugs of dsdfs (DSDFS_TORTURE_KNOWN; see Report::set_known).
  std::set<std::string> known;
  size_t print_limit = 25;
  double round_every = 3;  // seconds of random operations between two rounds
  double hang_limit = 30;  // seconds one call may block before the run counts as hung

  static Config from_env();
  std::string describe() const;
};

// An integer from the environment, `fallback` when unset; out of [lo, hi]: a test failure
// and the fallback.
long env_long(const char* name, long fallback, long lo, long hi);

// ---------------------------------------------------------------------------------------
// the namespace

inline constexpr int kFNames = 6;
inline constexpr int kDNames = 4;
inline constexpr int kVNames = 3;
inline constexpr size_t kMaxFds = 4;                // open chaos fds per worker
inline constexpr uint64_t kFMaxOffset = 64 * 1024;  // chaos writes and truncates stay below
inline constexpr size_t kGMax = 64 * 1024;          // grown files stop growing here
inline constexpr size_t kSharedBlock = 8192;        // each worker's block in an N-1 round
inline constexpr int64_t kPending = INT64_MAX;      // a rename that has not returned (or failed)

inline std::string f_rel(int i) {
  return "t/f/f" + std::to_string(i);
}
inline std::string d_rel(int i) {
  return "t/d/d" + std::to_string(i);
}
inline std::string log_rel(int l) {
  return "t/log/L" + std::to_string(l);
}
inline std::string v_rel(int i) {
  return "t/v/v" + std::to_string(i);
}
inline std::string g_rel(int r) {
  return "t/g/g" + std::to_string(r);
}

inline std::string q(std::string_view rel) {
  return "\"" + std::string(rel) + "\"";
}

inline std::string flags_text(int f) {
  std::string s = (f & O_ACCMODE) == O_RDONLY   ? "O_RDONLY"
                  : (f & O_ACCMODE) == O_WRONLY ? "O_WRONLY"
                                                : "O_RDWR";
  if (f & O_CREAT) s += "|O_CREAT";
  if (f & O_EXCL) s += "|O_EXCL";
  if (f & O_TRUNC) s += "|O_TRUNC";
  if (f & O_APPEND) s += "|O_APPEND";
  return s;
}

// "rw,creat,excl": the short form used in operation labels.
inline std::string flags_label(int f) {
  std::string s = (f & O_ACCMODE) == O_RDONLY ? "r" : (f & O_ACCMODE) == O_WRONLY ? "w" : "rw";
  if (f & O_CREAT) s += ",creat";
  if (f & O_EXCL) s += ",excl";
  if (f & O_TRUNC) s += ",trunc";
  if (f & O_APPEND) s += ",append";
  return s;
}

inline std::string rc_text(long rc, int err) {
  return rc < 0 ? "-1 " + errno_name(err) : std::to_string(rc);
}

// Names in a directory (without . and ..) with their d_type. Returns 0 or the errno of
// opendir/readdir; *step says which.
int list_names(const std::string& path, std::vector<std::pair<std::string, unsigned char>>* out,
               const char** step);
// Reads from `offset` to the end of the file with pread; 0 or the errno.
int read_to_end(int fd, uint64_t offset, std::string* out);
// Opens, reads and closes a whole file; 0 or the errno of the step that failed.
int read_path(const std::string& path, std::string* out);
// Writes all of `data` at `offset` (pwrite, looping over short writes); returns the bytes
// written and *err (0, or the errno of the call that failed).
size_t pwrite_full(int fd, std::string_view data, uint64_t offset, int* err);
// What dsdfs says the kernel inode of an open file stands for (user.dsdfs.inode), for reports.
std::string kernel_inode_of(int fd);

// ---------------------------------------------------------------------------------------
// shared state: what the oracle knows

// A barrier for all workers that gives up at a deadline or when broken (a hung worker must
// not hang the others).
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  // False when the barrier is broken (now or by someone else).
  bool arrive_and_wait(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    if (broken_) return false;
    const uint64_t gen = gen_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
      return true;
    }
    if (!cv_.wait_for(lock, limit, [&] { return gen_ != gen || broken_; })) broken_ = true;
    cv_.notify_all();
    return !broken_ || gen_ != gen;
  }
  void break_all() {
    std::lock_guard<std::mutex> lock(mu_);
    broken_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int n_;
  int arrived_ = 0;
  uint64_t gen_ = 0;
  bool broken_ = false;
};

struct VersionEntry {
  uint64_t id;
  size_t size;
  int64_t rename_start;  // ns since the start of the run
  int64_t rename_end;    // kPending until the rename returned success
};

// A name replaced by write-temp-then-rename.
struct VName {
  std::mutex mu;
  std::vector<VersionEntry> versions;  // guarded by mu
  std::atomic<uint64_t> renames_started{0};
  std::atomic<uint64_t> renames_done{0};  // returned (either way)
};

// A file its owner overwrites in place, one version at a time.
struct GFile {
  std::mutex writer;                   // held by the one worker writing a version
  std::mutex mu;                       // guards lens
  std::vector<size_t> lens;            // lens[k]: size of version k
  std::atomic<uint64_t> started{0};    // newest version whose writing began
  std::atomic<uint64_t> completed{0};  // newest version closed/fsynced by its writer
};

// One appender (worker) of one log.
struct LogWriter {
  std::atomic<int64_t> attempted{-1};  // highest sequence number handed to write()
  std::atomic<int64_t> durable{-1};    // all records up to this one written and closed/fsynced
};

// What all workers share during one round.
struct RoundState {
  std::string name;
  std::atomic<int> winners{0};
  std::atomic<int> winner{-1};
  std::atomic<bool> link_ok{false};
  std::vector<int> write_ok;  // per worker
  std::vector<uint64_t> ino;  // per worker, 0 unknown
  std::string content;
};

class Worker;

// The dsdfs job the test runs against: a Cluster that the test started (mpirun on this
// machine, ClusterJob), or a job started outside the test program (AttachedJob: the
// emulated cluster's soak run, tests/sim/soak.sh).
class TortureJob {
 public:
  virtual ~TortureJob() = default;
  virtual int size() const = 0;
  virtual std::string mnt(int r) const = 0;
  // Where rank r keeps its file `rel` (the store's files/ directory).
  virtual std::string store_path(int r, std::string_view rel) const = 0;
  virtual pid_t rank_pid(int r) const = 0;
  // A directory for the hang diagnostics.
  virtual std::string scratch() const = 0;
  virtual bool running() = 0;
  virtual std::string log() const = 0;
  // Ends the job (a hung run); an attached job is ended by whoever started it.
  virtual ::testing::AssertionResult stop() = 0;
};

class ClusterJob : public TortureJob {
 public:
  explicit ClusterJob(Cluster* c) : c_(c) {}
  int size() const override { return c_->size(); }
  std::string mnt(int r) const override { return c_->mnt(r); }
  std::string store_path(int r, std::string_view rel) const override { return c_->store_path(r, rel); }
  pid_t rank_pid(int r) const override { return c_->rank_pid(r); }
  std::string scratch() const override { return c_->scratch(); }
  bool running() override { return c_->running(); }
  std::string log() const override { return c_->log(); }
  ::testing::AssertionResult stop() override { return c_->stop(); }

 private:
  Cluster* const c_;
};

// DSDFS_TORTURE_ATTACH="PID:MOUNT:STORE,..." (one per rank, in rank order: the rank's daemon,
// its mount point as this program reaches it, e.g. /proc/PID/root/shared for a node of the
// emulated cluster, and its store directory); DSDFS_TORTURE_ATTACH_LOG: the job's log file.
class AttachedJob : public TortureJob {
 public:
  // Parses the environment; *err says what is wrong (then size() is 0).
  explicit AttachedJob(std::string* err);
  int size() const override { return static_cast<int>(ranks_.size()); }
  std::string mnt(int r) const override { return ranks_.at(static_cast<size_t>(r)).mnt; }
  std::string store_path(int r, std::string_view rel) const override {
    return ranks_.at(static_cast<size_t>(r)).store + "/files/" + std::string(rel);
  }
  pid_t rank_pid(int r) const override { return ranks_.at(static_cast<size_t>(r)).pid; }
  std::string scratch() const override { return scratch_; }
  bool running() override;
  std::string log() const override;
  ::testing::AssertionResult stop() override {
    return ::testing::AssertionFailure() << "an attached job is stopped by whoever started it";
  }

 private:
  struct Rank {
    pid_t pid;
    std::string mnt, store;
  };
  std::vector<Rank> ranks_;
  std::string log_file_;
  std::string scratch_;
};

class Torture {
 public:
  // On a job: rank r's operations go through job->mnt(r). With job == nullptr, every "rank"
  // uses the one directory `local_root` on a local file system: the oracle's own check (it
  // must find nothing there); the store and owner checks are then skipped.
  Torture(const Config& cfg, TortureJob* job, std::string local_root = {});
  ~Torture();

  ::testing::AssertionResult setup();
  void run();
  void final_checks();
  bool aborted() const { return abort_.load(); }
  double elapsed() const { return static_cast<double>(now_ns()) / 1e9; }
  int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0_).count();
  }
  Where main_where(int rank, uint64_t step) const { return {rank, -1, step, elapsed()}; }
  bool local() const { return cluster_ == nullptr; }
  // Aborts the FUSE connections of the job's mounts (fusectl; mounted first if missing and we
  // are root): the only way out when a daemon is stuck in the kernel on its own mount, which
  // SIGKILL cannot end. Blocked calls then fail with ENOTCONN and the ranks can exit. Returns
  // what it did, for the output.
  std::string abort_connections();
  // Runs f() on this thread; if it has not returned after `limit` (a call blocked on a rank
  // stuck in the kernel), reports a hang and aborts the job's FUSE connections from another
  // thread, which makes the blocked call fail so that f() can end.
  void run_guarded(const std::string& what, std::chrono::seconds limit,
                   const std::function<void()>& f);
  std::string mnt(int r) const { return cluster_ ? cluster_->mnt(r) : local_root_; }
  std::string path(int r, std::string_view rel) const { return mnt(r) + "/" + std::string(rel); }
  // For a violation's message: which version of versioned file n each rank's store holds
  // right now ("rank 0: 0x1000000009f, rank 1: none, ..."); empty on the local file system.
  std::string stores_now(int n) const;
  // What each rank's store holds of chaos file `rel` at `offset` (size, inode, a cell's bytes).
  std::string cells_in_stores(const std::string& rel, uint64_t offset) const;

  const Config cfg;
  Report report;
  const int workers_total;

 private:
  friend class Worker;
  TortureJob* const cluster_;
  const std::string local_root_;
  void check_hangs();
  void abort_run(const std::string& why);
  // Threads of the ranks and of this program that are blocked, with their kernel stacks, and
  // the ranks' user stacks where gdb may take them; what was found within 45 s.
  std::string describe_hang();
  void final_logs();
  void final_versions();
  void final_grown();
  void final_chaos();
  void final_dirs();

  Clock::time_point t0_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> abort_{false};
  bool abort_handled_ = false;
  std::vector<unsigned> connections_;  // fusectl ids of the job's mounts (setup)
  std::atomic<uint64_t> f_changes_{0};
  // Of those, the ones whose call has returned: a change still in flight when a file is
  // opened can take effect after the open.
  std::atomic<uint64_t> f_changes_done_{0};
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> log_appends_;  // per log
  std::vector<std::unique_ptr<LogWriter>> log_writers_;              // [log * G + gid]
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> log_floor_;    // [rank * K + log]
  VName vnames_[kVNames];
  std::vector<std::unique_ptr<GFile>> gfiles_;  // per rank
  Barrier barrier_;
  RoundState round_;
  std::atomic<int> round_requested_{0};
  std::atomic<int> rounds_done_{0};
  std::vector<std::unique_ptr<Worker>> workers_;
};

// ---------------------------------------------------------------------------------------
// a worker: one client thread on one rank's mount

class Worker {
 public:
  Worker(Torture& t, int rank, int index)
      : t_(t),
        rank_(rank),
        index_(index),
        gid_(rank * t.cfg.workers + index),
        mnt_(t.mnt(rank) + "/"),
        log_fd_(t.cfg.ranks, -1),
        log_next_(t.cfg.ranks, 0),
        log_failed_(t.cfg.ranks, false),
        log_last_ok_(t.cfg.ranks, -1),
        log_outcome_(t.cfg.ranks) {}

  void main() noexcept;

  // For the hang check (any thread): ns since the start when the current call began (+1),
  // 0 when idle, and the call.
  int64_t busy_since() const { return busy_since_.load(); }
  std::string current_call() {
    std::lock_guard<std::mutex> lock(call_mu_);
    return call_;
  }
  int rank() const { return rank_; }
  int index() const { return index_; }
  uint64_t op_index() const { return op_; }
  // After the run: [log][seq] 1 = write returned success, 2 = failed or unknown.
  const std::vector<std::vector<uint8_t>>& log_outcome() const { return log_outcome_; }

 private:
  struct Res {
    long rc;
    int err;
    int64_t ns = 0;  // how long the call took
  };
  struct FFd {
    int fd;
    int name;
    int flags;
    uint64_t changes_at_open;
  };
  enum class Op {
    kFOpen,
    kFClose,
    kFRead,
    kFPwrite,
    kFAppend,
    kFTruncate,
    kFFsync,
    kFFstat,
    kFStat,
    kFRename,
    kFLink,
    kFUnlink,
    kFReaddir,
    kFCat,
    kDMkdir,
    kDRmdir,
    kDRename,
    kDCreate,
    kDUnlink,
    kDStat,
    kDReaddir,
    kLogAppend,
    kLogCat,
    kLogStat,
    kLogReaddir,
    kVReplace,
    kVCat,
    kVStat,
    kVReaddir,
    kGWrite,
    kGCat,
  };

  // Runs one system call with the hang check's bookkeeping; errno captured right after.
  template <typename F>
  Res sys(std::string call, F&& f) {
    {
      std::lock_guard<std::mutex> lock(call_mu_);
      call_ = std::move(call);
    }
    const int64_t start = t_.now_ns();
    busy_since_.store(start + 1);
    errno = 0;
    long rc = static_cast<long>(f());
    int err = rc < 0 ? errno : 0;
    busy_since_.store(0);
    return {rc, err, t_.now_ns() - start};
  }
  // What a violation found after several calls names as the call (e.g. "cat(...)").
  void describe(std::string what) {
    std::lock_guard<std::mutex> lock(call_mu_);
    call_ = std::move(what);
  }
  std::string call() {
    std::lock_guard<std::mutex> lock(call_mu_);
    return call_;
  }
  std::string path(std::string_view rel) const { return mnt_ + std::string(rel); }
  Where where() const { return {rank_, index_, op_, t_.elapsed()}; }

  // Counts the result and reports a violation (or a documented limit) when `err` is
  // neither 0 nor allowed. True when the call succeeded.
  bool judge(std::string_view op, const Res& r, std::initializer_list<int> allowed,
             unsigned flags = kNoFlags);
  void violation(const Rule& rule, std::string_view op, std::string_view key,
                 std::string_view result) {
    t_.report.violation(rule, where(), op, call(), key, result);
  }

  void chaos_op();
  Op pick(Rng& rng) const;
  bool changed_since(const FFd& f) const { return t_.f_changes_.load() != f.changes_at_open; }
  // What an open records as its start (changes_at_open): the count of chaos changes started,
  // or a value no count reaches while a change started before is still in flight.
  uint64_t change_mark() const {
    const uint64_t done = t_.f_changes_done_.load();
    const uint64_t started = t_.f_changes_.load();
    return started == done ? started : ~uint64_t{0};
  }
  void short_write(std::string_view op, const FFd& f, const std::string& data, size_t done,
                   std::optional<uint64_t> offset);
  int pick_fd(Rng& rng, int need) const;  // index into ffds_ or -1; need: 0 any, 1 read, 2 write

  void f_open(Rng& rng, int forced_flags = -1);  // -1: random flags
  void f_close(size_t i);
  void f_read(Rng& rng);
  void f_pwrite(Rng& rng);
  void f_append(Rng& rng);
  void f_truncate(Rng& rng);
  void f_fsync(Rng& rng);
  void f_fstat(Rng& rng);
  void f_stat(Rng& rng);
  void f_rename(Rng& rng);
  void f_link(Rng& rng);
  void f_unlink(Rng& rng);
  void f_readdir();
  void f_cat(Rng& rng);
  // `fd` and `name` (when known) describe the file in a violation's message.
  void check_cells(std::string_view op, std::string_view data, uint64_t offset, bool at_eof, int fd = -1,
                   int name = -1);

  void d_mkdir(Rng& rng);
  void d_rmdir(Rng& rng);
  void d_rename(Rng& rng);
  void d_create(Rng& rng);
  void d_unlink(Rng& rng);
  void d_stat(Rng& rng);
  void d_readdir(Rng& rng);

  void log_append(Rng& rng);
  void log_close(int l, bool fsync_only);
  void log_cat(Rng& rng);
  void log_stat(Rng& rng);
  void log_readdir();
  void log_floor_check(std::string_view op, int l, uint64_t size, uint64_t floor);

  void v_replace(Rng& rng);
  void v_cat(Rng& rng);
  void v_stat(Rng& rng);
  void v_readdir();

  void g_write(Rng& rng);
  void g_cat(Rng& rng);

  void readdir_check(std::string_view op, const std::string& rel,
                     const std::vector<std::pair<std::string, unsigned char>>& names,
                     const std::function<bool(const std::string&, unsigned char)>& expected,
                     const std::vector<std::string>& always);

  // rounds
  void do_round(int j);
  bool sync();
  bool negative_lookup(std::string_view op, const std::string& rel);
  void round_excl(int j, Rng& rr, bool reuse, const std::string& rel);
  void round_shared(int j, Rng& rr, bool reuse, const std::string& rel);
  void round_link(int j, Rng& rr);
  bool read_whole(std::string_view op, const std::string& rel, std::string* out);

  void close_everything();

  Torture& t_;
  const int rank_;
  const int index_;
  const int gid_;
  const std::string mnt_;
  uint64_t op_ = 0;
  int my_round_ = 0;
  std::vector<FFd> ffds_;
  std::vector<int> log_fd_;
  std::vector<int64_t> log_next_;
  std::vector<bool> log_failed_;
  std::vector<int64_t> log_last_ok_;
  std::vector<std::vector<uint8_t>> log_outcome_;
  uint64_t v_counter_ = 0;

  std::atomic<int64_t> busy_since_{0};
  std::mutex call_mu_;
  std::string call_;
};

}  // namespace dsdfs::mpitest::torture
