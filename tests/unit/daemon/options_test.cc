// SPDX-License-Identifier: Apache-2.0
#include "daemon/options.h"

#include <gtest/gtest.h>

namespace dsdfs::fs {
namespace {

TEST(Options, MountPointAndDefaults) {
  auto o = options_parse({"/shared"});
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->mountpoint, "/shared");
  EXPECT_TRUE(o->store.empty());
  EXPECT_FALSE(o->keep_store);
  EXPECT_EQ(o->threads, 0u);  // every FUSE worker started is kept
}

TEST(Options, ValuesWithSpaceOrEquals) {
  auto o = options_parse({"--store", "/s", "--threads=4", "/m", "--keep-store", "--timeout", "2.5"});
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->store, "/s");
  EXPECT_EQ(o->threads, 4u);
  EXPECT_TRUE(o->keep_store);
  EXPECT_DOUBLE_EQ(o->timeout_s, 2.5);
}

TEST(Options, UnknownOptionIsAUsageError) {
  auto o = options_parse({"/m", "--frobnicate"});
  ASSERT_FALSE(o.is_ok());
  EXPECT_EQ(o.err(), EINVAL);
  EXPECT_NE(o.status().context().find("--frobnicate"), std::string::npos);
}

TEST(Options, MissingMountPointAndExtraArgument) {
  EXPECT_FALSE(options_parse({}).is_ok());
  EXPECT_FALSE(options_parse({"/a", "/b"}).is_ok());
  EXPECT_TRUE(options_parse({"--help"}).is_ok());
  EXPECT_TRUE(options_parse({"--version"}).is_ok());
}

TEST(Options, BadNumbersAreRefused) {
  EXPECT_FALSE(options_parse({"/m", "--threads", "0"}).is_ok());
  EXPECT_FALSE(options_parse({"/m", "--threads", "x"}).is_ok());
  EXPECT_FALSE(options_parse({"/m", "--timeout", "-1"}).is_ok());
  EXPECT_FALSE(options_parse({"/m", "--store"}).is_ok());
  EXPECT_FALSE(options_parse({"/m", "--keep-store=yes"}).is_ok());
  EXPECT_FALSE(options_parse({"/m", "--log-level", "loud"}).is_ok());
}

TEST(Options, PassthroughIsAutoUnlessTurnedOff) {
  EXPECT_TRUE(options_parse({"/m"})->passthrough);
  EXPECT_TRUE(options_parse({"/m", "--passthrough", "auto"})->passthrough);
  EXPECT_FALSE(options_parse({"/m", "--passthrough=off"})->passthrough);
  auto bad = options_parse({"/m", "--passthrough", "on"});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().context().find("--passthrough needs auto or off"), std::string::npos);
}

TEST(Options, DirNotifyMethod) {
  auto o = options_parse({"/m"});
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->dir_notify, DirNotify::kAuto);
  o = options_parse({"/m", "--dir-notify", "entry"});
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->dir_notify, DirNotify::kEntry);
  o = options_parse({"/m", "--dir-notify=epoch"});
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->dir_notify, DirNotify::kEpoch);
  EXPECT_FALSE(options_parse({"/m", "--dir-notify", "wait"}).is_ok());
}

TEST(Placeholders, RankHostAndPercent) {
  auto r = expand_placeholders("/tmp/mnt%r-%h-100%%", 3, "node7");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r.value(), "/tmp/mnt3-node7-100%");
}

TEST(Placeholders, UnknownOrDanglingIsAnError) {
  EXPECT_FALSE(expand_placeholders("/tmp/%x", 0, "h").is_ok());
  EXPECT_FALSE(expand_placeholders("/tmp/%", 0, "h").is_ok());
}

TEST(Placeholders, DefaultStoreDiffersPerMountAndKeepsRank) {
  unsetenv("SLURM_JOB_ID");
  unsetenv("PMIX_NAMESPACE");
  std::string a = default_store_pattern("/tmp/a");
  std::string b = default_store_pattern("/tmp/b");
  EXPECT_NE(a, b);
  EXPECT_NE(a.find("-r%r"), std::string::npos);
  setenv("SLURM_JOB_ID", "1234", 1);
  EXPECT_NE(default_store_pattern("/tmp/a").find("job1234"), std::string::npos);
  unsetenv("SLURM_JOB_ID");
}

}  // namespace
}  // namespace dsdfs::fs
