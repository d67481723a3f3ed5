// SPDX-License-Identifier: Apache-2.0
// The one place where an error becomes the errno an application sees.
#pragma once

#include <cerrno>

#include "common/status.h"

namespace dsdfs::fs {

// The errno the kernel (and so the application) gets for `err`. Errors of
// local system calls and the file-system errnos a peer reports pass as they
// are; everything else -- transport and protocol failures such as
// ETIMEDOUT, ECONNABORTED, ECONNRESET, ENOTCONN, EHOSTUNREACH, EPROTO,
// ECANCELED, EMSGSIZE, EDEADLK -- becomes EIO (docs/user-guide.md, "Errors").
// ENOSYS would make the kernel stop sending that operation for good, so it
// is never passed on either.
int kernel_errno(int err);

// An owner's answer that the file a handle refers to is no longer there
// (unlinked, replaced, taken over): ENOENT or ESTALE.
inline bool file_left_owner(int err) { return err == ENOENT || err == ESTALE; }

// A Status for an errno of the file-system core (0: success).
inline Status errno_status(int err) { return err ? Status::error(err) : Status::ok(); }

}  // namespace dsdfs::fs
