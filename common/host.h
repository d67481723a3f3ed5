// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace dsdfs {

// This machine's host name up to the first dot ("unknown" if it has none),
// as Slurm and the logs name nodes.
std::string short_host_name();

}  // namespace dsdfs
