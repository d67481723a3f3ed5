// SPDX-License-Identifier: Apache-2.0
#include "launcher/signals.h"

#include <signal.h>
#include <time.h>

#include "common/log.h"
#include "common/noexcept_boundary.h"

namespace dsdfs::launcher {

namespace {
void wake_handler(int) {}  // only interrupts blocking calls of the loop thread
}  // namespace

void SignalThread::block_all_signals() {
  sigset_t all;
  sigfillset(&all);
  // Synchronous faults must stay deliverable.
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP}) sigdelset(&all, s);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  struct sigaction sa = {};
  sa.sa_handler = wake_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: the wake-up must interrupt sem_wait/read
  sigaction(SIGUSR2, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

SignalThread::SignalThread(std::function<void(int)> on_stop, std::function<void()> on_stuck)
    : on_stop_(std::move(on_stop)), on_stuck_(std::move(on_stuck)) {
  thread_ = std::thread([this] { run_at_boundary("signal thread", [this] { run(); }); });
}

SignalThread::~SignalThread() {
  quitting_.store(true);
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

void SignalThread::prepare_loop_thread() {
  loop_thread_ = pthread_self();
  has_loop_thread_.store(true);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_UNBLOCK, &usr2, nullptr);
}

void SignalThread::run() {
  sigset_t wait_set;
  sigemptyset(&wait_set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&wait_set, s);
  std::chrono::steady_clock::time_point stop_at;
  bool stuck_handled = false;
  while (true) {
    int sig = 0;
    if (stop_signal_.load() == 0) {
      if (sigwait(&wait_set, &sig) != 0) continue;
    } else {
      // Keep waking the loop thread until it has left the loop: a single
      // wake-up could land just before it blocks and be lost.
      struct timespec ts = {0, 100 * 1000 * 1000};
      sig = sigtimedwait(&wait_set, nullptr, &ts);
      if (sig < 0) sig = 0;
    }
    if (quitting_.load()) return;
    if (sig == SIGUSR1) continue;
    if (sig != 0 && stop_signal_.load() == 0) {
      stop_signal_.store(sig);
      stop_at = std::chrono::steady_clock::now();
      DSDFS_INFO("signal %d: stopping", sig);
      on_stop_(sig);
    } else if (sig != 0) {
      DSDFS_INFO("signal %d: already stopping", sig);
    }
    if (stop_signal_.load() != 0 && has_loop_thread_.load() && !loop_ended_.load()) {
      pthread_kill(loop_thread_, SIGUSR2);
      if (!stuck_handled && on_stuck_ && std::chrono::steady_clock::now() - stop_at >= kStuckAfter) {
        stuck_handled = true;
        DSDFS_WARN("the FUSE loop has not ended %lld ms after the stop signal (a request is blocked): "
                   "aborting the FUSE connection",
                   static_cast<long long>(kStuckAfter.count()));
        on_stuck_();
      }
    }
  }
}

}  // namespace dsdfs::launcher
