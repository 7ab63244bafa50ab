// The Open Inference Protocol (KServe v2) REST routes that need the OIP engine, added to the
// admin HTTP server (which serves /v2/health/*, /v2/models/<name> and /v2/models/<name>/ready
// itself):
//   GET  /v2                                      server metadata {"name","version","extensions"}
//   POST /v2/models/<name>[/versions/1]/infer     KServe v2 JSON inference (below)
//   GET  /v2/models/<name>[/versions/1]/config    the Triton model configuration as JSON
//   GET  /v2/models/<name>[/versions/1]/stats     {"model_stats": [...]}
//
// Inference body: {"id": "...", "parameters": {"sequence_id": 7 | "abc", "sequence_start": true,
// "sequence_end": false}, "inputs": [{"name": "x", "shape": [1, 16, 3], "datatype": "FP32",
// "data": [...]}], "outputs": [{"name": "y"}]} with `data` flat or nested, row-major. The answer
// is {"model_name", "model_version", "id", "parameters", "outputs": [{"name", "datatype",
// "shape", "data"}]}; an error is {"error": "..."} with 400 (bad request), 404 (unknown model),
// 429 (no room), 503 (not ready, draining) or 500. The sequence rules are OipEngine's. Binary
// tensor data (the binary_data extension) is not supported.
#ifndef SLUICE_SERVER_API_OIP_HTTP_H_
#define SLUICE_SERVER_API_OIP_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "inference/grpc_service.pb.h"
#include "server/api/oip_engine.h"

namespace sluice::server {

class AdminServer;

// Adds the routes above to `admin`; the handlers keep `engine` alive. `version` is the server
// version /v2 reports.
absl::Status AddOipHttpRoutes(AdminServer* admin, std::shared_ptr<OipEngine> engine,
                              const std::string& version);

// Parses a KServe v2 JSON inference body for `model` / `version` into the gRPC request.
// InvalidArgument names what is wrong.
absl::StatusOr<inference::ModelInferRequest> ParseJsonInferRequest(absl::string_view body,
                                                                   const std::string& model,
                                                                   const std::string& version);
// Renders a response as KServe v2 JSON (outputs' data as flat lists).
std::string InferResponseJson(const inference::ModelInferResponse& response);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_OIP_HTTP_H_
