// SPDX-License-Identifier: Apache-2.0
//
// dsdfs-sim-delay-line: added latency on an emulated node's link, for kernels without the
// netem queueing discipline (sch_netem), which is how tests/sim adds a round trip time to
// the links of scripts/cluster-sim.sh's nodes.
//
//   dsdfs-sim-delay-line --queue N --delay-us D
//
// Run it in a node's network namespace, beside the rule that hands it the packets:
//
//   iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num N
//
// Every packet the kernel queues to N is held for D microseconds from the moment this
// program reads it, then accepted; packets leave in the order they came, as they would
// from a fixed-delay line (netem's `delay D` without jitter). Delaying each node's
// outgoing packets by D gives a round trip of 2 D between two nodes. Only the packets'
// metadata crosses to user space (NFQNL_COPY_META), and GSO packets stay whole
// (NFQA_CFG_F_GSO), so a bulk transfer costs a few thousand verdicts a second, given in
// batches (one verdict accepts every packet up to an id).
//
// Prints "ready pid=P queue=N delay_us=D" once it listens (so a script can add the rule
// after that line and stop it by P), and, on SIGTERM or SIGINT, accepts every packet it
// still holds and prints one line of counts: packets, batches, the most held at once,
// how late releases were against their due time (median, 99th percentile, maximum), and
// the packets the kernel dropped because the queue overflowed (ENOBUFS). Exit 0; 2 for a
// bad argument; 1 when the queue cannot be bound (no CAP_NET_ADMIN, or no NFQUEUE).
//
// The rule has no --queue-bypass: while it is in place and this program is not running,
// the node's packets are dropped (a cut link). Remove the rule before stopping it.

// netinet/in.h (through arpa/inet.h) before the kernel's headers, which then leave its
// definitions alone.
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_stop_signal(int) { g_stop = 1; }

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct Held {
  uint32_t id;
  int64_t due_ns;
};

struct DelayLine {
  int64_t delay_ns = 0;
  std::deque<Held> held;
  size_t max_held = 0;
  uint64_t packets = 0;
  uint64_t batches = 0;
  uint64_t overruns = 0;
  std::vector<uint32_t> late_us;  // one sample per batch: the head packet's lateness
};

int on_packet(nfq_q_handle*, nfgenmsg*, nfq_data* nfa, void* data) {
  auto* line = static_cast<DelayLine*>(data);
  const nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
  if (ph == nullptr) return 0;
  line->held.push_back({ntohl(ph->packet_id), now_ns() + line->delay_ns});
  line->max_held = std::max(line->max_held, line->held.size());
  ++line->packets;
  return 0;
}

// Accepts every held packet whose time has come, in one batch verdict. Returns false
// when the verdict could not be sent.
bool delay_line_release_due(DelayLine& line, nfq_q_handle* qh, bool all) {
  const int64_t now = now_ns();
  size_t n = 0;
  while (n < line.held.size() && (all || line.held[n].due_ns <= now)) ++n;
  if (n == 0) return true;
  const int64_t late = now - line.held.front().due_ns;
  if (line.late_us.size() < (1u << 22)) line.late_us.push_back(static_cast<uint32_t>(std::max<int64_t>(late, 0) / 1000));
  const uint32_t last = line.held[n - 1].id;
  line.held.erase(line.held.begin(), line.held.begin() + static_cast<std::ptrdiff_t>(n));
  ++line.batches;
  return nfq_set_verdict_batch(qh, last, NF_ACCEPT) >= 0;
}

uint32_t percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "dsdfs-sim-delay-line: %s\nusage: dsdfs-sim-delay-line --queue N --delay-us D\n", why);
  std::exit(2);
}

long parse_number(const char* s, long lo, long hi, const char* what) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
    usage((std::string(what) + " must be a number from " + std::to_string(lo) + " to " + std::to_string(hi)).c_str());
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  long queue = -1;
  long delay_us = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (i + 1 >= argc) usage(("'" + std::string(a) + "' needs a value").c_str());
    if (a == "--queue") {
      queue = parse_number(argv[++i], 0, 65535, "--queue");
    } else if (a == "--delay-us") {
      delay_us = parse_number(argv[++i], 0, 10'000'000, "--delay-us");
    } else {
      usage(("unknown argument '" + std::string(a) + "'").c_str());
    }
  }
  if (queue < 0 || delay_us < 0) usage("--queue and --delay-us are required");

  // Signals are blocked except inside ppoll, so a stop is never missed between the
  // check and the wait.
  sigset_t stop_set, old_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGTERM);
  sigaddset(&stop_set, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_set, &old_set);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  prctl(PR_SET_TIMERSLACK, 1UL);  // wake-ups at the due time, not up to 50 µs after

  DelayLine line;
  line.delay_ns = delay_us * 1000;
  nfq_handle* h = nfq_open();
  if (h == nullptr) {
    std::fprintf(stderr, "dsdfs-sim-delay-line: nfq_open: %s\n", std::strerror(errno));
    return 1;
  }
  nfq_q_handle* qh = nfq_create_queue(h, static_cast<uint16_t>(queue), &on_packet, &line);
  if (qh == nullptr) {
    std::fprintf(stderr, "dsdfs-sim-delay-line: cannot bind queue %ld: %s (needs CAP_NET_ADMIN and NFQUEUE)\n", queue,
                 std::strerror(errno));
    nfq_close(h);
    return 1;
  }
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(qh, 20000) < 0) {
    std::fprintf(stderr, "dsdfs-sim-delay-line: cannot configure queue %ld: %s\n", queue, std::strerror(errno));
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 1;
  }
  // Whole GSO packets: fewer verdicts; an old kernel without the flag segments them.
  nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);
  nfnl_rcvbufsiz(nfq_nfnlh(h), 8u << 20);
  const int fd = nfq_fd(h);
  std::printf("ready pid=%d queue=%ld delay_us=%ld\n", static_cast<int>(getpid()), queue, delay_us);
  std::fflush(stdout);

  std::vector<char> buf(1u << 16);
  int rc = 0;
  while (g_stop == 0) {
    timespec wait{};
    timespec* waitp = nullptr;
    if (!line.held.empty()) {
      const int64_t left = std::max<int64_t>(line.held.front().due_ns - now_ns(), 0);
      wait.tv_sec = left / 1'000'000'000;
      wait.tv_nsec = left % 1'000'000'000;
      waitp = &wait;
    }
    pollfd pfd{fd, POLLIN, 0};
    const int r = ppoll(&pfd, 1, waitp, &old_set);
    if (r < 0 && errno != EINTR) {
      std::fprintf(stderr, "dsdfs-sim-delay-line: ppoll: %s\n", std::strerror(errno));
      rc = 1;
      break;
    }
    if (r > 0) {
      for (;;) {
        const ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
          nfq_handle_packet(h, buf.data(), static_cast<int>(n));
        } else if (n < 0 && errno == ENOBUFS) {
          ++line.overruns;  // the kernel dropped what did not fit; TCP sends it again
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else {
          break;
        }
      }
    }
    if (!delay_line_release_due(line, qh, false)) {
      std::fprintf(stderr, "dsdfs-sim-delay-line: verdict: %s\n", std::strerror(errno));
      rc = 1;
      break;
    }
  }
  delay_line_release_due(line, qh, true);
  const uint32_t p50 = percentile(line.late_us, 0.5);
  const uint32_t p99 = percentile(line.late_us, 0.99);
  const uint32_t worst = line.late_us.empty() ? 0 : *std::max_element(line.late_us.begin(), line.late_us.end());
  std::printf("delay-line: queue %ld, %ld us: %llu packets in %llu batches, at most %zu held, "
              "late by %u us (median), %u us (99th percentile), %u us (max), %llu queue overruns\n",
              queue, delay_us, static_cast<unsigned long long>(line.packets),
              static_cast<unsigned long long>(line.batches), line.max_held, p50, p99, worst,
              static_cast<unsigned long long>(line.overruns));
  std::fflush(stdout);
  nfq_destroy_queue(qh);
  nfq_close(h);
  return rc;
}
