// SPDX-License-Identifier: Apache-2.0
// The torture test's oracle, tested without a mount: the contents it writes tell whole data
// from torn, foreign or misplaced bytes, and the report keeps violations and documented limits
// apart.

#include <gtest/gtest.h>

#include "tests/mpi/torture_content.h"
#include "tests/mpi/torture_report.h"
#include "tests/mpi/torture_rules.h"

namespace dsdfs::mpitest::torture {
namespace {

TEST(TortureContent, CellsTellWholeCellsHolesAndForeignBytesApart) {
  std::string data = cells_make(4, 10, 3, 77);
  EXPECT_TRUE(cells_check(data, 160).ok());
  EXPECT_EQ(cells_check(data, 176).bad_cells, 4u) << "cells read at the wrong offset";
  std::string holes(64, '\0');
  EXPECT_TRUE(cells_check(holes, 0).ok());
  EXPECT_EQ(cells_check(holes, 0).zero_cells, 4u);
  std::string appended = cells_make(2, kAppendedCell, 1, 5);
  EXPECT_TRUE(cells_check(appended, 4096).ok());
  std::string torn = data;
  torn[20] ^= 1;
  EXPECT_EQ(cells_check(torn, 160).bad_cells, 1u);
  EXPECT_TRUE(cells_check(data.substr(0, 40), 160).partial_tail);
}

TEST(TortureContent, RecordsParseOnlyWhenWhole) {
  RecordId id{2, 17, 12345};
  std::string rec = record_make(id);
  ASSERT_EQ(rec.size(), kRecord);
  EXPECT_EQ(rec.back(), '\n');
  auto parsed = record_parse(rec);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, id);
  std::string torn = rec.substr(0, 64) + record_make({2, 17, 12346}).substr(64);
  EXPECT_FALSE(record_parse(torn).has_value());
  EXPECT_FALSE(record_parse(std::string(kRecord, '\0')).has_value());
  EXPECT_FALSE(record_parse(rec.substr(1) + "x").has_value());
}

TEST(TortureContent, VersionsAreWholeOrRejected) {
  std::string v = version_make(1, 0xABCDEF, 10000);
  EXPECT_TRUE(version_check(v, 1).ok);
  EXPECT_EQ(version_check(v, 1).id, 0xABCDEFu);
  EXPECT_FALSE(version_check(v, 2).ok) << "another name's version";
  EXPECT_FALSE(version_check(v.substr(0, 9000), 1).ok) << "cut short";
  std::string mixed = v.substr(0, 5000) + version_make(1, 0xABCDF0, 10000).substr(5000);
  EXPECT_FALSE(version_check(mixed, 1).ok) << "two versions mixed";
  EXPECT_FALSE(version_check("", 1).ok);
}

TEST(TortureContent, GrowBytesDifferBetweenNeighbouringVersionsAndAreNeverZero) {
  for (uint64_t o = 0; o < 5000; ++o) {
    for (uint64_t k = 0; k < 300; k += 7) {
      ASSERT_NE(grow_byte(k, o), 0);
      ASSERT_NE(grow_byte(k, o), grow_byte(k + 1, o));
    }
  }
}

TEST(TortureContent, ReportCountsViolationsAndLimitsSeparately) {
  Report report(42, 0, false);
  report.count("f.open(rw,creat)", ENOENT);
  report.violation(kCreatEnoent, {1, 2, 3, 0.5}, "f.open(rw,creat)", "open(...)", "ENOENT",
                   "-1 ENOENT");
  report.limit(kLimitEio, {1, 2, 4, 0.6}, "f.pread", "pread(...)", "EIO", "-1 EIO");
  EXPECT_EQ(report.violations(), 1u);
  EXPECT_EQ(report.limits(), 1u);
  std::string s = report.summary(1);
  EXPECT_NE(s.find("creat-enoent (1)"), std::string::npos) << s;
  EXPECT_NE(s.find("limit-eio-changed (1)"), std::string::npos) << s;
  Report strict(42, 0, true);
  strict.limit(kLimitEio, {1, 2, 4, 0.6}, "f.pread", "pread(...)", "EIO", "-1 EIO");
  EXPECT_EQ(strict.violations(), 1u);
}
}  // namespace
}  // namespace dsdfs::mpitest::torture
