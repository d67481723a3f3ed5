// SPDX-License-Identifier: Apache-2.0
#include "common/host.h"

#include <unistd.h>

namespace dsdfs {

std::string short_host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "unknown";
  std::string h = buf;
  return h.substr(0, h.find('.'));
}

}  // namespace dsdfs
