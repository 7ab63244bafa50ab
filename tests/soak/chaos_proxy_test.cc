// The soak's TCP relay: bytes both ways, half-closes passed on, and Reset() aborting a route's
// connections with an RST to both ends while the route keeps accepting.
#include "client/cli/chaos_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

namespace sluice::client {
namespace {

// A loopback listener on an ephemeral port.
int Listen(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), length), 0);
  EXPECT_EQ(listen(fd, 8), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  *port = ntohs(address.sin_port);
  return fd;
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

// Reads exactly `n` bytes (or until EOF / error, within 10 s).
std::string ReadN(int fd, size_t n) {
  std::string data;
  while (data.size() < n) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) break;
    char buffer[4096];
    const ssize_t got = recv(fd, buffer, std::min(sizeof(buffer), n - data.size()), 0);
    if (got <= 0) break;
    data.append(buffer, static_cast<size_t>(got));
  }
  return data;
}

// What a read returns once the peer is gone: 0 (FIN) or -errno (e.g. -ECONNRESET).
int ReadEnd(int fd) {
  pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 10000) <= 0) return 1;  // Timed out.
  char byte;
  const ssize_t got = recv(fd, &byte, 1, 0);
  return got < 0 ? -errno : static_cast<int>(got);
}

TEST(ChaosProxyTest, RelaysBothWaysAndPassesHalfCloseOn) {
  int upstream_port = 0;
  const int listener = Listen(&upstream_port);
  auto proxy = ChaosProxy::Create(absl::StrCat("127.0.0.1:", upstream_port));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto route = (*proxy)->AddRoute();
  ASSERT_TRUE(route.ok()) << route.status();

  const int client = Connect(*route);
  const int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  const std::string big(1 << 20, 'x');  // Larger than the relay's buffers.
  std::thread writer(
      [&] { EXPECT_EQ(send(client, big.data(), big.size(), 0), ssize_t(big.size())); });
  EXPECT_EQ(ReadN(server, big.size()), big);
  writer.join();
  ASSERT_EQ(send(server, "pong", 4, 0), 4);
  EXPECT_EQ(ReadN(client, 4), "pong");
  shutdown(client, SHUT_WR);
  EXPECT_EQ(ReadEnd(server), 0);  // FIN passed on, not a reset.
  close(client);
  close(server);
  close(listener);
}

TEST(ChaosProxyTest, ResetAbortsBothEndsAndTheRouteAcceptsAgain) {
  int upstream_port = 0;
  const int listener = Listen(&upstream_port);
  auto proxy = ChaosProxy::Create(absl::StrCat("127.0.0.1:", upstream_port));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto route = (*proxy)->AddRoute();
  auto other = (*proxy)->AddRoute();
  ASSERT_TRUE(route.ok() && other.ok());

  const int client = Connect(*route);
  const int server = accept(listener, nullptr, nullptr);
  const int bystander = Connect(*other);
  const int bystander_server = accept(listener, nullptr, nullptr);
  ASSERT_EQ(send(client, "hi", 2, 0), 2);
  EXPECT_EQ(ReadN(server, 2), "hi");

  (*proxy)->Reset(*route);
  EXPECT_EQ(ReadEnd(client), -ECONNRESET);
  EXPECT_EQ(ReadEnd(server), -ECONNRESET);
  // Another route's connection is untouched.
  ASSERT_EQ(send(bystander, "ok", 2, 0), 2);
  EXPECT_EQ(ReadN(bystander_server, 2), "ok");

  const int again = Connect(*route);
  const int again_server = accept(listener, nullptr, nullptr);
  ASSERT_EQ(send(again_server, "back", 4, 0), 4);
  EXPECT_EQ(ReadN(again, 4), "back");
  for (int fd : {client, server, bystander, bystander_server, again, again_server, listener}) {
    close(fd);
  }
}

TEST(ChaosProxyTest, NeedsAHostAndPort) {
  EXPECT_FALSE(ChaosProxy::Create("localhost").ok());
  EXPECT_FALSE(ChaosProxy::Create("127.0.0.1:no-such-service").ok());
}

}  // namespace
}  // namespace sluice::client
