// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "daemon/store.h"

namespace dsdfs::fs::testing {

// A fixture with a fresh directory under /tmp (dir_), removed with all it
// holds after the test.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dsdfs-unit-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { remove_tree(dir_); }
  std::string dir_;
};

}  // namespace dsdfs::fs::testing
