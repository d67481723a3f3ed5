// SPDX-License-Identifier: Apache-2.0
#include "daemon/options.h"

#include <pwd.h>
#include <unistd.h>

#include <cinttypes>
#include <algorithm>
#include <cstdlib>
#include <optional>

#include "common/hash.h"

namespace dsdfs::fs {
namespace {

Status usage_error(const std::string& msg) { return Status::error(EINVAL, msg); }

std::optional<double> parse_seconds(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0) || v > 86400) return std::nullopt;
  return v;
}

}  // namespace

std::string options_usage() {
  return
      "usage: dsdfs-launch MOUNTPOINT [options]\n"
      "       dsdfs-launch --wait[=SECONDS] MOUNTPOINT   (wait until every rank has mounted)\n"
      "       dsdfs-launch --rejoin MOUNTPOINT [options]   (restart a daemon that died)\n"
      "       dsdfs-launch --info\n"
      "\n"
      "Mounts dsdfs at MOUNTPOINT on this node and serves it in the foreground until\n"
      "SIGINT or SIGTERM. Run one per node: `srun dsdfs-launch /shared`, or\n"
      "`mpirun -np N --map-by ppr:1:node dsdfs-launch /shared`; alone it is a\n"
      "one-node file system.\n"
      "\n"
      "options:\n"
      "  --store DIR           local store for this node's files (default:\n"
      "                        $TMPDIR/dsdfs-<user>-<job>-r%r, mode 0700)\n"
      "  --ready-file FILE     write FILE once every rank has mounted\n"
      "  --keep-store          keep the store when stopping (default: remove it)\n"
      "  --threads N           keep at most N idle FUSE worker threads (default: keep\n"
      "                        every worker; one starts while all are busy, up to 512)\n"
      "  --timeout SECONDS     timeout of every remote call (default 5; up to 6 times that\n"
      "                        while the called rank says it is still working)\n"
      "  --bulk auto|rma|am    remote read path: one-sided RMA gets, owner-pushed\n"
      "                        active messages, or automatic (default auto)\n"
      "  --passthrough auto|off\n"
      "                        reads and writes of this node's own files go straight\n"
      "                        from the kernel to the store (FUSE passthrough) where\n"
      "                        the build, the kernel and root allow (default auto)\n"
      "  --dir-notify auto|epoch|entry\n"
      "                        how the kernel learns of directory changes made on\n"
      "                        other ranks (default auto: epoch on Linux >= 6.16)\n"
      "  --bootstrap-timeout S give up if not every rank has started within S seconds\n"
      "                        (default 120)\n"
      "  --wait[=SECONDS]      do not mount; wait until dsdfs is mounted on every\n"
      "                        rank (default 60 s), name the ranks that are missing\n"
      "  --rejoin              this node's daemon of a running job died: start it again\n"
      "                        at MOUNTPOINT (as this node has it, without %r), with its\n"
      "                        store, without MPI; it reconnects to the job, catches up\n"
      "                        with the directories and serves its files again\n"
      "  --info                print transports, RDMA devices and placement, then exit\n"
      "  --log-level LEVEL     error, warn, info or debug (default warn)\n"
      "  --debug-fuse          print libfuse's request trace\n"
      "  --help                print this help and exit\n"
      "  --version             print the version and exit\n"
      "\n"
      "MOUNTPOINT and DIR may contain %r (the rank) and %h (the short host name),\n"
      "so several ranks can share one machine: dsdfs-launch /tmp/dsdfs/mnt%r\n";
}

Result<Options> options_parse(const std::vector<std::string>& args) {
  Options o;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string value;
    bool has_value = false;
    if (a.rfind("--", 0) == 0) {
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_value = true;
      }
    }
    auto need_value = [&]() -> Result<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) return usage_error("option " + a + " needs a value");
      return args[++i];
    };
    auto no_value = [&]() -> Status {
      if (has_value) return usage_error("option " + a + " takes no value");
      return Status::ok();
    };
    if (a == "--help" || a == "-h") {
      if (auto s = no_value(); !s) return s;
      o.show_help = true;
    } else if (a == "--version" || a == "-V") {
      if (auto s = no_value(); !s) return s;
      o.show_version = true;
    } else if (a == "--info") {
      if (auto s = no_value(); !s) return s;
      o.show_info = true;
    } else if (a == "--rejoin") {
      if (auto s = no_value(); !s) return s;
      o.rejoin = true;
    } else if (a == "--keep-store") {
      if (auto s = no_value(); !s) return s;
      o.keep_store = true;
    } else if (a == "--debug-fuse") {
      if (auto s = no_value(); !s) return s;
      o.debug_fuse = true;
    } else if (a == "--store") {
      auto v = need_value();
      if (!v) return v.status();
      if (v->empty()) return usage_error("--store needs a directory");
      o.store = *v;
    } else if (a == "--ready-file") {
      auto v = need_value();
      if (!v) return v.status();
      if (v->empty()) return usage_error("--ready-file needs a file name");
      o.ready_file = *v;
    } else if (a == "--threads") {
      auto v = need_value();
      if (!v) return v.status();
      char* end = nullptr;
      long n = std::strtol(v->c_str(), &end, 10);
      if (v->empty() || *end != '\0' || n < 1 || n > 1024)
        return usage_error("--threads needs a number from 1 to 1024, not '" + *v + "'");
      o.threads = static_cast<unsigned>(n);
    } else if (a == "--timeout") {
      auto v = need_value();
      if (!v) return v.status();
      auto s = parse_seconds(*v);
      if (!s) return usage_error("--timeout needs a number of seconds (0 < s <= 86400), not '" + *v + "'");
      o.timeout_s = *s;
    } else if (a == "--bootstrap-timeout") {
      auto v = need_value();
      if (!v) return v.status();
      auto s = parse_seconds(*v);
      if (!s) return usage_error("--bootstrap-timeout needs a number of seconds, not '" + *v + "'");
      o.bootstrap_timeout_s = *s;
    } else if (a == "--wait") {
      o.wait_mode = true;
      o.wait_s = 60;
      if (has_value) {
        auto s = parse_seconds(value);
        if (!s) return usage_error("--wait needs a number of seconds, not '" + value + "'");
        o.wait_s = *s;
      }
    } else if (a == "--bulk") {
      auto v = need_value();
      if (!v) return v.status();
      if (*v == "auto") o.bulk = BulkMode::kAuto;
      else if (*v == "rma") o.bulk = BulkMode::kRma;
      else if (*v == "am") o.bulk = BulkMode::kAm;
      else return usage_error("--bulk needs auto, rma or am, not '" + *v + "'");
    } else if (a == "--passthrough") {
      auto v = need_value();
      if (!v) return v.status();
      if (*v == "auto") o.passthrough = true;
      else if (*v == "off") o.passthrough = false;
      else return usage_error("--passthrough needs auto or off, not '" + *v + "'");
    } else if (a == "--dir-notify") {
      auto v = need_value();
      if (!v) return v.status();
      if (*v == "auto") o.dir_notify = DirNotify::kAuto;
      else if (*v == "epoch") o.dir_notify = DirNotify::kEpoch;
      else if (*v == "entry") o.dir_notify = DirNotify::kEntry;
      else return usage_error("--dir-notify needs auto, epoch or entry, not '" + *v + "'");
    } else if (a == "--log-level") {
      auto v = need_value();
      if (!v) return v.status();
      if (*v == "error") o.log_level = LogLevel::kError;
      else if (*v == "warn") o.log_level = LogLevel::kWarn;
      else if (*v == "info") o.log_level = LogLevel::kInfo;
      else if (*v == "debug") o.log_level = LogLevel::kDebug;
      else return usage_error("--log-level needs error, warn, info or debug, not '" + *v + "'");
    } else if (a == "--") {
      for (++i; i < args.size(); ++i) positional.push_back(args[i]);
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option '" + args[i] + "' (see --help)");
    } else {
      positional.push_back(a);
    }
  }
  if (o.show_help || o.show_version || o.show_info) return o;
  if (positional.empty()) return usage_error("missing MOUNTPOINT (see --help)");
  if (positional.size() > 1) return usage_error("unexpected argument '" + positional[1] + "' (see --help)");
  o.mountpoint = positional[0];
  if (o.rejoin && o.wait_mode) return usage_error("--rejoin and --wait do not go together");
  if (o.rejoin && o.mountpoint.find("%r") != std::string::npos) {
    return usage_error("--rejoin needs the mount point as this node has it, without %r (e.g. /tmp/dsdfs/mnt1)");
  }
  return o;
}

Result<std::string> expand_placeholders(const std::string& pattern, int rank,
                                        const std::string& short_host) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '%') {
      out += pattern[i];
      continue;
    }
    if (i + 1 >= pattern.size()) return usage_error("'" + pattern + "' ends in a lone %");
    char c = pattern[++i];
    if (c == 'r') out += std::to_string(rank);
    else if (c == 'h') out += short_host;
    else if (c == '%') out += '%';
    else return usage_error("unknown placeholder %" + std::string(1, c) + " in '" + pattern +
                            "' (known: %r rank, %h host, %% percent)");
  }
  return out;
}

std::string default_store_pattern(const std::string& absolute_mountpoint) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = (tmp && *tmp == '/') ? tmp : "/tmp";
  std::string user;
  if (struct passwd* pw = getpwuid(getuid()); pw && pw->pw_name) user = pw->pw_name;
  else user = std::to_string(getuid());
  std::string job;
  if (const char* j = std::getenv("SLURM_JOB_ID"); j && *j) {
    job = std::string("job") + j;
  } else if (const char* ns = std::getenv("PMIX_NAMESPACE"); ns && *ns) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, fnv1a64(ns));
    job = std::string("pmix") + buf;
  } else {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, fnv1a64(absolute_mountpoint));
    job = std::string("mnt") + buf;
  }
  // %% protects a literal % in TMPDIR or the user name from expansion.
  std::string safe;
  for (char c : dir + "/dsdfs-" + user + "-" + job) {
    safe += c;
    if (c == '%') safe += '%';
  }
  return safe + "-r%r";
}

}  // namespace dsdfs::fs
