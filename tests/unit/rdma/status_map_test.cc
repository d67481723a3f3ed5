// SPDX-License-Identifier: Apache-2.0
#include "rdma/status_map.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace dsdfs::rdma {
namespace {

TEST(StatusMap, OkIsZeroAndEveryErrorIsAPositiveErrno) {
  EXPECT_EQ(ucs_status_to_errno(UCS_OK), 0);
  for (int s = -1; s >= UCS_ERR_LAST; --s) {
    int e = ucs_status_to_errno(static_cast<ucs_status_t>(s));
    EXPECT_GT(e, 0) << s;
    EXPECT_LT(e, 4096) << s;
  }
}

TEST(StatusMap, KnownMappings) {
  EXPECT_EQ(ucs_status_to_errno(UCS_ERR_NO_MEMORY), ENOMEM);
  EXPECT_EQ(ucs_status_to_errno(UCS_ERR_TIMED_OUT), ETIMEDOUT);
  EXPECT_EQ(ucs_status_to_errno(UCS_ERR_ENDPOINT_TIMEOUT), ETIMEDOUT);
  EXPECT_EQ(ucs_status_to_errno(UCS_ERR_IO_ERROR), EIO);
  EXPECT_EQ(ucs_status_to_errno(UCS_ERR_CANCELED), ECANCELED);
  EXPECT_EQ(ucs_status_to_errno(UCS_ERR_UNREACHABLE), EHOSTUNREACH);
  EXPECT_EQ(ucs_status_to_errno(UCS_ERR_CONNECTION_RESET), ECONNRESET);
}

TEST(StatusMap, StatusCarriesUcxString) {
  Status s = status_from_ucs(UCS_ERR_NO_MEMORY, "ucp_mem_map");
  EXPECT_EQ(s.err(), ENOMEM);
  EXPECT_NE(s.context().find("ucp_mem_map"), std::string::npos);
  EXPECT_NE(s.context().find(ucs_status_string(UCS_ERR_NO_MEMORY)), std::string::npos);
  EXPECT_TRUE(status_from_ucs(UCS_OK, "x").is_ok());
}

}  // namespace
}  // namespace dsdfs::rdma
