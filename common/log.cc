// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace dsdfs {
namespace {
std::atomic<int> g_rank{-1};
std::atomic<int> g_level{static_cast<int>(LogLevel::kWarn)};
const char* const kLevelNames[] = {"error", "warning", "info", "debug"};
}  // namespace

void log_set_rank(int rank) { g_rank.store(rank); }
void log_set_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

void log_message(LogLevel level, const char* fmt, ...) {
  char line[1024];
  int n;
  int rank = g_rank.load();
  if (rank >= 0) {
    n = std::snprintf(line, sizeof line, "dsdfs[%d]: %s: ", rank, kLevelNames[static_cast<int>(level)]);
  } else {
    n = std::snprintf(line, sizeof line, "dsdfs: %s: ", kLevelNames[static_cast<int>(level)]);
  }
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, len);
  (void)ignored;
}

}  // namespace dsdfs
