// SPDX-License-Identifier: Apache-2.0
#include "common/status.h"

#include <cstring>

namespace dsdfs {

std::string Status::to_string() const {
  if (err_ == 0) return "ok";
  std::string s = context_;
  if (!s.empty()) s += ": ";
  s += std::strerror(err_);
  return s;
}

}  // namespace dsdfs
