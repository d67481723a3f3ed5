// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ucs/type/status.h>

#include "common/status.h"

namespace dsdfs::rdma {

// The one place that turns a UCX status into a positive errno (Mercury's
// na_ucs_status_to_na). UCS_OK maps to 0; every failure maps to a nonzero errno.
int ucs_status_to_errno(ucs_status_t status);

// Status carrying ucs_status_to_errno(status) and "what: <UCX status string>".
// Does not log; the caller logs once where it detects the error.
Status status_from_ucs(ucs_status_t status, const char* what);

}  // namespace dsdfs::rdma
