// The native sluice.v1.Streaming service: one reactor per Stream call, plus ListModels and
// ModelInfo.
#ifndef SLUICE_SERVER_API_STREAM_SERVICE_H_
#define SLUICE_SERVER_API_STREAM_SERVICE_H_

#include <atomic>

#include "absl/time/time.h"
#include "server/repository/repository.h"
#include "server/session/registry.h"
#include "sluice/v1/streaming.grpc.pb.h"

namespace sluice::server {

// Trailing metadata of a Stream that ends with every frame its session accepted stepped and every
// output written (a Close, a drain, an error that dropped nothing): the seq the next frame would
// have had. Frames with a lower seq were served; later ones were not accepted.
inline constexpr char kServedThroughTrailer[] = "sluice-next-seq";

class Metrics;
class TokenAuthenticator;

// What the services share with the rest of the server. All pointers outlive the service.
struct ServiceContext {
  ModelRepository* repository = nullptr;
  SessionRegistry* registry = nullptr;
  Metrics* metrics = nullptr;  // May be null.
  const std::atomic<bool>* draining = nullptr;
  const TokenAuthenticator* auth = nullptr;  // Null: no authentication.
  // Detached native sessions wait this long for a resume; zero = sessions end with their stream.
  absl::Duration resume_grace = absl::ZeroDuration();
  int resume_buffer_frames = 1024;  // Written outputs each resumable session keeps for replay.
};

// Thread-safe (gRPC calls it from its callback threads).
class StreamingService final : public v1::Streaming::CallbackService {
 public:
  explicit StreamingService(ServiceContext context) : context_(context) {}

  grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* Stream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* context,
                                      const v1::ModelInfoRequest* request,
                                      v1::ModelInfoResponse* response) override;

 private:
  ServiceContext context_;
};

// "ready", "failed: <why>" for a model.
v1::ModelSummary Summarize(const ServedModel& model);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_STREAM_SERVICE_H_
