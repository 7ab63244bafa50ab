// SluiceServer: the whole server in one object (model repository, gRPC services, admin HTTP,
// idle reaper), so main() and in-process integration tests start it the same way.
#ifndef SLUICE_SERVER_SERVER_H_
#define SLUICE_SERVER_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace grpc {
class Server;
}

namespace sluice::server {

class AdminServer;
class Metrics;
class ModelRepository;
class OipService;  // OIP: Open Inference Protocol service (server/api/oip_service.h).
class SessionRegistry;
class StreamingService;
class TokenAuthenticator;

struct ServerOptions {
  std::string model_repository = "models";
  std::string host = "0.0.0.0";  // gRPC bind address.
  std::string http_host;         // Admin HTTP bind address; empty = `host`.
  int grpc_port = 8001;          // 0 picks a free port (see grpc_port()).
  int http_port = 8000;          // 0 picks a free port; -1 disables the admin endpoint.
  std::string backend = "auto";
  std::string opencl_platform;
  std::string opencl_device;
  std::string opencl_cache_dir;
  int max_sessions = 10000;
  int threads = 0;  // Cap on gRPC threads; 0 = gRPC's default.
  int64_t max_message_bytes = 16 << 20;
  int64_t keepalive_time_ms = 0;  // 0 = gRPC defaults.
  int64_t keepalive_timeout_ms = 0;
  int64_t max_connection_age_ms = 0;
  int64_t max_connection_age_grace_ms = 0;
  // Test hook: primary backends fail like a lost device at this step (0 = never).
  int64_t inject_device_fault_after_steps = 0;
  int fallback_snapshot_interval_frames = 64;
  // TLS on the gRPC port: PEM files. A client CA turns on mutual TLS (client certificates are
  // required and verified).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Bearer tokens (see server/api/auth.h); empty = no authentication.
  std::string auth_token_file;
  bool metrics_require_auth = false;  // With auth on: /metrics needs the token too.
  // Native streams: a session whose link drops without Close waits this long for a resume
  // (0 = sessions end with their stream), keeping this many written outputs for replay.
  int64_t resume_grace_ms = 0;
  int resume_buffer_frames = 1024;
};

// Thread-safe.
class SluiceServer {
 public:
  // Loads the repository, binds both ports and serves. Errors: NotFound for a missing
  // repository, Unavailable when a port cannot be bound. Models that fail to load are served
  // as not ready.
  static absl::StatusOr<std::unique_ptr<SluiceServer>> Start(const ServerOptions& options);
  ~SluiceServer();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  Metrics& metrics() { return *metrics_; }

  // Graceful stop: refuse new sessions, finish every frame already accepted, send its outputs,
  // end every stream with UNAVAILABLE, then stop serving. Waits up to `timeout`.
  void Drain(absl::Duration timeout);
  // Immediate stop (streams end with CANCELLED). Idempotent.
  void Shutdown();

 private:
  SluiceServer();
  void ReaperLoop();

  ServerOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<TokenAuthenticator> auth_;
  std::unique_ptr<ModelRepository> repository_;
  std::unique_ptr<SessionRegistry> registry_;
  std::unique_ptr<StreamingService> streaming_service_;
  std::unique_ptr<OipService> oip_service_;  // OIP: before grpc_server_, outlives it.
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<AdminServer> admin_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> loading_{true};
  absl::Notification stop_reaper_;
  std::thread reaper_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SERVER_H_
