// SPDX-License-Identifier: Apache-2.0
#include "launcher/status_file.h"

#include "common/host.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "common/hash.h"

namespace dsdfs::launcher {

std::string status_file_path(const std::string& canonical_mountpoint) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = (tmp && *tmp == '/') ? tmp : "/tmp";
  char name[400];
  std::snprintf(name, sizeof name, "/.dsdfs-%u-%s-%016" PRIx64 ".status", static_cast<unsigned>(::getuid()),
                short_host_name().c_str(), fnv1a64(canonical_mountpoint));
  return dir + name;
}

void status_file_write(const std::string& path, const StatusInfo& info) {
  std::string tmp = path + "." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return;
    out << "state " << info.state << "\npid " << info.pid << "\nrank " << info.rank << "\nranks " << info.ranks
        << "\nhost " << info.host << "\n";
    if (!info.store.empty()) out << "store " << info.store << "\n";
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) ::unlink(tmp.c_str());
}

bool status_file_read(const std::string& path, StatusInfo* info, bool require_alive) {
  std::ifstream in(path);
  if (!in) return false;
  std::string key;
  *info = StatusInfo{};
  while (in >> key) {
    if (key == "state") in >> info->state;
    else if (key == "pid") in >> info->pid;
    else if (key == "rank") in >> info->rank;
    else if (key == "ranks") in >> info->ranks;
    else if (key == "host") in >> info->host;
    else if (key == "store") {
      in >> std::ws;
      std::getline(in, info->store);
    }
    else in.ignore(1 << 20, '\n');
  }
  if (info->pid <= 0 || info->state.empty()) return false;
  if (!require_alive) return true;
  return ::kill(info->pid, 0) == 0 || errno == EPERM;
}

}  // namespace dsdfs::launcher
