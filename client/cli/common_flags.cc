#include "client/cli/common_flags.h"

#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, server, "127.0.0.1:8001", "The sluice server's gRPC address, HOST:PORT.");
ABSL_FLAG(std::string, model, "",
          "Model name (stream, bench: required; models: print this model's ModelInfo).");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(10),
          "Deadline of each unary call and of each session's Open, e.g. 10s, 500ms.");

ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle to verify the server with: connect over TLS (default: plaintext).");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate for mutual TLS (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to verify in the server's certificate instead of the --server host.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File whose first line is a bearer token, sent as 'authorization: Bearer <token>'.");

namespace sluice::client {

absl::StatusOr<ClientOptions> ClientOptionsFromFlags(int connections) {
  ClientOptions options;
  options.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  options.connections = connections;
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    std::ifstream file(path);
    if (!file || !std::getline(file, options.auth_token)) {
      return absl::NotFoundError(absl::StrCat("cannot read a token from ", path));
    }
    options.auth_token = std::string(absl::StripAsciiWhitespace(options.auth_token));
  }
  return options;
}

absl::StatusOr<std::unique_ptr<StreamingClient>> ClientFromFlags(int connections) {
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(connections);
  if (!options.ok()) return options.status();
  return StreamingClient::Create(absl::GetFlag(FLAGS_server), *options);
}

}  // namespace sluice::client
