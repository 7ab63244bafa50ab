#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/admin/http_server.h"
#include "server/admin/metrics.h"
#include "server/api/auth.h"
#include "server/api/oip_service.h"  // OIP
#include "server/api/stream_service.h"
#include "server/repository/repository.h"
#include "server/session/registry.h"
#include "spdlog/spdlog.h"

namespace sluice::server {
namespace {

std::string TensorJson(const streaming::StreamSpec& spec) {
  return absl::StrCat("{\"name\":\"", JsonEscape(spec.name), "\",\"datatype\":\"FP32\",\"shape\":[",
                      absl::StrJoin(spec.offline_shape, ","), "]}");
}

// KServe v2 model metadata, plus sluice's streaming details.
std::string ModelJson(const ServedModel& model) {
  std::string json = absl::StrCat(
      "{\"name\":\"", JsonEscape(model.name),
      "\",\"versions\":[\"1\"],\"platform\":\"onnx\",\"ready\":", model.ready() ? "true" : "false");
  if (!model.ready()) {
    absl::StrAppend(&json, ",\"error\":\"", JsonEscape(std::string(model.load_status.message())),
                    "\"}");
    return json;
  }
  const streaming::Program& program = *model.program;
  std::vector<std::string> outputs;
  for (const auto& output : program.outputs) outputs.push_back(TensorJson(output));
  absl::StrAppend(&json, ",\"inputs\":[", TensorJson(program.input), "],\"outputs\":[",
                  absl::StrJoin(outputs, ","), "],\"backend\":\"", model.backend,
                  "\",\"warmup_frames\":", program.warmup_frames,
                  ",\"state_bytes\":", program.state_bytes,
                  ",\"sessions_active\":", model.sessions_active.load(), "}");
  return json;
}

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view what) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read the ", what, " ", path));
  std::stringstream text;
  text << file.rdbuf();
  if (text.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("the ", what, " ", path, " is not PEM"));
  }
  return text.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const ServerOptions& options) {
  if (options.tls_cert_file.empty() && options.tls_key_file.empty()) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls_cert and --tls_key");
  }
  absl::StatusOr<std::string> cert = ReadPem(options.tls_cert_file, "TLS certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(options.tls_key_file, "TLS key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (!options.tls_client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(options.tls_client_ca_file, "TLS client CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

SluiceServer::SluiceServer() = default;

SluiceServer::~SluiceServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<SluiceServer>> SluiceServer::Start(const ServerOptions& options) {
  auto server = std::unique_ptr<SluiceServer>(new SluiceServer());
  SluiceServer* self = server.get();
  self->options_ = options;
  self->metrics_ = std::make_unique<Metrics>();
  self->registry_ = std::make_unique<SessionRegistry>(options.max_sessions,
                                                      absl::Milliseconds(options.resume_grace_ms));
  if (!options.auth_token_file.empty()) {
    absl::StatusOr<TokenAuthenticator> auth = TokenAuthenticator::FromFile(options.auth_token_file);
    if (!auth.ok()) return auth.status();
    self->auth_ = std::make_unique<TokenAuthenticator>(*std::move(auth));
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentialsFor(options);
  if (!credentials.ok()) return credentials.status();

  if (options.http_port >= 0) {
    AdminHooks hooks;
    hooks.readiness = [self]() -> Readiness {
      if (self->loading_.load()) return {false, "loading models"};
      if (self->draining_.load()) return {false, "draining: the server is shutting down"};
      std::vector<std::string> ready, failed;
      for (ServedModel* model : self->repository_->models()) {
        (model->ready() ? ready : failed).push_back(model->name);
      }
      if (ready.empty()) return {false, "no model is ready"};
      std::vector<std::string> degraded;
      for (ServedModel* model : self->repository_->models()) {
        if (model->ready()) {
          std::string reason = model->DegradedReason();
          if (!reason.empty()) degraded.push_back(std::move(reason));
        }
      }
      std::string detail = degraded.empty()
                               ? absl::StrCat("ready: ", absl::StrJoin(ready, ", "))
                               : absl::StrCat("degraded: ", absl::StrJoin(degraded, "; "));
      if (!failed.empty()) absl::StrAppend(&detail, "; not ready: ", absl::StrJoin(failed, ", "));
      return {true, detail};
    };
    hooks.metrics_text = [self]() {
      self->metrics_->SetGauge("sluice_up", "1 while the server runs.", 1).IgnoreError();
      return self->metrics_->RenderPrometheus();
    };
    hooks.model_json = [self](const std::string& name) -> std::optional<std::string> {
      if (self->loading_.load() || self->repository_ == nullptr) return std::nullopt;
      ServedModel* model = self->repository_->Find(name);
      if (model == nullptr) return std::nullopt;
      return ModelJson(*model);
    };
    hooks.model_ready = [self](const std::string& name) -> std::optional<bool> {
      if (self->loading_.load() || self->repository_ == nullptr) return std::nullopt;
      ServedModel* model = self->repository_->Find(name);
      if (model == nullptr) return std::nullopt;
      return model->ready();
    };
    if (self->auth_ != nullptr) {
      hooks.authorize = [self](absl::string_view authorization) {
        return self->auth_->Check(authorization);
      };
      hooks.metrics_public = !options.metrics_require_auth;
    }
    const std::string& http_host = options.http_host.empty() ? options.host : options.http_host;
    auto admin = AdminServer::Start(http_host, options.http_port, std::move(hooks));
    if (!admin.ok()) return admin.status();
    self->admin_ = *std::move(admin);
    self->http_port_ = self->admin_->port();
  }

  RepositoryOptions repository_options;
  repository_options.backend = options.backend;
  repository_options.opencl_platform = options.opencl_platform;
  repository_options.opencl_device = options.opencl_device;
  repository_options.opencl_cache_dir = options.opencl_cache_dir;
  repository_options.inject_device_fault_after_steps = options.inject_device_fault_after_steps;
  repository_options.fallback_snapshot_interval_frames = options.fallback_snapshot_interval_frames;
  auto repository =
      ModelRepository::Load(options.model_repository, repository_options, self->metrics_.get());
  if (!repository.ok()) return repository.status();
  self->repository_ = *std::move(repository);

  ServiceContext context;
  context.repository = self->repository_.get();
  context.registry = self->registry_.get();
  context.metrics = self->metrics_.get();
  context.draining = &self->draining_;
  context.auth = self->auth_.get();
  context.resume_grace = absl::Milliseconds(options.resume_grace_ms);
  context.resume_buffer_frames = options.resume_buffer_frames;
  self->streaming_service_ = std::make_unique<StreamingService>(context);
  // OIP: the Open Inference Protocol (KServe v2 / Triton) service and its HTTP routes.
  self->oip_service_ = std::make_unique<OipService>(context, SLUICE_VERSION);
  if (self->admin_ != nullptr) {
    if (absl::Status status = self->oip_service_->AddHttpRoutes(self->admin_.get()); !status.ok()) {
      return status;
    }
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.grpc_port), *credentials,
                           &self->grpc_port_);
  builder.RegisterService(self->streaming_service_.get());
  builder.RegisterService(self->oip_service_.get());  // OIP
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  if (options.threads > 0) {
    grpc::ResourceQuota quota("sluice");
    quota.SetMaxThreads(options.threads);
    builder.SetResourceQuota(quota);
  }
  if (options.keepalive_time_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                               static_cast<int>(options.keepalive_time_ms));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  if (options.keepalive_timeout_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               static_cast<int>(options.keepalive_timeout_ms));
  }
  if (options.max_connection_age_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(options.max_connection_age_ms));
  }
  if (options.max_connection_age_grace_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               static_cast<int>(options.max_connection_age_grace_ms));
  }
  self->grpc_server_ = builder.BuildAndStart();
  if (self->grpc_server_ == nullptr || self->grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", options.host, ":", options.grpc_port));
  }
  auto* health = self->grpc_server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(true);
    for (ServedModel* model : self->repository_->models()) {
      health->SetServingStatus(model->name, model->ready());
    }
  }
  self->reaper_ = std::thread([self] { self->ReaperLoop(); });
  self->loading_.store(false);
  spdlog::info("gRPC listening on {}:{}{}{}", options.host, self->grpc_port_,
               options.tls_cert_file.empty() ? "" : " (TLS)",
               self->auth_ != nullptr ? " with bearer-token auth" : "");
  return server;
}

void SluiceServer::ReaperLoop() {
  while (!stop_reaper_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    registry_->ReapIdle(absl::Now());
  }
}

void SluiceServer::Drain(absl::Duration timeout) {
  if (shut_down_) return;
  draining_.store(true);
  if (auto* health = grpc_server_->GetHealthCheckService()) health->SetServingStatus(false);
  const int64_t sessions = registry_->active();
  spdlog::info("draining {} session(s)", sessions);
  registry_->ForEach([](Session& session) {
    session.EnqueueClose(absl::UnavailableError("the server is shutting down"));
  });
  const absl::Time deadline = absl::Now() + timeout;
  while (registry_->active() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  if (registry_->active() > 0) {
    spdlog::warn("{} session(s) still open after the drain timeout", registry_->active());
  }
  Shutdown();
}

void SluiceServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  draining_.store(true);
  if (grpc_server_ != nullptr)
    grpc_server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  if (reaper_.joinable()) {
    stop_reaper_.Notify();
    reaper_.join();
  }
  if (repository_ != nullptr) repository_->Stop();
  if (admin_ != nullptr) admin_->Stop();
}

}  // namespace sluice::server
