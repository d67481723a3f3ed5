// SPDX-License-Identifier: Apache-2.0
#include "rdma/status_map.h"

#include <cerrno>
#include <string>

namespace dsdfs::rdma {

int ucs_status_to_errno(ucs_status_t status) {
  switch (status) {
    case UCS_OK:
      return 0;
    case UCS_INPROGRESS:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_BUSY:
      return EAGAIN;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_EXCEEDS_LIMIT:
      return ENOMEM;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return EINVAL;
    case UCS_ERR_NO_ELEM:
    case UCS_ERR_NO_DEVICE:
      return ENODEV;
    case UCS_ERR_UNSUPPORTED:
    case UCS_ERR_NOT_IMPLEMENTED:
      return ENOTSUP;
    case UCS_ERR_MESSAGE_TRUNCATED:
    case UCS_ERR_OUT_OF_RANGE:
      return EMSGSIZE;
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_ENDPOINT_TIMEOUT:
      return ETIMEDOUT;
    case UCS_ERR_CANCELED:
      return ECANCELED;
    case UCS_ERR_ALREADY_EXISTS:
      return EEXIST;
    case UCS_ERR_REJECTED:
      return EACCES;
    case UCS_ERR_NOT_CONNECTED:
      return ENOTCONN;
    case UCS_ERR_CONNECTION_RESET:
      return ECONNRESET;
    case UCS_ERR_UNREACHABLE:
      return EHOSTUNREACH;
    // Transport failures (IO errors, lost peers, everything else) reach the
    // file system as EIO, the errno the kernel expects for a failed device.
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_SHMEM_SEGMENT:
    case UCS_ERR_NO_PROGRESS:
    case UCS_ERR_BUFFER_TOO_SMALL:
    case UCS_ERR_NO_MESSAGE:
    case UCS_ERR_SOME_CONNECTS_FAILED:
    default:
      return EIO;
  }
}

Status status_from_ucs(ucs_status_t status, const char* what) {
  if (status == UCS_OK) return Status::ok();
  return Status::error(ucs_status_to_errno(status),
                       std::string(what) + ": " + ucs_status_string(status));
}

}  // namespace dsdfs::rdma
