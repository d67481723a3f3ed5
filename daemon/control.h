// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/unique_fd.h"

namespace dsdfs::fs {

// The local control channel of a daemon, used by the `dsdfs` command: a Unix
// stream socket in the store (mode 0600 inside the store's 0700 directory),
// one request line per connection, answered and closed. Only the daemon's
// own user and root may ask: the peer's credentials (SO_PEERCRED) are checked
// as well as the socket's mode. Requests are served one at a time, on a
// thread of its own; a client that sends nothing, or does not read its
// answer, is dropped after kIoTimeout.
class ControlServer {
 public:
  static constexpr int kMaxRequest = 4096;
  static constexpr int kIoTimeoutMs = 5000;
  // The answer to one request line (without its newline).
  using Handler = std::function<std::string(const std::string& request)>;

  // Listens at `path` (an old socket there is replaced) and starts serving.
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, Handler handler);
  ~ControlServer();  // stops serving and removes the socket
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& path() const { return path_; }

 private:
  ControlServer(std::string path, UniqueFd listen_fd, UniqueFd stop_fd, Handler handler);
  void run();
  void serve(int fd);

  const std::string path_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // eventfd: ends run()
  Handler handler_;
  std::thread thread_;
};

}  // namespace dsdfs::fs
