// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdarg>

namespace dsdfs {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// Process-wide logging to stderr, each line prefixed "dsdfs[rank]: ".
// Thread-safe (one write(2) per line). Set once at startup, before threads start.
void log_set_rank(int rank);
void log_set_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace dsdfs

#define DSDFS_LOG(level, ...)                                        \
  do {                                                               \
    if (static_cast<int>(level) <= static_cast<int>(::dsdfs::log_level())) \
      ::dsdfs::log_message(level, __VA_ARGS__);                      \
  } while (0)
#define DSDFS_ERROR(...) DSDFS_LOG(::dsdfs::LogLevel::kError, __VA_ARGS__)
#define DSDFS_WARN(...) DSDFS_LOG(::dsdfs::LogLevel::kWarn, __VA_ARGS__)
#define DSDFS_INFO(...) DSDFS_LOG(::dsdfs::LogLevel::kInfo, __VA_ARGS__)
#define DSDFS_DEBUG(...) DSDFS_LOG(::dsdfs::LogLevel::kDebug, __VA_ARGS__)
