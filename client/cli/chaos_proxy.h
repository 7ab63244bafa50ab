// A loopback TCP relay for the soak's connection failures: each route listens on its own
// 127.0.0.1 port and relays every connection accepted there to one upstream address, byte for
// byte; Reset(route) aborts the route's open connections with a TCP RST to both ends, as a
// network failure would. Sessions that should see their connection die get a channel of their
// own through a route.
#ifndef SLUICE_CLIENT_CLI_CHAOS_PROXY_H_
#define SLUICE_CLIENT_CLI_CHAOS_PROXY_H_

#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sluice::client {

// Thread-safe. One thread relays every route (poll(2) over all sockets).
class ChaosProxy {
 public:
  // `upstream` is HOST:PORT (or [IPv6]:PORT), resolved once here.
  static absl::StatusOr<std::unique_ptr<ChaosProxy>> Create(const std::string& upstream);
  // Stops the relay and closes every socket.
  ~ChaosProxy();
  ChaosProxy(const ChaosProxy&) = delete;
  ChaosProxy& operator=(const ChaosProxy&) = delete;

  // Opens a new route and returns its port (the route's id).
  absl::StatusOr<int> AddRoute() ABSL_LOCKS_EXCLUDED(mu_);
  // Aborts the open connections of route `port`; it goes on accepting new ones.
  void Reset(int port) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Connection;

  ChaosProxy(sockaddr_storage upstream, socklen_t upstream_len, int wake_read, int wake_write);
  void Wake();
  void Run();
  // Accepts a connection on `listener` and starts connecting it upstream.
  void Accept(int listener, int port);
  // Moves bytes for `connection` after poll; false on a socket error.
  bool Relay(Connection& connection, short client_events, short upstream_events);

  const sockaddr_storage upstream_;
  const socklen_t upstream_len_;
  const int wake_read_;
  const int wake_write_;

  absl::Mutex mu_;
  std::vector<std::pair<int, int>> listeners_ ABSL_GUARDED_BY(mu_);  // (fd, port)
  std::vector<int> resets_ ABSL_GUARDED_BY(mu_);                     // Ports to reset.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::vector<std::unique_ptr<Connection>> connections_;  // Relay thread only.
  std::thread thread_;
};

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_CHAOS_PROXY_H_
