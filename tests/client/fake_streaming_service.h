// FakeStreamingServer: an in-process sluice.v1.Streaming server on 127.0.0.1 (free port) for the
// client tests, with a tiny fake model instead of the runtime:
//   "double": input x FLOAT32 offline [1, 3, -1] (time axis 2), frame [1, 3]; output y the same,
//             y = 2 * x; warm-up 2 frames (frames 0 and 1 complete no output). Frames come
//             STACKED ([1,3] or [k,1,3]) or OFFLINE ([1,3,k]); INT16 frames are read as
//             value / 32768. One Outputs ([n,1,3]) per Frames request (none when all of its
//             frames are warm-up), carrying the completing frames' tags.
//   "full":   Open ends the stream with RESOURCE_EXHAUSTED.  "refuse": Open gets an Error
//             response (INVALID_ARGUMENT).  Any other name: the stream ends with NOT_FOUND.
// A frame tagged "die" ends the stream with DATA_LOSS; a bad frame gets an Error response with
// INVALID_ARGUMENT and the seq it would have had. Reset restarts the warm-up. Close ends the
// stream with OK after the outputs. ListModels: "double" (ready), "loading" (not ready).
// The grpc.health.v1 service is enabled.
#ifndef SLUICE_TESTS_CLIENT_FAKE_STREAMING_SERVICE_H_
#define SLUICE_TESTS_CLIENT_FAKE_STREAMING_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "sluice/v1/streaming.grpc.pb.h"

namespace sluice::testing {

constexpr int kFakeChannels = 3;
constexpr int kFakeWarmup = 2;

// Thread-safety: thread-safe (the sync gRPC API runs each stream on its own thread).
class FakeStreamingService final : public v1::Streaming::Service {
 public:
  grpc::Status Stream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::StreamResponse, v1::StreamRequest>* stream) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const v1::ModelInfoRequest* request,
                         v1::ModelInfoResponse* response) override;

  static v1::TensorSpec Spec(const std::string& name);
  // Streams that ended because the client cancelled them.
  int cancelled_streams() const { return cancelled_streams_.load(); }

 private:
  std::atomic<int> cancelled_streams_{0};
};

// Thread-safety: not thread-safe; use from the test's thread.
class FakeStreamingServer {
 public:
  // Starts listening on 127.0.0.1 at a free port.
  FakeStreamingServer();
  ~FakeStreamingServer();

  std::string address() const;
  FakeStreamingService& service() { return service_; }
  void SetServing(bool serving);

 private:
  FakeStreamingService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_CLIENT_FAKE_STREAMING_SERVICE_H_
