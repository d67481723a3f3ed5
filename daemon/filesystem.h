// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fuse_lowlevel.h>
#include <sys/statvfs.h>

#include <atomic>
#include <functional>
#include <condition_variable>
#include <thread>
#include <memory>
#include <optional>
#include <string>

#include <set>
#include <shared_mutex>
#include <span>
#include <vector>

#include "common/hash.h"
#include "common/mutex.h"
#include "daemon/backing_files.h"
#include "daemon/buffer_pool.h"
#include "daemon/content_gens.h"
#include "daemon/peers.h"
#include "daemon/dir_index.h"
#include "daemon/inode_table.h"
#include "daemon/locator.h"
#include "daemon/messages.h"
#include "daemon/notifier.h"
#include "daemon/options.h"
#include "daemon/moved_files.h"
#include "daemon/lost_opens.h"
#include "daemon/owner_hints.h"
#include "daemon/recent_lookups.h"
#include "daemon/offered_files.h"
#include "daemon/pending_names.h"
#include "daemon/protocol.h"
#include "daemon/remote_cache.h"
#include "daemon/stage.h"
#include "daemon/rma_exports.h"
#include "daemon/stats.h"
#include "daemon/write_fds.h"
#include "daemon/store.h"

namespace dsdfs::fs {

struct FileHandle;  // daemon/file_handle.h
// A malformed request from another rank: logged, answered EPROTO.
Status bad_request(const char* what);
namespace testing {
class InProcessCluster;  // tests/unit/daemon/in_process_cluster.h: ranks in one process, no FUSE
}

// One name of a merged directory listing.
struct DirEntryInfo {
  std::string name;
  uint8_t type;   // DT_*
  uint64_t ino;   // global inode number
  bool local;     // in this rank's replica (a directory or an owned file)
};

// The file system one rank serves: the operations of FUSE lowlevel requests
// on this node, answered from the local store. One instance per process,
// created before the session and destroyed after it; thread-safe (the FUSE
// loop is multi-threaded). The ops return their results; the FUSE front end
// (fuse_ops.cc) replies. None holds a lock across a syscall or a network wait.
class Filesystem {
 public:
  // `mountpoint` is this rank's expanded, canonical mount point: the owner
  // applies writes that other ranks forward through it, so that its own
  // kernel's page cache and sizes stay right.
  Filesystem(Options options, Store* store, Peers* peers, Stats* stats, std::string host,
             std::string mountpoint);
  ~Filesystem();

  // Registers the RPC handlers. REQUIRES: before cluster->start().
  void register_rpcs();
  // Lets the daemon tell its kernel about changes made by other ranks.
  void set_session(struct fuse_session* se) { notifier_.set_session(se); }
  // Every rank has mounted: user.dsdfs.ready appears on the root.
  void set_ready() { ready_.store(true); }
  // The answer to a request of the `dsdfs` command on the control socket
  // (daemon/control.h): "ranks" (one line per rank: state, host, uptime,
  // files, store, cache, counters). Its first line is "ok" or "error: ...".
  std::string control(const std::string& request);
  // What a stop asked for by `dsdfs stop` (kJobStop) does on this rank: what
  // a SIGTERM does (launcher/main.cc). Set before the peers start.
  void set_stop_hook(std::function<void()> hook) { stop_hook_ = std::move(hook); }
  // Where the control socket is (user.dsdfs.control on the mount's root).
  void set_control_path(std::string path) {
    MutexLock lock(control_mu_);
    control_path_ = std::move(path);
  }
  // Stops background threads; the session is not used after it returns.
  // REQUIRES: the FUSE loop ended and the connection is aborted
  // (FuseMount::abort), so that no notification can be blocked in the kernel.
  void stop() {
    notifier_.stop();
    write_fds_.close_all(std::chrono::milliseconds(0));
    if (stage_) stage_->stop();  // copies end after the file they are at
  }
  // A stop is coming: closes the fds this daemon holds on its own mount
  // while the FUSE loop can still answer their FLUSH and RELEASE.
  // REQUIRES: before the loop is asked to end.
  void before_exit() { write_fds_.close_all(); }

  // A daemon restarted on its node while its job runs (dsdfs-launch
  // --rejoin), in this order: rejoin() asks the job to let this rank in
  // again (through any live rank, to the coordinator, which tells every
  // rank the new address) and makes the store's directories the job's ones
  // (renamed, made or removed as the job did while it was down); then,
  // once requests are served again, publish_files() claims every file of
  // the store at its shard again. REQUIRES: the peers started with their
  // requests held until rejoin() returns; before the mount.
  struct RejoinCounts {
    size_t directories = 0;
    size_t published = 0;    // files claimed for this rank again
    size_t replaced = 0;     // removed: another rank made a file (or directory) of that name meanwhile
    size_t orphaned = 0;     // lost: their directory was removed meanwhile
    size_t unreachable = 0;  // kept, but their shard did not answer
    size_t shard_filled = 0;  // names other ranks claimed at this rank's shard again
    bool shard_whole = false;  // every live rank did: the shard knows every name again
  };
  Status rejoin(RejoinCounts* counts);
  void publish_files(RejoinCounts* counts);
  // Last: has every live rank claim at this rank's shard the files it holds
  // whose names are homed here (kShardFill), then tells them the shard is
  // whole again.
  void fill_shard(RejoinCounts* counts);

  // The lowlevel operations table; userdata must be this Filesystem.
  static const struct fuse_lowlevel_ops* ops();

  // A global inode number: the rank in the top 16 bits, the store's below, so
  // numbers are stable for a file's life and distinct across ranks.
  uint64_t global_ino(ino_t store_ino) const {
    return (static_cast<uint64_t>(rank_) << 48) | (store_ino & ((uint64_t{1} << 48) - 1));
  }

  // The version of the owned file open as fd, whose stat is `st`, as other
  // ranks see it (file_version with its count of changes and its identity).
  // A handler that hands a version out calls content_gens_.seen() before the
  // stat (owned_version does both).
  uint64_t version_of(const struct stat& st, int fd) const;
  // The stat and version of the file at dir_fd/name, to hand out to a peer:
  // counted from before the stat, its dirty pages written back first, stat and
  // identity of one inode.
  // With bytes and inline_max: a regular file of at most inline_max bytes
  // comes whole in *bytes, where bytes_of_version can read it.
  Result<uint64_t> owned_version(int dir_fd, const std::string& name, struct stat* st, uint32_t inline_max = 0,
                                 std::vector<uint8_t>* bytes = nullptr);
  // The same for the file open as fd (open_for_identity), whose fstat is *st.
  // may_wait false: EAGAIN instead of waiting for the write-back.
  Result<uint64_t> version_of_open(int fd, struct stat* st, bool may_wait, uint32_t inline_max = 0,
                                   std::vector<uint8_t>* bytes = nullptr);
  // All bytes of the regular file open as fd, whose fstat is st, if its pages
  // are in memory and it is still of `version` after the read; else none.
  std::vector<uint8_t> bytes_of_version(int fd, const struct stat& st, uint64_t version);

  int rank() const { return rank_; }
  Peers& peers() { return *peers_; }
  const std::string& host() const { return host_; }
  const Options& options() const { return options_; }
  Stats& stats() { return *stats_; }

  // FUSE operations (see fuse_lowlevel.h for their contracts). None sees
  // fuse_req_t: each returns its result or a Status, and the FUSE front end
  // (fuse_ops.cc) replies once, converting the error in one place
  // (kernel_errno). Open files are FileHandles, which the front end keeps in
  // fi->fh and passes back as `fh`.
  void init(struct fuse_conn_info* conn);
  // Why opens cannot pass through on this connection, or nullptr.
  const char* passthrough_off_reason(const struct fuse_conn_info* conn) const;
  // Who asks: the front end fills it from the request's context.
  struct Caller {
    pid_t tid = 0;  // the calling thread (FUSE's "pid" is the caller's thread id)
    uid_t uid = 0;
    gid_t gid = 0;
  };
  // How long the kernel keeps the attributes of another rank's file. Its
  // kernel inode stands for one version of the file (InodeTable::lookup_remote:
  // a new size or mtime is a new inode), and its names are never cached (zero
  // entry timeout), so every path walk asks the owner and the LOOKUP's answer
  // refreshes them: stat(2), open(2) and access(2) of a path always see the
  // owner's attributes. What this timeout lets the kernel answer itself is what
  // it asks without a path, for a descriptor it already holds: fstat(2), the
  // size check of a read, lseek(SEEK_END), the permission check of an open
  // after its lookup. Those show the version the descriptor has open (as its
  // reads do), and a chmod or chown on the owner up to this long late.
  static constexpr double kRemoteAttrTimeout = 1.0;
  // Attributes for the kernel, and how long it may keep them.
  struct Attr {
    struct stat st;
    double timeout;
  };
  // A handle for the kernel: what fi->fh gets, and how its pages are used.
  // The front end releases `handle` into fi->fh once the kernel has it.
  struct OpenReply {
    std::unique_ptr<FileHandle> handle;
    bool direct_io = false;
    bool keep_cache = false;
    bool owned = false;  // the kernel inode's own store file: it may pass through (pass_through)
  };
  struct CreateReply {
    struct fuse_entry_param e;
    OpenReply open;
  };
  // What a read returns: `size` bytes of `fd` from `pos` (spliced where the
  // kernel allows; fd lives as long as the handle), or, with fd < 0, `bytes`.
  struct ReadReply {
    int fd = -1;
    off_t pos = 0;
    size_t size = 0;
    std::vector<uint8_t> bytes;
  };
  // A name that is not there is an entry with ino 0 (a negative entry,
  // never cached: another rank may create the name at any time).
  Result<struct fuse_entry_param> lookup(fuse_ino_t parent, const char* name, const Caller& caller);
  void forget(fuse_ino_t ino, uint64_t nlookup);
  // fh: the handle of an open file the kernel asks through, or 0.
  // tid: the calling thread (RecentLookups), 0 if unknown.
  Result<Attr> getattr(fuse_ino_t ino, uint64_t fh, pid_t tid = 0);
  Result<Attr> setattr(fuse_ino_t ino, const struct stat& attr, int to_set, uint64_t fh, const Caller& caller);
  Result<std::string> readlink(fuse_ino_t ino);  // the target
  Result<struct fuse_entry_param> mknod(fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev,
                                        const Caller& caller);
  Result<struct fuse_entry_param> mkdir(fuse_ino_t parent, const char* name, mode_t mode, const Caller& caller);
  Result<struct fuse_entry_param> symlink(const char* link, fuse_ino_t parent, const char* name,
                                          const Caller& caller);
  Result<struct fuse_entry_param> link(fuse_ino_t ino, fuse_ino_t parent, const char* name, const Caller& caller);
  Status unlink(fuse_ino_t parent, const char* name);
  Status rmdir(fuse_ino_t parent, const char* name);
  Status rename(fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname, unsigned int flags);
  // If the kernel cannot take the reply, the front end forgets e.ino once
  // and drops the handle.
  Result<CreateReply> create(fuse_ino_t parent, const char* name, mode_t mode, int flags, const Caller& caller);
  Result<OpenReply> open(fuse_ino_t ino, int flags, const Caller& caller);
  Result<ReadReply> read(fuse_ino_t ino, uint64_t fh, size_t size, off_t off);
  // writepage: the kernel writes back dirty pages of inode ino (FUSE_WRITE_CACHE), through
  // whichever writable handle of it it picked (fh), which may hold another file.
  Result<size_t> write_buf(fuse_ino_t ino, uint64_t fh, struct fuse_bufvec* in, off_t off,
                           bool writepage = false);  // bytes written
  void release(uint64_t fh);
  // Kernel passthrough (daemon/backing_files.h; docs/architecture.md,
  // "Kernel passthrough"): on when init() found the build, the kernel and the
  // daemon's privileges allowing it and --passthrough is not off.
  bool passthrough() const { return passthrough_.load(); }
  // Before the kernel gets the open reply `o` of kernel inode `ino`: the
  // backing id of its store file for fi->backing_id (registered by `reg` for
  // the inode's first handle), or 0 (through the daemon); ESTALE where the
  // inode's other handles pass through and this one cannot (its name holds
  // another file now).
  Result<int> pass_through(fuse_ino_t ino, OpenReply& o, const BackingFiles::Register& reg);
  // A handle goes (its release, or an open reply the kernel did not take):
  // the inode's last one gives its backing id back through `unreg`.
  void unpass(FileHandle& h, const BackingFiles::Unregister& unreg);
  // On open handles (fi->fh).
  Status fsync(uint64_t fh, int datasync);
  Status fallocate(uint64_t fh, int mode, off_t off, off_t len);
  Result<size_t> copy_file_range(uint64_t fh_in, off_t off_in, uint64_t fh_out, off_t off_out, size_t len,
                                 int flags);  // bytes copied
  // Directory handles (fs_dir.cc); the front end keeps them in fi->fh.
  // A handle: a snapshot of the directory's names, taken at its first readdir.
  Result<uint64_t> opendir(fuse_ino_t ino);
  // Takes an entry for the kernel's buffer: false if it did not fit (the
  // listing stops there; a readdirplus entry's lookup is undone).
  using DirSink = std::function<bool(const char* name, const struct fuse_entry_param& e, off_t next)>;
  // The entries from offset `off` on, each with its attributes if `plus`.
  Status readdir(fuse_ino_t ino, uint64_t fh, off_t off, bool plus, const DirSink& add);
  void releasedir(uint64_t fh);
  Status fsyncdir(uint64_t fh, int datasync);
  Result<struct statvfs> statfs();  // the store's file system
  // Extended attributes (fs_xattr.cc).
  Status setxattr(fuse_ino_t ino, const char* name, const char* value, size_t size, int flags);
  Result<std::string> getxattr(fuse_ino_t ino, const char* name);
  Result<std::string> listxattr(fuse_ino_t ino);  // NUL-terminated names, dsdfs's own left out
  Status removexattr(fuse_ino_t ino, const char* name);

 private:
  friend class testing::InProcessCluster;

  // Looks `name` up under `parent` in the store and fills `e` (counts a lookup).
  int do_lookup(const Inode& parent, const char* name, struct fuse_entry_param* e);
  // The entry for the object fd (an O_PATH handle) found as parent/name.
  // known_dir_id: the directory's id (it may already be removed).
  int entry_of(const Inode& parent, const char* name, UniqueFd fd, struct fuse_entry_param* e,
               uint64_t known_dir_id = 0);
  // Whether the store file of a kernel inode that a lookup just found lost
  // its last name since (another rank's request): then the lookup finds
  // nothing here.
  bool lost_its_name(const Inode& inode);
  // Looks `name` up in the whole namespace: the local store, else its owner.
  // With `bytes`: those of a small remote file that came with its attributes.
  int lookup_any(const Inode& parent, const char* name, struct fuse_entry_param* e,
                 std::shared_ptr<const std::vector<uint8_t>>* bytes = nullptr);
  // The owner of (dir, name) if another rank owns it: asks the shard (or,
  // if the shard is dead, every rank). ENOENT if nobody does.
  Result<int> find_owner(uint64_t dir, const std::string& name);
  // Another live rank whose store holds a file (dir, name), asked directly
  // (kOwnFind to every rank); -1 if none does.
  int owner_by_asking_all(uint64_t dir, const std::string& name);
  // Attributes and version of (dir, name) from its owner; with `data`, also
  // all bytes of a regular file of at most msg::kInlineMax bytes where the
  // owner had them in memory (else data is left empty).
  int remote_stat(int owner, uint64_t dir, const std::string& name, struct stat* st, uint64_t* version,
                  std::vector<uint8_t>* data = nullptr);
  int fill_remote_entry(int owner, uint64_t dir, const std::string& name, struct fuse_entry_param* e,
                        std::shared_ptr<const std::vector<uint8_t>>* bytes = nullptr);
  // Fills the whole cache entry of a small file from `bytes` (all of them, of
  // its version): false if it cannot (another open is fetching it, a size
  // that does not match), and the fetch does it instead.
  bool fill_cache(CacheEntry& c, const std::vector<uint8_t>& bytes);
  // Path of (dir, name) through this rank's own mount point.
  Result<std::string> mount_path(uint64_t dir, const std::string& name);
  // An owner-side handler's fd of its file: on this rank's mount, or, while
  // `direct` is held, the store's file itself (the kernel knows no inode of
  // it; see InodeTable::DirectHold).
  struct OwnerFd {
    UniqueFd fd;
    InodeTable::DirectHold direct;
  };
  // The file at dir/name in the store (st: its fstatat), opened with flags:
  // through this rank's mount by handle where the kernel knows it (no
  // directory lock), in the store where it does not, else by a path walk
  // through the mount (a daemon without CAP_DAC_READ_SEARCH).
  Result<OwnerFd> open_in_mount(uint64_t dir, const std::string& name, const struct stat& st, int flags);
  // That (dir, name) is a file held here (of gino, unless 0); its fstatat
  // into *out if given. ENOENT/ESTALE if it is not here.
  Status check_owned(uint64_t dir, const std::string& name, uint64_t gino, struct stat* out = nullptr);
  Result<std::string> store_relative_path(int dir_fd);

  // Claims `name` in `dir` for this rank, then runs make(dir_fd) (a syscall
  // returning 0 or -1 with errno) unless the directory is being removed.
  int claim_and_make(uint64_t dir_id, int dir_fd, const char* name, uint32_t claim_flags,
                     const std::function<int(int dir_fd)>& make);
  // The merged listing of a directory (this replica plus every rank's files).
  int list_dir(uint64_t dir_id, int dir_fd, std::vector<DirEntryInfo>* out);
  // Names of directory `dir` this rank dropped because another rank took
  // them over (kFileDrop), for list_dir's consistency check.
  void note_moved_out(uint64_t dir);
  uint64_t moved_out(uint64_t dir);
  // Locator client side.
  // expect: the stale owner for LocatorShard::kReplaceIf.
  // expect_gen: with kReplaceIf, only that entry of `expect` (0: any).
  Result<LocatorShard::Claim> loc_claim(uint64_t dir, const std::string& name, uint32_t flags, int expect = -1,
                                        uint64_t expect_gen = 0);
  void loc_remove(uint64_t dir, const std::string& name, int owner);

  // Directory mutations: ordered by the coordinator, applied everywhere.
  // made: for a mkdir, the new directory's id.
  int dir_mutate(std::span<const uint8_t> change, uint64_t* made = nullptr);
  // Unlinks a name of this rank's store and forgets it at its shard; 0 or errno.
  int unlink_here(uint64_t dir_id, int dir_fd, const char* name);
  // The namespace operations behind unlink, rmdir and rename, wherever the
  // name lives (dir_fd: the directory's replica here); 0 or an errno.
  int unlink_name(uint64_t dir_id, int dir_fd, const char* name);
  int remove_dir(uint64_t dir_id, const std::string& name);
  // mkdir: the new directory's id, and its replica here if this rank made it
  // (kept even if another rank renames or removes it at once).
  struct MadeDir {
    uint64_t id;
    std::shared_ptr<UniqueFd> fd;
  };
  Result<MadeDir> make_dir(uint64_t dir_id, const std::string& name, mode_t mode, uid_t uid, gid_t gid);
  int rename_name(uint64_t from_id, int from_fd, const char* name, uint64_t to_id, int to_fd, const char* newname,
                  unsigned flags);
  Peers::Reply on_dir_mutate(int source, const DirChange& change);
  Peers::Reply on_dir_apply(int source, const DirChange& c);
  // Creating files in a directory being removed fails: creators hold dir_gate_ shared.
  bool dir_closing(uint64_t dir) const REQUIRES_SHARED(dir_gate_);

  // Opening a name (daemon/fs_open.cc). What an open found: this rank's
  // store file (handle->fd), or another rank's file (a remote handle).
  struct OpenedFile {
    std::unique_ptr<FileHandle> handle;
    int owner = -1;          // rank_ for a file of this rank
    bool created = false;    // made by this open (claimed new, or taken over)
    bool direct_io = false;  // remote writes: every write goes to the owner
    struct stat st {};       // attributes (global inode number)
    uint64_t version = 0;    // remote: the owner's version opened
  };
  // Opens the file (dir, name) holds now, following the name while other
  // ranks create, replace, move or remove it; with `create`, claims the name
  // first (exactly one rank creates it; O_EXCL gives EEXIST to the others).
  // owner_hint: the owner the caller believes, or -1 to ask the shard.
  // ENOENT only when the name is gone (never with `create`). known: what
  // the owner said at this system call's lookup (RecentLookups), used
  // instead of asking it again when the name is still at that owner.
  Result<OpenedFile> open_name(uint64_t dir, const std::string& name, int owner_hint, int flags, mode_t mode,
                               bool create, const RecentLookups::Entry* known = nullptr);
  // An OpenedFile for the store file fd (of this rank), which it takes.
  Result<OpenedFile> opened_here(int fd, bool created);
  // A handle of another rank's file (the version st/version describe). A
  // read-only one of a small file fetches it whole first, unless !fetch.
  // `bytes`: all of the file's bytes of that version (the lookup's), if any.
  int open_remote_handle(int owner, uint64_t dir, const std::string& name, const struct stat& st,
                         uint64_t version, int flags, OpenedFile* out, bool fetch = true,
                         const std::vector<uint8_t>* bytes = nullptr);
  // open() of a remote kernel inode whose file left its name, on the
  // kernel's retry (LostOpens): a handle of the version the inode shows.
  Result<OpenReply> open_as_found(const Inode& inode, int flags);
  // open() of a kernel inode whose file may have changed or moved: opens
  // what its name holds now (direct_io where the kernel inode describes
  // another version). ESTALE if the name is gone.
  Result<OpenReply> open_moved(const Inode& inode, uint64_t dir, const std::string& name, int owner_hint,
                               int flags, const RecentLookups::Entry* known = nullptr);
  // open() of a kernel inode of this rank's store.
  // as_found: the file the kernel inode stands for, even where its name
  // holds another file now (the kernel's retry of an open that cannot
  // follow the name: see Filesystem::open).
  Result<OpenReply> open_local(const std::shared_ptr<Inode>& inode, int flags, const Caller& caller,
                               bool as_found = false);
  // open_local for an owner-side handler going through this rank's own
  // mount: never follows the file to another rank (ESTALE instead).
  Result<OpenReply> open_for_handler(const std::shared_ptr<Inode>& inode, int flags, const Caller& caller);
  // Offered to another rank's O_TRUNC, and the offer still stands.
  bool being_given(const Inode& inode);
  // The end of both: opens the inode's store file (object) for h.
  Result<OpenReply> open_store_file(std::unique_ptr<FileHandle> h, const std::shared_ptr<Inode>& inode,
                                    const UniqueFd& object, int flags, const Caller& caller);
  // Waits while gino is offered to another rank's O_TRUNC; the rank it went
  // to, if it moved.
  std::optional<int> where_offer_went(uint64_t gino);
  // The handle is of the kernel inode's own store file (it may pass through
  // beside the inode's other handles).
  bool handle_is_inodes_own(fuse_ino_t ino, const OpenReply& o);
  static int store_open_flags(int flags);

  // Remote file access.
  // Creates the new local file of a name just claimed from prev_owner (held
  // under name_lock, which is released before the old copies are dropped).
  int take_over(uint64_t dir, const std::string& name, int prev_owner, mode_t mode, int open_flags, int* fd_out,
                NameLock name_lock = {});
  Result<ReadReply> remote_read(const Inode* inode, FileHandle& h, size_t size, off_t off);
  // Bytes [off, off + len) of the file h reads, as the owner has them now
  // (any version, written back first): what lies past h's version.
  Result<std::vector<uint8_t>> read_through(const RemoteRef& ref, uint64_t off, size_t len);
  Result<size_t> remote_write(FileHandle& h, struct fuse_bufvec* in, off_t off);
  // The directory and name under which ref's file is now on its owner, if a
  // rename gave it another one (asked of the owner: kFileFind).
  std::optional<std::pair<uint64_t, std::string>> renamed_to(const RemoteRef& ref);
  // If renamed_to finds one, *ref and the handle take the new name: true.
  bool follow_rename(FileHandle& h, RemoteRef* ref);
  // Remote reads through the cache: start_fetch() fetches chunks the caller
  // claimed, asynchronously; fetch_ahead() claims and fetches the missing
  // chunks of [from, end); wait_chunks() returns once [first, last] are
  // present (fetching them itself if needed) or with the errno of the failure.
  // Fetches ask the owner for the bytes of the same file (global inode) in
  // whatever version it has now: a file appended to while it is read keeps
  // its first bytes; one that shrank gives a short read (ESTALE).
  void start_fetch(const FileHandle& h, uint64_t first, uint64_t count);
  void fetch_ahead(const FileHandle& h, uint64_t from, uint64_t end);
  int wait_chunks(const FileHandle& h, uint64_t first, uint64_t last);
  void forget_remote_file(uint64_t gino);

  // RPC handlers (run on the peers' workers).
  Peers::Reply on_loc_claim(int source, const msg::Claim& m);
  Peers::Reply on_loc_lookup(int source, const msg::Name& m);
  Peers::Reply on_loc_remove(int source, const msg::LocRemove& m);
  Peers::Reply on_own_find(int source, const msg::Name& m);
  Peers::Reply on_file_stat(int source, const msg::Name& m);
  // kFileStat's answer (on_file_stat's, with the bytes of a small file).
  Result<msg::StatBytes> stat_for_peer(const msg::Name& m, uint32_t inline_max);
  // That answer where the request arrives, when the store's dentries and
  // inode are in memory and nothing must be written back first; nullopt:
  // stat_for_peer on a worker.
  std::optional<Peers::Reply> quick_file_stat(const msg::StatAsk& m);
  // Has this kernel write the file's dirty pages back to the store if other
  // ranks write to it through a forwarding fd; whether it did.
  bool write_back_for_peer(uint64_t gino);
  // A file this rank holds lost its last name (st: its stat before) by
  // another rank's request: its kernel inode opens no more (Inode::unlinked_elsewhere).
  void mark_unlinked_elsewhere(const struct stat& st);
  // kFileRead: up to cap bytes into buf; the length read.
  Result<size_t> read_for_peer(std::span<const uint8_t> payload, uint8_t* buf, size_t cap);
  Peers::Reply on_file_write(int source, const msg::Write& m);
  // Before a forwarded write through fd: where the store has little room
  // left, reserves the blocks it will take (ENOSPC now, not at write-back).
  int reserve_for_peer(int fd, bool append, uint64_t off, size_t len);
  Peers::Reply on_dir_list(int source, const msg::DirList& m);
  Peers::Reply on_file_unlink(int source, const msg::Name& m);
  Peers::Reply on_file_rename(int source, const msg::Rename& m);
  Peers::Reply on_file_drop(int source, const msg::Drop& m);
  Peers::Reply on_file_readlink(int source, const msg::Name& m);
  Peers::Reply on_file_setattr(int source, const msg::Setattr& m);
  Peers::Reply on_file_map(int source, const msg::Map& m);
  Peers::Reply on_file_truncate(int source, const msg::Truncate& m);
  Peers::Reply on_file_link(int source, const msg::Link& m);
  Peers::Reply on_file_find(int source, const msg::Find& m);
  // Membership after a restart (daemon/fs_rejoin.cc).
  Peers::Reply on_rank_join(int source, const msg::Join& m);
  Peers::Reply on_rank_up(int source, const msg::RankUp& m);
  Peers::Reply on_shard_fill(int source, const msg::ShardFill& m);
  Peers::Reply on_rank_info(int source, const msg::InfoRequest& m);
  Peers::Reply on_job_stop(int source, const msg::InfoRequest& m);
  Peers::Reply on_stage_start(int source, const msg::StageStart& m);
  Peers::Reply on_stage_status(int source, const msg::StageQuery& m);
  std::string control_stage_out(const std::string& args);
  std::string control_stage_status(const std::string& args);
  // The id of a directory found in a kept store, by its path relative to the
  // store's root: every rank derives the same (top bit set).
  static uint64_t kept_dir_id(const std::string& rel) { return fnv1a64(rel) | (uint64_t{1} << 63); }
  // fn(id, parent id, name, store path, stat, whether DirIndex knew the id)
  // for every directory of this rank's store, parents first (below the root).
  void for_each_store_dir(const std::function<void(uint64_t id, uint64_t parent, const std::string& name,
                                                   const std::string& path, const struct stat& st, bool known)>& fn);
  // fn(dir, name) for every file (not directory) of this rank's store.
  void for_each_owned_file(const std::function<void(uint64_t dir, const std::string& name)>& fn);
  // rank is in the job again (its new address is connected).
  void rank_is_back(int rank);
  // Whether the shard may not know (dir, name) although a live rank holds
  // it: it stands in for a dead one, or came back after a restart.
  bool shard_unsure(int shard, uint64_t dir, const std::string& name) const;
  Status catch_up_directories(const std::vector<msg::JoinReply::Dir>& dirs, RejoinCounts* counts);
  // Records a store directory's id in it (user.dsdfs.dir), for a rejoin.
  static void remember_dir_id(int dir_fd, uint64_t id);
  // Owner side of another rank's unlink, rename, link or drop: the change is
  // made in the store directly, never through our own mount, where it would
  // wait for directory locks that FUSE requests on this mount hold while they
  // wait for RPCs (to the rank now waiting for us: a deadlock until the
  // timeout). Then this kernel is told, without waiting (Notifier).
  // The kernel node id of directory `dir`'s replica here, or 0.
  uint64_t dir_node(uint64_t dir);
  void kernel_attrs_changed(dev_t dev, ino_t ino);
  // A store file lost its last name by another rank's request (unlink,
  // rename over it, ownership move). This kernel was not told its link
  // count, so it may keep the inode cached for long, and our O_PATH handle
  // of it would keep its blocks on the disk: the handle is closed, unless
  // the file is open here (then release() lets go of it after the last close).
  void let_go_if_unlinked(dev_t dev, ino_t ino);
  void let_go_if_unlinked(const std::shared_ptr<Inode>& inode);
  // let_go_if_unlinked(inode) again once its hold for an open ended
  // (Inode::hold_for_open), on a thread of its own (started at first use).
  void let_go_later(const std::shared_ptr<Inode>& inode) EXCLUDES(later_mu_);
  void let_go_loop() EXCLUDES(later_mu_);
  // Reader side of the one-sided path: asks the owner to export the file.
  void remote_map(FileHandle& h);
  // Owner side: a file is about to shrink or vanish; no get may touch it,
  // and the fds kept for forwarded writes to it are closed. leaves: it goes
  // from the store (unlinked, replaced), so an offer of it (OfferedFiles) ends.
  void unexport(int dir_fd, const char* name, bool leaves = true);
  void release_owned(uint64_t gino);
  // A store file that had this stat lost a name: if it was its last, its
  // count of changes goes (ContentGens::forget).
  void forget_if_last_name(const struct stat& st);
  // Owner side of forwarded writes: the file's fd on our own mount (cached).
  Result<WriteFds::Fd> forward_fd(uint64_t dir, const std::string& name, uint64_t gino, uint64_t version,
                                  bool append);
  // Opens (dir, name) in the local store: O_PATH handle of the parent replica.
  std::shared_ptr<UniqueFd> local_dir(uint64_t dir);
  // Drops setuid/setgid of the store file fd when the caller is not root.
  void drop_setid_for_caller(const Caller& caller, int fd, uint64_t ino);
  // Local file rename with the locator kept right (src owned here).
  int rename_local_file(uint64_t src_dir, const std::string& src_name, int src_dir_fd, uint64_t dst_dir,
                        const std::string& dst_name, int dst_dir_fd, unsigned flags);
  // After creating an object as root on behalf of another user, hands it to them.
  void adopt_for_caller(const Caller& caller, const Inode& parent, const char* name);
  // A fresh entry for a just-made object (handed to the caller), or the error.
  Result<struct fuse_entry_param> new_entry(const Caller& caller, const Inode& parent, const char* name,
                                            int saved_errno);
  int stat_inode(const std::shared_ptr<Inode>& inode, struct stat* st);
  // The O_PATH handle of a local object, reopened by name if it was evicted;
  // nullptr (ESTALE) if the object is no longer at that name.
  std::shared_ptr<UniqueFd> object_fd(const std::shared_ptr<Inode>& inode);
  // Write-back of inode's dirty pages that came through a handle of another file (see
  // write_buf): written where inode's file is, never where the handle points.
  Result<size_t> write_back_to_inode(const std::shared_ptr<Inode>& inode, struct fuse_bufvec* in, off_t off);
  // A local write into the store file fd (of gino), counted as a change.
  Result<size_t> write_to_store(int fd, uint64_t gino, struct fuse_bufvec* in, off_t off);
  // A write to a file given to another rank: EIO, or a write-back dropped (see there).
  Result<size_t> write_to_moved(struct fuse_bufvec* in, bool writepage);
  void translate(struct stat* st) const;
  // Path of an O_PATH handle, usable with path-based syscalls.
  static std::string proc_path(int fd);
  // The inode for `ino`, or nullptr (caller replies ESTALE... see ops).
  std::shared_ptr<Inode> inode_of(fuse_ino_t ino) const { return inodes_.get(ino); }
  Result<std::string> special_xattr(const Inode& inode, const std::string& name);
  // The path (of its O_PATH handle) of the local file or directory whose
  // extended attribute `name` is asked for; change: to set or remove it.
  Result<std::string> xattr_target(fuse_ino_t ino, const char* name, bool change);

  const Options options_;
  Store* const store_;
  Peers* const peers_;
  const int rank_;
  const std::string host_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::function<void()> stop_hook_;  // set once, before the peers start
  std::unique_ptr<StageOut> stage_;  // stage-out jobs of this rank (made in the constructor)
  std::atomic<uint64_t> stage_ids_{0};
  Mutex control_mu_;  // leaf lock
  std::string control_path_ GUARDED_BY(control_mu_);
  const std::string mountpoint_;
  const bool run_as_root_;
  const double entry_timeout_;
  InodeTable inodes_;
  DirIndex dirs_;
  LocatorShard shard_;
  RemoteCache cache_;
  // Buffers of the replies to kFileRead (sent without a copy).
  std::shared_ptr<BufferPool> read_buffers_ = BufferPool::create(kMaxIo, 8);
  RmaExports exports_;
  ContentGens content_gens_;  // part of the versions of files other ranks have seen
  WriteFds write_fds_;
  PendingNames pending_;
  std::atomic<bool> passthrough_{false};
  BackingFiles backing_;  // the kernel passthrough state of open handles
  OfferedFiles offered_;  // owned files with handles open here, or offered to another rank's O_TRUNC
  LostOpens lost_opens_{/*after_lookup=*/true};  // opens answered ESTALE, until the kernel retries them
  RecentLookups recent_lookups_;  // remote lookups just answered, for the same call's GETATTR or OPEN
  OwnerHints owner_hints_;  // owners of other ranks' names, learnt by lookups and listings (one RPC per lookup)
  LostOpens lost_links_{/*after_lookup=*/false};  // links answered ESTALE (their file left its old name), until the kernel retries them
  Mutex later_mu_;        // let_go_later's queue and thread
  std::condition_variable_any later_cv_;
  std::vector<std::weak_ptr<Inode>> later_ GUARDED_BY(later_mu_);
  bool later_stop_ GUARDED_BY(later_mu_) = false;
  std::thread later_thread_ GUARDED_BY(later_mu_);
  NameLocks name_locks_;
  MovedFiles moved_;
  RenamedFiles renamed_;  // files of this rank renamed here: where to (kFileFind)
  Notifier notifier_;
  Stats* const stats_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> by_handle_{true};  // open_in_mount may use open_by_handle_at

  // Lock order: coord_mu_ (coordinator only) -> dir_gate_; a NameLocks stripe
  // -> dir_gate_. made_mu_: a leaf. (docs/architecture.md, "Locks".)
  Mutex coord_mu_;          // serialises directory mutations on the coordinator
  std::atomic<uint64_t> next_dir_id_{1};
  // By rank: its daemon was restarted and rejoined since the job started
  // (its shard knows only the names claimed since).
  std::unique_ptr<std::atomic<bool>[]> rejoined_;
  // Directories this rank's replica made for its own mkdirs, until the mkdir
  // answers (take_made_dir); undone ones are dropped by their rmdir commit.
  Mutex moved_out_mu_;  // leaf lock
  std::unordered_map<uint64_t, uint64_t> moved_out_ GUARDED_BY(moved_out_mu_);
  Mutex made_mu_;  // leaf lock
  std::unordered_map<uint64_t, std::shared_ptr<UniqueFd>> made_dirs_ GUARDED_BY(made_mu_);
  std::shared_ptr<UniqueFd> take_made_dir(uint64_t id);
  mutable SharedMutex dir_gate_;  // creators shared, rmdir prepare exclusive
  std::set<uint64_t> closing_ GUARDED_BY(dir_gate_);  // directories being removed
};

}  // namespace dsdfs::fs
