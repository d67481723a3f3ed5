// SPDX-License-Identifier: Apache-2.0
#include "launcher/job_file.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/unique_fd.h"
#include "daemon/wire_codec.h"

namespace dsdfs::launcher {
namespace {

constexpr uint64_t kMagic = 0x73666473646a6f62ULL;  // "bojdsdfs"
constexpr size_t kMaxFile = 64 << 20;

}  // namespace

std::string job_file_path(const std::string& store_path) { return store_path + "/.dsdfs-job"; }

Status job_file_write(const std::string& store_path, const JobFile& job) {
  fs::WireWriter w;
  w.u64(kMagic).u32(job.protocol).i32(job.rank).i32(job.nranks).u64(job.job_key);
  for (int r = 0; r < job.nranks; ++r) w.str(job.hosts.at(static_cast<size_t>(r))).bytes(job.addresses.at(static_cast<size_t>(r)));
  const auto bytes = w.take();
  const std::string path = job_file_path(store_path);
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::from_errno("cannot write " + tmp);
  if (::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()) || ::fsync(fd.get()) != 0) {
    Status s = Status::from_errno("cannot write " + tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::from_errno("cannot write " + path);
  return Status::ok();
}

Result<JobFile> job_file_read(const std::string& store_path) {
  const std::string path = job_file_path(store_path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("cannot read " + path);
  std::vector<uint8_t> bytes;
  uint8_t buf[65536];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) {
    bytes.insert(bytes.end(), buf, buf + n);
    if (bytes.size() > kMaxFile) return Status::error(EFBIG, path + " is too large");
  }
  if (n < 0) return Status::from_errno("cannot read " + path);
  fs::WireReader r(bytes);
  JobFile job;
  uint64_t magic = 0;
  if (!(r.u64(&magic) && magic == kMagic && r.u32(&job.protocol) && r.i32(&job.rank) && r.i32(&job.nranks) &&
        r.u64(&job.job_key)) ||
      job.nranks < 1 || job.nranks > (1 << 16) || job.rank < 0 || job.rank >= job.nranks) {
    return Status::error(EINVAL, path + " is not a dsdfs job file");
  }
  job.hosts.resize(static_cast<size_t>(job.nranks));
  job.addresses.resize(static_cast<size_t>(job.nranks));
  for (int i = 0; i < job.nranks; ++i) {
    std::span<const uint8_t> a;
    if (!r.str(&job.hosts[static_cast<size_t>(i)], 255) || !r.bytes(&a, 64 * 1024)) {
      return Status::error(EINVAL, path + " is truncated");
    }
    job.addresses[static_cast<size_t>(i)].assign(a.begin(), a.end());
  }
  if (!r.done()) return Status::error(EINVAL, path + " has trailing bytes");
  return job;
}

}  // namespace dsdfs::launcher
