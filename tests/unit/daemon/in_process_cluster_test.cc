// SPDX-License-Identifier: Apache-2.0
// The distributed logic of several ranks in one process (InProcessCluster):
// locator placement and takeover, directory changes and their rollback,
// ownership moves and the same-name races, without FUSE or UCX.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon/locator.h"
#include "daemon/messages.h"
#include "tests/unit/daemon/in_process_cluster.h"
#include "tests/unit/daemon/temp_dir_test.h"

namespace dsdfs::fs::testing {
namespace {

constexpr uint64_t kRoot = InProcessCluster::kRoot;
using std::chrono::milliseconds;

class InProcessClusterTest : public TempDirTest {};

// A name of directory dir whose locator shard is rank `shard` (of n ranks).
std::string name_homed_at(uint64_t dir, int shard, int n, const std::string& prefix = "f") {
  for (int i = 0;; ++i) {
    std::string name = prefix + std::to_string(i);
    if (static_cast<int>(Peers::placement_hash(dir, name) % static_cast<uint64_t>(n)) == shard) return name;
  }
}

// Runs fn(rank, thread) on `threads` threads per rank, all released at once.
template <typename Fn>
void on_every_rank_at_once(int nranks, int threads, Fn fn) {
  std::barrier start(nranks * threads);
  std::vector<std::thread> all;
  for (int r = 0; r < nranks; ++r) {
    for (int t = 0; t < threads; ++t) {
      all.emplace_back([&, r, t] {
        start.arrive_and_wait();
        fn(r, t);
      });
    }
  }
  for (auto& th : all) th.join();
}

// The ranks whose store holds dir/name as a file.
std::vector<int> holders(InProcessCluster& c, uint64_t dir, const std::string& name) {
  std::vector<int> out;
  for (int r = 0; r < c.size(); ++r) {
    for (auto& n : c.stored(r, dir)) {
      if (n == name) out.push_back(r);
    }
  }
  return out;
}

TEST_F(InProcessClusterTest, PlacementIsTheSameOnEveryRankAndMovesOnlyTheDeadShardsNames) {
  InProcessCluster c(dir_, 4);
  std::vector<int> home;
  for (int i = 0; i < 1000; ++i) {
    std::string name = "n" + std::to_string(i);
    const int s = c.peers(0).shard_of(7, name);
    for (int r = 1; r < 4; ++r) ASSERT_EQ(c.peers(r).shard_of(7, name), s);
    home.push_back(s);
  }
  EXPECT_EQ(c.peers(3).coordinator(), 0);
  c.net().kill(2);
  c.net().kill(0);
  EXPECT_EQ(c.peers(3).coordinator(), 1);  // the lowest live rank
  for (int i = 0; i < 1000; ++i) {
    const int now = c.peers(1).shard_of(7, "n" + std::to_string(i));
    const int expect = home[i] == 2 ? 3 : home[i] == 0 ? 1 : home[i];  // the next live rank upward
    ASSERT_EQ(now, expect) << i;
  }
}

TEST_F(InProcessClusterTest, AFileIsStoredOnlyOnItsOwnerAndReadFromEveryRank) {
  InProcessCluster c(dir_, 3);
  ASSERT_EQ(c.open(1, kRoot, "ckpt", O_CREAT | O_WRONLY, "hello from rank 1").value(), 1);
  EXPECT_EQ(holders(c, kRoot, "ckpt"), std::vector<int>{1});
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(c.owner_of(r, kRoot, "ckpt").value(), 1) << "rank " << r;
    EXPECT_EQ(c.read(r, kRoot, "ckpt").value(), "hello from rank 1") << "rank " << r;
  }
  EXPECT_EQ(c.owner_of(2, kRoot, "nothing").err(), ENOENT);
  // Unlinked from another rank: gone everywhere.
  EXPECT_EQ(c.unlink(2, kRoot, "ckpt"), 0);
  EXPECT_TRUE(holders(c, kRoot, "ckpt").empty());
  for (int r = 0; r < 3; ++r) EXPECT_EQ(c.owner_of(r, kRoot, "ckpt").err(), ENOENT);
  EXPECT_EQ(c.unlink(0, kRoot, "ckpt"), ENOENT);
}

TEST_F(InProcessClusterTest, ConcurrentCreatesOfOneNameOpenOneFile) {
  // The N-1 checkpoint: every rank opens the same names with O_CREAT at once.
  constexpr int kRanks = 3, kThreads = 3, kNames = 30;
  InProcessCluster c(dir_, kRanks);
  std::vector<std::vector<int>> owner(kRanks * kThreads, std::vector<int>(kNames, -2));
  std::atomic<int> failures{0};
  on_every_rank_at_once(kRanks, kThreads, [&](int r, int t) {
    for (int i = 0; i < kNames; ++i) {
      auto o = c.open(r, kRoot, "shared" + std::to_string(i), O_CREAT | O_RDWR);
      if (!o) {
        ADD_FAILURE() << "rank " << r << " open shared" << i << ": " << o.status().to_string();
        failures++;
        continue;
      }
      owner[r * kThreads + t][i] = o.value();
    }
  });
  ASSERT_EQ(failures.load(), 0);
  for (int i = 0; i < kNames; ++i) {
    const std::string name = "shared" + std::to_string(i);
    auto h = holders(c, kRoot, name);
    ASSERT_EQ(h.size(), 1u) << name << ": one file, on one rank";
    for (auto& o : owner) EXPECT_EQ(o[i], h[0]) << name << ": every open opened that file";
    for (int r = 0; r < kRanks; ++r) EXPECT_EQ(c.owner_of(r, kRoot, name).value(), h[0]);
  }
}

TEST_F(InProcessClusterTest, ConcurrentExclusiveCreatesOfOneNameSucceedOnce) {
  constexpr int kRanks = 3, kThreads = 2, kNames = 20;
  InProcessCluster c(dir_, kRanks);
  std::vector<std::atomic<int>> wins(kNames), exists(kNames);
  on_every_rank_at_once(kRanks, kThreads, [&](int r, int) {
    for (int i = 0; i < kNames; ++i) {
      auto o = c.open(r, kRoot, "lock" + std::to_string(i), O_CREAT | O_EXCL | O_WRONLY);
      if (o) wins[i]++;
      else if (o.err() == EEXIST) exists[i]++;
      else ADD_FAILURE() << "rank " << r << ": " << o.status().to_string();
    }
  });
  for (int i = 0; i < kNames; ++i) {
    EXPECT_EQ(wins[i].load(), 1) << "lock" << i;
    EXPECT_EQ(exists[i].load(), kRanks * kThreads - 1) << "lock" << i;
    EXPECT_EQ(holders(c, kRoot, "lock" + std::to_string(i)).size(), 1u);
  }
}

TEST_F(InProcessClusterTest, ConcurrentMkdirsOfOneNameMakeOneDirectoryOnEveryReplica) {
  constexpr int kRanks = 3;
  InProcessCluster c(dir_, kRanks);
  for (int i = 0; i < 10; ++i) {
    const std::string name = "d" + std::to_string(i);
    std::atomic<int> made{0}, exists{0};
    on_every_rank_at_once(kRanks, 1, [&](int r, int) {
      auto m = c.mkdir(r, kRoot, name);
      if (m) made++;
      else if (m.err() == EEXIST) exists++;
      else ADD_FAILURE() << "rank " << r << " mkdir " << name << ": " << m.status().to_string();
    });
    EXPECT_EQ(made.load(), 1) << name;
    EXPECT_EQ(exists.load(), kRanks - 1) << name;
    for (int r = 0; r < kRanks; ++r) {
      EXPECT_EQ(holders(c, kRoot, name).size(), static_cast<size_t>(kRanks)) << name << ": on every replica";
      EXPECT_EQ(c.owner_of(r, kRoot, name).value(), LocatorShard::kDirectory);
    }
  }
}

TEST_F(InProcessClusterTest, AMkdirOneReplicaRefusesIsRolledBackOnEveryRank) {
  InProcessCluster c(dir_, 3);
  // Rank 2's replica holds an object of that name that no rank knows about.
  const std::string obstacle = dir_ + "/store2/files/results";
  int fd = ::open(obstacle.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(c.mkdir(1, kRoot, "results").err(), EEXIST);
  EXPECT_TRUE(c.stored(0, kRoot).empty()) << "rolled back on rank 0";
  EXPECT_TRUE(c.stored(1, kRoot).empty()) << "rolled back on rank 1";
  EXPECT_EQ(c.owner_of(0, kRoot, "results").err(), ENOENT) << "the locator forgot the name";
  // Once the obstacle is gone, the same mkdir works everywhere.
  ASSERT_EQ(::unlink(obstacle.c_str()), 0);
  auto made = c.mkdir(1, kRoot, "results");
  ASSERT_TRUE(made) << made.status().to_string();
  EXPECT_EQ(holders(c, kRoot, "results"), (std::vector<int>{0, 1, 2}));
}

TEST_F(InProcessClusterTest, FilesKeepTheirDirectoryThroughADirectoryRename) {
  InProcessCluster c(dir_, 3);
  auto d = c.mkdir(0, kRoot, "run1");
  ASSERT_TRUE(d);
  ASSERT_EQ(c.open(1, d.value(), "log", O_CREAT | O_WRONLY, "epoch 1\n").value(), 1);
  ASSERT_EQ(c.rename(2, kRoot, "run1", kRoot, "run1.done"), 0);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(c.stored(r, kRoot), std::vector<std::string>{"run1.done"}) << "rank " << r;
    EXPECT_EQ(c.read(r, d.value(), "log").value(), "epoch 1\n") << "rank " << r;
  }
  // rmdir of a directory with a file on one rank fails on every rank.
  EXPECT_EQ(c.rmdir(0, kRoot, "run1.done"), ENOTEMPTY);
  EXPECT_EQ(holders(c, kRoot, "run1.done").size(), 3u);
  ASSERT_EQ(c.unlink(0, d.value(), "log"), 0);
  EXPECT_EQ(c.rmdir(0, kRoot, "run1.done"), 0);
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(c.stored(r, kRoot).empty()) << "rank " << r;
}

TEST_F(InProcessClusterTest, TruncatingOpenFromAnotherRankMovesTheFileThere) {
  // `>` of another node's file makes a new local file on the writer's node.
  InProcessCluster c(dir_, 3);
  ASSERT_EQ(c.open(0, kRoot, "out", O_CREAT | O_WRONLY, "old contents").value(), 0);
  auto o = c.open(1, kRoot, "out", O_CREAT | O_WRONLY | O_TRUNC, "new");
  ASSERT_TRUE(o) << o.status().to_string();
  EXPECT_EQ(o.value(), 1);
  EXPECT_EQ(holders(c, kRoot, "out"), std::vector<int>{1}) << "the old owner dropped its copy";
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(c.owner_of(r, kRoot, "out").value(), 1);
    EXPECT_EQ(c.read(r, kRoot, "out").value(), "new");
  }
  // A file rename by a rank that does not own it happens on the owner.
  ASSERT_EQ(c.rename(2, kRoot, "out", kRoot, "out.1"), 0);
  EXPECT_EQ(holders(c, kRoot, "out.1"), std::vector<int>{1});
  EXPECT_EQ(c.owner_of(0, kRoot, "out").err(), ENOENT);
  EXPECT_EQ(c.read(0, kRoot, "out.1").value(), "new");
}

// A listing asks every rank for its files. Here it gets rank 2's answer before rank 2 renames
// its file onto v, and rank 1's (v's old owner) after rank 1 dropped v: without a second
// look it would show no v at all, although the name existed throughout (the torture test's
// readdir-missing). Rank 1's count of names taken over from it changed while the listing
// ran, so the listing is taken again.
TEST_F(InProcessClusterTest, AListingDoesNotMissANameTakenOverByARenameWhileItRuns) {
  InProcessCluster c(dir_, 3);
  ASSERT_EQ(c.open(1, kRoot, "v", O_CREAT | O_WRONLY, "old").value(), 1);
  ASSERT_EQ(c.open(2, kRoot, "tmp", O_CREAT | O_WRONLY, "new").value(), 2);
  auto full_listing = [](Op op, std::span<const uint8_t> p) {
    msg::DirList m;
    return op == Op::kDirList && msg::decode(p, &m) && m.flags == 0;
  };
  std::atomic<bool> listed_on_2{false}, renamed{false};
  std::atomic<int> listings_on_1{0};
  c.net().set_hook(2, [&](int, Op op, std::span<const uint8_t> p, bool after) {
    if (after && full_listing(op, p)) listed_on_2.store(true);
  });
  c.net().set_hook(1, [&](int, Op op, std::span<const uint8_t> p, bool after) {
    if (after || !full_listing(op, p) || listings_on_1.fetch_add(1) != 0) return;
    // The first listing on rank 1 waits until the rename is done (bounded).
    for (int i = 0; i < 150 && !renamed.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  Result<std::vector<std::string>> listed = Status::error(EINPROGRESS);
  std::thread lister([&] { listed = c.list(0, kRoot); });
  for (int i = 0; i < 150 && !listed_on_2.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(listed_on_2.load()) << "rank 2 was not asked";
  const int rc = c.rename(2, kRoot, "tmp", kRoot, "v");
  renamed.store(true);
  lister.join();
  c.net().set_hook(1, {});
  c.net().set_hook(2, {});
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(holders(c, kRoot, "v"), std::vector<int>{2}) << "rank 1 dropped v";
  ASSERT_TRUE(listed) << listed.status().to_string();
  EXPECT_EQ(listed.value(), std::vector<std::string>{"v"});
  EXPECT_GE(listings_on_1.load(), 2) << "the listing was not taken again";
}

// The text read, or the error as text (so a failed read shows in the comparison).
std::string text_of(const Result<std::string>& r) { return r ? r.value() : "error: " + r.status().to_string(); }

// Unlinks rank 0's file `name` (in the root, whose store directory is dfd) and makes new files
// of `text` until one gets inode number `ino` (ext4 reuses a freed one at once), which then
// takes the name. False if none did within 200 files (the test then has nothing to test).
bool replace_by_a_file_with_its_inode_number(InProcessCluster& c, int dfd, const std::string& name, ino_t ino,
                                            const std::string& text) {
  EXPECT_EQ(c.unlink(0, kRoot, name), 0);
  for (int i = 0; i < 200; ++i) {
    const std::string n = "n" + std::to_string(i);
    auto made = c.open(0, kRoot, n, O_CREAT | O_EXCL | O_WRONLY, text);
    struct stat st;
    if (!made || made.value() != 0 || ::fstatat(dfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      ADD_FAILURE() << "cannot make " << n;
      return false;
    }
    if (st.st_ino == ino) {
      EXPECT_EQ(c.rename(0, kRoot, n, kRoot, name), 0);
      return true;
    }
  }
  return false;
}

// Three ranks rename a file onto one name, one after the other: rank 1's rename replaces
// rank 0's file, but its drop of rank 0's copy is slow to arrive; rank 2's rename then
// replaces rank 1's file and returns. From then on no rank may serve rank 0's file (a
// rename that returned is seen by every open after it), so the drop rank 2 sent, which
// names rank 1 as the old owner, must remove rank 0's copy too: no claim gives it to rank 0
// any more. Before the fix rank 0 kept it, and its own opens and stats were served from it
// until rank 1's drop came (the torture test's version-stale reports: the reader's rank
// held an older version than the rename that had returned before its open).
TEST_F(InProcessClusterTest, ARenameThatReturnedLeavesNoOlderCopyWhereAnEarlierDropIsLate) {
  InProcessCluster c(dir_, 3);
  ASSERT_EQ(c.open(0, kRoot, "v", O_CREAT | O_WRONLY, "x of rank 0").value(), 0);
  ASSERT_EQ(c.open(1, kRoot, "t1", O_CREAT | O_WRONLY, "z of rank 1").value(), 1);
  ASSERT_EQ(c.open(2, kRoot, "t2", O_CREAT | O_WRONLY, "y of rank 2").value(), 2);
  std::atomic<bool> held{false}, go_on{false};
  c.net().set_hook(0, [&](int from, Op op, std::span<const uint8_t>, bool after) {
    if (after || from != 1 || op != Op::kFileDrop) return;
    held.store(true);
    // Rank 1's drop waits here until rank 2's rename is done (bounded).
    for (int i = 0; i < 150 && !go_on.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  int rc1 = -1;
  std::thread first([&] { rc1 = c.rename(1, kRoot, "t1", kRoot, "v"); });
  for (int i = 0; i < 150 && !held.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(held.load()) << "rank 1's rename sent rank 0 no drop";
  const int rc2 = c.rename(2, kRoot, "t2", kRoot, "v");
  const std::vector<int> after_rename = holders(c, kRoot, "v");
  const std::string read_on_0 = text_of(c.read(0, kRoot, "v"));
  go_on.store(true);
  first.join();
  c.net().set_hook(0, {});
  ASSERT_EQ(rc2, 0);
  EXPECT_EQ(rc1, 0);
  EXPECT_EQ(after_rename, std::vector<int>{2}) << "rank 0 kept the file two renames replaced";
  EXPECT_EQ(read_on_0, "y of rank 2");
  EXPECT_EQ(holders(c, kRoot, "v"), std::vector<int>{2});
  for (int r = 0; r < 3; ++r) EXPECT_EQ(text_of(c.read(r, kRoot, "v")), "y of rank 2") << "rank " << r;
}

// A file rewritten in place at the same size, whose store file then has the mtime of the
// version before (as when the kernel's writeback cache sets it at close from its coarse
// clock and both versions closed within one tick of it), is a new version to a reader on
// another rank: it reads the new bytes, not its cached copy of the old ones. Before the fix
// the version was size, mtime and inode number only, so the reader kept the old bytes (the
// torture test's grow-stale).
TEST_F(InProcessClusterTest, ARewriteInPlaceThatKeepsSizeAndMtimeIsANewVersionOnOtherRanks) {
  InProcessCluster c(dir_, 2);
  ASSERT_EQ(c.open(0, kRoot, "g", O_CREAT | O_WRONLY, "version one").value(), 0);
  ASSERT_EQ(text_of(c.read(1, kRoot, "g")), "version one");
  const int dfd = c.store_dir_fd(0, kRoot);
  ASSERT_GE(dfd, 0);
  struct stat before;
  ASSERT_EQ(::fstatat(dfd, "g", &before, AT_SYMLINK_NOFOLLOW), 0);
  ASSERT_EQ(c.open(0, kRoot, "g", O_WRONLY, "version two").value(), 0);  // the same length
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(dfd, "g", times, AT_SYMLINK_NOFOLLOW), 0);
  struct stat after;
  ASSERT_EQ(::fstatat(dfd, "g", &after, AT_SYMLINK_NOFOLLOW), 0);
  ASSERT_EQ(after.st_size, before.st_size);
  EXPECT_EQ(text_of(c.read(1, kRoot, "g")), "version two");
  // and a rewrite no other rank saw in between counts all the same
  ASSERT_EQ(c.open(0, kRoot, "g", O_WRONLY, "version 3!!").value(), 0);
  ASSERT_EQ(::utimensat(dfd, "g", times, AT_SYMLINK_NOFOLLOW), 0);
  ASSERT_EQ(c.open(0, kRoot, "g", O_WRONLY, "version 4!!").value(), 0);
  ASSERT_EQ(::utimensat(dfd, "g", times, AT_SYMLINK_NOFOLLOW), 0);
  EXPECT_EQ(text_of(c.read(1, kRoot, "g")), "version 4!!");
}

// A reader fetches a file while its owner replaces it by a new file that got the same store
// inode number (ext4 hands a freed number out again at once). The fetch asked for any
// version of the file with that inode number, so the reader got the new file's bytes cut at
// the old file's size (the torture test's torn version-content reads). Now the fetch asks
// for any version of the file it opened (the identity bits of its version), the owner
// refuses the new file, and the reader looks again: it reads one whole file.
TEST_F(InProcessClusterTest, AFetchNeverServesANewFileThatGotTheOpenedFilesInodeNumber) {
  InProcessCluster c(dir_, 2);
  const std::string old_text(100, 'o'), new_text = std::string(60, 'n') + std::string(140, 'N');
  ASSERT_EQ(c.open(0, kRoot, "v", O_CREAT | O_WRONLY, old_text).value(), 0);
  const int dfd = c.store_dir_fd(0, kRoot);
  ASSERT_GE(dfd, 0);
  struct stat old_st;
  ASSERT_EQ(::fstatat(dfd, "v", &old_st, AT_SYMLINK_NOFOLLOW), 0);
  std::atomic<bool> held{false}, replaced{false};
  std::atomic<int> reads{0};
  c.net().set_hook(0, [&](int from, Op op, std::span<const uint8_t>, bool after) {
    if (after || from != 1 || op != Op::kFileRead || reads.fetch_add(1) != 0) return;
    held.store(true);
    // The first fetch waits until the file is replaced (bounded).
    for (int i = 0; i < 150 && !replaced.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  std::string got;
  std::thread reader([&] { got = text_of(c.read(1, kRoot, "v")); });
  for (int i = 0; i < 150 && !held.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(held.load()) << "rank 1 fetched nothing";
  const bool reused = replace_by_a_file_with_its_inode_number(c, dfd, "v", old_st.st_ino, new_text);
  replaced.store(true);
  reader.join();
  c.net().set_hook(0, {});
  if (!reused) GTEST_SKIP() << "the store's file system gave no new file the old inode number";
  EXPECT_TRUE(got == old_text || got == new_text) << "read " << got.size() << " bytes: " << got.substr(0, 80);
}

// A writer on rank 1 has rank 0's file v open. On rank 0, v is unlinked and a new file that
// got v's inode number (ext4 reuses a freed one at once) takes the name v (`rm v; touch v`,
// or a rename). The writer's next write must not land in the new file: it fails (EIO, as for
// any file gone under its handle), and the new file keeps its bytes. Before the forwarded
// write carried the file's identity, the owner checked only the name and the inode number,
// and the write went into the new file.
TEST_F(InProcessClusterTest, AForwardedWriteNeverLandsInANewFileThatGotTheWritersInodeNumber) {
  InProcessCluster c(dir_, 2);
  const std::string old_text(100, 'o'), new_text(200, 'n');
  ASSERT_EQ(c.open(0, kRoot, "v", O_CREAT | O_WRONLY, old_text).value(), 0);
  const int dfd = c.store_dir_fd(0, kRoot);
  ASSERT_GE(dfd, 0);
  struct stat old_st;
  ASSERT_EQ(::fstatat(dfd, "v", &old_st, AT_SYMLINK_NOFOLLOW), 0);
  auto w = c.open_for_writing(1, kRoot, "v");
  ASSERT_TRUE(w) << w.status().to_string();
  ASSERT_EQ(w->owner, 0);
  auto first = c.write(1, *w, "AAAA", 0);
  ASSERT_TRUE(first) << first.status().to_string();
  ASSERT_EQ(first.value(), 4u);
  EXPECT_EQ(text_of(c.read(0, kRoot, "v")), "AAAA" + old_text.substr(4));
  const bool reused = replace_by_a_file_with_its_inode_number(c, dfd, "v", old_st.st_ino, new_text);
  if (!reused) GTEST_SKIP() << "the store's file system gave no new file the old inode number";
  auto late = c.write(1, *w, "BBBB", 0);
  EXPECT_FALSE(late) << "the write went into the new file";
  if (!late) {
    EXPECT_EQ(late.err(), EIO) << late.status().to_string();
  }
  EXPECT_EQ(text_of(c.read(0, kRoot, "v")), new_text);
}

// Log rotation while another node appends: rank 1 has rank 0's log open for appending; on
// rank 0, `mv log log.1; touch log` (the rotation logrotate does without copytruncate). The
// appender's next records go to the file it has open, now log.1, as on a local file system;
// the new log stays empty. Before, the owner looked the file up by its old name and the
// append failed with EIO.
TEST_F(InProcessClusterTest, AppendsThroughAnOpenHandleFollowTheirFileWhenItsOwnerRenamesIt) {
  InProcessCluster c(dir_, 2);
  ASSERT_EQ(c.open(0, kRoot, "log", O_CREAT | O_WRONLY, "rec 0\n").value(), 0);
  auto w = c.open_for_writing(1, kRoot, "log", O_APPEND);
  ASSERT_TRUE(w) << w.status().to_string();
  ASSERT_EQ(w->owner, 0);
  auto first = c.write(1, *w, "rec 1\n", 0);
  ASSERT_TRUE(first) << first.status().to_string();
  ASSERT_EQ(c.rename(0, kRoot, "log", kRoot, "log.1"), 0);
  ASSERT_EQ(c.open(0, kRoot, "log", O_CREAT | O_EXCL | O_WRONLY).value(), 0);
  auto after = c.write(1, *w, "rec 2\n", 0);
  ASSERT_TRUE(after) << "the append after the rotation: " << after.status().to_string();
  EXPECT_EQ(after.value(), 6u);
  // Renamed once more, to another name of the directory: followed again.
  ASSERT_EQ(c.rename(0, kRoot, "log.1", kRoot, "log.2"), 0);
  auto again = c.write(1, *w, "rec 3\n", 0);
  ASSERT_TRUE(again) << again.status().to_string();
  // And into another directory (logrotate's olddir).
  auto old = c.mkdir(0, kRoot, "old");
  ASSERT_TRUE(old) << old.status().to_string();
  ASSERT_EQ(c.rename(0, kRoot, "log.2", old.value(), "log.3"), 0);
  auto moved = c.write(1, *w, "rec 4\n", 0);
  ASSERT_TRUE(moved) << "after a rename into another directory: " << moved.status().to_string();
  EXPECT_EQ(text_of(c.read(0, old.value(), "log.3")), "rec 0\nrec 1\nrec 2\nrec 3\nrec 4\n");
  EXPECT_EQ(text_of(c.read(0, kRoot, "log")), "");
  EXPECT_EQ(c.stats(1).renames_followed.load(), 3u);
}

// A rank's daemon dies and is started again over its store (dsdfs-launch --rejoin). While it
// was down the others renamed a directory holding its file, removed one (its file there is
// lost: the directory looked empty to them), made a file under a name it had (theirs wins)
// and a directory. After the rejoin every rank sees its files at their new paths with their
// bytes, the job's directories on its replica, and it works both ways; as the coordinator
// (rank 0) it orders directory changes again with ids it never gave before.
class InProcessRejoin : public InProcessClusterTest, public ::testing::WithParamInterface<int> {};

TEST_P(InProcessRejoin, ARestartedRankCatchesUpAndServesItsFilesAgain) {
  const int victim = GetParam();
  const int a = victim == 0 ? 1 : 0, b = victim == 2 ? 1 : 2;
  InProcessCluster c(dir_, 3);
  auto d = c.mkdir(a, kRoot, "d");
  auto gone = c.mkdir(a, kRoot, "gone");
  auto kept = c.mkdir(victim, kRoot, "kept");
  ASSERT_TRUE(d && gone && kept);
  ASSERT_EQ(c.open(victim, kRoot, "top", O_CREAT | O_WRONLY, "top of the victim").value(), victim);
  ASSERT_EQ(c.open(victim, d.value(), "in", O_CREAT | O_WRONLY, "in d").value(), victim);
  ASSERT_EQ(c.open(victim, gone.value(), "lost", O_CREAT | O_WRONLY, "lost").value(), victim);
  ASSERT_EQ(c.open(victim, kRoot, "clash", O_CREAT | O_WRONLY, "the victim's clash").value(), victim);
  ASSERT_EQ(c.open(victim, kept.value(), "deep", O_CREAT | O_WRONLY, "deep").value(), victim);

  c.net().kill(victim);
  ASSERT_EQ(c.rename(a, kRoot, "d", kRoot, "d2"), 0);
  ASSERT_EQ(c.rmdir(b, kRoot, "gone"), 0);
  ASSERT_EQ(c.open(b, kRoot, "clash", O_CREAT | O_WRONLY, "the survivors' clash").value(), b);
  auto made = c.mkdir(a, kRoot, "made");
  ASSERT_TRUE(made) << made.status().to_string();

  Filesystem::RejoinCounts counts;
  Status s = c.restart(victim, &counts);
  ASSERT_TRUE(s) << s.to_string();
  EXPECT_EQ(counts.published, 3u);
  EXPECT_EQ(counts.replaced, 1u);
  EXPECT_EQ(counts.orphaned, 1u);
  EXPECT_EQ(counts.unreachable, 0u);
  for (int r = 0; r < 3; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(text_of(c.read(r, kRoot, "top")), "top of the victim");
    EXPECT_EQ(text_of(c.read(r, d.value(), "in")), "in d");
    EXPECT_EQ(text_of(c.read(r, kept.value(), "deep")), "deep");
    EXPECT_EQ(text_of(c.read(r, kRoot, "clash")), "the survivors' clash");
    EXPECT_EQ(c.dir_id(r, kRoot, "d2"), d.value());
    EXPECT_EQ(c.dir_id(r, kRoot, "made"), made.value());
    EXPECT_EQ(c.dir_id(r, kRoot, "d"), 0u);
    EXPECT_EQ(c.dir_id(r, kRoot, "gone"), 0u);
    auto listed = c.list(r, kRoot);
    ASSERT_TRUE(listed);
    std::set<std::string> names(listed->begin(), listed->end());
    EXPECT_EQ(names, (std::set<std::string>{"clash", "d2", "kept", "made", "top"}));
  }
  EXPECT_EQ(holders(c, kRoot, "clash"), std::vector<int>{b}) << "the victim's clash was removed";
  EXPECT_EQ(c.stored(victim, d.value()), std::vector<std::string>{"in"});
  // Both ways after the rejoin.
  ASSERT_EQ(c.open(victim, made.value(), "new", O_CREAT | O_WRONLY, "made after").value(), victim);
  EXPECT_EQ(text_of(c.read(a, made.value(), "new")), "made after");
  ASSERT_EQ(c.open(a, kRoot, "fresh", O_CREAT | O_WRONLY, "fresh").value(), a);
  EXPECT_EQ(text_of(c.read(victim, kRoot, "fresh")), "fresh");
  auto later = c.mkdir(b, kRoot, "later");
  ASSERT_TRUE(later) << later.status().to_string();
  for (int r = 0; r < 3; ++r) EXPECT_EQ(c.dir_id(r, kRoot, "later"), later.value()) << "rank " << r;
  EXPECT_NE(later.value(), kept.value()) << "a directory id given twice";
  EXPECT_NE(later.value(), made.value());
}

// After the restart the victim's shard knows only the names claimed since. A rename onto a
// name homed there that another rank made before the death must still replace that rank's
// file: the shard answers "new", the renamer asks every rank, finds the holder and takes
// the name from it (before the fix it gave the name back to the holder, and both ranks kept
// a file of that name).
TEST_P(InProcessRejoin, ARenameOntoANameTheRestartedShardDoesNotKnowReplacesTheOldFile) {
  const int victim = GetParam();
  const int a = victim == 0 ? 1 : 0, b = victim == 2 ? 1 : 2;
  InProcessCluster c(dir_, 3);
  const std::string name = name_homed_at(kRoot, victim, 3, "h");
  ASSERT_EQ(c.open(a, kRoot, name, O_CREAT | O_WRONLY, "old").value(), a);
  c.net().kill(victim);
  Filesystem::RejoinCounts counts;
  Status s = c.restart(victim, &counts, /*fill=*/false);  // its shard stays unsure
  ASSERT_TRUE(s) << s.to_string();
  ASSERT_EQ(c.open(b, kRoot, "tmp", O_CREAT | O_WRONLY, "new").value(), b);
  ASSERT_EQ(c.rename(b, kRoot, "tmp", kRoot, name), 0);
  EXPECT_EQ(holders(c, kRoot, name), std::vector<int>{b});
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(text_of(c.read(r, kRoot, name)), "new") << "rank " << r;
    EXPECT_EQ(c.owner_of(r, kRoot, name).value(), b) << "rank " << r;
  }
}

// The shard fill: after it, the restarted rank's shard knows the names the others made
// before it died (and while it was down), and the ranks trust its answers again: a lookup
// of such a name, and of a name nobody has, asks no rank but the shard.
TEST_P(InProcessRejoin, TheRestartedShardIsFilledAndTrustedAgain) {
  const int victim = GetParam();
  const int a = victim == 0 ? 1 : 0, b = victim == 2 ? 1 : 2;
  InProcessCluster c(dir_, 3);
  const std::string before = name_homed_at(kRoot, victim, 3, "h");
  const std::string during = name_homed_at(kRoot, victim, 3, "during");
  ASSERT_EQ(c.open(a, kRoot, before, O_CREAT | O_WRONLY, "made before").value(), a);
  c.net().kill(victim);
  ASSERT_EQ(c.open(b, kRoot, during, O_CREAT | O_WRONLY, "made while it was down").value(), b);
  Filesystem::RejoinCounts counts;
  Status s = c.restart(victim, &counts);
  ASSERT_TRUE(s) << s.to_string();
  EXPECT_TRUE(counts.shard_whole);
  EXPECT_EQ(counts.shard_filled, 2u);
  std::atomic<int> asked_all{0};
  for (int r = 0; r < 3; ++r) {
    c.net().set_hook(r, [&](int, Op op, std::span<const uint8_t>, bool after) {
      if (!after && op == Op::kOwnFind) asked_all.fetch_add(1);
    });
  }
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(c.owner_of(r, kRoot, before).value(), a) << "rank " << r;
    EXPECT_EQ(c.owner_of(r, kRoot, during).value(), b) << "rank " << r;
    EXPECT_EQ(c.owner_of(r, kRoot, name_homed_at(kRoot, victim, 3, "nobody")).err(), ENOENT) << "rank " << r;
  }
  for (int r = 0; r < 3; ++r) c.net().set_hook(r, {});
  EXPECT_EQ(asked_all.load(), 0) << "lookups asked every rank although the shard is whole";
}

INSTANTIATE_TEST_SUITE_P(Victim, InProcessRejoin, ::testing::Values(2, 0),
                         [](const ::testing::TestParamInfo<int>& info) { return "Rank" + std::to_string(info.param); });

// The name is gone, or one file in one store that every rank's lookup finds at that
// owner (the torture test's final-store and final-agree checks).
void expect_one_file_or_none(InProcessCluster& c, const std::string& name) {
  auto h = holders(c, kRoot, name);
  std::string seen;  // what each rank's lookup finds
  for (int r = 0; r < c.size(); ++r) {
    auto owner = c.owner_of(r, kRoot, name);
    seen += " rank " + std::to_string(r) + ": " + (owner ? std::to_string(owner.value()) : owner.status().to_string());
  }
  ASSERT_LE(h.size(), 1u) << name << " is stored on several ranks;" << seen;
  for (int r = 0; r < c.size(); ++r) {
    auto owner = c.owner_of(r, kRoot, name);
    if (h.empty()) EXPECT_EQ(owner.err(), ENOENT) << name << " from rank " << r << ";" << seen;
    else EXPECT_TRUE(owner && owner.value() == h[0]) << name << " stored on rank " << h[0] << ";" << seen;
  }
}

TEST_F(InProcessClusterTest, CreatesAndUnlinksOfOneNameAtOnceLeaveNoFileOnlyItsOwnerSees) {
  // Every rank creates and unlinks the same names at once. Whatever the
  // interleaving, at the end each name is either gone or one file that
  // every rank finds at its owner (the torture test's final-store check).
  constexpr int kRanks = 3, kThreads = 2, kRounds = 150, kNames = 3;
  InProcessCluster c(dir_, kRanks);
  on_every_rank_at_once(kRanks, kThreads, [&](int r, int t) {
    std::mt19937 rng(static_cast<unsigned>(r * 100 + t));
    for (int i = 0; i < kRounds; ++i) {
      const std::string name = "x" + std::to_string(rng() % kNames);
      if (rng() % 2) {
        auto o = c.open(r, kRoot, name, O_CREAT | O_WRONLY);
        if (!o) ADD_FAILURE() << "rank " << r << " create " << name << ": " << o.status().to_string();
      } else {
        int err = c.unlink(r, kRoot, name);
        if (err != 0 && err != ENOENT) ADD_FAILURE() << "rank " << r << " unlink " << name << ": " << err;
      }
    }
  });
  for (int i = 0; i < kNames; ++i) expect_one_file_or_none(c, "x" + std::to_string(i));
}

TEST_F(InProcessClusterTest, RenamesOntoOneNameWithCreatesTruncatesAndUnlinksLeaveOneFileEveryRankFinds) {
  // Every rank renames files of its own onto the same few names, and creates,
  // truncates (O_TRUNC of another rank's file moves it here) and unlinks them,
  // all at once. At the end each name is gone or one file, in one store, that
  // every rank finds at that owner (the torture test's final-store and
  // final-agree checks).
  constexpr int kRanks = 3, kThreads = 2, kRounds = 120, kNames = 2;
  InProcessCluster c(dir_, kRanks);
  on_every_rank_at_once(kRanks, kThreads, [&](int r, int t) {
    std::mt19937 rng(static_cast<unsigned>(r * 100 + t + 7));
    for (int i = 0; i < kRounds; ++i) {
      const std::string name = "x" + std::to_string(rng() % kNames);
      switch (rng() % 4) {
        case 0: {
          const std::string tmp = "t" + std::to_string(r) + "." + std::to_string(t) + "." + std::to_string(i);
          auto o = c.open(r, kRoot, tmp, O_CREAT | O_EXCL | O_WRONLY, "from rank " + std::to_string(r));
          if (!o) {
            ADD_FAILURE() << "rank " << r << " create " << tmp << ": " << o.status().to_string();
            break;
          }
          if (int err = c.rename(r, kRoot, tmp, kRoot, name)) {
            ADD_FAILURE() << "rank " << r << " rename " << tmp << " " << name << ": " << err;
          }
          break;
        }
        case 1: {
          auto o = c.open(r, kRoot, name, O_CREAT | O_TRUNC | O_WRONLY);
          if (!o) ADD_FAILURE() << "rank " << r << " O_TRUNC " << name << ": " << o.status().to_string();
          break;
        }
        case 2: {
          int err = c.unlink(r, kRoot, name);
          if (err != 0 && err != ENOENT) ADD_FAILURE() << "rank " << r << " unlink " << name << ": " << err;
          break;
        }
        default: {
          auto o = c.open(r, kRoot, name, O_CREAT | O_WRONLY);
          if (!o) ADD_FAILURE() << "rank " << r << " create " << name << ": " << o.status().to_string();
        }
      }
    }
  });
  for (int i = 0; i < kNames; ++i) expect_one_file_or_none(c, "x" + std::to_string(i));
}

TEST_F(InProcessClusterTest, ADeadShardsNamesAreFoundAtTheirOwnersAndNotCreatedTwice) {
  constexpr int kRanks = 4;
  InProcessCluster c(dir_, kRanks);
  const std::string name = name_homed_at(kRoot, 2, kRanks);
  ASSERT_EQ(c.open(1, kRoot, name, O_CREAT | O_WRONLY, "rank 1's").value(), 1);
  c.net().kill(2);  // the shard that knew the name
  EXPECT_EQ(c.owner_of(0, kRoot, name).value(), 1) << "found by asking the owners";
  EXPECT_EQ(c.read(3, kRoot, name).value(), "rank 1's");
  // The rank now in the dead shard's place does not know the name: a create
  // must still open rank 1's file, not make a second one.
  auto o = c.open(0, kRoot, name, O_CREAT | O_RDWR);
  ASSERT_TRUE(o) << o.status().to_string();
  EXPECT_EQ(o.value(), 1);
  EXPECT_EQ(holders(c, kRoot, name), std::vector<int>{1});
  EXPECT_EQ(c.open(3, kRoot, name, O_CREAT | O_EXCL | O_WRONLY).err(), EEXIST);
  // New names homed at the dead shard work.
  const std::string fresh = name_homed_at(kRoot, 2, kRanks, "new");
  ASSERT_EQ(c.open(3, kRoot, fresh, O_CREAT | O_WRONLY, "x").value(), 3);
  EXPECT_EQ(c.owner_of(0, kRoot, fresh).value(), 3);
  // Directory changes go on without rank 2 (3 of 4 ranks alive).
  auto d = c.mkdir(3, kRoot, "after");
  ASSERT_TRUE(d) << d.status().to_string();
  EXPECT_EQ(c.owner_of(1, kRoot, "after").value(), LocatorShard::kDirectory);
  // With rank 0 dead too, ranks 1 and 3 are half of the job without rank 0:
  // they cannot tell a crash from a split, and fence themselves.
  c.net().kill(0);
  EXPECT_EQ(c.mkdir(3, kRoot, "later").err(), EIO);
}

TEST_F(InProcessClusterTest, ADeadOwnersFilesAreGoneAndTheirNamesFree) {
  InProcessCluster c(dir_, 3);
  ASSERT_EQ(c.open(2, kRoot, "lost", O_CREAT | O_WRONLY, "x").value(), 2);
  c.net().kill(2);
  auto read = c.read(0, kRoot, "lost");
  EXPECT_FALSE(read) << "read " << read.value();
  auto o = c.open(1, kRoot, "lost", O_CREAT | O_WRONLY, "again");
  ASSERT_TRUE(o) << o.status().to_string();
  EXPECT_EQ(o.value(), 1);
  EXPECT_EQ(c.read(0, kRoot, "lost").value(), "again");
}

TEST_F(InProcessClusterTest, ASilentShardCostsATimeoutThenTheOwnersAreAsked) {
  constexpr int kRanks = 3;
  InProcessCluster c(dir_, kRanks, milliseconds(200));
  const std::string name = name_homed_at(kRoot, 2, kRanks);
  ASSERT_EQ(c.open(1, kRoot, name, O_CREAT | O_WRONLY, "y").value(), 1);
  c.net().silence(2, true);  // a cut link: no answer, no error
  auto owner = c.owner_of(0, kRoot, name);
  ASSERT_TRUE(owner) << owner.status().to_string();
  EXPECT_EQ(owner.value(), 1);
  // A create needs the shard: it fails (no hang) while the link is cut.
  auto o = c.open(0, kRoot, name_homed_at(kRoot, 2, kRanks, "g"), O_CREAT | O_WRONLY);
  ASSERT_FALSE(o);
  EXPECT_TRUE(o.err() == ETIMEDOUT || o.err() == EIO) << o.status().to_string();
  c.net().silence(2, false);
  EXPECT_EQ(c.open(0, kRoot, name_homed_at(kRoot, 2, kRanks, "g"), O_CREAT | O_WRONLY).value(), 0);
}

TEST_F(InProcessClusterTest, ARankFrozenDuringAMkdirAppliesItAndItsUndoInOrder) {
  // Rank 2 stops answering (SIGSTOP) while rank 0 makes a directory: the
  // coordinator times out on it, undoes the mkdir everywhere, and rank 2 gets
  // both messages when it runs again. Applied in the wrong order (the undo
  // first), rank 2 alone would keep the directory: a split namespace.
  InProcessCluster c(dir_, 3, milliseconds(200));
  const std::string name = name_homed_at(kRoot, 1, 3, "ckpt");  // its shard answers
  c.net().hold(2);
  auto made = c.mkdir(0, kRoot, name);
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.err() == ETIMEDOUT || made.err() == EIO) << made.status().to_string();
  c.net().release(2);
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(c.stored(r, kRoot).empty()) << "rank " << r << " kept the undone mkdir";
  auto again = c.mkdir(1, kRoot, name);
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_EQ(holders(c, kRoot, name), (std::vector<int>{0, 1, 2}));
}

TEST_F(InProcessClusterTest, AMkdirUndoneAfterAFileWasMadeInItStaysOnEveryRank) {
  // Rank 2 stops answering during a mkdir, so the coordinator undoes it; but
  // a worker on rank 1 made a file in the new directory the moment it
  // appeared there. Before the fix the undo failed on rank 1 alone (not
  // empty) and succeeded on the others: rank 1 kept the directory for good
  // (the torture test's final check: t/d "d0 d1 d3" on one rank, "d0 d1" on
  // another). Now the directory stays on every rank, and the mkdir succeeds.
  InProcessCluster c(dir_, 3, milliseconds(200));
  const std::string name = name_homed_at(kRoot, 1, 3, "ckpt");  // its shard answers
  std::atomic<bool> tried{false};
  std::atomic<int> made_file{-1};
  c.net().set_hook(1, [&](int, Op op, std::span<const uint8_t> p, bool after) {
    DirChange m;
    if (!after || op != Op::kDirApply || !m.decode(p) || m.kind != DirChange::kMkdir || tried.exchange(true)) return;
    auto o = c.open(1, m.dir2, name_homed_at(m.dir2, 1, 3, "x"), O_CREAT | O_WRONLY, "rank 1's");
    made_file.store(o ? o.value() : -o.err());
  });
  c.net().hold(2);
  auto made = c.mkdir(0, kRoot, name);
  c.net().release(2);
  c.net().set_hook(1, {});
  ASSERT_EQ(made_file.load(), 1) << "the file in the new directory was not made on rank 1";
  ASSERT_TRUE(made) << made.status().to_string();
  EXPECT_EQ(holders(c, kRoot, name), (std::vector<int>{0, 1, 2}));
  for (int r = 0; r < 3; ++r) EXPECT_EQ(c.dir_id(r, kRoot, name), made.value()) << "rank " << r;
}

TEST_F(InProcessClusterTest, AMkdirWhoseShardWasFrozenLeavesNoClaimBehind) {
  // The name's locator shard is stopped during a mkdir: the mkdir fails, and
  // its claim, which the shard runs when it continues, must not leave the
  // name claimed for a directory that does not exist (every later mkdir of
  // it would fail with EEXIST, every create with EISDIR).
  InProcessCluster c(dir_, 3, milliseconds(200));
  const std::string name = name_homed_at(kRoot, 2, 3, "ckpt");
  c.net().hold(2);
  auto made = c.mkdir(0, kRoot, name);
  ASSERT_FALSE(made);
  c.net().release(2);
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(c.stored(r, kRoot).empty()) << "rank " << r;
  EXPECT_EQ(c.owner_of(1, kRoot, name).err(), ENOENT);
  auto again = c.mkdir(1, kRoot, name);
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_EQ(holders(c, kRoot, name), (std::vector<int>{0, 1, 2}));
}

TEST_F(InProcessClusterTest, ARankFrozenDuringAnRmdirDoesNotCloseTheDirectoryForGood) {
  // The same for an rmdir: rank 2's "prepare" (no new files in it) arrives
  // late, after the coordinator's "abort". In the wrong order, the directory
  // would stay closed on rank 2: every create in it there would fail.
  InProcessCluster c(dir_, 3, milliseconds(200));
  auto d = c.mkdir(1, kRoot, "out");
  ASSERT_TRUE(d);
  c.net().hold(2);
  EXPECT_NE(c.rmdir(0, kRoot, "out"), 0);
  c.net().release(2);
  EXPECT_EQ(holders(c, kRoot, "out"), (std::vector<int>{0, 1, 2})) << "the rmdir failed: still everywhere";
  auto o = c.open(2, d.value(), "result", O_CREAT | O_WRONLY, "ok");
  ASSERT_TRUE(o) << "rank 2 cannot create in the directory: " << o.status().to_string();
  EXPECT_EQ(o.value(), 2);
}

TEST_F(InProcessClusterTest, ARankFrozenDuringADirectoryRenameEndsWithTheSameReplicaAsTheOthers) {
  // Rank 2 stops answering while rank 0 renames a directory: the rename
  // fails, and rank 2 gets it and its undo, in order, when it runs again.
  // Before the fix the coordinator undid the rename on the ranks that had
  // answered, and only on those: rank 2 kept the new name, the others the
  // old one, for good (the torture test's final check saw t/d list "d1 d2"
  // on one rank and "d0 d3" on another).
  InProcessCluster c(dir_, 3, milliseconds(200));
  ASSERT_TRUE(c.mkdir(1, kRoot, "d0"));
  const std::string to = name_homed_at(kRoot, 1, 3, "d1");  // its shard answers
  c.net().hold(2);
  const int rc = c.rename(0, kRoot, "d0", kRoot, to);
  c.net().release(2);
  const std::vector<std::string> expect{rc == 0 ? to : std::string("d0")};
  for (int r = 0; r < 3; ++r) EXPECT_EQ(c.stored(r, kRoot), expect) << "rank " << r << " (the rename answered " << rc << ")";
  EXPECT_NE(rc, 0) << "renamed while a rank was silent";
  EXPECT_EQ(c.owner_of(0, kRoot, to).err(), ENOENT) << "the target name's claim was left behind";
  EXPECT_EQ(c.owner_of(0, kRoot, "d0").value(), LocatorShard::kDirectory);
  // The namespace goes on from there on every rank.
  ASSERT_EQ(c.rename(1, kRoot, "d0", kRoot, to), 0);
  auto again = c.mkdir(2, kRoot, "d0");
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_EQ(holders(c, kRoot, "d0"), (std::vector<int>{0, 1, 2}));
  for (int r = 0; r < 3; ++r) EXPECT_EQ(c.stored(r, kRoot).size(), 2u) << "rank " << r;
}

TEST_F(InProcessClusterTest, ARenameOntoANonEmptyDirectoryWhoseShardIsSlowFailsAndKeepsBoth) {
  // The target's locator shard does not answer the rename's lookup in time.
  // Before the fix, no answer counted as "no target": the rename went ahead
  // without checking that the target was empty everywhere, replaced it on
  // the ranks where it was, failed where it was not (rank 1 has a file in
  // it), and the undo could not bring the replaced directory back.
  InProcessCluster c(dir_, 3, milliseconds(200));
  ASSERT_TRUE(c.mkdir(0, kRoot, "d0"));
  const std::string to = name_homed_at(kRoot, 2, 3, "d1");
  auto target = c.mkdir(0, kRoot, to);
  ASSERT_TRUE(target);
  ASSERT_EQ(c.open(1, target.value(), "x", O_CREAT | O_WRONLY, "rank 1's").value(), 1);
  std::atomic<int> slowed{0};
  c.net().set_hook(2, [&](int, Op op, std::span<const uint8_t> p, bool after) {
    msg::Name m;
    if (after || op != Op::kLocLookup || !msg::decode(p, &m) || m.name != to || slowed.fetch_add(1) != 0) return;
    std::this_thread::sleep_for(milliseconds(300));
  });
  EXPECT_EQ(c.rename(0, kRoot, "d0", kRoot, to), ENOTEMPTY);
  c.net().set_hook(2, {});
  for (int r = 0; r < 3; ++r) {
    auto names = c.stored(r, kRoot);
    std::sort(names.begin(), names.end());
    std::vector<std::string> both{"d0", to};
    std::sort(both.begin(), both.end());
    EXPECT_EQ(names, both) << "rank " << r;
  }
  auto x = c.read(0, target.value(), "x");
  ASSERT_TRUE(x) << "the target's file is gone: " << x.status().to_string();
  EXPECT_EQ(x.value(), "rank 1's");
}

TEST_F(InProcessClusterTest, TheUndoOfAFailedMkdirRemovesOnlyTheDirectoryItMade) {
  // Rank 2's replica holds an empty directory of that name that no rank
  // knows about: its apply refuses the mkdir, and the undo, sent to every
  // rank, removed that directory too before the fix (by name).
  InProcessCluster c(dir_, 3);
  const std::string obstacle = dir_ + "/store2/files/results";
  ASSERT_EQ(::mkdir(obstacle.c_str(), 0755), 0);
  EXPECT_EQ(c.mkdir(1, kRoot, "results").err(), EEXIST);
  EXPECT_TRUE(c.stored(0, kRoot).empty()) << "rolled back on rank 0";
  EXPECT_TRUE(c.stored(1, kRoot).empty()) << "rolled back on rank 1";
  struct stat st;
  EXPECT_EQ(::stat(obstacle.c_str(), &st), 0) << "rank 2's own directory was removed";
}

TEST_F(InProcessClusterTest, ARankCutOffFromTheJobFencesItselfAndTheRestGoesOn) {
  // Rank 3's link was down long enough for both sides to declare the other
  // dead. Alone, it would be its own coordinator and shard for every name:
  // it must not change the namespace apart from the others.
  InProcessCluster c(dir_, 4);
  ASSERT_EQ(c.open(3, kRoot, "mine.3", O_CREAT | O_WRONLY, "rank 3's").value(), 3);
  ASSERT_EQ(c.open(1, kRoot, "theirs.1", O_CREAT | O_WRONLY, "rank 1's").value(), 1);
  c.net().partition({0, 0, 0, 1});
  EXPECT_EQ(c.mkdir(3, kRoot, "alone").err(), EIO);
  EXPECT_EQ(c.open(3, kRoot, "new.3", O_CREAT | O_WRONLY).err(), EIO);
  EXPECT_EQ(c.owner_of(3, kRoot, "theirs.1").err(), EIO);
  EXPECT_EQ(c.read(3, kRoot, "mine.3").value(), "rank 3's") << "its own files stay readable";
  // The majority goes on without it.
  auto d = c.mkdir(1, kRoot, "together");
  ASSERT_TRUE(d) << d.status().to_string();
  ASSERT_EQ(c.open(2, kRoot, "new.2", O_CREAT | O_WRONLY, "x").value(), 2);
  EXPECT_EQ(c.read(0, kRoot, "theirs.1").value(), "rank 1's");
  EXPECT_FALSE(c.read(0, kRoot, "mine.3")) << "the cut-off rank's files are lost to the job";
  for (int r = 0; r < 3; ++r) EXPECT_EQ(c.stored(r, kRoot).size(), r == 1 ? 2u : r == 2 ? 2u : 1u) << "rank " << r;
  EXPECT_EQ(c.stored(3, kRoot), std::vector<std::string>{"mine.3"}) << "nothing applied on rank 3 alone";
}

TEST_F(InProcessClusterTest, AJobSplitInHalvesGoesOnOnlyOnRankZerosSide) {
  InProcessCluster c(dir_, 4);
  c.net().partition({0, 1, 0, 1});
  EXPECT_TRUE(c.mkdir(2, kRoot, "a")) << "ranks 0 and 2 go on";
  EXPECT_EQ(c.mkdir(1, kRoot, "b").err(), EIO) << "ranks 1 and 3 are fenced";
  EXPECT_EQ(c.mkdir(3, kRoot, "a").err(), EIO);
  EXPECT_EQ(c.open(1, kRoot, "f", O_CREAT | O_WRONLY).err(), EIO);
  EXPECT_TRUE(c.stored(1, kRoot).empty());
  EXPECT_TRUE(c.stored(3, kRoot).empty());
}

}  // namespace
}  // namespace dsdfs::fs::testing
