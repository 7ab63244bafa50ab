// sluice-echo-server: the in-tree transport floor. Serves sluice.v1.Streaming with an echo in
// place of a model (see echo_service.h) plus grpc.health.v1, so that
//   sluice-echo-server --port 8002 &
//   sluice-client bench --server 127.0.0.1:8002 --model echo --sessions 64 --frames 500
// measures what gRPC alone costs per frame, to compare with sluice-server.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <csignal>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/bench/echo_service.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 8002, "gRPC port; 0 picks a free one (printed on stdout).");
ABSL_FLAG(int64_t, channels, 32, "C: float32 values per frame (frame shape [1, C]).");
ABSL_FLAG(std::string, model, "echo", "Model name reported by ListModels / ModelInfo.");

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void OnSignal(int) { stop_requested = 1; }

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A bare gRPC bidi echo of sluice.v1.Streaming (the transport floor for sluice-client "
      "bench).\n  sluice-echo-server [--port N] [--channels C]");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil has Mutex deadlock detection on: a graph update per lock, not for a floor.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (absl::GetFlag(FLAGS_channels) < 1) {
    std::cerr << "sluice-echo-server: --channels must be at least 1\n";
    return 1;
  }
  sluice::bench::EchoOptions options;
  options.channels = absl::GetFlag(FLAGS_channels);
  options.model = absl::GetFlag(FLAGS_model);
  sluice::bench::EchoStreamingService service(options);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)),
                           grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "sluice-echo-server: cannot listen on " << absl::GetFlag(FLAGS_host) << ":"
              << absl::GetFlag(FLAGS_port) << "\n";
    return 1;
  }
  std::cout << "sluice-echo-server listening on " << absl::GetFlag(FLAGS_host) << ":" << port
            << " (frames [1," << options.channels << "] float32)" << std::endl;

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (!stop_requested) absl::SleepFor(absl::Milliseconds(50));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
