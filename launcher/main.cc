// SPDX-License-Identifier: Apache-2.0
// dsdfs-launch: one per node. Parses options, bootstraps through MPI, mounts,
// serves until SIGINT/SIGTERM, then unmounts and removes the store.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/host.h"
#include "common/log.h"
#include "daemon/cluster.h"
#include "daemon/control.h"
#include "daemon/filesystem.h"
#include "daemon/wire_codec.h"
#include "daemon/mount.h"
#include "daemon/options.h"
#include "daemon/store.h"
#include "launcher/mpi_environment.h"
#include "launcher/signals.h"
#include "launcher/status_file.h"
#include "launcher/wait.h"
#include "launcher/info.h"
#include "launcher/job_file.h"
#include "rdma/transport.h"

#include <condition_variable>
#include <random>
#include <thread>

namespace dsdfs::launcher {
namespace {

// A startup failure with the one line the user sees.
struct StartupError : std::runtime_error {
  StartupError(int exit_code, const std::string& msg) : std::runtime_error(msg), exit_code(exit_code) {}
  int exit_code;
};

[[noreturn]] void fail(const Status& s) { throw StartupError(1, s.context().empty() ? s.to_string() : s.context()); }

Status write_ready_file(const std::string& path, int nranks, const std::string& mountpoint) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::from_errno("cannot write ready file " + tmp);
  std::string text = "ranks " + std::to_string(nranks) + "\nmountpoint " + mountpoint + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Status::from_errno("cannot write ready file " + path);
  }
  return Status::ok();
}

// What every rank tells the others at bootstrap.
struct Hello {
  uint32_t protocol = DSDFS_PROTOCOL_VERSION;
  std::string version = DSDFS_VERSION;
  std::string host;
  std::vector<uint8_t> address;  // UCX worker address
};

std::vector<uint8_t> hello_encode(const Hello& h) {
  fs::WireWriter w;
  w.u64(0x73666473640a0000ULL).u32(h.protocol).str(h.version).str(h.host).bytes(h.address);
  return w.take();
}

bool hello_decode(std::span<const uint8_t> data, Hello* h) {
  fs::WireReader r(data);
  uint64_t magic;
  std::span<const uint8_t> addr;
  if (!(r.u64(&magic) && magic == 0x73666473640a0000ULL && r.u32(&h->protocol) && r.str(&h->version, 64) &&
        r.str(&h->host, 256) && r.bytes(&addr, 1 << 20) && r.done())) {
    return false;
  }
  h->address.assign(addr.begin(), addr.end());
  return true;
}

// Exchanges hellos (one allgather), refuses mixed versions, connects the
// transport. Returns every rank's host name and worker address.
JobFile bootstrap(MpiEnvironment& mpi, rdma::Transport& transport, const std::string& host) {
  Hello mine;
  mine.host = host;
  mine.address = transport.local_address();
  auto all = mpi.allgather(hello_encode(mine));
  if (!all) fail(all.status());
  std::vector<std::vector<uint8_t>> addresses;
  std::vector<std::string> hosts;
  std::string mismatch;
  for (int r = 0; r < mpi.size(); ++r) {
    Hello h;
    if (!hello_decode(all.value()[r], &h)) {
      fail(Status::error(EPROTO, "rank " + std::to_string(r) + " is not a dsdfs-launch of a compatible version"));
    }
    if (h.protocol != mine.protocol || h.version != mine.version) {
      mismatch += (mismatch.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " on " + h.host +
                  " runs dsdfs " + h.version + " (protocol " + std::to_string(h.protocol) + ")";
    }
    addresses.push_back(std::move(h.address));
    hosts.push_back(std::move(h.host));
  }
  if (!mismatch.empty()) {
    fail(Status::error(EPROTO, "ranks run different dsdfs versions: this rank runs " + mine.version + " (protocol " +
                                   std::to_string(mine.protocol) + "), " + mismatch +
                                   "; start every rank with the same dsdfs-launch"));
  }
  if (auto s = transport.connect_all(addresses); !s) fail(Status::error(s.err(), "connecting to the other ranks: " + s.to_string()));
  JobFile job;
  job.protocol = DSDFS_PROTOCOL_VERSION;
  job.rank = mpi.rank();
  job.nranks = mpi.size();
  job.job_key = transport.options().job_key;
  job.hosts = std::move(hosts);
  job.addresses = std::move(addresses);
  return job;
}

// --rejoin: this node's daemon of a running job died. What it left: the
// status file (rank, store) and, in the store, the job file (job key, every
// rank's host and worker address).
struct Rejoining {
  StatusInfo last;
  JobFile job;
};

Rejoining find_dead_daemon(const std::string& mountpoint, const std::string& host) {
  Rejoining out;
  const std::string path = status_file_path(mountpoint);
  if (!status_file_read(path, &out.last, false)) {
    throw StartupError(1, "--rejoin: no dsdfs daemon of a job ran at " + mountpoint + " on " + host + " (no " + path +
                              "); give the mount point as this node has it");
  }
  if (::kill(out.last.pid, 0) == 0 || errno == EPERM) {
    throw StartupError(1, "--rejoin: rank " + std::to_string(out.last.rank) + "'s daemon at " + mountpoint +
                              " still runs (pid " + std::to_string(out.last.pid) +
                              "); --rejoin restarts a daemon that died");
  }
  if (out.last.ranks < 2) {
    throw StartupError(1, "--rejoin: the daemon at " + mountpoint +
                              " was a one-rank file system: there is no job to rejoin; start dsdfs-launch anew");
  }
  if (out.last.store.empty()) throw StartupError(1, "--rejoin: " + path + " names no store");
  auto job = job_file_read(out.last.store);
  if (!job) {
    throw StartupError(1, "--rejoin: " + job.status().to_string() +
                              " (the store of a daemon that died before its job had started cannot rejoin)");
  }
  if (job->protocol != DSDFS_PROTOCOL_VERSION) {
    throw StartupError(1, "--rejoin: the job runs protocol " + std::to_string(job->protocol) + ", this dsdfs-launch " +
                              std::to_string(DSDFS_PROTOCOL_VERSION) + "; use the job's dsdfs-launch");
  }
  if (job->nranks < 2) throw StartupError(1, "--rejoin: a one-rank job has nobody to rejoin; start it anew");
  out.job = std::move(job).value();
  return out;
}

// Ends the process with one clear line if bootstrap takes longer than the
// timeout (a rank that never arrives). It cannot unwind MPI, so it cleans up
// what it can itself: the store this start created, the status file, a mount.
class BootstrapWatchdog {
 public:
  BootstrapWatchdog(double timeout_s, std::string created_store, std::string status_path,
                    std::string mountpoint = {})
      : thread_([=, this] {
          std::unique_lock lock(mu_);
          if (cv_.wait_for(lock, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)),
                           [this] { return done_; })) {
            return;
          }
          std::fprintf(stderr,
                       "dsdfs-launch: error: bootstrap timed out after %g s: not every rank of the job started "
                       "dsdfs-launch (see the other ranks' errors, or raise --bootstrap-timeout)\n",
                       timeout_s);
          if (!mountpoint.empty()) fs::fuse_unmount_lazy(mountpoint);
          if (!created_store.empty()) fs::remove_tree(created_store);
          ::unlink(status_path.c_str());
          std::fflush(stderr);
          ::_exit(1);
        }) {}
  ~BootstrapWatchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

int serve(int argc, char** argv, const fs::Options& options) {
  SignalThread::block_all_signals();
  // The kernel has applied the caller's umask to every mode we are handed.
  ::umask(0);
  // Every file the kernel knows costs a descriptor (up to a budget): take all we may.
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  const std::string host = short_host_name();
  // A rejoining daemon finds its job from what its dead predecessor left,
  // without MPI (the job's MPI world has gone on without it).
  const bool rejoin = options.rejoin;
  std::optional<Rejoining> rejoining;
  std::optional<MpiEnvironment> mpi_env;
  std::string rejoin_mountpoint;
  if (rejoin) {
    // Which daemon died here, before anything is touched; then its mount
    // (stale: Transport endpoint is not connected) is cleaned up.
    std::string path = options.mountpoint;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    rejoining = find_dead_daemon(fs::canonical_path(path), host);
    auto m = fs::mountpoint_prepare(options.mountpoint);
    if (!m) fail(m.status());
    rejoin_mountpoint = m.value();
  } else {
    mpi_env.emplace(&argc, &argv);
    mpi_env->set_finalize_timeout(
        std::chrono::milliseconds(static_cast<int64_t>(options.bootstrap_timeout_s * 1000) + 5000));
  }
  const int rank = rejoin ? rejoining->job.rank : mpi_env->rank();
  const int nranks = rejoin ? rejoining->job.nranks : mpi_env->size();
  log_set_rank(rank);
  // srun without PMI support makes every task a singleton "rank 0 of 1":
  // they would all serve separate file systems. Refuse that.
  if (const char* nt = std::getenv("SLURM_STEP_NUM_TASKS"); !rejoin && nt && std::atoi(nt) > 1 && nranks == 1) {
    throw StartupError(1, std::string("srun started ") + nt +
                              " tasks but MPI sees only this one: srun was run without PMI support; use "
                              "srun --mpi=pmix (or set MpiDefault=pmix in slurm.conf)");
  }

  auto expand = [&](const std::string& pattern) {
    auto r = fs::expand_placeholders(pattern, rank, host);
    if (!r) throw StartupError(2, r.status().context());
    return r.value();
  };
  auto mountpoint = rejoin ? Result<std::string>(rejoin_mountpoint) : fs::mountpoint_prepare(expand(options.mountpoint));
  if (!mountpoint) fail(mountpoint.status());
  const std::string store_pattern =
      rejoin ? rejoining->last.store
             : (options.store.empty() ? fs::default_store_pattern(mountpoint.value()) : options.store);
  auto store = fs::Store::open(expand(store_pattern), mountpoint.value());
  if (!store) fail(store.status());
  if (rejoin) {
    // The cache's index died with the daemon.
    fs::remove_tree(store->cache_path());
    fs::make_dirs(store->cache_path(), 0700);
  }
  const std::string status_path = status_file_path(mountpoint.value());
  StatusInfo status{rejoin ? "rejoining" : "bootstrapping", ::getpid(), rank, nranks, host, store->path()};
  status_file_write(status_path, status);
  struct StatusGuard {
    std::string path;
    ~StatusGuard() { ::unlink(path.c_str()); }
  } status_guard{status_path};
  // A start that fails from here on removes a store it created (never one
  // that held data before).
  struct StoreGuard {
    fs::Store* store;
    bool armed;
    ~StoreGuard() {
      if (armed && store->created()) store->remove();
    }
  } store_guard{&store.value(), true};
  DSDFS_INFO("rank %d of %d on %s: mount %s, store %s%s", rank, nranks, host.c_str(), mountpoint->c_str(),
             store->path().c_str(), rejoin ? " (rejoining the job)" : "");

  // SIGTERM/SIGINT: before the file system serves (bootstrap, a rank that
  // never arrives) clean up and leave at once; afterwards stop the loop.
  fs::FuseMount mount;
  std::atomic<bool> serving{false};
  // `filesystem` below while it exists; the mutex keeps it alive through a
  // signal's before_exit().
  std::mutex serving_fs_mu;
  fs::Filesystem* serving_fs = nullptr;  // guarded by serving_fs_mu
  const std::string created_store = store->created() ? store->path() : std::string();
  const std::string canon_mnt = mountpoint.value();
  SignalThread signals([&mount, &serving, &serving_fs_mu, &serving_fs, created_store, status_path,
                        canon_mnt](int sig) {
    if (serving.load()) {
      {
        std::lock_guard lock(serving_fs_mu);
        if (serving_fs != nullptr) serving_fs->before_exit();
      }
      return mount.exit();
    }
    std::fprintf(stderr, "dsdfs-launch: error: stopped by signal %d during startup\n", sig);
    if (fs::mount_type_at(canon_mnt) == "fuse.dsdfs") fs::fuse_unmount_lazy(canon_mnt);
    if (!created_store.empty()) fs::remove_tree(created_store);
    ::unlink(status_path.c_str());
    std::fflush(nullptr);
    ::_exit(1);
  }, [&mount, &serving] {
    // (Only once serving: a stop before that has left already.)
    if (serving.load() && !mount.abort_connection()) {
      DSDFS_WARN("cannot abort the FUSE connection (no fusectl, not root): the stop waits for the blocked request");
    }
  });
  signals.prepare_loop_thread();
  // MPI collectives have no timeout: a rank that never arrives would hold the
  // others in the bootstrap forever.
  auto boot_watchdog = std::make_unique<BootstrapWatchdog>(options.bootstrap_timeout_s, created_store, status_path);

  // Destruction runs in reverse: filesystem, cluster, then the transport.
  fs::Stats stats;
  std::unique_ptr<rdma::Transport> transport;
  if (nranks > 1) {
    rdma::Options topts;
    topts.rank = rank;
    topts.nranks = nranks;
    if (rejoin) {
      topts.job_key = rejoining->job.job_key;
    } else {
      auto key = mpi_env->broadcast(std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32));
      if (!key) fail(key.status());
      topts.job_key = key.value();
    }
    topts.default_timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000));
    // A peer silent for 10 timeouts while calls to it time out is dead (a node
    // cut off or frozen that long); UCX over TCP may take many minutes.
    topts.dead_after = 10 * topts.default_timeout;
    topts.bulk_mode = options.bulk;
    // The progress thread starts inside create(): bind this thread near the
    // NIC for that moment so the progress thread inherits the placement.
    std::string placement = bind_near_nic();
    auto t = rdma::Transport::create(topts);
    restore_binding();
    DSDFS_INFO("%s", placement.c_str());
    if (!t) fail(Status::error(t.err(), "cannot start UCX: " + t.status().to_string()));
    transport = std::move(t).value();
  }
  fs::Cluster cluster(rank, nranks, transport.get(),
                      std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000)), 8, &stats);
  fs::Filesystem filesystem(options, &store.value(), &cluster, &stats, host, mountpoint.value());
  // `dsdfs stop`: as a SIGTERM (the signal thread takes it; every other thread blocks it).
  filesystem.set_stop_hook([] { ::kill(::getpid(), SIGTERM); });
  filesystem.register_rpcs();
  {
    std::lock_guard lock(serving_fs_mu);
    serving_fs = &filesystem;
  }
  struct ForgetFs {
    std::mutex* mu;
    fs::Filesystem** p;
    ~ForgetFs() {
      std::lock_guard lock(*mu);
      *p = nullptr;
    }
  } forget_fs{&serving_fs_mu, &serving_fs};
  // A rejoining daemon serves no other rank's request until its directories
  // have caught up with the job's.
  if (rejoin) cluster.hold_requests();
  if (auto s = cluster.start(); !s) fail(s);
  fs::Filesystem::RejoinCounts rejoined;
  if (rejoin) {
    JobFile& job = rejoining->job;
    job.addresses[static_cast<size_t>(rank)] = transport->local_address();
    if (auto s = transport->connect_all(job.addresses); !s) {
      fail(Status::error(s.err(), "connecting to the other ranks: " + s.to_string()));
    }
    cluster.set_hosts(job.hosts);
    if (auto s = filesystem.rejoin(&rejoined); !s) fail(Status::error(s.err(), "--rejoin: " + s.to_string()));
    for (int r = 0; r < nranks; ++r) {
      if (r != rank && !cluster.address_of(r).empty()) job.addresses[static_cast<size_t>(r)] = cluster.address_of(r);
    }
    if (auto s = job_file_write(store->path(), job); !s) DSDFS_WARN("%s", s.to_string().c_str());
  } else if (transport) {
    JobFile job = bootstrap(*mpi_env, *transport, host);
    cluster.set_hosts(job.hosts);
    // For a rejoin of this rank if its daemon dies.
    if (auto s = job_file_write(store->path(), job); !s) DSDFS_WARN("%s (this rank cannot rejoin)", s.to_string().c_str());
  } else {
    cluster.set_hosts({host});
  }
  boot_watchdog.reset();
  if (auto s = mount.mount(mountpoint.value(), &filesystem, options); !s) fail(s);
  filesystem.set_session(mount.session());
  // The `dsdfs` command's channel to this daemon (daemon/control.h).
  std::unique_ptr<fs::ControlServer> control;
  if (auto c = fs::ControlServer::start(store->path() + "/control.sock",
                                        [&filesystem](const std::string& r) { return filesystem.control(r); })) {
    control = std::move(c).value();
    filesystem.set_control_path(control->path());
  } else {
    DSDFS_WARN("no control socket, so the dsdfs command cannot reach this rank: %s", c.status().to_string().c_str());
  }
  status.state = "mounted";
  status_file_write(status_path, status);
  if (!rejoin && nranks > 1) {
    BootstrapWatchdog watchdog(options.bootstrap_timeout_s, std::string(), status_path, mountpoint.value());
    if (auto s = mpi_env->barrier(); !s) fail(s);
  }
  // MPI's work is done. Finalizing now also keeps a rank's later death from
  // taking the others down: Slurm's PMIx plugin kills the whole step when a
  // rank still connected to PMIx dies.
  if (!rejoin && nranks > 1) mpi_env->finalize_with_timeout(std::chrono::seconds(10), 1);
  // Its files are claimed again while the mount serves (the claims take a
  // round trip each, and other ranks may ask for them meanwhile).
  std::thread publisher;
  struct JoinPublisher {
    std::thread* t;
    ~JoinPublisher() {
      if (t->joinable()) t->join();
    }
  } join_publisher{&publisher};
  if (rejoin) {
    cluster.release_requests();
    publisher = std::thread([&filesystem, &rejoined, rank] {
      SignalThread::block_all_signals();
      filesystem.publish_files(&rejoined);
      filesystem.fill_shard(&rejoined);
      DSDFS_WARN(
          "rank %d is back in the job: %zu directories caught up, %zu files served again, %zu removed (another rank "
          "made that name meanwhile), %zu lost (their directory was removed meanwhile), %zu not yet published "
          "(their shard did not answer); its shard %s (%zu names of other ranks claimed there again)",
          rank, rejoined.directories, rejoined.published, rejoined.replaced, rejoined.orphaned, rejoined.unreachable,
          rejoined.shard_whole ? "is whole again" : "stays unsure (a rank did not fill it)", rejoined.shard_filled);
    });
  }
  serving.store(true);
  if (signals.stop_requested()) mount.exit();
  filesystem.set_ready();
  status.state = "ready";
  status_file_write(status_path, status);
  std::string ready_file;
  if (!options.ready_file.empty()) {
    ready_file = expand(options.ready_file);
    if (auto s = write_ready_file(ready_file, nranks, mountpoint.value()); !s) fail(s);
  }
  store_guard.armed = false;
  Status loop_status;
  if (!signals.stop_requested()) loop_status = mount.loop(options);
  signals.loop_ended();
  if (!ready_file.empty()) ::unlink(ready_file.c_str());
  status.state = "stopping";
  status_file_write(status_path, status);
  // Fast first: mpirun sends SIGKILL soon after SIGTERM (Open MPI's
  // odls_base_sigkill_timeout, 1 s by default; docs/slurm.md). Nothing below
  // may wait for the kernel: requests still in flight on our mount hold
  // directory locks that the notifier, the RPC workers (which act through
  // the mount) or applications may be waiting for, and nobody answers them
  // now. So the connection is aborted first (ends them all), then the
  // threads that may have been waiting are joined: the notifier before the
  // session is destroyed (it uses the session), the RPC workers after.
  mount.abort();
  control.reset();  // (a request being answered ends with its calls' timeout at most)
  filesystem.stop();
  mount.unmount();
  cluster.stop();
  int rc = 0;
  if (!loop_status) {
    DSDFS_ERROR("%s", loop_status.to_string().c_str());
    rc = 1;
  }
  if (!options.keep_store) {
    if (auto s = store->remove(); !s) {
      DSDFS_ERROR("%s", s.to_string().c_str());
      rc = 1;
    }
  }
  if (transport) transport->shutdown();
  // Every rank calls MPI_Finalize (a mix of finalizing and skipping ranks can
  // hang Open MPI); it waits for the other ranks, so a dead one could hold us
  // forever: past a few seconds we leave without it, everything is cleaned up.
  DSDFS_INFO("stopped%s", signals.stop_signal() ? " on a signal" : " (unmounted from outside)");
  if (signals.stop_requested() && (rejoin || nranks > 1)) {
    // A stop by signal is the job ending (scancel, mpirun's stop sequence):
    // MPI_Finalize could not complete (mpirun does not serve the final fence
    // while it signals its ranks, and SIGKILL follows), and everything is
    // cleaned up already.
    std::fflush(nullptr);
    ::_exit(rc);
  }
  if (rejoin) {
    std::fflush(nullptr);
    ::_exit(rc);
  }
  mpi_env->finalize_with_timeout(std::chrono::seconds(2), rc);
  return rc;
}

}  // namespace
}  // namespace dsdfs::launcher

int main(int argc, char** argv) {
  using namespace dsdfs;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = fs::options_parse(args);
  if (!parsed) {
    std::fprintf(stderr, "dsdfs-launch: error: %s\n", parsed.status().context().c_str());
    return 2;
  }
  const fs::Options& options = parsed.value();
  if (options.show_help) {
    std::fputs(fs::options_usage().c_str(), stdout);
    return 0;
  }
  if (options.show_version) {
    std::printf("dsdfs-launch %s (protocol %d)\n", DSDFS_VERSION, DSDFS_PROTOCOL_VERSION);
    return 0;
  }
  log_set_level(options.log_level);
  try {
    if (options.show_info) return launcher::print_info(options);
    if (options.wait_mode) return launcher::run_wait(argc, argv, options);
    return launcher::serve(argc, argv, options);
  } catch (const launcher::StartupError& e) {
    std::fprintf(stderr, "dsdfs-launch: error: %s\n", e.what());
    return e.exit_code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsdfs-launch: error: %s\n", e.what());
    return 1;
  }
}
