// EchoStreamingService: the transport floor. A sluice.v1.Streaming service with no model behind
// it: Open (any model name) is answered with an Opened whose input and output are float32
// frames of shape [1, C] (offline layout [1, T, C], time axis 1), and every Frames request
// (stacked [k, 1, C] or offline [1, k, C]) with an Outputs ([k, 1, C]) carrying the same bytes,
// so `sluice-client bench` runs against it unmodified and measures gRPC alone.
#ifndef SLUICE_TESTS_BENCH_ECHO_SERVICE_H_
#define SLUICE_TESTS_BENCH_ECHO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <string>

#include "sluice/v1/streaming.grpc.pb.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::bench {

struct EchoOptions {
  int64_t channels = 32;  // C: floats per frame.
  // The model name ListModels reports; Open accepts any name.
  std::string model = "echo";
};

// Thread-safety: thread-safe (gRPC calls it from its callback threads; each stream's reactor
// serialises its own state).
class EchoStreamingService final : public v1::Streaming::CallbackService {
 public:
  explicit EchoStreamingService(EchoOptions options);

  grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* Stream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* context,
                                      const v1::ModelInfoRequest* request,
                                      v1::ModelInfoResponse* response) override;

  // The spec of the input and of the one output: FLOAT32, offline [1, -1, C], frame [1, C].
  const v1::TensorSpec& spec() const { return spec_; }
  const EchoOptions& options() const { return options_; }

 private:
  const EchoOptions options_;
  v1::TensorSpec spec_;
};

}  // namespace sluice::bench

#endif  // SLUICE_TESTS_BENCH_ECHO_SERVICE_H_
