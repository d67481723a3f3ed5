// SPDX-License-Identifier: Apache-2.0
#include "tests/mpi/torture_report.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace dsdfs::mpitest::torture {

std::string errno_name(int err) {
  if (err == 0) return "ok";
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

Report::Report(uint64_t seed, size_t print_limit, bool strict)
    : seed_(seed), print_limit_(print_limit), strict_(strict) {}

void Report::count(std::string_view op, int err, int64_t ns) {
  std::string result = errno_name(err);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(op);
  if (it == counts_.end()) it = counts_.emplace(std::string(op), OpStats{}).first;
  ++it->second.results[result];
  it->second.total_ns += ns;
  if (ns > it->second.max_ns) it->second.max_ns = ns;
  if (ns >= slow_ns_) ++it->second.slow;
  ++operations_;
}

std::string Report::line_locked(const Rule& rule, const Where& where, std::string_view call,
                                std::string_view result) const {
  const std::string who = where.worker < 0 ? "main" : "worker " + std::to_string(where.worker);
  char head[160];
  snprintf(head, sizeof head, "seed 0x%016" PRIx64 " t=%.3fs rank %d %s op %" PRIu64 ": ", seed_,
           where.seconds, where.rank, who.c_str(), where.op);
  std::string line = head;
  return line + std::string(call) + " -> " + std::string(result) + "  [" + std::string(rule.id) +
         ": " + std::string(rule.text) + "]";
}

void Report::violation(const Rule& rule, const Where& where, std::string_view op,
                       std::string_view call, std::string_view key, std::string_view result) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool known = !strict_ && known_rules_.count(std::string(rule.id)) != 0;
  rule_texts_.emplace(std::string(rule.id), std::string(rule.text));
  if (known) {
    ++known_;
    ++known_groups_[{std::string(rule.id), std::string(op), std::string(key)}];
    if (known_ <= 10) {
      fprintf(stderr, "torture: KNOWN OPEN BUG #%zu %s\n", known_,
              line_locked(rule, where, call, result).c_str());
    }
    return;
  }
  ++violations_;
  ++violation_groups_[{std::string(rule.id), std::string(op), std::string(key)}];
  if (first_.size() < print_limit_) {
    std::string line = line_locked(rule, where, call, result);
    first_.push_back(line);
    fprintf(stderr, "torture: VIOLATION #%zu %s\n", violations_, line.c_str());
    if (first_.size() == print_limit_)
      fprintf(stderr, "torture: (further violations are only counted; see the summary)\n");
  } else if (first_.size() == print_limit_) {
    first_.push_back("(violations from #" + std::to_string(violations_) +
                     " on are only counted, up to the final checks)");
  }
}

void Report::limit(const Rule& rule, const Where& where, std::string_view op, std::string_view call,
                   std::string_view key, std::string_view result) {
  if (strict_) return violation(rule, where, op, call, key, result);
  std::lock_guard<std::mutex> lock(mu_);
  ++limits_;
  ++limit_groups_[{std::string(rule.id), std::string(op), std::string(key)}];
  rule_texts_.emplace(std::string(rule.id), std::string(rule.text));
}

void Report::print_more(size_t more) {
  std::lock_guard<std::mutex> lock(mu_);
  print_limit_ = first_.size() + more;
}

void Report::note(std::string text) {
  std::lock_guard<std::mutex> lock(mu_);
  notes_.push_back(std::move(text));
}

size_t Report::violations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return violations_;
}

size_t Report::known_bugs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return known_;
}

size_t Report::limits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limits_;
}

uint64_t Report::operations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return operations_;
}

std::string Report::first_violations(size_t n) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (size_t i = 0; i < first_.size() && i < n; ++i) out += "\n  " + first_[i];
  if (violations_ > n) out += "\n  (" + std::to_string(violations_ - n) + " more in the summary)";
  return out;
}

std::string Report::summary(double seconds) const {
  std::lock_guard<std::mutex> lock(mu_);
  char buf[200];
  snprintf(buf, sizeof buf,
           "torture: summary of seed 0x%016" PRIx64 ": %" PRIu64
           " operations in %.1f s, %zu "
           "violations, %zu known open bugs, %zu documented limits hit%s\n",
           seed_, operations_, seconds, violations_, known_, limits_,
           strict_ ? " (strict: limits count as violations)" : "");
  std::string out = buf;
  out += "torture: operations (mean / max latency in ms; result: count)\n";
  for (auto& [op, stats] : counts_) {
    uint64_t n_all = 0;
    for (auto& [result, n] : stats.results) n_all += n;
    snprintf(buf, sizeof buf, "  %-26s %7.2f %8.1f  ", op.c_str(),
             n_all ? static_cast<double>(stats.total_ns) / 1e6 / static_cast<double>(n_all) : 0.0,
             static_cast<double>(stats.max_ns) / 1e6);
    out += buf;
    bool first = true;
    for (auto& [result, n] : stats.results) {
      out += (first ? "" : ", ") + result + " " + std::to_string(n);
      first = false;
    }
    out += "\n";
  }
  auto groups = [&](const char* title, const std::map<Group, uint64_t>& g) {
    if (g.empty()) return;
    out += std::string("torture: ") + title + " (rule / operation / result: count)\n";
    std::string rule;
    for (auto& [key, n] : g) {
      auto& [id, op, result] = key;
      if (id != rule) {
        rule = id;
        uint64_t total = 0;
        for (auto& [k2, n2] : g)
          if (std::get<0>(k2) == id) total += n2;
        out += "  " + id + " (" + std::to_string(total) + "): " + rule_texts_.at(id) + "\n";
      }
      snprintf(buf, sizeof buf, "      %-28s %-14s %" PRIu64 "\n", op.c_str(), result.c_str(), n);
      out += buf;
    }
  };
  std::string slow;
  for (auto& [op, stats] : counts_)
    if (stats.slow) slow += " " + op + " " + std::to_string(stats.slow) + ",";
  if (!slow.empty()) {
    slow.pop_back();
    snprintf(buf, sizeof buf, "torture: calls that took %.1f s or longer (remote calls timed out):",
             static_cast<double>(slow_ns_) / 1e9);
    out += buf + slow + "\n";
  }
  groups("VIOLATIONS", violation_groups_);
  groups("KNOWN OPEN BUGS (issue 8 stays open; not failures unless DSDFS_TORTURE_STRICT=1 or "
         "DSDFS_TORTURE_KNOWN leaves the rule out)",
         known_groups_);
  groups("documented limits hit (not failures; DSDFS_TORTURE_STRICT=1 fails on them)",
         limit_groups_);
  for (auto& n : notes_) out += "torture: note: " + n + "\n";
  if (!first_.empty()) {
    out += "torture: violations in full (as printed during the run):\n";
    for (auto& l : first_) out += "  " + l + "\n";
  }
  return out;
}

}  // namespace dsdfs::mpitest::torture
