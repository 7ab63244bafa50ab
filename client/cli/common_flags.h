// Flags shared by every sluice-client subcommand, and the client they describe.
#ifndef SLUICE_CLIENT_CLI_COMMON_FLAGS_H_
#define SLUICE_CLIENT_CLI_COMMON_FLAGS_H_

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/lib/streaming_client.h"

ABSL_DECLARE_FLAG(std::string, server);
ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(absl::Duration, rpc_timeout);

namespace sluice::client {

// The client options the flags give (--rpc_timeout, TLS, token), with `connections` channels.
absl::StatusOr<ClientOptions> ClientOptionsFromFlags(int connections = 1);

// A client for --server with ClientOptionsFromFlags(connections).
absl::StatusOr<std::unique_ptr<StreamingClient>> ClientFromFlags(int connections = 1);

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_COMMON_FLAGS_H_
