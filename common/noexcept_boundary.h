// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cerrno>
#include <exception>
#include <new>

#include "common/log.h"

namespace dsdfs {

// Runs fn() at a C-callback boundary (FUSE op, UCX callback, thread main).
// Returns 0, or a positive errno if fn threw: bad_alloc -> ENOMEM, anything else -> EIO (logged).
template <typename Fn>
int run_at_boundary(const char* where, Fn&& fn) noexcept {
  try {
    fn();
    return 0;
  } catch (const std::bad_alloc&) {
    DSDFS_ERROR("%s: out of memory", where);
    return ENOMEM;
  } catch (const std::exception& e) {
    DSDFS_ERROR("%s: unexpected exception: %s", where, e.what());
    return EIO;
  } catch (...) {
    DSDFS_ERROR("%s: unexpected exception", where);
    return EIO;
  }
}

}  // namespace dsdfs
