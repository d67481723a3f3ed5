// SPDX-License-Identifier: Apache-2.0
// Mutexes whose use clang checks at compile time (-Wthread-safety, the
// `clang` CI build: scripts/check-locks.sh). A member written
// `T x GUARDED_BY(mu_);` may only be touched with mu_ held; a function
// marked REQUIRES(mu_) only called with it held, EXCLUDES(mu_) only without.
// Other compilers see plain std::mutex / std::shared_mutex wrappers.
//
// Lock with MutexLock (a scope), ReaderLock / WriterLock for SharedMutex, or
// UniqueMutexLock where the lock is handed on or released early. Condition
// variables: std::condition_variable_any, waiting on the Mutex itself while
// a MutexLock holds it (cv.wait(mu_, pred)).
#pragma once

#include <mutex>
#include <shared_mutex>
#include <utility>

#if defined(__clang__)
#define DSDFS_TSA(x) __attribute__((x))
#else
#define DSDFS_TSA(x)
#endif

#define CAPABILITY(x) DSDFS_TSA(capability(x))
#define SCOPED_CAPABILITY DSDFS_TSA(scoped_lockable)
#define GUARDED_BY(x) DSDFS_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) DSDFS_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) DSDFS_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) DSDFS_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) DSDFS_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) DSDFS_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) DSDFS_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) DSDFS_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) DSDFS_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) DSDFS_TSA(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) DSDFS_TSA(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) DSDFS_TSA(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) DSDFS_TSA(locks_excluded(__VA_ARGS__))
#define RETURN_CAPABILITY(x) DSDFS_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS DSDFS_TSA(no_thread_safety_analysis)

namespace dsdfs {

class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis that the caller holds it (where it cannot see that).
  void assert_held() const DSDFS_TSA(assert_capability(this)) {}

 private:
  std::mutex mu_;
};

class CAPABILITY("shared mutex") SharedMutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  void lock_shared() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// A lock that can be released (and taken again) before its scope ends, or
// moved to a callee; also what std::condition_variable_any waits with.
class SCOPED_CAPABILITY UniqueMutexLock {
 public:
  UniqueMutexLock() = default;
  explicit UniqueMutexLock(Mutex& mu) ACQUIRE(mu) : mu_(&mu), owns_(true) { mu_->lock(); }
  UniqueMutexLock(UniqueMutexLock&& o) noexcept
      : mu_(std::exchange(o.mu_, nullptr)), owns_(std::exchange(o.owns_, false)) {}
  UniqueMutexLock& operator=(UniqueMutexLock&& o) noexcept NO_THREAD_SAFETY_ANALYSIS {
    if (this != &o) {
      if (owns_) mu_->unlock();
      mu_ = std::exchange(o.mu_, nullptr);
      owns_ = std::exchange(o.owns_, false);
    }
    return *this;
  }
  // (The bodies are not analysed: they release only what they hold.)
  ~UniqueMutexLock() RELEASE() NO_THREAD_SAFETY_ANALYSIS {
    if (owns_) mu_->unlock();
  }
  void lock() ACQUIRE() NO_THREAD_SAFETY_ANALYSIS {
    mu_->lock();
    owns_ = true;
  }
  void unlock() RELEASE() NO_THREAD_SAFETY_ANALYSIS {
    if (owns_) mu_->unlock();
    owns_ = false;
  }
  bool owns_lock() const { return owns_; }

 private:
  Mutex* mu_ = nullptr;
  bool owns_ = false;
};

class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() RELEASE() NO_THREAD_SAFETY_ANALYSIS {
    if (owns_) mu_.unlock();
  }
  void unlock() RELEASE() NO_THREAD_SAFETY_ANALYSIS {
    if (owns_) mu_.unlock();
    owns_ = false;
  }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
  bool owns_ = true;
};

}  // namespace dsdfs
