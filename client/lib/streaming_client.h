// StreamingClient: a connection to a sluice server ("host:port"): the unary calls (ListModels,
// ModelInfo, grpc.health.v1 Health/Check) and the factory of streaming Sessions.
#ifndef SLUICE_CLIENT_LIB_STREAMING_CLIENT_H_
#define SLUICE_CLIENT_LIB_STREAMING_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/lib/session.h"
#include "sluice/v1/streaming.grpc.pb.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::client {

struct ClientOptions {
  // Deadline of each unary call (ListModels, ModelInfo, Health).
  absl::Duration rpc_timeout = absl::Seconds(10);
  // TCP connections (gRPC channels) sessions are spread over, round robin. One HTTP/2 connection
  // carries any number of streams; more help when one connection's I/O becomes the bottleneck.
  int connections = 1;
  // TLS: a PEM CA bundle to verify the server with turns TLS on; a client certificate and key
  // (PEM) are sent for mutual TLS. tls_server_name overrides the name checked in the server's
  // certificate (e.g. when connecting to an IP address).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
  // Sent as "authorization: Bearer <token>" on every call when not empty.
  std::string auth_token;
};

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };
// "SERVING", "NOT_SERVING", ... as in the health proto.
absl::string_view ServingStatusName(ServingStatus status);

// Thread-safety: thread-safe; sessions may be created and used from any thread. The client must
// outlive its sessions.
class StreamingClient {
 public:
  // `server` is a gRPC target such as "127.0.0.1:8001". Does not connect yet: the first call
  // does. InvalidArgument for an empty target, connections < 1 or a TLS file that is not PEM;
  // NotFound for a TLS file that cannot be read.
  static absl::StatusOr<std::unique_ptr<StreamingClient>> Create(const std::string& server,
                                                                 const ClientOptions& options = {});

  // Every model of the server's repository with its readiness.
  absl::StatusOr<v1::ListModelsResponse> ListModels() const;
  // One model's specs and state; NOT_FOUND for an unknown name.
  absl::StatusOr<v1::ModelInfoResponse> ModelInfo(absl::string_view name) const;
  // grpc.health.v1.Health/Check for `service` ("" = the whole server). UNAVAILABLE when the server
  // cannot be reached, UNIMPLEMENTED when it has no health service.
  absl::StatusOr<ServingStatus> Health(absl::string_view service = "") const;

  // Starts a new stream (no request is sent until Session::Open()).
  std::unique_ptr<Session> NewSession(SessionOptions options = {});

  const std::string& server() const { return server_; }

 private:
  StreamingClient(std::string server, const ClientOptions& options,
                  const std::shared_ptr<grpc::ChannelCredentials>& credentials);

  grpc::ClientContext* PrepareContext(grpc::ClientContext* context) const;

  const std::string server_;
  const ClientOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Streaming::Stub>> stubs_;  // One per channel.
  std::atomic<uint64_t> next_stub_{0};
};

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_LIB_STREAMING_CLIENT_H_
