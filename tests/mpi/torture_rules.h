// SPDX-License-Identifier: Apache-2.0
#pragma once

// The rules of the torture test's oracle (torture_test.cc): what POSIX and dsdfs's promises
// (DESIGN.md section 2, the README's semantics table, the user guide) allow, one named rule
// per kind of violation, and how an errno that a call may not return is classified. Each
// violation the test prints names its rule; the summary groups by rule.
//
// Thread-safety: constants and pure functions.

#include <cerrno>

#include "tests/mpi/torture_report.h"

namespace dsdfs::mpitest::torture {

inline constexpr Rule kEstale{
    "estale",
    "ESTALE never reaches an application (DESIGN 2: no ESTALE or ENOENT while "
    "the name exists; the kernel's one retry is not a guarantee)"};
inline constexpr Rule kCreatEnoent{
    "creat-enoent",
    "open(O_CREAT) in a directory that exists and is never removed never "
    "fails with ENOENT (POSIX)"};
inline constexpr Rule kAlwaysExists{
    "always-exists",
    "this name exists for the whole run (a log, a versioned or grown "
    "file, a round's file, a test directory): ENOENT is a bug"};
inline constexpr Rule kTransportErrno{"transport-errno",
                                      "transport failures reach applications as EIO, never as a "
                                      "socket/protocol errno (DESIGN 2, user guide)"};
inline constexpr Rule kEio{"eio",
                           "EIO only where a peer died or the user guide documents it; no peer "
                           "dies in this test"};
inline constexpr Rule kLinkEperm{"link-eperm",
                                 "link(2) works from any rank for any file (DESIGN 2; "
                                 "DSDFS_TORTURE_LINK=0 turns link operations off)"};
inline constexpr Rule kFdEnoent{"fd-enoent",
                                "a call on an open file descriptor never fails with ENOENT: what "
                                "happens to names does not matter once the file is open (POSIX)"};
inline constexpr Rule kUnexpectedErrno{
    "unexpected-errno",
    "an errno that POSIX and the user guide do not allow for this "
    "call on this name"};
inline constexpr Rule kShortIo{
    "short-io", "a write to a regular file moved fewer bytes than asked without failing"};
inline constexpr Rule kWrongType{
    "wrong-type", "stat shows a file type that no operation creates under this name"};
inline constexpr Rule kCellContent{"cell-content",
                                   "bytes read are neither a hole (zeros) nor a whole 16-byte cell "
                                   "written for that offset"};
inline constexpr Rule kCellGranule{
    "cell-granule",
    "sizes and the ends of reads fall on 16-byte cells: every write and "
    "truncate in this area is a multiple of 16 at a multiple of 16"};
inline constexpr Rule kLogRecord{"log-record",
                                 "a log holds only whole records at record boundaries (appends are "
                                 "atomic per call, POSIX reads see whole writes)"};
inline constexpr Rule kLogDuplicate{"log-duplicate", "an appended record appears at most once"};
inline constexpr Rule kLogPhantom{"log-phantom",
                                  "a record appears that no append has written (yet)"};
inline constexpr Rule kLogOrder{
    "log-order", "the records of one appender appear in the order its writes returned"};
inline constexpr Rule kLogLost{
    "log-lost",
    "a record whose write() succeeded appears exactly once for an open that "
    "started after its writer's close/fsync (close-to-open, none lost)"};
inline constexpr Rule kLogShrank{
    "log-shrank", "the size of an append-only log seen from one rank never goes back"};
inline constexpr Rule kVersionContent{
    "version-content",
    "a read of a file replaced by write-temp-then-rename sees one "
    "whole version"};
inline constexpr Rule kVersionStale{
    "version-stale",
    "close-to-open: an open sees the version renamed in last before it "
    "started, or a newer one"};
inline constexpr Rule kVersionUnknown{
    "version-unknown",
    "a read shows a version before its rename started, or one never "
    "renamed onto this name"};
inline constexpr Rule kGrowContent{"grow-content",
                                   "every byte read of a file overwritten in place is one that a "
                                   "version the reader may see wrote at that offset"};
inline constexpr Rule kGrowStale{"grow-stale",
                                 "close-to-open: bytes of a version older than the one the owner "
                                 "closed/fsynced before the open"};
inline constexpr Rule kGrowSize{"grow-size",
                                "the size read lies between the size of the version closed/fsynced "
                                "before the open and that of the largest version started"};
inline constexpr Rule kReaddirDuplicate{"readdir-duplicate", "readdir never lists a name twice"};
inline constexpr Rule kReaddirMissing{"readdir-missing",
                                      "readdir lists every name that always exists"};
inline constexpr Rule kReaddirForeign{"readdir-foreign",
                                      "readdir lists only names that operations create there, with "
                                      "their type"};
inline constexpr Rule kNegativeLookup{
    "negative-lookup",
    "a name never created, or whose unlink returned, is not found "
    "on any rank"};
inline constexpr Rule kExclOneWinner{
    "excl-one-winner",
    "open(O_CREAT|O_EXCL) of one name from every worker of every rank "
    "at once: exactly one succeeds, all others get EEXIST"};
inline constexpr Rule kShared{
    "n1-shared-file",
    "N-1 checkpoint: every block that its writer wrote and closed is read "
    "back whole by every rank after a barrier"};
inline constexpr Rule kRoundContent{"round-content",
                                    "after the round's writer closed, every rank reads its bytes "
                                    "(close-to-open)"};
inline constexpr Rule kRoundOwner{
    "round-owner", "the rank whose O_CREAT created a file owns it, as every rank sees"};
inline constexpr Rule kRoundSameFile{
    "round-same-file", "every rank's open of one name reaches the same file (st_ino)"};
inline constexpr Rule kLinkConsistency{"link-consistency",
                                       "after link(), both names show one st_ino and st_nlink 2 on "
                                       "every rank; after unlinking one, the other stays with "
                                       "st_nlink 1"};
inline constexpr Rule kHang{"hang",
                            "every call returns within the hang limit (remote calls time out)"};
inline constexpr Rule kRoundStuck{"round-stuck", "every worker reaches a round's barrier in time"};
inline constexpr Rule kJobDied{"job-died", "the job keeps running for the whole test"};
inline constexpr Rule kFinalAgree{
    "final-agree",
    "after every worker stopped and closed its files, every rank sees "
    "the same names, types, sizes, inode numbers and bytes"};
inline constexpr Rule kFinalStore{
    "final-store",
    "after quiescence a file lives in exactly one rank's store, a "
    "directory in every rank's store, and no store keeps a name that the "
    "mounts do not show"};
inline constexpr Rule kLimitEio{
    "limit-eio-changed",
    "EIO on a handle of a file that changed elsewhere since its open (user "
    "guide: O_TRUNC moves ownership and old handles fail with EIO; parts "
    "not yet fetched of changed/replaced remote files fail with EIO)"};

// How judge() classifies an errno that is not in the call's allowed list.
enum ExpectFlags : unsigned {
  kNoFlags = 0,
  kCreat = 1,       // an O_CREAT open in a directory that is never removed
  kExists = 2,      // the name exists for the whole run
  kLimitEioOk = 4,  // EIO here is a documented limit (the file changed since the open)
  kLinkOp = 8,      // a link(2) call
  kFdOp = 16,       // a call on an open file descriptor: names do not matter any more
};

inline bool is_transport_errno(int err) {
  switch (err) {
    case ECONNABORTED:
    case ECONNRESET:
    case ECONNREFUSED:
    case ENOTCONN:
    case EPROTO:
    case EBADMSG:
    case EHOSTUNREACH:
    case EHOSTDOWN:
    case ENETUNREACH:
    case ENETDOWN:
    case ENETRESET:
    case EPIPE:
    case ETIMEDOUT:
    case ENOBUFS:
    case ESHUTDOWN:
    case ECOMM:
    case ENOLINK:
    case EREMOTEIO:
    case ECANCELED:
      return true;
    default:
      return false;
  }
}

inline const Rule& rule_for(int err, unsigned flags) {
  if (err == ESTALE) return kEstale;
  if (err == ENOENT && (flags & kCreat)) return kCreatEnoent;
  if (err == ENOENT && (flags & kExists)) return kAlwaysExists;
  if (err == EPERM && (flags & kLinkOp)) return kLinkEperm;
  if (err == ENOENT && (flags & kFdOp)) return kFdEnoent;
  if (is_transport_errno(err)) return kTransportErrno;
  if (err == EIO) return kEio;
  return kUnexpectedErrno;
}

}  // namespace dsdfs::mpitest::torture
