// SPDX-License-Identifier: Apache-2.0
#include "daemon/control.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/noexcept_boundary.h"

namespace dsdfs::fs {

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, Handler handler) {
  struct sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return Status::error(ENAMETOOLONG, "control socket path " + path + " is longer than " +
                                           std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Status::from_errno("control socket");
  ::unlink(path.c_str());  // a socket left by an earlier daemon of this store
  // Made 0600 from the start: no moment where another user could connect.
  const mode_t old = ::umask(0177);
  const int rc = ::bind(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old);
  if (rc != 0) return Status::error(bind_errno, "bind " + path);
  if (::listen(fd.get(), 16) != 0) return Status::from_errno("listen " + path);
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  if (!stop.valid()) return Status::from_errno("eventfd");
  return std::unique_ptr<ControlServer>(new ControlServer(path, std::move(fd), std::move(stop), std::move(handler)));
}

ControlServer::ControlServer(std::string path, UniqueFd listen_fd, UniqueFd stop_fd, Handler handler)
    : path_(std::move(path)), listen_fd_(std::move(listen_fd)), stop_fd_(std::move(stop_fd)),
      handler_(std::move(handler)) {
  thread_ = std::thread([this] { run_at_boundary("control server", [this] { run(); }); });
}

ControlServer::~ControlServer() {
  uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof one) != sizeof one) DSDFS_WARN("control server: %s", std::strerror(errno));
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void ControlServer::run() {
  while (true) {
    struct pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      DSDFS_WARN("control server: poll: %s", std::strerror(errno));
      return;
    }
    if (p[1].revents) return;
    UniqueFd c(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (c.valid()) serve(c.get());
  }
}

void ControlServer::serve(int fd) {
  struct ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return;
  auto say = [fd](const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  };
  if (cred.uid != ::geteuid() && cred.uid != 0) {
    say("error: this dsdfs daemon belongs to another user\n");
    return;
  }
  struct timeval tv = {kIoTimeoutMs / 1000, (kIoTimeoutMs % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string request;
  char buf[512];
  while (request.find('\n') == std::string::npos && request.size() <= kMaxRequest) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  const size_t nl = request.find('\n');
  if (nl == std::string::npos) {
    say(request.size() > kMaxRequest ? "error: request too long\n" : "error: incomplete request\n");
    return;
  }
  request.resize(nl);
  say(handler_(request));
}

}  // namespace dsdfs::fs
