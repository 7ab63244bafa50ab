#include "client/cli/common_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, server, "127.0.0.1:8001", "The sluice server's gRPC address, HOST:PORT.");
ABSL_FLAG(std::string, model, "",
          "Model name (stream, bench: required; models: print this model's ModelInfo).");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(10),
          "Deadline of each unary call and of each session's Open, e.g. 10s, 500ms.");

namespace sluice::client {

absl::StatusOr<std::unique_ptr<StreamingClient>> ClientFromFlags(int connections) {
  ClientOptions options;
  options.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  options.connections = connections;
  return StreamingClient::Create(absl::GetFlag(FLAGS_server), options);
}

}  // namespace sluice::client
