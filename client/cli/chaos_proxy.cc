#include "client/cli/chaos_proxy.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::client {
namespace {

constexpr size_t kBufferBytes = 64 << 10;  // Per direction of a connection.

absl::Status ErrnoError(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Closes `fd` with a TCP RST instead of a FIN.
void Abort(int fd) {
  if (fd < 0) return;
  const linger now = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
  close(fd);
}

void NoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

namespace {

// One direction of a relayed connection.
struct Pipe {
  std::vector<char> buffer = std::vector<char>(kBufferBytes);
  size_t begin = 0;
  size_t end = 0;
  bool eof = false;   // The source half-closed.
  bool shut = false;  // ... and that was passed on to the destination.

  bool has_data() const { return end > begin; }
  bool can_read() const { return !eof && end < buffer.size(); }
};

}  // namespace

// One relayed connection: client -> upstream (`up`) and upstream -> client (`down`).
struct ChaosProxy::Connection {
  int port = 0;
  int client = -1;
  int upstream = -1;
  bool connecting = true;
  bool dead = false;
  Pipe up;
  Pipe down;

  bool finished() const { return up.shut && down.shut; }
  void Close(bool reset) {
    for (const int fd : {client, upstream}) {
      if (reset) {
        Abort(fd);
      } else if (fd >= 0) {
        close(fd);
      }
    }
    client = upstream = -1;
    dead = true;
  }
};

namespace {

// Reads from `src` into `dir` when `src_events` allow, writes what it holds to `dst`, and passes
// a half-close on. False on a socket error.
bool Move(int src, int dst, Pipe& dir, short src_events) {
  if ((src_events & (POLLIN | POLLHUP)) != 0 && dir.can_read()) {
    const ssize_t n = recv(src, dir.buffer.data() + dir.end, dir.buffer.size() - dir.end, 0);
    if (n > 0) {
      dir.end += static_cast<size_t>(n);
    } else if (n == 0) {
      dir.eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
  }
  if (dir.has_data()) {
    const ssize_t n = send(dst, dir.buffer.data() + dir.begin, dir.end - dir.begin, MSG_NOSIGNAL);
    if (n > 0) {
      dir.begin += static_cast<size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
  }
  if (dir.begin == dir.end) dir.begin = dir.end = 0;
  if (dir.eof && !dir.has_data() && !dir.shut) {
    shutdown(dst, SHUT_WR);
    dir.shut = true;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChaosProxy>> ChaosProxy::Create(const std::string& upstream) {
  const size_t colon = upstream.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the chaos proxy needs a HOST:PORT server address, not '", upstream, "'"));
  }
  std::string host = upstream.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), upstream.substr(colon + 1).c_str(), &hints, &found);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve ", upstream, ": ", gai_strerror(rc)));
  }
  sockaddr_storage address = {};
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  const socklen_t length = found->ai_addrlen;
  freeaddrinfo(found);
  int wake[2];
  if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) != 0) return ErrnoError("pipe2");
  return std::unique_ptr<ChaosProxy>(new ChaosProxy(address, length, wake[0], wake[1]));
}

ChaosProxy::ChaosProxy(sockaddr_storage upstream, socklen_t upstream_len, int wake_read,
                       int wake_write)
    : upstream_(upstream),
      upstream_len_(upstream_len),
      wake_read_(wake_read),
      wake_write_(wake_write),
      thread_([this] { Run(); }) {}

ChaosProxy::~ChaosProxy() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  Wake();
  thread_.join();
  for (auto& connection : connections_) connection->Close(/*reset=*/true);
  absl::MutexLock lock(&mu_);
  for (const auto& [fd, port] : listeners_) close(fd);
  close(wake_read_);
  close(wake_write_);
}

absl::StatusOr<int> ChaosProxy::AddRoute() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket");
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const absl::Status status = ErrnoError("chaos proxy listener");
    close(fd);
    return status;
  }
  const int port = ntohs(address.sin_port);
  {
    absl::MutexLock lock(&mu_);
    listeners_.emplace_back(fd, port);
  }
  Wake();
  return port;
}

void ChaosProxy::Reset(int port) {
  {
    absl::MutexLock lock(&mu_);
    resets_.push_back(port);
  }
  Wake();
}

void ChaosProxy::Wake() {
  const char byte = 1;
  // A full pipe already holds a wake-up.
  [[maybe_unused]] const ssize_t n = write(wake_write_, &byte, 1);
}

void ChaosProxy::Accept(int listener, int port) {
  while (true) {
    const int client = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) return;  // EAGAIN, or a connection that went away meanwhile.
    auto connection = std::make_unique<Connection>();
    connection->port = port;
    connection->client = client;
    connection->upstream =
        socket(upstream_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (connection->upstream < 0 ||
        (connect(connection->upstream, reinterpret_cast<const sockaddr*>(&upstream_),
                 upstream_len_) != 0 &&
         errno != EINPROGRESS)) {
      connection->Close(/*reset=*/true);
      continue;
    }
    NoDelay(client);
    NoDelay(connection->upstream);
    connections_.push_back(std::move(connection));
  }
}

bool ChaosProxy::Relay(Connection& connection, short client_events, short upstream_events) {
  if (connection.connecting) {
    if ((upstream_events & (POLLOUT | POLLERR | POLLHUP)) == 0) return true;
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(connection.upstream, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) return false;
    connection.connecting = false;
    return true;
  }
  // A failed socket (e.g. reset by its peer) fails the whole connection, as on a real network.
  if (((client_events | upstream_events) & POLLERR) != 0) return false;
  if (!Move(connection.client, connection.upstream, connection.up, client_events)) return false;
  return Move(connection.upstream, connection.client, connection.down, upstream_events);
}

void ChaosProxy::Run() {
  std::vector<pollfd> fds;
  std::vector<std::pair<int, int>> listeners;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      listeners = listeners_;
    }
    fds.clear();
    fds.push_back({wake_read_, POLLIN, 0});
    for (const auto& [fd, port] : listeners) fds.push_back({fd, POLLIN, 0});
    for (const auto& c : connections_) {
      short client = 0;
      short upstream = POLLOUT;
      if (!c->connecting) {
        client = static_cast<short>((c->up.can_read() ? POLLIN : 0) |
                                    (c->down.has_data() ? POLLOUT : 0));
        upstream = static_cast<short>((c->down.can_read() ? POLLIN : 0) |
                                      (c->up.has_data() ? POLLOUT : 0));
      }
      fds.push_back({c->client, client, 0});
      fds.push_back({c->upstream, upstream, 0});
    }
    if (poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;

    std::vector<int> resets;
    if ((fds[0].revents & POLLIN) != 0) {
      char drain[64];
      while (read(wake_read_, drain, sizeof(drain)) > 0) {
      }
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      resets.swap(resets_);
    }
    const size_t polled = connections_.size();
    for (size_t i = 0; i < polled; ++i) {
      Connection& c = *connections_[i];
      const pollfd* at = &fds[1 + listeners.size() + 2 * i];
      if (!Relay(c, at[0].revents, at[1].revents)) {
        c.Close(/*reset=*/true);
      } else if (c.finished()) {
        c.Close(/*reset=*/false);
      }
    }
    for (const int port : resets) {
      for (auto& c : connections_) {
        if (!c->dead && c->port == port) c->Close(/*reset=*/true);
      }
    }
    std::erase_if(connections_, [](const auto& c) { return c->dead; });
    for (size_t i = 0; i < listeners.size(); ++i) {
      if ((fds[1 + i].revents & POLLIN) != 0) Accept(listeners[i].first, listeners[i].second);
    }
  }
}

}  // namespace sluice::client
