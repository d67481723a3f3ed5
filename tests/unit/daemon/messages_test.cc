// SPDX-License-Identifier: Apache-2.0
#include "daemon/messages.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <array>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "daemon/cluster.h"

namespace dsdfs::fs::msg {
namespace {

// Every message: what it encodes decodes to a value that encodes to the same
// bytes; every shorter prefix and one extra byte are refused (the handler
// then answers EPROTO without acting).
template <typename M>
void expect_framing(const M& m) {
  SCOPED_TRACE(M::kName);
  const std::vector<uint8_t> bytes = encode(m);
  M back;
  ASSERT_TRUE(decode(bytes, &back));
  EXPECT_EQ(encode(back), bytes);
  for (size_t n = 0; n < bytes.size(); ++n) {
    M cut;
    EXPECT_FALSE(decode(std::span<const uint8_t>(bytes.data(), n), &cut)) << "prefix of " << n << " bytes";
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  M extra;
  EXPECT_FALSE(decode(longer, &extra));
}

TEST(Messages, EveryRequestAndReplyRoundTripsAndRefusesTruncation) {
  const std::array<uint8_t, 3> rkey{1, 2, 3};
  const std::array<uint8_t, 5> data{'h', 'e', 'l', 'l', 'o'};
  struct stat st {};
  st.st_ino = 42;
  st.st_mode = S_IFREG | 0644;
  st.st_size = 4096;
  st.st_mtim = {5, 6};
  expect_framing(Name{7, "f"});
  expect_framing(Claim{{7, "f"}, 2, 3, 1});
  expect_framing(ClaimReply{2, 1});
  expect_framing(LocRemove{{7, "f"}, 1});
  expect_framing(Owner{-2});
  expect_framing(Stat{st, 99});
  expect_framing(StatAsk{{7, "f"}, kInlineMax});
  expect_framing(StatBytes{Stat{st, 99}, {}});
  struct stat small = st;
  small.st_size = 3;
  expect_framing(StatBytes{Stat{small, 99}, {1, 2, 3}});
  expect_framing(Read{{7, "f"}, 42, 0, 1 << 20, 4096});
  expect_framing(Write{{7, "log"}, 42, 0x1234, true, 0, data});
  expect_framing(WriteReply{5, -1});
  expect_framing(WriteReply{kWriteMoved, 2});
  expect_framing(Rename{{7, "a"}, {8, "b"}, RENAME_NOREPLACE});
  expect_framing(Drop{{7, "f"}, 1, 42, kDropMoved});
  expect_framing(Setattr{{7, "f"}, 42, 1, 0644, 1, 2, 10, 3, 4, 5, 6});
  expect_framing(Map{{7, "f"}, 42, 99});
  expect_framing(MapReply{0x1000, 4096, rkey});
  expect_framing(Truncate{{7, "f"}, 42});
  expect_framing(TruncateReply{false, {}});
  expect_framing(TruncateReply{true, {st, 99}});
  expect_framing(Link{{7, "a"}, 42, {8, "b"}});
  expect_framing(MadeDir{(uint64_t{1} << 48) | 3});
  expect_framing(Find{7, 42});
  expect_framing(RankDown{3});
  expect_framing(Join{2, 5, "node2", {1, 2, 3}});
  expect_framing(RankUp{2, {1, 2, 3}});
  expect_framing(ShardFill{2, 1});
  expect_framing(ShardFillReply{7});
  expect_framing(InfoRequest{0});
  expect_framing(StageStart{(uint64_t{1} << 48) | 2, 1, 4, "results/run 1", "/lustre/me"});
  expect_framing(StageQuery{9});
  JoinReply joined;
  joined.alive = {1, 0, 1};
  joined.addresses.resize(3);
  joined.addresses[0].push_back(1);
  joined.addresses[2].push_back(3);
  joined.dirs = {{0, 0, "", 040755, 0, 0, 1, 2, 3, 4}, {7, 0, "d", 040700, 1000, 1000, 5, 6, 7, 8}};
  expect_framing(joined);
  expect_framing(DirList{7});
  expect_framing(DirList{7, DirList::kCountOnly});
  expect_framing(DirListReply{{{"a", DT_REG, 1}, {"b", DT_LNK, 2}}, 3});
  expect_framing(DirListReply{});
}

TEST(Messages, FieldsOutOfRangeAreRefused) {
  auto refused = [](const auto& m) {
    std::remove_cvref_t<decltype(m)> back;
    return !decode(encode(m), &back);
  };
  EXPECT_TRUE(refused(Name{7, ""}));
  EXPECT_TRUE(refused(Name{7, ".."}));
  EXPECT_TRUE(refused(Name{7, "a/b"}));
  EXPECT_TRUE(refused(Name{7, std::string(kMaxName + 1, 'x')}));
  EXPECT_TRUE(refused(Claim{{7, "f"}, -1, 0, -1}));      // no such rank
  EXPECT_TRUE(refused(Claim{{7, "f"}, 0, 16, -1}));      // unknown claim flag
  EXPECT_TRUE(refused(Claim{{7, "f"}, 0, 0, -2}));
  EXPECT_TRUE(refused(ClaimReply{3, 0}));
  EXPECT_TRUE(refused(StatAsk{{7, "f"}, kInlineMax + 1}));
  EXPECT_TRUE(refused(StatBytes{Stat{}, {1, 2, 3}}));  // bytes that are not the file's size
  EXPECT_TRUE(refused(Read{{7, "f"}, 42, 0, 0, kMaxIo + 1}));
  EXPECT_TRUE(refused(Read{{7, "f"}, 42, 0, (uint64_t{1} << 62) + 1, 1}));
  EXPECT_TRUE(refused(WriteReply{kWriteMoved, -1}));
  EXPECT_TRUE(refused(WriteReply{kMaxIo + 1, -1}));
  EXPECT_TRUE(refused(Rename{{7, "a"}, {8, "b"}, 0x80}));
  EXPECT_TRUE(refused(Drop{{7, "f"}, 1, 42, 2}));
  EXPECT_TRUE(refused(Setattr{{7, "f"}, 42, 1, 0, 0, 0, -1, 0, 0, 0, 0}));  // negative size
  EXPECT_TRUE(refused(MadeDir{0}));
  EXPECT_TRUE(refused(Find{7, 0}));
  EXPECT_TRUE(refused(RankDown{-1}));
  EXPECT_TRUE(refused(Join{-1, 5, "node2", {1}}));
  EXPECT_TRUE(refused(RankUp{-1, {1}}));
  EXPECT_TRUE(refused(ShardFill{1, 2}));
  EXPECT_TRUE(refused(DirListReply{{{"a/b", DT_REG, 1}}}));
  EXPECT_TRUE(refused(DirList{7, 2}));
  EXPECT_TRUE(refused(StageStart{1, 0, 4, "results", "relative/dest"}));  // the destination must be absolute
  EXPECT_TRUE(refused(StageStart{1, 0, 4, "results", ""}));
  EXPECT_TRUE(refused(StageStart{1, 0, 4, "results/../..", "/dest"}));  // out of the store
  EXPECT_TRUE(refused(StageStart{1, 0, 4, "/etc", "/dest"}));
  // An append flag other than 0 or 1.
  std::vector<uint8_t> w = encode(Write{{7, "f"}, 42, 0x1234, true, 0, {}});
  w[8 + 4 + 1 + 8 + 8] = 2;
  Write back;
  EXPECT_FALSE(decode(w, &back));
  // A list that claims more entries than its bytes can hold.
  const std::vector<uint8_t> lie{0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x42, 0x0f, 0x00};  // moved 0, u32 1,000,000
  DirListReply list;
  EXPECT_FALSE(decode(lie, &list));
}

TEST(Messages, AWriteHeaderFollowedByItsBytesIsTheWholeMessage) {
  const std::array<uint8_t, 4> data{1, 2, 3, 4};
  Write m{{7, "f"}, 42, 0x1234, false, 100, data};
  WireWriter w;
  m.put_header(w, static_cast<uint32_t>(data.size()));
  auto& b = w.buffer();
  b.insert(b.end(), data.begin(), data.end());
  EXPECT_EQ(w.buffer(), encode(m));
  Write back;
  ASSERT_TRUE(decode(w.buffer(), &back));
  EXPECT_EQ(back.off, 100u);
  EXPECT_EQ(back.version, 0x1234u);
  EXPECT_FALSE(back.append);
  EXPECT_TRUE(std::equal(back.data.begin(), back.data.end(), data.begin(), data.end()));
}

// docs/architecture.md's wire table names, for every op, the same request and reply
// messages as kOpMessages, and kOpMessages's numbers are Op's.
TEST(Messages, TheWireTableInTheDocsListsEveryOpWithItsMessages) {
  static_assert(static_cast<uint16_t>(Op::kDirMutate) == 1 && static_cast<uint16_t>(Op::kStageStatus) == 28);
  const std::map<std::string, Op> ops = {
      {"DirMutate", Op::kDirMutate},       {"DirApply", Op::kDirApply},     {"LocClaim", Op::kLocClaim},
      {"LocLookup", Op::kLocLookup},       {"LocRemove", Op::kLocRemove},   {"OwnFind", Op::kOwnFind},
      {"FileStat", Op::kFileStat},         {"FileRead", Op::kFileRead},     {"FileWrite", Op::kFileWrite},
      {"DirList", Op::kDirList},           {"FileUnlink", Op::kFileUnlink}, {"FileRename", Op::kFileRename},
      {"FileDrop", Op::kFileDrop},         {"FileReadlink", Op::kFileReadlink}, {"FileMap", Op::kFileMap},
      {"FileSetattr", Op::kFileSetattr},   {"FileTruncate", Op::kFileTruncate}, {"FileLink", Op::kFileLink},
      {"FileFind", Op::kFileFind},   {"RankDown", Op::kRankDown},
      {"RankJoin", Op::kRankJoin},   {"RankUp", Op::kRankUp},     {"ShardFill", Op::kShardFill},
      {"RankInfo", Op::kRankInfo},   {"JobStop", Op::kJobStop},   {"StageStart", Op::kStageStart},
      {"StageStatus", Op::kStageStatus}};
  std::ifstream in(std::string(DSDFS_SOURCE_ROOT) + "/docs/architecture.md");
  ASSERT_TRUE(in) << "docs/architecture.md not found under " << DSDFS_SOURCE_ROOT;
  std::stringstream text;
  text << in.rdbuf();
  // | 3 LocClaim | shard | Claim → ClaimReply | ...
  const std::regex row(R"(\n\| (\d+) (\w+) \| [^|]* \| (\w+) → ([\w-]+) \|)");
  std::map<int, std::array<std::string, 3>> table;
  const std::string doc = text.str();
  for (std::sregex_iterator it(doc.begin(), doc.end(), row), end; it != end; ++it) {
    table[std::stoi((*it)[1])] = {(*it)[2], (*it)[3], (*it)[4]};
  }
  EXPECT_EQ(table.size(), std::size(kOpMessages));
  for (const OpMessages& m : kOpMessages) {
    SCOPED_TRACE(m.name);
    ASSERT_TRUE(ops.count(m.name)) << "no such Op";
    EXPECT_EQ(static_cast<uint16_t>(ops.at(m.name)), m.op);
    ASSERT_TRUE(table.count(m.op)) << "op " << m.op << " is missing from the wire table";
    EXPECT_EQ(table[m.op][0], m.name);
    EXPECT_EQ(table[m.op][1], m.request);
    EXPECT_EQ(table[m.op][2], m.reply);
  }
}

}  // namespace
}  // namespace dsdfs::fs::msg
