// SPDX-License-Identifier: Apache-2.0
#include "daemon/errors.h"

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace dsdfs::fs {

int kernel_errno(int err) {
  switch (err) {
    case 0:
    // What local file systems answer, and what a peer's store answers for its files.
    case EPERM:
    case ENOENT:
    case EINTR:
    case EIO:
    case ENXIO:
    case E2BIG:
    case EBADF:
    case EAGAIN:
    case ENOMEM:
    case EACCES:
    case EFAULT:
    case EBUSY:
    case EEXIST:
    case EXDEV:
    case ENODEV:
    case ENOTDIR:
    case EISDIR:
    case EINVAL:
    case ENFILE:
    case EMFILE:
    case ETXTBSY:
    case EFBIG:
    case ENOSPC:
    case ESPIPE:
    case EROFS:
    case EMLINK:
    case ERANGE:
    case ENAMETOOLONG:
    case ENOLCK:
    case ENOTEMPTY:
    case ELOOP:
    case ENODATA:
    case EOVERFLOW:
    case EOPNOTSUPP:
    case EDQUOT:
    // Only for a node id the daemon no longer knows (docs/user-guide.md).
    case ESTALE:
      return err;
    default:
      DSDFS_DEBUG("errno %d (%s) answered as EIO", err, std::strerror(err));
      return EIO;
  }
}

}  // namespace dsdfs::fs
