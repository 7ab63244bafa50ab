// sluice-server: serves the models of a repository over gRPC (native streaming API) with an
// HTTP admin endpoint for health and metrics.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "runtime/opencl/device.h"
#include "server/server.h"
#include "spdlog/spdlog.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif
#ifndef SLUICE_DEFAULT_MODEL_REPOSITORY
#define SLUICE_DEFAULT_MODEL_REPOSITORY "models"
#endif

ABSL_FLAG(std::string, model_repository, SLUICE_DEFAULT_MODEL_REPOSITORY,
          "Folder with one sub-folder per model (model.onnx, optional config.pbtxt).");
ABSL_FLAG(std::string, host, "0.0.0.0",
          "Address the gRPC port binds to (all interfaces by default).");
ABSL_FLAG(std::string, http_address, "",
          "Address the HTTP admin port binds to; empty = --host. In a container keep all "
          "interfaces so probes reach it; on a host, 127.0.0.1 keeps /metrics local.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve gRPC over TLS (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require and verify client certificates (mutual TLS).");
ABSL_FLAG(std::string, auth_token_file, "",
          "File of bearer tokens (one per line, '#' comments): every gRPC call except health and "
          "every HTTP route except the probes needs 'authorization: Bearer <token>'; a missing or "
          "wrong token is UNAUTHENTICATED (HTTP 401) before any model work.");
ABSL_FLAG(bool, metrics_require_auth, false,
          "With --auth_token_file: /metrics needs the token too (default: open, for scrapers).");
ABSL_FLAG(int, grpc_port, 8001, "gRPC port (native streaming API, health, reflection); 0 = any.");
ABSL_FLAG(int, http_port, 8000,
          "HTTP admin port (/healthz /readyz /metrics /v2/...); 0 = any, "
          "-1 = off.");
ABSL_FLAG(std::string, backend, "auto",
          "Backend for models whose config says auto: auto (an OpenCL accelerator if one is "
          "found, an Intel FPGA first, else the CPU), cpu, or opencl.");
ABSL_FLAG(std::string, opencl_platform, "", "OpenCL platform name substring (see --list_devices).");
ABSL_FLAG(std::string, opencl_device, "",
          "OpenCL device name substring; 'cpu' selects a CPU "
          "device such as PoCL.");
ABSL_FLAG(std::string, opencl_cache_dir, "",
          "Cache for built OpenCL programs (default "
          "~/.cache/sluice).");
ABSL_FLAG(bool, list_devices, false, "List the OpenCL platforms and devices and exit.");
ABSL_FLAG(int, max_sessions, 10000, "Most sessions open at once across all models.");
ABSL_FLAG(int, threads, 0, "Cap on gRPC threads (0 = gRPC's default).");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");
ABSL_FLAG(int64_t, max_message_bytes, 16 << 20, "Largest gRPC message accepted or sent.");
ABSL_FLAG(int64_t, keepalive_time_ms, 0, "Send HTTP/2 keepalive pings this often (0 = off).");
ABSL_FLAG(int64_t, keepalive_timeout_ms, 0,
          "Drop a connection whose ping is unanswered this "
          "long (0 = gRPC default).");
ABSL_FLAG(int64_t, max_connection_age_ms, 0,
          "Ask clients to reconnect after this long, so an "
          "L7 load balancer can rebalance (0 = never).");
ABSL_FLAG(int64_t, max_connection_age_grace_ms, 0, "Grace period after max_connection_age.");
ABSL_FLAG(int64_t, resume_grace_ms, 0,
          "Keep a native session whose stream drops without Close this long, so the client can "
          "reconnect with Open{resume_token, last_output_seq} and continue with its state (0 = "
          "off: sessions end with their stream). With it on, end sessions with Close.");
ABSL_FLAG(int, resume_buffer_frames, 1024,
          "Written output frames each resumable session keeps for replay after a reconnect.");
ABSL_FLAG(int, drain_timeout_s, 30, "On SIGTERM/SIGINT, how long to let sessions finish.");
ABSL_FLAG(bool, version, false, "Print the version and exit.");
ABSL_FLAG(int64_t, inject_device_fault_after_steps, 0,
          "Test hook: every model's primary backend fails like a lost device at this step; its "
          "sessions move to the CPU backend (0 = never).");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "sluice-server: streaming inference server.\n"
      "  sluice-server [--model_repository DIR] [--grpc_port 8001] [--http_port 8000]");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return std::string("sluice-server ") + SLUICE_VERSION + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  // Debian builds Abseil with Mutex deadlock detection on: every lock, ours and gRPC's (gpr_mu is
  // an absl::Mutex), then updates a global lock graph. That was ~30% of the server's own
  // instructions per frame (callgrind, docs/BENCHMARKS.md); the tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (absl::GetFlag(FLAGS_version)) {
    std::cout << "sluice-server " << SLUICE_VERSION << "\n";
    return 0;
  }
  if (absl::GetFlag(FLAGS_list_devices)) {
    std::cout << sluice::opencl::ListDevices();
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  // PoCL finds no device without a writable kernel cache: give it one unless the user did.
  if (std::getenv("POCL_CACHE_DIR") == nullptr) {
    const char* home = std::getenv("HOME");
    const std::string dir = absl::StrCat(home != nullptr ? home : "/tmp", "/.cache/sluice/pocl");
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    setenv("POCL_CACHE_DIR", dir.c_str(), 0);
  }

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  sluice::server::ServerOptions options;
  options.model_repository = absl::GetFlag(FLAGS_model_repository);
  options.host = absl::GetFlag(FLAGS_host);
  options.http_host = absl::GetFlag(FLAGS_http_address);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  options.metrics_require_auth = absl::GetFlag(FLAGS_metrics_require_auth);
  options.resume_grace_ms = absl::GetFlag(FLAGS_resume_grace_ms);
  options.resume_buffer_frames = absl::GetFlag(FLAGS_resume_buffer_frames);
  options.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.backend = absl::GetFlag(FLAGS_backend);
  options.opencl_platform = absl::GetFlag(FLAGS_opencl_platform);
  options.opencl_device = absl::GetFlag(FLAGS_opencl_device);
  options.opencl_cache_dir = absl::GetFlag(FLAGS_opencl_cache_dir);
  options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.keepalive_time_ms = absl::GetFlag(FLAGS_keepalive_time_ms);
  options.keepalive_timeout_ms = absl::GetFlag(FLAGS_keepalive_timeout_ms);
  options.max_connection_age_ms = absl::GetFlag(FLAGS_max_connection_age_ms);
  options.max_connection_age_grace_ms = absl::GetFlag(FLAGS_max_connection_age_grace_ms);
  options.inject_device_fault_after_steps = absl::GetFlag(FLAGS_inject_device_fault_after_steps);
  spdlog::info("sluice-server {} starting; model repository {}", SLUICE_VERSION,
               options.model_repository);
  auto server = sluice::server::SluiceServer::Start(options);
  if (!server.ok()) {
    spdlog::error("cannot start: {}", server.status().ToString());
    return 1;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received {}; draining", signal == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Drain(absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)));
  spdlog::info("stopped");
  return 0;
}
