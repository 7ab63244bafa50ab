// sluice-client health: grpc.health.v1 Check of the whole server.
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "client/cli/commands.h"
#include "client/cli/common_flags.h"

ABSL_FLAG(std::string, service, "",
          "health: the service name to check (\"\" = the whole server, "
          "\"sluice.v1.Streaming\" = the streaming API).");

namespace sluice::client {

const Command kHealthCommand = {
    "health", "Check the server's grpc.health.v1 status (exit 0 only when SERVING).",
    "Prints SERVING, NOT_SERVING, ... for the server; exit code 0 only when SERVING.\n"
    "  sluice-client health [--server HOST:PORT] [--service NAME]",
    "client/cli/health_command.cc", &RunHealthCommand};

int RunHealthCommand() {
  auto client = ClientFromFlags();
  if (!client.ok()) {
    std::cerr << "sluice-client health: " << client.status() << "\n";
    return 1;
  }
  absl::StatusOr<ServingStatus> status = (*client)->Health(absl::GetFlag(FLAGS_service));
  if (!status.ok()) {
    std::cerr << "sluice-client health: " << absl::GetFlag(FLAGS_server) << ": " << status.status()
              << "\n";
    std::cout << "NOT_SERVING\n";
    return 1;
  }
  std::cout << ServingStatusName(*status) << "\n";
  return *status == ServingStatus::kServing ? 0 : 1;
}

}  // namespace sluice::client
