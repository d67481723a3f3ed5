// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the torture test (torture_test.cc) saw: a count per operation and result, every broken
// rule of the oracle (a violation), and every outcome that the user guide documents as a
// limit of dsdfs today (counted; a violation only in strict mode).
//
// The first violations are printed in full as they happen (so that a run that hangs later
// still shows them), with everything needed to replay them: seed, rank, worker, operation
// index, the call with its arguments, the result and the rule. summary() groups the rest.
//
// Thread-safety: every method may be called from any thread (one mutex; the test's system
// calls cost far more than taking it).

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace dsdfs::mpitest::torture {

// "ENOENT"; "ok" for 0.
std::string errno_name(int err);

// One rule of the oracle: a short id for the summary and what it says.
struct Rule {
  std::string_view id;
  std::string_view text;
};

// Where an outcome was seen.
struct Where {
  int rank = -1;       // the mount the call went through
  int worker = -1;     // worker index on that rank; -1: the test's main thread
  uint64_t op = 0;     // the worker's operation index (or round number for rounds)
  double seconds = 0;  // since the start of the run
};

class Report {
 public:
  Report(uint64_t seed, size_t print_limit, bool strict);
  // Calls that take at least this long are listed in the summary (e.g. dsdfs's RPC timeout:
  // a call that slow waited for a remote call that timed out, though no peer died).
  void set_slow_threshold(int64_t ns) { slow_ns_ = ns; }

  // One operation finished with `err` (0: success) after `ns` nanoseconds.
  void count(std::string_view op, int err, int64_t ns = 0);
  // A rule was broken. `op` is the operation's label (as counted), `call` the call with its
  // arguments, `result` what it returned (e.g. "-1 ENOENT", or what was wrong with the
  // bytes), `key` a short grouping key for the summary (an errno name, "content", ...).
  void violation(const Rule& rule, const Where& where, std::string_view op, std::string_view call,
                 std::string_view key, std::string_view result);
  // An outcome that the user guide documents as a limit (e.g. EIO on a handle of a file
  // that changed elsewhere). A violation in strict mode.
  void limit(const Rule& rule, const Where& where, std::string_view op, std::string_view call,
             std::string_view key, std::string_view result);
  // Prints `more` further violations in full (the final checks, after the run, are few and
  // each matters).
  void print_more(size_t more);
  // A note printed at the end (e.g. what a round could not check).
  void note(std::string text);

  // Rules whose violations are open bugs of dsdfs, known and tracked (issue 8 stays open
  // while any is listed): they are printed and counted as "known open bugs", and do not fail
  // the test unless in strict mode. Every other rule fails it. DSDFS_TORTURE_KNOWN sets the
  // list (comma-separated rule ids; empty: none).
  void set_known(std::set<std::string> rules) { known_rules_ = std::move(rules); }

  size_t violations() const;
  size_t known_bugs() const;
  size_t limits() const;
  uint64_t operations() const;
  // The first `n` violations in full, one per line: for the failure message itself, so that
  // the last lines of a failed run's output (all CI shows) say what broke.
  std::string first_violations(size_t n) const;
  // Counts per operation and result (with mean and maximum latency), violations and limits grouped
  // by rule, operation and result, and the first violations again.
  std::string summary(double seconds) const;

 private:
  std::string line_locked(const Rule& rule, const Where& where, std::string_view call,
                          std::string_view result) const;

  const uint64_t seed_;
  size_t print_limit_;  // guarded by mu_
  const bool strict_;
  int64_t slow_ns_ = INT64_MAX;
  mutable std::mutex mu_;
  struct OpStats {
    std::map<std::string, uint64_t> results;  // errno name -> count
    int64_t total_ns = 0;
    int64_t max_ns = 0;
    uint64_t slow = 0;  // calls of at least slow_ns_
  };
  std::map<std::string, OpStats, std::less<>> counts_;
  using Group = std::tuple<std::string, std::string, std::string>;  // rule, op, key
  std::map<Group, uint64_t> violation_groups_;
  std::map<Group, uint64_t> limit_groups_;
  std::map<std::string, std::string> rule_texts_;
  std::vector<std::string> first_;  // the first print_limit_ violations, in full
  std::vector<std::string> notes_;
  size_t violations_ = 0;
  size_t known_ = 0;                  // guarded by mu_: violations of known open bugs
  std::set<std::string> known_rules_;  // immutable after set_known
  std::map<Group, uint64_t> known_groups_;  // guarded by mu_
  size_t limits_ = 0;
  uint64_t operations_ = 0;
};

}  // namespace dsdfs::mpitest::torture
