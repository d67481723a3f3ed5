// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

namespace dsdfs::launcher {

// Signal handling without async-signal-unsafe handlers: every signal is
// blocked in every thread (call block_all_signals() before MPI_Init so MPI's
// and UCX's threads inherit the mask), and one thread sigwait()s for
// SIGINT/SIGTERM/SIGHUP and runs on_stop in normal thread context.
// The FUSE loop thread is woken with SIGUSR2 (a no-op handler that only
// interrupts its sem_wait) until it reports that the loop has ended.
class SignalThread {
 public:
  static void block_all_signals();

  // Starts the waiting thread. on_stop runs once, on the first stop signal;
  // on_stuck runs once if the loop thread has not left the loop kStuckAfter
  // after that (it is to end what holds the loop: FuseMount::abort_connection).
  static constexpr std::chrono::milliseconds kStuckAfter{500};
  explicit SignalThread(std::function<void(int)> on_stop, std::function<void()> on_stuck = {});
  ~SignalThread();

  // REQUIRES: called from the thread that will run the FUSE loop, before it.
  // Unblocks SIGUSR2 in that thread (its workers inherit the mask).
  void prepare_loop_thread();
  // Called by the loop thread after the loop returned.
  void loop_ended() { loop_ended_.store(true); }

  bool stop_requested() const { return stop_signal_.load() != 0; }
  int stop_signal() const { return stop_signal_.load(); }

 private:
  void run();
  std::function<void(int)> on_stop_;
  std::function<void()> on_stuck_;
  std::atomic<int> stop_signal_{0};
  std::atomic<bool> loop_ended_{false};
  std::atomic<bool> quitting_{false};
  pthread_t loop_thread_{};
  std::atomic<bool> has_loop_thread_{false};
  std::thread thread_;
};

}  // namespace dsdfs::launcher
