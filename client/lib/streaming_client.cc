#include "client/lib/streaming_client.h"

#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/lib/status_util.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace sluice::client {

absl::string_view ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case ServingStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << file.rdbuf();
  if (text.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not PEM"));
  }
  return text.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options) {
  if (options.tls_ca_file.empty()) {
    if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
      return absl::InvalidArgumentError("a TLS client certificate needs the CA (--tls_ca) too");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = ReadPem(options.tls_ca_file);
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(options.tls_cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(options.tls_key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<StreamingClient>> StreamingClient::Create(
    const std::string& server, const ClientOptions& options) {
  if (server.empty()) return absl::InvalidArgumentError("empty server address");
  if (options.connections < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("connections must be at least 1, not ", options.connections));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentialsFor(options);
  if (!credentials.ok()) return credentials.status();
  return std::unique_ptr<StreamingClient>(new StreamingClient(server, options, *credentials));
}

StreamingClient::StreamingClient(std::string server, const ClientOptions& options,
                                 const std::shared_ptr<grpc::ChannelCredentials>& credentials)
    : server_(std::move(server)), options_(options) {
  for (int i = 0; i < options_.connections; ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);  // Outputs of long chunks may exceed the 4 MB default.
    args.SetMaxSendMessageSize(-1);
    // Distinct args and a channel-local subchannel pool give each channel its own connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("sluice.client.connection", i);
    if (!options_.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options_.tls_server_name);
    }
    channels_.push_back(grpc::CreateCustomChannel(server_, credentials, args));
    stubs_.push_back(v1::Streaming::NewStub(channels_.back()));
  }
}

grpc::ClientContext* StreamingClient::PrepareContext(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoNanoseconds(options_.rpc_timeout));
  if (!options_.auth_token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.auth_token));
  }
  return context;
}

absl::StatusOr<v1::ListModelsResponse> StreamingClient::ListModels() const {
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  const grpc::Status status =
      stubs_[0]->ListModels(PrepareContext(&context), v1::ListModelsRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ModelInfoResponse> StreamingClient::ModelInfo(absl::string_view name) const {
  grpc::ClientContext context;
  v1::ModelInfoRequest request;
  request.set_name(std::string(name));
  v1::ModelInfoResponse response;
  const grpc::Status status = stubs_[0]->ModelInfo(PrepareContext(&context), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<ServingStatus> StreamingClient::Health(absl::string_view service) const {
  auto stub = grpc::health::v1::Health::NewStub(channels_[0]);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(PrepareContext(&context), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  switch (response.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING:
      return ServingStatus::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING:
      return ServingStatus::kNotServing;
    case grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN:
      return ServingStatus::kServiceUnknown;
    default:
      return ServingStatus::kUnknown;
  }
}

std::unique_ptr<Session> StreamingClient::NewSession(SessionOptions options) {
  if (!options_.auth_token.empty()) {
    options.metadata.emplace_back("authorization", absl::StrCat("Bearer ", options_.auth_token));
  }
  const uint64_t index = next_stub_.fetch_add(1, std::memory_order_relaxed) % stubs_.size();
  return std::make_unique<Session>(stubs_[index].get(), std::move(options));
}

}  // namespace sluice::client
