// The Open Inference Protocol gRPC service (`inference.GRPCInferenceService`, KServe v2 as Triton
// extends it) on sluice's gRPC port, beside the native API and sharing its sessions, schedulers
// and backends. ModelInfer and ModelStreamInfer go through OipEngine (see oip_engine.h for the
// sequence rules); one ModelStreamInfer stream may carry requests of many sequences and gets one
// ModelStreamInferResponse per request, in each sequence's order. A request that fails, or a
// sequence that ends with an error between requests (idle timeout, drain), is reported on the
// stream as a response with `error_message` (the stream itself goes on).
#ifndef SLUICE_SERVER_API_OIP_SERVICE_H_
#define SLUICE_SERVER_API_OIP_SERVICE_H_

#include <memory>
#include <string>

#include "inference/grpc_service.grpc.pb.h"
#include "server/api/oip_engine.h"
#include "server/api/stream_service.h"

namespace sluice::server {

class AdminServer;

// Thread-safe (gRPC calls it from its callback threads).
class OipService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // `version` is what ServerMetadata reports.
  OipService(ServiceContext context, std::string version);
  ~OipService() override;

  // Adds the OIP HTTP routes that the admin server does not have itself (GET /v2, POST
  // /v2/models/<name>/infer, GET /v2/models/<name>/config and /stats; see oip_http.h).
  absl::Status AddHttpRoutes(AdminServer* admin);

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest* request,
                                       inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest* request,
                                        inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context,
                                       const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest* request,
                                           inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* context,
                                        const inference::ModelConfigRequest* request,
                                        inference::ModelConfigResponse* response) override;
  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* context,
                                            const inference::ModelStatisticsRequest* request,
                                            inference::ModelStatisticsResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* context,
                                            const inference::RepositoryIndexRequest* request,
                                            inference::RepositoryIndexResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override;
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* context) override;

 private:
  const std::string version_;
  // Shared with the HTTP routes. Stream reactors hold a plain pointer: answers still owed to a
  // finished stream keep the reactor, not the engine, alive, so destroying the service (after
  // gRPC has shut down) detaches every open sequence.
  const std::shared_ptr<OipEngine> engine_;
};

// ServerMetadata's extensions.
std::vector<std::string> OipExtensions();

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_OIP_SERVICE_H_
